"""Names of the TF1 graph's variables for each variable of the TF2 model.

The published TF1 checkpoints (`model.ckpt-<step>`) name variables the way
TF1 layers auto-name them: `base_model/conv2d_7/kernel`,
`base_model/batch_normalization_12/gamma`, `head_contrastive/nl_1/dense/kernel`,
`head_supervised/linear_layer/dense/bias`. The k-th convolution (or batch
norm) created in the encoder is `conv2d_k` (`batch_normalization_k`), the
first one without suffix. The TF2 model creates its layers in the same order
as the TF1 graph did, so walking its variables in creation order and counting
layers per kind gives each variable's TF1 name.
"""

import re

import numpy as np

from tf2 import model as model_lib

ENCODER_SCOPE = 'base_model'
PROJECTION_SCOPE = 'head_contrastive'
SUPERVISED_SCOPE = 'head_supervised'

# TF2 layer names of the model's three parts (see model.py).
_PART_TO_TF1_SCOPE = {
    'resnet': ENCODER_SCOPE,
    'projection_head': PROJECTION_SCOPE,
    'head_supervised': SUPERVISED_SCOPE,
}


def _layer_kind(layer_name):
  if 'batch_normalization' in layer_name:
    return 'batch_normalization'
  if 'conv2d' in layer_name:
    return 'conv2d'
  if layer_name.startswith('dense'):
    return 'dense'
  raise ValueError(f'Unexpected layer {layer_name!r} in the model.')


def _numbered(base, index):
  return base if index == 0 else f'{base}_{index}'


def tf1_names(variables):
  """TF1 checkpoint names for TF2 model variables given in creation order.

  Args:
    variables: variables of a `tf2.model.Model`, in creation order (see
      `model.variables_in_creation_order`).

  Returns:
    A list of TF1 names, one per variable, in the same order.
  """
  counters = {}
  last_layer = {}
  names = []
  for variable in variables:
    parts = variable.name.split(':')[0].split('/')
    part = next((p for p in parts if p in _PART_TO_TF1_SCOPE), None)
    if part is None:
      raise ValueError(f'Variable {variable.name} is not part of a SimCLR '
                       'model (no resnet / projection_head / head_supervised '
                       'scope).')
    scope = _PART_TO_TF1_SCOPE[part]
    layer, leaf = parts[-2], parts[-1]
    kind = _layer_kind(layer)
    if scope == ENCODER_SCOPE:
      key = (scope, kind)
      if last_layer.get(key) != layer:
        counters[key] = counters.get(key, -1) + 1
        last_layer[key] = layer
      names.append(f'{scope}/{_numbered(kind, counters[key])}/{leaf}')
    else:
      # Head layers are scoped by their own names (nl_0, l_0, linear_layer).
      head_layer = parts[parts.index(part) + 1]
      kind_scope = 'dense' if kind == 'dense' else 'batch_normalization'
      names.append(f'{scope}/{head_layer}/{kind_scope}/{leaf}')
  return names


def tf1_variable_map(model):
  """{tf1_name: variable} for a model built by `model.build_model`."""
  variables = model_lib.variables_in_creation_order(model)
  return dict(zip(tf1_names(variables), variables))


class WeightMismatchError(ValueError):
  """Raised when TF1 weights do not fit the model; names the first problem."""


def assign_tf1_weights(model, values, allow_missing=(), allow_unused=()):
  """Assigns `{tf1_name: array}` to the model's variables.

  Every model variable must be filled with a value of its exact shape and
  every value must be used, except names matching a regex in `allow_missing`
  (model variables left as they are) or `allow_unused` (values ignored, such
  as `global_step` or optimizer slots).

  Args:
    model: a model from `tf2.model.build_model`.
    values: mapping of TF1 variable names to numpy arrays.
    allow_missing: regexes of TF1 names the values may lack.
    allow_unused: regexes of value names the model may not use.

  Returns:
    (filled, missing, unused): lists of TF1 names.

  Raises:
    WeightMismatchError: on a shape mismatch, a missing value or an unused
      value that is not allowed.
  """
  targets = tf1_variable_map(model)
  for name, variable in targets.items():
    if name in values:
      found = tuple(np.shape(values[name]))
      expected = tuple(variable.shape)
      if found != expected:
        raise WeightMismatchError(
            f'{name}: the model expects shape {expected} but the weights have '
            f'{found}. The architecture flags (resnet_depth, '
            'width_multiplier, sk_ratio, image_size, proj_out_dim, '
            'num_proj_layers, num classes) probably differ from the '
            'checkpoint\'s.')
  missing = [n for n in targets if n not in values]
  unused = [n for n in values if n not in targets]
  bad_missing = [n for n in missing
                 if not any(re.search(p, n) for p in allow_missing)]
  bad_unused = [n for n in unused
                if not any(re.search(p, n) for p in allow_unused)]
  if bad_missing:
    raise WeightMismatchError(
        f'{len(bad_missing)} model variables have no value, first: '
        f'{bad_missing[0]}. The checkpoint lacks part of this architecture.')
  if bad_unused:
    raise WeightMismatchError(
        f'{len(bad_unused)} values fit no model variable, first: '
        f'{bad_unused[0]} {tuple(np.shape(values[bad_unused[0]]))}. The '
        'checkpoint has a different architecture than the flags describe.')
  filled = [n for n in targets if n in values]
  for name in filled:
    targets[name].assign(values[name])
  return filled, missing, unused
