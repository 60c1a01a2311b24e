"""The embedded digits dataset: fixed, stratified, disjoint splits, offline."""

import socket

import numpy as np
import pytest
from sklearn import datasets as sk_datasets
import tensorflow_datasets as tfds

from tf2.data import datasets  # pylint: disable=unused-import  (registers digits)
from tf2.data.datasets import digits as digits_lib


@pytest.fixture(scope='module')
def builder(tmp_path_factory):
  """Digits prepared in a fresh data_dir, failing on any network access."""
  attempts = []

  def no_network(*args, **kwargs):
    del kwargs
    attempts.append(args)  # Recorded too, in case TFDS swallows the error.
    raise OSError('No network in this test.')

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(socket.socket, 'connect', no_network)
    patch.setattr(socket, 'getaddrinfo', no_network)
    builder = tfds.builder('digits',
                           data_dir=str(tmp_path_factory.mktemp('tfds')))
    builder.download_and_prepare()
  assert not attempts, f'Preparing digits used the network: {attempts}'
  return builder


def _read(builder, split):
  """(images (N, 8, 8, 3) uint8, labels (N,)) in stored order."""
  pairs = list(tfds.as_numpy(builder.as_dataset(split=split,
                                                as_supervised=True)))
  return (np.stack([image for image, _ in pairs]),
          np.array([label for _, label in pairs]))


def test_is_registered_with_tfds_on_import():
  assert 'digits' in tfds.list_builders()


def test_prepares_offline_with_its_features(builder):
  assert builder.is_prepared()
  assert str(builder.info.version) == '1.0.0'
  assert builder.info.features['image'].shape == (8, 8, 3)
  assert builder.info.features['label'].num_classes == 10


def test_split_sizes_are_80_20(builder):
  assert builder.info.splits['train'].num_examples == 1442
  assert builder.info.splits['test'].num_examples == 355


def test_splits_are_stratified():
  labels = sk_datasets.load_digits().target
  indices = digits_lib.split_indices(labels)
  for label in range(10):
    in_class = np.sum(labels == label)
    assert np.sum(labels[indices['test']] == label) == in_class // 5


def test_splits_partition_the_images_without_overlap(builder):
  train, train_labels = _read(builder, 'train')
  test, test_labels = _read(builder, 'test')
  train_set = {x.tobytes() for x in train}
  test_set = {x.tobytes() for x in test}
  assert len(train_set) == 1442 and len(test_set) == 355  # No duplicates.
  assert not train_set & test_set
  source = sk_datasets.load_digits()
  scaled = np.round(source.images * 255 / 16).astype(np.uint8)
  assert train_set | test_set == {np.repeat(x[..., None], 3, -1).tobytes()
                                  for x in scaled}
  assert set(train_labels) == set(test_labels) == set(range(10))


def test_images_are_grey_uint8_scaled_to_255(builder):
  images, _ = _read(builder, 'test')
  assert images.dtype == np.uint8 and images.max() == 255
  np.testing.assert_array_equal(images[..., 0], images[..., 1])
  np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_preparing_twice_gives_the_same_splits_in_the_same_order(
    builder, tmp_path):
  again = tfds.builder('digits', data_dir=str(tmp_path))
  again.download_and_prepare()
  for split in ('train', 'test'):
    first, second = _read(builder, split), _read(again, split)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
