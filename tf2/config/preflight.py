"""Filesystem checks of an experiment, before anything is written.

Bad paths (a model_dir that is a file or cannot be written, a checkpoint or
image folder that does not exist, an eval model_dir with nothing to
evaluate) stop the run with one line naming the path and the fix, instead
of a traceback from deep inside TensorFlow after files were written.
"""

import os
import tempfile

import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.checkpoints import files as checkpoint_files
from tf2.config import experiment as experiment_lib
from tf2.data import pipeline as data_lib
from tf2.runtime import fileio


# The storage TFDS (etils.epath) reads a data_dir from, besides local.
_TFDS_SCHEMES = ('gs', 's3', 'az', 'hf')


class PathError(ValueError):
  """A path of the experiment that cannot be used; says what to pass."""


def checkpoint_exists(path):
  """A prefix (its files start with it), a directory or a file."""
  return fileio.exists(path) or bool(fileio.glob(path + '*'))


def _nearest_existing(path):
  while path and not fileio.exists(path):
    parent = fileio.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def check_writable_dir(name, path, why='', given=None):
  """Raises PathError unless `path` is, or can become, a writable folder.

  Permissions are only knowable locally; on other filesystems the first
  write reports them. `given` names the path in messages (default:
  --name=path).
  """
  given = given or f'--{name}={path}'
  if fileio.exists(path) and not fileio.isdir(path):
    raise PathError(f'{given} is a file, not a folder: pass the path '
                    'of a folder (it is created if missing).')
  if not fileio.is_local(path):
    return
  existing = _nearest_existing(fileio.abspath(path))
  if not fileio.isdir(existing):
    raise PathError(f'{given}: {existing} is a file, so the folder '
                    'cannot be created there; pass another path.')
  if not os.access(existing, os.W_OK | os.X_OK):
    raise PathError(f'{given}: no permission to write in '
                    f'{existing}{why}; pass a folder you can write to.')
  if existing != fileio.abspath(path):
    _check_can_create_in(given, existing)


def _check_can_create_in(given, existing):
  """Creates and removes an empty folder where `path` will be created.

  os.access says yes to root everywhere, also where nothing can be created
  (/proc, /sys, a read-only bind mount): only trying tells. Nothing is left.
  """
  try:
    os.rmdir(tempfile.mkdtemp(prefix=fileio.TMP_PREFIX + 'preflight-',
                              dir=existing))
  except OSError as e:
    raise PathError(f'{given}: a folder cannot be created in '
                    f'{existing} ({e.strerror}); pass another path.') from None


def _looks_like_path(dataset):
  return dataset.startswith(('/', '.', '~')) or '://' in dataset


def check_reachable(name, path):
  """Raises PathError naming `path` unless its storage answers.

  A remote path (gs://, s3://, ...) is asked whether it exists: without
  network or credentials, or for a bucket that is missing or forbidden, the
  storage's error becomes one line with what it said and what to check.
  Local paths are not asked (their problems are named by the other checks).
  """
  if not path or fileio.is_local(path):
    return
  try:
    fileio.exists(path)
  except tf.errors.OpError as e:
    said = (fileio.remote_failure(e, remote_path=True) or
            f'the storage said "{" ".join(str(e).split())[:240]}"')
    raise PathError(f'--{name}={path} cannot be reached: {said}.') from None


def check_paths(experiment):
  """Raises PathError for paths the run cannot use; writes nothing."""
  run, data = experiment.run, experiment.data
  for name, path in (('model_dir', run.model_dir),
                     ('checkpoint', run.checkpoint),
                     ('teacher_checkpoint', run.teacher_checkpoint),
                     ('data_dir', data.data_dir),
                     ('dataset', data.dataset if '://' in data.dataset
                      else None)):
    check_reachable(name, path)
  if run.mode == 'eval':
    _check_eval_model_dir(run.model_dir)
  else:
    check_writable_dir('model_dir', run.model_dir)
  for name in ('checkpoint', 'teacher_checkpoint'):
    path = getattr(run, name)
    if path and not checkpoint_exists(path):
      raise PathError(
          f'--{name}={path} does not exist: pass a checkpoint prefix '
          '(model.ckpt-250228, ckpt-3), a checkpoint directory or a '
          'SavedModel directory.')
  if data.data_dir and not fileio.is_local(data.data_dir) and (
      data.data_dir.split('://')[0] not in _TFDS_SCHEMES):
    raise PathError(f'--data_dir={data.data_dir}: TFDS reads datasets only '
                    'from local folders and from '
                    f'{", ".join(s + "://" for s in _TFDS_SCHEMES)}; pass '
                    'one of those.')
  if data.data_dir and fileio.exists(data.data_dir) and not fileio.isdir(
      data.data_dir):
    raise PathError(f'--data_dir={data.data_dir} is a file, not a folder: '
                    'pass the TFDS data folder.')
  if _looks_like_path(data.dataset) and not fileio.isdir(
      fileio.abspath(data.dataset)):
    raise PathError(f'--dataset={data.dataset}: no such folder. Pass the '
                    'path of a folder of images (see the README for the '
                    'layout) or a TFDS dataset name such as cifar10.')
  if data_lib.needs_preparing(data.dataset, data.data_dir or None):
    # Prepared into data_dir on first use, so it must be writable then; a
    # data_dir that already holds it is only read.
    check_writable_dir('data_dir', data.data_dir or tfds_default_dir(),
                       why=f' (--dataset={data.dataset} is prepared there '
                       'on first use; pass a writable --data_dir once, or '
                       'prepare it where it is shared)',
                       given=None if data.data_dir else _default_data_dir())


def _default_data_dir():
  """How messages name the data folder used without --data_dir."""
  where = ('TFDS_DATA_DIR=' if os.environ.get('TFDS_DATA_DIR') else
           "TFDS's default data folder ")
  return f'{where}{tfds_default_dir()} (no --data_dir given)'


def tfds_default_dir():
  """Where TFDS keeps data without --data_dir ($TFDS_DATA_DIR or ~/...)."""
  return tfds.core.constants.DATA_DIR


def _check_eval_model_dir(model_dir):
  """--mode=eval reads a training run's model_dir; it never creates one."""
  if not fileio.isdir(model_dir):
    raise PathError(f'--model_dir={model_dir} does not exist, so there is '
                    'nothing to evaluate: pass the model_dir of a training '
                    'run (--mode=eval never creates it).')
  has_checkpoint = any(fileio.exists(prefix + '.index') for prefix in
                       checkpoint_files.listed_checkpoints(model_dir))
  if not has_checkpoint and not fileio.exists(
      experiment_lib.record_path(model_dir)):
    raise PathError(f'--model_dir={model_dir} holds no checkpoint and no '
                    f'{experiment_lib.FILENAME} of a training run: pass the '
                    'model_dir of a training run, or start the training '
                    'first.')
