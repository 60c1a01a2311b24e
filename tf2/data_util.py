"""SimCLR image augmentations (tf.image ops, one image unless noted).

Same distributions as the reference: random crop-and-resize (bicubic), flip,
colour jitter in random order, grayscale, Gaussian blur applied batch-wise in
pretraining; centre crop of 0.875 for evaluation of images above 32 px.
"""

import functools

import tensorflow as tf

CROP_PROPORTION = 0.875  # Standard for ImageNet evaluation.


def random_apply(func, p, x):
  """func(x) with probability p, else x."""
  return tf.cond(tf.random.uniform([]) < p, lambda: func(x), lambda: x)


def random_brightness(image, max_delta, impl='simclrv2'):
  """Multiplicative (simclrv2) or additive (simclrv1) brightness change."""
  if impl == 'simclrv2':
    factor = tf.random.uniform([], max(1.0 - max_delta, 0), 1.0 + max_delta)
    return image * factor
  if impl == 'simclrv1':
    return tf.image.random_brightness(image, max_delta=max_delta)
  raise ValueError(f'Unknown color jitter impl {impl!r}: use simclrv1 or '
                   'simclrv2.')


def to_grayscale(image):
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def color_jitter(image, strength, impl='simclrv2'):
  """Brightness, contrast, saturation, hue in random order, clipped each time.

  Args:
    image: (H, W, 3) floats in [0, 1].
    strength: s; the deltas are 0.8s, 0.8s, 0.8s and 0.2s.
    impl: 'simclrv2' or 'simclrv1' brightness.
  """
  brightness, contrast, saturation, hue = (0.8 * strength, 0.8 * strength,
                                           0.8 * strength, 0.2 * strength)
  transforms = [
      lambda x: random_brightness(x, brightness, impl),
      lambda x: tf.image.random_contrast(x, 1 - contrast, 1 + contrast),
      lambda x: tf.image.random_saturation(x, 1 - saturation, 1 + saturation),
      lambda x: tf.image.random_hue(x, hue),
  ]
  order = tf.random.shuffle(tf.range(4))
  for i in range(4):
    image = tf.switch_case(order[i], [functools.partial(t, image)
                                      for t in transforms])
    image = tf.clip_by_value(image, 0., 1.)
  return image


def random_color_jitter(image, strength=1.0, impl='simclrv2'):
  """Colour jitter with p=0.8, then grayscale with p=0.2."""
  image = random_apply(
      functools.partial(color_jitter, strength=strength, impl=impl), 0.8,
      image)
  return random_apply(to_grayscale, 0.2, image)


def _compute_crop_shape(image_height, image_width, aspect_ratio,
                        crop_proportion):
  """Largest centred crop of the requested aspect ratio, scaled down."""
  width = tf.cast(image_width, tf.float32)
  height = tf.cast(image_height, tf.float32)

  def wider_than_image():
    return (tf.cast(tf.math.rint(crop_proportion / aspect_ratio * width),
                    tf.int32),
            tf.cast(tf.math.rint(crop_proportion * width), tf.int32))

  def image_wider():
    return (tf.cast(tf.math.rint(crop_proportion * height), tf.int32),
            tf.cast(tf.math.rint(crop_proportion * aspect_ratio * height),
                    tf.int32))

  return tf.cond(aspect_ratio > width / height, wider_than_image, image_wider)


def center_crop(image, height, width, crop_proportion):
  """Centre crop of `crop_proportion`, bicubic-resized to (height, width)."""
  shape = tf.shape(image)
  crop_height, crop_width = _compute_crop_shape(
      shape[0], shape[1], height / width, crop_proportion)
  offset_height = ((shape[0] - crop_height) + 1) // 2
  offset_width = ((shape[1] - crop_width) + 1) // 2
  image = tf.image.crop_to_bounding_box(image, offset_height, offset_width,
                                        crop_height, crop_width)
  return tf.image.resize([image], [height, width],
                         method=tf.image.ResizeMethod.BICUBIC)[0]


