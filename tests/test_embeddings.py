"""checkpoints_tools/embed.py and tf2/evaluation/embeddings.py.

One converted TF1 checkpoint (the golden ResNet-18 weights, as
test_checkpoints_tools.py makes it) serves every test: its TF2 checkpoint,
its SavedModel and the TF1 prefix itself are the three formats embedded.
"""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from checkpoints_tools import convert_tf1_to_tf2
from tests import golden
from tests.conftest import ROOT
from tests.test_checkpoint_io import perturbed
from tests.test_checkpoint_io import STEP
from tests.test_checkpoint_io import write_tf1_checkpoint
from tf2.data import pipeline
from tf2.evaluation import embeddings
from tf2.models import config as config_lib
from tf2.models import model as model_lib

SPLIT = 'test[:40]'


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """{tf1, tf2, saved_model, data_dir}: one model in three formats."""
  root = tmp_path_factory.mktemp('embed')
  fixture_config, arrays = golden.load_golden('r18_1x_sk0_32px')
  weights = golden.golden_weights(fixture_config, arrays)
  prefix = write_tf1_checkpoint(str(root / 'tf1' / f'model.ckpt-{STEP}'),
                                weights, perturbed(weights))
  _, saved_model, _ = convert_tf1_to_tf2.convert(prefix, root / 'tf2')
  return dict(tf1=prefix, tf2=str(root / 'tf2'), saved_model=saved_model,
              data_dir=str(root / 'tfds'),
              loaded=tf.saved_model.load(saved_model))


def _served(loaded, images, name):
  return loaded.signatures['serving_default'](
      images=tf.constant(images, tf.float32))[name].numpy()


def _assert_close(actual, expected):
  # Same weights and images; the runtime's graph rewrites round differently
  # in the two functions (serving.py): 1e-5 of the largest magnitude.
  scale = max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale)


def _assert_views(projector_dir, tsne_png, values, paths, labels, images):
  """The projector log and the t-SNE map of the folder test's embeddings."""
  assert (projector_dir / 'projector_config.pbtxt').exists()
  prefix = tf.train.latest_checkpoint(str(projector_dir))
  np.testing.assert_allclose(
      tf.train.load_variable(prefix, 'embedding/.ATTRIBUTES/VARIABLE_VALUE'),
      values, atol=1e-6)
  rows = (projector_dir / 'metadata.tsv').read_text().splitlines()
  assert rows[0] == 'label\tclass\tpath'
  assert rows[1:] == [f'{labels[p]}\t{["cat", "dog"][labels[p]]}\t{p}'
                      for p in paths]
  # Four 32 px images: a 2 x 2 sprite of the images themselves, row by row.
  sprite = np.asarray(Image.open(projector_dir / 'sprite.png'))
  assert sprite.shape == (64, 64, 3)
  np.testing.assert_array_equal(sprite[:32, 32:], images[paths[1]])
  with Image.open(tsne_png) as png:
    assert png.format == 'PNG' and min(png.size) > 100


def _embed_cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(
      [sys.executable, str(ROOT / 'checkpoints_tools' / 'embed.py'), *args],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
      check=False)


def test_digits_from_a_converted_tf1_checkpoint_match_the_saved_model(
    converted, tmp_path):
  output = tmp_path / 'digits.npz'
  summary = embeddings.embed(converted['tf2'], 'digits', SPLIT, str(output),
                             data_dir=converted['data_dir'], batch_size=16)
  assert summary['rows'] == 40 and summary['dim'] == 512
  written = np.load(output)
  assert sorted(written.files) == [
      'checkpoint', 'class_names', 'dataset', 'embeddings', 'labels',
      'output_name', 'split']
  assert written['embeddings'].shape == (40, 512)
  assert list(written['class_names']) == [str(i) for i in range(10)]
  # Labels in the split's order, as TFDS reads it.
  builder = pipeline.get_builder('digits', converted['data_dir'])
  stored = list(tfds.as_numpy(builder.as_dataset(split=SPLIT)))
  np.testing.assert_array_equal(written['labels'],
                                [e['label'] for e in stored])
  # The same images (the evaluation preprocessing) through the SavedModel.
  images = np.concatenate([b[0] for b in tfds.as_numpy(
      embeddings.tfds_images('digits', SPLIT, 32, 16,
                             converted['data_dir']).batches)])
  _assert_close(written['embeddings'],
                _served(converted['loaded'], images, 'final_avg_pool'))

  # The TF1 checkpoint itself, through the command, gives the same rows
  # (the folder test embeds the SavedModel).
  output = tmp_path / 'cli.npz'
  result = _embed_cli(f'--checkpoint={converted["tf1"]}', '--dataset=digits',
                      f'--split={SPLIT}', f'--output={output}',
                      f'--data_dir={converted["data_dir"]}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'embed.py: 40/40 images (100%)' in result.stderr
  assert f'Wrote 40 rows of 512 values (final_avg_pool) to {output}' in (
      result.stdout)
  np.testing.assert_allclose(np.load(output)['embeddings'],
                             written['embeddings'], rtol=0, atol=1e-5)


def _write_folder(root):
  """train/{cat,dog}, unlabeled/, a grey PNG and a text file: {path: image}."""
  rng = np.random.RandomState(0)
  images = {}
  for relpath in ('train/cat/a.png', 'train/cat/sub/b.png', 'train/dog/c.png',
                  'train/dog/d.png', 'unlabeled/e.png', 'unlabeled/f.png'):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.randint(0, 256, size=(32, 32, 3), dtype=np.uint8)
    if relpath.endswith('d.png'):
      grey = rng.randint(0, 256, size=(32, 32), dtype=np.uint8)
      Image.fromarray(grey, mode='L').save(path)
      pixels = np.repeat(grey[..., None], 3, axis=-1)
    else:
      Image.fromarray(pixels).save(path)
    images[str(path)] = pixels
  (root / 'train' / 'dog' / 'notes.txt').write_text('not an image')
  return images


def test_an_image_folder_gives_one_row_per_image_with_path_and_label(
    converted, tmp_path):
  folder = tmp_path / 'pets'
  images = _write_folder(folder)
  output = tmp_path / 'train.csv'
  projector_dir, tsne_png = tmp_path / 'projector', tmp_path / 'tsne.png'
  summary = embeddings.embed(converted['saved_model'], str(folder), 'train',
                             str(output), output_name='logits_sup',
                             image_size=32, batch_size=3,
                             projector_dir=str(projector_dir),
                             tsne_png=str(tsne_png))
  assert summary['rows'] == 4 and summary['dim'] == 10
  with open(output, newline='') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0])[:2] == ['path', 'label']
  paths = [r['path'] for r in rows]
  assert sorted(paths) == sorted(p for p in images if '/train/' in p)
  labels = {p: int(r['label']) for p, r in zip(paths, rows)}
  assert all(labels[p] == (0 if '/cat/' in p else 1) for p in paths)
  values = np.array([[float(r[f'e{i}']) for i in range(10)] for r in rows])
  # 32 px needs no crop and no resize: the model sees pixels / 255.
  expected = _served(converted['loaded'],
                     np.stack([images[p] for p in paths]) / 255.0,
                     'logits_sup')
  _assert_close(values, expected)
  _assert_views(projector_dir, tsne_png, values, paths, labels, images)

  output = tmp_path / 'unlabeled.npz'
  embeddings.embed(converted['tf2'], str(folder), 'unlabeled', str(output),
                   output_name='proj_head_output', image_size=32)
  written = np.load(output)
  assert sorted(written['paths']) == sorted(
      p for p in images if '/unlabeled/' in p)
  np.testing.assert_array_equal(written['labels'], [-1, -1])
  expected = _served(converted['loaded'],
                     np.stack([images[p] for p in written['paths']]) / 255.0,
                     'proj_head_output')
  _assert_close(written['embeddings'], expected)


