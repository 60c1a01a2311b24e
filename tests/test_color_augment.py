"""Colour distortion: one set of draws, the same images per image and batched.

The host (tf.image kernels, image by image) and the accelerator (batched
maths, augment_on_device) must be two implementations of one distribution:
the same draws give the same images, the draws follow the reference's
distributions, and their outputs agree statistically with the reference's
colour distortion written with tf.image's random ops.
"""

import functools
import itertools

import numpy as np
import pytest
from scipy import stats
import tensorflow as tf

from tf2.data import color_augment
from tf2.data import color_ops
from tf2.data import data_util


def _images(batch=16, size=8, low=0.0, high=1.0, seed=0):
  """Random colours, plus the awkward pixels of HSV maths: ties and greys."""
  rng = np.random.RandomState(seed)
  images = rng.uniform(low, high, [batch, size, size, 3]).astype(np.float32)
  images[:, 0] = np.round(images[:, 0] * 4) / 4  # Channel ties.
  images[:, 1] = images[:, 1, :, :1]  # Grey.
  return tf.constant(images)


def _one(draws, i):
  """The draws of image i, as draws of a batch of one."""
  return color_augment.ColorDraws(
      *[None if field is None else field[i:i + 1] for field in draws])


def _many(fn, count):
  """fn(seed) for `count` different seeds, stacked (via tf.data)."""
  seeds = tf.data.Dataset.range(count).map(lambda i: tf.stack([i, 3 * i + 1]))
  return next(iter(seeds.map(fn).batch(count)))


@pytest.mark.parametrize('name,tf_op,factors', [
    ('contrast', tf.image.adjust_contrast, [-0.5, 0.0, 0.2, 1.0, 1.8, 3.0]),
    ('saturation', tf.image.adjust_saturation,
     [-0.5, 0.0, 0.2, 1.0, 1.8, 3.0]),
    ('hue', tf.image.adjust_hue, [-0.9, -0.2, 0.0, 0.13, 0.2, 0.5])])
def test_batched_transforms_are_tf_image_kernels_with_a_factor_per_image(
    name, tf_op, factors):
  # Bicubic overshoot reaches the first transform: values outside [0, 1].
  images = _images(batch=len(factors), low=-0.1, high=1.1)
  out = getattr(color_ops, f'adjust_{name}')(images, tf.constant(factors))
  expected = tf.stack([tf_op(image, f) for image, f in zip(images, factors)])
  np.testing.assert_allclose(out, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize('strength,impl', [
    (1.0, 'simclrv2'), (0.5, 'simclrv1'), (0.0, 'simclrv2')])
def test_same_draws_same_images_image_by_image_and_batched(strength, impl):
  images = _images(batch=64, low=-0.05, high=1.05)
  draws = color_augment.sample_color_draws(64, [4, 2], strength, impl)
  batched = color_augment.color_distort(images, draws)
  one_by_one = tf.concat(
      [color_augment.color_distort(images[i:i + 1], _one(draws, i),
                                   color_augment.ONE_IMAGE)
       for i in range(64)], 0)
  np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5)
  changed = np.abs(batched - images).max(axis=(1, 2, 3)) > 1e-4
  np.testing.assert_array_equal(changed, draws.grayscale | (
      draws.jitter & (strength > 0)))


def test_host_jitter_is_the_distortion_of_the_draws_of_its_seed():
  image = _images(batch=1)
  for seed in ([1, 2], [5, 9], [7, 0]):
    draws = color_augment.sample_color_draws(1, seed)
    np.testing.assert_allclose(
        data_util.random_color_jitter(image[0], seed=tf.constant(seed)),
        color_augment.color_distort(image, draws)[0], rtol=0, atol=1e-5)


def _assert_uniform(values, low, high):
  assert stats.kstest(values, stats.uniform(low, high - low).cdf).pvalue > 1e-3


def _assert_fraction(flags, p):
  assert abs(np.mean(flags) - p) < 5 * np.sqrt(p * (1 - p) / len(flags))


def test_draws_follow_the_reference_distributions():
  count = 24000
  draws = color_augment.sample_color_draws(count, [3, 1])
  _assert_uniform(draws.brightness_scale, 0.2, 1.8)
  np.testing.assert_array_equal(draws.brightness_shift, 0.0)
  _assert_uniform(draws.contrast, 0.2, 1.8)
  _assert_uniform(draws.saturation, 0.2, 1.8)
  _assert_uniform(draws.hue, -0.2, 0.2)
  _assert_fraction(draws.jitter, 0.8)
  _assert_fraction(draws.grayscale, 0.2)
  permutations = {p: i for i, p in
                  enumerate(itertools.permutations(range(4)))}
  counts = np.bincount([permutations[tuple(p)] for p in draws.order.numpy()],
                       minlength=24)
  assert stats.chisquare(counts).pvalue > 1e-3
  # Independent from image to image and from transform to transform.
  bound = 5 / np.sqrt(count)
  factors = np.stack([draws.brightness_scale, draws.contrast,
                      draws.saturation, draws.hue])
  assert np.abs(np.corrcoef(factors) - np.eye(4)).max() < bound
  for factor in factors:
    assert abs(np.corrcoef(factor[1:], factor[:-1])[0, 1]) < bound


