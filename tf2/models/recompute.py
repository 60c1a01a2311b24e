"""Recomputed activations: a layer's forward pass repeated in the backward.

--recompute_blocks wraps every residual block: the forward pass keeps only
the block's input, and the backward pass runs the block again under a tape
to take its gradient (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost"). Activation memory falls from all layers' to the blocks'
inputs plus one block's; the price is one more forward pass of the encoder.

Why not `tf.recompute_grad` as it is: it reruns the function in the
backward pass, and a block in training mode updates its batch norms'
moving averages on every run, so each step would update them twice. This
wrapper is the same mechanism (`tf.custom_gradient`, the gradient of a
taped rerun) with the moving averages put back after the rerun. The
gradients are those of the plain forward pass; the rerun repeats it
exactly (no random ops in a block).
"""

import tensorflow as tf
# No public API says whether a GradientTape is recording.
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import


def _moving_statistics(layer):
  """The variables a training-mode pass writes: batch-norm moving averages."""
  return [v for v in layer.non_trainable_variables
          if 'moving_mean' in v.name or 'moving_variance' in v.name]


def after(tensor, dependency):
  """`tensor`, in a form that is computed only once `dependency` is.

  A graph (or XLA, which ignores control dependencies) may run independent
  work in any order, or at once: a block's rerun before the gradient that
  needs it arrives, or two micro-batches' passes together, which keeps both
  sets of activations alive and defeats the point of either. Adding a zero
  computed from `dependency` makes the order a data dependency (a NaN in
  it is kept, so a non-finite step is still seen as one).
  """
  first = tf.reshape(dependency, [-1])[:1]
  zero = tf.reduce_sum(tf.where(tf.math.is_nan(first), first,
                                tf.zeros_like(first)))
  return tensor + tf.cast(zero, tensor.dtype)


def applies(training):
  """Whether recomputing can save anything: training, with a tape recording."""
  return (isinstance(training, (bool, int)) and bool(training) and
          record.could_possibly_record())


def call_recomputed(layer, inputs, training):
  """`layer(inputs, training=training)`, its activations recomputed.

  Args:
    layer: a built Keras layer without random ops (a residual block).
    inputs: its input tensor.
    training: passed to the layer.

  Returns:
    The layer's output; its gradient (inputs and trainable variables) is
    taken from a rerun of the layer in the backward pass.
  """
  statistics = _moving_statistics(layer)

  @tf.custom_gradient
  def forward(x):
    outputs = layer(x, training=training)

    def backward(doutputs, variables=None):
      variables = list(variables or [])
      before = [tf.identity(v.read_value()) for v in statistics]
      # Rerun when the gradient arrives, not at once (see `after`).
      x_now = after(x, doutputs)
      with tf.GradientTape() as tape:
        tape.watch(x_now)
        tape.watch(variables)
        rerun = layer(x_now, training=training)
      with tf.control_dependencies([rerun]):
        for v, value in zip(statistics, before):
          v.assign(value)
      grads = tape.gradient(rerun, [x_now] + variables,
                            output_gradients=doutputs)
      return grads[0], grads[1:]

    return outputs, backward

  return forward(inputs)
