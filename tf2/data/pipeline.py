"""Input pipelines: TFDS datasets to per-replica batches for a strategy.

Pretraining batches hold two augmented views concatenated on channels,
(B, H, W, 6); fine-tuning and evaluation batches one view, (B, H, W, 3).
Each element is `(images, {'labels': one_hot})`: the reference's input
function yields the bare one-hot labels and its `run.py` wraps them in that
dict, which the training and evaluation steps read.

As in the reference: training reads shuffled files, shuffles a buffer of
50 (images of 32 px or less) or 10 per-replica batches, repeats forever and
drops the last partial batch; evaluation reads the split once, in order,
and keeps the last partial batch. This project never downloads: apart from
the embedded `digits` (prepared from scikit-learn on first use), datasets
must already be prepared in data_dir.
"""

import functools

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.data import crop_decode
from tf2.data import data_util
from tf2.runtime import reproducibility
# Imported for its side effect: registers the embedded digits with TFDS.
from tf2.data import datasets as _datasets  # pylint: disable=unused-import
from tf2.data import label_subset
from tf2.data.datasets import image_folder

EMBEDDED_DATASETS = ('digits',)


class DatasetNotPreparedError(ValueError):
  """The dataset is unknown to TFDS or not prepared in data_dir."""


# A user's image folder that cannot be read; its message names the folder
# and the expected layout.
ImageFolderError = image_folder.ImageFolderError


def _base_name(dataset):
  """'imagenet2012_subset/1pct:5.0.0' -> 'imagenet2012_subset'."""
  return dataset.split(':')[0].split('/')[0]


def _not_prepared_message(dataset, where, builder):
  build = f'`tfds build {dataset} --data_dir={where}`'
  manual = getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None)
  if manual:
    how = (f'put the files TFDS asks for in {where}/downloads/manual '
           f'({" ".join(manual.split())}), then run {build}')
  else:
    how = (f'on a machine with internet run {build} and copy the folder '
           f'{where}/{_base_name(dataset)} here')
  return (f'Dataset {dataset!r} is not prepared in data_dir={where}, and '
          f'this project never downloads. Prepare it once: {how}. The '
          f'embedded dataset {EMBEDDED_DATASETS[0]!r} needs no preparation.')


