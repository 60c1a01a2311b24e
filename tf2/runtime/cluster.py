"""A cluster of workers: a bounded wait while it forms, one line when it fails.

MultiWorkerMirroredStrategy waits, by default without end and without a
word, until every task that TF_CONFIG names has registered with the
coordination service (the chief, or worker 0). A host name with a typo or a
worker that crashed at start then leaves the others waiting in silence.
Here:
  - `configure` sets TensorFlow's coordination service up as the strategy
    would, but with a registration deadline (--cluster_wait_secs) and a
    barrier, so that every task gives up after that time;
  - `FormationWatch` prints, while the cluster forms, which tasks do not
    answer yet (from a separate process: see formation_watch.py);
  - `formation_failure` and `peer_failure` turn what TensorFlow raises when
    the cluster does not form, or loses a task while training, into one line
    naming the tasks. A task that dies during training is found by
    TensorFlow's heartbeats (10 s) or by its broken connections, and the
    collective that waits for it is aborted: the other tasks end then.

TF_CONFIG itself is checked earlier (tf_config.py).
"""

import json
import os
import re
import subprocess
import sys

from tensorflow.python.eager import context as tf_context  # pylint: disable=g-direct-tensorflow-import

from tf2.runtime import formation_watch
from tf2.runtime import tf_config

# The default of --cluster_wait_secs: generous, as published clusters
# (TPU pods, Kubernetes jobs pulling large images) can take many minutes.
DEFAULT_WAIT_S = 1800.0
_COORDINATED_JOBS = ('chief', 'worker')
_TASK_NAME = re.compile(r'/job:(\w+)/replica:\d+/task:(\d+)')
# What TensorFlow says when a collective or the coordination service lost a
# task (the first words of its errors), and the kind of loss each means.
_LOST_SIGNS = ('collective ops is aborted', 'unhealthy', 'coordination service',
               'stopped sending heartbeats', 'connection reset',
               'failed to connect', 'socket closed', 'connection refused')
_WHY = (('heartbeat', 'stopped sending heartbeats'),
        ('connection reset', 'closed its connection'),
        ('refused', 'refused connections'),
        ('socket closed', 'closed its connection'),
        ('failed to connect', 'could not be reached'))


class ClusterError(RuntimeError):
  """The cluster did not form, or lost a task; the message says which."""


def _config(tf_config_text):
  return json.loads(tf_config_text) if tf_config_text else {}


def addresses(tf_config_text):
  """{(task type, index): 'host:port'} of every task in the cluster."""
  found = {}
  for task_type, tasks in _config(tf_config_text).get('cluster', {}).items():
    for index, address in tf_config.indexed(tasks):
      found[(task_type, int(index))] = address
  return found


def this_task(tf_config_text):
  """(task type, index) of this process."""
  task = _config(tf_config_text).get('task') or {}
  return task.get('type'), int(task.get('index', 0))


def describe_task(task, tf_config_text):
  """'worker 1 (host:port)'."""
  address = addresses(tf_config_text).get(task)
  return f'{task[0]} {task[1]}' + (f' ({address})' if address else '')


def _leader(tf_config_text):
  cluster = _config(tf_config_text).get('cluster', {})
  return '/job:chief/replica:0/task:0' if 'chief' in cluster else (
      '/job:worker/replica:0/task:0')


def configure(tf_config_text, wait_secs):
  """Sets up the coordination service with a registration deadline.

  Must run before the strategy is built (it then keeps this set-up). Only
  the chief and the workers are coordinated, as TensorFlow does.

  Args:
    tf_config_text: the TF_CONFIG value (already validated).
    wait_secs: how long every task waits for the others to register.
  """
  cluster = _config(tf_config_text).get('cluster', {})
  config_pb2 = tf_context.coordination_config_pb2
  jobs = [config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster[job]))
          for job in _COORDINATED_JOBS if job in cluster]
  context = tf_context.context()
  context.configure_coordination_service(
      service_type='standalone', service_leader=_leader(tf_config_text),
      coordinated_jobs=jobs,
      cluster_register_timeout_in_ms=int(wait_secs * 1000))
  # Without the barrier only the other tasks time out; the leader waits on.
  context._coordination_service_config.cluster_register_with_barrier = True  # pylint: disable=protected-access


def _others(tf_config_text):
  me = this_task(tf_config_text)
  return {task: address for task, address in addresses(tf_config_text).items()
          if task != me}


def silent_peers(tf_config_text):
  """The other tasks that accept no TCP connection now, described."""
  return [describe_task(task, tf_config_text)
          for task, address in sorted(_others(tf_config_text).items())
          if not formation_watch.answering(address)]


def _named_tasks(text, tf_config_text):
  """The other tasks of the cluster that an error message names, described."""
  others = _others(tf_config_text)
  named = []
  for task_type, index in _TASK_NAME.findall(text):
    task = (task_type, int(index))
    description = describe_task(task, tf_config_text)
    if task in others and description not in named:
      named.append(description)
  return named


class FormationWatch:
  """Context manager: prints which tasks do not answer while a cluster forms.

  See formation_watch.py; stopped when the block ends.
  """

  def __init__(self, tf_config_text, wait_secs):
    self._settings = {
        'parent': os.getpid(), 'wait': float(wait_secs),
        'interval': formation_watch.interval_for(wait_secs),
        'peers': [[describe_task(task, tf_config_text), address]
                  for task, address in sorted(
                      _others(tf_config_text).items())]}
    self._process = None

  def __enter__(self):
    self._process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, formation_watch.__file__,
         json.dumps(self._settings)])
    return self

  def __exit__(self, *unused_exc):
    self._process.terminate()
    self._process.wait()
    return False


def formation_failure(error, tf_config_text, wait_secs):
  """The one line for a cluster that did not form within the wait."""
  missing = _named_tasks(str(error), tf_config_text) or silent_peers(
      tf_config_text)
  who = (f'{", ".join(missing)} never joined' if missing else
         'not every task joined')
  return (f'the cluster did not form within --cluster_wait_secs='
          f'{wait_secs:g}: {who}. Check that every task of TF_CONFIG was '
          'started, with the same cluster in its TF_CONFIG, and that each '
          'host:port is right and reachable from here (a firewall?); then '
          'start them all again (or give a longer --cluster_wait_secs)')


def peer_failure(error, tf_config_text):
  """The one line for a task lost during training, or None if it is not that.

  Args:
    error: what TensorFlow raised.
    tf_config_text: the TF_CONFIG value, or None off a cluster.
  """
  if not tf_config_text or len(addresses(tf_config_text)) < 2:
    return None
  text = str(error)
  lowered = text.lower()
  if not any(sign in lowered for sign in _LOST_SIGNS):
    return None
  unhealthy = lowered.find('unhealthy')
  named = _named_tasks(text[unhealthy:] if unhealthy >= 0 else text,
                       tf_config_text) or silent_peers(tf_config_text)
  why = next((said for sign, said in _WHY if sign in lowered), 'was lost')
  who = ', '.join(named) if named else 'another task of the cluster'
  return (f'{who} {why} during training, so this task stopped too '
          f'({describe_task(this_task(tf_config_text), tf_config_text)}). '
          'Start every task again with the same command: the run resumes '
          'from its last complete checkpoint')
