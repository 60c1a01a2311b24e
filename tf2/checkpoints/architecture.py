"""The architecture of a SimCLR model, from its variables' names and shapes.

Checkpoints do not record the flags they were trained with, but their
variables show them. Only names and shapes are used (no model is built, no
weight is read), so this also describes architectures too big to build here.

- TF2 object-graph keys show the structure: blocks per group are the
  `block_groups/<i>/layers/<j>` present, the block type is the list that
  holds a block's layers, SK adds a pooling before the shortcut's
  convolution (so it sits at index 1 or 2 of the shortcut's list), SE adds
  `se_reduce`, and the stem's last convolution gives the width.
- TF1 names only number layers (`base_model/conv2d_17`), so the depth comes
  from the number of convolutions per block and in all.

`model_config_for` turns the result into a ModelConfig whose model has
exactly the checkpoint's variables.
"""

import collections
import dataclasses
import re

import numpy as np

from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import object_graph
from tf2.checkpoints import tf1_mapping
from tf2.models import config as config_lib
from tf2.models import resnet

_TRAINABLE_LEAVES = ('kernel', 'bias', 'gamma', 'beta')
# The SK ratio of every published SK model; variables show SK, not its ratio.
_SK_RATIO = 0.0625


@dataclasses.dataclass(frozen=True)
class _Naming:
  """Where a model part's variables sit in one naming."""
  encoder: str
  projection: str
  supervised: str
  suffix: str

  def below(self, shapes, scope):
    """{name without `scope` and the suffix: shape} of the names in scope."""
    end = len(self.suffix)
    return {n[len(scope):len(n) - end]: s for n, s in shapes.items()
            if n.startswith(scope) and n.endswith(self.suffix)}


_TF2 = _Naming('model/resnet_model/', 'model/_projection_head/',
               'model/supervised_head/', object_graph.VALUE_SUFFIX)
_TF1 = _Naming(tf1_mapping.ENCODER_SCOPE + '/',
               tf1_mapping.PROJECTION_SCOPE + '/',
               tf1_mapping.SUPERVISED_SCOPE + '/', '')


def _indexed(paths, pattern):
  """[(index, shape)] of the paths that fully match `pattern`, by index."""
  found = []
  for path, shape in paths.items():
    match = re.fullmatch(pattern, path)
    if match:
      found.append((int(match.group(1)), shape))
  return sorted(found)


def _encoder_fields(block_type, fits, width64, sk, cifar_stem, se_reduce,
                    what):
  """The encoder's part of the architecture dict.

  Args:
    block_type: 'bottleneck' or 'residual'.
    fits: predicate on a depth's list of blocks per group.
    width64: channels of the stem's output (64 x width multiplier).
    sk: whether the encoder uses selective kernels.
    cifar_stem: whether the stem is one 3x3 convolution.
    se_reduce: output channels of every SE reduction (empty without SE).
    what: the evidence, for the error message.
  """
  depth = next((d for d, (t, b) in resnet._DEPTH_TO_BLOCKS.items()  # pylint: disable=protected-access
                if t == block_type and fits(b)), None)
  if depth is None or not width64 or width64 % 64:
    raise ValueError(what)
  return dict(resnet_depth=depth, width_multiplier=width64 // 64,
              sk_ratio=_SK_RATIO if sk else 0.0, cifar_stem=cifar_stem,
              se_ratio=min(se_reduce) / width64 if se_reduce else 0.0)


def _tf2_encoder(paths):
  """Encoder fields from object-graph paths below `model/resnet_model/`."""
  stem = _indexed(paths, r'initial_conv_relu_max_pool/(\d+)/conv2d/kernel')
  layers = collections.defaultdict(set)
  for path in paths:
    match = re.match(r'block_groups/(\d+)/layers/(\d+)/', path)
    if match:
      layers[int(match.group(1))].add(int(match.group(2)))
  blocks = [len(layers[g]) for g in sorted(layers)]
  if not stem or sorted(layers) != [0, 1, 2, 3]:
    raise ValueError(f'{len(stem)} stem convolutions, block groups '
                     f'{sorted(layers)}')
  bottleneck = any('/conv_relu_dropblock_layers/' in p for p in paths)
  shortcut = _indexed(paths, r'block_groups/0/layers/0/'
                      r'(?:projection|shortcut)_layers/(\d+)/conv2d/kernel')
  return _encoder_fields(
      'bottleneck' if bottleneck else 'residual', lambda b: b == blocks,
      width64=stem[-1][1][-1], sk=bool(shortcut) and shortcut[0][0] > 0,
      cifar_stem=len(stem) == 1 and stem[0][1][0] == 3,
      se_reduce=[s[-1] for p, s in paths.items()
                 if p.endswith('/se_reduce/kernel')],
      what=f'blocks per group {blocks}')


