"""SimCLR colour distortion from explicit random draws, per image or batched.

The colour distortion of a pretraining view is that of the reference
(google-research/simclr, `tf2/data_util.py`): with probability 0.8 a colour
jitter -- brightness, contrast, saturation and hue in a random order, the
image clipped to [0, 1] after each -- then with probability 0.2 a conversion
to grey. Strength s gives maximal changes of 0.8s (brightness, contrast,
saturation) and 0.2s (hue); a transform of zero strength is skipped.

The randomness is kept apart from the maths: `sample_color_draws` draws every
random number of B images (`ColorDraws`: per-image factors, order and flags)
from one stateless seed, and `color_distort` applies given draws with one of
two back ends, which give the same images for the same draws (within float
rounding; tests/test_color_augment.py):

- `ONE_IMAGE`: tf.image's fused kernels on a batch of one image, running
  only the branch each draw selects. The host pipeline uses it
  (`data_util.random_color_jitter`): those kernels take one scalar factor,
  and on a CPU they are faster than the composed maths below (3x for hue,
  4x for contrast on a 224 px image).
- `BATCHED`: vectorised maths with a factor per image, for the accelerator
  (`augment_on_device`). Every transform is computed at every step of the
  random order and selected per image: no data-dependent control flow, so
  it also compiles with XLA (TPUs).

`make_augment_fn` builds the train step's hook for `augment_on_device`: the
host crops, resizes and flips (the published crop boxes), the accelerator
distorts the colours of the whole batch at once, optionally compiled with
XLA (benchmarks/input_pipeline.py measures both).
"""

import functools
from typing import Callable, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from tf2.data import color_ops
from tf2.runtime import reproducibility

TRANSFORMS = ('brightness', 'contrast', 'saturation', 'hue')
# The ColorDraws field that is None when a transform has zero strength.
_FIELDS = ('brightness_scale', 'contrast', 'saturation', 'hue')
BRIGHTNESS_IMPLS = ('simclrv2', 'simclrv1')
JITTER_PROBABILITY = 0.8
GRAYSCALE_PROBABILITY = 0.2


class ColorDraws(NamedTuple):
  """Every random number of the colour distortion of B images.

  The factors of a transform of zero strength are None, and the transform
  is absent from `order`.

  Attributes:
    brightness_scale: (B,) multiplier: uniform in [max(1 - 0.8s, 0), 1 + 0.8s]
      for 'simclrv2', 1 for 'simclrv1'.
    brightness_shift: (B,) offset: uniform in [-0.8s, 0.8s] for 'simclrv1',
      0 for 'simclrv2'.
    contrast: (B,) factor, uniform in [1 - 0.8s, 1 + 0.8s].
    saturation: (B,) factor, uniform in [1 - 0.8s, 1 + 0.8s].
    hue: (B,) delta, uniform in [-0.2s, 0.2s].
    order: (B, n) int32: per image, a uniformly random permutation of the
      indices (in TRANSFORMS) of the n transforms of non-zero strength.
    jitter: (B,) bool: apply the colour jitter (probability 0.8).
    grayscale: (B,) bool: convert to grey afterwards (probability 0.2).
  """
  brightness_scale: Optional[tf.Tensor]
  brightness_shift: Optional[tf.Tensor]
  contrast: Optional[tf.Tensor]
  saturation: Optional[tf.Tensor]
  hue: Optional[tf.Tensor]
  order: tf.Tensor
  jitter: tf.Tensor
  grayscale: tf.Tensor


def check_impl(impl):
  """Raises ValueError unless impl names a brightness implementation."""
  if impl not in BRIGHTNESS_IMPLS:
    raise ValueError(f'Unknown color jitter impl {impl!r}: use simclrv1 or '
                     'simclrv2.')


def sample_brightness(batch_size, max_delta, seed, impl='simclrv2'):
  """Per-image brightness (scale, shift), each (B,) float32.

  Args:
    batch_size: B.
    max_delta: strength of the change.
    seed: (2,) stateless seed.
    impl: 'simclrv2' multiplies by a factor uniform in
      [max(1 - max_delta, 0), 1 + max_delta]; 'simclrv1' adds a delta
      uniform in [-max_delta, max_delta].
  """
  check_impl(impl)
  if impl == 'simclrv2':
    return tf.random.stateless_uniform(
        [batch_size], seed, minval=max(1.0 - max_delta, 0.0),
        maxval=1.0 + max_delta), tf.zeros([batch_size])
  return tf.ones([batch_size]), tf.random.stateless_uniform(
      [batch_size], seed, minval=-max_delta, maxval=max_delta)


