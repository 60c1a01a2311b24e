"""The embedded real dataset: scikit-learn's handwritten digits, as TFDS.

1,797 real 8x8 scans of the digits 0-9 (the test part of UCI's optdigits,
shipped inside scikit-learn, so preparing it needs no network). Pixel values
0..16 become round(v * 255 / 16) in 0..255, replicated on 3 channels.

Splits are fixed, stratified and deterministic: within each class, in the
order scikit-learn returns the images, every fifth image (the class's 5th,
10th, 15th, ...) is `test`, the others `train`. That gives 355 test and
1,442 train images (19.8% / 80.2%), each class in the same proportion.
"""

import numpy as np
from sklearn import datasets as sk_datasets
import tensorflow_datasets as tfds

TEST_EVERY = 5  # Every 5th image of each class is a test image.


def split_indices(labels):
  """Positions of the train and test images.

  Args:
    labels: (N,) int class of each image, in scikit-learn's order.

  Returns:
    {'train': sorted int indices, 'test': sorted int indices}.
  """
  test = np.concatenate([
      np.flatnonzero(labels == label)[TEST_EVERY - 1::TEST_EVERY]
      for label in np.unique(labels)])
  test = np.sort(test)
  return {'train': np.setdiff1d(np.arange(len(labels)), test), 'test': test}


def _load():
  """(images (N, 8, 8, 3) uint8, labels (N,) int) from scikit-learn."""
  digits = sk_datasets.load_digits()
  grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1), digits.target


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits with fixed train/test splits."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 3)),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html',
        citation=('E. Alpaydin, C. Kaynak. Optical Recognition of '
                  'Handwritten Digits. UCI Machine Learning Repository, '
                  '1998. https://doi.org/10.24432/C50P49'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    images, labels = _load()
    return {name: self._generate_examples(images, labels, indices)
            for name, indices in split_indices(labels).items()}

  def _generate_examples(self, images, labels, indices):
    # The key is the image's position in scikit-learn's order.
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