def _tf1_layer_index(path):
  match = re.search(r'_(\d+)$', path.split('/')[0])
  return int(match.group(1)) if match else 0


def _tf1_encoder(paths):
  """Encoder fields from TF1 names below `base_model/` (`conv2d_7/kernel`)."""
  kernels = [s for _, s in sorted(
      (_tf1_layer_index(p), s) for p, s in paths.items()
      if p.startswith('conv2d') and p.endswith('/kernel'))]
  what = f'{len(kernels)} encoder convolutions'
  if len(kernels) < 8 or any(len(k) != 4 for k in kernels):
    raise ValueError(what)
  sk_stem = kernels[0][0] == 3 and kernels[1][:2] == (3, 3)
  stem_convs = 3 if sk_stem else 1
  width64 = kernels[stem_convs - 1][3]
  bottleneck = kernels[stem_convs][3] == 4 * width64
  first_block = kernels[stem_convs + 1:]
  sk_convs = bottleneck and first_block[1][:2] == (3, 3) and (
      first_block[1][3] == 2 * first_block[1][2])
  # The SE convolutions are the only encoder convolutions with a bias.
  se_reduce = [s[-1] for p, s in paths.items()
               if p.startswith('conv2d') and p.endswith('/bias')]
  per_block = (3 + 2 * sk_convs if bottleneck else 2) + 2 * bool(se_reduce)
  blocks, remainder = divmod(len(kernels) - stem_convs - 4, per_block)
  return _encoder_fields(
      'bottleneck' if bottleneck else 'residual',
      lambda b: not remainder and sum(b) == blocks, width64,
      sk=sk_stem or sk_convs, cifar_stem=kernels[0][0] == 3 and not sk_stem,
      se_reduce=se_reduce, what=what)


def _head_fields(naming, shapes):
  projection = naming.below(shapes, naming.projection)
  # Kernels of `linear_layers/<j>/dense` (TF2) or `nl_<j>/dense` (TF1).
  heads = [s for _, s in sorted(
      (int(re.search(r'\d+', p).group()), s) for p, s in projection.items()
      if p.endswith('dense/kernel'))]
  sup = naming.below(shapes, naming.supervised).get('linear_layer/dense/kernel')
  # Object-graph keys cannot tell a linear head from a one-layer nonlinear
  # head, which computes the same; TF1 names can (`l_0`).
  linear = any(p.startswith('l_0/') for p in projection)
  return dict(
      proj_head_mode='linear' if linear else (
          'nonlinear' if heads else 'none'),
      num_proj_layers=len(heads) or None,
      proj_out_dim=heads[-1][-1] if heads else None,
      num_classes=sup[-1] if sup else None,
      has_projection_head=bool(heads), has_supervised_head=sup is not None)


def _parameter_count(paths):
  return int(sum(np.prod(s, dtype=np.int64) for p, s in paths.items()
                 if p.rsplit('/', 1)[-1] in _TRAINABLE_LEAVES))