def _garbage_checkpoint(tmp_path):
  prefix = tmp_path / 'broken' / 'model.ckpt-1'
  prefix.parent.mkdir()
  for suffix in ('.index', '.data-00000-of-00001'):
    (tmp_path / 'broken' / f'model.ckpt-1{suffix}').write_bytes(b'garbage')
  return str(prefix)


@pytest.mark.parametrize('problem,phrase', [
    ('output_name', "--output_name='pool5' is not an output"),
    ('empty_folder', 'has no subfolders'),
    ('bad_checkpoint', 'model.ckpt-1'),
    ('output_exists', 'exists; nothing is overwritten'),
    ('split', "Split 'validation' does not exist in digits"),
])
def test_bad_input_gets_one_line_naming_problem_and_fix(
    converted, tmp_path, problem, phrase):
  folder = tmp_path / 'empty'
  folder.mkdir()
  output = tmp_path / 'out.npz'
  kwargs = dict(checkpoint=converted['tf2'], dataset='digits', split='test',
                output=str(output), data_dir=converted['data_dir'])
  if problem == 'output_name':
    kwargs['output_name'] = 'pool5'
  elif problem == 'empty_folder':
    kwargs['dataset'] = str(folder)
  elif problem == 'bad_checkpoint':
    kwargs['checkpoint'] = _garbage_checkpoint(tmp_path)
  elif problem == 'output_exists':
    output.write_bytes(b'mine')
  elif problem == 'split':
    kwargs['split'] = 'validation'
  with pytest.raises(embeddings.INPUT_ERRORS) as error:
    embeddings.embed(**kwargs)
  message = str(error.value)
  assert phrase in message and '\n' not in message.strip(), message
  if problem == 'output_exists':
    assert output.read_bytes() == b'mine'
  else:
    assert not output.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.tmp-')]


def test_an_output_the_checkpoint_lacks_is_refused_before_any_work(tmp_path):
  model = model_lib.build_model(config_lib.ModelConfig(
      resnet_depth=18, image_size=16, proj_out_dim=8, train_mode='pretrain',
      lineareval_while_pretraining=False))
  tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt' / 'ckpt-1'))
  with pytest.raises(embeddings.EmbeddingError) as error:
    embeddings.embed(str(tmp_path / 'ckpt' / 'ckpt-1'), str(tmp_path / 'no'),
                     'train', str(tmp_path / 'out.npz'),
                     output_name='logits_sup')
  assert 'has no supervised head' in str(error.value)
  assert 'final_avg_pool' in str(error.value)
  assert not (tmp_path / 'out.npz').exists()


def test_the_command_exits_2_with_one_line_for_bad_input(converted, tmp_path):
  result = _embed_cli(f'--checkpoint={converted["tf2"]}', '--dataset=digits',
                      '--output_name=pool5', f'--output={tmp_path / "x.npz"}')
  assert result.returncode == 2
  assert 'Traceback' not in result.stderr
  lines = [l for l in result.stderr.splitlines() if 'embed.py' in l]
  assert lines == [
      "embed.py: error: --output_name='pool5' is not an output the embedding "
      'command writes: pass one of final_avg_pool, proj_head_input, '
      'proj_head_output, logits_sup.']
  assert not (tmp_path / 'x.npz').exists()
