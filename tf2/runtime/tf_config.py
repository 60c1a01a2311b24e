"""Checks the TF_CONFIG environment variable before a cluster is formed.

TensorFlow reads TF_CONFIG when MultiWorkerMirroredStrategy is built; a
value it cannot use ends in a JSONDecodeError or KeyError traceback, or, for
an address without a port, in a server that never starts. `problem` names
what is wrong in one sentence, so that the run stops before anything is
written (config/validation.py turns it into a usage error).

The layout TensorFlow expects (tf.distribute.cluster_resolver.
TFConfigClusterResolver):

  {"cluster": {"chief": ["host:port"], "worker": ["host:port", ...]},
   "task": {"type": "worker", "index": 0}}
"""

import json

_EXAMPLE = ('e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}')


def _address_problem(address):
  """What is wrong with one 'host:port' address, or None."""
  if not isinstance(address, str) or ':' not in address:
    return f'{address!r} is not "host:port"'
  host, port = address.rsplit(':', 1)
  if not host.strip('[]'):
    return f'{address!r} has no host'
  if not port.isdigit() or not 0 < int(port) < 65536:
    return f'{address!r} has no port number (1-65535) after the last ":"'
  return None


def indexed(tasks):
  """[(index, address)] of a task type's list or sparse {index: address}.

  The indices of the sparse form are as given (checked by `problem`).
  """
  if isinstance(tasks, dict):
    return list(tasks.items())
  return list(enumerate(tasks))


def _addresses(tasks):
  """A task type's addresses."""
  return [address for _, address in indexed(tasks)]


def problem(text):
  """Why TF_CONFIG cannot form a cluster, or None if it can (or is unset).

  Args:
    text: the value of the TF_CONFIG environment variable (None when it
      is not set; set but empty, TensorFlow cannot read it).

  Returns:
    One sentence naming what is wrong and the expected layout, or None.
  """
  if text is None:
    return None
  if not text.strip():
    # TensorFlow reads a set TF_CONFIG as JSON, and '' is not JSON.
    return ('TF_CONFIG is set but empty; unset it (unset TF_CONFIG) or set '
            f'it to the cluster, {_EXAMPLE}')
  try:
    config = json.loads(text)
  except ValueError as e:
    return f'TF_CONFIG is not valid JSON ({e}); {_EXAMPLE}'
  if not isinstance(config, dict):
    return f'TF_CONFIG must be a JSON object; {_EXAMPLE}'
  cluster = config.get('cluster', {})
  if not isinstance(cluster, dict):
    return f'TF_CONFIG\'s "cluster" must map task types to addresses; {_EXAMPLE}'
  for task_type, tasks in cluster.items():
    if not isinstance(tasks, (list, dict)):
      return (f'TF_CONFIG\'s cluster "{task_type}" must be a list of '
              f'"host:port" addresses, not {tasks!r}')
    for address in _addresses(tasks):
      wrong = _address_problem(address)
      if wrong:
        return f'TF_CONFIG\'s cluster "{task_type}": {wrong}'
  task = config.get('task')
  if task is None:
    if cluster:
      return ('TF_CONFIG names a cluster but no "task": add '
              '"task": {"type": ..., "index": ...} naming this process')
    return None
  if not isinstance(task, dict):
    return f'TF_CONFIG\'s "task" must be an object; {_EXAMPLE}'
  task_type, index = task.get('type'), task.get('index', 0)
  if task_type not in cluster:
    return (f'TF_CONFIG\'s task type {task_type!r} is not in its cluster '
            f'(which names {sorted(cluster) or "no task type"})')
  if isinstance(index, bool) or not isinstance(index, int):
    return f'TF_CONFIG\'s task index must be an integer, not {index!r}'
  count = len(_addresses(cluster[task_type]))
  if isinstance(cluster[task_type], dict):
    valid = index in {int(k) for k in cluster[task_type]
                      if str(k).isdigit()}
  else:
    valid = 0 <= index < count
  if not valid:
    return (f'TF_CONFIG\'s task index {index} is out of range: the cluster '
            f'has {count} "{task_type}" task(s) (indices from 0)')
  return None
