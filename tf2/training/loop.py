"""The training loop: many steps per call, checkpoints, summaries, progress.

`make_train_loop` runs steps (`step.make_train_step`) inside one
tf.function; `train` runs it until the last step, saving a checkpoint every
`steps_per_loop` steps and logging progress in between.

A step whose loss or gradients are not finite (NaN / Inf) never goes
unnoticed: with nan_policy='stop' (the default) training stops at that step
with `NonFiniteLossError` before anything of it is saved, so the last good
checkpoints and exports stay; with 'skip_step' the update is skipped on every
replica and training goes on.

On SIGTERM (a preemption, `runtime/preemption.py`) the running chunk of
steps ends after its current step, on every worker at the same step; a
checkpoint of that step is saved and `preemption.Preempted` raised. The
checkpoints stay on the grid of `steps_per_loop`: a run resumed from a
preemption's checkpoint saves next where the uninterrupted run saves, and
a seeded run reads on from the same position of the same pipeline.
"""

import time

from absl import logging
import tensorflow as tf

from tf2.runtime import preemption as preemption_lib
from tf2.training import metrics as metrics_lib
from tf2.training import progress as progress_lib

# With nan_policy='skip_step', training stops after this many chunks in a
# row without one finite step: every step failing is not a glitch.
_MAX_CHUNKS_WITHOUT_UPDATE = 10


class NonFiniteLossError(RuntimeError):
  """Training stopped at a step whose loss or gradients were not finite."""


def make_train_loop(strategy, step, stop_on_nonfinite=True,
                    stop_requested=None, agree_across_workers=False):
  """A tf.function running up to `num_steps` steps from a distributed iterator.

  `num_steps` is a tensor so that a shorter loop does not retrace; the loop
  is a tf.while_loop, not unrolled.

  Args:
    strategy: the tf.distribute strategy.
    step: the replica step.
    stop_on_nonfinite: stop at the first step whose loss is not finite.
    stop_requested: a boolean tf.Variable read before every step (a
      preemption, `runtime/preemption.py`); True ends the loop before the
      step. None: never.
    agree_across_workers: all-reduce `stop_requested` over the replicas
      before every step, so that the workers of a cluster stop after the
      same step (one scalar collective per step).

  Returns:
    train_loop(iterator, num_steps) -> (int32 steps whose loss was not
    finite, bool whether it stopped early on one: with
    `stop_on_nonfinite`, at the first such step, bool whether it stopped
    because `stop_requested` was set).
  """

  def requested():
    flag = tf.cast(stop_requested.read_value(), tf.float32)
    if not agree_across_workers:
      return flag > 0
    votes = strategy.run(lambda: tf.identity(flag))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None) > 0

  @tf.function
  def train_loop(iterator, num_steps):
    nonfinite = tf.constant(0)
    stopped = tf.constant(False)
    preempted = tf.constant(False)
    for _ in tf.range(num_steps):
      if stop_requested is not None:
        if requested():
          preempted = tf.constant(True)
          break
      images, labels = next(iterator)
      loss = strategy.run(step, (images, labels['labels'],
                                 labels.get('labeled')))
      loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
      bad = tf.logical_not(tf.math.is_finite(loss))
      nonfinite += tf.cast(bad, tf.int32)
      if stop_on_nonfinite:
        if bad:
          stopped = tf.constant(True)
          break
    return nonfinite, stopped, preempted

  return train_loop


def _nonfinite_message(step, latest):
  kept = f'the last checkpoint ({latest}) and exports are kept' if latest else (
      'no checkpoint had been saved yet')
  return (f'Step {step}: the loss or the gradients are not finite (NaN or '
          f'Inf). Training stopped there and nothing of this step was saved; '
          f'{kept}. Likely causes: a learning rate too high '
          '(--learning_rate), a temperature too low (--temperature, '
          '--distillation_temperature) or a float16 overflow '
          '(--mixed_precision). Lower it and run the same command to resume '
          'from the last checkpoint, or pass --nan_policy=skip_step to skip '
          'such steps.')


