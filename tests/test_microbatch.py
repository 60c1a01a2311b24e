"""--num_microbatches: K micro-batches give the whole batch's loss exactly.

The yardstick for batch norm in training mode is K replicas with per-replica
statistics (--global_bn=False) on the same global batch: each then
normalises the same K groups of examples. Where no batch norm couples the
examples (frozen), the yardstick is the unchunked step itself. In float64,
so that float32 reduction-order noise cannot hide or fake a difference.
"""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.config import experiment as experiment_lib
from tf2.config import validation
from tf2.models import batch_norm
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.training import memory_buffer
from tf2.training import microbatch
from tf2.training import optimization
from tf2.training import step as training

_CONFIG = config_lib.ModelConfig(num_classes=4, resnet_depth=18, image_size=8,
                                 use_blur=False, proj_out_dim=8)
_BATCH = 8


def _one_replica():
  # The default strategy, run eagerly: a traced ResNet costs seconds.
  return tf.distribute.get_strategy()


@pytest.fixture
def float64():
  tf_keras.mixed_precision.set_global_policy('float64')
  yield
  tf_keras.mixed_precision.set_global_policy('float32')


def _batch(views=2, seed=0):
  rng = np.random.RandomState(seed)
  images = tf.constant(rng.uniform(size=[_BATCH, 8, 8, 3 * views]),
                       tf_keras.mixed_precision.global_policy().compute_dtype)
  labels = tf.one_hot(rng.randint(0, 4, size=[_BATCH]), 4,
                      dtype=images.dtype)
  labeled = tf.constant([1, 0, 1, 1, 0, 1, 1, 1], images.dtype)
  return images, labels, labeled


def _freeze_batch_norm(model):
  for layer in model.submodules:
    if isinstance(layer, batch_norm.BatchNormRelu):
      layer.bn.trainable = False


def _build(strategy, config, memory_keys=None, frozen=False):
  with strategy.scope():
    tf_keras.utils.set_random_seed(0)
    model = model_lib.build_model(config)
    if frozen:
      _freeze_batch_norm(model)
    memory = None
    if memory_keys is not None:
      memory = memory_buffer.MemoryBuffer(config, 16, config.proj_out_dim)
      memory.enqueue(memory_keys)
  return model, memory


def _run(strategy, model, images, labels, labeled, num_microbatches,
         loss_config, memory=None, teacher=None, seed=None):
  """Mean loss over replicas, summed gradients, moving statistics."""
  optimizer = tf_keras.optimizers.SGD(1.0)
  replicas = strategy.num_replicas_in_sync
  per_replica = images.shape[0] // replicas
  chunked = microbatch.make_loss_and_gradients(
      model, optimizer, loss_config, strategy, num_microbatches,
      teacher=teacher, memory=memory)

  def unchunked(images, labels, labeled, seed):
    with tf.GradientTape() as tape:
      loss = training.compute_loss(model, images, labels, loss_config,
                                   strategy, labeled=labeled, memory=memory,
                                   teacher=teacher, seed=seed)
      scaled = loss / replicas
    return loss, tape.gradient(scaled, model.trainable_variables)

  def shard(ctx):
    i = ctx.replica_id_in_sync_group
    part = slice(i * per_replica, (i + 1) * per_replica)
    return images[part], labels[part], labeled[part]

  fn = unchunked if num_microbatches == 1 else chunked
  if replicas == 1:
    loss, grads = fn(images, labels, labeled, seed)
    return _numpy(model, loss, grads)

  def run():  # Eager: tracing the two replicas' ResNet takes longer.
    values = strategy.experimental_distribute_values_from_function(shard)
    loss, grads = strategy.run(fn, args=values + (seed,))
    loss = strategy.reduce('MEAN', loss, axis=None)
    grads = [None if g is None else strategy.reduce('SUM', g, axis=None)
             for g in grads]
    return loss, grads

  return _numpy(model, *run())


def _numpy(model, loss, grads):
  statistics = [v.numpy() for v in model.non_trainable_variables
                if 'moving_' in v.name]
  return loss.numpy(), [None if g is None else g.numpy() for g in grads], (
      statistics)


def _assert_close(got, want, atol=1e-5):
  assert len(got[1]) == len(want[1]) > 20
  np.testing.assert_allclose(got[0], want[0], atol=atol, rtol=0)
  for g, w in zip(got[1], want[1]):
    assert (g is None) == (w is None)
    if g is not None:
      np.testing.assert_allclose(g, w, atol=atol, rtol=0)
  assert len(got[2]) == len(want[2])
  for g, w in zip(got[2], want[2]):
    np.testing.assert_allclose(g, w, atol=atol, rtol=0)


def _loss_config(**overrides):
  return training.LossConfig(**dict(dict(weight_decay=1e-4,
                                         optimizer='momentum'), **overrides))


