"""Nothing lost, nothing hangs: bad input, NaN, locks, damaged checkpoints."""

import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error

from absl import flags
import pytest
import tensorflow as tf

from tests.test_runner import TINY
from tf2 import runner
from tf2.config import experiment as experiment_lib
from tf2.config import preflight
from tf2.data import pipeline as data_lib
from tf2.runtime import fileio
from tf2.runtime import run_lock
from tf2.runtime import strategy as strategy_lib
from tf2.runtime import tf_config
from tf2.training import checkpoint_state
from tf2.training import loop as train_loop
from tf2.training import step as training

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import run as run_py  # pylint: disable=g-import-not-at-top,wrong-import-position

TINY_FLAGS = [f'--{k}={v}' for k, v in TINY.items()]


def snapshot(*folders):
  """{path: sha256} of every file under the folders (missing: empty)."""
  files = {}
  for folder in folders:
    for path in sorted(pathlib.Path(folder).rglob('*')):
      files[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest()
                          if path.is_file() else 'dir')
  return files


def run_in_process(args, capsys):
  """(exit code, stderr) of `python run.py <args>`, without a new process."""
  flags.FLAGS.unparse_flags()
  flags.FLAGS(['run.py', *args])
  code = 0
  try:
    run_py.main(['run.py'])
  except SystemExit as e:
    code = e.code
  finally:
    flags.FLAGS.unparse_flags()
  return code, capsys.readouterr().err


@pytest.fixture()
def dirs(tmp_path):
  """A good model_dir (a finished 2-step run) and its data_dir."""
  data_dir, model_dir = tmp_path / 'data', tmp_path / 'model'
  for folder in (data_dir, model_dir):
    folder.mkdir()
  (model_dir / 'result.json').write_text('{"eval/label_top_1_accuracy": 0.5}')
  (tmp_path / 'a_file').write_text('not a folder')
  return tmp_path


_BAD_INPUTS = [
    (['--checkpoint_steps=-1'], '--checkpoint_steps=-1'),
    (['--checkpoint_epochs=0'], '--checkpoint_epochs=0'),
    (['--learning_rate=-0.5'], '--learning_rate=-0.5'),
    (['--train_steps=-1'], '--train_steps=-1'),
    (['--image_size=0'], '--image_size=0'),
    (['--image_size=-8'], '--image_size=-8'),
    (['--width_multiplier=0'], '--width_multiplier=0'),
    (['--resnet_depth=17'], '--resnet_depth=17'),
    (['--keep_checkpoint_max=0'], '--keep_checkpoint_max=0'),
    (['--eval_steps=-1'], '--eval_steps=-1'),
    (['--temperature=0'], '--temperature=0'),
    (['--train_batch_size=0'], '--train_batch_size=0'),
    (['--eval_batch_size=0'], '--eval_batch_size=0'),
    (['--warmup_epochs=-1'], '--warmup_epochs=-1'),
    (['--momentum=1'], '--momentum=1'),
    (['--batch_norm_decay=1.5'], '--batch_norm_decay=1.5'),
    (['--knn_k=0'], '--knn_k=0'),
    (['--fine_tune_after_block=5'], '--fine_tune_after_block=5'),
    (['--label_fraction=1.5'], '--label_fraction=1.5'),
    (['--proj_head_mode=none', '--memory_size=64'], '--memory_size=64'),
    (['--train_mode=distill'], '--teacher_checkpoint'),
    (['--config=no_such_preset'], '--config=no_such_preset'),
    (['--dataset=./no_such_images'], 'no such folder'),
    (['--dataset=cifar10'], 'cifar10'),
    (['--checkpoint={root}/nope/ckpt-1'], 'does not exist'),
    (['--train_mode=distill', '--teacher_checkpoint={root}/nope'],
     'does not exist'),
    (['--model_dir={root}/a_file'], 'is a file'),
    (['--data_dir={root}/a_file'], 'is a file'),
    (['--mode=eval', '--model_dir={root}/data'], 'holds no checkpoint'),
    (['--mode=eval', '--model_dir={root}/mistyped'], 'does not exist'),
    (['--use_ema'], '--use_ema'),
    # Found by sweeping every flag with odd values (issue 18): each was a
    # traceback, a hang or files written in the working directory.
    (['--label_fraction=0.1', '--label_seed=-1'], '--label_seed=-1'),
    (['--width_multiplier=1000000000000'], 'must fit in 32 bits'),
    (['--train_batch_size=1000000000000'], '--train_batch_size=1000000000000'),
    (['--image_size=100000000000000000000'], 'must fit in 32 bits'),
    (['--num_proj_layers=1000000'], 'needs 1 to 100 layers'),
    (['--warmup_epochs=1e30'], 'would not fit in a step counter'),
    (['--color_jitter_strength=1e30'], 'must stay within [-1, 1]'),
    (['--progress_interval_secs=1e30'], 'durations are at most'),
    (['--mode=eval', '--model_dir={root}/model', '--eval_timeout=1e30'],
     'durations are at most'),
    (['--model_dir= '], '--model_dir= : the path is blank'),
    (['--checkpoint= '], '--checkpoint= : the path is blank'),
    (['--dataset='], '--dataset=: no dataset is named'),
    (['--dataset=digits:9.9.9'], 'only: 1.0.0'),
    (['--dataset=digits/nocfg'], 'BuilderConfig nocfg not found'),
    (['--data_dir=ram://somewhere'], 'TFDS reads datasets only from local'),
    (['--data_dir=/proc/simclr_data'], '--data_dir=/proc/simclr_data'),
    (['--model_dir=/proc/simclr_model'], '--model_dir=/proc/simclr_model'),
]


