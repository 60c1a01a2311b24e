"""Input pipelines: TFDS datasets to per-replica batches for a strategy.

Pretraining batches carry two augmented views concatenated on channels
(B, H, W, 6); fine-tuning and evaluation batches one view (B, H, W, 3).
Labels are one-hot, in a dict `{'labels': ...}` as in the reference.
"""

import functools
import os

import tensorflow as tf
import tensorflow_datasets as tfds

from tf2 import data_util
from tf2 import datasets  # pylint: disable=unused-import  (registers digits)

EMBEDDED_DATASETS = ('digits',)


class DatasetNotPreparedError(ValueError):
  """The dataset is unknown to TFDS or not prepared in data_dir."""


def _default_data_dir():
  return os.environ.get('TFDS_DATA_DIR',
                        os.path.join('~', 'tensorflow_datasets'))


def get_builder(dataset, data_dir=None):
  """A prepared TFDS builder; never downloads.

  The embedded `digits` dataset is prepared on first use (its data ships
  with scikit-learn). Any other dataset must already be prepared in
  data_dir.
  """
  where = data_dir or _default_data_dir()
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetNotPreparedError(
        f'Dataset {dataset!r} is not a TFDS dataset. Use a TFDS name (e.g. '
        'cifar10, imagenet2012, imagenet2012_subset/1pct) or '
        f'--dataset={EMBEDDED_DATASETS[0]} for the embedded one.') from None
  if dataset.split('/')[0].split(':')[0] in EMBEDDED_DATASETS:
    builder.download_and_prepare()
    return builder
  if not builder.is_prepared():
    manual = (' imagenet2012 needs the ILSVRC2012 tar files placed in '
              '<data_dir>/downloads/manual first.'
              if dataset.startswith('imagenet2012') else '')
    raise DatasetNotPreparedError(
        f'Dataset {dataset!r} is not prepared in data_dir={where}, and this '
        'project never downloads. Prepare it once on a machine with '
        f'internet: `tfds build {dataset} --data_dir={where}` (or '
        f'tfds.builder({dataset!r}).download_and_prepare()), copy the folder '
        f'here and pass --data_dir.{manual}')
  return builder


def num_examples(builder, split):
  """Examples in a split (TFDS slicing such as 'train[:10%]' allowed)."""
  try:
    return builder.info.splits[split].num_examples
  except (KeyError, ValueError) as e:
    raise DatasetNotPreparedError(
        f'Split {split!r} does not exist in {builder.name}: available '
        f'splits are {sorted(builder.info.splits)}.') from e


def num_classes(builder):
  return builder.info.features['label'].num_classes


def preprocess_fn(is_training, is_pretrain, image_size,
                  color_jitter_strength):
  """The per-image preprocessing of the reference for this mode."""
  return functools.partial(
      data_util.preprocess_image, height=image_size, width=image_size,
      is_training=is_training,
      color_jitter_strength=color_jitter_strength if is_pretrain else 0.,
      test_crop=image_size > 32)


def build_input_fn(builder, global_batch_size, is_training, *, split,
                   image_size, train_mode, cache_dataset=False,
                   color_jitter_strength=1.0):
  """`input_fn(input_context)` for strategy.distribute_datasets_from_function.

  Training shuffles (buffer of 50 or 10 batches for images <= / > 32 px, as
  the reference), repeats and drops the remainder; evaluation reads the
  split once and keeps the last partial batch.
  """
  classes = num_classes(builder)
  pretrain = is_training and train_mode == 'pretrain'
  preprocess = preprocess_fn(is_training, pretrain, image_size,
                             color_jitter_strength)

  def map_fn(image, label):
    if pretrain:
      image = tf.concat([preprocess(image), preprocess(image)], -1)
    else:
      image = preprocess(image)
    return image, {'labels': tf.one_hot(label, classes)}

  def input_fn(input_context):
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    dataset = builder.as_dataset(split=split, shuffle_files=is_training,
                                 as_supervised=True)
    if input_context.num_input_pipelines > 1:
      dataset = dataset.shard(input_context.num_input_pipelines,
                              input_context.input_pipeline_id)
    if cache_dataset:
      dataset = dataset.cache()
    if is_training:
      options = tf.data.Options()
      options.deterministic = False
      options.experimental_slack = True
      dataset = dataset.with_options(options)
      dataset = dataset.shuffle(batch_size * (50 if image_size <= 32 else 10))
      dataset = dataset.repeat(-1)
    dataset = dataset.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(tf.data.AUTOTUNE)

  return input_fn


def build_distributed_dataset(builder, global_batch_size, is_training,
                              strategy, **kwargs):
  """The per-replica dataset of build_input_fn under `strategy`."""
  input_fn = build_input_fn(builder, global_batch_size, is_training, **kwargs)
  return strategy.distribute_datasets_from_function(input_fn)
