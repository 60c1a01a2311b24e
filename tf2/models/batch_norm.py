"""The encoder's batch norm: the reference's ops, with a fast CPU gradient.

The attribute name `bn` is part of the published checkpoints' object graph
(`.../batch_norm_relu/bn/gamma`); see resnet.py.
"""

import tensorflow as tf
import tf_keras
# No public API says whether a GradientTape is recording.
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

from tf2.models import conv_ops

BATCH_NORM_EPSILON = 1e-5


class BatchNormRelu(tf_keras.layers.Layer):
  """Batch norm (optionally synchronised across replicas), then optional ReLU.

  With `global_bn` the statistics are computed over the global batch of all
  replicas (SyncBatchNormalization), as in the paper. Otherwise the layer is
  the reference's `BatchNormalization(fused=False)`: `tf.nn.moments`, then
  `tf.nn.batch_normalization`, op for op.

  Why not the fused kernel, although it is the same maths: in training mode
  every batch norm normalises with its batch's statistics, so a different
  float32 reduction order (the fused kernel's) is amplified block after
  block. On SK ResNet-50/101/152 (batch 8) it put our train-mode outputs
  8e-4 to 1e-2 (block_group4) and 4e-3 to 5e-2 (projection head) of their
  scale away from the reference's: 2.5 to 4 times the reference's own
  change between oneDNN and Eigen kernels, and further from the float64
  values than the reference. With the reference's ops the two agree bit for
  bit, as the reference agrees with itself across processes
  (benchmarks/train_mode_drift.py). The fused kernel also averages the
  unbiased (N / (N - 1)) batch variance into the moving variance, where the
  reference averages the biased one.

  Why the gradient is still fast: the unfused ops' automatic gradient is
  some ten element-wise passes; with it a CPU train step (ResNet-18, 32 px)
  took ~10% more CPU time than with the fused kernel. In training, while a
  gradient tape records and `conv_ops.cpu_gradients_enabled()` (no GPU/TPU
  visible), the same forward ops carry TensorFlow's fused batch-norm
  gradient kernel instead (equal to float32 rounding), which leaves ~3%
  (the forward ops, their two Mean reductions mostly); the moving averages
  are updated as the Keras layer updates them. Elsewhere (inference,
  export, accelerators) the Keras layer runs as is.
  """

  def __init__(self, relu=True, init_zero=False, center=True, scale=True,
               batch_norm_decay=0.9, global_bn=False, **kwargs):
    super().__init__(**kwargs)
    self.relu = relu
    self.global_bn = global_bn
    gamma_initializer = 'zeros' if init_zero else 'ones'
    bn_kwargs = dict(axis=-1, momentum=batch_norm_decay,
                     epsilon=BATCH_NORM_EPSILON, center=center, scale=scale,
                     gamma_initializer=gamma_initializer)
    if global_bn:
      self.bn = tf_keras.layers.experimental.SyncBatchNormalization(
          **bn_kwargs)
    else:
      self.bn = tf_keras.layers.BatchNormalization(fused=False, **bn_kwargs)

  def call(self, inputs, training=None):
    if self._fused_gradient_applies(inputs, training):
      outputs = self._normalize_with_fused_gradient(inputs)
    else:
      outputs = self.bn(inputs, training=training)
    if self.relu:
      outputs = tf.nn.relu(outputs)
    return outputs

  def _fused_gradient_applies(self, inputs, training):
    # Only where the Keras layer would normalise with batch statistics
    # (training, trainable) and a gradient may be taken; a symbolic
    # `training` is left to the Keras layer, and so are float64 inputs (the
    # gradient kernel has no float64). Never with a GPU visible, even
    # when conv_ops' gradients are forced on: cuDNN's gradient kernel reads
    # other saved statistics than the CPU kernel this path feeds.
    return (isinstance(training, (bool, int)) and bool(training) and
            not self.global_bn and self.bn.built and self.bn.trainable and
            inputs.shape.rank == 4 and
            inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) and
            record.could_possibly_record() and
            conv_ops.cpu_gradients_enabled() and
            not tf.config.list_logical_devices('GPU'))

  def _normalize_with_fused_gradient(self, inputs):
    """The Keras layer's training-mode output, with the fused gradient.

    Args:
      inputs: (B, H, W, C) float32, float16 or bfloat16 (16-bit inputs are
        normalised in float32, as the Keras layer does).

    Returns:
      (B, H, W, C) normalised, in the inputs' dtype; the moving statistics
      are updated with the batch's.
    """
    bn = self.bn
    x = tf.cast(inputs, tf.float32)
    # The fused gradient kernel needs a scale; one without gamma gets ones
    # (and the forward pass still omits it, as the Keras layer does).
    channels = x.shape[-1]
    gamma = bn.gamma if bn.scale else tf.ones([channels])
    beta = bn.beta if bn.center else tf.zeros([channels])

    @tf.custom_gradient
    def normalize(x, gamma, beta):
      mean, variance = tf.nn.moments(x, [0, 1, 2])
      outputs = tf.nn.batch_normalization(
          x, mean, variance, beta if bn.center else None,
          gamma if bn.scale else None, bn.epsilon)

      def grad(doutputs, unused_dmean, unused_dvariance):
        # The CPU (and XLA) kernel takes the batch mean and variance.
        dx, dgamma, dbeta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
            y_backprop=doutputs, x=x, scale=gamma, reserve_space_1=mean,
            reserve_space_2=variance, reserve_space_3=variance,
            epsilon=bn.epsilon, data_format='NHWC', is_training=True)
        return dx, dgamma, dbeta

      return (outputs, mean, variance), grad

    outputs, mean, variance = normalize(x, gamma, beta)
    batch_size = tf.shape(x)[0]

    def update_moving_averages():
      # The Keras layer's update, (moving - batch) * (1 - momentum); an empty
      # batch (an idle replica) leaves the averages as they are.
      decay = tf.cast(1.0 - bn.momentum, tf.float32)
      for moving, value in ((bn.moving_mean, mean),
                            (bn.moving_variance, variance)):
        delta = (moving - tf.stop_gradient(value)) * decay
        moving.assign_sub(tf.where(batch_size > 0, delta,
                                   tf.zeros_like(delta)))

    # add_update, as the Keras layer: skipped in a cross-replica context.
    self.add_update(update_moving_averages)
    return tf.cast(outputs, inputs.dtype)
