"""Progress you can watch between checkpoints, and a stall detector.

Checkpoints may be an epoch apart (hours on ImageNet). The training loop
therefore runs in chunks of about `interval_s` seconds and, after each,
`Progress.report` logs one line (step, steps/s, views/s, ETA) and writes the
same figures as TensorBoard scalars under `progress/`. A watchdog thread
warns when no chunk has finished for `stall_intervals` intervals (an input
pipeline waiting on a dead filesystem, a hung collective), once per stall.
"""

import threading
import time

from absl import logging
import tensorflow as tf


def _duration(seconds):
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


class Progress:
  """Paces the training loop's chunks and reports after each.

  Args:
    start_step: the global step training starts (or resumes) at.
    total_steps: the global step training ends at.
    views_per_step: images through the network per step (the global batch
      times 2 in pretraining: two views).
    interval_s: wanted seconds between report lines.
    summary_writer: a tf.summary writer, or None.
    stall_intervals: intervals without progress before a stall warning.
    clock: time source (tests pass a fake).
  """

  def __init__(self, start_step, total_steps, views_per_step, interval_s=60.0,
               summary_writer=None, stall_intervals=5, clock=time.monotonic):
    self.total_steps = total_steps
    self.views_per_step = views_per_step
    self.interval_s = interval_s
    self._writer = summary_writer
    self._stall_s = stall_intervals * interval_s
    self._clock = clock
    self._last_step = start_step
    self._last_time = clock()
    self._seconds_per_step = None
    self._stop = threading.Event()
    self._watchdog = None

  def chunk_steps(self, current_step, limit):
    """Steps to run before the next report: ~interval_s, at most `limit`."""
    if self._seconds_per_step is None:
      return min(limit, 1)  # The first step measures (and traces).
    wanted = int(self.interval_s / max(self._seconds_per_step, 1e-6))
    return max(1, min(limit, wanted, self.total_steps - current_step))

  def report(self, step):
    """Logs and summarises progress up to `step`; returns the line."""
    now = self._clock()
    steps, seconds = step - self._last_step, now - self._last_time
    line = f'Step {step} / {self.total_steps}'
    if steps > 0 and seconds > 0:
      first = self._seconds_per_step is None
      self._seconds_per_step = seconds / steps
      rate = steps / seconds
      eta = (self.total_steps - step) * self._seconds_per_step
      line += (f': {rate:.3g} steps/s, {rate * self.views_per_step:.4g} '
               f'views/s, ETA {_duration(eta)}')
      if first:
        line += ' (first step, includes tracing)'
      if self._writer is not None and not first:
        with self._writer.as_default():
          tf.summary.scalar('progress/steps_per_second', rate, step=step)
          tf.summary.scalar('progress/views_per_second',
                            rate * self.views_per_step, step=step)
          tf.summary.scalar('progress/eta_seconds', eta, step=step)
    self._last_step, self._last_time = step, now
    logging.info(line)
    return line

  def _watch(self):
    warned_at = None
    while not self._stop.wait(min(self.interval_s, self._stall_s)):
      idle = self._clock() - self._last_time
      if idle >= self._stall_s and warned_at != self._last_time:
        warned_at = self._last_time
        logging.warning(
            'No training progress for %s (last at step %d): the input '
            'pipeline or another replica may be stuck.', _duration(idle),
            self._last_step)

  def __enter__(self):
    self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                      name='progress-watchdog')
    self._watchdog.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    self._watchdog.join()
