"""SIGTERM during a compiled chunk of steps ends it after the running step.

The whole path (run.py saving on SIGTERM, exit code, resuming to the
uninterrupted weights) is tested in test_reproducibility.py.
"""

import os
import signal
import time

import tensorflow as tf

from tf2.runtime import preemption
from tf2.training import loop as train_loop


def _dataset():
  images = tf.zeros([4, 2])
  return tf.data.Dataset.from_tensors(
      (images, {'labels': tf.zeros([4, 2])})).repeat()


def _counting_step(counter, signal_at):
  """A step that counts and, at step `signal_at`, sends this process SIGTERM."""

  def maybe_signal(count):
    if int(count) == signal_at:
      os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.02)  # A step that takes time, as a real one.
    return 0

  def step(unused_images, unused_labels, unused_labeled):
    count = counter.assign_add(1)
    tf.py_function(maybe_signal, [count], tf.int64)
    return tf.constant(0.0)

  return step


def test_sigterm_ends_a_running_chunk_after_its_step_and_restores_handlers():
  before = signal.getsignal(signal.SIGTERM)
  strategy = tf.distribute.get_strategy()
  counter = tf.Variable(0, dtype=tf.int64)
  with preemption.Watcher() as watcher:
    loop = train_loop.make_train_loop(
        strategy, _counting_step(counter, signal_at=3),
        stop_requested=watcher.variable)
    started = time.monotonic()
    _, stopped, preempted = loop(iter(_dataset()), tf.constant(1000))
    seconds = time.monotonic() - started
    assert bool(preempted) and not bool(stopped)
    assert watcher.requested and watcher.received_at is not None
  # The signal came during step 3; the loop stopped within a step or two,
  # not after the 1000 steps it was asked for.
  assert 3 <= int(counter.numpy()) <= 6, int(counter.numpy())
  assert seconds < 5
  assert signal.getsignal(signal.SIGTERM) == before


def test_replicas_agree_on_the_flag_before_each_step(two_cpu_strategy):
  counter = tf.Variable(0, dtype=tf.int64)
  flag = tf.Variable(False)

  def step(unused_images, unused_labels, unused_labeled):
    counter.assign_add(1)
    return tf.constant(0.0)

  loop = train_loop.make_train_loop(two_cpu_strategy, step,
                                    stop_requested=flag,
                                    agree_across_workers=True)
  iterator = iter(two_cpu_strategy.experimental_distribute_dataset(
      _dataset()))
  _, _, preempted = loop(iterator, tf.constant(2))
  assert not bool(preempted) and int(counter.numpy()) == 2 * 2  # 2 replicas
  flag.assign(True)
  _, _, preempted = loop(iterator, tf.constant(2))
  assert bool(preempted) and int(counter.numpy()) == 4