@pytest.mark.parametrize('args,message', _BAD_INPUTS)
def test_bad_input_stops_with_one_line_and_writes_nothing(args, message,
                                                          dirs, capsys):
  args = [a.format(root=dirs) for a in args]
  given = [f'--model_dir={dirs / "model"}', f'--data_dir={dirs / "data"}',
           *TINY_FLAGS]
  names = {a.split('=')[0] for a in args}
  given = [a for a in given if a.split('=')[0] not in names] + args
  before = snapshot(dirs)
  code, stderr = run_in_process(given, capsys)
  assert code == 2
  assert stderr.count('run.py: error:') == 1
  assert message in stderr
  assert 'Traceback' not in stderr
  assert snapshot(dirs) == before
  assert not (dirs / 'mistyped').exists()


def test_non_root_permissions_are_checked_before_writing(dirs, capsys):
  if os.geteuid() == 0:
    pytest.skip('root may write anywhere')
  locked = dirs / 'locked'
  locked.mkdir(mode=0o555)
  code, stderr = run_in_process(
      [f'--model_dir={locked / "m"}', f'--data_dir={dirs / "data"}',
       *TINY_FLAGS], capsys)
  assert code == 2 and 'no permission' in stderr


def tiny(model_dir, data_dir, **given):
  return experiment_lib.compose(
      dict(TINY, model_dir=str(model_dir), data_dir=str(data_dir), **given),
      model_dir=str(model_dir))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


def test_a_nan_stops_training_and_keeps_the_good_checkpoint_and_export(
    data_dir, tmp_path):
  model_dir = tmp_path / 'm'
  runner.run(tiny(model_dir, data_dir, mode='train_then_eval', train_steps=2,
                  checkpoint_steps=2))
  good = snapshot(model_dir)
  with pytest.raises(train_loop.NonFiniteLossError, match=r'Step [34]: the loss'):
    runner.run(tiny(model_dir, data_dir, train_steps=4, checkpoint_steps=2,
                    temperature=1e-30))
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-2')
  after = snapshot(model_dir)
  for name in ('ckpt-2.index', 'ckpt-2.data-00000-of-00001', 'result.json',
               'saved_model/2/saved_model.pb',
               'saved_model/2/variables/variables.index'):
    path = str(model_dir / name)
    assert after[path] == good[path], name
  assert not (model_dir / 'run.lock').exists()


