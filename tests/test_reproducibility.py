"""--seed: a run repeats itself bit for bit, also when killed and resumed.

The killed runs are this module run as a script (see the end): run.py that
sends itself SIGKILL at a chosen point, which is a `kill -9` at exactly that
point rather than wherever a polling test happens to catch it; or SIGTERM
(a preemption), after which it saves and exits with code 75.
"""

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf2 import runner
from tf2.config import experiment as experiment_lib
from tf2.data import blur
from tf2.data import pipeline as data_lib
from tf2.runtime import reproducibility
from tf2.training import progress as progress_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# 20 px: the smallest size whose blur is not the identity (3 taps), so the
# blur's draws reach the weights.
TINY = dict(dataset='digits', use_tpu=False, resnet_depth=18, image_size=20,
            train_batch_size=16, proj_out_dim=16, learning_rate=0.1,
            warmup_epochs=0, seed=7)
# A seeded run's checkpoint holds the objects of an unseeded run's, no more
# (the optimizer's slots are saved under `model/`).
PUBLISHED_OBJECTS = ('model', 'optimizer', 'global_step', 'save_counter')
KILL_AT = 'SIMCLR_TEST_KILL_AT'
PREEMPTED = 75  # runtime/preemption.py's EXIT_CODE, as documented.


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


def weights(checkpoint):
  """{key: value} of every saved tensor (model, optimizer, step)."""
  reader = tf.train.load_checkpoint(str(checkpoint))
  return {key: reader.get_tensor(key)
          for key in reader.get_variable_to_shape_map()
          if key != '_CHECKPOINTABLE_OBJECT_GRAPH'}


def assert_identical(checkpoint, expected, ignore=()):
  actual, wanted = [{k: v for k, v in weights(c).items()
                     if k.split('/')[0] not in ignore}
                    for c in (checkpoint, expected)]
  assert sorted(actual) == sorted(wanted)
  different = [k for k in wanted if not np.array_equal(actual[k], wanted[k])]
  assert not different, f'{len(different)} tensors differ: {different[:3]}'


def test_the_blur_is_a_function_of_its_seed():
  images = tf.random.stateless_uniform([8, 20, 20, 3], [1, 2])

  def blurred(seed):
    return np.stack(blur.batch_random_blur(
        [images, images], 20, 20, seed=tf.constant(seed, tf.int64)))

  np.testing.assert_array_equal(blurred([3, 4]), blurred([3, 4]))
  assert np.abs(blurred([3, 4]) - blurred([3, 5])).max() > 1e-3


def test_step_keys_differ_by_stream_step_and_replica():
  keys = {tuple(reproducibility.step_key(7, stream, [step, replica]).numpy())
          for stream in (reproducibility.AUGMENT, reproducibility.BLUR,
                         reproducibility.MEMORY_BLUR)
          for step in (0, 1) for replica in (0, 1)}
  assert len(keys) == 12


def test_a_pipeline_restarted_at_a_step_reads_the_same_batches(data_dir):
  builder = data_lib.get_builder('digits', str(data_dir))
  context = tf.distribute.InputContext(1, 0, 1)

  def batches(start_step, skip_steps=0):
    input_fn = data_lib.build_input_fn(
        builder, 16, True, split='train', image_size=8, train_mode='pretrain',
        seed=7, start_step=start_step, skip_steps=skip_steps)
    return np.stack([images for images, _ in input_fn(context).take(3)])

  np.testing.assert_array_equal(batches(4), batches(4))
  assert np.abs(batches(4) - batches(6)).max() > 0.1
  # Where a preemption's checkpoint at step 5 leaves the pipeline of step 4.
  np.testing.assert_array_equal(batches(4, skip_steps=1)[:2], batches(4)[1:])


def test_two_runs_with_one_seed_end_with_identical_weights(data_dir,
                                                           tmp_path):
  # In-process, so without --deterministic (op determinism would stay on for
  # this worker's other tests); the CPU kernels repeat without it.
  for name in ('first', 'second'):
    runner.run(experiment_lib.compose(dict(
        TINY, model_dir=str(tmp_path / name), data_dir=str(data_dir),
        train_steps=2, checkpoint_steps=1)))
  assert_identical(tmp_path / 'second' / 'ckpt-2', tmp_path / 'first' /
                   'ckpt-2')
  assert {key.split('/')[0] for key in weights(tmp_path / 'first' / 'ckpt-2')
         } <= set(PUBLISHED_OBJECTS)


