"""SimCLRv2's memory: a moving-average encoder and a queue of its projections.

SimCLRv2 (Chen et al. 2020, section 2) adds MoCo-style negatives: a copy of
the encoder and projection head whose weights are an exponential moving
average (EMA) of the trained ones projects the second view of each batch,
and those projections wait in a first-in-first-out queue (64K in the paper)
where they serve as extra negatives of later batches' anchors.

Pieces:
  * `contrastive_loss_with_memory`: NT-Xent (objective.contrastive_loss)
    with the queue's keys as extra negative columns.
  * `MemoryBuffer`: the EMA model, the queue, its write pointer and fill
    count; a tf.Module, so `tf.train.Checkpoint(memory=buffer)` saves and
    resumes all of it (`memory/ema_model/...`, `memory/queue`, ...).
  * `memory_contrastive_loss` and `update_memory`: the two calls a train
    step makes (see `update_memory` for the order and why).

Under a MirroredStrategy build the buffer inside `strategy.scope()`, as the
model: its variables are then mirrored, and every update is made on each
replica's copy from identical values (keys gathered from all replicas, the
online model's synchronised weights), so all copies stay equal.
"""

import tensorflow as tf

from tf2.checkpoints import export
from tf2.checkpoints import files as checkpoint_files
from tf2.data import blur
from tf2.models import model as model_lib
from tf2.training import objective


def contrastive_loss_with_memory(hidden, memory, memory_mask=None,
                                 hidden_norm=True, temperature=1.0,
                                 strategy=None):
  """NT-Xent of two views with the memory's keys as extra negatives.

  As objective.contrastive_loss, with `h1 . memory^T / T` appended to the
  logits of the view-1 anchors and `h2 . memory^T / T` to those of the view-2
  anchors. The memory never holds a positive. With K = 0 this is
  objective.contrastive_loss exactly; with every slot masked, up to the
  rounding of the longer softmax sums (about 1e-7 relative).

  Args:
    hidden: (2N, d) projections: the first N rows view 1, the last N view 2.
    memory: (K, d) keys, already l2-normalised (MemoryBuffer.keys); they are
      used as they are whatever `hidden_norm` says.
    memory_mask: optional (K,) bool, False for slots that hold no key yet;
      those are left out of the softmax.
    hidden_norm: l2-normalise `hidden` (cosine similarity).
    temperature: softmax temperature.
    strategy: negatives (in-batch ones) from all its replicas, as
      objective.contrastive_loss. The memory is the same on all replicas.

  Returns:
    (loss, logits_ab, labels): the scalar loss; (N, N_global) similarities of
    view 1 with all view-2 samples; (N, 2 N_global + K) one-hot positives
    (zero on the memory columns).
  """
  parts = objective.contrastive_logits(hidden, hidden_norm, temperature,
                                       strategy)
  memory = tf.cast(memory, parts.hidden1.dtype)
  memory_a = tf.matmul(parts.hidden1, memory, transpose_b=True) / temperature
  memory_b = tf.matmul(parts.hidden2, memory, transpose_b=True) / temperature
  if memory_mask is not None:
    empty = 1.0 - tf.cast(memory_mask, memory_a.dtype)
    memory_a -= empty * objective.LARGE_NUM
    memory_b -= empty * objective.LARGE_NUM
  labels = tf.pad(parts.labels, [[0, 0], [0, tf.shape(memory)[0]]])
  loss = objective.nt_xent(labels, tf.concat([parts.logits_a, memory_a], 1),
                           tf.concat([parts.logits_b, memory_b], 1))
  return loss, parts.logits_ab, labels


def _ema_variable(next_creator, **kwargs):
  """The EMA model's variables: not trained, one value on every replica.

  ON_WRITE / ONLY_FIRST_REPLICA also makes a plain `assign` from a replica
  context legal (Keras batch norm in training mode would do one); our own
  updates write each replica's copy (see `_update_in_cross_replica`).
  """
  kwargs['trainable'] = False
  kwargs['synchronization'] = tf.VariableSynchronization.ON_WRITE
  kwargs['aggregation'] = tf.VariableAggregation.ONLY_FIRST_REPLICA
  return next_creator(**kwargs)


def _update_in_cross_replica(owner, fn, *args):
  """Runs `fn(strategy, *args)` once, from a replica or cross-replica context.

  From a replica context (inside strategy.run) the replicas' `args` arrive
  in `fn` as per-replica values, so `strategy.extended.update(var, f, args)`
  writes each replica's copy of `var` from that replica's values, without
  copying anything between devices. Outside any strategy scope (e.g. eager
  set-up code) it enters `owner`, the strategy the variables belong to.
  """
  if tf.distribute.in_cross_replica_context():
    return fn(tf.distribute.get_strategy(), *args)
  if tf.distribute.has_strategy():
    return tf.distribute.get_replica_context().merge_call(fn, args=args)
  with owner.scope():
    return fn(owner, *args)


