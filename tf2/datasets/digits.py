"""The embedded real dataset: scikit-learn's handwritten digits, as TFDS.

1,797 real 8x8 scans of the digits 0-9 (UCI optdigits test set, shipped
inside scikit-learn, so preparing it needs no network). Pixel values 0..16
are scaled to 0..255 and replicated on 3 channels.

Splits are fixed: within each class, in the order scikit-learn returns the
images, every fifth image (positions 4, 9, 14, ...) is `test` (355 images),
the rest `train` (1,442 images). The split is stratified and deterministic.
"""

import numpy as np
import tensorflow_datasets as tfds


def _split_indices():
  """{'train': indices, 'test': indices} into load_digits()."""
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  labels = sk_datasets.load_digits().target
  test = []
  for label in range(10):
    positions = np.flatnonzero(labels == label)
    test.extend(positions[4::5])
  test = np.sort(np.array(test))
  train = np.setdiff1d(np.arange(len(labels)), test)
  return {'train': train, 'test': test}


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
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    indices = _split_indices()
    return {name: self._generate_examples(idx)
            for name, idx in indices.items()}

  def _generate_examples(self, indices):
    from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
    digits = sk_datasets.load_digits()
    for i in indices:
      grey = np.round(digits.images[i] * (255.0 / 16.0)).astype(np.uint8)
      yield int(i), {'image': np.repeat(grey[:, :, None], 3, axis=2),
                     'label': int(digits.target[i])}