def run_py(model_dir, data_dir, kill_at=None):
  """`run.py` (seeded, op determinism) to the end, or killed at `kill_at`.

  Returns:
    Its stderr.
  """
  flags = [f'--{k}={v}' for k, v in TINY.items()] + [
      '--deterministic', '--train_steps=6', '--checkpoint_steps=2',
      # One step per progress report, so a kill after step 3 is possible.
      '--progress_interval_secs=0.001', f'--model_dir={model_dir}',
      f'--data_dir={data_dir}']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(ROOT))
  env.pop(KILL_AT, None)
  if kill_at:
    env[KILL_AT] = kill_at
  done = subprocess.run([sys.executable, __file__, *flags], env=env, cwd=ROOT,
                        stderr=subprocess.PIPE, text=True, timeout=600)
  if kill_at and kill_at.startswith('term'):
    assert done.returncode == PREEMPTED, done.stderr[-3000:]
  elif kill_at:
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
  else:
    assert done.returncode == 0, done.stderr[-3000:]
  return done.stderr


def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_weights(
    data_dir, tmp_path):
  run_py(tmp_path / 'whole', data_dir)
  killed = tmp_path / 'killed'
  # Preempted (SIGTERM) after step 3: ckpt-3 saved, between the periodic
  # ckpt-2 and ckpt-4; the lock released; one line says where it resumes.
  stderr = run_py(killed, data_dir, kill_at='term@3')
  assert tf.train.latest_checkpoint(str(killed)).endswith('ckpt-3')
  assert not (killed / 'run.lock').exists()
  said = [line for line in stderr.splitlines() if line.startswith('run.py:')]
  assert len(said) == 1 and 'resume from step 3' in said[0], said
  assert 'Traceback' not in stderr
  # Resumed from ckpt-3, killed (SIGKILL) in the middle of a save: ckpt-4's
  # data written to ckpt-4_temp/, not yet merged into ckpt-4.index.
  run_py(killed, data_dir, kill_at='save@4')
  assert (killed / 'ckpt-4_temp').is_dir()
  assert tf.train.latest_checkpoint(str(killed)).endswith('ckpt-3')
  run_py(killed, data_dir)
  assert not (killed / 'ckpt-4_temp').exists()
  # The checkpoints stay on the grid; save_counter (how many saves) counts
  # the preemption's extra one.
  for step in (4, 6):
    assert_identical(killed / f'ckpt-{step}', tmp_path / 'whole' /
                     f'ckpt-{step}', ignore=('save_counter',))


def _kill_self(signum=signal.SIGKILL):
  os.kill(os.getpid(), signum)


def _kill_after_step(step, signum=signal.SIGKILL):
  report = progress_lib.Progress.report

  def report_then_kill(self, current):
    line = report(self, current)
    if current == step:
      _kill_self(signum)
    return line

  progress_lib.Progress.report = report_then_kill


def _kill_while_saving(step):
  # pylint: disable=g-import-not-at-top
  from tensorflow.python.checkpoint import functional_saver
  merge = functional_saver.gen_io_ops.merge_v2_checkpoints

  def kill_before_merging(checkpoint_prefixes, destination_prefix, **kwargs):
    if destination_prefix.numpy().decode().endswith(f'ckpt-{step}'):
      _kill_self()
    return merge(checkpoint_prefixes, destination_prefix, **kwargs)

  functional_saver.gen_io_ops.merge_v2_checkpoints = kill_before_merging


if __name__ == '__main__':
  # run.py, killed by SIGKILL at $SIMCLR_TEST_KILL_AT: 'step@N' after step
  # N, 'save@N' while saving ckpt-N (its shards written, not merged); or
  # sent SIGTERM after step N by 'term@N'.
  from absl import app  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(ROOT))
  import run  # pylint: disable=g-import-not-at-top
  point = os.environ.get(KILL_AT)
  if point:
    where, at = point.split('@')
    {'step': _kill_after_step, 'save': _kill_while_saving,
     'term': lambda n: _kill_after_step(n, signal.SIGTERM)}[where](int(at))
  app.run(run.main)
