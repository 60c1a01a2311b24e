"""The semi-supervised recipe through run.py: label subsets, distillation,
kNN evaluation and a folder of the user's own images."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.test_run import TINY, checkpoint_steps, run_py


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
  """Fine-tuned from scratch on 10% of the digits labels (3 steps)."""
  data_dir = tmp_path_factory.mktemp('data')
  model_dir = tmp_path_factory.mktemp('teacher')
  result = run_py(*TINY, '--mode=train_then_eval', '--train_mode=finetune',
                  '--train_steps=3', '--checkpoint_steps=3',
                  '--label_fraction=0.1', '--ft_proj_selector=1',
                  '--eval_split=test', f'--model_dir={model_dir}',
                  data_dir=data_dir)
  return dict(data_dir=data_dir, model_dir=model_dir, log=result.stderr)


def test_label_subset_counts_are_logged_and_recorded(teacher):
  model_dir = teacher['model_dir']
  flags_json = json.loads((model_dir / 'flags.json').read_text())
  # 10% per class of 1442 digits (140 to 147 per class): 145 labeled.
  assert flags_json['num_labeled_examples'] == 145
  assert flags_json['num_unlabeled_examples'] == 1442 - 145
  assert flags_json['num_train_examples'] == 145  # Epochs of labeled data.
  assert '145 labeled' in teacher['log']
  subset = json.loads((model_dir / 'label_subset.json').read_text())
  assert len(subset['labeled_ids']) == 145


# Slow (run with -m slow): the same path runs in-process in
# tests/test_runner.py::test_the_recipe_runs_on_an_in_memory_filesystem
# (a fine-tuned teacher's selector read from its record, kNN and label
# eval, export, a smaller student from a SavedModel teacher); this one
# adds the run.py process around it.
@pytest.mark.slow
def test_distill_from_a_finetuned_teacher_end_to_end(teacher, tmp_path):
  model_dir = tmp_path / 'student'
  result = run_py(*TINY, '--mode=train_then_eval', '--train_mode=distill',
                  '--train_steps=2', '--checkpoint_steps=2',
                  '--label_fraction=0.1', '--label_loss_weight=0.5',
                  f'--teacher_checkpoint={teacher["model_dir"]}',
                  '--eval_split=test', '--eval_knn', '--knn_k=20',
                  f'--model_dir={model_dir}', data_dir=teacher['data_dir'])
  # The teacher's selector is read from its flags.json.
  assert 'ft_proj_selector=1' in result.stderr
  assert 'train/distill_loss' in result.stderr
  assert checkpoint_steps(model_dir) == [2]
  outcome = json.loads((model_dir / 'result.json').read_text())
  assert 0.0 <= outcome['eval/label_top_1_accuracy'] <= 1.0
  assert 0.0 <= outcome['eval/knn_top_1_accuracy'] <= 1.0
  assert (model_dir / 'saved_model' / '2' / 'saved_model.pb').exists()


@pytest.mark.slow  # As above.
def test_smaller_student_learns_from_a_saved_model_teacher(teacher, tmp_path):
  saved_model = teacher['model_dir'] / 'saved_model' / '3'
  model_dir = tmp_path / 'small'
  run_py(*TINY, '--resnet_depth=10', '--mode=train', '--train_mode=distill',
         '--train_steps=1', '--checkpoint_steps=1',
         f'--teacher_checkpoint={saved_model}', f'--model_dir={model_dir}',
         data_dir=teacher['data_dir'])
  assert checkpoint_steps(model_dir) == [1]


@pytest.mark.parametrize('args,message', [
    (['--train_mode=distill'], '--teacher_checkpoint'),
    (['--label_fraction=0.1', '--labels_per_class=3'], 'only one'),
    (['--label_fraction=1.5'], '--label_fraction'),
])
def test_bad_recipe_flags_give_one_clear_message(args, message, tmp_path):
  result = run_py(*TINY, f'--model_dir={tmp_path / "m"}', *args,
                  data_dir=tmp_path / 'data', check=False)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr


def _write_images(folder, count, colour, seed):
  """Small images of one class: grey PNG, RGBA PNG and RGB JPEG."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(count):
    pixels = np.clip(rng.normal(colour, 20, (10, 10, 3)), 0, 255).astype(
        np.uint8)
    kind = i % 3
    if kind == 0:
      data = tf.io.encode_png(pixels[..., :1])
      name = f'{i}.png'
    elif kind == 1:
      alpha = np.full((10, 10, 1), 255, np.uint8)
      data = tf.io.encode_png(np.concatenate([pixels, alpha], -1))
      name = f'{i}.png'
    else:
      data = tf.io.encode_jpeg(pixels)
      name = f'{i}.jpg'
    (folder / name).write_bytes(data.numpy())


