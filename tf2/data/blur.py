"""The batch Gaussian blur of SimCLR's pretraining views.

The reference blurs after batching (its `batch_random_blur`), inside the
model's call when pretraining and in the memory buffer's encoder: one sigma
per batch, a blur decision per image. Split from `data_util.py`, which holds
the per-image host augmentations.
"""

import tensorflow as tf

from tf2.data import color_ops
from tf2.data import data_util


@color_ops.in_float32
def gaussian_blur(images, kernel_size, sigma):
  """Separable Gaussian blur with zero ('SAME') padding.

  Args:
    images: (B, H, W, C) floats; float16 and bfloat16 (mixed precision) are
      blurred in float32.
    kernel_size: int; the kernel has 2 * (kernel_size // 2) + 1 taps (an
      even size grows by one, as in the reference).
    sigma: scalar standard deviation in pixels.

  Returns:
    (B, H, W, C) in the images' dtype.
  """
  radius = kernel_size // 2
  x = tf.cast(tf.range(-radius, radius + 1), images.dtype)
  sigma = tf.cast(sigma, images.dtype)
  kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
  kernel /= tf.reduce_sum(kernel)
  channels = tf.shape(images)[-1]
  horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
  vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
  images = tf.nn.depthwise_conv2d(images, horizontal, [1, 1, 1, 1], 'SAME')
  return tf.nn.depthwise_conv2d(images, vertical, [1, 1, 1, 1], 'SAME')


def _uniform(shape, seed, minval=0.0, maxval=1.0):
  """Stateless uniform draws from `seed`, or the global generator's."""
  if seed is None:
    return tf.random.uniform(shape, minval, maxval)
  return tf.random.stateless_uniform(shape, seed, minval, maxval)


def batch_random_blur(images_list, height, width, blur_probability=0.5,
                      seed=None):
  """Blurs each image of each batch with probability `blur_probability`.

  As in the reference: the kernel spans 10% of the image height, one sigma
  uniform in [0.1, 2.0] is drawn per batch (the reference blurs the batch
  tensor in one call), and whether an image is blurred is decided per image.
  Below 20 px the kernel has a single tap and the blur is the identity.

  Args:
    images_list: list of (B, H, W, 3) float batches in [0, 1] (one per view).
    height: image height (sets the kernel size).
    width: image width (unused, as in the reference).
    blur_probability: probability of blurring each image.
    seed: optional (2,) stateless seed, so that a seeded run's blur is a
      function of its step (reproducibility.py); None draws from
      TensorFlow's global generator, as the reference.

  Returns:
    list of (B, H, W, 3) floats in [0, 1], one per input batch.
  """
  del width
  seeds = ([None] * 2 * len(images_list) if seed is None else
           data_util.split_seed(seed, 2 * len(images_list)))
  outputs = []
  for i, images in enumerate(images_list):
    sigma = _uniform([], seeds[2 * i], 0.1, 2.0)
    blurred = gaussian_blur(images, height // 10, sigma)
    selected = _uniform([tf.shape(images)[0], 1, 1, 1], seeds[2 * i + 1]) < (
        blur_probability)
    mixed = tf.where(selected, blurred, images)
    outputs.append(tf.clip_by_value(mixed, 0., 1.))
  return outputs
