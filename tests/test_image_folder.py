"""Tests of tf2/datasets/image_folder.py: a user's folder as TFDS data."""

import os
import pickle
import struct
import zlib

import numpy as np
import pytest

import tf2  # pylint: disable=unused-import  # Before tensorflow.
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.data import pipeline as data_lib
from tf2.data.datasets import folder_layout
from tf2.data.datasets import image_folder as image_folder_lib

CLASSES = ('cat', 'dog', 'fish')


def _pixels(height, width, channels, seed, dtype=np.uint8):
  top = np.iinfo(dtype).max
  return np.random.RandomState(seed).randint(
      0, top, (height, width, channels)).astype(dtype)


def _palette_png(height, width):
  """An 8-bit palette PNG (colour type 3), written by hand."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  palette = bytes([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
  rows = b''.join(b'\x00' + bytes((x + y) % 4 for x in range(width))
                  for y in range(height))
  return (b'\x89PNG\r\n\x1a\n' +
          chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 3, 0, 0,
                                     0)) +
          chunk(b'PLTE', palette) + chunk(b'IDAT', zlib.compress(rows)) +
          chunk(b'IEND', b''))


def _write(path, contents):
  tf.io.gfile.makedirs(path.rsplit('/', 1)[0])
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(contents)


def _png(pixels):
  return tf.io.encode_png(pixels).numpy()


def _jpeg(pixels):
  return tf.io.encode_jpeg(pixels).numpy()


def _write_class(folder, label):
  """Four images of four formats; the width is 8 + label (checked later)."""
  width = 8 + label
  _write(f'{folder}/gray.png', _png(_pixels(8, width, 1, label)))
  _write(f'{folder}/rgba.PNG', _png(_pixels(12, width, 4, label)))
  _write(f'{folder}/rgb.jpg', _jpeg(_pixels(16, width, 3, label)))
  _write(f'{folder}/sub/palette.png', _palette_png(20, width))


def make_tree(root):
  """train: 12 images + 3 broken; test: 4 + 1 stray; unlabeled: 2 + 1."""
  for label, name in enumerate(CLASSES):
    _write_class(f'{root}/train/{name}', label)
  _write(f'{root}/train/cat/notes.txt', b'not an image')
  _write(f'{root}/train/dog/empty.jpg', b'')
  _write(f'{root}/train/fish/truncated.jpg',
         _jpeg(_pixels(16, 10, 3, 0))[:200])
  _write(f'{root}/train/.DS_Store', b'hidden: ignored')
  _write(f'{root}/test/cat/a.jpg', _jpeg(_pixels(9, 8, 3, 5)))
  _write(f'{root}/test/cat/b.jpeg', _jpeg(_pixels(10, 8, 1, 6)))
  _write(f'{root}/test/fish/c.png', _png(_pixels(11, 10, 3, 7)))
  _write(f'{root}/test/fish/d16.png',
         _png(_pixels(12, 10, 1, 8, dtype=np.uint16)))
  _write(f'{root}/test/stray.png', _png(_pixels(8, 8, 3, 9)))
  _write(f'{root}/unlabeled/x.jpg', _jpeg(_pixels(8, 30, 3, 10)))
  _write(f'{root}/unlabeled/deep/er/y.png', _png(_pixels(8, 31, 2, 11)))
  _write(f'{root}/unlabeled/z.txt', b'text')


@pytest.fixture(name='root')
def _root(tmp_path):
  root = str(tmp_path / 'My Photos')
  make_tree(root)
  return root


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_a_folder_on_another_filesystem_is_read_alike(root, tmp_path):
  # ram:// (TensorFlow's in-memory filesystem) stands in for gs://.
  make_tree('ram://photos/My Photos')
  try:
    remote = image_folder_lib.image_folder_builder('ram://photos/My Photos',
                                                   tmp_path / 'tfds')
    local = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
    assert tuple(remote.info.features['label'].names) == CLASSES
    for split in ('train', 'test', 'unlabeled'):
      assert (remote.info.splits[split].num_examples ==
              local.info.splits[split].num_examples)
    assert image_folder_lib.preparation_counts(remote) == (
        image_folder_lib.preparation_counts(local))
  finally:
    tf.io.gfile.rmtree('ram://photos')


def test_counts_per_split_and_skipped_files(root, tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  splits = builder.info.splits
  assert {s: splits[s].num_examples for s in splits} == {
      'train': 12, 'test': 4, 'unlabeled': 2}
  counts = image_folder_lib.preparation_counts(builder)
  assert {split: c['skipped'] for split, c in counts.items()} == {
      'train': 3, 'test': 1, 'unlabeled': 1}
  assert sorted(counts['train']['skipped_files']) == [
      'train/cat/notes.txt', 'train/dog/empty.jpg', 'train/fish/truncated.jpg']
  assert counts['test']['skipped_files'] == ['test/stray.png']
  assert 'test: 4 images, 1 files skipped' in image_folder_lib.describe(
      builder)


def test_labels_follow_sorted_class_folders(root, tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  assert builder.info.features['label'].names == list(CLASSES)
  assert data_lib.num_classes(builder) == 3
  train = _examples(builder, 'train')
  # Each class folder's images are 8 + label pixels wide.
  assert sorted((e['label'], e['image'].shape[1]) for e in train) == sorted(
      (label, 8 + label) for label in range(3) for _ in range(4))
  assert sorted(e['label'] for e in _examples(builder, 'test')) == [0, 0, 2, 2]


def test_every_image_is_rgb_uint8_and_is_labeled_marks_unlabeled(root,
                                                                 tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  for split in ('train', 'test', 'unlabeled'):
    for example in _examples(builder, split):
      assert example['image'].dtype == np.uint8
      assert example['image'].shape[-1] == 3
      assert example['is_labeled'] == (split != 'unlabeled')
  unlabeled = _examples(builder, 'unlabeled')
  assert [e['label'] for e in unlabeled] == [0, 0]
  assert sorted(e['image'].shape[1] for e in unlabeled) == [30, 31]


def test_conversions_keep_pixels_and_jpeg_bytes(root, tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  stored = builder.as_dataset(
      split='train', decoders={'image': tfds.decode.SkipDecoding()})
  by_shape = {}
  for example in tfds.as_numpy(stored):
    image = tf.io.decode_image(example['image']).numpy()
    by_shape[(example['label'],) + image.shape[:2]] = (example['image'],
                                                       image)
  gray = _pixels(8, 8, 1, 0)
  np.testing.assert_array_equal(by_shape[(0, 8, 8)][1],
                                np.repeat(gray, 3, axis=-1))
  rgba = _pixels(12, 9, 4, 1)
  np.testing.assert_array_equal(by_shape[(1, 12, 9)][1], rgba[..., :3])
  jpeg_bytes = open(f'{root}/train/fish/rgb.jpg', 'rb').read()
  assert by_shape[(2, 16, 10)][0] == jpeg_bytes  # Stored as is.
  palette = by_shape[(0, 20, 8)][1]
  assert palette.shape == (20, 8, 3)
  np.testing.assert_array_equal(palette[0, :4],
                                [[0, 0, 0], [255, 0, 0], [0, 255, 0],
                                 [0, 0, 255]])


def test_builder_survives_pickling(root, tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  copy = pickle.loads(pickle.dumps(builder))
  assert copy.data_dir == builder.data_dir
  assert copy.info.splits['test'].num_examples == 4


def test_simple_layout_is_one_train_split(tmp_path):
  root = str(tmp_path / 'flat')
  for label, name in enumerate(CLASSES[:2]):
    _write_class(f'{root}/{name}', label)
  _write(f'{root}/README.txt', b'files directly in root are ignored')
  os.symlink(f'{root}/missing.png', f'{root}/dog/broken_link.png')
  layout = folder_layout.read_layout(root)
  assert layout.simple
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  assert list(builder.info.splits) == ['train']
  assert builder.info.splits['train'].num_examples == 8
  assert builder.info.features['label'].names == ['cat', 'dog']
  assert image_folder_lib.preparation_counts(builder)['train'][
      'skipped_files'] == ['dog/broken_link.png']


def test_train_or_unlabeled_folder_means_split_layout(tmp_path):
  root = str(tmp_path / 'images')
  _write_class(f'{root}/train/cat', 0)
  _write(f'{root}/train/stray.jpg', _jpeg(_pixels(8, 8, 3, 0)))
  layout = folder_layout.read_layout(root)
  assert not layout.simple
  assert layout.classes == ('cat',)
  assert layout.stray == {'train': ['train/stray.jpg']}


def test_without_train_classes_are_those_of_all_labeled_splits(tmp_path):
  root = str(tmp_path / 'images')
  _write_class(f'{root}/validation/cat', 0)
  _write_class(f'{root}/validation/dog', 1)
  _write_class(f'{root}/test/bird', 0)
  layout = folder_layout.read_layout(root)
  assert not layout.simple
  assert layout.classes == ('bird', 'cat', 'dog')
  assert {label for _, label in layout.files['test']} == {0}
  assert {label for _, label in layout.files['validation']} == {1, 2}


def test_linked_folders_are_followed_once(tmp_path):
  root = str(tmp_path / 'images')
  _write_class(f'{root}/cat', 0)
  _write_class(f'{tmp_path}/elsewhere/more', 0)
  os.symlink(f'{tmp_path}/elsewhere', f'{root}/cat/linked')
  os.symlink(f'{root}/cat', f'{root}/cat/sub/back_to_cat')  # A cycle.
  layout = folder_layout.read_layout(root)
  assert layout.simple
  paths = [p for p, _ in layout.files['train']]
  assert len(paths) == 8 and all(not p.count('back_to_cat') for p in paths)


def test_changed_folder_is_prepared_again_unchanged_is_reused(
    root, tmp_path, monkeypatch):
  data_dir = tmp_path / 'tfds'
  first = image_folder_lib.image_folder_builder(root, data_dir)
  assert first.data_dir.startswith(os.path.join(str(data_dir),
                                                'image_folder', 'my_photos_'))

  def must_not_prepare(*args, **kwargs):
    raise AssertionError('an unchanged folder was prepared again')
  with monkeypatch.context() as patch:
    patch.setattr(image_folder_lib.ImageFolderBuilder, '_generate_examples',
                  must_not_prepare)
    again = image_folder_lib.image_folder_builder(root, data_dir)
  assert again.data_dir == first.data_dir
  assert image_folder_lib.preparation_counts(again)['train']['skipped'] == 3

  _write(f'{root}/train/dog/new.png', _png(_pixels(8, 9, 3, 12)))
  changed = image_folder_lib.image_folder_builder(root, data_dir)
  assert changed.data_dir != first.data_dir
  assert changed.info.splits['train'].num_examples == 13
  # A new mtime alone (same names and sizes) is a change too.
  os.utime(f'{root}/train/dog/new.png', ns=(1, 1))
  touched = image_folder_lib.image_folder_builder(root, data_dir)
  assert touched.data_dir not in (first.data_dir, changed.data_dir)


def test_split_of_undecodable_files_fails_and_leaves_nothing_to_read(
    tmp_path):
  root = str(tmp_path / 'bad')
  _write_class(f'{root}/train/cat', 0)
  _write(f'{root}/test/cat/broken.jpg', b'\xff\xd8\xff garbage')
  data_dir = tmp_path / 'tfds'
  for _ in range(2):  # The failed preparation is not picked up later.
    with pytest.raises(image_folder_lib.ImageFolderError,
                       match="'test'.*no decodable images"):
      image_folder_lib.image_folder_builder(root, data_dir)


@pytest.mark.parametrize('make, message', [
    (lambda root: None, 'does not exist'),
    (lambda root: os.makedirs(root), 'has no subfolders'),
    (lambda root: os.makedirs(f'{root}/train'), "'train'.*no image files"),
    (lambda root: _write(f'{root}/train/cat/a.txt', b'x'),
     "'train'.*no image files"),
    (lambda root: _write(f'{root}/unlabeled/a/b.txt', b'x'),
     'unlabeled has no image files'),
])
def test_missing_or_empty_folder_raises_clear_error(tmp_path, make, message):
  root = str(tmp_path / 'images')
  make(root)
  with pytest.raises(image_folder_lib.ImageFolderError,
                     match=message) as error:
    image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  assert 'Expected either root/<split>/<class>/<images>' in str(error.value)
  assert isinstance(error.value, ValueError)


def test_class_missing_from_train_raises(tmp_path):
  root = str(tmp_path / 'images')
  _write_class(f'{root}/train/cat', 0)
  _write_class(f'{root}/test/cow', 0)
  with pytest.raises(image_folder_lib.ImageFolderError,
                     match=r"'test'.*\['cow'\].*'train' lacks"):
    folder_layout.read_layout(root)


def test_only_unlabeled_images_have_a_placeholder_class(tmp_path):
  root = str(tmp_path / 'pretrain_only')
  _write(f'{root}/unlabeled/a.png', _png(_pixels(8, 8, 3, 0)))
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  assert builder.info.features['label'].names == ['unlabeled']
  assert builder.info.splits['unlabeled'].num_examples == 1


def test_is_image_folder(root, tmp_path):
  assert image_folder_lib.is_image_folder(root)
  assert image_folder_lib.is_image_folder(str(tmp_path))
  assert not image_folder_lib.is_image_folder(str(tmp_path / 'missing'))
  assert not image_folder_lib.is_image_folder(f'{root}/test/cat/a.jpg')
  assert not image_folder_lib.is_image_folder('cifar10')


def test_input_pipeline_reads_the_folder(root, tmp_path):
  builder = image_folder_lib.image_folder_builder(root, tmp_path / 'tfds')
  input_fn = data_lib.build_input_fn(builder, 4, False, split='test',
                                     image_size=16, train_mode='finetune')
  batches = list(input_fn(tf.distribute.InputContext()))
  assert [b[0].shape for b in batches] == [(4, 16, 16, 3)]
  assert batches[0][1]['labels'].shape == (4, 3)
  train_fn = data_lib.build_input_fn(builder, 4, True, split='unlabeled',
                                     image_size=16, train_mode='pretrain',
                                     seed=0)
  images, _ = next(iter(train_fn(tf.distribute.InputContext())))
  assert images.shape == (4, 16, 16, 6)
