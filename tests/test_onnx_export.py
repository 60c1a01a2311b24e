"""checkpoints_tools/export_onnx.py and tf2/checkpoints/onnx_export.py."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT
from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import onnx_export
from tf2.models import config as config_lib
from tf2.models import model as model_lib

onnxruntime = pytest.importorskip('onnxruntime')


def _saved_model(tmp_path, sk_ratio):
  """A ResNet-10 SavedModel with moving statistics other than 0 and 1."""
  model = model_lib.build_model(config_lib.ModelConfig(
      num_classes=10, resnet_depth=10, image_size=16, sk_ratio=sk_ratio,
      proj_out_dim=8, train_mode='finetune'))
  for variable in model.non_trainable_variables:
    variable.assign(tf.random.stateless_uniform(
        variable.shape, seed=(len(variable.name), 7), minval=0.5, maxval=1.5))
  return export.export_saved_model(model, str(tmp_path / f'sm_{sk_ratio}'))


def _assert_onnx_matches_saved_model(onnx_file, saved_model):
  session = onnxruntime.InferenceSession(str(onnx_file),
                                         providers=['CPUExecutionProvider'])
  (images_input,) = session.get_inputs()
  assert images_input.name == 'images'
  assert images_input.shape == ['batch', 'height', 'width', 3]
  names = [o.name for o in session.get_outputs()]
  signature = tf.saved_model.load(saved_model).signatures['serving_default']
  for batch in (1, 5):
    images = np.random.RandomState(10 + batch).uniform(
        size=(batch, 16, 16, 3)).astype(np.float32)
    expected = signature(images=tf.constant(images))
    got = dict(zip(names, session.run(None, {'images': images})))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
      value = value.numpy()
      assert got[key].shape == value.shape, key
      scale = max(1.0, float(np.abs(value).max()))
      np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-4 * scale,
                                 err_msg=f'{key} at batch {batch}')


def test_onnxruntime_gives_the_saved_model_outputs(tmp_path):
  saved_model = _saved_model(tmp_path, 0.0)
  output = tmp_path / 'r10.onnx'
  summary = onnx_export.export_onnx(saved_model, str(output), image_size=16)
  assert summary['max_difference'] <= 1e-4
  _assert_onnx_matches_saved_model(output, saved_model)


def _run_tool(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, str(ROOT / 'checkpoints_tools' / 'export_onnx.py'),
       *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
      check=False)


def test_the_command_converts_selective_kernels(tmp_path):
  saved_model = _saved_model(tmp_path, 0.0625)
  # The architecture read back from the SavedModel's variables has SK.
  assert architecture.infer_architecture(saved_model)['sk_ratio'] > 0
  output = tmp_path / 'r10_sk.onnx'
  result = _run_tool(f'--checkpoint={saved_model}', f'--output={output}',
                     '--image_size=16')
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'ONNX model: {output}' in result.stdout
  _assert_onnx_matches_saved_model(output, saved_model)


@pytest.mark.parametrize('name,phrase', [
    ('model.pb', 'ending in .onnx'),
    ('exists.onnx', 'exists; nothing is overwritten'),
])
def test_bad_output_is_refused_before_any_work(tmp_path, name, phrase):
  output = tmp_path / name
  if name == 'exists.onnx':
    output.write_bytes(b'mine')
  with pytest.raises(onnx_export.OnnxExportError, match=phrase):
    onnx_export.export_onnx(str(tmp_path / 'no_checkpoint'), str(output))
  if name == 'exists.onnx':
    assert output.read_bytes() == b'mine'


def test_a_checkpoint_that_does_not_load_gets_one_line_and_exit_2(tmp_path):
  result = _run_tool(f'--checkpoint={tmp_path / "missing"}',
                     f'--output={tmp_path / "m.onnx"}')
  assert result.returncode == 2, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.splitlines()
           if l.startswith('export_onnx.py: error:')]
  assert len(lines) == 1 and str(tmp_path / 'missing') in lines[0], (
      result.stderr[-2000:])
  assert not (tmp_path / 'm.onnx').exists()
