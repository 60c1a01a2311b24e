"""The training loop: losses of one step, the step under a strategy, the loop.

Each piece is a small function so that tests and notebooks can run one step
or one loop without run.py: `compute_loss` (what is optimised),
`make_train_step` (gradients and update on one replica), `make_train_loop`
(many steps inside one tf.function), `CheckpointState` (what is saved and
resumed) and `train` (the loop with checkpoints and summaries).
"""

import dataclasses
import os

from absl import logging
import tensorflow as tf

from tf2 import checkpoint_io
from tf2 import distillation
from tf2 import memory_buffer
from tf2 import metrics as metrics_lib
from tf2 import objective
from tf2 import optimization


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """What the train step optimises (the reference flags of the same names)."""
  train_mode: str = 'pretrain'
  lineareval_while_pretraining: bool = True
  temperature: float = 0.1
  hidden_norm: bool = True
  optimizer: str = 'lars'
  weight_decay: float = 1e-6
  # Distillation (train_mode='distill'): softmax temperature of teacher and
  # student, and the weight of the ground-truth loss on labeled examples
  # (loss = (1 - w) * distillation + w * labels; 0 = teacher only).
  distillation_temperature: float = 1.0
  label_loss_weight: float = 0.0


def build_metrics(loss_config):
  """The train metrics that apply to this training mode, by short name."""
  metrics = metrics_lib.loss_metrics()
  if loss_config.train_mode == 'pretrain':
    metrics.update(metrics_lib.contrastive_metrics())
  if loss_config.train_mode == 'distill':
    metrics.update(metrics_lib.distillation_metrics())
  if (loss_config.train_mode in ('finetune', 'distill') or
      loss_config.lineareval_while_pretraining):
    metrics.update(metrics_lib.supervised_metrics())
  return metrics


def _full_precision(tensor):
  """Losses are computed in float32 even under a mixed-precision policy."""
  if tensor.dtype in (tf.float16, tf.bfloat16):
    return tf.cast(tensor, tf.float32)
  return tensor


def compute_loss(model, images, labels, loss_config, strategy=None,
                 metrics=None, labeled=None, teacher=None, memory=None):
  """The per-replica loss of one batch (before dividing by replicas).

  Args:
    model: a tf2.model.Model.
    images: (B, H, W, 6) two views in pretraining, (B, H, W, 3) otherwise.
    labels: (B, num_classes) one-hot.
    loss_config: LossConfig.
    strategy: gathers contrastive negatives from all its replicas.
    metrics: optional dict from build_metrics, updated in place.
    labeled: optional (B,) 1 for examples whose label may be used, 0 for
      unlabeled ones; None means all are labeled.
    teacher: in distillation, the teacher Model (run in inference mode).
    memory: optional memory_buffer.MemoryBuffer whose queued keys are extra
      negatives of the contrastive loss.

  Returns:
    Scalar loss: contrastive / distillation + supervised + weight decay.
  """
  projection, logits = model(images, training=True)
  loss = 0.0
  if projection is not None:
    projection = _full_precision(projection)
    if memory is None:
      con_loss, logits_con, labels_con = objective.contrastive_loss(
          projection, hidden_norm=loss_config.hidden_norm,
          temperature=loss_config.temperature, strategy=strategy)
    else:
      con_loss, logits_con, labels_con = memory_buffer.memory_contrastive_loss(
          memory, projection, hidden_norm=loss_config.hidden_norm,
          temperature=loss_config.temperature, strategy=strategy)
    loss += con_loss
    if metrics is not None:
      metrics_lib.update_contrastive(metrics, con_loss, logits_con,
                                     labels_con)
  if logits is not None:
    logits = _full_precision(logits)
    if loss_config.train_mode == 'pretrain':
      labels = tf.concat([labels, labels], 0)  # Both views are classified.
      if labeled is not None:
        labeled = tf.concat([labeled, labeled], 0)
    sup_loss = objective.supervised_loss(labels, logits, labeled)
    if loss_config.train_mode == 'distill':
      soft = _full_precision(distillation.teacher_logits(teacher, images))
      distill_loss = tf.reduce_mean(distillation.distillation_loss(
          soft, logits, loss_config.distillation_temperature))
      weight = loss_config.label_loss_weight
      loss += (1.0 - weight) * distill_loss
      if weight:
        loss += weight * sup_loss
      if metrics is not None:
        metrics_lib.update_distillation(metrics, distill_loss, soft, logits)
    else:
      loss += sup_loss
    if metrics is not None:
      metrics_lib.update_supervised(metrics, sup_loss, labels, logits,
                                    labeled)
  weight_decay = optimization.weight_decay_loss(
      model.trainable_variables, loss_config.weight_decay,
      loss_config.optimizer)
  loss += tf.cast(weight_decay, loss.dtype)
  if metrics is not None:
    metrics['weight_decay'].update_state(weight_decay)
    metrics['total_loss'].update_state(loss)
  return loss


