"""The train step: what it optimises, and that replicas do not change it."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.training import checkpoint_state
from tf2.training import loop as train_loop
from tf2.training import optimization
from tf2.training import step as training

_CONFIG = config_lib.ModelConfig(num_classes=4, resnet_depth=18, image_size=8,
                                 use_blur=False, proj_out_dim=8)


def _loss_and_grads(strategy, images, labels, global_bn):
  """Mean loss over replicas and summed gradients of loss / replicas."""
  with strategy.scope():
    tf_keras.utils.set_random_seed(0)
    model = model_lib.build_model(_CONFIG.replace(global_bn=global_bn))
  loss_config = training.LossConfig(weight_decay=0.0)
  replicas = strategy.num_replicas_in_sync
  per_replica = images.shape[0] // replicas

  def step(replica_images, replica_labels):
    with tf.GradientTape() as tape:
      loss = training.compute_loss(model, replica_images, replica_labels,
                                   loss_config, strategy)
      scaled = loss / replicas
    grads = tape.gradient(scaled, model.trainable_variables)
    return loss, grads

  def shard(ctx):
    i = ctx.replica_id_in_sync_group
    return (images[i * per_replica:(i + 1) * per_replica],
            labels[i * per_replica:(i + 1) * per_replica])

  @tf.function
  def run():
    values = strategy.experimental_distribute_values_from_function(shard)
    loss, grads = strategy.run(step, args=values)
    loss = strategy.reduce('MEAN', loss, axis=None)
    grads = [strategy.reduce('SUM', g, axis=None) for g in grads]
    return loss, grads

  loss, grads = run()
  return loss.numpy(), [g.numpy() for g in grads]


def test_two_replicas_give_same_loss_and_gradients_as_one(two_cpu_strategy):
  # In float64, so that float32 reduction-order noise (amplified by 20
  # batch norms over a batch of 16 to ~1e-5 of the gradients' scale) cannot
  # hide or fake a difference: any real discrepancy is orders larger.
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(size=[8, 8, 8, 6]))
  labels = tf.one_hot(rng.randint(0, 4, size=[8]), 4, dtype=tf.float64)
  one = tf.distribute.MirroredStrategy(
      [tf.config.list_logical_devices('CPU')[0].name])
  tf_keras.mixed_precision.set_global_policy('float64')
  try:
    loss_1, grads_1 = _loss_and_grads(one, images, labels, global_bn=False)
    loss_2, grads_2 = _loss_and_grads(two_cpu_strategy, images, labels,
                                      global_bn=True)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  np.testing.assert_allclose(loss_2, loss_1, atol=1e-5, rtol=0)
  assert len(grads_2) == len(grads_1) > 50
  for g2, g1 in zip(grads_2, grads_1):
    np.testing.assert_allclose(g2, g1, atol=1e-5, rtol=0)


def test_one_train_step_changes_weights_and_counts_the_step():
  strategy = tf.distribute.get_strategy()
  model = model_lib.build_model(_CONFIG.replace(global_bn=False))
  optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                           model=model)
  metrics = training.build_metrics(training.LossConfig())
  step = training.make_train_step(model, optimizer, training.LossConfig(),
                                  strategy, metrics)
  before = [v.numpy().copy() for v in model.trainable_variables]
  images = tf.random.uniform([4, 8, 8, 6])
  labels = tf.one_hot([0, 1, 2, 3], 4)
  # Two steps: in the first, zero-initialised batch-norm gammas block the
  # gradient of the layers before them in each residual branch.
  for _ in range(2):
    loss = step(images, labels)
  assert np.isfinite(loss.numpy())
  assert optimizer.iterations.numpy() == 2
  changed = [not np.array_equal(b, v.numpy())
             for b, v in zip(before, model.trainable_variables)]
  assert all(changed)
  assert metrics['contrast_loss'].count.numpy() == 2


def test_full_fine_tuning_from_a_saved_model_on_two_replicas(
    two_cpu_strategy, tmp_path):
  from tf2.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
  from tf2.checkpoints import export  # pylint: disable=g-import-not-at-top
  from tf2.training import schedule  # pylint: disable=g-import-not-at-top
  source = model_lib.build_model(_CONFIG.replace(global_bn=False,
                                                 num_classes=10))
  saved_model = export.export_saved_model(source, tmp_path / 'published')

  config = _CONFIG.replace(num_classes=10, train_mode='finetune',
                           fine_tune_after_block=-1, global_bn=True)
  builder = data_lib.get_builder('digits', str(tmp_path / 'tfds'))
  with two_cpu_strategy.scope():
    model = model_lib.build_model(config)
    dataset = data_lib.build_distributed_dataset(
        builder, 16, True, two_cpu_strategy, split='train', image_size=8,
        train_mode='finetune')
    learning_rate = schedule.WarmUpAndCosineDecay(0.1, 1442, 16, 0, 2)
    optimizer = optimization.build_optimizer('lars', learning_rate, 0.9,
                                             1e-6, model=model)
    state = checkpoint_state.CheckpointState(model, optimizer, str(tmp_path / 'ft'),
                                     keep_checkpoint_max=1)
    message = state.restore_or_initialize(str(saved_model))
  assert 'Initialised from' in message
  for mine, theirs in zip(model.resnet_model.variables,
                          source.resnet_model.variables):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

  loss_config = training.LossConfig(train_mode='finetune')
  with two_cpu_strategy.scope():
    metrics = training.build_metrics(loss_config)
  step = training.make_train_step(model, optimizer, loss_config,
                                  two_cpu_strategy, metrics)
  train_loop.train(state, two_cpu_strategy, step, metrics, dataset,
                   train_steps=2, steps_per_loop=2,
                   learning_rate=learning_rate,
                   summary_writer=tf.summary.create_noop_writer())
  assert int(state.global_step.numpy()) == 2
  stem_and_groups = [model.resnet_model.initial_conv_relu_max_pool[0]] + [
      group for group in model.resnet_model.block_groups]
  source_parts = [source.resnet_model.initial_conv_relu_max_pool[0]] + [
      group for group in source.resnet_model.block_groups]
  for part, original in zip(stem_and_groups, source_parts):
    kernel = part.trainable_variables[0]
    assert not np.array_equal(kernel.numpy(),
                              original.trainable_variables[0].numpy()), (
                                  part.name)


def test_augment_fn_runs_on_each_replica_with_a_seed_per_step_and_replica(
    two_cpu_strategy, tmp_path):
  from tf2.data import color_augment  # pylint: disable=g-import-not-at-top
  from tf2.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
  builder = data_lib.get_builder('digits', str(tmp_path / 'tfds'))
  distort = color_augment.make_augment_fn(seed=0)
  seeds = []

  def augment_fn(images, seed):
    record = tf.py_function(lambda s: seeds.append(tuple(s.numpy())) or True,
                            [seed], tf.bool)
    with tf.control_dependencies([record]):
      return distort(images, seed)

  with two_cpu_strategy.scope():
    model = model_lib.build_model(_CONFIG.replace(global_bn=True,
                                                  num_classes=10))
    dataset = data_lib.build_distributed_dataset(
        builder, 16, True, two_cpu_strategy, split='train', image_size=8,
        train_mode='pretrain', augment_on_device=True, seed=0)
    optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                             model=model)
  step = training.make_train_step(model, optimizer, training.LossConfig(),
                                  two_cpu_strategy, augment_fn=augment_fn)
  train_loop.make_train_loop(two_cpu_strategy, step)(iter(dataset),
                                                   tf.constant(2))
  assert sorted(seeds) == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert optimizer.iterations.numpy() == 2


def test_augment_fn_is_for_pretraining_only():
  model = model_lib.build_model(_CONFIG.replace(global_bn=False,
                                                train_mode='finetune'))
  with pytest.raises(ValueError, match="train_mode='pretrain' only"):
    training.make_train_step(
        model, optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                            model=model),
        training.LossConfig(train_mode='finetune'),
        tf.distribute.get_strategy(), augment_fn=lambda x, s: x)
