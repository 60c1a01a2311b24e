"""Two worker processes on localhost train through run.py as one cluster."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.test_reliability import TINY_FLAGS
from tests.test_runner import TINY
from tf2 import runner
from tf2.config import experiment as experiment_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def launch(model_dir, data_dir, *flags):
  """Starts worker 0 (the chief) and worker 1 of a loopback cluster."""
  cluster = {'worker': [f'localhost:{p}' for p in _free_ports(2)]}
  workers = []
  for index in range(2):
    config = {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}
    env = dict(os.environ, TF_CONFIG=json.dumps(config), PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL='2')
    log = open(pathlib.Path(model_dir).parent / f'worker{index}.log', 'w')  # pylint: disable=consider-using-with
    workers.append(subprocess.Popen(
        [sys.executable, str(ROOT / 'run.py'), *TINY_FLAGS,
         f'--model_dir={model_dir}', f'--data_dir={data_dir}', *flags],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
  return workers


def wait(workers, timeout=900):
  """The workers' exit codes (a hung cluster fails the test by timeout)."""
  for worker in workers:
    worker.wait(timeout=timeout)
  return [worker.returncode for worker in workers]


def _log(model_dir, index):
  return (pathlib.Path(model_dir).parent / f'worker{index}.log').read_text()


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The digits, prepared once (workers must not prepare them together)."""
  from tf2.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp('tfds')
  data_lib.get_builder('digits', str(path))
  return path


def losses_by_step(model_dir):
  """{step: {metric: value}} of the train summaries in model_dir."""
  found = {}
  for path in sorted(pathlib.Path(model_dir).glob('events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag.startswith('train/'):
          found.setdefault(event.step, {})[value.tag] = float(
              tf.make_ndarray(value.tensor))
  return found


# Seeded, a summary (and a checkpoint) after every step.
_FLAGS = ['--seed=0', '--train_steps=4', '--checkpoint_steps=1']


def test_a_killed_cluster_resumes_trains_as_one_process_and_only_the_chief_writes(
    data_dir, tmp_path, two_cpu_strategy):
  model_dir = tmp_path / 'cluster' / 'model'
  model_dir.parent.mkdir()
  workers = launch(model_dir, data_dir, *_FLAGS)
  deadline = time.time() + 600
  while not (model_dir / 'ckpt-2.index').exists():
    assert time.time() < deadline and all(w.poll() is None for w in workers), (
        _log(model_dir, 0)[-3000:])
    time.sleep(0.2)
  for worker in workers:
    worker.send_signal(signal.SIGKILL)
  wait(workers)
  workers = launch(model_dir, data_dir, *_FLAGS)
  assert wait(workers) == [0, 0], _log(model_dir, 1)[-3000:]
  assert 'Resumed from' in _log(model_dir, 0)
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-4')
  names = sorted(p.name for p in model_dir.iterdir())
  # The chief's files only: no worker folder, lock or temporary left.
  assert all(not n.startswith('.') for n in names), names
  assert 'run.lock' not in names
  assert {'experiment.json', 'flags.json', 'checkpoint',
          'ckpt-4.index'} <= set(names)
  record = json.loads((model_dir / 'experiment.json').read_text())
  assert record['resolved']['num_replicas'] == 2

  # One process, two replicas, each with the input pipeline of one worker.
  reference_dir = tmp_path / 'one_process'
  given = dict(TINY, seed=0, train_steps=4, checkpoint_steps=1,
               model_dir=str(reference_dir), data_dir=str(data_dir))
  context = runner.prepare(experiment_lib.compose(given), two_cpu_strategy,
                           per_replica_pipelines=True)
  runner.train(context)
  cluster, one = losses_by_step(model_dir), losses_by_step(reference_dir)
  # The kill may cost the cluster a summary (written after its checkpoint).
  common = sorted(set(one) & set(cluster))
  assert sorted(one) == [1, 2, 3, 4] and len(common) >= 3 and 4 in common
  for step in common:
    for name, value in one[step].items():
      # Ring all-reduce against one process's reduction: float32 rounding.
      np.testing.assert_allclose(cluster[step][name], value, rtol=1e-4,
                                 atol=1e-6, err_msg=f'{name} at {step}')