@pytest.mark.parametrize('with_memory', [False, True])
def test_pretraining_in_micro_batches_equals_replicas_with_local_bn(
    float64, two_cpu_strategy, with_memory):
  # The supervised head (linear eval while pretraining) on half the labels,
  # weight decay in the loss: every term of the pretraining loss.
  images, labels, labeled = _batch()
  keys = None
  if with_memory:
    keys = tf.math.l2_normalize(
        tf.random.stateless_normal([12, 8], [1, 2]), -1)
  config = _CONFIG.replace(global_bn=False)
  results = []
  for strategy, k in ((two_cpu_strategy, 1), (_one_replica(), 2)):
    model, memory = _build(strategy, config, keys)
    results.append(_run(strategy, model, images, labels, labeled, k,
                        _loss_config(), memory=memory))
  replicas, chunked = results
  _assert_close(chunked, replicas)
  if with_memory:
    return
  # Not vacuous: the unchunked step on one replica normalises over all 8.
  one = _one_replica()
  model, memory = _build(one, config, keys)
  whole = _run(one, model, images, labels, labeled, 1,
               _loss_config(), memory=memory)
  assert max(np.abs(w - c).max() for w, c in zip(whole[1], chunked[1])
             if w is not None) > 1e-4


def test_with_frozen_batch_norm_equals_the_unchunked_step_blur_included():
  # 20 px: the blur has 3 taps (identity below 20 px). Drawn once per batch
  # from the step's seed and sliced: an image's blur does not depend on K.
  config = _CONFIG.replace(image_size=20, use_blur=True)
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(size=[_BATCH, 20, 20, 6]), tf.float32)
  labels = tf.one_hot(rng.randint(0, 4, size=[_BATCH]), 4)
  labeled = tf.ones([_BATCH])
  seed = tf.constant([3, 4], tf.int64)
  results = []
  for k in (1, 4):
    one = _one_replica()
    model, _ = _build(one, config, frozen=True)
    results.append(_run(one, model, images, labels, labeled, k,
                        _loss_config(), seed=seed))
  _assert_close(results[1], results[0])


def test_same_views_whatever_the_number_of_micro_batches():
  config = _CONFIG.replace(image_size=20, use_blur=True)
  model = model_lib.build_model(config)
  images = tf.random.stateless_uniform([_BATCH, 20, 20, 6], [5, 6])
  seed = tf.constant([7, 8], tf.int64)
  whole = microbatch.split_inputs(model, images, 1, True, seed)[0]
  parts = microbatch.split_inputs(model, images, 4, True, seed)
  assert [p.shape[0] for p in parts] == [4] * 4
  regrouped = tf.concat([tf.concat([p[:2] for p in parts], 0),
                         tf.concat([p[2:] for p in parts], 0)], 0)
  np.testing.assert_array_equal(regrouped.numpy(), whole.numpy())
  # The blur did something (so the equality is not about unblurred views).
  assert np.abs(whole.numpy() - tf.concat(tf.split(images, 2, -1),
                                          0).numpy()).max() > 1e-3


@pytest.mark.parametrize('train_mode', ['finetune', 'distill'])
def test_fine_tuning_and_distillation_equal_the_unchunked_step(
    float64, train_mode):
  images, labels, labeled = _batch(views=1)
  config = _CONFIG.replace(train_mode='finetune')
  teacher = None
  if train_mode == 'distill':
    tf_keras.utils.set_random_seed(1)
    teacher = model_lib.build_model(config)
    teacher.trainable = False
  loss_config = _loss_config(train_mode=train_mode, label_loss_weight=0.3,
                             distillation_temperature=2.0)
  results = []
  for k in (1, 2):
    one = _one_replica()
    model, _ = _build(one, config, frozen=True)
    results.append(_run(one, model, images, labels, labeled, k,
                        loss_config, teacher=teacher))
  _assert_close(results[1], results[0])


def test_the_train_step_runs_in_micro_batches_with_the_memory():
  strategy = _one_replica()
  config = _CONFIG
  with strategy.scope():
    model = model_lib.build_model(config)
    memory = memory_buffer.MemoryBuffer(config, 16, config.proj_out_dim)
    optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                             model=model)
    loss_config = training.LossConfig()
    metrics = training.build_metrics(loss_config)
  step = training.make_train_step(model, optimizer, loss_config, strategy,
                                  metrics, memory=memory, seed=0,
                                  num_microbatches=4)
  images, labels, _ = _batch()
  before = [v.numpy() for v in model.trainable_variables]
  loss = step(images, labels)
  assert np.isfinite(loss.numpy())
  assert int(optimizer.iterations.numpy()) == 1
  assert int(memory.num_filled.numpy()) == _BATCH
  assert any(np.abs(b - v.numpy()).max() > 0
             for b, v in zip(before, model.trainable_variables))
  assert metrics['contrast_acc'].result().numpy() >= 0


@pytest.mark.parametrize('value', [0, -1, 3])
def test_a_bad_number_of_micro_batches_gets_one_line(value):
  experiment = experiment_lib.Experiment.from_flat(
      model_dir='/tmp/m', train_batch_size=16, num_microbatches=value)
  with pytest.raises(validation.ConfigError) as error:
    validation.validate_replicas(experiment, num_replicas=2)
  message = str(error.value)
  assert '\n' not in message
  assert '--num_microbatches' in message and 'per-replica batch of 8' in message
  assert 'pass a divisor of 8' in message