def test_skip_step_policy_skips_a_step_that_is_not_finite_on_one_replica(
    two_cpu_strategy):
  from tf2.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from tf2.models import model as model_lib  # pylint: disable=g-import-not-at-top
  from tf2.training import optimization  # pylint: disable=g-import-not-at-top
  config = config_lib.ModelConfig(num_classes=4, resnet_depth=18, image_size=8,
                                  use_blur=False, proj_out_dim=8,
                                  global_bn=True)
  with two_cpu_strategy.scope():
    model = model_lib.build_model(config)
    optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                             model=model)
  step = training.make_train_step(model, optimizer, training.LossConfig(),
                                  two_cpu_strategy, nan_policy='skip_step')
  loop = train_loop.make_train_loop(two_cpu_strategy, step,
                                  stop_on_nonfinite=False)
  images = tf.random.stateless_uniform([4, 8, 8, 6], [1, 2])
  poisoned = tf.tensor_scatter_nd_update(images, [[3, 0, 0, 0]],
                                         [float('nan')])
  labels = tf.one_hot([0, 1, 2, 3] * 2, 4)
  # Two global batches of 4; each replica gets 2 rows of each.
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.concat([poisoned, images], 0), labels)).batch(4).map(
          lambda x, y: (x, {'labels': y}))
  batches = iter(two_cpu_strategy.experimental_distribute_dataset(dataset))
  before = [v.numpy().copy() for v in model.trainable_variables]
  nonfinite, stopped, _ = loop(batches, tf.constant(1))
  # Replica 1 saw the NaN; neither replica updated.
  assert int(nonfinite) == 1 and not bool(stopped)
  assert optimizer.iterations.numpy() == 0
  for b, v in zip(before, model.trainable_variables):
    assert (b == v.numpy()).all()
  nonfinite, _, _ = loop(batches, tf.constant(1))
  assert int(nonfinite) == 0 and optimizer.iterations.numpy() == 1


def test_a_second_training_run_stops_at_once_and_the_first_finishes(
    data_dir, tmp_path):
  model_dir = tmp_path / 'm'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=str(ROOT))
  first = subprocess.Popen(
      [sys.executable, str(ROOT / 'run.py'), *TINY_FLAGS, '--train_steps=12',
       '--checkpoint_steps=6', f'--model_dir={model_dir}',
       f'--data_dir={data_dir}'], env=env, cwd=ROOT,
      stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not (model_dir / 'run.lock').exists() and time.time() < deadline:
      assert first.poll() is None, first.stderr.read()[-3000:]
      time.sleep(0.2)
    with pytest.raises(run_lock.LockedError, match=f'pid {first.pid}'):
      runner.run(tiny(model_dir, data_dir, train_steps=12,
                      checkpoint_steps=6))
  finally:
    _, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr[-3000:]
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-12')
  assert not (model_dir / 'run.lock').exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.Popen(['true'])
  dead.wait()
  (tmp_path / run_lock.FILENAME).write_text(
      f'{{"host": "{socket.gethostname()}", "pid": {dead.pid}}}')
  said = []
  with run_lock.RunLock(str(tmp_path), log=said.append):
    assert f'"pid": {os.getpid()}' in (tmp_path / run_lock.FILENAME).read_text()
  assert 'stale lock' in said[0]
  assert not (tmp_path / run_lock.FILENAME).exists()


def test_a_live_lock_of_another_host_is_respected(tmp_path):
  (tmp_path / run_lock.FILENAME).write_text(
      '{"host": "elsewhere", "pid": 1, "started": "today"}')
  with pytest.raises(run_lock.LockedError, match='host elsewhere'):
    run_lock.RunLock(str(tmp_path)).acquire()
  assert 'elsewhere' in (tmp_path / run_lock.FILENAME).read_text()


def test_a_damaged_newest_checkpoint_is_passed_over_on_resume(
    data_dir, tmp_path):
  model_dir = tmp_path / 'm'
  runner.run(tiny(model_dir, data_dir, train_steps=4, checkpoint_steps=2))
  data_file = model_dir / 'ckpt-4.data-00000-of-00001'
  data_file.write_bytes(data_file.read_bytes()[:1000])
  (model_dir / 'ckpt-9_temp').mkdir()  # What an interrupted save leaves.
  (model_dir / 'saved_model').mkdir()
  (model_dir / 'saved_model' / '.tmp-9-abcdef').mkdir()
  runner.run(tiny(model_dir, data_dir, train_steps=6, checkpoint_steps=2))
  assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-6')
  state = tf.train.load_checkpoint(str(model_dir / 'ckpt-6'))
  assert state.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE') == 6
  assert not (model_dir / 'ckpt-9_temp').exists()
  assert not (model_dir / 'saved_model' / '.tmp-9-abcdef').exists()


def test_a_failed_save_removes_its_partial_files_and_keeps_the_rest(
    tmp_path, monkeypatch):
  variable = tf.Variable(1.0)
  optimizer = type('Opt', (), {'iterations': tf.Variable(3, dtype=tf.int64)})
  state = checkpoint_state.CheckpointState.__new__(
      checkpoint_state.CheckpointState)
  state.optimizer, state.model_dir = optimizer, str(tmp_path)
  state.save_dir = None
  state.manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(v=variable, step=optimizer.iterations),
      str(tmp_path), max_to_keep=2)
  state.manager.save(checkpoint_number=2)
  good = snapshot(tmp_path)

  def full_disk(**unused_kwargs):
    (tmp_path / 'ckpt-3_temp').mkdir()
    (tmp_path / 'ckpt-3_temp' / 'part-00000').write_bytes(b'x' * 100)
    (tmp_path / 'ckpt-3.index').write_bytes(b'partial')
    raise tf.errors.ResourceExhaustedError(None, None,
                                           'No space left on device')

  monkeypatch.setattr(state.manager, 'save', full_disk)
  with pytest.raises(checkpoint_state.SaveError, match='No space left'):
    state.save()
  assert snapshot(tmp_path) == good
  assert fileio.exists(str(tmp_path / 'ckpt-2.index'))


