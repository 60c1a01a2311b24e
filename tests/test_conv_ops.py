"""conv_ops.Conv2D: TensorFlow's values and gradients, Keras's variables."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.models import conv_ops
from tf2.models import resnet

# Float32 rounding: the reformulations sum the same products in another order.
TOLERANCE = 1e-5

# (input shape, Conv2D arguments, fixed padding before it): every kind of
# convolution of tf2/resnet.py, plus a strided one with a large output, which
# keeps TensorFlow's kernel.
CONV_KINDS = {
    '3x3_stride1_same': ((2, 6, 6, 3), dict(filters=4, kernel_size=3), 0),
    '3x3_stride2_fixed_padding': (
        (2, 6, 6, 3), dict(filters=4, kernel_size=3, strides=2), 2),
    '7x7_stride2_fixed_padding': (
        (2, 9, 9, 3), dict(filters=4, kernel_size=7, strides=2), 6),
    '1x1_stride1': ((2, 5, 5, 3), dict(filters=4, kernel_size=1), 0),
    '1x1_stride2': ((2, 5, 5, 3), dict(filters=4, kernel_size=1, strides=2),
                    0),
    'sk_1x1_on_pooled': ((2, 1, 1, 6), dict(filters=3, kernel_size=1), 0),
    'se_1x1_with_bias': ((2, 1, 1, 6), dict(filters=3, kernel_size=1,
                                            padding='same', use_bias=True), 0),
    '3x3_stride2_large_output': (
        (1, 20, 20, 2), dict(filters=3, kernel_size=3, strides=2), 2),
}


@pytest.fixture
def reformulated():
  """Forces conv_ops' gradients on (whatever devices are visible)."""
  conv_ops.set_cpu_gradients(True)
  yield
  conv_ops.set_cpu_gradients(None)


def _pair(kind):
  """A Keras Conv2D and a conv_ops.Conv2D with the same weights, an input."""
  input_shape, kwargs, fixed_padding = CONV_KINDS[kind]
  kwargs = dict(dict(use_bias=False, padding='valid'), **kwargs)
  rng = np.random.RandomState(0)
  inputs = tf.constant(rng.standard_normal(input_shape), tf.float32)
  if fixed_padding:
    begin = fixed_padding // 2
    inputs = tf.pad(inputs, [[0, 0], [begin, fixed_padding - begin],
                             [begin, fixed_padding - begin], [0, 0]])
  keras_layer = tf_keras.layers.Conv2D(**kwargs)
  layer = conv_ops.Conv2D(**kwargs)
  keras_layer.build(inputs.shape)
  layer.build(inputs.shape)
  layer.set_weights([rng.standard_normal(w.shape)
                     for w in keras_layer.get_weights()])
  keras_layer.set_weights(layer.get_weights())
  return keras_layer, layer, inputs


def _value_and_gradients(layer, inputs):
  """Output, d/d input and d/d each weight of a loss with random weights."""
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = layer(inputs)
    upstream = tf.cos(tf.cast(tf.range(tf.size(outputs)), tf.float32))
    loss = tf.reduce_sum(tf.cast(outputs, tf.float32) *
                         tf.reshape(upstream, outputs.shape))
  return [outputs] + tape.gradient(loss, [inputs] + layer.trainable_weights)


def _assert_close(actual, expected, tolerance=TOLERANCE):
  assert len(actual) == len(expected)
  for a, e in zip(actual, expected):
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    assert a.shape == e.shape
    np.testing.assert_array_less(np.abs(a - e).max(),
                                 tolerance * np.abs(e).max() + 1e-30)


@pytest.mark.parametrize('kind', list(CONV_KINDS))
def test_gradients_equal_tensorflows_for_every_conv_kind(kind, reformulated):
  keras_layer, layer, inputs = _pair(kind)
  _assert_close(_value_and_gradients(layer, inputs),
                _value_and_gradients(keras_layer, inputs))


@pytest.mark.parametrize('jit_compile', [False, True])
@pytest.mark.parametrize('kind', ['3x3_stride1_same',
                                  '3x3_stride2_fixed_padding', '1x1_stride2'])
def test_gradients_equal_tensorflows_inside_tf_function_and_xla(
    kind, jit_compile, reformulated):
  keras_layer, layer, inputs = _pair(kind)
  compiled = tf.function(_value_and_gradients, jit_compile=jit_compile)
  _assert_close(compiled(layer, inputs),
                compiled(keras_layer, inputs))


@pytest.mark.parametrize('policy,tolerance', [('mixed_bfloat16', 2e-2),
                                              ('mixed_float16', 2e-3)])
