"""The SimCLRv2 memory: loss with queued negatives, EMA, FIFO, replicas, resume."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.training import memory_buffer
from tf2.training import objective
from tf2.training import optimization

_DIM = 4
_CONFIG = config_lib.ModelConfig(num_classes=3, resnet_depth=18, image_size=8,
                                 use_blur=False, proj_out_dim=_DIM,
                                 global_bn=False)


def _buffer(queue_size=8, decay=0.999):
  return memory_buffer.MemoryBuffer(_CONFIG, queue_size, _DIM, decay)


def _batch(first, count):
  """(count, d) keys whose entries count up from `first`: easy to track."""
  return tf.reshape(tf.range(first, first + count * _DIM, dtype=tf.float32),
                    [count, _DIM])


def test_enqueue_is_fifo_wraps_around_and_counts_filled_slots():
  buffer = _buffer(queue_size=8)
  enqueue = tf.function(buffer.enqueue)
  batches = [_batch(100 * i, 3) for i in range(3)]
  enqueue(batches[0])
  enqueue(batches[1])
  assert (int(buffer.pointer), int(buffer.num_filled)) == (6, 6)
  _, mask = buffer.memory()
  np.testing.assert_array_equal(mask, [True] * 6 + [False] * 2)

  enqueue(batches[2])
  assert (int(buffer.pointer), int(buffer.num_filled)) == (1, 8)
  # The ninth key overwrote the oldest, the first key of the first batch.
  expected = np.concatenate([batches[2][2:], batches[0][1:], batches[1],
                             batches[2][:2]])
  queue, mask = buffer.memory()
  np.testing.assert_array_equal(queue, expected)
  assert np.all(mask)


def test_enqueue_of_more_keys_than_slots_keeps_the_newest_in_order():
  buffer = _buffer(queue_size=8)
  buffer.enqueue(_batch(0, 2))
  keys = _batch(1000, 10)
  buffer.enqueue(keys)
  assert (int(buffer.pointer), int(buffer.num_filled)) == (4, 8)
  # Slot 4 (the pointer) holds the oldest kept key, keys[2].
  np.testing.assert_array_equal(buffer.queue.numpy(),
                                np.roll(keys[2:].numpy(), 4, axis=0))


def _numpy_loss_with_memory(hidden, memory, mask, temperature):
  hidden = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
  h1, h2 = np.split(hidden, 2)
  memory = memory[mask]
  total = 0.0
  for i in range(len(h1)):
    for anchor, positives, same in ((h1[i], h2, h1), (h2[i], h1, h2)):
      others = [same[j] for j in range(len(same)) if j != i]
      candidates = np.concatenate([positives, others, memory])
      logits = candidates @ anchor / temperature
      total -= logits[i] - np.log(np.sum(np.exp(logits)))
  return total / len(h1)


def test_loss_with_memory_matches_numpy():
  rng = np.random.RandomState(0)
  hidden = rng.standard_normal([4, 3]).astype(np.float32)  # 2 pairs.
  memory = rng.standard_normal([3, 3]).astype(np.float32)
  memory /= np.linalg.norm(memory, axis=1, keepdims=True)
  mask = np.array([True, False, True])
  loss, logits_ab, labels = memory_buffer.contrastive_loss_with_memory(
      tf.constant(hidden), tf.constant(memory), tf.constant(mask),
      temperature=0.5)
  np.testing.assert_allclose(loss, _numpy_loss_with_memory(
      hidden, memory, mask, 0.5), rtol=1e-5)
  assert logits_ab.shape == (2, 2)
  np.testing.assert_array_equal(
      labels, [[1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0]])
  # The masked key does count when unmasked.
  unmasked, _, _ = memory_buffer.contrastive_loss_with_memory(
      tf.constant(hidden), tf.constant(memory), temperature=0.5)
  assert unmasked.numpy() > loss.numpy()


def test_loss_with_empty_memory_is_the_plain_contrastive_loss():
  rng = np.random.RandomState(1)
  hidden = tf.constant(rng.standard_normal([6, 5]).astype(np.float32))
  memory = tf.math.l2_normalize(rng.standard_normal([8, 5]), -1)
  plain, plain_logits, _ = objective.contrastive_loss(hidden, temperature=0.2)
  masked, logits, _ = memory_buffer.contrastive_loss_with_memory(
      hidden, tf.cast(memory, tf.float32), tf.zeros([8], tf.bool),
      temperature=0.2)
  np.testing.assert_allclose(masked, plain, rtol=1e-6)
  np.testing.assert_array_equal(logits, plain_logits)
  no_slots, _, _ = memory_buffer.contrastive_loss_with_memory(
      hidden, tf.zeros([0, 5]), tf.zeros([0], tf.bool), temperature=0.2)
  np.testing.assert_array_equal(no_slots, plain)


def _randomise(model, seed):
  """Random values in every variable, batch-norm moving statistics too."""
  rng = np.random.RandomState(seed)
  for variable in model.variables:
    variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))


def test_update_ema_blends_every_variable_and_initialize_copies():
  online = model_lib.build_model(_CONFIG)
  _randomise(online, 0)
  buffer = _buffer(decay=0.9)
  ema_variables = model_lib.variables_in_creation_order(buffer.ema_model)
  before = [v.numpy() for v in ema_variables]
  buffer.update_ema(online)
  online_variables = model_lib.variables_in_creation_order(online)
  assert len(ema_variables) == len(online_variables) > 50
  for ema, old, weight in zip(ema_variables, before, online_variables):
    np.testing.assert_allclose(ema.numpy(), 0.9 * old + 0.1 * weight.numpy(),
                               rtol=1e-6, atol=1e-7)
  assert not buffer.ema_model.trainable_variables
  assert not buffer.trainable_variables

  buffer.initialize_from(online)
  for ema, weight in zip(ema_variables, online_variables):
    np.testing.assert_array_equal(ema.numpy(), weight.numpy())


def test_keys_are_normalised_ema_projections_of_the_second_view():
  buffer = _buffer()
  rng = np.random.RandomState(2)
  images = tf.constant(rng.uniform(size=[3, 8, 8, 6]).astype(np.float32))
  keys = buffer.keys(images)
  projection, _ = buffer.ema_model(images[..., 3:], training=False)
  np.testing.assert_allclose(keys, tf.math.l2_normalize(projection, -1),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, rtol=1e-5)


def test_two_replicas_enqueue_all_keys_in_replica_order_on_both(
    two_cpu_strategy):
  with two_cpu_strategy.scope():
    buffer = _buffer(queue_size=8)
  per_replica = [_batch(0, 2), _batch(100, 2)]

  @tf.function
  def run():
    keys = two_cpu_strategy.experimental_distribute_values_from_function(
        lambda ctx: per_replica[ctx.replica_id_in_sync_group])
    two_cpu_strategy.run(buffer.enqueue, args=(keys, two_cpu_strategy))

  run()
  run()
  expected = np.concatenate(per_replica * 2)
  for queue, pointer, filled in zip(buffer.queue.values,
                                    buffer.pointer.values,
                                    buffer.num_filled.values):
    np.testing.assert_array_equal(queue.numpy(), expected)
    assert (int(pointer), int(filled)) == (0, 8)


def test_two_replicas_update_ema_to_the_same_value_on_both(two_cpu_strategy):
  with two_cpu_strategy.scope():
    online = model_lib.build_model(_CONFIG)
    buffer = _buffer(decay=0.5)
  _randomise(online, 3)
  # Without global_bn each replica has its own moving statistics: the EMA
  # takes their mean, so that its copies do not drift apart.
  online_variables = model_lib.variables_in_creation_order(online)
  ema_variables = model_lib.variables_in_creation_order(buffer.ema_model)
  kernel, ema_kernel = online_variables[0], ema_variables[0]  # Stem conv.
  first_moving = next(i for i, v in enumerate(online_variables)
                      if 'moving_mean' in v.name)
  moving, ema_moving = (online_variables[first_moving],
                        ema_variables[first_moving])
  moving.values[1].assign(moving.values[0] + 1.0)
  old_moving = ema_moving.values[0].numpy()
  old_kernel = ema_kernel.values[0].numpy()

  tf.function(lambda: two_cpu_strategy.run(buffer.update_ema, (online,)))()
  for copy in ema_moving.values:
    np.testing.assert_allclose(
        copy.numpy(),
        0.5 * old_moving + 0.5 * (moving.values[0].numpy() + 0.5), rtol=1e-6)
  for copy in ema_kernel.values:
    np.testing.assert_allclose(copy.numpy(),
                               0.5 * old_kernel + 0.5 * kernel.numpy(),
                               rtol=1e-6)


def _assert_same_state(a, b):
  np.testing.assert_array_equal(a.queue.numpy(), b.queue.numpy())
  assert int(a.pointer) == int(b.pointer)
  assert int(a.num_filled) == int(b.num_filled)
  for x, y in zip(a.ema_model.variables, b.ema_model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_checkpoint_restores_queue_pointer_count_and_ema(tmp_path):
  online = model_lib.build_model(_CONFIG)
  _randomise(online, 4)
  buffer = _buffer(queue_size=8, decay=0.9)
  buffer.update_ema(online)
  buffer.enqueue(_batch(0, 3))
  buffer.enqueue(_batch(50, 3))
  path = tf.train.Checkpoint(memory=buffer).save(str(tmp_path / 'ckpt'))
  names = [name for name, _ in tf.train.list_variables(path)]
  assert 'memory/queue/.ATTRIBUTES/VARIABLE_VALUE' in names
  assert any(n.startswith('memory/ema_model/resnet_model/') for n in names)

  restored = _buffer(queue_size=8, decay=0.9)
  tf.train.Checkpoint(memory=restored).restore(path).assert_consumed()
  _assert_same_state(buffer, restored)
  assert memory_buffer.checkpoint_has_memory(path)
  without = tf.train.Checkpoint(model=online).save(str(tmp_path / 'plain'))
  assert not memory_buffer.checkpoint_has_memory(without)


def test_checkpoint_has_memory_reads_any_filesystem():
  online = model_lib.build_model(_CONFIG)
  root = 'ram://memory-checkpoints'  # Stands for gs:// and the like.
  try:
    with_memory = tf.train.Checkpoint(memory=_buffer()).save(f'{root}/mem')
    without = tf.train.Checkpoint(model=online).save(f'{root}/plain')
    assert memory_buffer.checkpoint_has_memory(with_memory)
    assert not memory_buffer.checkpoint_has_memory(without)
  finally:
    tf.io.gfile.rmtree(root)


def test_memory_is_refused_outside_pretraining():
  with pytest.raises(ValueError, match='pretrain'):
    memory_buffer.MemoryBuffer(_CONFIG.replace(train_mode='finetune'), 8,
                               _DIM)
  with pytest.raises(ValueError, match='proj_dim=4'):
    memory_buffer.MemoryBuffer(_CONFIG, 8, _DIM + 1)


class _Run:
  """Model, optimizer and memory of a tiny pretraining run, and its step."""

  def __init__(self):
    tf_keras.utils.set_random_seed(0)
    self.model = model_lib.build_model(_CONFIG)
    self.optimizer = optimization.build_optimizer('momentum', 0.1, 0.9)
    self.buffer = _buffer(queue_size=8, decay=0.9)
    self.buffer.initialize_from(self.model)
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, global_step=self.optimizer.iterations,
        optimizer=self.optimizer, memory=self.buffer)

  def step(self, images):
    """Eager: tracing three runs' train steps would take most of the time."""
    with tf.GradientTape() as tape:
      projection, _ = self.model(images, training=True)
      loss, _, _ = memory_buffer.memory_contrastive_loss(
          self.buffer, projection, temperature=0.5)
    variables = self.model.trainable_variables
    grads = tape.gradient(loss, variables)
    self.optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    memory_buffer.update_memory(self.buffer, self.model, images)
    return loss

  def train(self, first_step, num_steps):
    losses = []
    for step in range(first_step, first_step + num_steps):
      rng = np.random.RandomState(step)
      images = rng.uniform(size=[3, 8, 8, 6]).astype(np.float32)
      losses.append(self.step(tf.constant(images)).numpy())
    return losses