_BAD_TF_CONFIGS = [
    ('', 'set but empty'),  # TensorFlow's json.loads('') would raise.
    (' ', 'set but empty'),
    ('{"cluster": ', 'not valid JSON'),
    ('[1, 2]', 'must be a JSON object'),
    ('{"cluster": {"worker": "localhost:2222"}, "task": {"type": "worker"}}',
     'must be a list'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker"}}',
     "'localhost' is not \"host:port\""),
    ('{"cluster": {"worker": ["localhost:port"]}, "task": {"type": "worker"}}',
     'no port number'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "chief"}}',
     "task type 'chief' is not in its cluster"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, '
     '"task": {"type": "worker", "index": 2}}', 'index 2 is out of range'),
    ('{"cluster": {"worker": ["a:1"]}, '
     '"task": {"type": "worker", "index": "0"}}', 'must be an integer'),
]


@pytest.mark.parametrize('text,message', _BAD_TF_CONFIGS)
def test_a_tf_config_that_cannot_form_a_cluster_is_named(text, message):
  wrong = tf_config.problem(text)
  assert wrong is not None and message in wrong, wrong


@pytest.mark.parametrize('text', [
    None, '{}',
    '{"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", "[::1]:2223"]},'
    ' "task": {"type": "worker", "index": 1}}',
    '{"cluster": {"worker": {"1": "h1:2222"}}, '
    '"task": {"type": "worker", "index": 1}}'])
def test_a_usable_tf_config_passes(text):
  assert tf_config.problem(text) is None


def test_a_malformed_tf_config_stops_run_py_with_one_line(dirs, capsys,
                                                         monkeypatch):
  monkeypatch.setenv('TF_CONFIG', '{"cluster": {"worker": ["a:1", "b:2"]')
  before = snapshot(dirs)
  code, stderr = run_in_process(
      [f'--model_dir={dirs / "new"}', f'--data_dir={dirs / "data"}',
       *TINY_FLAGS], capsys)
  assert code == 2, stderr
  assert stderr.count('run.py: error:') == 1
  assert 'TF_CONFIG is not valid JSON' in stderr
  assert 'Traceback' not in stderr
  assert snapshot(dirs) == before and not (dirs / 'new').exists()


def _no_network():
  try:
    socket.getaddrinfo('www.googleapis.com', 443)
  except OSError:
    return True
  return False


@pytest.mark.skipif(not _no_network(), reason='this machine reaches GCS')
def test_an_unreachable_gs_model_dir_is_one_line_within_seconds(dirs, capsys):
  start = time.monotonic()
  code, stderr = run_in_process(
      ['--model_dir=gs://no-such-bucket-of-simclr-tests/m',
       f'--data_dir={dirs / "data"}', *TINY_FLAGS], capsys)
  assert code == 2, stderr
  said = [line for line in stderr.splitlines() if 'run.py: error:' in line]
  assert len(said) == 1, stderr
  assert 'gs://no-such-bucket-of-simclr-tests/m cannot be reached' in said[0]
  assert 'check the network' in said[0]
  assert 'Traceback' not in stderr
  assert time.monotonic() - start < 60


