"""run.py end to end on the embedded digits dataset, in subprocesses."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from colabs import tools
from tests import serving

TINY = ['--dataset=digits', '--use_tpu=False', '--resnet_depth=18',
        '--image_size=16', '--train_batch_size=32', '--eval_batch_size=128',
        '--proj_out_dim=16', '--learning_rate=0.1', '--warmup_epochs=0']


def run_py(*args, data_dir, check=True):
  """run.py in a subprocess; its CompletedProcess (stdout, stderr apart)."""
  result = tools.run_py_process([f'--data_dir={data_dir}', *args],
                                capture_output=True, text=True, timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(f'run.py {" ".join(args)} failed:\n'
                         f'{result.stderr[-4000:]}')
  return result


def checkpoint_steps(model_dir):
  return sorted(int(p.name.split('-')[1].split('.')[0])
                for p in pathlib.Path(model_dir).glob('ckpt-*.index'))


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  """A 4-step pretraining run, then a resumed run to step 6."""
  data_dir = tmp_path_factory.mktemp('data')
  model_dir = tmp_path_factory.mktemp('pretrain')
  run_py(*TINY, '--mode=train', '--train_steps=4', '--checkpoint_steps=2',
         f'--model_dir={model_dir}', data_dir=data_dir)
  first_steps = checkpoint_steps(model_dir)
  resumed = run_py(*TINY, '--mode=train', '--train_steps=6',
                   '--checkpoint_steps=2', f'--model_dir={model_dir}',
                   data_dir=data_dir)
  return dict(data_dir=data_dir, model_dir=model_dir, first_steps=first_steps,
              resumed_log=resumed.stderr)


def test_pretraining_writes_checkpoints_summaries_and_flags(pretrained):
  model_dir = pretrained['model_dir']
  assert pretrained['first_steps'] == [2, 4]
  assert list(model_dir.glob('events.out.tfevents.*'))
  flags_json = json.loads((model_dir / 'flags.json').read_text())
  assert flags_json['dataset'] == 'digits'
  assert flags_json['num_train_examples'] > 1000


def test_second_run_resumes_at_the_saved_step(pretrained):
  assert 'Resumed from' in pretrained['resumed_log']
  assert 'at step 4' in pretrained['resumed_log']
  assert checkpoint_steps(pretrained['model_dir'])[-1] == 6


@pytest.fixture(scope='module')
def finetuned(pretrained, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('finetune')
  run_py(*TINY, '--mode=train_then_eval', '--train_mode=finetune',
         '--train_steps=3', '--checkpoint_steps=3', '--optimizer=momentum',
         '--fine_tune_after_block=4', '--zero_init_logits_layer',
         f'--checkpoint={pretrained["model_dir"]}', '--eval_split=test',
         f'--model_dir={model_dir}', data_dir=pretrained['data_dir'])
  return dict(pretrained, finetune_dir=model_dir)


def test_finetune_then_eval_writes_results_and_saved_model(finetuned):
  model_dir = finetuned['finetune_dir']
  result = json.loads((model_dir / 'result.json').read_text())
  assert result['global_step'] == 3
  assert 0.0 <= result['eval/label_top_1_accuracy'] <= 1.0
  assert (model_dir / 'result_3.json').exists()
  assert (model_dir / 'saved_model' / '3' / 'saved_model.pb').exists()


def test_eval_mode_evaluates_the_last_checkpoint_and_stops(finetuned):
  model_dir = finetuned['finetune_dir']
  (model_dir / 'result.json').unlink()
  run_py(*TINY, '--mode=eval', '--train_mode=finetune', '--train_steps=3',
         '--eval_split=test', f'--model_dir={model_dir}',
         data_dir=finetuned['data_dir'])
  assert json.loads((model_dir / 'result.json').read_text())[
      'global_step'] == 3


def test_saved_model_loads_in_a_fresh_process(finetuned):
  export_dir = finetuned['finetune_dir'] / 'saved_model' / '3'
  code = (
      'import tensorflow as tf, json\n'
      f'm = tf.saved_model.load({str(export_dir)!r})\n'
      'out = m(tf.zeros([2, 16, 16, 3]), trainable=False)\n'
      'print(json.dumps({k: v.shape.as_list() for k, v in out.items()}))\n')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-3000:]
  shapes = json.loads(result.stdout.strip().splitlines()[-1])
  assert shapes['logits_sup'] == [2, 10]
  assert shapes['final_avg_pool'] == [2, 512]
  assert set(shapes) >= {'initial_conv', 'initial_max_pool', 'block_group1',
                         'block_group4', 'proj_head_input',
                         'proj_head_output'}


def test_saved_model_serves_and_loads_in_keras3(finetuned, tmp_path):
  export_dir = finetuned['finetune_dir'] / 'saved_model' / '3'
  images = np.random.RandomState(0).uniform(size=(3, 16, 16, 3)).astype(
      np.float32)
  keras3 = serving.keras3_outputs(export_dir, images, tmp_path)
  loaded = tf.saved_model.load(str(export_dir))
  served = loaded.signatures['serving_default'](images=images)
  called = loaded(images, trainable=False)
  assert sorted(keras3) == sorted(served) == sorted(called)
  # Keras 3 runs the signature: the same function, the same numbers.
  np.testing.assert_allclose(keras3['logits_sup'],
                             served['logits_sup'].numpy(), atol=1e-6, rtol=0)
  # And the signature is __call__ in inference mode (serving.py: rounding).
  for key, value in called.items():
    scale = max(1.0, float(np.abs(value.numpy()).max()))
    np.testing.assert_allclose(served[key].numpy(), value.numpy(), rtol=0,
                               atol=1e-5 * scale, err_msg=key)


def test_other_architecture_never_overwrites_a_checkpoint(pretrained):
  model_dir = pretrained['model_dir']
  before = checkpoint_steps(model_dir)
  result = run_py(*TINY, '--width_multiplier=2', '--train_steps=8',
                  f'--model_dir={model_dir}', data_dir=pretrained['data_dir'],
                  check=False)
  assert result.returncode != 0
  message = result.stderr.split('run.py: error: ')[-1]
  assert '--width_multiplier=2' in message
  assert 'width_multiplier=1' in message
  assert 'Traceback' not in result.stderr
  assert checkpoint_steps(model_dir) == before


def test_architecture_flags_left_at_defaults_come_from_the_checkpoint(
    pretrained, tmp_path):
  args = [a for a in TINY if not a.startswith(('--resnet_depth',
                                               '--proj_out_dim'))]
  result = run_py(*args, '--train_mode=finetune', '--train_steps=1',
                  '--checkpoint_steps=1', f'--model_dir={tmp_path / "ft"}',
                  f'--checkpoint={pretrained["model_dir"]}',
                  data_dir=pretrained['data_dir'])
  assert "'resnet_depth': 18" in result.stderr
  assert "'proj_out_dim': 16" in result.stderr
  assert checkpoint_steps(tmp_path / 'ft') == [1]


@pytest.mark.parametrize('args,message', [
    (['--use_tpu=True'], '--use_tpu=False'),
    (['--model_dir='], '--model_dir'),
    (['--checkpoint=/nonexistent/model.ckpt-1'], 'does not exist'),
    (['--fine_tune_after_block=2'], 'fine_tune_after_block'),
    (['--dataset=cifar10'], 'cifar10'),
])
def test_bad_input_gives_one_clear_message(args, message, tmp_path):
  base = [a for a in TINY if not any(a.startswith(x.split('=')[0] + '=')
                                     for x in args)]
  result = run_py(*base, f'--model_dir={tmp_path / "m"}', *args,
                  data_dir=tmp_path / 'data', check=False)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