def infer_architecture_from_shapes(shapes):
  """Architecture of a SimCLR model from {name: shape} alone.

  Args:
    shapes: model variables as TF1 names or TF2 object-graph keys (without
      optimizer slots, step or EMA copies).

  Returns:
    dict with resnet_depth, width_multiplier, sk_ratio (0.0625 for SK
    models), cifar_stem, se_ratio, proj_head_mode, num_proj_layers and
    proj_out_dim (None without a projection head), num_classes (None
    without a supervised head), has_projection_head, has_supervised_head,
    parameter_count (weights, biases, gammas, betas of all parts present)
    and encoder_parameter_count.

  Raises:
    CheckpointError: the names are not those of a SimCLR model.
  """
  shapes = {n: tuple(s) for n, s in shapes.items()}
  tf2 = any(n.endswith(object_graph.VALUE_SUFFIX) for n in shapes)
  naming = _TF2 if tf2 else _TF1
  encoder = naming.below(shapes, naming.encoder)
  try:
    arch = (_tf2_encoder if tf2 else _tf1_encoder)(encoder)
  except (ValueError, IndexError) as e:
    raise checkpoint_files.CheckpointError(
        f'These variables are no SimCLR ResNet ({e}).') from None
  arch.update(_head_fields(naming, shapes))
  arch['parameter_count'] = _parameter_count(naming.below(shapes, ''))
  arch['encoder_parameter_count'] = _parameter_count(encoder)
  return arch


def infer_architecture(path):
  """The architecture of the model in a checkpoint of any format.

  Uses names and shapes only (no model is built, no weight is read).

  Returns:
    The dict of `infer_architecture_from_shapes` plus `has_ema`,
    `global_step` (None when absent) and `format`.

  Raises:
    CheckpointError: bad files, or no SimCLR model in them.
  """
  checkpoint = checkpoint_files.open_checkpoint(path)
  shapes = checkpoint.model_shapes()
  try:
    arch = infer_architecture_from_shapes(shapes)
  except checkpoint_files.CheckpointError as e:
    raise checkpoint_files.checkpoint_error(
        checkpoint.path, str(e), 'Pass a checkpoint of a SimCLR model.'
    ) from None
  arch.update(has_ema=checkpoint.has_ema, global_step=checkpoint.global_step(),
              format=checkpoint.format)
  return arch


def describe_architecture(arch):
  """One line describing a dict from `infer_architecture`.

  For example 'ResNet-50 2x, SK (sk_ratio=0.0625), ImageNet stem, 3-layer
  nonlinear projection head (128 out), 1000 classes'.
  """
  parts = [f'ResNet-{arch["resnet_depth"]} {arch["width_multiplier"]}x']
  if arch['sk_ratio']:
    parts.append(f'SK (sk_ratio={arch["sk_ratio"]})')
  if arch['se_ratio']:
    parts.append(f'SE (se_ratio={arch["se_ratio"]})')
  parts.append('CIFAR stem' if arch['cifar_stem'] else 'ImageNet stem')
  parts.append(f'{arch["num_proj_layers"]}-layer {arch["proj_head_mode"]} '
               f'projection head ({arch["proj_out_dim"]} out)'
               if arch['has_projection_head'] else 'no projection head')
  parts.append(f'{arch["num_classes"]} classes' if arch['has_supervised_head']
               else 'no supervised head')
  return ', '.join(parts)


def model_config_for(arch, **overrides):
  """A ModelConfig whose model has exactly the variables of `arch`.

  Args:
    arch: from `infer_architecture`.
    **overrides: other ModelConfig fields (e.g. image_size, global_bn).

  Returns:
    ModelConfig in fine-tuning mode when the checkpoint has a supervised
    head, else in pretraining mode without one; global_bn off (it changes
    no variable) and a small image size (enough to build the variables).
  """
  finetune = arch['has_supervised_head']
  fields = dict(
      num_classes=arch['num_classes'] or 1000,
      resnet_depth=arch['resnet_depth'],
      width_multiplier=arch['width_multiplier'],
      sk_ratio=arch['sk_ratio'], se_ratio=arch['se_ratio'],
      cifar_stem=arch['cifar_stem'],
      image_size=32 if arch['cifar_stem'] else 64,
      proj_head_mode=arch['proj_head_mode'],
      num_proj_layers=arch['num_proj_layers'] or 3,
      proj_out_dim=arch['proj_out_dim'] or 128,
      train_mode='finetune' if finetune else 'pretrain',
      lineareval_while_pretraining=finetune, global_bn=False)
  fields.update(overrides)
  return config_lib.ModelConfig(**fields)
