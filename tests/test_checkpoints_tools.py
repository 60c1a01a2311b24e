"""checkpoints_tools/ converts, inspects and exports published checkpoints."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from checkpoints_tools import convert_tf1_to_tf2
from checkpoints_tools import export_saved_model
from checkpoints_tools import inspect_checkpoint
from tests import golden
from tests import serving
from tests.conftest import ROOT
from tests.test_checkpoint_io import assert_matches_golden_eval
from tests.golden import golden_config
from tests.test_checkpoint_io import perturbed
from tests.test_checkpoint_io import STEP
from tests.test_checkpoint_io import write_tf1_checkpoint
from tf2.checkpoints import architecture
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.checkpoints import tf1_mapping
from tf2.models import model as model_lib

TOOLS = ('convert_tf1_to_tf2', 'inspect_checkpoint', 'export_saved_model', 'embed',
         'export_onnx')
# SavedModel export traces every layer in both call modes: ResNet-50 with SK
# takes about 25 s on two cores.
_GOLDEN_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if 'sk1' in n else n
                  for n in golden.GOLDEN_CONFIGS]


def _run_tool(tool, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, str(ROOT / 'checkpoints_tools' / f'{tool}.py'), *args],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
      check=False)


def _leftovers(directory):
  """Temporary directories a failed write would leave beside its output."""
  return [f for f in os.listdir(directory) if f.startswith('.tmp-')]


@pytest.fixture(scope='module')
def r18(tmp_path_factory):
  """(fixture config, arrays, weights, TF1 prefix: raw golden, EMA other)."""
  fixture_config, arrays = golden.load_golden('r18_1x_sk0_32px')
  weights = golden.golden_weights(fixture_config, arrays)
  prefix = write_tf1_checkpoint(
      str(tmp_path_factory.mktemp('r18') / f'model.ckpt-{STEP}'), weights,
      perturbed(weights))
  return fixture_config, arrays, weights, prefix


@pytest.mark.parametrize('tool', TOOLS)
def test_every_tool_explains_itself_with_help(tool):
  result = _run_tool(tool, '--help')
  # absl prints the module docstring and the flags, then exits with 1.
  assert 'Traceback' not in result.stderr, result.stderr
  first_line = getattr(__import__(f'checkpoints_tools.{tool}'), tool).__doc__
  assert first_line.split('\n')[0] in result.stdout
  assert '--checkpoint' in result.stdout or '--tf1_checkpoint' in (
      result.stdout)


@pytest.mark.parametrize('name', _GOLDEN_PARAMS)
def test_converted_checkpoint_and_saved_model_give_the_golden_outputs(
    name, tmp_path):
  fixture_config, arrays = golden.load_golden(name)
  weights = golden.golden_weights(fixture_config, arrays)
  prefix = write_tf1_checkpoint(str(tmp_path / 'tf1' / f'model.ckpt-{STEP}'),
                                weights, perturbed(weights))
  output_dir = tmp_path / 'converted'
  ckpt, saved_model, report = convert_tf1_to_tf2.convert(prefix, output_dir)
  assert ckpt == str(output_dir / f'ckpt-{STEP}')
  assert len(report.filled) == len(weights) and not report.missing
  assert not _leftovers(tmp_path)

  # run.py --checkpoint=<output_dir> reads the TF2 checkpoint.
  model = model_lib.build_model(golden_config(fixture_config))
  checkpoint_restore.restore_model_weights(model, str(output_dir),
                                           strict=True)
  images = tf.constant(arrays['input'])
  assert_matches_golden_eval(model.endpoints(images, training=False), arrays)
  assert architecture.infer_architecture(str(output_dir))['global_step'] == (
      STEP)

  loaded = tf.saved_model.load(saved_model)
  assert_matches_golden_eval(loaded(images, trainable=False), arrays)
  # The converter's export also serves: the golden outputs from the
  # signature, which equals `__call__` on other sizes and batches too
  # (checked on the smallest model only: it loads the export twice more).
  assert_matches_golden_eval(
      loaded.signatures['serving_default'](images=images), arrays)
  if name == 'r18_1x_sk0_32px':
    serving.assert_serving_equals_call(saved_model)
  trained = loaded(images, trainable=True)
  for key, expected in arrays.items():
    if key.startswith('train/'):
      golden.assert_close_relative(trained[key[len('train/'):]].numpy(),
                                   expected, 5e-3, key)


def test_convert_with_use_ema_takes_the_moving_averages(r18, tmp_path):
  fixture_config, _, weights, prefix = r18
  output_dir = tmp_path / 'ema'
  convert_tf1_to_tf2.convert(prefix, output_dir, use_ema=True)
  model = model_lib.build_model(golden_config(fixture_config))
  checkpoint_restore.restore_model_weights(model, str(output_dir),
                                           strict=True)
  averages = perturbed(weights)
  for name, variable in tf1_mapping.tf1_variable_map(model).items():
    np.testing.assert_array_equal(variable.numpy(), averages[name])


def _corrupt(prefix):
  with open(prefix + '.data-00000-of-00001', 'r+b') as f:
    contents = bytearray(f.read())
    for i in range(0, len(contents), 4096):
      contents[i] ^= 0xff
    f.seek(0)
    f.write(contents)


def _truncate(prefix):
  data = prefix + '.data-00000-of-00001'
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) // 2)


@pytest.mark.parametrize('problem,phrase', [
    ('missing_variable', 'not in the checkpoint'),
    ('leftover_value', 'fits no variable'),
    ('corrupted', 'corrupted'),
    ('truncated', 'truncated'),
    ('no_data_file', 'has no data file'),
    ('tf2_input', 'not a TF1 checkpoint'),
    ('output_exists', 'not empty'),
])
def test_convert_refuses_bad_input_and_writes_nothing(r18, tmp_path, problem,
                                                      phrase):
  _, _, weights, good = r18
  values, extra = dict(weights), None
  if problem == 'missing_variable':
    del values['base_model/batch_normalization_7/gamma']
  if problem == 'leftover_value':
    extra = {'linear_eval/dense/kernel': np.zeros([512, 10], np.float32)}
  prefix = write_tf1_checkpoint(str(tmp_path / 'in' / 'model.ckpt-5'), values,
                                extra=extra)
  path = prefix
  if problem == 'corrupted':
    _corrupt(prefix)
  elif problem == 'truncated':
    _truncate(prefix)
  elif problem == 'no_data_file':
    os.remove(prefix + '.data-00000-of-00001')
  elif problem == 'tf2_input':
    path = str(tmp_path / 'tf2')
    convert_tf1_to_tf2.convert(good, path)
  output_dir = tmp_path / 'out'
  if problem == 'output_exists':
    output_dir.mkdir()
    (output_dir / 'keep.txt').write_text('mine')
  with pytest.raises(checkpoint_files.CheckpointError) as error:
    convert_tf1_to_tf2.convert(path, output_dir)
  message = str(error.value)
  assert phrase in message
  assert (str(output_dir) if problem == 'output_exists' else path) in message
  if problem == 'output_exists':
    assert os.listdir(output_dir) == ['keep.txt']
  else:
    assert not output_dir.exists()
  assert not _leftovers(tmp_path)


def test_cli_prints_one_clear_message_for_bad_input(tmp_path):
  missing = tmp_path / 'model.ckpt-1'
  result = _run_tool('convert_tf1_to_tf2', f'--tf1_checkpoint={missing}',
                     f'--output_dir={tmp_path / "out"}')
  assert result.returncode == 1
  assert 'Traceback' not in result.stderr
  assert f'Error: {missing}: no such file' in result.stderr
  assert not (tmp_path / 'out').exists()


def test_inspect_describes_every_format(r18, tmp_path):
  _, _, _, prefix = r18
  output_dir = tmp_path / 'converted'
  convert_tf1_to_tf2.convert(prefix, output_dir)
  texts = {
      'tf1': inspect_checkpoint.describe(prefix),
      'tf2': inspect_checkpoint.describe(str(output_dir)),
      'saved_model': inspect_checkpoint.describe(
          str(output_dir / 'saved_model')),
  }
  for kind, text in texts.items():
    assert 'ResNet-18 1x' in text and 'CIFAR stem' in text, kind
    assert '11.8 M in all, 11.2 M in the encoder' in text, kind
    assert 'Projection head: 3 layers, 128 outputs' in text, kind
    assert 'Supervised head: 10 classes' in text, kind
    assert '--resnet_depth=18 --width_multiplier=1 --sk_ratio=0.0' in text
  assert 'EMA weights:     yes' in texts['tf1']
  assert 'EMA weights:     no' in texts['tf2']
  assert f'Global step:     {STEP}' in texts['tf1']
  assert f'Global step:     {STEP}' in texts['tf2']
  assert 'Global step:     not recorded' in texts['saved_model']

  result = _run_tool('inspect_checkpoint', f'--checkpoint={prefix}')
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == texts['tf1']


_FINE_TUNE = textwrap.dedent("""
    import json, re, sys
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    variables = list(loaded.trainable_variables_list)
    before = [v.numpy().copy() for v in variables]
    images = tf.random.stateless_uniform([4, 32, 32, 3], seed=(1, 2))
    labels = tf.one_hot([0, 1, 2, 3], 10)
    for _ in range(3):
      with tf.GradientTape() as tape:
        outputs = loaded(images, trainable=True)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            labels, outputs['logits_sup']))
        loss += tf.reduce_mean(tf.square(outputs['proj_head_output']))
      grads = tape.gradient(loss, variables)
      for variable, grad in zip(variables, grads):
        variable.assign_sub(0.1 * grad)
    changed = {}
    for variable, old in zip(variables, before):
      part = re.search(r'block_group\\d|projection_head|head_supervised',
                       variable.name)
      part = part.group(0) if part else 'stem'
      changed.setdefault(part, []).append(
          bool(np.any(variable.numpy() != old)))
    print(json.dumps({'count': len(variables), 'changed': changed}))
