"""Tests of tf2/label_subset.py: class-balanced labeled subsets."""

import json

import numpy as np
import pytest

import tf2  # pylint: disable=unused-import  # Sets TF_USE_LEGACY_KERAS.
import tensorflow as tf  # pylint: disable=g-bad-import-order
import tensorflow_datasets as tfds

from tf2.data import label_subset
from tf2.data import pipeline as data_lib

# 3 classes of unequal sizes (50, 30, 20), interleaved.
_LABELS = np.array([0, 1, 0, 2, 0, 1, 0, 1, 2, 0] * 10)


def _per_class(indices, labels=_LABELS):
  return dict(zip(*np.unique(labels[indices], return_counts=True)))


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  return data_lib.get_builder(
      'digits', data_dir=str(tmp_path_factory.mktemp('tfds')))


@pytest.fixture(scope='module')
def digits_subset(digits):
  return label_subset.make_label_subset(digits, 'train', per_class=3, seed=1)


def test_per_class_takes_that_many_of_each_class_or_all_of_a_small_one():
  chosen = label_subset.select_labeled(_LABELS, per_class=25)
  assert _per_class(chosen) == {0: 25, 1: 25, 2: 20}
  assert chosen.dtype == np.int64
  np.testing.assert_array_equal(chosen, np.sort(np.unique(chosen)))


def test_fraction_takes_its_share_of_each_class_rounded():
  # 10% of 50, 30, 20 is 5, 3, 2; 25% is 12.5, 7.5, 5: halves round up.
  assert _per_class(label_subset.select_labeled(_LABELS, fraction=0.1)) == {
      0: 5, 1: 3, 2: 2}
  assert _per_class(label_subset.select_labeled(_LABELS, fraction=0.25)) == {
      0: 13, 1: 8, 2: 5}


def test_tiny_fraction_still_labels_one_example_of_every_class():
  assert _per_class(label_subset.select_labeled(_LABELS, fraction=0.001)) == {
      0: 1, 1: 1, 2: 1}


def test_fraction_one_selects_everything():
  np.testing.assert_array_equal(
      label_subset.select_labeled(_LABELS, fraction=1.0), np.arange(100))


