"""The encoder's batch norm is the reference's, in value and in statistics.

The reference normalises with `BatchNormalization(fused=False)`; in training
mode, where batch statistics amplify any reduction-order difference through
a deep network, our BatchNormRelu must give its values bit for bit, with or
without its fused-kernel gradient path (benchmarks/train_mode_drift.py
measures the whole networks).
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import golden
from tests.test_checkpoint_io import write_tf1_checkpoint
from tf2.checkpoints import restore as checkpoint_restore
from tf2.models import batch_norm
from tf2.models import conv_ops
from tf2.models import model as model_lib

CHANNELS = 16


@pytest.fixture(params=[True, False], ids=['fused_gradient', 'keras_layer'])
def fused_gradient(request):
  """Both paths of BatchNormRelu: its own gradient, the Keras layer's."""
  conv_ops.set_cpu_gradients(request.param)
  yield request.param
  conv_ops.set_cpu_gradients(None)


def _inputs(seed=0, shape=(8, 6, 6, CHANNELS)):
  rng = np.random.RandomState(seed)
  return tf.constant(3 * rng.standard_normal(shape) + 1, tf.float32)


def _built(layer, bn, center):
  layer(_inputs()[:1], training=False)
  bn.gamma.assign(np.linspace(0.5, 1.5, CHANNELS))
  if center:
    bn.beta.assign(np.linspace(-1, 1, CHANNELS))
  return layer


def _ours(center=True):
  layer = batch_norm.BatchNormRelu(relu=False, center=center)
  return _built(layer, layer.bn, center), layer.bn


def _reference_layer(center=True):
  """The reference's batch norm, as its resnet.py builds it."""
  bn = tf_keras.layers.BatchNormalization(
      momentum=0.9, epsilon=batch_norm.BATCH_NORM_EPSILON, center=center,
      fused=False)
  return _built(bn, bn, center), bn


def _train_step(layer, bn, inputs, weights, jit_compile=False):
  """Outputs, d loss / d (inputs, gamma[, beta]) and the moving statistics."""

  @tf.function(jit_compile=jit_compile)
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.cast(layer(x, training=True), tf.float32)
      loss = tf.reduce_sum(weights * y * y)
    return [y] + tape.gradient(loss, [x] + bn.trainable_variables)

  results = [t.numpy() for t in step(inputs)]
  return results, [bn.moving_mean.numpy(), bn.moving_variance.numpy()]


@pytest.mark.parametrize('center', [True, False])
def test_training_outputs_and_moving_statistics_are_the_references_bit_for_bit(
    fused_gradient, center):
  del fused_gradient  # Both paths must agree.
  inputs, weights = _inputs(0), _inputs(1)
  ours, reference = _ours(center), _reference_layer(center)
  (our_values, our_stats) = _train_step(*ours, inputs, weights)
  (ref_values, ref_stats) = _train_step(*reference, inputs, weights)
  np.testing.assert_array_equal(our_values[0], ref_values[0])
  for ours_stat, ref_stat in zip(our_stats, ref_stats):
    np.testing.assert_array_equal(ours_stat, ref_stat)


@pytest.mark.parametrize('jit_compile', [False, True])
@pytest.mark.parametrize('policy', ['float32', 'mixed_bfloat16'])
def test_gradients_equal_those_of_the_references_ops(fused_gradient,
                                                     jit_compile, policy):
  del fused_gradient
  inputs, weights = _inputs(0), _inputs(1)
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    ours, reference = _ours(), _reference_layer()
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  our_values, _ = _train_step(*ours, inputs, weights, jit_compile)
  ref_values, _ = _train_step(*reference, inputs, weights, jit_compile)
  np.testing.assert_array_equal(our_values[0], ref_values[0])
  for name, actual, expected in zip(['dx', 'dgamma', 'dbeta'],
                                    our_values[1:], ref_values[1:]):
    golden.assert_close_relative(actual, expected, 1e-5, name)