def test_mixed_precision_computes_in_low_precision_with_float32_kernel(
    policy, tolerance, reformulated):
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    keras_layer, layer, inputs = _pair('3x3_stride2_fixed_padding')
    ours = _value_and_gradients(layer, inputs)
    expected = _value_and_gradients(keras_layer, inputs)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  assert layer.kernel.dtype == tf.float32
  assert ours[0].dtype == tf_keras.mixed_precision.Policy(policy).compute_dtype
  assert ours[2].dtype == tf.float32
  _assert_close(ours, expected, tolerance)


def test_gradients_equal_tensorflows_on_two_replicas(two_cpu_strategy,
                                                     reformulated):
  with two_cpu_strategy.scope():
    keras_layer, layer, inputs = _pair('3x3_stride2_fixed_padding')

  @tf.function
  def replica_gradients(layer):
    return two_cpu_strategy.run(_value_and_gradients, (layer, inputs))

  ours = replica_gradients(layer)
  expected = replica_gradients(keras_layer)
  for a, e in zip(ours, expected):
    _assert_close(two_cpu_strategy.experimental_local_results(a),
                  two_cpu_strategy.experimental_local_results(e))


def _gradient_op_types(layer, inputs):
  graph = tf.function(_value_and_gradients).get_concrete_function(
      layer, inputs).graph
  return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize('kind', ['3x3_stride1_same',
                                  '3x3_stride2_fixed_padding'])
def test_reformulated_input_gradient_avoids_conv2d_backprop_input(
    kind, reformulated):
  _, layer, inputs = _pair(kind)
  assert 'Conv2DBackpropInput' not in _gradient_op_types(layer, inputs)


def test_switched_off_it_is_tensorflows_own_gradient():
  conv_ops.set_cpu_gradients(False)
  try:
    _, layer, inputs = _pair('3x3_stride1_same')
    assert 'Conv2DBackpropInput' in _gradient_op_types(layer, inputs)
  finally:
    conv_ops.set_cpu_gradients(None)


def test_without_a_tape_the_graph_is_tensorflows_own(reformulated):
  keras_layer, layer, inputs = _pair('3x3_stride1_same')
  op_types = [
      sorted(op.type for op in tf.function(l).get_concrete_function(
          inputs).graph.get_operations())
      for l in (keras_layer, layer)]
  assert op_types[0] == op_types[1]


def test_layer_keeps_keras_variables_names_and_checkpoint_keys(tmp_path):
  keras_layer, layer, _ = _pair('se_1x1_with_bias')
  assert layer.name.startswith('conv2d_')
  assert ([w.name.split('/')[-1] for w in layer.weights] ==
          [w.name.split('/')[-1] for w in keras_layer.weights])
  keys = []
  for i, l in enumerate([keras_layer, layer]):
    path = tf.train.Checkpoint(conv=l).write(str(tmp_path / f'ckpt{i}'))
    keys.append(sorted(name for name, _ in tf.train.list_variables(path)
                       if name != '_CHECKPOINTABLE_OBJECT_GRAPH'))
  assert keys[0] == keys[1] == ['conv/bias/.ATTRIBUTES/VARIABLE_VALUE',
                                'conv/kernel/.ATTRIBUTES/VARIABLE_VALUE']


def _encoder_gradients(encoder, images):
  with tf.GradientTape() as tape:
    features = encoder(images, training=True)
    loss = tf.reduce_sum(features * tf.cos(tf.range(features.shape[-1],
                                                     dtype=tf.float32)))
  return tape.gradient(loss, encoder.trainable_variables)


@pytest.mark.parametrize('depth,sk_ratio,se_ratio,size', [
    (18, 0.0, 0.0, 16),        # CIFAR stem, 3x3 and 1x1 strided convs.
    (50, 0.0625, 0.25, 32),    # ImageNet SK stem, SK convs, SE with bias.
])
def test_encoder_gradients_equal_tensorflows(depth, sk_ratio, se_ratio, size):
  encoder = resnet.Resnet(depth, 1, cifar_stem=size <= 16, sk_ratio=sk_ratio,
                          se_ratio=se_ratio)
  images = tf.random.stateless_uniform([2, size, size, 3], seed=(1, 2))
  gradients = {}
  for enabled in (True, False):
    conv_ops.set_cpu_gradients(enabled)
    try:
      gradients[enabled] = _encoder_gradients(encoder, images)
    finally:
      conv_ops.set_cpu_gradients(None)
  assert all(g is not None for g in gradients[True])
  _assert_close(gradients[True], gradients[False])
