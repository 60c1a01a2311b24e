"""Class-balanced labeled subsets of a TFDS split, for semi-supervised runs.

SimCLRv2 fine-tunes on 1% or 10% of the labels and distils on the rest of
the training set. This module picks a deterministic, class-balanced labeled
subset of a split, records it (JSON in the model directory, so a run states
exactly which examples it saw with labels) and tells a `tf.data` pipeline
which examples are labeled.

Examples are named by their TFDS `tfds_id` ('digits-train.tfrecord-00000-of-
00001__17'): the file and the position in it, so an id names the same
example in every read of the same prepared data, whichever slice of the
split ('train[:50%]') or file order a pipeline reads. An input pipeline that
reads with `tfds.ReadConfig(add_tfds_id=True)` keeps the labeled examples
with `dataset.filter(lambda ex: is_labeled(ex['tfds_id']))`, `is_labeled`
from `labeled_lookup`.

For ImageNet, TFDS also ships the subsets of the SimCLR paper as datasets
(`imagenet2012_subset/1pct`, `imagenet2012_subset/10pct`, splits 'train' and
'validation'); this module serves any other dataset and fraction.
"""

import collections
import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.runtime import fileio

# Version of the JSON written by `save_label_subset`.
_FORMAT_VERSION = 1


def _check_choice(fraction, per_class):
  """Raises ValueError unless exactly one valid size argument is given."""
  if (fraction is None) == (per_class is None):
    raise ValueError(
        'Give exactly one of fraction (share of each class, 0 < fraction '
        '<= 1, e.g. fraction=0.01 for 1% of the labels) or per_class '
        f'(examples per class, e.g. per_class=10); got fraction={fraction!r}, '
        f'per_class={per_class!r}.')
  if fraction is not None:
    if isinstance(fraction, bool) or not 0 < fraction <= 1:
      raise ValueError(
          f'fraction must be a number with 0 < fraction <= 1 (e.g. 0.01 for '
          f'1% of the labels, 1.0 for all); got {fraction!r}.')
  elif (isinstance(per_class, bool) or
        not isinstance(per_class, (int, np.integer)) or per_class < 1):
    raise ValueError(
        f'per_class must be an int >= 1 (labeled examples per class); got '
        f'{per_class!r}.')


def select_labeled(labels, *, fraction=None, per_class=None, seed=0):
  """Indices of a class-balanced labeled subset.

  Each class is sampled on its own, from a permutation of its examples drawn
  with `np.random.default_rng(seed)` (classes in ascending order), so a seed
  always gives the same subset of the same labels. With `per_class`, a class
  contributes min(per_class, its count). With `fraction`, a class with n
  examples contributes round(fraction * n) (halves rounded up) but at least
  one, so every class is labeled: a small fraction of a small class gives
  more than the fraction (1% of the 1442 training digits, 140 to 147 per
  class, is 1 per class). fraction=1.0 selects every example.

  Args:
    labels: int array (N,), the class of each example.
    fraction: share of each class to label, 0 < fraction <= 1.
    per_class: examples to label per class, int >= 1.
    seed: int seed of the choice within each class.

  Returns:
    int64 array (M,) of indices into `labels`, ascending.

  Raises:
    ValueError: not exactly one of fraction / per_class, a value out of
      range, or labels that are not a 1-D integer array.
  """
  _check_choice(fraction, per_class)
  labels = np.asarray(labels)
  if labels.ndim != 1 or not (labels.size == 0 or
                              np.issubdtype(labels.dtype, np.integer)):
    raise ValueError(
        f'labels must be a 1-D integer array (one class per example); got '
        f'shape {labels.shape} and dtype {labels.dtype}.')
  rng = np.random.default_rng(seed)
  chosen = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    if per_class is not None:
      take = min(per_class, members.size)
    else:
      # floor(x + 0.5): round half up, unlike Python's round half to even.
      take = max(1, int(np.floor(fraction * members.size + 0.5)))
    chosen.append(rng.permutation(members)[:take])
  if not chosen:
    return np.zeros((0,), np.int64)
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def read_split_ids_and_labels(builder, split):
  """The `tfds_id` and label of every example of a split, in file order.

  Reads the split once without decoding images.

  Args:
    builder: a prepared TFDS builder with a 'label' feature.
    split: TFDS split, slicing allowed ('train', 'train[:50%]').

  Returns:
    (ids, labels): str array (N,) of `tfds_id`s, int64 array (N,).
  """
  decoders = None
  if 'image' in builder.info.features:
    decoders = {'image': tfds.decode.SkipDecoding()}
  dataset = builder.as_dataset(
      split=split, shuffle_files=False, decoders=decoders,
      read_config=tfds.ReadConfig(add_tfds_id=True))
  dataset = dataset.map(lambda ex: (ex['tfds_id'], ex['label']))
  ids, labels = [], []
  # Batches make the Python loop short on large splits.
  for batch_ids, batch_labels in dataset.batch(4096).as_numpy_iterator():
    ids.extend(i.decode('utf-8') for i in batch_ids)
    labels.append(batch_labels)
  labels = (np.concatenate(labels) if labels else np.zeros((0,)))
  return np.array(ids, dtype=str), labels.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class LabelSubset:
  """A split divided into a labeled subset and an unlabeled pool.

  Attributes:
    labeled_ids: `tfds_id`s of the labeled examples, in file order.
    labeled_labels: their classes, aligned with labeled_ids.
    unlabeled_ids: `tfds_id`s of the rest of the split, in file order.
    dataset: the builder's `info.full_name` ('digits/1.0.0',
      'cifar10/3.0.2'), '' if unknown.
    split: the split that was divided ('' if unknown).
    fraction: the `select_labeled` argument used, or None.
    per_class: the `select_labeled` argument used, or None.
    seed: the `select_labeled` seed.
  """
  labeled_ids: tuple[str, ...]
  labeled_labels: tuple[int, ...]
  unlabeled_ids: tuple[str, ...]
  dataset: str = ''
  split: str = ''
  fraction: Optional[float] = None
  per_class: Optional[int] = None
  seed: int = 0

  @property
  def num_labeled(self):
    return len(self.labeled_ids)

  @property
  def num_unlabeled(self):
    return len(self.unlabeled_ids)

  @property
  def labeled_per_class(self):
    """{class: number of labeled examples}, ascending by class (for logs)."""
    return dict(sorted(collections.Counter(self.labeled_labels).items()))


