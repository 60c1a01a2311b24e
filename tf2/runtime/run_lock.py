"""One training run per model_dir: a lock file naming its holder.

Two runs writing the same model_dir overwrite each other's checkpoints,
results and exports. A training run therefore holds `model_dir/run.lock`
(JSON: host, pid, start time) while it writes; a second run stops at once
with a message naming the holder. A lock whose holder is a process of this
host that no longer exists (the run was killed) is stale and is taken over,
with a message. A holder on another host cannot be checked from here: the
message says how to remove its lock if that run is gone. `--mode=eval` only
reads and takes no lock, as published (it runs beside training).

Creating the file is atomic on local disks (O_EXCL). Object stores have no
create-if-absent through tf.io.gfile, so there the lock is written and read
back: two runs starting within the same second may both pass.
"""

import json
import os
import socket
import time

from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib

FILENAME = model_dir_lib.RUN_LOCK


class LockedError(RuntimeError):
  """Another run holds the model_dir; the message says which."""


def _me():
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': time.strftime('%Y-%m-%d %H:%M:%S')}


def _alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _read(path):
  try:
    return fileio.read_json(path)
  except (ValueError, OSError):
    return None  # Half-written by a killed run, or removed meanwhile.


def _is_stale(holder):
  return (holder is None or (holder.get('host') == socket.gethostname() and
                             not _alive(int(holder.get('pid', -1)))))


def _create_local(path, content):
  try:
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(descriptor, 'w') as f:
    f.write(content)
  return True


class RunLock:
  """Context manager holding `model_dir/run.lock` (see the module docstring).

  Args:
    model_dir: the run's folder (created if missing).
    log: called with one line when a stale lock is taken over.
  """

  def __init__(self, model_dir, log=print):
    self.path = fileio.join(model_dir, FILENAME)
    self._model_dir = model_dir
    self._log = log
    self._content = json.dumps(_me())

  def acquire(self):
    fileio.makedirs(self._model_dir)
    for _ in range(2):
      if self._try_create():
        return self
      holder = _read(self.path)
      if not _is_stale(holder):
        raise LockedError(
            f'--model_dir={self._model_dir} is in use by another training '
            f'run (host {holder.get("host")}, pid {holder.get("pid")}, '
            f'started {holder.get("started")}): wait for it to finish, or '
            f'pass another --model_dir. If that run is gone, delete '
            f'{self.path}.')
      self._log(f'Taking over the stale lock {self.path} of a run that no '
                f'longer exists ({holder}).')
      fileio.gfile.remove(self.path)
    raise LockedError(f'Could not take the lock {self.path}: another run is '
                      'starting in the same --model_dir.')

  def _try_create(self):
    if fileio.is_local(self.path):
      return _create_local(self.path, self._content)
    if fileio.exists(self.path):
      return False
    fileio.write_text_atomic(self.path, self._content)
    return fileio.read_text(self.path) == self._content

  def release(self):
    if fileio.exists(self.path) and _read(self.path) == json.loads(
        self._content):
      fileio.gfile.remove(self.path)

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc_info):
    self.release()
