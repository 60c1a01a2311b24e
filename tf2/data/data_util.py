"""SimCLR image augmentations (one (H, W, C) image unless noted).

The distributions are those of the reference (google-research/simclr,
`tf2/data_util.py`): Inception-style random crop resized bicubically, random
horizontal flip, colour jitter (p=0.8, the four transforms in random order),
random grayscale (p=0.2), and a Gaussian blur applied batch-wise by the model
in pretraining (`blur.py`). Evaluation takes a centre crop of 0.875 (images above 32 px),
resizes bicubically and matches the reference to float rounding.

The random ops are stateless twins of the ones the reference calls (same
kernels, same distributions) so that a pipeline given a seed is
reproducible. Every random function takes a `seed` of shape (2,)
int32/int64; `preprocess_image` draws one when none is given. The colour
distortion's draws and maths are in `color_augment`, which also applies them
to whole batches on the accelerator (`augment_on_device`).

Differences from the reference, on purpose:
- `color_jitter_strength` and `impl` are arguments (the reference read
  `FLAGS.color_jitter_strength` inside `preprocess_for_train`).
- 1-channel (grayscale) images are replicated to 3 channels and 4-channel
  (RGBA) images lose alpha before anything else.
- `preprocess_for_eval(crop=False)` resizes to (height, width); the reference
  only reshaped, which works solely for images already of that size (it is
  the identity for those, e.g. CIFAR at 32 px) and fails for the 8 px digits
  at larger sizes.
- The fixed-order colour jitter of the reference (`color_jitter_nonrand`)
  is not kept: nothing in the reference pipeline used it.
"""

import tensorflow as tf

from tf2.data import color_augment
from tf2.data import color_ops

CROP_PROPORTION = 0.875  # Standard for ImageNet evaluation.
_INT32_MAX = 2**31 - 1


def new_seed():
  """A fresh stateless seed, shape (2,) int32, from the global RNG."""
  return tf.random.uniform([2], maxval=_INT32_MAX, dtype=tf.int32)