def _tfds_builder(dataset, data_dir):
  """tfds.builder, with what it cannot build as DatasetNotPreparedError."""
  where = data_dir or tfds.core.constants.DATA_DIR
  try:
    return tfds.builder(dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetNotPreparedError(
        f'Dataset {dataset!r} is neither a TFDS dataset nor prepared in '
        f'data_dir={where}. Use a TFDS name (e.g. cifar10, imagenet2012, '
        f'imagenet2012_subset/1pct), the path of a folder of your images '
        f'(./my_images), or --dataset={EMBEDDED_DATASETS[0]} for the '
        'embedded one.') from None
  except (ValueError, AssertionError, RuntimeError) as e:
    # A bad config or version (or, RuntimeError, a data_dir TFDS cannot
    # use): a long message whose first line says what is wrong.
    reason = str(e).strip().splitlines()[0]
    raise DatasetNotPreparedError(
        f'TFDS cannot build dataset {dataset!r} (data_dir={where}): '
        f'{reason}') from None


def get_builder(dataset, data_dir=None):
  """A prepared TFDS builder; never downloads.

  The embedded `digits` dataset is prepared in data_dir on first use (its
  data ships with scikit-learn), and so is a folder of the user's images
  (`tf2/datasets/image_folder.py`; prepared again when its files change).
  Any other dataset must already be prepared in data_dir.

  Args:
    dataset: TFDS name, optionally with config and version
      ('imagenet2012_subset/1pct:5.0.0'), or the path of an image folder.
    data_dir: TFDS data directory; None for the TFDS default
      ($TFDS_DATA_DIR or ~/tensorflow_datasets).

  Returns:
    A `tfds.core.DatasetBuilder` whose splits can be read.

  Raises:
    DatasetNotPreparedError: the name is unknown to TFDS, names a config or
      version TFDS does not have, or the dataset is not prepared in
      data_dir; the message says what to do instead.
  """
  data_dir = data_dir or None  # An empty --data_dir is the TFDS default.
  if image_folder.is_image_folder(dataset):
    return image_folder.image_folder_builder(dataset, data_dir)
  builder = _tfds_builder(dataset, data_dir)
  where = data_dir or tfds.core.constants.DATA_DIR
  if _base_name(dataset) in EMBEDDED_DATASETS:
    if not builder.is_prepared():  # A prepared one is only read.
      builder.download_and_prepare()  # Reads scikit-learn's files only.
  elif not builder.is_prepared():
    raise DatasetNotPreparedError(
        _not_prepared_message(dataset, where, builder))
  return builder


def needs_preparing(dataset, data_dir=None):
  """Whether `get_builder` will write the dataset into data_dir.

  Only the embedded datasets and image folders are prepared here, and only
  once: a data_dir that already holds them is only read (it may be
  read-only, e.g. shared between users).
  """
  if image_folder.is_image_folder(dataset):
    return not image_folder.is_prepared(dataset, data_dir)
  if _base_name(dataset) in EMBEDDED_DATASETS:
    return not _tfds_builder(dataset, data_dir or None).is_prepared()
  return False


def num_examples(builder, split):
  """Examples in a split (TFDS slicing such as 'train[:10%]' allowed); 0 in
  a slice that ends before it starts ('train[5:3]': -2 for TFDS)."""
  try:
    return max(0, builder.info.splits[split].num_examples)
  except (KeyError, ValueError) as e:
    said = ' '.join(str(e).split())
    problem = ('does not exist' if 'Unknown split' in said or
               isinstance(e, KeyError) else f'cannot be read ({said[:240]})')
    raise DatasetNotPreparedError(
        f'Split {split!r} {problem} in {builder.name}: available '
        f'splits are {sorted(builder.info.splits)}.') from e


def num_classes(builder):
  return builder.info.features['label'].num_classes


def holds_jpegs(builder):
  """Whether the image feature's stored bytes are (or may be) JPEGs.

  TFDS stores them as the feature's encoding_format says (imagenet2012:
  'jpeg'); an image folder keeps each JPEG file's own bytes (and PNGs for
  the rest). Other datasets (arrays encoded as PNG) keep TFDS's decoding.
  """
  feature = builder.info.features['image']
  if (not isinstance(feature, tfds.features.Image) or
      np.dtype(feature.np_dtype) != np.uint8):
    return False
  return (feature.encoding_format == 'jpeg' or
          isinstance(builder, image_folder.ImageFolderBuilder))


def _read_split(builder, split, is_training, input_context, seed,
                labeled_ids=None, labeled_only=False, encoded=False):
  """The split's (image, label, labeled) triples, this pipeline's share only.

  TFDS assigns whole files to input pipelines, as in the reference; a split
  with fewer files than pipelines (the embedded digits have one) is sharded
  by example instead.

  `labeled` is False for the images of an `unlabeled` folder (the feature
  `is_labeled` of image-folder datasets) and, when `labeled_ids` (TFDS ids of
  a label subset) is given, for every example outside the subset.
  `labeled_only` drops the unlabeled examples. With `encoded` the images
  are left as their stored bytes (decoded later, crop window only).
  """
  pipelines = input_context.num_input_pipelines
  by_file = (pipelines == 1 or
             builder.info.splits[split].num_shards >= pipelines)
  read_config = tfds.ReadConfig(
      interleave_cycle_length=32, interleave_block_length=1,
      input_context=input_context if by_file else None, shuffle_seed=seed)
  read_config.add_tfds_id = labeled_ids is not None
  decoders = {'image': tfds.decode.SkipDecoding()} if encoded else None
  dataset = builder.as_dataset(split=split, shuffle_files=is_training,
                               read_config=read_config, decoders=decoders)
  if not by_file:
    dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
  in_subset = None
  if labeled_ids is not None:
    in_subset = label_subset.labeled_lookup(labeled_ids)

  def triple(example):
    labeled = example.get('is_labeled', tf.constant(True))
    if in_subset is not None:
      labeled = tf.logical_and(labeled, in_subset(example['tfds_id']))
    return example['image'], example['label'], labeled

  dataset = dataset.map(triple)
  if labeled_only:
    dataset = dataset.filter(lambda image, label, labeled: labeled)
  return dataset


def build_input_fn(builder, global_batch_size, is_training, *, split,
                   image_size, train_mode, cache_dataset=False,
                   color_jitter_strength=1.0, seed=None, start_step=0,
                   skip_steps=0, labeled_ids=None, labeled_only=False,
                   augment_on_device=False, decode_crops=True):
  """`input_fn(input_context)` for strategy.distribute_datasets_from_function.

  Args:
    builder: a prepared TFDS builder with 'image' and 'label' features.
    global_batch_size: batch size summed over replicas.
    is_training: random augmentation, shuffling and repetition; else eval
      preprocessing and one pass.
    split: TFDS split to read ('train', 'test', 'train[:10%]', ...).
    image_size: output height and width.
    train_mode: 'pretrain' (two colour-distorted views), 'finetune' or
      'distill' (one view, cropped and flipped only).
    cache_dataset: cache the decoded split in memory.
    color_jitter_strength: colour jitter strength of pretraining views.
    seed: int for a reproducible pipeline (file order, shuffling and
      augmentations; costs the speed of non-deterministic element order), or
      None.
    start_step: with a seed, the global step of the pipeline's first batch:
      its draws are seeded by (seed, start_step, input pipeline), so that a
      run resumed at that step reads what the uninterrupted run read from
      it (reproducibility.py).
    skip_steps: with a seed, leave out the batches of this many steps
      before the first one read (before their images are decoded and
      augmented): the pipeline of `start_step` read on from `start_step +
      skip_steps`, where a preemption's checkpoint between two periodic
      ones left it.
    labeled_ids: TFDS ids (`tfds_id`) of the labeled subset; the other
      examples of the split are marked unlabeled. None: all are labeled
      (except those of an image folder's `unlabeled` split).
    labeled_only: keep only labeled examples (fine-tuning on a subset).
    augment_on_device: pretraining views are cropped, resized and flipped
      here but neither colour-distorted nor clipped: the train step does
      that on the accelerator (`color_augment.make_augment_fn`), which
      relieves the host CPU. Other modes are unaffected.
    decode_crops: in training, decode only the crop window of JPEG sources
      (`holds_jpegs`; crop_decode.py): the same crops and pixels, less host
      time. False decodes whole images first, as the reference, and so does
      `cache_dataset` (the cache then holds decoded pixels).

  Returns:
    input_fn(input_context) -> tf.data.Dataset of
      (images (B, image_size, image_size, 6 or 3) float32 in [0, 1] (with
       augment_on_device, pretraining views may overshoot it slightly),
       {'labels': (B, num_classes) float32 one-hot,
        'labeled': (B,) float32, 1 where the label may be used}),
    B the per-replica batch size.
  """
  classes = num_classes(builder)
  pretrain = is_training and train_mode == 'pretrain'
  on_device = pretrain and augment_on_device
  preprocess = functools.partial(
      data_util.preprocess_image, height=image_size, width=image_size,
      is_training=is_training, color_distort=pretrain and not on_device,
      # The reference skips the eval centre crop for small images (CIFAR).
      test_crop=image_size > 32, color_jitter_strength=color_jitter_strength,
      clip=not on_device)
  # A cache of decoded images (cache_dataset) skips decoding altogether.
  encoded = (is_training and decode_crops and not cache_dataset and
             holds_jpegs(builder))
  if encoded:
    preprocess_views = functools.partial(
        crop_decode.preprocess_encoded_views, height=image_size,
        width=image_size,
        decode=builder.info.features['image'].decode_example,
        color_distort=pretrain and not on_device,
        color_jitter_strength=color_jitter_strength, clip=not on_device)

  def targets(label, labeled):
    return {'labels': tf.one_hot(label, classes),
            'labeled': tf.cast(labeled, tf.float32)}

  def train_map(image, label, labeled, element_seed):
    seeds = (data_util.split_seed(element_seed, 2) if pretrain else
             [element_seed])
    if encoded:  # One decode for both views.
      views = preprocess_views(image, seeds=seeds)
    else:
      views = [preprocess(image, seed=s) for s in seeds]
    return tf.concat(views, -1), targets(label, labeled)

  def eval_map(image, label, labeled):
    return preprocess(image), targets(label, labeled)

  def input_fn(input_context):
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
    pipeline_seed = (None if seed is None else reproducibility.pipeline_seed(
        seed, start_step, input_context.input_pipeline_id))
    dataset = _read_split(builder, split, is_training, input_context,
                          pipeline_seed, labeled_ids, labeled_only, encoded)
    if cache_dataset:
      dataset = dataset.cache()
    if is_training:
      options = tf.data.Options()
      options.deterministic = seed is not None
      options.experimental_slack = True
      dataset = dataset.with_options(options)
      dataset = dataset.shuffle(batch_size * (50 if image_size <= 32 else 10),
                                seed=pipeline_seed)
      dataset = dataset.repeat(-1)
      # One stateless seed (2 int64) per element: the augmentations then
      # depend on the seed, not on which map thread runs first.
      element_seeds = tf.data.Dataset.random(seed=pipeline_seed).batch(2)
      dataset = tf.data.Dataset.zip(dataset, element_seeds)
      if skip_steps:
        # A step takes one batch from each replica this pipeline feeds.
        dataset = dataset.skip(skip_steps * batch_size * (
            input_context.num_replicas_in_sync //
            input_context.num_input_pipelines))
      dataset = dataset.map(
          lambda example, s: train_map(*example, s),
          num_parallel_calls=tf.data.AUTOTUNE)
    else:
      dataset = dataset.map(eval_map, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(tf.data.AUTOTUNE)

  return input_fn


def build_distributed_dataset(builder, global_batch_size, is_training,
                              strategy, per_replica_pipelines=False,
                              **kwargs):
  """`build_input_fn`'s dataset distributed by `strategy`.

  Args:
    builder: a prepared TFDS builder.
    global_batch_size: batch size summed over replicas.
    is_training: see `build_input_fn`.
    strategy: a tf.distribute strategy.
    per_replica_pipelines: one input pipeline per replica (input_pipeline_id
      = replica id) instead of one per worker. Each replica then reads what
      it would read as a one-replica worker of a cluster, with the same seed
      (tests compare a cluster with one process this way).
    **kwargs: keyword arguments of `build_input_fn` (split, image_size,
      train_mode, ...).

  Returns:
    A distributed dataset of per-replica (images, {'labels': one_hot}).
  """
  input_fn = build_input_fn(builder, global_batch_size, is_training, **kwargs)
  options = None
  if per_replica_pipelines:
    options = tf.distribute.InputOptions(
        experimental_replication_mode=(
            tf.distribute.InputReplicationMode.PER_REPLICA))
  return strategy.distribute_datasets_from_function(input_fn, options)
