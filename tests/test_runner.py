"""Experiments run in-process: eval mode, the recipe on ram://, presets."""

import logging

from absl import logging as absl_logging
import pytest
import tensorflow as tf

from tf2 import runner
from tf2.config import experiment as experiment_lib
from tf2.config import presets
from tf2.runtime import fileio

TINY = dict(dataset='digits', use_tpu=False, resnet_depth=18, image_size=8,
            train_batch_size=32, eval_batch_size=128, proj_out_dim=16,
            learning_rate=0.1, warmup_epochs=0, eval_split='test')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


def run(data_dir, model_dir, preset=None, **given):
  """What `run.py --config=preset --model_dir=... [given]` runs."""
  given = dict(given, model_dir=model_dir, data_dir=data_dir)
  return runner.run(experiment_lib.compose(given, preset, model_dir))


def test_eval_mode_of_a_label_subset_run_stops_with_its_result(
    data_dir, tmp_path, caplog):
  model_dir = str(tmp_path / 'ft')
  trained = run(data_dir, model_dir, **TINY, mode='train_then_eval',
                train_mode='finetune', label_fraction=0.1, train_epochs=2,
                eval_knn=True, knn_k=5)
  # 145 labeled digits, 2 epochs of batches of 32: 145 * 2 // 32 + 1.
  assert trained['global_step'] == 10
  fileio.gfile.remove(fileio.join(model_dir, 'result.json'))
  absl_logging.set_verbosity(absl_logging.INFO)
  caplog.set_level(logging.INFO, logger='absl')
  # No train flags: the run's experiment.json says where training ends.
  # (The timeout only bounds a failure; stopping by it fails the test.)
  evaluated = run(data_dir, model_dir, mode='eval', eval_timeout=60)
  assert 'Eval complete at step 10' in caplog.text
  assert evaluated == trained
  assert fileio.read_json(fileio.join(model_dir, 'result.json'))[
      'eval/knn_top_1_accuracy'] == trained['eval/knn_top_1_accuracy']


def test_the_recipe_runs_on_an_in_memory_filesystem(data_dir):
  root = 'ram://recipe'
  run(data_dir, f'{root}/pretrain', **TINY, train_steps=2,
      checkpoint_steps=2)
  assert tf.train.latest_checkpoint(f'{root}/pretrain').endswith('ckpt-2')
  finetuned = run(data_dir, f'{root}/ft', **TINY, mode='train_then_eval',
                  train_mode='finetune', label_fraction=0.1,
                  ft_proj_selector=1, train_steps=2, checkpoint_steps=2,
                  checkpoint=f'{root}/pretrain', eval_knn=True, knn_k=5)
  assert finetuned['global_step'] == 2
  for name in ('experiment.json', 'flags.json', 'label_subset.json',
               'result.json', 'result_2.json',
               'saved_model/2/saved_model.pb'):
    assert fileio.exists(f'{root}/ft/{name}'), name
  exported = tf.saved_model.load(f'{root}/ft/saved_model/2')
  logits = exported(tf.zeros([2, 8, 8, 3]), trainable=False)['logits_sup']
  assert logits.shape == (2, 10)
  evaluated = run(data_dir, f'{root}/ft', mode='eval', eval_timeout=60)
  assert evaluated['global_step'] == 2
  # The teacher's ft_proj_selector comes from its experiment.json on ram://.
  distilled = run(data_dir, f'{root}/distill', **dict(TINY, resnet_depth=10),
                  mode='train_then_eval', train_mode='distill',
                  teacher_checkpoint=f'{root}/ft', train_steps=2,
                  checkpoint_steps=2, eval_knn=True, knn_k=5)
  assert 0 <= distilled['eval/knn_top_1_accuracy'] <= 1
  assert 0 <= distilled['eval/label_top_1_accuracy'] <= 1
  from_export = run(data_dir, f'{root}/distill_sm', **TINY,
                    train_mode='distill', train_steps=1, checkpoint_steps=1,
                    teacher_checkpoint=f'{root}/ft/saved_model/2')
  assert from_export
  fileio.rmtree(root)


_DIGITS_PRESETS = [n for n in presets.names() if n.startswith('digits')]


def test_the_digits_presets_run_for_one_step(data_dir, tmp_path):
  one_step = dict(train_steps=1, checkpoint_steps=1, eval_steps=1)
  dirs = {name: str(tmp_path / name) for name in _DIGITS_PRESETS}
  needs = {'digits_quickstart_finetune': dict(
               checkpoint=dirs['digits_quickstart_pretrain']),
           'digits_finetune': dict(checkpoint=dirs['digits_pretrain']),
           'digits_distill': dict(teacher_checkpoint=dirs['digits_finetune'])}
  order = sorted(_DIGITS_PRESETS, key=lambda n: n in needs)  # Sources first.
  order = sorted(order, key=lambda n: n == 'digits_distill')
  for name in order:
    run(data_dir, dirs[name], preset=name, **one_step, **needs.get(name, {}))
    assert tf.train.latest_checkpoint(dirs[name]).endswith('ckpt-1'), name
    record = experiment_lib.load_record(dirs[name])
    assert record[1]['train_steps'] == 1