@pytest.mark.parametrize('error,check', [
    (tf.errors.PermissionDeniedError(None, None, 'Error executing an HTTP '
                                     'request: HTTP response code 403'),
     'may read and write there'),
    (tf.errors.UnauthenticatedError(None, None, 'HTTP response code 401'),
     'check the credentials'),
    (tf.errors.NotFoundError(None, None, 'HTTP response code 404'),
     'that the bucket exists'),
    (tf.errors.ResourceExhaustedError(None, None, 'HTTP response code 429'),
     'the quota'),
])
def test_a_refusing_storage_is_named_before_anything_is_written(
    error, check, dirs, capsys, monkeypatch):
  real_exists = fileio.exists

  def exists(path):
    if str(path).startswith('gs://'):
      raise error
    return real_exists(path)

  monkeypatch.setattr(fileio, 'exists', exists)
  before = snapshot(dirs)
  code, stderr = run_in_process(
      ['--model_dir=gs://bucket/run', f'--data_dir={dirs / "data"}',
       *TINY_FLAGS], capsys)
  assert code == 2, stderr
  assert stderr.count('run.py: error:') == 1
  assert '--model_dir=gs://bucket/run cannot be reached' in stderr
  assert check in stderr and 'Traceback' not in stderr
  assert snapshot(dirs) == before


def test_a_prepared_data_dir_is_only_read(tmp_path, monkeypatch):
  # Root ignores permission bits, so the folders are made read-only for
  # preflight by os.access; the snapshot checks that nothing is written.
  shared, empty = tmp_path / 'shared', tmp_path / 'empty'
  empty.mkdir()
  data_lib.get_builder('digits', str(shared))
  read_only = (str(shared), str(empty))
  real_access = os.access
  monkeypatch.setattr(preflight.os, 'access', lambda path, mode: (
      not str(path).startswith(read_only) and real_access(path, mode)))
  before = snapshot(shared)
  experiment = tiny(tmp_path / 'm', shared)
  preflight.check_paths(experiment)
  builder = data_lib.get_builder('digits', str(shared))
  next(iter(data_lib.build_input_fn(
      builder, 8, True, split='train', image_size=8,
      train_mode='pretrain')(tf.distribute.InputContext())))
  assert snapshot(shared) == before
  with pytest.raises(preflight.PathError,
                     match='no permission.*prepared there on first use'):
    preflight.check_paths(tiny(tmp_path / 'm', empty))


@pytest.mark.parametrize('args,message', [
    (['--train_split=train[:0]'], '--train_split=train[:0] holds no example'),
    # TFDS counts -2 examples in this slice; it used to train on them.
    (['--train_split=train[5:3]'], '--train_split=train[5:3] holds no example'),
    # Stopped only after training, by the evaluation that saw no example.
    (['--mode=train_then_eval', '--eval_split=test[:0]'],
     '--eval_split=test[:0] holds no example'),
    (['--train_split=train[200%:]'],
     "--train_split=train[200%:]: Split 'train[200%:]' cannot be read"),
    # It wrote experiment.json and flags.json before the teacher was read.
    (['--train_mode=distill', '--teacher_checkpoint={root}/a_file'],
     'a_file: this file is not a checkpoint'),
])
def test_a_bad_split_or_teacher_after_reading_the_data_writes_nothing(
    args, message, dirs, capsys):
  args = [a.format(root=dirs) for a in args]
  data_lib.get_builder('digits', str(dirs / 'data'))  # Prepared once.
  before = snapshot(dirs)
  code, stderr = run_in_process(
      [f'--model_dir={dirs / "new"}', f'--data_dir={dirs / "data"}',
       *TINY_FLAGS, *args], capsys)
  assert code == 2, stderr
  assert stderr.count('run.py: error:') == 1
  assert message in stderr
  assert 'Traceback' not in stderr
  assert snapshot(dirs) == before