def test_moving_variance_averages_the_biased_batch_variance(fused_gradient):
  # The fused Keras kernel would average N / (N - 1) times it (+0.3% here).
  del fused_gradient
  inputs, weights = _inputs(0), _inputs(1)
  layer, bn = _ours()
  _train_step(layer, bn, inputs, weights)
  batch = inputs.numpy().reshape(-1, CHANNELS).astype(np.float64)
  np.testing.assert_allclose(bn.moving_mean.numpy(),
                             0.1 * batch.mean(0), rtol=1e-5)
  np.testing.assert_allclose(bn.moving_variance.numpy(),
                             0.9 + 0.1 * batch.var(0), rtol=1e-6)


def test_two_replicas_keep_the_reference_layers_statistics(two_cpu_strategy,
                                                           fused_gradient):
  del fused_gradient
  inputs, weights = _inputs(0), _inputs(1)
  stats = []
  for make in (_ours, _reference_layer):
    with two_cpu_strategy.scope():
      layer, bn = make()

    @tf.function
    def step(x, layer=layer, bn=bn):
      def replica_step(x):
        with tf.GradientTape() as tape:
          y = layer(x, training=True)
          loss = tf.reduce_sum(weights[:4] * y * y)
        return tape.gradient(loss, bn.trainable_variables)
      return two_cpu_strategy.run(replica_step, (x,))

    dataset = two_cpu_strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(inputs).unbatch().batch(8))
    step(next(iter(dataset)))
    stats.append([bn.moving_mean.numpy(), bn.moving_variance.numpy()])
  for ours_stat, ref_stat in zip(*stats):
    np.testing.assert_array_equal(ours_stat, ref_stat)


def test_train_mode_under_a_tape_matches_the_goldens_tighter(tmp_path):
  # Under a tape (a train step) BatchNormRelu takes its fused-gradient path;
  # its forward must stay the reference's: bit for bit the tape-free pass,
  # and 25x tighter than test_model's 5e-3 on the shallow fixture (where
  # kernel-library and machine differences stay below 2e-5).
  fixture_config, arrays = golden.load_golden('r18_1x_sk0_32px')
  model = model_lib.build_model(golden.golden_config(fixture_config))
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'),
                                golden.golden_weights(fixture_config, arrays))
  checkpoint_restore.restore_model_weights(model, prefix, strict=True)
  images = tf.constant(arrays['input'])
  # Moving statistics change with each training pass; outputs do not.
  with tf.GradientTape():
    taped = model.endpoints(images, training=True)
  plain = model.endpoints(images, training=True)
  for key, expected in arrays.items():
    mode, _, endpoint = key.partition('/')
    if mode != 'train':
      continue
    np.testing.assert_array_equal(taped[endpoint].numpy(),
                                  plain[endpoint].numpy())
    golden.assert_close_relative(taped[endpoint].numpy(), expected, 2e-4, key)


def test_fused_gradient_path_is_refused_where_a_gpu_is_visible(monkeypatch):
  # cuDNN's batch-norm gradient kernel reads other saved statistics than the
  # CPU kernel this path feeds, so even a forced-on conv_ops switch must not
  # send a GPU's training step through it.
  layer, _ = _ours()
  inputs = _inputs()
  conv_ops.set_cpu_gradients(True)
  try:
    with tf.GradientTape():
      assert layer._fused_gradient_applies(inputs, True)
      real_list = tf.config.list_logical_devices
      monkeypatch.setattr(
          tf.config, 'list_logical_devices',
          lambda kind=None: (['/device:GPU:0'] if kind == 'GPU'
                             else real_list(kind)))
      assert not layer._fused_gradient_applies(inputs, True)
  finally:
    conv_ops.set_cpu_gradients(None)
  # Nor outside a tape, in inference, or for float64.
  monkeypatch.undo()
  assert not layer._fused_gradient_applies(inputs, True)
  with tf.GradientTape():
    assert not layer._fused_gradient_applies(inputs, False)
    assert not layer._fused_gradient_applies(tf.cast(inputs, tf.float64),
                                             True)
