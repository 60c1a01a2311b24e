"""SimCLR augmentations: eval preprocessing exact, training views in range."""

import numpy as np
import pytest
from scipy import ndimage
import tensorflow as tf

from tf2.data import blur
from tf2.data import data_util


def _image(height=20, width=30, channels=3, seed=0):
  rng = np.random.RandomState(seed)
  return tf.constant(rng.randint(0, 256, [height, width, channels]),
                     tf.uint8)


def _many(fn, count):
  """fn(seed) for `count` different seeds, stacked (fast, via tf.data)."""
  seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([i, i + 7]))
  return next(iter(seeds.map(fn).batch(count))).numpy()


@pytest.mark.parametrize('i', [0, 1, 2, 3])
def test_eval_preprocessing_matches_reference(reference_ops, i):
  expected = reference_ops[f'eval_pre{i}/output']
  out = data_util.preprocess_image(
      tf.constant(reference_ops[f'eval_pre{i}/image']), expected.shape[0],
      expected.shape[1], is_training=False,
      test_crop=bool(reference_ops[f'eval_pre{i}/crop']))
  np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize('color_distort', [True, False])
@pytest.mark.parametrize('channels', [1, 3, 4])
def test_training_view_is_rgb_in_unit_range(channels, color_distort):
  out = data_util.preprocess_image(_image(channels=channels), 16, 12,
                                   is_training=True,
                                   color_distort=color_distort)
  assert out.shape == (16, 12, 3) and out.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(out)) <= float(tf.reduce_max(out)) <= 1.0


def test_grayscale_input_is_replicated_and_alpha_dropped():
  rgb = _image()
  grey = data_util.preprocess_image(rgb[..., :1], 8, 8).numpy()
  np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  rgba = tf.concat([rgb, _image(channels=1, seed=1)], -1)
  np.testing.assert_array_equal(data_util.preprocess_image(rgba, 8, 8),
                                data_util.preprocess_image(rgb, 8, 8))


def test_unknown_channel_count_is_handled_in_the_graph():
  png = tf.io.encode_png(_image(channels=1))
  decode = tf.function(
      lambda x: data_util.preprocess_image(tf.io.decode_image(x), 8, 8),
      input_signature=[tf.TensorSpec([], tf.string)])
  assert decode(png).shape == (8, 8, 3)


def test_same_seed_same_view_other_seed_other_view():
  image = _image()
  def view(seed):
    return data_util.preprocess_image(image, 16, 16, is_training=True,
                                      seed=tf.constant(seed)).numpy()
  np.testing.assert_array_equal(view([1, 2]), view([1, 2]))
  assert np.abs(view([1, 2]) - view([1, 3])).max() > 0.1


def test_without_color_distortion_a_plain_colour_stays_that_colour():
  # Crop, flip and resize cannot change a uniform image; colour jitter and
  # grayscale do.
  image = tf.fill([20, 30, 3], tf.constant(1, tf.uint8)) * tf.constant(
      [200, 40, 90], tf.uint8)
  def views(color_distort):
    return _many(lambda s: data_util.preprocess_image(
        image, 8, 8, is_training=True, color_distort=color_distort, seed=s),
                 20)
  np.testing.assert_allclose(views(False),
                             np.broadcast_to([200 / 255, 40 / 255, 90 / 255],
                                             (20, 8, 8, 3)), atol=1e-6)
  changed = np.abs(views(True) - views(False)).max(axis=(1, 2, 3)) > 1e-3
  assert changed.mean() > 0.5  # 0.84 expected: jitter 0.8 or grey 0.2.


def test_grayscale_is_applied_to_about_one_view_in_five():
  # With strength 0 the colour jitter is the identity, so a view is grey
  # exactly when the random grayscale fired.
  image = _image(channels=3)
  views = _many(lambda s: data_util.random_color_jitter(
      tf.image.convert_image_dtype(image, tf.float32), strength=0.0,
      seed=s), 500)
  grey = np.all(views == views[..., :1], axis=(1, 2, 3))
  assert 0.12 < grey.mean() < 0.28


def test_colour_jitter_changes_about_four_views_in_five():
  image = tf.image.convert_image_dtype(_image(), tf.float32)
  views = _many(lambda s: data_util.random_color_jitter(image, seed=s), 500)
  changed = np.abs(views - image.numpy()).max(axis=(1, 2, 3)) > 1e-6
  # Jitter (0.8) or grayscale (0.2) fires: 1 - 0.2 * 0.8 = 0.84.
  assert 0.76 < changed.mean() < 0.92


@pytest.mark.parametrize('impl,black_stays_black', [('simclrv2', True),
                                                     ('simclrv1', False)])