def test_resumed_training_with_memory_matches_uninterrupted(tmp_path):
  straight = _Run()
  losses = straight.train(0, 2)
  # Saving does not change the run: it goes on as if uninterrupted.
  path = straight.checkpoint.save(str(tmp_path / 'ckpt'))
  losses += straight.train(2, 2)
  assert int(straight.buffer.num_filled) == 8  # 4 steps x 3 keys, wrapped.
  np.testing.assert_allclose(
      np.linalg.norm(straight.buffer.queue.numpy(), axis=1), 1.0, rtol=1e-5)
  assert np.all(np.isfinite(losses))

  resumed = _Run()
  resumed.checkpoint.restore(path)
  resumed_losses = resumed.train(2, 2)

  np.testing.assert_array_equal(resumed_losses, losses[2:])
  _assert_same_state(straight.buffer, resumed.buffer)
  for x, y in zip(straight.model.variables, resumed.model.variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_two_replica_loss_with_memory_equals_one_replica(two_cpu_strategy):
  rng = np.random.RandomState(5)
  view1, view2 = rng.standard_normal([2, 4, 5]).astype(np.float32)
  memory = tf.math.l2_normalize(
      rng.standard_normal([6, 5]).astype(np.float32), -1)
  mask = tf.constant([True, True, False, True, False, True])
  single, _, _ = memory_buffer.contrastive_loss_with_memory(
      tf.concat([view1, view2], 0), memory, mask, temperature=0.5)

  def shard(ctx):
    i = ctx.replica_id_in_sync_group
    return tf.concat([view1[2 * i:2 * i + 2], view2[2 * i:2 * i + 2]], 0)

  def step(hidden):
    loss, _, labels = memory_buffer.contrastive_loss_with_memory(
        hidden, memory, mask, temperature=0.5, strategy=two_cpu_strategy)
    return loss, labels

  @tf.function
  def run():
    hidden = two_cpu_strategy.experimental_distribute_values_from_function(
        shard)
    loss, labels = two_cpu_strategy.run(step, args=(hidden,))
    return two_cpu_strategy.reduce('MEAN', loss, None), labels

  loss, labels = run()
  np.testing.assert_allclose(loss, single, rtol=1e-6)
  # Replica 1's anchors are images 2 and 3 of the global batch of 4.
  np.testing.assert_array_equal(np.argmax(labels.values[1], 1), [2, 3])
  assert labels.values[1].shape == (2, 2 * 4 + 6)


def test_two_replica_train_step_keeps_memory_copies_equal(two_cpu_strategy):
  with two_cpu_strategy.scope():
    model = model_lib.build_model(_CONFIG)
    optimizer = optimization.build_optimizer('momentum', 0.1, 0.9)
    buffer = _buffer(queue_size=8, decay=0.9)
  buffer.initialize_from(model)
  rng = np.random.RandomState(6)
  images = rng.uniform(size=[2, 3, 8, 8, 6]).astype(np.float32)

  def step(replica_images):
    with tf.GradientTape() as tape:
      projection, _ = model(replica_images, training=True)
      loss, _, _ = memory_buffer.memory_contrastive_loss(
          buffer, projection, temperature=0.5, strategy=two_cpu_strategy)
      scaled = loss / two_cpu_strategy.num_replicas_in_sync
    variables = model.trainable_variables
    grads = tape.gradient(scaled, variables)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    memory_buffer.update_memory(buffer, model, replica_images,
                                two_cpu_strategy)

  def train_step():
    # Eager: tracing a ResNet step on two replicas takes half a minute.
    batch = two_cpu_strategy.experimental_distribute_values_from_function(
        lambda ctx: images[ctx.replica_id_in_sync_group])
    two_cpu_strategy.run(step, args=(batch,))

  train_step()
  train_step()
  queue_0, queue_1 = (q.numpy() for q in buffer.queue.values)
  np.testing.assert_array_equal(queue_0, queue_1)
  assert [int(p) for p in buffer.pointer.values] == [4, 4]  # 2 x 6 keys.
  np.testing.assert_allclose(np.linalg.norm(queue_0, axis=1), 1.0, rtol=1e-5)
  for variable in buffer.ema_model.variables:
    np.testing.assert_array_equal(variable.values[0].numpy(),
                                  variable.values[1].numpy())
  # The step did train: the EMA moved away from the initial weights.
  assert not np.array_equal(buffer.ema_model.variables[0].values[0].numpy(),
                            model.variables[0].values[0].numpy())
