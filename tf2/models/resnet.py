"""The (SK-)ResNet encoder of SimCLRv1/v2.

Checkpoint format: the attribute names of these layers (`initial_conv_relu_max_pool`,
`block_groups`, `layers`, `projection_layers`, `conv_relu_dropblock_layers`,
`shortcut_layers`, `conv2d_bn_layers`, `bn`, `conv2d`, `conv2d_fixed_padding`,
`batch_norm_relu`, `conv2d_0`, `batch_norm_relu_1`, `conv2d_1`, `se_reduce`,
`se_expand`) and the positions of layers inside those lists ARE the object
graph of the published TF2 checkpoints. Renaming an attribute, or adding or
removing a layer from a list (even one without variables, such as the
DropBlock placeholders), breaks loading of Google's weights. Everything else
is ordinary code. `tests/test_checkpoint_layout.py` pins the format against
`../shared/fixtures/checkpoint_layouts`.

The small layers (padding, convolution, SK and SE) are in `layers.py`. The
convolutions are `conv_ops.Conv2D`: Keras's Conv2D (same variables, names
and keys) with an input gradient that avoids TensorFlow's slow CPU kernel;
the batch norms are `batch_norm.BatchNormRelu`, the reference's ops.
"""

import tensorflow as tf
import tf_keras

from tf2.models import batch_norm
from tf2.models import layers as layers_lib
from tf2.models import recompute

# Blocks per group for each supported depth, and which block type they use.
# Depth 10 is not a published SimCLR model: a small student for distillation.
_DEPTH_TO_BLOCKS = {
    10: ('residual', [1, 1, 1, 1]),
    18: ('residual', [2, 2, 2, 2]),
    34: ('residual', [3, 4, 6, 3]),
    50: ('bottleneck', [3, 4, 6, 3]),
    101: ('bottleneck', [3, 4, 23, 3]),
    152: ('bottleneck', [3, 8, 36, 3]),
    200: ('bottleneck', [3, 24, 36, 3]),
}
SUPPORTED_DEPTHS = tuple(sorted(_DEPTH_TO_BLOCKS))


def _projection_shortcut(filters_out, strides, sk_ratio, bn_kwargs):
  """Layers of the shortcut of a group's first block.

  With SK (SimCLRv2's ResNet-D variant, https://arxiv.org/abs/1812.01187) the
  shortcut average-pools before its 1x1 convolution instead of striding it.
  """
  layers = []
  if sk_ratio > 0:
    if strides > 1:
      layers.append(layers_lib.FixedPadding(2))
    layers.append(tf_keras.layers.AveragePooling2D(
        pool_size=2, strides=strides,
        padding='same' if strides == 1 else 'valid'))
    layers.append(layers_lib.Conv2dFixedPadding(filters_out, kernel_size=1, strides=1))
  else:
    layers.append(layers_lib.Conv2dFixedPadding(filters_out, kernel_size=1,
                                     strides=strides))
  layers.append(batch_norm.BatchNormRelu(relu=False, **bn_kwargs))
  return layers


class ResidualBlock(tf_keras.layers.Layer):
  """Basic two-conv block of ResNet-18/34."""

  def __init__(self, filters, strides, use_projection=False, sk_ratio=0.0,
               se_ratio=0.0, batch_norm_decay=0.9, global_bn=False, **kwargs):
    super().__init__(**kwargs)
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.conv2d_bn_layers = []
    self.shortcut_layers = []
    if use_projection:
      self.shortcut_layers = _projection_shortcut(filters, strides, sk_ratio,
                                                  bn)
    self.conv2d_bn_layers = [
        layers_lib.Conv2dFixedPadding(filters, kernel_size=3, strides=strides),
        batch_norm.BatchNormRelu(**bn),
        layers_lib.Conv2dFixedPadding(filters, kernel_size=3, strides=1),
        batch_norm.BatchNormRelu(relu=False, init_zero=True, **bn),
    ]
    self.se_layer = layers_lib.SE_Layer(filters, se_ratio) if se_ratio > 0 else None

  def call(self, inputs, training=None):
    shortcut = inputs
    for layer in self.shortcut_layers:
      shortcut = layer(shortcut, training=training)
    for layer in self.conv2d_bn_layers:
      inputs = layer(inputs, training=training)
    if self.se_layer is not None:
      inputs = self.se_layer(inputs, training=training)
    return tf.nn.relu(inputs + shortcut)


