"""Training crops decoded from JPEG bytes: only the crop window is decoded.

SimCLR's random crop keeps 8% to 100% of a photo, so decoding the whole JPEG
and then cropping it wastes most of the host's decode time. The crop window
depends only on the image's shape and the seed (`data_util.
random_crop_window`, tf.image.stateless_sample_distorted_bounding_box), and
a JPEG's header gives its shape (tf.image.extract_jpeg_shape), so the
window can be drawn before decoding and only it decoded
(tf.image.decode_and_crop_jpeg; Model Garden's classification input does
the same). Same window for the same seed as decode-then-crop, and the same
pixels (a margin around the window is decoded too, see `decode_crop`).

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


def decode_crop(encoded, window):
  """The window's pixels, as decoding the whole JPEG and cropping gives them.

  decode_and_crop_jpeg alone differs near the window's edges (by up to 13
  levels of 255 measured on 4:2:0 JPEGs): the decoder interpolates the
  half-resolution colour planes from neighbours it did not decode there. A
  margin of one 16 px block around the window gives it those neighbours;
  the window's pixels then equal decode-then-crop's.

  Args:
    encoded: scalar string, the JPEG's bytes.
    window: (offset_y, offset_x, crop_height, crop_width) int32 scalars.

  Returns:
    (crop_height, crop_width, 3) uint8.
  """
  offset_y, offset_x, crop_height, crop_width = window
  shape = tf.image.extract_jpeg_shape(encoded)
  top = tf.maximum(offset_y - _MARGIN, 0)
  left = tf.maximum(offset_x - _MARGIN, 0)
  bottom = tf.minimum(offset_y + crop_height + _MARGIN, shape[0])
  right = tf.minimum(offset_x + crop_width + _MARGIN, shape[1])
  wider = tf.image.decode_and_crop_jpeg(
      encoded, tf.stack([top, left, bottom - top, right - left]), channels=3)
  return wider[offset_y - top:offset_y - top + crop_height,
               offset_x - left:offset_x - left + crop_width]


def decode_crop_and_resize(encoded, height, width, crop_seed):
  """`data_util.crop_and_resize` of a JPEG, decoding only the window.

  Returns:
    (height, width, 3) float32, bicubic-resized (overshoot not clipped).
  """
  crop = decode_crop(encoded, crop_window(encoded, height, width, crop_seed))
  crop = tf.image.convert_image_dtype(crop, tf.float32)
  return tf.image.resize(crop, [height, width],
                         method=tf.image.ResizeMethod.BICUBIC)


def preprocess_encoded_for_train(encoded, height, width, decode,
                                 color_distort=True, *,
                                 color_jitter_strength=1.0, impl='simclrv2',
                                 seed=None, clip=True):
  """`data_util.preprocess_image(decode(encoded), is_training=True)`.

  With the same seed, the same crop, flip and colour draws; for a JPEG only
  the crop window is decoded.

  Args:
    encoded: scalar string, the stored image bytes.
    height, width: output size.
    decode: `decode(encoded) -> (H, W, C) uint8`, the dataset's decoder
      (the TFDS feature's decode_example), for bytes that are not a JPEG.
    color_distort, color_jitter_strength, impl, seed, clip: as
      `data_util.preprocess_for_train`.

  Returns:
    (height, width, 3) float32, in [0, 1] if clipped.
  """
  seed = data_util.new_seed() if seed is None else seed
  crop_seed = data_util.split_seed(seed, 3)[0]  # preprocess_for_train's.

  def from_jpeg():
    return decode_crop_and_resize(encoded, height, width, crop_seed)

  def decoded_first():
    image = tf.image.convert_image_dtype(data_util.to_rgb(decode(encoded)),
                                         tf.float32)
    return data_util.crop_and_resize(image, height, width, crop_seed)

  image = tf.cond(tf.io.is_jpeg(encoded), from_jpeg, decoded_first)
  return data_util.preprocess_for_train(
      image, height, width, color_distort, crop=False,
      color_jitter_strength=color_jitter_strength, impl=impl, seed=seed,
      clip=clip)