def test_brightness_is_multiplicative_in_v2_additive_in_v1(
    impl, black_stays_black):
  black = tf.zeros([4, 4, 3])
  out = _many(lambda s: data_util.random_brightness(black, 0.8, s, impl), 20)
  assert np.all(out == 0) == black_stays_black
  assert np.abs(out).max() <= 0.8


def test_unknown_brightness_impl_is_an_error():
  with pytest.raises(ValueError, match='simclrv1 or simclrv2'):
    data_util.random_brightness(tf.zeros([2, 2, 3]), 0.5, [1, 2], 'v3')


@pytest.mark.parametrize('height,width', [(16, 16), (16, 32)])
def test_random_crop_window_area_and_aspect_ratio(height, width):
  image_shape = tf.constant([60, 90, 3])
  windows = _many(lambda s: tf.stack(data_util.random_crop_window(
      image_shape, height, width, s)), 300).astype(float)
  offset_y, offset_x, crop_height, crop_width = windows.T
  area = crop_height * crop_width / (60 * 90)
  assert area.min() >= 0.08 - 0.005 and area.max() <= 1.0
  assert area.min() < 0.2 and area.max() > 0.8  # The whole range is used.
  # Rounding to whole pixels moves the ratio slightly past its bounds.
  relative_aspect = crop_width / crop_height / (width / height)
  assert relative_aspect.min() > 0.75 * 0.9
  assert relative_aspect.max() < 4 / 3 * 1.1
  assert np.all(offset_y + crop_height <= 60)
  assert np.all(offset_x + crop_width <= 90)


def test_random_crop_falls_back_to_the_whole_image():
  # A 2 x 200 strip has no window of 8% of its area with an aspect ratio
  # near 1, so every attempt fails.
  window = data_util.random_crop_window(tf.constant([2, 200, 3]), 8, 8,
                                        tf.constant([1, 2]))
  assert [int(v) for v in window] == [0, 0, 2, 200]
  strip = tf.random.uniform([2, 200, 3])
  assert data_util.crop_and_resize(strip, 8, 8, [1, 2]).shape == (8, 8, 3)


def test_gaussian_blur_is_a_separable_zero_padded_gaussian():
  images = np.random.RandomState(0).uniform(size=[2, 12, 12, 3]).astype(
      np.float32)
  sigma = 1.3
  x = np.arange(-2, 3)
  kernel = np.exp(-x**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  expected = ndimage.convolve(images, np.outer(kernel, kernel)[None, :, :,
                                                              None],
                              mode='constant')
  out = blur.gaussian_blur(tf.constant(images), 4, sigma)
  np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


def test_batch_blur_keeps_shape_and_blurs_only_selected_images():
  images = tf.constant(np.random.RandomState(0).uniform(
      size=[64, 32, 32, 3]).astype(np.float32))
  always, never = (
      blur.batch_random_blur([images], 32, 32, blur_probability=p)[0]
      for p in (1.0, 0.0))
  assert always.shape == images.shape
  np.testing.assert_array_equal(never, images)
  # Blurring noise lowers its variance.
  assert float(tf.math.reduce_std(always)) < float(
      tf.math.reduce_std(images))
  # The blur draws from the global RNG; a seed avoids the rare sigma near
  # 0.1, whose kernel rounds to the identity in float32.
  tf.random.set_seed(0)
  half, = blur.batch_random_blur([images], 32, 32)
  blurred = np.abs(half - images).max(axis=(1, 2, 3)) > 0
  assert 10 < blurred.sum() < 54


def test_batch_blur_is_identity_below_20_pixels():
  images = tf.random.uniform([4, 16, 16, 3])
  out, = blur.batch_random_blur([images], 16, 16, blur_probability=1.)
  np.testing.assert_allclose(out, images, atol=1e-7)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_blur_of_16_bit_images_is_the_float32_blur_to_their_rounding(dtype):
  # Mixed precision hands the model's blur float16 or bfloat16 images. The
  # blur is a weighted mean (weights >= 0, sum <= 1), so rounding the input
  # moves it by at most u, and rounding the output by u more; u is half the
  # spacing of the dtype's numbers in [0.5, 1): 2^-12 (float16), 2^-9.
  u = 2.0**-12 if dtype == tf.float16 else 2.0**-9
  images = tf.random.stateless_uniform([2, 24, 24, 3], [1, 2])
  out = blur.gaussian_blur(tf.cast(images, dtype), 5, 1.3)
  assert out.dtype == dtype
  np.testing.assert_allclose(tf.cast(out, tf.float32),
                             blur.gaussian_blur(images, 5, 1.3),
                             rtol=0, atol=2 * u)
  blurred, = blur.batch_random_blur([tf.cast(images, dtype)], 24, 24)
  assert blurred.dtype == dtype
