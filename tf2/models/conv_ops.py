"""2-D convolution whose gradients avoid TensorFlow's slow CPU kernels.

Why this exists: on x86 CPUs without AVX512_VNNI, AVX512_BF16 or AMX (an
AVX2-only EPYC or Xeon, for instance) TensorFlow leaves oneDNN off by default
and runs its Eigen kernels. Eigen's `Conv2DBackpropInput` is pathological on
small feature maps: for dy of shape (128, 2, 2, 512) and a 3x3x512x512 kernel
it takes about 1.5-2 s where the equivalent forward convolution takes 30 ms,
and a ResNet's last block groups (2x2 to 8x8 maps at 16-64 px) spend most of a
training step there. The filter gradient and the forward convolution are not
affected, and neither is oneDNN's input gradient.

What it does: `Conv2D` is `tf_keras.layers.Conv2D` with the same variables,
the same layer names and therefore the same checkpoint keys; only the
gradient of its convolution with respect to its input is computed
differently, and only when no GPU or TPU is visible (cuDNN and XLA:TPU have
good kernels of their own, so accelerator behaviour is left untouched) and a
gradient tape is recording (inference and export graphs stay as they were):

- stride 1: the input gradient is itself a forward convolution, of dy with
  the kernel flipped in space and its channel axes swapped, padded by
  `kernel_size - 1 - forward padding` on each side;
- stride > 1 and an output of at most `MAX_COL2IM_POSITIONS` positions per
  image: one matrix product dy @ kernel^T gives every tap's contribution
  (col2im), and each tap is added, by padding, into one of the stride x
  stride phases of the input, which are then interleaved;
- stride > 1 on larger outputs: TensorFlow's own kernel, as fast there from
  14x14 outputs on, while the col2im buffer (kernel_size^2 values per output
  position and input channel) grows.

The filter gradient is TensorFlow's own `Conv2DBackpropFilter` in every case:
no reformulation measured faster. Both gradients equal TensorFlow's to
float32 rounding (see tests/test_conv_ops.py). Second-order gradients are not
tested (nothing in SimCLR needs them).
"""

import tensorflow as tf
import tf_keras
# No public API says whether a GradientTape is recording.
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

# Largest output (rows x columns) of a strided convolution whose input
# gradient goes through col2im; beyond it Eigen's own kernel is as fast.
MAX_COL2IM_POSITIONS = 64

_cpu_gradients_override = None


def set_cpu_gradients(enabled):
  """Forces the reformulated gradients on or off; None restores automatic.

  Takes effect for convolutions traced after the call. Meant for benchmarks
  and tests that compare with TensorFlow's own gradients.

  Args:
    enabled: True, False, or None (on exactly when no GPU or TPU is visible).
  """
  global _cpu_gradients_override
  _cpu_gradients_override = enabled


def cpu_gradients_enabled():
  """Whether `Conv2D` layers traced now use the reformulated gradients."""
  if _cpu_gradients_override is not None:
    return _cpu_gradients_override
  return not (tf.config.list_logical_devices('GPU') or
              tf.config.list_logical_devices('TPU'))


def _padding_amounts(size, kernel_size, stride, padding):
  """(before, after) padding TensorFlow applies along one spatial axis."""
  if padding == 'VALID':
    return 0, 0
  out_size = -(-size // stride)
  total = max((out_size - 1) * stride + kernel_size - size, 0)
  return total // 2, total - total // 2


def _flipped_transposed(kernel):
  """(kh, kw, C, K) -> (kh, kw, K, C), taps reversed: the adjoint kernel."""
  return tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])


def _stride1_input_gradient(dy, kernel, pads):
  """Input gradient of a stride-1 convolution as a forward convolution.

  Args:
    dy: (B, Ho, Wo, K) gradient of the output.
    kernel: (kh, kw, C, K).
    pads: ((top, bottom), (left, right)) padding of the forward pass.

  Returns:
    (B, H, W, C).
  """
  kh, kw = kernel.shape[0], kernel.shape[1]
  (top, bottom), (left, right) = pads
  padding = [[0, 0], [kh - 1 - top, kh - 1 - bottom],
             [kw - 1 - left, kw - 1 - right], [0, 0]]
  return tf.nn.conv2d(dy, _flipped_transposed(kernel), 1, padding)