class BottleneckBlock(tf_keras.layers.Layer):
  """1x1 -> 3x3 (or SK) -> 1x1 block of ResNet-50 and deeper."""

  def __init__(self, filters, strides, use_projection=False, sk_ratio=0.0,
               se_ratio=0.0, batch_norm_decay=0.9, global_bn=False, **kwargs):
    super().__init__(**kwargs)
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.projection_layers = []
    if use_projection:
      self.projection_layers = _projection_shortcut(4 * filters, strides,
                                                    sk_ratio, bn)
    self.shortcut_dropblock = layers_lib.DropBlock()
    layers = [
        layers_lib.Conv2dFixedPadding(filters, kernel_size=1, strides=1),
        batch_norm.BatchNormRelu(**bn),
        layers_lib.DropBlock(),
    ]
    if sk_ratio > 0:
      layers.append(layers_lib.SK_Conv2D(filters, strides, sk_ratio, **bn))
    else:
      layers.append(layers_lib.Conv2dFixedPadding(filters, kernel_size=3,
                                       strides=strides))
      layers.append(batch_norm.BatchNormRelu(**bn))
    layers += [
        layers_lib.DropBlock(),
        layers_lib.Conv2dFixedPadding(4 * filters, kernel_size=1, strides=1),
        batch_norm.BatchNormRelu(relu=False, init_zero=True, **bn),
        layers_lib.DropBlock(),
    ]
    if se_ratio > 0:
      layers.append(layers_lib.SE_Layer(filters, se_ratio))
    self.conv_relu_dropblock_layers = layers

  def call(self, inputs, training=None):
    shortcut = inputs
    for layer in self.projection_layers:
      shortcut = layer(shortcut, training=training)
    shortcut = self.shortcut_dropblock(shortcut, training=training)
    for layer in self.conv_relu_dropblock_layers:
      inputs = layer(inputs, training=training)
    return tf.nn.relu(inputs + shortcut)


class BlockGroup(tf_keras.layers.Layer):
  """A stage of blocks; the first one changes width and stride."""

  def __init__(self, filters, block_fn, blocks, strides, block_kwargs,
               recompute_blocks=False, **kwargs):
    super().__init__(**kwargs)
    self.recompute_blocks = recompute_blocks  # A bool: not in checkpoints.
    self.layers = [block_fn(filters, strides, use_projection=True,
                            **block_kwargs)]
    for _ in range(1, blocks):
      self.layers.append(block_fn(filters, 1, **block_kwargs))

  def call(self, inputs, training=None):
    rerun = self.recompute_blocks and recompute.applies(training)
    for layer in self.layers:
      if rerun and layer.trainable:
        inputs = recompute.call_recomputed(layer, inputs, training)
      else:
        inputs = layer(inputs, training=training)
    return inputs


