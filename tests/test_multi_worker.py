"""Two worker processes on localhost train through run.py as one cluster.

Also what a cluster does when it cannot go on: a worker preempted (SIGTERM),
a worker that stops answering, a cluster that never forms.
"""

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

from tests import test_reproducibility
from tests.test_reliability import TINY_FLAGS
from tests.test_runner import TINY
from tf2 import runner
from tf2.config import experiment as experiment_lib
from tf2.runtime import cluster

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def tf_config(index, ports):
  return json.dumps({'cluster': {'worker': [f'localhost:{p}' for p in ports]},
                     'task': {'type': 'worker', 'index': index}})


def launch(model_dir, data_dir, *flags, indices=(0, 1), kill_at=None):
  """Starts worker 0 (the chief) and worker 1 of a loopback cluster.

  Args:
    model_dir, data_dir, flags: of the run.py command.
    indices: the workers to start (the others never start).
    kill_at: {worker index: a kill point of tests/test_reproducibility.py,
      e.g. 'term@3' for SIGTERM after step 3}.
  """
  ports = _free_ports(2)
  workers = []
  for index in indices:
    env = dict(os.environ, TF_CONFIG=tf_config(index, ports),
               PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL='2')
    env.pop(test_reproducibility.KILL_AT, None)
    script = ROOT / 'run.py'
    if kill_at and index in kill_at:
      env[test_reproducibility.KILL_AT] = kill_at[index]
      script = ROOT / 'tests' / 'test_reproducibility.py'
    log = open(pathlib.Path(model_dir).parent / f'worker{index}.log', 'w')  # pylint: disable=consider-using-with
    workers.append(subprocess.Popen(
        [sys.executable, str(script), *TINY_FLAGS,
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


def said(log):
  """The lines run.py itself printed (not TensorFlow's C++ logs)."""
  return [line for line in log.splitlines() if line.startswith('run.py:')]


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


# Seeded; a checkpoint and a summary every 2 steps; one step per progress
# report, so that a worker can be preempted after step 3.
_FLAGS = ['--seed=0', '--train_steps=6', '--checkpoint_steps=2',
          '--progress_interval_secs=0.001']


def _wait_for(path, workers, model_dir):
  deadline = time.time() + 600
  while not path.exists():
    assert time.time() < deadline and all(w.poll() is None for w in workers), (
        _log(model_dir, 0)[-3000:])
    time.sleep(0.2)


def test_a_cluster_preempted_then_losing_a_worker_resumes_trains_as_one_process(
    data_dir, tmp_path, two_cpu_strategy):
  model_dir = tmp_path / 'cluster' / 'model'
  model_dir.parent.mkdir()
  # SIGTERM to worker 1 only, after step 3: both stop after step 3, the
  # chief saves ckpt-3 (between the periodic ckpt-2 and ckpt-4), both exit
  # with the preemption's code, the lock released.
  workers = launch(model_dir, data_dir, *_FLAGS, kill_at={1: 'term@3'})
  assert wait(workers) == [75, 75], _log(model_dir, 0)[-3000:]
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-3')
  assert not (model_dir / 'run.lock').exists()
  lines = said(_log(model_dir, 0))
  assert len(lines) == 1 and 'resume from step 3' in lines[0], lines
  assert 'Traceback' not in _log(model_dir, 0)

  # Resumed; worker 1 stops answering (SIGSTOP) after ckpt-4: the chief
  # ends within TensorFlow's heartbeat timeout, with one line naming it.
  workers = launch(model_dir, data_dir, *_FLAGS)
  _wait_for(model_dir / 'ckpt-4.index', workers, model_dir)
  workers[1].send_signal(signal.SIGSTOP)
  stopped = time.time()
  try:
    workers[0].wait(timeout=120)
  finally:
    workers[1].kill()
  assert time.time() - stopped < 60
  assert workers[0].returncode == 1
  lines = said(_log(model_dir, 0))
  assert len(lines) == 1 and 'worker 1 (localhost:' in lines[0], lines
  assert 'Traceback' not in _log(model_dir, 0)
  wait(workers)

  # Resumed again, to the end.
  workers = launch(model_dir, data_dir, *_FLAGS)
  assert wait(workers) == [0, 0], _log(model_dir, 1)[-3000:]
  assert 'Resumed from' in _log(model_dir, 0)
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-6')
  names = sorted(p.name for p in model_dir.iterdir())
  # The chief's files only: no worker folder, lock or temporary left.
  assert all(not n.startswith('.') for n in names), names
  assert 'run.lock' not in names
  assert {'experiment.json', 'flags.json', 'checkpoint',
          'ckpt-6.index'} <= set(names)
  record = json.loads((model_dir / 'experiment.json').read_text())
  assert record['resolved']['num_replicas'] == 2

  # One process, two replicas, each with the input pipeline of one worker.
  reference_dir = tmp_path / 'one_process'
  given = dict(TINY, seed=0, train_steps=6, checkpoint_steps=2,
               model_dir=str(reference_dir), data_dir=str(data_dir))
  context = runner.prepare(experiment_lib.compose(given), two_cpu_strategy,
                           per_replica_pipelines=True)
  runner.train(context)
  cluster_losses, one = losses_by_step(model_dir), losses_by_step(
      reference_dir)
  # The stops may cost the cluster a summary (written after a checkpoint).
  common = sorted(set(one) & set(cluster_losses))
  assert sorted(one) == [2, 4, 6] and 6 in common and len(common) >= 2
  for step in common:
    for name, value in one[step].items():
      # Ring all-reduce against one process's reduction: float32 rounding.
      np.testing.assert_allclose(cluster_losses[step][name], value,
                                 rtol=1e-4, atol=1e-6,
                                 err_msg=f'{name} at {step}')


def test_a_cluster_missing_a_worker_says_so_then_gives_up(data_dir, tmp_path):
  model_dir = tmp_path / 'alone' / 'model'
  model_dir.parent.mkdir()
  started = time.time()
  chief, = launch(model_dir, data_dir, '--cluster_wait_secs=6', indices=(0,))
  assert wait([chief], timeout=300) == [1]
  log = _log(model_dir, 0)
  lines = said(log)
  assert 'Traceback' not in log
  waiting = [line for line in lines if 'waiting for the cluster' in line]
  assert waiting and all('no answer yet from worker 1 (localhost:' in line
                         for line in waiting), lines
  error, = [line for line in lines if line.startswith('run.py: error:')]
  assert ('did not form within --cluster_wait_secs=6: worker 1 (localhost:'
          in error and 'never joined' in error), error
  assert time.time() - started < 120
  assert not model_dir.exists()


# What TensorFlow 2.21 raised in the runs above (first lines).
_FORMATION_TIMEOUT = (
    'Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0. This '
    'usually happens because a task triggered the barrier too early or too '
    'slowly.\n# of tasks that reached the barrier: 1/2.\nThe first task at '
    'the barrier: /job:worker/replica:0/task:0. Some timed out task names:\n'
    '/job:worker/replica:0/task:1\n')
_UNHEALTHY = (
    'Collective ops is aborted by: The following tasks are unhealthy '
    '(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks '
    'have crashed. Check the task logs for an earlier error to debug further.'
    '\nAdditional GRPC error information from remote target '
    '/job:worker/replica:0/task:0')
_RESET = 'Collective ops is aborted by: recvmsg:Connection reset by peer'


def test_cluster_failures_name_the_other_tasks():
  ports = _free_ports(2)
  chief = tf_config(0, ports)
  line = cluster.formation_failure(RuntimeError(_FORMATION_TIMEOUT), chief, 6)
  assert f'worker 1 (localhost:{ports[1]}) never joined' in line
  assert '--cluster_wait_secs=6' in line
  # Worker 1's view: the first task named is itself, never reported.
  line = cluster.formation_failure(RuntimeError(_FORMATION_TIMEOUT),
                                   tf_config(1, ports), 6)
  assert 'worker 1' not in line and f'worker 0 (localhost:{ports[0]})' in line
  line = cluster.peer_failure(tf.errors.UnavailableError(None, None,
                                                         _UNHEALTHY), chief)
  assert line.startswith(f'worker 1 (localhost:{ports[1]}) stopped sending '
                         'heartbeats'), line
  assert 'resumes from its last complete checkpoint' in line
  # A broken connection names no task: the one that does not answer is named.
  line = cluster.peer_failure(tf.errors.UnavailableError(None, None, _RESET),
                              chief)
  assert line.startswith(f'worker 1 (localhost:{ports[1]}) closed its '
                         'connection'), line
  # Other errors, and any error off a cluster, are not a lost task.
  assert cluster.peer_failure(OSError('No space left on device'), chief) is None
  assert cluster.peer_failure(tf.errors.UnavailableError(None, None, _RESET),
                              None) is None


def test_the_formation_watch_says_who_answers_and_stops_with_its_parent(
    capfd):
  ports = _free_ports(3)
  with socket.socket() as listening:
    listening.bind(('localhost', ports[0]))
    listening.listen()
    # This process plays worker 2, waiting for worker 0 (a socket listens
    # there) and worker 1 (nothing does).
    with cluster.FormationWatch(tf_config(2, ports), 2):
      time.sleep(2.6)
  lines = said(capfd.readouterr().err)
  assert len(lines) == 2, lines
  for line in lines:
    assert 'of --cluster_wait_secs=2): no answer yet from worker 1 ' in line
    assert f'(localhost:{ports[1]}).' in line and 'worker 0' not in line
  time.sleep(1.5)  # Stopped: says nothing more.
  assert not said(capfd.readouterr().err)