def _col2im_input_gradient(dy, kernel, input_hw, strides, pads):
  """Input gradient of a strided convolution: one matmul, then col2im.

  Input row `s * i + a` receives tap `a` of output row `i`; in the phase
  `a % s` of the input (rows s * t + a % s) that is row `i + a // s`, so each
  tap's contribution is a shifted copy of a (B, Ho, Wo, C) tensor.

  Args:
    dy: (B, Ho, Wo, K) gradient of the output.
    kernel: (kh, kw, C, K).
    input_hw: (H, W) of the forward input.
    strides: (sh, sw).
    pads: ((top, bottom), (left, right)) padding of the forward pass.

  Returns:
    (B, H, W, C).
  """
  kh, kw, channels, filters = kernel.shape
  (sh, sw), (out_h, out_w) = strides, dy.shape[1:3]
  padded_h = input_hw[0] + sum(pads[0])
  padded_w = input_hw[1] + sum(pads[1])
  phase_h, phase_w = -(-padded_h // sh), -(-padded_w // sw)
  batch = tf.shape(dy)[0]
  columns = tf.matmul(tf.reshape(dy, [-1, filters]),
                      tf.reshape(kernel, [-1, filters]), transpose_b=True)
  columns = tf.reshape(columns, [batch, out_h, out_w, kh * kw, channels])
  taps = tf.unstack(columns, axis=3)
  phases = [[[] for _ in range(sw)] for _ in range(sh)]
  for a in range(kh):
    for b in range(kw):
      shift_h, shift_w = a // sh, b // sw
      phases[a % sh][b % sw].append(tf.pad(
          taps[a * kw + b],
          [[0, 0], [shift_h, phase_h - out_h - shift_h],
           [shift_w, phase_w - out_w - shift_w], [0, 0]]))
  zeros = tf.zeros([batch, phase_h, phase_w, channels], dy.dtype)
  rows = [tf.stack([tf.add_n(p) if p else zeros for p in row], axis=3)
          for row in phases]
  grid = tf.stack(rows, axis=2)  # (B, phase_h, sh, phase_w, sw, C)
  dx = tf.reshape(grid, [batch, phase_h * sh, phase_w * sw, channels])
  (top, _), (left, _) = pads
  return dx[:, top:top + input_hw[0], left:left + input_hw[1]]


def _input_gradient(dy, x, kernel, strides, padding):
  """d loss / d x of conv2d(x, kernel), choosing the formulation by shape."""
  input_hw = tuple(x.shape[1:3])
  pads = tuple(_padding_amounts(n, k, s, padding)
               for n, k, s in zip(input_hw, kernel.shape[:2], strides))
  if strides == (1, 1):
    return _stride1_input_gradient(dy, kernel, pads)
  if dy.shape[1] * dy.shape[2] <= MAX_COL2IM_POSITIONS:
    return _col2im_input_gradient(dy, kernel, input_hw, strides, pads)
  return tf.raw_ops.Conv2DBackpropInput(
      input_sizes=tf.shape(x), filter=kernel, out_backprop=dy,
      strides=[1, *strides, 1], padding=padding)


def _filter_gradient(dy, x, kernel, strides, padding):
  """d loss / d kernel of conv2d(x, kernel): TensorFlow's own kernel."""
  return tf.raw_ops.Conv2DBackpropFilter(
      input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
      strides=[1, *strides, 1], padding=padding)


def conv2d(inputs, kernel, strides, padding):
  """`tf.nn.conv2d` (NHWC, no dilation) with CPU-friendly gradients.

  Args:
    inputs: (B, H, W, C) with H and W known when tracing.
    kernel: (kh, kw, C, K) tensor.
    strides: (sh, sw).
    padding: 'VALID' or 'SAME'.

  Returns:
    (B, Ho, Wo, K), the same values as tf.nn.conv2d.
  """
  strides = tuple(int(s) for s in strides)

  @tf.custom_gradient
  def convolve(x, w):
    # Gradient ops named as TensorFlow names its own, for readable profiles.
    scope = f'gradient_tape/{tf.get_current_name_scope()}/'

    def grad(dy):
      with tf.name_scope(scope):
        return (_input_gradient(dy, x, w, strides, padding),
                _filter_gradient(dy, x, w, strides, padding))
    return tf.nn.conv2d(x, w, strides, padding), grad

  return convolve(inputs, kernel)


class Conv2D(tf_keras.layers.Conv2D):
  """`tf_keras.layers.Conv2D` whose gradients use `conv2d` on CPU hosts.

  Same constructor, variables and default names as the Keras layer (the class
  name is kept so that layer names, and so variable names, do not change).
  It is the Keras op unchanged when no gradient tape is recording, and in
  configurations `conv2d` does not cover (dilation, groups, channels_first,
  explicit padding, spatial size unknown when tracing).
  """

  def _reformulated(self, inputs):
    # Without a recording tape (inference, export, evaluation) the op stays
    # TensorFlow's own, so those graphs and their fusions are unchanged.
    return (record.could_possibly_record() and cpu_gradients_enabled() and
            self.groups == 1 and
            self.data_format == 'channels_last' and
            tuple(self.dilation_rate) == (1, 1) and
            self.padding in ('valid', 'same') and
            inputs.shape[1:3].is_fully_defined())

  def convolution_op(self, inputs, kernel):
    if not self._reformulated(inputs):
      return super().convolution_op(inputs, kernel)
    # A tensor, not the variable: custom_gradient differentiates its inputs,
    # and reading here also applies mixed precision's autocast.
    return conv2d(inputs, tf.convert_to_tensor(kernel), self.strides,
                  self.padding.upper())
