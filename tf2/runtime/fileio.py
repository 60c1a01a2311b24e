"""Files on any filesystem TensorFlow supports: local, gs://, ram://, ...

Every file this project reads or writes goes through `tf.io.gfile`, so a
`--model_dir`, `--checkpoint` or `--teacher_checkpoint` may be a Cloud
Storage URL as in the reference's commands. Paths are strings; `join` and
`dirname` are POSIX path operations, which keep a URL's `scheme://` intact.

Writes are all-or-nothing for a reader:
- `write_json_atomic` writes a sibling temporary file and renames it over
  the target (a rename of one file is atomic locally and on object stores).
- `replace_dir_atomic` builds a directory beside the target and moves it
  into place. Locally that is one rename. Object stores (and `ram://`)
  cannot rename a directory, so there the files move one by one and
  `commit_file` (e.g. `saved_model.pb`) moves last: a directory without it
  is incomplete, which is how TensorFlow itself recognises a SavedModel.
Temporaries are named `.tmp-*`, so `remove_temporaries` can clear those an
interrupted run left behind.
"""

import errno
import json
import posixpath
import uuid

import tensorflow as tf

TMP_PREFIX = '.tmp-'

gfile = tf.io.gfile
exists = gfile.exists
isdir = gfile.isdir
glob = gfile.glob
listdir = gfile.listdir
makedirs = gfile.makedirs


def is_local(path):
  """Whether `path` is on the local filesystem (no `scheme://`)."""
  return '://' not in str(path) or str(path).startswith('file://')


def join(*parts):
  return posixpath.join(*[str(p) for p in parts])


def dirname(path):
  return posixpath.dirname(str(path).rstrip('/'))


def basename(path):
  return posixpath.basename(str(path).rstrip('/'))


def abspath(path):
  """Local paths made absolute (a later chdir cannot move them); URLs kept."""
  path = str(path)
  if is_local(path) and not path.startswith('file://'):
    return posixpath.abspath(posixpath.expanduser(path))
  return path


def expand_home(path):
  """'~/x' -> '$HOME/x': the shell leaves a '~' after '--flag=' as it is."""
  return posixpath.expanduser(path) if str(path).startswith('~') else path


def isfile(path):
  return exists(path) and not isdir(path)


def read_text(path):
  with gfile.GFile(path, 'r') as f:
    return f.read()


def read_json(path):
  return json.loads(read_text(path))


def _temporary_sibling(path):
  return join(dirname(path), f'{TMP_PREFIX}{basename(path)}-'
              f'{uuid.uuid4().hex[:8]}')


def _write_through_temporary(path, contents, mode, replace):
  """Writes a sibling temporary file, then renames it to `path`."""
  path = str(path)
  parent = dirname(path)
  if parent:
    makedirs(parent)
  tmp = _temporary_sibling(path)
  try:
    with gfile.GFile(tmp, mode) as f:
      f.write(contents)
    if not replace and exists(path):
      raise tf.errors.AlreadyExistsError(None, None, f'{path} exists')
    gfile.rename(tmp, path, overwrite=replace)
  finally:
    if exists(tmp):
      gfile.remove(tmp)
  return path


def write_text_atomic(path, text):
  """Writes `text` to `path`; a reader sees the old file or the new one."""
  return _write_through_temporary(path, text, 'w', replace=True)


def write_json_atomic(path, value, indent=1):
  """Writes `value` as JSON to `path` atomically (see write_text_atomic)."""
  return write_text_atomic(path, json.dumps(value, indent=indent,
                                            sort_keys=True) + '\n')


def rmtree(path):
  """Removes a folder and its contents, if it exists."""
  if exists(path):
    try:
      gfile.rmtree(path)
    except tf.errors.NotFoundError:
      pass  # Some entry went away meanwhile (or ram:// lists a moved one).


def _move_files(source, target, commit_file):
  """Moves every file of `source` under `target`, `commit_file` last."""
  files = []
  for directory, _, names in gfile.walk(source):
    files.extend(join(directory, n) for n in names)
  files.sort(key=lambda f: basename(f) == commit_file)
  for path in files:
    relative = path[len(source):].lstrip('/')
    destination = join(target, relative)
    makedirs(dirname(destination))
    gfile.rename(path, destination, overwrite=True)


