"""Training crops decoded from JPEG bytes: only the crop windows are decoded.

SimCLR's random crop keeps 8% to 100% of a photo, so decoding the whole JPEG
and then cropping it decodes pixels no view uses. The crop window depends
only on the image's shape and the seed (`data_util.random_crop_window`,
tf.image.stateless_sample_distorted_bounding_box), and a JPEG's header gives
its shape (tf.image.extract_jpeg_shape), so the windows of an image's views
can be drawn before decoding and only the box around them decoded, once
(tf.image.decode_and_crop_jpeg; Model Garden's classification input does
the same for its one view). Same windows for the same seeds as
decode-then-crop, and the same pixels (a margin around the box is decoded
too, see `decode_crops`).

Bytes that are not a JPEG (an image folder's PNGs) take the dataset's own
decoder and data_util's decode-then-crop path, with the same seeds.
"""

import tensorflow as tf

from tf2.data import data_util

# Pixels decoded beyond each side of the window: one block of a 4:2:0 JPEG.
_MARGIN = 16


def crop_window(encoded, height, width, crop_seed):
  """The random crop window of a JPEG, from its header only.

  Args:
    encoded: scalar string, the JPEG's bytes.
    height, width: the output size (sets the aspect-ratio range).
    crop_seed: (2,) stateless seed, the crop's (see `preprocess_for_train`).

  Returns:
    (offset_y, offset_x, crop_height, crop_width) int32 scalars, the window
    `data_util.random_crop_window` draws for the decoded RGB image.
  """
  shape = tf.image.extract_jpeg_shape(encoded)
  # The decoded image always has 3 channels (grey JPEGs are replicated).
  rgb_shape = tf.stack([shape[0], shape[1], 3])
  return data_util.random_crop_window(rgb_shape, height, width, crop_seed)


def decode_crops(encoded, windows):
  """The windows' pixels, as decoding the whole JPEG and cropping gives them.

  One decode serves every window (the two views of an image): the box
  around all of them is decoded once, so this never costs more than
  decoding the whole JPEG (two separate crop decodes, measured, cost 1.4x
  one whole decode at SimCLR's crop sizes).

  decode_and_crop_jpeg alone differs near the box's edges (by up to 13
  levels of 255 measured on 4:2:0 JPEGs): the decoder interpolates the
  half-resolution colour planes from neighbours it did not decode there. A
  margin of one 16 px block around the box gives it those neighbours; the
  windows' pixels then equal decode-then-crop's.

  Args:
    encoded: scalar string, the JPEG's bytes.
    windows: list of (offset_y, offset_x, crop_height, crop_width) int32
      scalars.

  Returns:
    list of (crop_height, crop_width, 3) uint8, one per window.
  """
  shape = tf.image.extract_jpeg_shape(encoded)
  top = tf.maximum(tf.reduce_min([w[0] for w in windows]) - _MARGIN, 0)
  left = tf.maximum(tf.reduce_min([w[1] for w in windows]) - _MARGIN, 0)
  bottom = tf.minimum(
      tf.reduce_max([w[0] + w[2] for w in windows]) + _MARGIN, shape[0])
  right = tf.minimum(
      tf.reduce_max([w[1] + w[3] for w in windows]) + _MARGIN, shape[1])
  box = tf.image.decode_and_crop_jpeg(
      encoded, tf.stack([top, left, bottom - top, right - left]), channels=3)
  return [box[y - top:y - top + h, x - left:x - left + w]
          for y, x, h, w in windows]


def decode_crop(encoded, window):
  """`decode_crops` of one window: (crop_height, crop_width, 3) uint8."""
  return decode_crops(encoded, [window])[0]


def _resize(crop, height, width):
  crop = tf.image.convert_image_dtype(crop, tf.float32)
  return tf.image.resize(crop, [height, width],
                         method=tf.image.ResizeMethod.BICUBIC)


def decode_crop_and_resize(encoded, height, width, crop_seed):
  """`data_util.crop_and_resize` of a JPEG, decoding only the window.

  Returns:
    (height, width, 3) float32, bicubic-resized (overshoot not clipped).
  """
  crop = decode_crop(encoded, crop_window(encoded, height, width, crop_seed))
  return _resize(crop, height, width)


def preprocess_encoded_views(encoded, height, width, decode, seeds,
                             color_distort=True, *, color_jitter_strength=1.0,
                             impl='simclrv2', clip=True):
  """`data_util.preprocess_image(decode(encoded), is_training=True)` per seed.

  With the same seeds, the same crops, flips and colour draws as that; for
  a JPEG only the box around the crop windows is decoded, once.

  Args:
    encoded: scalar string, the stored image bytes.
    height, width: output size.
    decode: `decode(encoded) -> (H, W, C) uint8`, the dataset's decoder
      (the TFDS feature's decode_example), for bytes that are not a JPEG.
    seeds: list of (2,) stateless seeds, one per view.
    color_distort, color_jitter_strength, impl, clip: as
      `data_util.preprocess_for_train`.

  Returns:
    list of (height, width, 3) float32, in [0, 1] if clipped.
  """
  crop_seeds = [data_util.split_seed(s, 3)[0] for s in seeds]  # As there.

  def from_jpeg():
    windows = [crop_window(encoded, height, width, s) for s in crop_seeds]
    return tf.stack([_resize(crop, height, width)
                     for crop in decode_crops(encoded, windows)])

  def decoded_first():
    image = tf.image.convert_image_dtype(data_util.to_rgb(decode(encoded)),
                                         tf.float32)
    return tf.stack([data_util.crop_and_resize(image, height, width, s)
                     for s in crop_seeds])

  crops = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, decoded_first)
  return [data_util.preprocess_for_train(
      crop, height, width, color_distort, crop=False,
      color_jitter_strength=color_jitter_strength, impl=impl, seed=seed,
      clip=clip) for crop, seed in zip(tf.unstack(crops), seeds)]


def preprocess_encoded_for_train(encoded, height, width, decode,
                                 color_distort=True, *, seed=None, **kwargs):
  """One view of `preprocess_encoded_views` (a fresh seed if None)."""
  seed = data_util.new_seed() if seed is None else seed
  return preprocess_encoded_views(encoded, height, width, decode, [seed],
                                  color_distort, **kwargs)[0]
