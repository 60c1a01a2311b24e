"""Photo-like JPEGs for benchmarks of the input pipeline (no dataset needed).

Smooth colours with fine noise decode and compress like photos, unlike
uniform noise (which JPEG cannot compress) or flat images (which it
compresses to almost nothing).
"""

import os

import numpy as np
import tensorflow as tf

JPEG_SHAPE = (375, 500)  # About the mean size of ImageNet's photos.


def write_jpegs(root, count):
  """`count` photo-like JPEGs (smooth colours, fine noise) in two classes."""
  rng = np.random.RandomState(0)
  height, width = JPEG_SHAPE
  for i in range(count):
    folder = os.path.join(root, f'class_{i % 2}')
    tf.io.gfile.makedirs(folder)
    coarse = rng.uniform(0, 255, [1, 6, 8, 3]).astype(np.float32)
    image = tf.image.resize(coarse, [height, width], method='bicubic')[0]
    image += rng.normal(0, 12, [height, width, 3])
    jpeg = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255),
                                     tf.uint8), quality=90)
    tf.io.write_file(os.path.join(folder, f'{i}.jpg'), jpeg)