def train(state, strategy, step, metrics, dataset, train_steps,
          steps_per_loop, learning_rate, summary_writer, nan_policy='stop',
          views_per_step=0, progress_interval_s=60.0, preemption=None,
          agree_across_workers=False,
          preemption_grace_s=preemption_lib.DEFAULT_GRACE_S):
  """Trains until `train_steps`, saving a checkpoint every `steps_per_loop`.

  Between checkpoints the loop runs in chunks of about `progress_interval_s`
  seconds and logs its progress after each (`progress.Progress`).

  Args:
    state: checkpoint_state.CheckpointState (restored or initialised).
    strategy: the tf.distribute strategy the model was built under.
    step: the replica step, from `step.make_train_step` (built with the same
      `nan_policy`).
    metrics: the train metrics the step updates (`step.build_metrics`).
    dataset: distributed training dataset of (images, {'labels': one_hot});
      in a seeded run `dataset(step, skip_steps)`, the one to read from
      global step `step` on, less its first `skip_steps` steps' batches: it
      is rebuilt after every checkpoint, so that a run resumed from a
      checkpoint reads what the uninterrupted run read (reproducibility.py).
    train_steps: total number of steps (global step to reach).
    steps_per_loop: steps between checkpoints and summaries.
    learning_rate: the schedule, for its summary.
    summary_writer: tf.summary writer for model_dir.
    nan_policy: 'stop' or 'skip_step' (see the module docstring).
    views_per_step: images per step through the network, for views/s.
    progress_interval_s: seconds between progress lines.
    preemption: a `preemption.Watcher` (installed), or None.
    agree_across_workers: the workers of a cluster agree on the step to stop
      at (`make_train_loop`); needed with several workers.
    preemption_grace_s: the seconds a preemption leaves; a warning says so
      when a step and a save take longer.

  Returns:
    The last train metrics, {summary name: value}.

  Raises:
    NonFiniteLossError: with nan_policy='stop', at the first non-finite step.
    checkpoint_state.SaveError: a checkpoint could not be written.
    preemption.Preempted: SIGTERM arrived; the last finished step is saved.
  """
  train_loop = make_train_loop(
      strategy, step, stop_on_nonfinite=nan_policy == 'stop',
      stop_requested=preemption and preemption.variable,
      agree_across_workers=agree_across_workers)
  restarts = callable(dataset)  # Seeded: the data order is the step's.
  current = int(state.global_step.numpy())
  saved_at = current  # Resumed from it, or nothing trained yet.
  # The checkpoint the stretch of `current` started from (a preemption's
  # checkpoint lies between two).
  stretch = current - current % steps_per_loop
  iterator = iter(dataset(stretch, current - stretch) if restarts else dataset)
  last, skipped, stalled, timing = {}, 0, 0, _SaveTiming(preemption_grace_s)
  with progress_lib.Progress(current, train_steps, views_per_step,
                             progress_interval_s, summary_writer) as progress:
    while current < train_steps:
      next_save = min(stretch + steps_per_loop, train_steps)
      while current < next_save:
        if preemption is not None:
          preemption.sync()
        started = time.monotonic()
        nonfinite, stopped, preempted = train_loop(
            iterator, tf.constant(progress.chunk_steps(current,
                                                       next_save - current)))
        previous, current = current, int(state.global_step.numpy())
        timing.ran(current - previous, time.monotonic() - started)
        if bool(preempted):
          progress.report(current)
          raise _preempted(state, current, saved_at, preemption)
        stalled = stalled + 1 if current == previous else 0
        if bool(stopped) or stalled >= _MAX_CHUNKS_WITHOUT_UPDATE:
          raise NonFiniteLossError(_nonfinite_message(
              current, state.latest_checkpoint))
        skipped += int(nonfinite)
        if int(nonfinite):
          logging.warning('Skipped %d steps with a non-finite loss so far '
                          '(--nan_policy=skip_step).', skipped)
        progress.report(current)
      started = time.monotonic()
      path = state.save()
      timing.saved(time.monotonic() - started)
      saved_at = stretch = current
      if restarts and current < train_steps:
        iterator = iter(dataset(current, 0))
      last = metrics_lib.results(metrics)
      with summary_writer.as_default():
        metrics_lib.write_summaries(metrics, current)
        tf.summary.scalar('learning_rate',
                          learning_rate(tf.cast(current, tf.float32)),
                          step=current)
      summary_writer.flush()
      logging.info('Step %d / %d, saved %s: %s', current, train_steps,
                   path.rsplit('/', 1)[-1] if path else 'by the chief',
                   ', '.join(f'{k}={v:.4f}' for k, v in last.items()))
      metrics_lib.reset(metrics)
  if (preemption is not None and preemption.requested and
      not agree_across_workers):
    # Arrived during the last step: its checkpoint is saved. (On a cluster
    # the other workers may not know: they go on together.)
    raise _preempted(state, current, saved_at, preemption)
  return last


class _SaveTiming:
  """Warns once when a step and a save take longer than a preemption's grace.

  A preempted run finishes the step that runs and then saves; if the two
  take longer than the grace period, the kill comes first and the run
  resumes from its previous checkpoint instead.
  """

  def __init__(self, grace_s):
    self.grace_s = grace_s
    self.step_s = 0.0
    self._warned = False

  def ran(self, steps, seconds):
    if steps > 0:
      self.step_s = seconds / steps

  def saved(self, seconds):
    needed = self.step_s + seconds
    if needed > self.grace_s and not self._warned:
      self._warned = True
      logging.warning(
          'A step (%.1f s) and a checkpoint save (%.1f s) take longer than '
          'a preemption leaves (--preemption_grace_secs=%g): a preempted '
          'run would be killed before its save and resume from its previous '
          'checkpoint.', self.step_s, seconds, self.grace_s)


def _preempted(state, current, saved_at, preemption):
  """Saves the last finished step (unless saved) and says where to resume."""
  started = time.monotonic()
  path = state.save() if current != saved_at else state.latest_checkpoint
  after = ''
  if preemption.received_at is not None:
    after = f', {time.monotonic() - preemption.received_at:.1f} s after it'
  if current == saved_at:
    saved = (f'step {current} is saved' if current else
             'nothing was trained yet')
  elif path is None:
    saved = f'the chief saved step {current}'
  else:
    saved = f'saved {path} in {time.monotonic() - started:.1f} s'
  return preemption_lib.Preempted(
      f'stopped on SIGTERM (preemption) after step {current}: {saved}'
      f'{after}. Run the same command again to resume from step {current}.',
      current, path)
