"""The colour transforms of SimCLR's distortion, with a factor per image.

Vectorised maths on a batch (B, H, W, C) of floats in [0, 1] with one factor
per image (B,), as tf.image computes them for one image and one factor:
brightness (scale and shift), contrast (towards each image's mean grey),
saturation and hue (through HSV), and the grey conversion. No
data-dependent control flow, so every op compiles with XLA.
`color_augment.py` draws the factors and applies the transforms in each
image's random order.
"""

import functools

import tensorflow as tf


def _per_image(values, images):
  """(B,) -> (B, 1, 1, 1) in the images' dtype, to broadcast over pixels."""
  return tf.reshape(tf.cast(values, images.dtype), [-1, 1, 1, 1])


def adjust_brightness(images, scale, shift):
  """images * scale + shift per image; (B, H, W, C), scale and shift (B,)."""
  return images * _per_image(scale, images) + _per_image(shift, images)


def adjust_contrast(images, factor):
  """Contrast about each image's per-channel mean, as tf.image.adjust_contrast.

  Args:
    images: (B, H, W, C) floats.
    factor: (B,) contrast factors.

  Returns:
    (B, H, W, C): (x - mean) * factor + mean, the mean over H and W.
  """
  mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
  return (images - mean) * _per_image(factor, images) + mean


def adjust_saturation(images, factor):
  """HSV saturation times factor, clipped to [0, 1], as tf.image's kernel.

  In HSV a channel is c = v - v * s * g(hue), with value v the pixel's
  maximum and g in [0, 1]; hue and value stay, so scaling s to
  s' = clip(s * factor, 0, 1) gives c' = v - (v - c) * s' / s, where
  s' / s = max(min(factor, 1 / s), 0) and 1 / s = v / (v - min). Grey
  pixels (v = min) and pixels with v <= 0 (s = 0 in tf.image) keep v.

  Args:
    images: (B, H, W, 3) floats.
    factor: (B,) saturation factors.

  Returns:
    (B, H, W, 3).
  """
  value = tf.reduce_max(images, axis=-1, keepdims=True)
  minimum = tf.reduce_min(images, axis=-1, keepdims=True)
  ratio = tf.minimum(_per_image(factor, images),
                     tf.math.divide_no_nan(value, value - minimum))
  return value + (images - value) * tf.maximum(ratio, 0.0)


def adjust_hue(images, delta):
  """Rotates the HSV hue by delta (mod 1), as tf.image.adjust_hue.

  RGB -> (hue h in [0, 1), value v, chroma C = v - min); h += delta; back
  with the HSV formula: channel n (5 red, 3 green, 1 blue) is
  v - C * clip(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6.

  Args:
    images: (B, H, W, 3) floats.
    delta: (B,) hue offsets.

  Returns:
    (B, H, W, 3).
  """
  red, green, blue = tf.unstack(images, axis=-1)
  value = tf.reduce_max(images, axis=-1)
  chroma = value - tf.reduce_min(images, axis=-1)
  safe_chroma = tf.where(chroma > 0, chroma, tf.ones_like(chroma))
  # Hue in sixths of a turn, measured from the largest channel.
  sixths = tf.where(
      value == red, (green - blue) / safe_chroma,
      tf.where(value == green, (blue - red) / safe_chroma + 2.0,
               (red - green) / safe_chroma + 4.0))
  hue = sixths / 6.0 + _per_image(delta, images)[..., 0]
  hue -= tf.floor(hue)
  channels = []
  for n in (5.0, 3.0, 1.0):
    k = tf.math.floormod(n + 6.0 * hue, 6.0)
    channels.append(value - chroma * tf.clip_by_value(tf.minimum(k, 4.0 - k),
                                                      0.0, 1.0))
  return tf.stack(channels, axis=-1)


def to_grayscale(images):
  """(..., 3) RGB -> (..., 3): tf.image.rgb_to_grayscale on each channel."""
  return tf.broadcast_to(tf.image.rgb_to_grayscale(images), tf.shape(images))


def in_float32(fn):
  """Runs fn(images, ...) in float32 for 16-bit images; returns their dtype.

  Augmentations are elementwise or tiny convolutions, so a cast each way
  costs little next to the network, and the maths (the HSV conversion
  divides by the chroma) keeps float32 precision under mixed precision.
  """

  @functools.wraps(fn)
  def wrapper(images, *args, **kwargs):
    dtype = images.dtype
    if dtype not in (tf.float16, tf.bfloat16):
      return fn(images, *args, **kwargs)
    return tf.cast(fn(tf.cast(images, tf.float32), *args, **kwargs), dtype)

  return wrapper