def test_simclrv1_brightness_and_strength_set_the_ranges():
  draws = color_augment.sample_color_draws(6000, [3, 1], 0.5, 'simclrv1')
  np.testing.assert_array_equal(draws.brightness_scale, 1.0)
  _assert_uniform(draws.brightness_shift, -0.4, 0.4)
  _assert_uniform(draws.contrast, 0.6, 1.4)
  _assert_uniform(draws.hue, -0.1, 0.1)


def test_zero_strength_transforms_are_skipped():
  draws = color_augment.sample_color_draws(8, [3, 1], 0.0)
  assert draws.order.shape == (8, 0)
  assert draws.brightness_scale is None and draws.contrast is None
  assert draws.saturation is None and draws.hue is None
  images = _images(batch=8, low=-0.1, high=1.1)
  out = color_augment.color_distort(images, draws._replace(
      grayscale=tf.zeros([8], tf.bool)))
  np.testing.assert_array_equal(out, images)  # Not even clipped.


def test_order_lists_the_transforms_in_the_order_applied():
  # Hue at zero strength: each order is a permutation of the other three.
  draws = color_augment.sample_color_draws(2, [3, 1])._replace(
      hue=None, order=tf.constant([[2, 0, 1], [1, 2, 0]]),
      jitter=tf.constant([True, True]), grayscale=tf.constant([False, False]))
  images = _images(batch=2)
  ops = {0: lambda x, d: color_ops.adjust_brightness(
      x, d.brightness_scale, d.brightness_shift),
         1: lambda x, d: color_ops.adjust_contrast(x, d.contrast),
         2: lambda x, d: color_ops.adjust_saturation(x, d.saturation)}
  out = color_augment.color_distort(images, draws)
  for i in range(2):
    expected, one = images[i:i + 1], _one(draws, i)
    for t in draws.order[i].numpy():
      expected = tf.clip_by_value(ops[t](expected, one), 0.0, 1.0)
    np.testing.assert_allclose(out[i:i + 1], expected, rtol=0, atol=1e-6)


def test_unknown_brightness_impl_is_an_error():
  with pytest.raises(ValueError, match='simclrv1 or simclrv2'):
    color_augment.sample_color_draws(2, [1, 2], impl='v3')
  with pytest.raises(ValueError, match='simclrv1 or simclrv2'):
    color_augment.make_augment_fn(impl='v3')


def test_host_draws_one_per_seed_follow_the_same_distributions():
  def fields(seed):
    draws = color_augment.sample_color_draws(1, seed)
    return tf.stack([draws.brightness_scale[0], draws.contrast[0],
                     draws.hue[0], tf.cast(draws.jitter[0], tf.float32),
                     tf.cast(draws.grayscale[0], tf.float32)])
  values = _many(fields, 3000).numpy()
  _assert_uniform(values[:, 0], 0.2, 1.8)
  _assert_uniform(values[:, 1], 0.2, 1.8)
  _assert_uniform(values[:, 2], -0.2, 0.2)
  _assert_fraction(values[:, 3], 0.8)
  _assert_fraction(values[:, 4], 0.2)


def _reference_distortion(image, seed):
  """The reference's colour distortion, written with tf.image's random ops.

  Jitter with p=0.8 (brightness factor in [0.2, 1.8], contrast and
  saturation in [0.2, 1.8], hue delta in [-0.2, 0.2], in a random order,
  clipped after each), then grey with p=0.2: strength 1, 'simclrv2'.
  """
  seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 7))
  transforms = [
      lambda x, s: x * tf.random.stateless_uniform([], s, 0.2, 1.8),
      lambda x, s: tf.image.stateless_random_contrast(x, 0.2, 1.8, s),
      lambda x, s: tf.image.stateless_random_saturation(x, 0.2, 1.8, s),
      lambda x, s: tf.image.stateless_random_hue(x, 0.2, s)]
  order = tf.argsort(tf.random.stateless_uniform([4], seeds[0]))
  jittered = image
  for step in range(4):
    jittered = tf.clip_by_value(tf.switch_case(
        order[step], [functools.partial(t, jittered, seeds[1 + step])
                      for t in transforms]), 0.0, 1.0)
  image = tf.where(tf.random.stateless_uniform([], seeds[5]) < 0.8, jittered,
                   image)
  grey = tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])
  return tf.where(tf.random.stateless_uniform([], seeds[6]) < 0.2, grey, image)