def split_seed(seed, num):
  """`num` independent seeds derived from one, as a list of (2,) tensors."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def random_brightness(image, max_delta, seed, impl='simclrv2'):
  """Random brightness change (`color_augment.sample_brightness`).

  Args:
    image: (H, W, 3) floats.
    max_delta: strength of the change.
    seed: (2,) stateless seed.
    impl: 'simclrv2' multiplies by a factor uniform in
      [max(1 - max_delta, 0), 1 + max_delta]; 'simclrv1' adds a delta
      uniform in [-max_delta, max_delta].

  Returns:
    (H, W, 3) floats, not clipped.
  """
  scale, shift = color_augment.sample_brightness(1, max_delta, seed, impl)
  return color_ops.adjust_brightness(image[None], scale, shift)[0]


def random_color_jitter(image, strength=1.0, impl='simclrv2', seed=None):
  """Colour jitter with probability 0.8, then grayscale with probability 0.2.

  The draws and their application are `color_augment`'s, on tf.image's
  kernels (its ONE_IMAGE back end); `augment_on_device` applies the same
  distortion to whole batches on the accelerator.

  Args:
    image: (H, W, 3) floats in [0, 1] (bicubic overshoot allowed).
    strength: colour jitter strength s: the maximal changes are 0.8s
      (brightness, contrast, saturation) and 0.2s (hue).
    impl: 'simclrv2' (multiplicative) or 'simclrv1' (additive) brightness.
    seed: (2,) stateless seed, or None for a fresh one.

  Returns:
    (H, W, 3) floats; in [0, 1] where the jitter was applied.
  """
  seed = new_seed() if seed is None else seed
  draws = color_augment.sample_color_draws(1, seed, strength, impl)
  return color_augment.color_distort(image[None], draws,
                                     color_augment.ONE_IMAGE)[0]


def _compute_crop_shape(image_height, image_width, aspect_ratio,
                        crop_proportion):
  """Centred crop of `aspect_ratio` (width / height), scaled down.

  Keeps `crop_proportion` of the less-cropped side and at most that of the
  other one.

  Returns:
    (crop_height, crop_width) int32 scalars.
  """
  width = tf.cast(image_width, tf.float32)
  height = tf.cast(image_height, tf.float32)

  def requested_wider_than_image():
    return (tf.cast(tf.math.rint(crop_proportion / aspect_ratio * width),
                    tf.int32),
            tf.cast(tf.math.rint(crop_proportion * width), tf.int32))

  def image_wider_than_requested():
    return (tf.cast(tf.math.rint(crop_proportion * height), tf.int32),
            tf.cast(tf.math.rint(crop_proportion * aspect_ratio * height),
                    tf.int32))

  return tf.cond(aspect_ratio > width / height, requested_wider_than_image,
                 image_wider_than_requested)


def _resize_bicubic(image, height, width):
  return tf.image.resize(image, [height, width],
                         method=tf.image.ResizeMethod.BICUBIC)


def center_crop(image, height, width, crop_proportion):
  """Centre crop of the output's aspect ratio, bicubic-resized.

  Args:
    image: (H, W, C) floats.
    height: output height.
    width: output width.
    crop_proportion: fraction kept along the less-cropped side.

  Returns:
    (height, width, C) floats (bicubic overshoot is not clipped here).
  """
  shape = tf.shape(image)
  crop_height, crop_width = _compute_crop_shape(
      shape[0], shape[1], width / height, crop_proportion)
  # +1 puts the extra pixel of an odd margin at the top/left, as the
  # reference (and the goldens) do.
  offset_height = (shape[0] - crop_height + 1) // 2
  offset_width = (shape[1] - crop_width + 1) // 2
  image = tf.image.crop_to_bounding_box(image, offset_height, offset_width,
                                        crop_height, crop_width)
  return _resize_bicubic(image, height, width)


def random_crop_window(image_shape, height, width, seed):
  """An Inception-style random crop window for an output of height x width.

  The window covers 8% to 100% of the image, with an aspect ratio
  (width / height) within [3/4, 4/3] times the output's; after 100 failed
  attempts it is the whole image (tf.image.sample_distorted_bounding_box).

  Args:
    image_shape: (3,) int, the image's (H, W, C).
    height: output height.
    width: output width.
    seed: (2,) stateless seed.

  Returns:
    (offset_y, offset_x, crop_height, crop_width) int32 scalars.
  """
  aspect_ratio = width / height
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_shape, bounding_boxes=tf.constant([[[0., 0., 1., 1.]]]),
      seed=seed, min_object_covered=0.1,
      aspect_ratio_range=(3. / 4 * aspect_ratio, 4. / 3 * aspect_ratio),
      area_range=(0.08, 1.0), max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  return begin[0], begin[1], size[0], size[1]


def crop_and_resize(image, height, width, seed):
  """A `random_crop_window` crop, bicubic-resized to (height, width).

  Args:
    image: (H, W, C) floats.
    height: output height.
    width: output width.
    seed: (2,) stateless seed.

  Returns:
    (height, width, C) floats.
  """
  window = random_crop_window(tf.shape(image), height, width, seed)
  return _resize_bicubic(tf.image.crop_to_bounding_box(image, *window),
                         height, width)


def to_rgb(image):
  """Gives an image 3 channels: grey is replicated, alpha dropped.

  Args:
    image: (H, W, C) with C in {1, 2 (grey + alpha), 3, 4 (RGBA)}.

  Returns:
    (H, W, 3) of the same dtype.
  """
  channels = image.shape[-1]
  if channels is None:
    # Unknown until run time (e.g. tf.io.decode_image): decide in the graph.
    return tf.cond(tf.shape(image)[-1] < 3,
                   lambda: tf.tile(image[..., :1], [1, 1, 3]),
                   lambda: image[..., :3])
  if channels in (1, 2):
    return tf.tile(image[..., :1], [1, 1, 3])
  if channels in (3, 4):
    return image[..., :3]
  raise ValueError(f'Images need 1 to 4 channels, got shape {image.shape}.')


def preprocess_for_train(image, height, width, color_distort=True, crop=True,
                         flip=True, *, color_jitter_strength=1.0,
                         impl='simclrv2', seed=None, clip=True):
  """Random crop, flip and colour distortion of one training view.

  Args:
    image: (H, W, 3) floats in [0, 1].
    height: output height.
    width: output width.
    color_distort: apply `random_color_jitter` (pretraining views).
    crop: apply the random crop (else the image must be height x width).
    flip: apply a random horizontal flip.
    color_jitter_strength: strength s of the colour jitter.
    impl: 'simclrv2' or 'simclrv1' brightness.
    seed: (2,) stateless seed, or None for a fresh one.
    clip: clip to [0, 1]. False (with color_distort=False) leaves the
      bicubic overshoot to a colour distortion applied later
      (`augment_on_device`), which then sees the pixels this one would and
      clips at the end.

  Returns:
    (height, width, 3) floats, in [0, 1] if clipped.
  """
  seed = new_seed() if seed is None else seed
  crop_seed, flip_seed, color_seed = split_seed(seed, 3)
  if crop:
    image = crop_and_resize(image, height, width, crop_seed)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  if color_distort:
    image = random_color_jitter(image, color_jitter_strength, impl,
                                color_seed)
  image = tf.reshape(image, [height, width, 3])
  return tf.clip_by_value(image, 0., 1.) if clip else image


def preprocess_for_eval(image, height, width, crop=True):
  """Centre crop (0.875) and bicubic resize, or resize only.

  Args:
    image: (H, W, 3) floats in [0, 1].
    height: output height.
    width: output width.
    crop: take the centre crop first (the reference disables it for
      images of 32 px or less).

  Returns:
    (height, width, 3) floats in [0, 1].
  """
  if crop:
    image = center_crop(image, height, width, CROP_PROPORTION)
  else:
    image = _resize_bicubic(image, height, width)
  image = tf.reshape(image, [height, width, 3])
  return tf.clip_by_value(image, 0., 1.)


def preprocess_image(image, height, width, is_training=False,
                     color_distort=True, test_crop=True, *,
                     color_jitter_strength=1.0, impl='simclrv2', seed=None,
                     clip=True):
  """One image, as stored, to a model input.

  Args:
    image: (H, W, C) uint8 (or floats in [0, 1]), C in 1..4.
    height: output height.
    width: output width.
    is_training: random training augmentation, else eval preprocessing.
    color_distort: in training, apply colour distortion (pretraining).
    test_crop: in evaluation, take the 0.875 centre crop.
    color_jitter_strength: strength s of the colour jitter.
    impl: 'simclrv2' or 'simclrv1' brightness.
    seed: (2,) stateless seed for training, or None for a fresh one.
    clip: in training, clip to [0, 1] (see `preprocess_for_train`).

  Returns:
    (height, width, 3) float32, in [0, 1] if clipped.
  """
  image = tf.image.convert_image_dtype(to_rgb(image), dtype=tf.float32)
  if is_training:
    return preprocess_for_train(
        image, height, width, color_distort,
        color_jitter_strength=color_jitter_strength, impl=impl, seed=seed,
        clip=clip)
  return preprocess_for_eval(image, height, width, test_crop)
