"""TF1 names of the model's variables, from their TF2 keys in creation order.

The published TF1 checkpoints (`model.ckpt-<step>`) name variables the way
TF1 layers auto-named them: `base_model/conv2d_7/kernel`,
`base_model/batch_normalization_12/gamma`, `head_contrastive/nl_1/dense/kernel`,
`head_supervised/linear_layer/dense/bias`. The k-th convolution (or batch
norm) created in the encoder is `conv2d_k` (`batch_normalization_k`), the
first one without suffix; head layers are scoped by their own names. The TF2
model creates its layers in the order the TF1 graph did, so counting layers
per kind along the model's checkpoint keys, in creation order, gives every
variable's TF1 name. This module is the only place that knows the TF1 names.

They also hold what is no model weight: `global_step`, optimizer slots
(`.../Momentum`) and, in SimCLRv2, a moving average of the weights under
`ema_model/`.
"""

import collections
import re

from tf2.checkpoints import object_graph

ENCODER_SCOPE = 'base_model'
PROJECTION_SCOPE = 'head_contrastive'
SUPERVISED_SCOPE = 'head_supervised'
EMA_PREFIX = 'ema_model/'
# TF1 names that are no model weights: the step and optimizer slots.
BOOKKEEPING = re.compile(
    r'^global_step$|/(Momentum|Adam|Adam_1|LARSOptimizer)(_\d+)?$|'
    r'^beta[12]_power(_\d+)?$')


def is_model_weight(name):
  """Whether a TF1 checkpoint name is a raw model weight (no EMA, no slot)."""
  return not name.startswith(EMA_PREFIX) and not BOOKKEEPING.search(name)


def _numbered(base, index):
  return base if index == 0 else f'{base}_{index}'


def _encoder_namer():
  """A function: key parts -> TF1 name, numbering layers per kind as called.

  It must be called with the encoder's keys in creation order.
  """
  counters = collections.Counter()
  last_layer = {}

  def name(parts):
    layer, leaf = '/'.join(parts[:-1]), parts[-1]
    # The only batch norms of the encoder are the `bn` of BatchNormRelu;
    # every other layer with variables is a convolution.
    kind = 'batch_normalization' if parts[-2] == 'bn' else 'conv2d'
    if last_layer.get(kind) != layer:
      counters[kind] += 1
      last_layer[kind] = layer
    return f'{ENCODER_SCOPE}/{_numbered(kind, counters[kind] - 1)}/{leaf}'

  return name


def _head_name(parts, linear_head):
  leaf = parts[-1]
  if parts[1] == 'supervised_head':
    return f'{SUPERVISED_SCOPE}/linear_layer/dense/{leaf}'
  # model/_projection_head/linear_layers/<j>/{dense | bn_relu/bn}/<leaf>
  layer = 'l_0' if linear_head else f'nl_{parts[3]}'
  kind = 'dense' if parts[4] == 'dense' else 'batch_normalization'
  return f'{PROJECTION_SCOPE}/{layer}/{kind}/{leaf}'


def tf1_names(keys, linear_head=False):
  """TF1 names of a model's TF2 checkpoint keys given in creation order.

  Args:
    keys: object-graph keys of a SimCLR model's variables in the order the
      model created them (`object_graph.keyed_in_creation_order`).
    linear_head: whether the projection head is linear
      (proj_head_mode='linear'), which TF1 scoped `l_0` instead of `nl_0`;
      the keys of the two are the same.

  Returns:
    A list of TF1 names, one per key, in the same order.

  Raises:
    ValueError: a key of no SimCLR model part.
  """
  encoder_name = _encoder_namer()
  names = []
  for key in keys:
    parts = object_graph.key_parts(key)
    if len(parts) < 4 or parts[0] != object_graph.MODEL_ROOT:
      raise ValueError(f'{key} is no variable of a SimCLR model.')
    if parts[1] == 'resnet_model':
      names.append(encoder_name(parts))
    elif parts[1] in ('supervised_head', '_projection_head'):
      names.append(_head_name(parts, linear_head))
    else:
      raise ValueError(f'{key} is no variable of a SimCLR model.')
  return names


def tf1_targets(model):
  """[(TF1 name, TF2 key, variable)] of a built model, in creation order."""
  keyed = object_graph.keyed_in_creation_order(model)
  names = tf1_names([key for key, _ in keyed],
                    linear_head=model.config.proj_head_mode == 'linear')
  return [(name, key, variable)
          for name, (key, variable) in zip(names, keyed)]


def tf1_variable_map(model):
  """{TF1 name: variable} for a model made by `model.build_model`."""
  return {name: variable for name, _, variable in tf1_targets(model)}