def replace_dir_atomic(write_fn, target, commit_file=None):
  """Builds a directory with `write_fn(tmp_dir)` and moves it to `target`.

  An existing `target` is replaced only once the new directory is
  complete; an exception in `write_fn` leaves `target` as it was and
  removes the temporary directory.

  Args:
    write_fn: called with the temporary directory's path; fills it.
    target: the directory to create or replace.
    commit_file: on filesystems without directory renames, the file name
      moved last, whose presence marks the directory complete.

  Returns:
    target.
  """
  target = abspath(str(target).rstrip('/'))
  parent = dirname(target)
  makedirs(parent)
  tmp = _temporary_sibling(target)
  old = None
  try:
    write_fn(tmp)
    if is_local(target):
      if exists(target):
        old = _temporary_sibling(target)
        gfile.rename(target, old)
      gfile.rename(tmp, target)
    else:
      rmtree(target)
      _move_files(tmp, target, commit_file)
  finally:
    rmtree(tmp)
    if old is not None:
      rmtree(old)
  return target


# Storage failures a user fixes outside the program, by errno and by the
# words TensorFlow's filesystems put in their messages.
_STORAGE_ERRNOS = {errno.ENOSPC: 'no space left', errno.EDQUOT: 'quota',
                   errno.EACCES: 'no permission', errno.EROFS: 'read-only'}
_STORAGE_WORDS = ('No space left on device', 'Disk quota exceeded',
                  'Permission denied', 'Read-only file system')


def storage_problem(error):
  """One line describing a full, read-only or forbidden disk, else None."""
  if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
    return f'{error.strerror} ({getattr(error, "filename", "") or ""})'
  if isinstance(error, tf.errors.OpError):
    return next((words for words in _STORAGE_WORDS if words in str(error)),
                None)
  return None


# What remote storage (gs://, and s3:// or hdfs:// through their plugins)
# says when it cannot be used, and what to check: by the error's class,
# then by the words of TensorFlow's filesystems (a network failure comes as
# FailedPrecondition "Could not resolve host", "Couldn't connect", ...).
_REMOTE_CHECKS = (
    # First: a network failure's message also names the path (which may
    # hold any of the words below).
    ((), ('resolve host', 'resolve hostname', "Couldn't connect",
          'Failed to connect', 'Timeout was reached', 'Connection refused',
          'Network is unreachable', 'libcurl'),
     'the network of this machine: can it reach the storage service (e.g. '
     'storage.googleapis.com)? Behind a proxy, set HTTPS_PROXY'),
    (tf.errors.UnauthenticatedError, ('Unauthenticated', 'Anonymous caller',
                                      'credentials'),
     'the credentials: run `gcloud auth application-default login`, or set '
     'GOOGLE_APPLICATION_CREDENTIALS to a service account key file'),
    (tf.errors.PermissionDeniedError, ('Permission denied',
                                       'does not have storage.'),
     'that your account may read and write there (e.g. the Storage Object '
     'Admin role on the bucket)'),
    (tf.errors.ResourceExhaustedError, ('quota', 'Quota',
                                        'rateLimitExceeded'),
     'the quota of the project or bucket (or wait and try again)'),
    (tf.errors.NotFoundError, ('bucket does not exist', 'NoSuchBucket'),
     'that the bucket exists and the path is spelled right (`gsutil ls '
     'gs://<bucket>`)'),
)


def remote_failure(error, remote_path=False):
  """'what storage said; check what' for a remote storage error, else None.

  Args:
    error: the exception.
    remote_path: the error came from an operation on a remote path, so its
      class alone (permission denied, not found, ...) tells what to check;
      otherwise only the words of a remote filesystem's message do.
  """
  message = str(error)
  for kind, words, check in _REMOTE_CHECKS:
    if (remote_path and kind and isinstance(error, kind)) or any(
        w in message for w in words):
      said = ' '.join(message.split())[:240] or type(error).__name__
      return f'the storage said "{said}"; check {check}'
  return None


def remove_temporaries(directory, patterns=(TMP_PREFIX + '*', '*_temp')):
  """Removes what interrupted writes left in `directory`.

  `.tmp-*` are this module's temporaries; `*_temp` are those of
  tf.train.CheckpointManager (a sharded save writes `ckpt-N_temp/` first).

  Returns:
    The removed paths.
  """
  removed = []
  if not isdir(directory):
    return removed
  for pattern in patterns:
    for path in glob(join(directory, pattern)):
      if isdir(path):
        gfile.rmtree(path)
      else:
        gfile.remove(path)
      removed.append(path)
  return sorted(removed)


def write_bytes_new(path, data):
  """Writes `data` to a new file `path`, whole or not at all.

  The bytes go to a sibling temporary file that is renamed to `path` only
  when complete, without overwriting: a file that appeared at `path`
  meanwhile is kept and `tf.errors.AlreadyExistsError` raised.

  Returns:
    path.
  """
  return _write_through_temporary(path, data, 'wb', replace=False)