def test_same_seed_same_subset_other_seed_other_subset():
  a = label_subset.select_labeled(_LABELS, per_class=5, seed=3)
  b = label_subset.select_labeled(_LABELS, per_class=5, seed=3)
  c = label_subset.select_labeled(_LABELS, per_class=5, seed=4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert _per_class(c) == _per_class(a)


@pytest.mark.parametrize('kwargs,message', [
    ({}, 'exactly one of fraction'),
    ({'fraction': 0.1, 'per_class': 2}, 'exactly one of fraction'),
    ({'fraction': 0.0}, '0 < fraction <= 1'),
    ({'fraction': 1.5}, '0 < fraction <= 1'),
    ({'per_class': 0}, 'int >= 1'),
    ({'per_class': 2.5}, 'int >= 1'),
])
def test_bad_arguments_raise_and_say_what_to_pass(kwargs, message):
  with pytest.raises(ValueError, match=message):
    label_subset.select_labeled(_LABELS, **kwargs)


def test_float_labels_raise():
  with pytest.raises(ValueError, match='1-D integer array'):
    label_subset.select_labeled(_LABELS.astype(float), per_class=1)


def test_read_ids_and_labels_match_the_split_in_file_order(digits):
  ids, labels = label_subset.read_split_ids_and_labels(digits, 'train')
  expected = np.array([label for _, label in digits.as_dataset(
      split='train', as_supervised=True,
      shuffle_files=False).as_numpy_iterator()])
  np.testing.assert_array_equal(labels, expected)
  assert labels.dtype == np.int64 and len(ids) == len(set(ids)) == 1442
  again, _ = label_subset.read_split_ids_and_labels(digits, 'train')
  np.testing.assert_array_equal(ids, again)


def test_read_a_sliced_split_gives_the_ids_of_the_slice(digits):
  ids, _ = label_subset.read_split_ids_and_labels(digits, 'train')
  half, half_labels = label_subset.read_split_ids_and_labels(
      digits, 'train[:50%]')
  np.testing.assert_array_equal(half, ids[:721])
  assert len(half_labels) == 721


def test_subset_is_balanced_and_divides_the_split(digits, digits_subset):
  ids, _ = label_subset.read_split_ids_and_labels(digits, 'train')
  labeled, unlabeled = digits_subset.labeled_ids, digits_subset.unlabeled_ids
  assert digits_subset.labeled_per_class == {c: 3 for c in range(10)}
  assert digits_subset.num_labeled == 30
  assert digits_subset.num_unlabeled == 1442 - 30
  assert not set(labeled) & set(unlabeled)
  assert set(labeled) | set(unlabeled) == set(ids)


def test_one_percent_of_digits_is_one_per_class(digits):
  subset = label_subset.make_label_subset(digits, 'train', fraction=0.01)
  assert subset.labeled_per_class == {c: 1 for c in range(10)}


def test_make_label_subset_rejects_bad_arguments_before_reading(digits):
  with pytest.raises(ValueError, match='exactly one of fraction'):
    label_subset.make_label_subset(digits, 'train')


def test_save_load_round_trip_leaves_no_temporary_file(tmp_path,
                                                       digits_subset):
  path = tmp_path / 'model_dir' / 'label_subset.json'
  label_subset.save_label_subset(digits_subset, str(path))
  label_subset.save_label_subset(digits_subset, str(path))  # Overwrites.
  assert label_subset.load_label_subset(str(path)) == digits_subset
  assert [p.name for p in path.parent.iterdir()] == ['label_subset.json']
  assert json.loads(path.read_text())['split'] == 'train'


def test_load_rejects_other_json(tmp_path):
  path = tmp_path / 'other.json'
  path.write_text(json.dumps({'labeled_ids': []}))
  with pytest.raises(ValueError, match='save_label_subset'):
    label_subset.load_label_subset(str(path))


def test_lookup_in_dataset_filter_keeps_exactly_the_labeled_ids(
    digits, digits_subset):
  is_labeled = label_subset.labeled_lookup(digits_subset.labeled_ids)
  dataset = digits.as_dataset(
      split='train', shuffle_files=True,
      read_config=tfds.ReadConfig(add_tfds_id=True))
  kept = dataset.filter(lambda ex: is_labeled(ex['tfds_id']))
  kept_ids = [ex['tfds_id'].decode() for ex in kept.as_numpy_iterator()]
  assert sorted(kept_ids) == sorted(digits_subset.labeled_ids)


def test_lookup_of_no_ids_is_always_false():
  is_labeled = label_subset.labeled_lookup(())
  assert not is_labeled(tf.constant('digits-train.tfrecord-00000__0'))


@pytest.mark.parametrize('config', ['1pct', '10pct'])
def test_imagenet_subset_configs_are_known_to_tfds(tmp_path, config):
  # The paper's ImageNet subsets ship with TFDS; mock_data fakes the reading.
  with tfds.testing.mock_data(num_examples=12):
    builder = tfds.builder(f'imagenet2012_subset/{config}',
                           data_dir=str(tmp_path))
    ids, labels = label_subset.read_split_ids_and_labels(builder, 'train')
  assert builder.builder_config.name == config
  assert len(ids) == len(labels) == 12


def test_lookup_built_in_a_distributed_input_fn_filters_each_pipeline(
    digits, digits_subset, two_cpu_strategy):
  # How an input pipeline uses it: the table is created in input_fn.
  def input_fn(input_context):
    is_labeled = label_subset.labeled_lookup(digits_subset.labeled_ids)
    dataset = digits.as_dataset(
        split='train', shuffle_files=False,
        read_config=tfds.ReadConfig(add_tfds_id=True))
    dataset = dataset.filter(lambda ex: is_labeled(ex['tfds_id']))
    return dataset.map(lambda ex: ex['label']).batch(
        input_context.get_per_replica_batch_size(30))

  dataset = two_cpu_strategy.distribute_datasets_from_function(input_fn)
  labels = [two_cpu_strategy.experimental_local_results(batch)
            for batch in dataset]
  counts = np.bincount(np.concatenate(
      [t.numpy() for per_replica in labels for t in per_replica]))
  # One worker, one pipeline: its batches go to the replicas in turn.
  np.testing.assert_array_equal(counts, [3] * 10)