def _replica_step_seed(step_counter):
  """(global step, replica id), (2,) int64: new on every step and replica."""
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tf.stack([tf.cast(step_counter, tf.int64),
                   tf.cast(replica, tf.int64)])


def make_train_step(model, optimizer, loss_config, strategy, metrics=None,
                    teacher=None, memory=None, augment_fn=None):
  """Returns `step(images, labels, labeled=None)` to run on each replica.

  Args:
    model, optimizer, loss_config, strategy, metrics: see `compute_loss`.
    teacher: the teacher Model when loss_config.train_mode == 'distill'.
    memory: optional MemoryBuffer (pretraining): read by the loss, then,
      after the update, its moving average follows the model and this
      batch's keys are enqueued (so a batch is never its own negative).
    augment_fn: optional `augment_fn(images, seed) -> images` applied to
      each replica's pretraining batch before anything else (augment_on_device:
      `color_augment.make_augment_fn`); seed is (global step, replica id).
  """
  if (loss_config.train_mode == 'distill') != (teacher is not None):
    raise ValueError('A teacher is needed for, and only for, '
                     "train_mode='distill'.")
  if augment_fn is not None and loss_config.train_mode != 'pretrain':
    raise ValueError('augment_fn (augment_on_device) applies to '
                     "train_mode='pretrain' only.")
  # Made now if new: a Keras optimizer creates its step counter on first
  # use, which must not happen inside the replica step's tf.function.
  step_counter = optimizer.iterations

  def step(images, labels, labeled=None):
    if augment_fn is not None:
      images = augment_fn(images, _replica_step_seed(step_counter))
    with tf.GradientTape() as tape:
      loss = compute_loss(model, images, labels, loss_config, strategy,
                          metrics, labeled=labeled, teacher=teacher,
                          memory=memory)
      # apply_gradients sums over replicas; dividing gives the mean gradient.
      scaled_loss = loss / strategy.num_replicas_in_sync
    variables = model.trainable_variables
    grads = tape.gradient(scaled_loss, variables)
    # Layers that do not reach the loss (the projection head when fine-tuning
    # from the encoder output) have no gradient; they are left untouched.
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    optimizer.apply_gradients(pairs)
    if memory is not None:
      memory_buffer.update_memory(memory, model, images, strategy)
    return loss

  return step


def make_train_loop(strategy, step):
  """A tf.function running `num_steps` steps from a distributed iterator.

  `num_steps` is a tensor so that a shorter last loop does not retrace; the
  loop is a tf.while_loop, not unrolled.
  """

  @tf.function
  def train_loop(iterator, num_steps):
    for _ in tf.range(num_steps):
      images, labels = next(iterator)
      strategy.run(step, (images, labels['labels'], labels.get('labeled')))

  return train_loop