def test_own_image_folder_pretrain_and_finetune(tmp_path):
  root = tmp_path / 'my_images'
  for split, count in (('train', 6), ('test', 3)):
    for c, colour in enumerate((40, 130, 220)):
      _write_images(root / split / f'class_{c}', count, colour, c)
  _write_images(root / 'unlabeled', 8, 128, 9)
  (root / 'train' / 'class_0' / 'notes.txt').write_text('not an image')
  (root / 'unlabeled' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 cut')
  common = ['--use_tpu=False', '--resnet_depth=18', '--image_size=16',
            '--train_batch_size=8', '--eval_batch_size=16',
            '--proj_out_dim=16', '--warmup_epochs=0', f'--dataset={root}',
            '--eval_split=test']
  pretrain_dir = tmp_path / 'pretrain'
  result = run_py(*common, '--mode=train_then_eval', '--train_steps=2',
                  '--checkpoint_steps=2', '--train_split=train+unlabeled',
                  '--eval_knn', '--knn_k=5', f'--model_dir={pretrain_dir}',
                  data_dir=tmp_path / 'data')
  assert 'train: 18 images, 1 files skipped' in result.stderr
  assert 'unlabeled: 8 images, 1 files skipped' in result.stderr
  outcome = json.loads((pretrain_dir / 'result.json').read_text())
  assert 'eval/knn_top_1_accuracy' in outcome
  assert json.loads((pretrain_dir / 'flags.json').read_text())[
      'num_train_examples'] == 26
  finetune_dir = tmp_path / 'finetune'
  run_py(*common, '--mode=train_then_eval', '--train_mode=finetune',
         '--train_steps=2', '--checkpoint_steps=2',
         f'--checkpoint={pretrain_dir}', f'--model_dir={finetune_dir}',
         data_dir=tmp_path / 'data')
  outcome = json.loads((finetune_dir / 'result.json').read_text())
  assert 0.0 <= outcome['eval/label_top_1_accuracy'] <= 1.0


def test_empty_image_folder_gives_one_clear_message(tmp_path):
  (tmp_path / 'empty' / 'train' / 'cats').mkdir(parents=True)
  result = run_py(*TINY, f'--dataset={tmp_path / "empty"}',
                  f'--model_dir={tmp_path / "m"}', data_dir=tmp_path / 'data',
                  check=False)
  assert result.returncode != 0
  assert str(tmp_path / 'empty') in result.stderr
  assert 'Traceback' not in result.stderr


def test_pretraining_with_memory_resumes_it_and_exports_the_ema_model(
    tmp_path):
  model_dir = tmp_path / 'memory'
  args = [*TINY, '--mode=train', '--memory_size=64',
          '--memory_ema_decay=0.9', '--checkpoint_steps=2',
          f'--model_dir={model_dir}']
  run_py(*args, '--train_steps=2', data_dir=tmp_path / 'data')
  reader = tf.train.load_checkpoint(str(model_dir / 'ckpt-2'))
  names = reader.get_variable_to_shape_map()
  queue = [n for n in names if n.startswith('memory/queue')]
  assert queue and reader.get_variable_to_shape_map()[queue[0]] == [64, 16]
  filled = [n for n in names if n.startswith('memory/num_filled')][0]
  assert reader.get_tensor(filled) == 2 * 32  # Two batches of keys.
  resumed = run_py(*args, '--train_steps=3', data_dir=tmp_path / 'data')
  assert 'memory buffer starts empty' not in resumed.stderr
  reader = tf.train.load_checkpoint(str(model_dir / 'ckpt-3'))
  assert reader.get_tensor(filled) == 64  # Full: 96 keys into 64 slots.
  assert (model_dir / 'saved_model_ema' / '3' / 'saved_model.pb').exists()
