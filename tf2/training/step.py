"""The train step: the losses of one batch, and gradients and update.

Each piece is a small function so that tests and notebooks can run one step
without run.py: `compute_loss` (what is optimised) and `make_train_step`
(gradients and update on one replica). The loop that runs steps lives in
`loop.py`.

A step whose loss or gradients are not finite (NaN / Inf) returns NaN, so
the loop can stop there (nan_policy='stop'); with 'skip_step' the update is
skipped on every replica.
"""

import dataclasses

import tensorflow as tf

from tf2.runtime import precision
from tf2.runtime import reproducibility
from tf2.training import distillation
from tf2.training import memory_buffer
from tf2.training import metrics as metrics_lib
from tf2.training import microbatch
from tf2.training import objective
from tf2.training import optimization
# The --nan_policy choices (see make_train_step).
NAN_POLICIES = ('stop', 'skip_step')
# What a run trains (LossConfig.train_mode; --train_mode offers these).
TRAIN_MODES = ('pretrain', 'finetune', 'distill')


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
                 metrics=None, labeled=None, teacher=None, memory=None,
                 seed=None):
  """The per-replica loss of one batch (before dividing by replicas).

  Args:
    model: a tf2.models.model.Model.
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
    seed: optional (2,) stateless seed of the model's pretraining blur
      (seeded runs); None draws from TensorFlow's global generator.

  Returns:
    Scalar loss: contrastive / distillation + supervised + weight decay.
  """
  projection, logits = model(images, training=True, seed=seed)
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
      loss += distillation.weighted(distill_loss, sup_loss,
                                    loss_config.label_loss_weight)
      if metrics is not None:
        metrics_lib.update_distillation(metrics, distill_loss, soft, logits)
    else:
      loss += sup_loss
    if metrics is not None:
      metrics_lib.update_supervised(metrics, sup_loss, labels, logits,
                                    labeled)
  weight_decay = optimization.weight_decay_loss(
      model, loss_config.weight_decay,
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


def _step_key(run_seed, stream, step_counter):
  """This replica's key of one stream of draws at this step; None unseeded."""
  if run_seed is None:
    return None
  return reproducibility.step_key(run_seed, stream,
                                  _replica_step_seed(step_counter))


def _all_finite(loss, grads):
  """One bool: the loss and every gradient are finite on this replica."""
  checks = [tf.reduce_all(tf.math.is_finite(loss))]
  checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
  return tf.reduce_all(tf.stack(checks))


def _apply_if(finite, optimizer, pairs):
  """Applies the update on every replica, or on none when `finite` is False.

  `finite` must agree across replicas (it is all-reduced first). The choice
  is made once in cross-replica context, then each replica applies its
  gradients as usual (the pattern of Keras's LossScaleOptimizer).
  """

  if tf.__internal__.distribute.strategy_supports_no_merge_call():
    # Inside XLA on GPUs (whole_step_compilable) there is no merge_call:
    # the replicas take the same branch since `finite` is all-reduced.
    return tf.cond(finite, lambda: optimizer.apply_gradients(pairs),
                   tf.no_op)

  def choose(strategy, finite, pairs):
    def apply():
      strategy.extended.call_for_each_replica(
          lambda p: optimizer.apply_gradients(p), args=(pairs,))
      return tf.constant(True)
    agreed = strategy.experimental_local_results(finite)[0]
    return tf.cond(agreed, apply, lambda: tf.constant(False))

  return tf.distribute.get_replica_context().merge_call(
      choose, args=(finite, pairs))


def whole_step_compilable(strategy):
  """Whether XLA can compile a replica's whole step, collectives included.

  TensorFlow compiles the cross-replica reductions (of the synchronised
  batch norm, the gathered negatives, the gradients) into XLA only on GPUs:
  there it drops its merge_call synchronisation inside XLA. On CPUs XLA has
  no collectives ('Collectives are not yet implemented for CPU devices when
  compiling with XLA'), so only a single replica's forward and backward pass
  can be compiled, and its update runs outside.
  """
  if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
    # The default strategy: one replica wherever TensorFlow places ops.
    return bool(tf.config.list_logical_devices('GPU'))
  return all('GPU' in d.upper() for d in strategy.extended.worker_devices)


def make_train_step(model, optimizer, loss_config, strategy, metrics=None,
                    teacher=None, memory=None, augment_fn=None,
                    nan_policy='stop', jit_compile=False, seed=None,
                    num_microbatches=1):
  """Returns `step(images, labels, labeled=None)` to run on each replica.

  Args:
    model, optimizer, loss_config, strategy, metrics: see `compute_loss`.
      The optimizer may be a LossScaleOptimizer (precision.wrap_optimizer,
      mixed_float16): the loss is scaled and the gradients unscaled, and it
      skips steps whose scaled gradients overflow, as loss scaling does.
    teacher: the teacher Model when loss_config.train_mode == 'distill'.
    memory: optional MemoryBuffer (pretraining): read by the loss, then,
      after the update, its moving average follows the model and this
      batch's keys are enqueued (so a batch is never its own negative).
    augment_fn: optional `augment_fn(images, seed) -> images` applied to
      each replica's pretraining batch before anything else (augment_on_device:
      `color_augment.make_augment_fn`); seed is (global step, replica id).
    seed: the run's --seed, or None: the model's and the memory's blurs
      then draw from (seed, global step, replica id) instead of TensorFlow's
      global generator, so that a resumed run repeats them.
    nan_policy: 'stop' applies every update (the loop stops after a
      non-finite one, which is never saved); 'skip_step' applies none of a
      step whose loss or gradients are not finite on some replica.
    jit_compile: compile the step with XLA: on GPUs all of it, the
      cross-replica gather of negatives, the synchronised batch norm and the
      update included; on one CPU replica its forward and backward pass
      (see `whole_step_compilable`).
    num_microbatches: K > 1 computes each replica's loss and gradients in K
      micro-batches, with the loss of the whole batch (microbatch.py).

  Returns:
    step, returning this replica's loss, or NaN when the loss or a gradient
    of the step was not finite.
  """
  if nan_policy not in NAN_POLICIES:
    raise ValueError(f'nan_policy={nan_policy!r}: use one of {NAN_POLICIES}.')
  if (loss_config.train_mode == 'distill') != (teacher is not None):
    raise ValueError('A teacher is needed for, and only for, '
                     "train_mode='distill'.")
  if augment_fn is not None and loss_config.train_mode != 'pretrain':
    raise ValueError('augment_fn (augment_on_device) applies to '
                     "train_mode='pretrain' only.")
  # Made now if new: a Keras optimizer creates its step counter on first
  # use, which must not happen inside the replica step's tf.function.
  step_counter = optimizer.iterations
  loss_scaled = precision.is_loss_scaled(optimizer)

  def loss_and_gradients(images, labels, labeled):
    with tf.GradientTape() as tape:
      loss = compute_loss(model, images, labels, loss_config, strategy,
                          metrics, labeled=labeled, teacher=teacher,
                          memory=memory, seed=_step_key(
                              seed, reproducibility.BLUR, step_counter))
      # apply_gradients sums over replicas; dividing gives the mean gradient.
      scaled_loss = precision.scaled(
          optimizer, loss / strategy.num_replicas_in_sync)
    grads = tape.gradient(scaled_loss, model.trainable_variables)
    return loss, precision.unscaled(optimizer, grads)

  if num_microbatches > 1:
    chunked = microbatch.make_loss_and_gradients(
        model, optimizer, loss_config, strategy, num_microbatches, metrics,
        teacher=teacher, memory=memory)

    def loss_and_gradients(images, labels, labeled):  # pylint: disable=function-redefined
      return chunked(images, labels, labeled, seed=_step_key(
          seed, reproducibility.BLUR, step_counter))

  compile_whole_step = jit_compile and whole_step_compilable(strategy)
  if jit_compile and not compile_whole_step:
    # One CPU replica (validation.validate_replicas refuses several).
    loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

  def update(images, labels, labeled):
    """Augments, updates; returns (loss or NaN, the images trained on)."""
    if augment_fn is not None:
      images = augment_fn(images, _replica_step_seed(step_counter))
    loss, grads = loss_and_gradients(images, labels, labeled)
    # Layers that do not reach the loss (the projection head when fine-tuning
    # from the encoder output) have no gradient; they are left untouched.
    pairs = [(g, v) for g, v in zip(grads, model.trainable_variables)
             if g is not None]
    # Under loss scaling an overflowing gradient is expected now and then:
    # the optimizer skips that step and lowers the scale; only the loss
    # tells of a diverging run.
    finite = _all_finite(loss, [] if loss_scaled else [g for g, _ in pairs])
    if nan_policy == 'skip_step':
      context = tf.distribute.get_replica_context()
      failures = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                    1.0 - tf.cast(finite, tf.float32))
      finite = failures < 0.5
      _apply_if(finite, optimizer, pairs)
    else:
      optimizer.apply_gradients(pairs)
    return tf.where(finite, loss, tf.constant(float('nan'), loss.dtype)), images

  if compile_whole_step:
    update = tf.function(update, jit_compile=True)

  def step(images, labels, labeled=None):
    loss, images = update(images, labels, labeled)
    if memory is not None:
      # Outside XLA (its updates synchronise replicas by merge_call); also
      # after a skipped step: the EMA weights and the keys are finite.
      memory_buffer.update_memory(
          memory, model, images, strategy, seed=_step_key(
              seed, reproducibility.MEMORY_BLUR, step_counter))
    return loss

  return step