def make_label_subset(builder, split, *, fraction=None, per_class=None,
                      seed=0):
  """Divides a split into a class-balanced labeled subset and the rest.

  Args:
    builder: a prepared TFDS builder with a 'label' feature.
    split: TFDS split, slicing allowed ('train', 'train[:50%]').
    fraction: share of each class to label (see `select_labeled`).
    per_class: examples to label per class (see `select_labeled`).
    seed: int seed of the choice.

  Returns:
    A `LabelSubset`; its labeled and unlabeled ids are disjoint and together
    are the split.

  Raises:
    ValueError: bad fraction / per_class (see `select_labeled`).
  """
  _check_choice(fraction, per_class)  # Before reading a large split.
  ids, labels = read_split_ids_and_labels(builder, split)
  chosen = select_labeled(labels, fraction=fraction, per_class=per_class,
                          seed=seed)
  is_labeled = np.zeros(ids.shape, bool)
  is_labeled[chosen] = True
  return LabelSubset(
      labeled_ids=tuple(ids[is_labeled].tolist()),
      labeled_labels=tuple(labels[is_labeled].tolist()),
      unlabeled_ids=tuple(ids[~is_labeled].tolist()),
      dataset=builder.info.full_name, split=split,
      fraction=None if fraction is None else float(fraction),
      per_class=None if per_class is None else int(per_class), seed=seed)


def save_label_subset(subset, path):
  """Writes a `LabelSubset` to `path` as JSON, atomically.

  A reader never sees half a file, even if the run is killed while writing
  (`fileio.write_json_atomic`); any filesystem TensorFlow supports.

  Args:
    subset: a `LabelSubset`.
    path: the file; its directory is created if missing.
  """
  record = dataclasses.asdict(subset)
  record['format_version'] = _FORMAT_VERSION
  fileio.write_json_atomic(path, record)


def load_label_subset(path):
  """Reads a `LabelSubset` written by `save_label_subset`.

  Args:
    path: the JSON file.

  Returns:
    The `LabelSubset`.

  Raises:
    ValueError: the file is not a label subset of this format.
  """
  record = fileio.read_json(path)
  version = record.pop('format_version', None) if isinstance(
      record, dict) else None
  fields = {f.name for f in dataclasses.fields(LabelSubset)}
  if version != _FORMAT_VERSION or set(record) != fields:
    raise ValueError(
        f'{path} is not a label subset written by save_label_subset (format '
        f'version {_FORMAT_VERSION}); write it again with '
        'make_label_subset and save_label_subset.')
  for name in ('labeled_ids', 'labeled_labels', 'unlabeled_ids'):
    record[name] = tuple(record[name])
  return LabelSubset(**record)


def labeled_lookup(labeled_ids):
  """A graph-friendly test of whether a `tfds_id` is labeled.

  Built on a `tf.lookup.StaticHashTable`, so it runs inside
  `tf.data.Dataset.map` and `filter`; create it outside the dataset function
  (e.g. in the input_fn) and it is captured as a resource.

  Args:
    labeled_ids: sequence of `tfds_id` strings of the labeled examples.

  Returns:
    is_labeled(tfds_id) -> tf.bool tensor of the shape of `tfds_id` (a
    tf.string scalar in `filter`), True where the id is in labeled_ids.
  """
  if not len(labeled_ids):  # pylint: disable=g-explicit-length-test
    # TensorFlow refuses to initialise a table with no keys.
    return lambda tfds_id: tf.fill(tf.shape(tfds_id), False)
  keys = tf.constant(list(labeled_ids), dtype=tf.string,
                     shape=[len(labeled_ids)])
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          keys, tf.ones([len(labeled_ids)], tf.int64)),
      default_value=0)

  def is_labeled(tfds_id):
    return table.lookup(tfds_id) > 0

  return is_labeled
