"""Files on any filesystem: atomic writes, directory replacement, cleanup."""

import errno

import pytest
import tensorflow as tf

from tf2.runtime import fileio


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  if request.param == 'local':
    yield str(tmp_path)
  else:
    yield f'ram://fileio_{tmp_path.name}'
    fileio.rmtree(f'ram://fileio_{tmp_path.name}')


def test_json_is_written_whole_and_replaced(root):
  path = fileio.join(root, 'a', 'b.json')
  fileio.write_json_atomic(path, {'x': 1})
  fileio.write_json_atomic(path, {'x': 2})
  assert fileio.read_json(path) == {'x': 2}
  assert fileio.listdir(fileio.join(root, 'a')) == ['b.json']


def _fill(directory, value):
  fileio.makedirs(fileio.join(directory, 'variables'))
  fileio.write_text_atomic(fileio.join(directory, 'variables', 'v'), value)
  fileio.write_text_atomic(fileio.join(directory, 'saved_model.pb'), value)


def test_a_directory_is_replaced_only_once_the_new_one_is_complete(root):
  target = fileio.join(root, 'export', '1')
  fileio.replace_dir_atomic(lambda d: _fill(d, 'old'), target,
                            'saved_model.pb')

  def fails(directory):
    _fill(directory, 'new')
    raise RuntimeError('interrupted')

  with pytest.raises(RuntimeError):
    fileio.replace_dir_atomic(fails, target, 'saved_model.pb')
  assert fileio.read_text(fileio.join(target, 'saved_model.pb')) == 'old'
  fileio.replace_dir_atomic(lambda d: _fill(d, 'new'), target,
                            'saved_model.pb')
  assert fileio.read_text(fileio.join(target, 'variables', 'v')) == 'new'
  # Nothing temporary is left beside it.
  assert fileio.listdir(fileio.join(root, 'export')) == ['1']


def test_what_interrupted_writes_leave_is_removed(root):
  fileio.makedirs(fileio.join(root, 'ckpt-9_temp'))
  fileio.write_text_atomic(fileio.join(root, '.tmp-result.json-1234'), '{')
  fileio.write_text_atomic(fileio.join(root, 'ckpt-8.index'), 'keep')
  removed = fileio.remove_temporaries(root)
  assert [fileio.basename(p) for p in removed] == [
      '.tmp-result.json-1234', 'ckpt-9_temp']
  assert fileio.listdir(root) == ['ckpt-8.index']


def test_full_and_forbidden_disks_are_named_in_one_phrase():
  full = tf.errors.ResourceExhaustedError(
      None, None, '{{function_node SaveV2}} /m/ckpt-2_temp/part: No space '
      'left on device')
  assert fileio.storage_problem(full) == 'No space left on device'
  denied = OSError(errno.EACCES, 'Permission denied', '/m/result.json')
  assert 'Permission denied' in fileio.storage_problem(denied)
  assert fileio.storage_problem(ValueError('no')) is None
  assert fileio.storage_problem(FileNotFoundError(errno.ENOENT, 'x')) is None