class Resnet(tf_keras.layers.Layer):
  """The encoder: stem, four block groups, global average pool.

  Args:
    depth: one of SUPPORTED_DEPTHS.
    width_multiplier: channel multiplier (1, 2, 3, 4 in the published models).
    cifar_stem: a 3x3 stride-1 stem without max pool, for images <= 32 px.
    sk_ratio: > 0 selects SK convolutions and the ResNet-D stem / shortcuts.
    se_ratio: > 0 adds squeeze-and-excitation to every block.
    batch_norm_decay: moving-average momentum of every batch norm.
    global_bn: synchronise batch statistics across replicas.
    fine_tune_after_block: -1 trains everything; k >= 0 freezes the stem and
      block groups 1..k (0: only the stem; 4: the whole encoder). Frozen
      layers get trainable=False (so their batch norms keep their moving
      statistics) and gradients stop at the frozen part's output.
    recompute_blocks: in training under a tape, keep only each residual
      block's input and recompute its activations in the backward pass
      (recompute.py): less memory, one more forward pass, same gradients.
  """

  def __init__(self, depth, width_multiplier, cifar_stem=False, sk_ratio=0.0,
               se_ratio=0.0, batch_norm_decay=0.9, global_bn=False,
               fine_tune_after_block=-1, recompute_blocks=False, **kwargs):
    super().__init__(**kwargs)
    if depth not in _DEPTH_TO_BLOCKS:
      raise ValueError(f'resnet_depth={depth} is not supported; use one of '
                       f'{SUPPORTED_DEPTHS}.')
    block_type, blocks = _DEPTH_TO_BLOCKS[depth]
    block_fn = BottleneckBlock if block_type == 'bottleneck' else ResidualBlock
    self.fine_tune_after_block = fine_tune_after_block
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.initial_conv_relu_max_pool = self._stem(width_multiplier, cifar_stem,
                                                 sk_ratio, bn)

    block_kwargs = dict(sk_ratio=sk_ratio, se_ratio=se_ratio, **bn)
    self.block_groups = []
    for i, (filters, strides) in enumerate(
        [(64, 1), (128, 2), (256, 2), (512, 2)]):
      self.block_groups.append(BlockGroup(
          filters * width_multiplier, block_fn, blocks[i], strides,
          block_kwargs, recompute_blocks=recompute_blocks,
          name=f'block_group{i + 1}'))
    # Setting the property (not the constructor argument) reaches the inner
    # batch norms too, so frozen ones normalise with, and keep, their moving
    # statistics.
    if fine_tune_after_block > -1:
      for layer in self.initial_conv_relu_max_pool:
        layer.trainable = False
      for group in self.block_groups[:fine_tune_after_block]:
        group.trainable = False

  @staticmethod
  def _stem(width_multiplier, cifar_stem, sk_ratio, bn):
    """The stem's layer list; its order is part of the checkpoint format."""
    width = 64 * width_multiplier
    if cifar_stem:
      return [
          layers_lib.Conv2dFixedPadding(width, kernel_size=3, strides=1),
          layers_lib.IdentityLayer(name='initial_conv'),
          batch_norm.BatchNormRelu(**bn),
          layers_lib.IdentityLayer(name='initial_max_pool'),
      ]
    if sk_ratio > 0:
      layers = [
          layers_lib.Conv2dFixedPadding(width // 2, kernel_size=3, strides=2),
          batch_norm.BatchNormRelu(**bn),
          layers_lib.Conv2dFixedPadding(width // 2, kernel_size=3, strides=1),
          batch_norm.BatchNormRelu(**bn),
          layers_lib.Conv2dFixedPadding(width, kernel_size=3, strides=1),
      ]
    else:
      layers = [layers_lib.Conv2dFixedPadding(width, kernel_size=7, strides=2)]
    return layers + [
        layers_lib.IdentityLayer(name='initial_conv'),
        batch_norm.BatchNormRelu(**bn),
        tf_keras.layers.MaxPooling2D(pool_size=3, strides=2, padding='same'),
        layers_lib.IdentityLayer(name='initial_max_pool'),
    ]

  def call(self, inputs, training=None, return_endpoints=False):
    """Encodes images to pooled features.

    Args:
      inputs: float images (B, H, W, 3).
      training: batch-norm mode.
      return_endpoints: also return the dict of named intermediate outputs
        (`initial_conv`, `initial_max_pool`, `block_group1..4`,
        `final_avg_pool`) that the SavedModel exposes.

    Returns:
      Features (B, 512 * width) for ResNet-18/34, (B, 2048 * width)
      otherwise; with return_endpoints, (features, endpoints).
    """
    endpoints = {}
    for layer in self.initial_conv_relu_max_pool:
      inputs = layer(inputs, training=training)
      if isinstance(layer, layers_lib.IdentityLayer):
        endpoints[layer.name] = inputs
    for i, group in enumerate(self.block_groups):
      if i == self.fine_tune_after_block:
        inputs = tf.stop_gradient(inputs)
      inputs = group(inputs, training=training)
      endpoints[group.name] = inputs
    if self.fine_tune_after_block == 4:
      inputs = tf.stop_gradient(inputs)
    inputs = tf.reduce_mean(inputs, [1, 2])
    endpoints['final_avg_pool'] = inputs
    if return_endpoints:
      return inputs, endpoints
    return inputs