def sample_color_draws(batch_size, seed, strength=1.0, impl='simclrv2'):
  """Draws the colour distortion of B images from one seed.

  Args:
    batch_size: B (int or scalar tensor).
    seed: (2,) int stateless seed.
    strength: colour jitter strength s (a Python number: zero-strength
      transforms are left out of the graph).
    impl: 'simclrv2' (multiplicative) or 'simclrv1' (additive) brightness.

  Returns:
    ColorDraws of B images, independent from image to image.
  """
  check_impl(impl)
  deltas = dict(brightness=0.8 * strength, contrast=0.8 * strength,
                saturation=0.8 * strength, hue=0.2 * strength)
  seeds = dict(zip(('jitter', 'grayscale', 'order') + TRANSFORMS,
                   tf.unstack(tf.random.experimental.stateless_split(seed,
                                                                     7))))

  def uniform(name, low, high):
    return tf.random.stateless_uniform([batch_size], seeds[name], low, high)

  factors = dict(brightness_scale=None, brightness_shift=None)
  if deltas['brightness']:
    factors['brightness_scale'], factors['brightness_shift'] = (
        sample_brightness(batch_size, deltas['brightness'],
                          seeds['brightness'], impl))
  for name in ('contrast', 'saturation'):
    factors[name] = (uniform(name, 1.0 - deltas[name], 1.0 + deltas[name])
                     if deltas[name] else None)
  factors['hue'] = (uniform('hue', -deltas['hue'], deltas['hue'])
                    if deltas['hue'] else None)
  active = [i for i, name in enumerate(TRANSFORMS) if deltas[name]]
  # argsort of i.i.d. uniforms is a uniformly random permutation.
  keys = tf.random.stateless_uniform([batch_size, len(active)],
                                     seeds['order'])
  order = tf.gather(tf.constant(active, tf.int32), tf.argsort(keys, axis=-1))
  return ColorDraws(
      order=order,
      jitter=tf.random.stateless_uniform([batch_size], seeds['jitter']) <
      JITTER_PROBABILITY,
      grayscale=tf.random.stateless_uniform([batch_size], seeds['grayscale'])
      < GRAYSCALE_PROBABILITY,
      **factors)


def _select_per_image(index, branches):
  """Per image, the branch named by its index; every branch is computed.

  Args:
    index: (B,) int, each a key of `branches`.
    branches: {key: () -> (B, H, W, C)}.

  Returns:
    (B, H, W, C).
  """
  keys = sorted(branches)
  out = branches[keys[0]]()
  for key in keys[1:]:
    out = tf.where(tf.reshape(index == key, [-1, 1, 1, 1]), branches[key](),
                   out)
  return out


def _select_first(index, branches):
  """The branch named by index[0] (a batch of one); only it is run."""
  return tf.switch_case(index[0], branches)


class Backend(NamedTuple):
  """How `color_distort` selects per image and computes each transform.

  Attributes:
    select: (index (B,) int, {key: () -> images}) -> images.
    brightness, contrast, saturation, hue: (images, ColorDraws) -> images.
  """
  select: Callable
  brightness: Callable
  contrast: Callable
  saturation: Callable
  hue: Callable


def _brightness(images, draws):
  return color_ops.adjust_brightness(images, draws.brightness_scale,
                           draws.brightness_shift)


BATCHED = Backend(
    select=_select_per_image, brightness=_brightness,
    contrast=lambda x, d: color_ops.adjust_contrast(x, d.contrast),
    saturation=lambda x, d: color_ops.adjust_saturation(x, d.saturation),
    hue=lambda x, d: color_ops.adjust_hue(x, d.hue))

ONE_IMAGE = Backend(
    select=_select_first, brightness=_brightness,
    contrast=lambda x, d: tf.image.adjust_contrast(x, d.contrast[0]),
    saturation=lambda x, d: tf.image.adjust_saturation(x, d.saturation[0]),
    hue=lambda x, d: tf.image.adjust_hue(x, d.hue[0]))


