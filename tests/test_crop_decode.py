"""Decoding only the crop window: the same boxes and pixels as decode-then-crop."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf2.data import crop_decode
from tf2.data import data_util
from tf2.data import pipeline as data_lib


def _photo(height=375, width=500, channels=3, seed=0):
  """A photo-like JPEG (smooth shapes plus noise), 4:2:0 chroma."""
  rng = np.random.RandomState(seed)
  small = rng.uniform(0, 255, size=[height // 25 + 1, width // 25 + 1,
                                    channels])
  image = tf.image.resize(small, [height, width], method='bicubic')
  image += rng.normal(0, 12, size=image.shape)
  image = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
  return tf.io.encode_jpeg(image, quality=90), tf.io.decode_jpeg(
      tf.io.encode_jpeg(image, quality=90), channels=3)


_SEEDS = [tf.constant([i, 7 * i + 1], tf.int64) for i in range(12)]


@pytest.mark.parametrize('shape', [(375, 500, 3), (333, 250, 1)])
def test_same_boxes_for_the_same_seed(shape):
  encoded, decoded = _photo(*shape)
  boxes = set()
  for seed in _SEEDS:
    for size in (224, 32):
      from_header = [int(v) for v in crop_decode.crop_window(
          encoded, size, size, seed)]
      from_pixels = [int(v) for v in data_util.random_crop_window(
          tf.shape(decoded), size, size, seed)]
      assert from_header == from_pixels
      boxes.add(tuple(from_header))
  assert len(boxes) == len(_SEEDS)  # Each seed draws its own box.


@pytest.mark.parametrize('shape', [(375, 500, 3), (333, 250, 1)])
def test_same_pixels_as_decode_then_crop(shape):
  encoded, decoded = _photo(*shape)
  image = tf.image.convert_image_dtype(decoded, tf.float32)
  for seed in _SEEDS:
    window = crop_decode.crop_window(encoded, 224, 224, seed)
    # The crop itself, in uint8 levels.
    crop = crop_decode.decode_crop(encoded, window)
    reference = tf.image.crop_to_bounding_box(decoded, *window)
    np.testing.assert_array_equal(crop.numpy(), reference.numpy())
    # And resized, as the pipeline uses it.
    ours = crop_decode.decode_crop_and_resize(encoded, 224, 224, seed)
    theirs = data_util.crop_and_resize(image, 224, 224, seed)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1 / 255,
                               rtol=0)
  # Two views' windows from one decode of the box around both.
  windows = [crop_decode.crop_window(encoded, 64, 64, seed)
             for seed in _SEEDS[:2]]
  for crop, window in zip(crop_decode.decode_crops(encoded, windows),
                          windows):
    np.testing.assert_array_equal(
        crop.numpy(), tf.image.crop_to_bounding_box(decoded, *window).numpy())


def test_a_whole_training_view_matches_and_png_bytes_take_the_old_path():
  encoded, decoded = _photo()
  png = tf.io.encode_png(decoded)
  for seed in _SEEDS[:4]:
    want = data_util.preprocess_image(decoded, 64, 64, is_training=True,
                                      seed=seed)
    from_jpeg = crop_decode.preprocess_encoded_for_train(
        encoded, 64, 64, decode=tf.io.decode_png, seed=seed)
    np.testing.assert_allclose(from_jpeg.numpy(), want.numpy(),
                               atol=1 / 255, rtol=0)
    from_png = crop_decode.preprocess_encoded_for_train(
        png, 64, 64, decode=lambda b: tf.io.decode_png(b, channels=3),
        seed=seed)
    np.testing.assert_array_equal(from_png.numpy(), want.numpy())
  # Both views of a pretraining example, as the pipeline makes them.
  seeds = _SEEDS[4:6]
  views = crop_decode.preprocess_encoded_views(
      encoded, 64, 64, decode=tf.io.decode_png, seeds=seeds)
  for view, seed in zip(views, seeds):
    want = data_util.preprocess_image(decoded, 64, 64, is_training=True,
                                      seed=seed)
    np.testing.assert_allclose(view.numpy(), want.numpy(), atol=1 / 255,
                               rtol=0)


def test_the_pipeline_decodes_crops_of_an_image_folder_only(tmp_path, monkeypatch):
  """JPEGs and a PNG of a folder: the same views either way; digits not."""
  folder = tmp_path / 'photos' / 'train'
  for name in ('cat', 'dog'):
    os.makedirs(folder / name)
    for i in range(3):
      encoded, _ = _photo(120, 160, seed=i + (name == 'dog') * 10)
      tf.io.write_file(str(folder / name / f'{i}.jpg'), encoded)
  # A PNG among the JPEGs takes the dataset's decoder.
  _, decoded = _photo(100, 90, seed=99)
  tf.io.write_file(str(folder / 'cat' / 'x.png'), tf.io.encode_png(decoded))
  data_dir = str(tmp_path / 'tfds')
  builder = data_lib.get_builder(str(tmp_path / 'photos'), data_dir)
  assert data_lib.holds_jpegs(builder)
  assert not data_lib.holds_jpegs(data_lib.get_builder('digits', data_dir))
  traced = []
  real = crop_decode.decode_crops

  def counted(*args):
    traced.append(1)
    return real(*args)

  monkeypatch.setattr(crop_decode, 'decode_crops', counted)
  batches = []
  for decode_crops in (False, True):
    input_fn = data_lib.build_input_fn(
        builder, 7, True, split='train', image_size=32,
        train_mode='pretrain', seed=3, decode_crops=decode_crops)
    images, _ = next(iter(input_fn(tf.distribute.InputContext())))
    batches.append(images.numpy())
    assert bool(traced) == decode_crops  # The cropped decode is in use.
  assert batches[0].shape == (7, 32, 32, 6)  # All 7 images, PNG too.
  np.testing.assert_allclose(batches[1], batches[0], atol=1 / 255, rtol=0)