def _features(images, original):
  """(N, H, W, 3) -> (N, 7) per-image features whose laws the tests compare.

  Mean of each channel and pixel std (moved by every transform), mean
  max - min (saturation), and whether the image is grey or unchanged (the
  probabilities of grey and of jitter).
  """
  images = np.asarray(images, np.float64)
  spread = images.max(-1) - images.min(-1)
  unchanged = np.abs(images - np.asarray(original)).max((1, 2, 3)) < 1e-6
  return np.stack([*images.mean((1, 2)).T, images.std((1, 2, 3)),
                   spread.mean((1, 2)), spread.max((1, 2)) < 1e-6,
                   unchanged], 1)


def _assert_same_distribution(a, b):
  """Means and standard deviations of each feature within 5 standard errors."""
  for x, y in zip(a.T, b.T):
    se_mean = np.sqrt(x.var() / len(x) + y.var() / len(y))
    assert abs(x.mean() - y.mean()) < 5 * se_mean
    # Standard error of a standard deviation, from the fourth moment.
    se_std = np.sqrt(sum(np.var((v - v.mean())**2) / (4 * v.var() * len(v))
                         for v in (x, y)))
    assert abs(x.std() - y.std()) < 5 * se_std


def test_host_device_and_reference_outputs_agree_over_many_draws():
  count = 2000
  # A coloured image (orange, with noise): hue rotations move its channels.
  noise = np.random.RandomState(0).uniform(-0.15, 0.15, [8, 8, 3])
  image = tf.constant(np.clip([0.8, 0.45, 0.15] + noise, 0, 1), tf.float32)
  device = color_augment.distort_views(
      tf.repeat(image[None], count, 0), tf.constant([8, 8]))
  host = _many(lambda s: tf.clip_by_value(
      data_util.random_color_jitter(image, seed=s), 0.0, 1.0), count)
  reference = _many(lambda s: _reference_distortion(image, s), count)
  device, host, reference = (_features(x, image)
                             for x in (device, host, reference))
  assert device.std(0).min() > 0.01  # The features do vary.
  _assert_same_distribution(device, reference)
  _assert_same_distribution(host, reference)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
def test_16_bit_images_give_float32_results_to_their_rounding(dtype):
  # u: half the spacing of the dtype's numbers in [0.5, 1), the most that
  # rounding a value in [0, 1] moves it (2^-12 float16, 2^-9 bfloat16).
  u = 2.0**-12 if dtype == tf.float16 else 2.0**-9
  images = _images(batch=256, size=16)
  draws = color_augment.sample_color_draws(256, [1, 2])
  rounded = tf.cast(images, dtype)
  out = color_augment.color_distort(rounded, draws)
  assert out.dtype == dtype
  out = tf.cast(out, tf.float32).numpy()
  # The maths is float32 on the rounded input: only the output is rounded.
  on_rounded = color_augment.color_distort(tf.cast(rounded, tf.float32),
                                           draws).numpy()
  assert np.abs(out - on_rounded).max() <= u
  # Against the unrounded input, the input's rounding (<= u) goes through
  # up to four transforms, each stretching differences by ~2 at most
  # (factors <= 1.8): the error stays within 16u, and u on average.
  error = np.abs(out - color_augment.color_distort(images, draws).numpy())
  assert error.max() <= 16 * u and error.mean() <= u


def test_make_augment_fn_is_reproducible_per_step_and_replica():
  images = tf.tile(_images(batch=8, low=-0.05, high=1.05), [1, 1, 1, 2])
  augment = color_augment.make_augment_fn(seed=3)
  first = augment(images, tf.constant([10, 0]))
  assert first.shape == images.shape and first.dtype == images.dtype
  assert 0.0 <= float(tf.reduce_min(first)) <= float(
      tf.reduce_max(first)) <= 1.0
  np.testing.assert_array_equal(
      first, color_augment.make_augment_fn(seed=3)(images, [10, 0]))
  # Without XLA: the same draws, the same images to float rounding.
  np.testing.assert_allclose(
      first, color_augment.make_augment_fn(seed=3, jit_compile=False)(
          images, [10, 0]), rtol=0, atol=1e-5)
  for other in (augment(images, [11, 0]), augment(images, [10, 1]),
                color_augment.make_augment_fn(seed=4)(images, [10, 0])):
    assert np.abs(other - first).max() > 0.1
  # Both views of an image start equal; their own draws make them differ.
  views_differ = np.abs(first[..., :3] - first[..., 3:]).max(
      axis=(1, 2, 3)) > 1e-3
  assert views_differ.mean() > 0.5