def _jitter(images, draws, backend):
  """The transforms in each image's order, clipping to [0, 1] after each."""
  active = [i for i, field in enumerate(_FIELDS)
            if getattr(draws, field) is not None]
  for step in range(draws.order.shape[1]):
    branches = {i: functools.partial(getattr(backend, TRANSFORMS[i]), images,
                                     draws) for i in active}
    images = tf.clip_by_value(backend.select(draws.order[:, step], branches),
                              0.0, 1.0)
  return images


@color_ops.in_float32
def color_distort(images, draws, backend=BATCHED):
  """Colour jitter where `draws.jitter`, then grey where `draws.grayscale`.

  Args:
    images: (B, H, W, 3) floats (float16 and bfloat16 are computed in
      float32); B = 1 for the ONE_IMAGE back end.
    draws: ColorDraws of B images.
    backend: BATCHED (vectorised) or ONE_IMAGE (tf.image kernels).

  Returns:
    (B, H, W, 3) in the images' dtype; jittered images are in [0, 1], the
    others are not clipped here.
  """
  jitter = functools.partial(_jitter, images, draws, backend)
  jittered = backend.select(tf.cast(draws.jitter, tf.int32),
                            {0: lambda: images, 1: jitter})
  return backend.select(tf.cast(draws.grayscale, tf.int32),
                        {0: lambda: jittered,
                         1: lambda: color_ops.to_grayscale(jittered)})


# color_distort compiled with XLA: its ~300 elementwise ops fused into a few
# kernels. Only the maths: XLA draws other random numbers from the same seed.
_color_distort_xla = tf.function(color_distort, jit_compile=True)


def distort_views(images, seed, strength=1.0, impl='simclrv2',
                  jit_compile=False):
  """Colour distortion of every view of a batch, each with its own draws.

  This is the part of the host's `preprocess_for_train` that
  `augment_on_device` moves to the accelerator: colour distortion, then the
  final clip to [0, 1].

  Args:
    images: (B, H, W, 3k) views concatenated on channels (pretraining:
      k = 2), cropped, resized and flipped, not clipped.
    seed: (2,) stateless seed of this batch.
    strength: colour jitter strength s.
    impl: 'simclrv2' or 'simclrv1' brightness.
    jit_compile: compile the colour maths with XLA (the draws are the same
      either way, the images equal within float rounding).

  Returns:
    (B, H, W, 3k) in [0, 1], in the images' dtype.
  """
  views = images.shape[-1] // 3
  stacked = tf.concat(tf.split(images, views, axis=-1), 0)  # (kB, H, W, 3)
  draws = sample_color_draws(tf.shape(stacked)[0], seed, strength, impl)
  distort = _color_distort_xla if jit_compile else color_distort
  stacked = tf.clip_by_value(distort(stacked, draws), 0.0, 1.0)
  return tf.concat(tf.split(stacked, views, axis=0), -1)


def make_augment_fn(strength=1.0, impl='simclrv2', seed=None,
                    jit_compile=True):
  """The train step's hook of `augment_on_device` (training.make_train_step).

  Args:
    strength: colour jitter strength s (run.py's --color_jitter_strength).
    impl: 'simclrv2' or 'simclrv1' brightness.
    seed: int run seed, or None for one drawn now (from numpy's global
      RNG): with a seed, a run (and a resumed run) repeats its draws.
    jit_compile: compile the colour maths with XLA even when the train step
      is not (GPUs: without it, each of its ~300 elementwise ops reads and
      writes the whole batch). Redundant on TPUs, where all is compiled.

  Returns:
    augment_fn(images, step_seed) -> images: `distort_views` with a seed
    that folds the run seed and `step_seed` together. step_seed is (2,)
    int: the train step passes (global step, replica id), so every step and
    every replica draws differently.
  """
  check_impl(impl)
  if seed is None:
    seed = np.random.randint(2**31 - 1)

  def augment_fn(images, step_seed):
    key = reproducibility.step_key(seed, reproducibility.AUGMENT, step_seed)
    return distort_views(images, key, strength, impl, jit_compile)

  return augment_fn
