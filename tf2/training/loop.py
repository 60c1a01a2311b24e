"""The training loop: many steps per call, checkpoints, summaries, progress.

`make_train_loop` runs steps (`step.make_train_step`) inside one
tf.function; `train` runs it until the last step, saving a checkpoint every
`steps_per_loop` steps and logging progress in between.

A step whose loss or gradients are not finite (NaN / Inf) never goes
unnoticed: with nan_policy='stop' (the default) training stops at that step
with `NonFiniteLossError` before anything of it is saved, so the last good
checkpoints and exports stay; with 'skip_step' the update is skipped on every
replica and training goes on.
"""

from absl import logging
import tensorflow as tf

from tf2.training import metrics as metrics_lib
from tf2.training import progress as progress_lib

# With nan_policy='skip_step', training stops after this many chunks in a
# row without one finite step: every step failing is not a glitch.
_MAX_CHUNKS_WITHOUT_UPDATE = 10


class NonFiniteLossError(RuntimeError):
  """Training stopped at a step whose loss or gradients were not finite."""


def make_train_loop(strategy, step, stop_on_nonfinite=True):
  """A tf.function running up to `num_steps` steps from a distributed iterator.

  `num_steps` is a tensor so that a shorter loop does not retrace; the loop
  is a tf.while_loop, not unrolled.

  Returns:
    train_loop(iterator, num_steps) -> (int32 steps whose loss was not
    finite, bool whether it stopped early on one: with
    `stop_on_nonfinite`, at the first such step).
  """

  @tf.function
  def train_loop(iterator, num_steps):
    nonfinite = tf.constant(0)
    stopped = tf.constant(False)
    for _ in tf.range(num_steps):
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
    return nonfinite, stopped

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
          views_per_step=0, progress_interval_s=60.0):
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
      in a seeded run `dataset(step)`, the one to read from global step
      `step` on: it is rebuilt after every checkpoint, so that a run resumed
      from a checkpoint reads what the uninterrupted run read
      (reproducibility.py).
    train_steps: total number of steps (global step to reach).
    steps_per_loop: steps between checkpoints and summaries.
    learning_rate: the schedule, for its summary.
    summary_writer: tf.summary writer for model_dir.
    nan_policy: 'stop' or 'skip_step' (see the module docstring).
    views_per_step: images per step through the network, for views/s.
    progress_interval_s: seconds between progress lines.

  Returns:
    The last train metrics, {summary name: value}.

  Raises:
    NonFiniteLossError: with nan_policy='stop', at the first non-finite step.
    checkpoint_state.SaveError: a checkpoint could not be written.
  """
  train_loop = make_train_loop(strategy, step,
                               stop_on_nonfinite=nan_policy == 'stop')
  restarts = callable(dataset)  # Seeded: the data order is the step's.
  current = int(state.global_step.numpy())
  iterator = iter(dataset(current) if restarts else dataset)
  last, skipped, stalled = {}, 0, 0
  with progress_lib.Progress(current, train_steps, views_per_step,
                             progress_interval_s, summary_writer) as progress:
    while current < train_steps:
      next_save = min(current + steps_per_loop, train_steps)
      while current < next_save:
        nonfinite, stopped = train_loop(
            iterator, tf.constant(progress.chunk_steps(current,
                                                       next_save - current)))
        previous, current = current, int(state.global_step.numpy())
        stalled = stalled + 1 if current == previous else 0
        if bool(stopped) or stalled >= _MAX_CHUNKS_WITHOUT_UPDATE:
          raise NonFiniteLossError(_nonfinite_message(
              current, state.latest_checkpoint))
        skipped += int(nonfinite)
        if int(nonfinite):
          logging.warning('Skipped %d steps with a non-finite loss so far '
                          '(--nan_policy=skip_step).', skipped)
        progress.report(current)
      path = state.save()
      if restarts and current < train_steps:
        iterator = iter(dataset(current))
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
  return last