class CheckpointState:
  """Model, global step and optimizer, saved to and resumed from model_dir.

  The object names (`model`, `global_step`, `optimizer`) are those of the
  reference, so its model_dir checkpoints resume here and ours there. With a
  memory buffer, its moving-average model and queue are saved too (under
  `memory`), so a resumed run continues exactly.
  """

  def __init__(self, model, optimizer, model_dir, keep_checkpoint_max,
               memory=None):
    self.model = model
    self.optimizer = optimizer
    self.memory = memory
    objects = dict(model=model, global_step=optimizer.iterations,
                   optimizer=optimizer)
    if memory is not None:
      objects['memory'] = memory
    self.checkpoint = tf.train.Checkpoint(**objects)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory=model_dir,
        max_to_keep=keep_checkpoint_max)

  @property
  def global_step(self):
    return self.optimizer.iterations

  def restore_or_initialize(self, init_checkpoint=None, use_ema=False,
                            zero_init_logits_layer=False):
    """Resumes from model_dir, else starts from `init_checkpoint` weights.

    Resuming restores weights, step and optimizer state, after checking that
    the saved architecture is this model's (so a run with other flags stops
    instead of overwriting the checkpoint). Starting from another checkpoint
    restores model weights only, as published, optionally zeroing the
    supervised head.

    Returns:
      A line saying where the weights came from.
    """
    latest = self.manager.latest_checkpoint
    if latest:
      checkpoint_io.verify_matches_model(self.model, latest)
      self.checkpoint.restore(latest).expect_partial()
      message = f'Resumed from {latest} at step {int(self.global_step.numpy())}.'
      if self.memory is not None and not memory_buffer.checkpoint_has_memory(
          latest):
        self.memory.initialize_from(self.model)
        message += ' The memory buffer starts empty (none was saved).'
      return message
    message = 'Starting from freshly initialised weights.'
    if init_checkpoint:
      report = checkpoint_io.restore_model_weights(self.model, init_checkpoint,
                                                   use_ema=use_ema)
      message = f'Initialised from {init_checkpoint}: {report.summary()}'
    if zero_init_logits_layer and self.model.supervised_head is not None:
      for variable in self.model.supervised_head.trainable_weights:
        variable.assign(tf.zeros_like(variable))
      message += ' Supervised head set to zero.'
    if self.memory is not None:
      self.memory.initialize_from(self.model)
    return message

  def save(self):
    return self.manager.save(checkpoint_number=self.global_step)


def train(state, strategy, dataset, loss_config, train_steps, steps_per_loop,
          learning_rate, summary_writer, teacher=None, memory=None,
          augment_fn=None):
  """Trains until `train_steps`, saving a checkpoint every `steps_per_loop`.

  Args:
    state: CheckpointState (already restored or initialised).
    strategy: the tf.distribute strategy the model was built under.
    dataset: distributed training dataset of (images, {'labels': one_hot}).
    loss_config: LossConfig.
    train_steps: total number of steps (global step to reach).
    steps_per_loop: steps between checkpoints and summaries.
    learning_rate: the schedule, for its summary.
    summary_writer: tf.summary writer for model_dir.
    teacher: the teacher Model in distillation (see `make_train_step`).
    memory: the MemoryBuffer of pretraining with a memory, or None.
    augment_fn: the colour distortion of augment_on_device, or None (see
      `make_train_step`).

  Returns:
    The last train metrics, {summary name: value}.
  """
  with strategy.scope():
    metrics = build_metrics(loss_config)
  step = make_train_step(state.model, state.optimizer, loss_config, strategy,
                         metrics, teacher=teacher, memory=memory,
                         augment_fn=augment_fn)
  train_loop = make_train_loop(strategy, step)
  iterator = iter(dataset)
  current = int(state.global_step.numpy())
  last = {}
  while current < train_steps:
    num_steps = min(steps_per_loop, train_steps - current)
    train_loop(iterator, tf.constant(num_steps))
    current = int(state.global_step.numpy())
    path = state.save()
    last = metrics_lib.results(metrics)
    with summary_writer.as_default():
      metrics_lib.write_summaries(metrics, current)
      tf.summary.scalar('learning_rate',
                        learning_rate(tf.cast(current, tf.float32)),
                        step=current)
    summary_writer.flush()
    logging.info('Step %d / %d, saved %s: %s', current, train_steps,
                 os.path.basename(path),
                 ', '.join(f'{k}={v:.4f}' for k, v in last.items()))
    metrics_lib.reset(metrics)
  return last