@pytest.mark.parametrize('arg,message', [
    ('--resnet_depth=abc', "flag --resnet_depth=abc: invalid literal for int"),
    ('--learning_rate=', 'flag --learning_rate=: could not convert'),
    ('--use_blur=maybe', 'Non-boolean argument to boolean flag'),
    ('--mode=nosuch', 'value should be one of <train|eval|train_then_eval>'),
    ('--no_such_flag=1', "Unknown command line flag 'no_such_flag'"),
])
def test_a_flag_absl_cannot_parse_is_one_line_with_exit_code_2(arg, message,
                                                               capsys):
  try:
    with pytest.raises(SystemExit) as stopped:
      run_py.parse_flags(['run.py', arg])
  finally:
    flags.FLAGS.unparse_flags()
  stderr = capsys.readouterr().err
  assert stopped.value.code == 2
  assert stderr.count('\n') == 1 and stderr.startswith('run.py: error: ')
  assert message in stderr and '--helpfull' in stderr


def test_a_positional_argument_is_one_line_with_exit_code_2(capsys):
  with pytest.raises(SystemExit) as stopped:
    run_py.main(['run.py', 'train'])
  stderr = capsys.readouterr().err
  assert stopped.value.code == 2 and stderr.count('\n') == 1
  assert "unexpected arguments ['train']" in stderr


def test_a_tpu_name_that_does_not_resolve_is_no_tpu_error(monkeypatch):
  def unknown_host(**unused_kwargs):
    raise urllib.error.URLError('[Errno -2] Name or service not known')

  monkeypatch.setattr(tf.distribute.cluster_resolver, 'TPUClusterResolver',
                      unknown_host)
  with pytest.raises(strategy_lib.NoTPUError, match='URLError.*--tpu_name'):
    strategy_lib.build_strategy(True, tpu_name='nosuch')


def test_a_path_from_home_is_expanded(tmp_path, monkeypatch):
  # The shell leaves '~' after '--model_dir=' as it is; TensorFlow and TFDS
  # would create a folder named '~' in the working directory.
  monkeypatch.setenv('HOME', str(tmp_path))
  experiment = experiment_lib.compose(
      {'data_dir': '~/data', 'checkpoint': '~/ckpt'}, model_dir='~/m')
  assert experiment.data.data_dir == str(tmp_path / 'data')
  assert experiment.run.checkpoint == str(tmp_path / 'ckpt')


def test_an_empty_data_dir_is_the_tfds_default(tmp_path, monkeypatch):
  # Not the working directory, where '' would put the dataset.
  monkeypatch.chdir(tmp_path)
  assert data_lib.needs_preparing('digits', '') == data_lib.needs_preparing(
      'digits', None)
  assert not list(tmp_path.iterdir())


def test_settings_that_do_not_fit_in_memory_are_one_line_with_exit_code_1(
    dirs, capsys):
  # A 512 x 10**9 projection layer: 2 TB of weights, refused at once.
  code, stderr = run_in_process(
      [f'--model_dir={dirs / "new"}', f'--data_dir={dirs / "data"}',
       *TINY_FLAGS, '--proj_out_dim=1000000000', '--proj_head_mode=linear'],
      capsys)
  assert code == 1, stderr[-2000:]
  assert stderr.count('run.py: error:') == 1 and 'Traceback' not in stderr
  assert 'OOM when allocating tensor with shape[' in stderr
  assert '--proj_out_dim' in stderr
  assert run_py.runtime_failure(MemoryError()).startswith(
      'the host is out of memory')


def test_a_tfds_data_dir_that_is_a_file_is_named_as_the_variable(
    dirs, monkeypatch):
  # Without --data_dir the message named a --data_dir nobody passed.
  monkeypatch.setenv('TFDS_DATA_DIR', str(dirs / 'a_file'))
  monkeypatch.setattr(preflight, 'tfds_default_dir', lambda: str(
      dirs / 'a_file'))
  monkeypatch.setattr(data_lib, 'needs_preparing', lambda *unused: True)
  with pytest.raises(preflight.PathError, match=(
      r'^TFDS_DATA_DIR=\S*a_file \(no --data_dir given\) is a file')):
    preflight.check_paths(tiny(dirs / 'new', '').replace(data_dir=None))