class MemoryBuffer(tf.Module):
  """The EMA encoder + projection head and the FIFO queue of its keys.

  Checkpoint format (under the name it is given, e.g. `memory`):
  `ema_model/...` (the same object graph as `model/...`), `queue`,
  `pointer`, `num_filled`.

  Args:
    model_config: the online model's ModelConfig (the EMA model has the same
      architecture).
    queue_size: K, the number of keys kept.
    proj_dim: d, the projection width (model_config.proj_out_dim, or the
      encoder width when proj_head_mode='none').
    decay: EMA decay per step (0.999 in SimCLRv2).
  """

  def __init__(self, model_config, queue_size, proj_dim, decay=0.999):
    super().__init__(name='memory_buffer')
    if queue_size < 1:
      raise ValueError(f'queue_size={queue_size}: the memory needs at least '
                       'one slot (pass --memory_size=0 to train without it).')
    if model_config.train_mode != 'pretrain':
      raise ValueError('The memory holds negatives of the contrastive loss, '
                       'which only pretraining has: use it with '
                       "train_mode='pretrain' (--memory_size=0 otherwise).")
    if (model_config.proj_head_mode != 'none' and
        proj_dim != model_config.proj_out_dim):
      raise ValueError(f'proj_dim={proj_dim} but the projection head outputs '
                       f'{model_config.proj_out_dim}: pass proj_dim='
                       f'{model_config.proj_out_dim}.')
    if not 0.0 <= decay < 1.0:
      raise ValueError(f'decay={decay}: use a value in [0, 1), e.g. 0.999.')
    self.queue_size = queue_size
    self.decay = decay
    # The strategy whose scope builds the buffer owns its variables.
    self._strategy = tf.distribute.get_strategy()
    with tf.variable_creator_scope(_ema_variable):
      self.ema_model = model_lib.build_model(model_config)
    self.ema_model.trainable = False
    state = dict(trainable=False,
                 synchronization=tf.VariableSynchronization.ON_WRITE,
                 aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.queue = tf.Variable(tf.zeros([queue_size, proj_dim]), name='queue',
                             **state)
    self.pointer = tf.Variable(tf.constant(0, tf.int64), name='pointer',
                               **state)
    self.num_filled = tf.Variable(tf.constant(0, tf.int64),
                                  name='num_filled', **state)

  def _pairs(self, online_model):
    """(EMA variable, online variable) pairs, matched by creation order."""
    ema = model_lib.variables_in_creation_order(self.ema_model)
    online = model_lib.variables_in_creation_order(online_model)
    if len(ema) != len(online) or any(
        e.shape != o.shape for e, o in zip(ema, online)):
      raise ValueError('The online model does not have the EMA model\'s '
                       'architecture: build the MemoryBuffer from the '
                       'online model\'s ModelConfig.')
    return list(zip(ema, online))

  def _blend(self, online_model, decay):
    """ema = decay * ema + (1 - decay) * online, for every model variable."""
    pairs = self._pairs(online_model)

    def blend_all(strategy):
      for ema, online in pairs:
        if online.synchronization == tf.VariableSynchronization.ON_READ:
          # Per-replica values (batch norm moving statistics without
          # global_bn): their mean, the value a checkpoint of the online
          # model holds, so that the EMA copies stay equal.
          online = tf.convert_to_tensor(online)
        strategy.extended.update(ema, _ema_step, args=(online, decay))

    _update_in_cross_replica(self._strategy, blend_all)

  def initialize_from(self, online_model):
    """Copies the online weights, so the EMA starts where training does."""
    self._blend(online_model, 0.0)

  def update_ema(self, online_model):
    """One EMA step: ema = decay * ema + (1 - decay) * online.

    Every model variable takes part, batch-norm moving statistics included,
    so the EMA model is a complete model (it can be exported and evaluated).
    """
    self._blend(online_model, self.decay)

  def keys(self, images, seed=None):
    """The EMA model's l2-normalised projections of the second view.

    The EMA model runs in inference mode (training=False): its batch norms
    use its moving statistics, themselves the EMA of the online model's, and
    are not updated by this call. MoCo runs its key encoder in training mode
    and shuffles the batch across devices because its current keys are the
    positives, which batch statistics could leak; here a key is only ever a
    negative of later batches (enqueued after the loss), so there is nothing
    to leak, and inference mode keeps the EMA model a pure average of the
    online one. The price: for the first ~1 / (1 - decay) steps those
    statistics lag the batch statistics the online model trains with, so the
    first keys are weaker negatives. The view is blurred as the online model
    blurs it.

    Args:
      images: (B, H, W, 6) two views on channels (the pretraining input), or
        (B, H, W, 3) the second view alone.
      seed: optional (2,) stateless seed of the blur (seeded runs, see
        reproducibility.py); None draws from TensorFlow's global generator.

    Returns:
      (B, d) float32 keys, without gradient.
    """
    view = images[..., 3:] if images.shape[-1] == 6 else images
    config = self.ema_model.config
    if config.use_blur:
      view = blur.batch_random_blur([view], config.image_size,
                                         config.image_size, seed=seed)[0]
    projection, _ = self.ema_model(view, training=False)
    projection = tf.cast(projection, tf.float32)
    return tf.stop_gradient(tf.math.l2_normalize(projection, -1))

  def enqueue(self, keys, strategy=None):
    """Writes the keys of all replicas into the queue, oldest out first.

    Args:
      keys: (B, d) this replica's keys (MemoryBuffer.keys).
      strategy: from inside strategy.run with several replicas, the keys of
        all replicas are written, in replica order, into every replica's
        queue. None (or called in cross-replica context): `keys` as given.
    """
    if (strategy is not None and strategy.num_replicas_in_sync > 1 and
        not tf.distribute.in_cross_replica_context()):
      keys = objective.cross_replica_concat(keys, strategy)
    keys = tf.cast(tf.stop_gradient(keys), self.queue.dtype)
    size = self.queue_size

    def write(strategy, keys):
      strategy.extended.update(self.queue, _fifo_write,
                               args=(keys, self.pointer))
      strategy.extended.update(self.pointer, _advance_pointer,
                               args=(keys, size))
      strategy.extended.update(self.num_filled, _count_filled,
                               args=(keys, size))

    _update_in_cross_replica(self._strategy, write, keys)

  def memory(self):
    """(queue, mask): (K, d) keys and (K,) bool, True where a slot is filled.

    In the order of the slots, not of age: the loss does not care.
    """
    queue = tf.convert_to_tensor(self.queue)
    mask = tf.range(self.queue_size, dtype=tf.int64) < self.num_filled
    return queue, mask

  def export_ema_saved_model(self, export_dir):
    """Exports the EMA model as a SavedModel (export.export_saved_model).

    The weights are copied into a freshly built model first: the EMA
    model's own variables are not trainable, and the published SavedModels
    list trainable variables so that they can be fine-tuned. Call it outside
    strategy.scope() (as the online model's export).

    Returns:
      export_dir.
    """
    return export.export_saved_model(export.float32_copy(self.ema_model),
                                     export_dir)


def _ema_step(ema, online, decay):
  if decay == 0.0:
    return ema.assign(tf.cast(online, ema.dtype))
  decay = tf.cast(decay, ema.dtype)
  return ema.assign(decay * ema + (1.0 - decay) * tf.cast(online, ema.dtype))


def _fifo_write(queue, keys, pointer):
  """Writes keys at pointer, pointer + 1, ... (mod K); only the last K fit."""
  size = tf.shape(queue, out_type=tf.int64)[0]
  count = tf.shape(keys, out_type=tf.int64)[0]
  kept = tf.minimum(count, size)
  # More keys than slots: the first ones would be overwritten in this same
  # write, and scatter with repeated indices has no defined order.
  keys = keys[count - kept:]
  indices = (pointer + (count - kept) + tf.range(kept)) % size
  return queue.scatter_nd_update(indices[:, None], keys)


def _advance_pointer(pointer, keys, size):
  count = tf.shape(keys, out_type=tf.int64)[0]
  return pointer.assign((pointer + count) % size)


def _count_filled(num_filled, keys, size):
  count = tf.shape(keys, out_type=tf.int64)[0]
  return num_filled.assign(tf.minimum(num_filled + count, size))


def checkpoint_has_memory(checkpoint_path, name='memory'):
  """Whether a checkpoint holds a MemoryBuffer saved under `name`.

  A run that resumes with the memory from a checkpoint saved without it
  (e.g. one of the reference's) restores nothing into the buffer and should
  call `buffer.initialize_from(model)` instead.
  """
  prefix = f'{name}/queue/'
  return any(key.startswith(prefix)
             for key in checkpoint_files.variable_shapes(checkpoint_path))


def memory_contrastive_loss(buffer, projection, hidden_norm=True,
                            temperature=1.0, strategy=None):
  """The contrastive loss of a train step that uses the memory.

  A drop-in for objective.contrastive_loss in training.compute_loss: same
  arguments and returns, with the buffer's filled slots as extra negatives.
  The queue is read before this step's keys are written (update_memory), so
  a batch is never its own negative.

  Returns:
    (loss, logits_ab, labels) as contrastive_loss_with_memory.
  """
  memory, mask = buffer.memory()
  return contrastive_loss_with_memory(projection, memory, mask, hidden_norm,
                                      temperature, strategy)


def update_memory(buffer, model, images, strategy=None, seed=None):
  """The memory's part of a train step, after optimizer.apply_gradients.

  First the EMA takes the just-updated online weights, then the updated EMA
  model encodes this batch's second views and they are enqueued: the
  freshest keys available, and written after this step's loss was computed
  so they only become negatives of later batches. Call it in the same
  replica context as the step (inside strategy.run), outside the
  GradientTape.

  Args:
    buffer: MemoryBuffer (built under the same strategy scope as `model`).
    model: the online Model.
    images: (B, H, W, 6) this replica's pretraining batch.
    strategy: the training strategy (keys are gathered from its replicas).
    seed: optional (2,) stateless seed of the keys' blur (`keys`).
  """
  buffer.update_ema(model)
  buffer.enqueue(buffer.keys(images, seed), strategy)
