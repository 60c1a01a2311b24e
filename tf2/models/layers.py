"""The small layers of the (SK-)ResNet: padding, convolution, SK and SE.

Split from `resnet.py` (the reference keeps them there); their attribute
names are part of the published object graph just as the blocks' are (see
resnet.py's docstring), and their class names give the Keras layer names.
"""

import tensorflow as tf
import tf_keras

from tf2.models import batch_norm
from tf2.models import conv_ops


def conv_initializer():
  return tf_keras.initializers.VarianceScaling()


class DropBlock(tf_keras.layers.Layer):
  """Placeholder kept for the object graph.

  The published models never enable DropBlock (keep_prob is None), but the
  reference keeps these layers in its lists, so list indices in checkpoint
  keys count them. This layer is the identity.
  """

  def call(self, inputs, training=None):
    return inputs


class FixedPadding(tf_keras.layers.Layer):
  """Pads H and W by `kernel_size - 1` in total, independent of input size."""

  def __init__(self, kernel_size, **kwargs):
    super().__init__(**kwargs)
    self.kernel_size = kernel_size

  def call(self, inputs, training=None):
    pad_total = self.kernel_size - 1
    pad_beg = pad_total // 2
    pad_end = pad_total - pad_beg
    return tf.pad(inputs,
                  [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])


class Conv2dFixedPadding(tf_keras.layers.Layer):
  """Strided convolution with explicit padding (TF1 ResNet convention)."""

  def __init__(self, filters, kernel_size, strides, **kwargs):
    super().__init__(**kwargs)
    self.fixed_padding = FixedPadding(kernel_size) if strides > 1 else None
    self.conv2d = conv_ops.Conv2D(
        filters=filters, kernel_size=kernel_size, strides=strides,
        padding='same' if strides == 1 else 'valid', use_bias=False,
        kernel_initializer=conv_initializer())

  def call(self, inputs, training=None):
    if self.fixed_padding is not None:
      inputs = self.fixed_padding(inputs)
    return self.conv2d(inputs)


class IdentityLayer(tf_keras.layers.Layer):
  """Marks an endpoint (`initial_conv`, `initial_max_pool`) in the stem list."""

  def call(self, inputs, training=None):
    return tf.identity(inputs)


class SK_Conv2D(tf_keras.layers.Layer):  # pylint: disable=invalid-name
  """Selective-kernel 3x3 convolution (https://arxiv.org/abs/1903.06586).

  Two 3x3 streams computed as one convolution with twice the filters, mixed
  by a softmax attention computed from their pooled sum.
  """

  def __init__(self, filters, strides, sk_ratio, min_dim=32,
               batch_norm_decay=0.9, global_bn=False, **kwargs):
    super().__init__(**kwargs)
    bn = dict(batch_norm_decay=batch_norm_decay, global_bn=global_bn)
    self.conv2d_fixed_padding = Conv2dFixedPadding(
        filters=2 * filters, kernel_size=3, strides=strides)
    self.batch_norm_relu = batch_norm.BatchNormRelu(**bn)
    mid_dim = max(int(filters * sk_ratio), min_dim)
    self.conv2d_0 = conv_ops.Conv2D(
        filters=mid_dim, kernel_size=1, strides=1, use_bias=False,
        kernel_initializer=conv_initializer())
    self.batch_norm_relu_1 = batch_norm.BatchNormRelu(**bn)
    self.conv2d_1 = conv_ops.Conv2D(
        filters=2 * filters, kernel_size=1, strides=1, use_bias=False,
        kernel_initializer=conv_initializer())

  def call(self, inputs, training=None):
    streams = self.conv2d_fixed_padding(inputs)
    streams = self.batch_norm_relu(streams, training=training)
    streams = tf.stack(tf.split(streams, 2, axis=-1))  # (2, B, H, W, C)
    global_features = tf.reduce_mean(
        tf.reduce_sum(streams, axis=0), [1, 2], keepdims=True)
    global_features = self.conv2d_0(global_features)
    global_features = self.batch_norm_relu_1(global_features,
                                             training=training)
    mixing = self.conv2d_1(global_features)
    mixing = tf.nn.softmax(tf.stack(tf.split(mixing, 2, axis=-1)), axis=0)
    return tf.reduce_sum(streams * mixing, axis=0)


class SE_Layer(tf_keras.layers.Layer):  # pylint: disable=invalid-name
  """Squeeze-and-excitation (https://arxiv.org/abs/1709.01507)."""

  def __init__(self, filters, se_ratio, **kwargs):
    super().__init__(**kwargs)
    self.se_reduce = conv_ops.Conv2D(
        max(1, int(filters * se_ratio)), kernel_size=1, padding='same',
        use_bias=True, kernel_initializer=conv_initializer())
    self._se_expand_kwargs = dict(kernel_size=1, padding='same', use_bias=True,
                                  kernel_initializer=conv_initializer())
    self.se_expand = None

  def build(self, input_shape):
    # The expansion width is the input's channel count, known only here.
    self.se_expand = conv_ops.Conv2D(int(input_shape[-1]),
                                     **self._se_expand_kwargs)
    super().build(input_shape)

  def call(self, inputs, training=None):
    squeezed = tf.reduce_mean(inputs, [1, 2], keepdims=True)
    excitation = self.se_expand(tf.nn.relu(self.se_reduce(squeezed)))
    return tf.sigmoid(excitation) * inputs