""")


def test_exported_saved_model_fine_tunes_as_a_whole_in_a_fresh_process(
    r18, tmp_path):
  fixture_config, _, _, prefix = r18
  export_dir, _ = export_saved_model.export_checkpoint(prefix,
                                                       str(tmp_path / 'sm'))
  serving.assert_serving_equals_call(export_dir)
  trainable = len(model_lib.build_model(
      golden_config(fixture_config)).trainable_variables)
  result = subprocess.run(
      [sys.executable, '-c', _FINE_TUNE, export_dir], capture_output=True,
      text=True, timeout=300, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['count'] == trainable
  assert sorted(report['changed']) == [
      'block_group1', 'block_group2', 'block_group3', 'block_group4',
      'head_supervised', 'projection_head', 'stem']
  for part, changed in report['changed'].items():
    assert all(changed), part


def test_export_refuses_a_non_empty_directory_and_bad_input(r18, tmp_path):
  _, _, _, prefix = r18
  export_dir = tmp_path / 'sm'
  export_dir.mkdir()
  (export_dir / 'keep.txt').write_text('mine')
  with pytest.raises(checkpoint_files.CheckpointError, match='not empty'):
    export_saved_model.export_checkpoint(prefix, str(export_dir))
  broken = tmp_path / 'broken'
  shutil.copytree(os.path.dirname(prefix), broken)
  os.remove(broken / f'model.ckpt-{STEP}.data-00000-of-00001')
  with pytest.raises(checkpoint_files.CheckpointError,
                     match='has no data file'):
    export_saved_model.export_checkpoint(str(broken / f'model.ckpt-{STEP}'),
                                         str(tmp_path / 'new'))
  assert not (tmp_path / 'new').exists() and not _leftovers(tmp_path)