def crop_and_resize(image, height, width):
  """Inception-style random crop (8%-100% area, 3/4-4/3 aspect), resized."""
  aspect_ratio = width / height
  begin, size, _ = tf.image.sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0., 0., 1., 1.]]]),
      min_object_covered=0.1,
      aspect_ratio_range=(3. / 4 * aspect_ratio, 4. / 3 * aspect_ratio),
      area_range=(0.08, 1.0), max_attempts=100,
      use_image_if_no_bounding_boxes=True)
  offset_y, offset_x, _ = tf.unstack(begin)
  target_height, target_width, _ = tf.unstack(size)
  image = tf.image.crop_to_bounding_box(image, offset_y, offset_x,
                                        target_height, target_width)
  return tf.image.resize([image], [height, width],
                         method=tf.image.ResizeMethod.BICUBIC)[0]


def gaussian_blur(images, kernel_size, sigma):
  """Separable Gaussian blur of (B, H, W, C) images with 'SAME' padding."""
  radius = kernel_size // 2
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(tf.cast(sigma,
                                                           tf.float32))))
  kernel /= tf.reduce_sum(kernel)
  channels = tf.shape(images)[-1]
  vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
  horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
  blurred = tf.nn.depthwise_conv2d(images, vertical, [1, 1, 1, 1], 'SAME')
  return tf.nn.depthwise_conv2d(blurred, horizontal, [1, 1, 1, 1], 'SAME')


def batch_random_blur(images_list, height, width, blur_probability=0.5):
  """Blurs each image of each (B, H, W, 3) batch with probability p.

  As in the reference, one sigma ~ U(0.1, 2.0) is drawn per batch and the
  kernel is 10% of the image height; the choice to blur is per image. The
  whole batch is blurred in one convolution instead of per image.
  """
  del width
  outputs = []
  for images in images_list:
    sigma = tf.random.uniform([], 0.1, 2.0)
    blurred = gaussian_blur(images, max(height // 10, 1), sigma)
    selector = tf.cast(
        tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < blur_probability,
        images.dtype)
    mixed = blurred * selector + images * (1 - selector)
    outputs.append(tf.clip_by_value(mixed, 0., 1.))
  return outputs


def to_rgb(image):
  """Grayscale -> RGB, RGBA -> RGB; other images unchanged (static shape)."""
  channels = image.shape[-1]
  if channels == 1:
    return tf.image.grayscale_to_rgb(image)
  if channels == 4:
    return image[..., :3]
  return image


def preprocess_for_train(image, height, width, color_jitter_strength=0.,
                         crop=True, flip=True, impl='simclrv2'):
  """Random crop, flip and (if strength > 0) colour distortion."""
  if crop:
    image = crop_and_resize(image, height, width)
  if flip:
    image = tf.image.random_flip_left_right(image)
  if color_jitter_strength > 0:
    image = random_color_jitter(image, color_jitter_strength, impl)
  image = tf.reshape(image, [height, width, 3])
  return tf.clip_by_value(image, 0., 1.)


def preprocess_for_eval(image, height, width, crop=True):
  """Centre crop (0.875) and bicubic resize when `crop`, else resize only.

  Without crop the reference assumed images already of the model's size
  (CIFAR at 32 px); resizing keeps those unchanged and lets smaller images
  (the 8 px digits) be used at any --image_size.
  """
  if crop:
    image = center_crop(image, height, width, CROP_PROPORTION)
  else:
    image = tf.image.resize(image, [height, width],
                            method=tf.image.ResizeMethod.BICUBIC)
  image = tf.reshape(image, [height, width, 3])
  return tf.clip_by_value(image, 0., 1.)


def preprocess_image(image, height, width, is_training=False,
                     color_jitter_strength=0., test_crop=True):
  """uint8 (H, W, 1|3|4) image -> float (height, width, 3) in [0, 1]."""
  image = tf.image.convert_image_dtype(to_rgb(image), dtype=tf.float32)
  if is_training:
    return preprocess_for_train(image, height, width, color_jitter_strength)
  return preprocess_for_eval(image, height, width, test_crop)
