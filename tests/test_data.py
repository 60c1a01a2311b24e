"""Input pipelines: batches per mode and replica; the never-download rule."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf2.data import color_ops
from tf2.data import pipeline as data_lib


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  return data_lib.get_builder('digits', str(tmp_path_factory.mktemp('tfds')))


def _one_pipeline():
  return tf.distribute.InputContext(num_input_pipelines=1,
                                    input_pipeline_id=0,
                                    num_replicas_in_sync=1)


def _first_batch(dataset):
  return next(iter(dataset))


def test_digits_is_prepared_on_first_use(digits):
  assert digits.is_prepared()
  assert data_lib.num_examples(digits, 'train') == 1442
  assert data_lib.num_examples(digits, 'test') == 355
  assert data_lib.num_examples(digits, 'train[:10%]') == 144
  assert data_lib.num_classes(digits) == 10


def test_unknown_split_names_the_available_ones(digits):
  with pytest.raises(data_lib.DatasetNotPreparedError, match="'test'"):
    data_lib.num_examples(digits, 'validation')


@pytest.mark.parametrize('train_mode,is_training,channels', [
    ('pretrain', True, 6), ('finetune', True, 3), ('pretrain', False, 3),
    ('finetune', False, 3)])
def test_batches_per_mode_have_views_on_channels_and_one_hot_labels(
    digits, train_mode, is_training, channels):
  dataset = data_lib.build_distributed_dataset(
      digits, 16, is_training, tf.distribute.get_strategy(), split='train',
      image_size=16, train_mode=train_mode)
  images, labels = _first_batch(dataset)
  assert images.shape == (16, 16, 16, channels)
  assert images.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(images)) <= float(
      tf.reduce_max(images)) <= 1.0
  assert labels['labels'].shape == (16, 10)
  np.testing.assert_array_equal(tf.reduce_sum(labels['labels'], 1), 1.0)
  np.testing.assert_array_equal(tf.reduce_max(labels['labels'], 1), 1.0)


def test_pretraining_views_of_an_image_differ(digits):
  input_fn = data_lib.build_input_fn(
      digits, 8, True, split='train', image_size=16, train_mode='pretrain',
      seed=0)
  images, _ = _first_batch(input_fn(_one_pipeline()))
  first, second = images[..., :3], images[..., 3:]
  assert np.abs(first - second).max(axis=(1, 2, 3)).min() > 0


def test_eval_reads_the_split_once_and_keeps_the_last_partial_batch(digits):
  input_fn = data_lib.build_input_fn(
      digits, 100, False, split='test', image_size=8, train_mode='finetune')
  sizes = [int(images.shape[0]) for images, _ in input_fn(_one_pipeline())]
  assert sizes == [100, 100, 100, 55]


def test_eval_images_are_the_stored_images(digits):
  # 8 px digits at image_size 8: no crop (<= 32 px), resizing is identity.
  input_fn = data_lib.build_input_fn(
      digits, 355, False, split='test', image_size=8, train_mode='finetune')
  images, labels = _first_batch(input_fn(_one_pipeline()))
  stored = [(x, y) for x, y in tfds.as_numpy(
      digits.as_dataset(split='test', as_supervised=True))]
  np.testing.assert_allclose(
      images, np.stack([x for x, _ in stored]) / 255.0, atol=1e-6)
  np.testing.assert_array_equal(np.argmax(labels['labels'], 1),
                                [y for _, y in stored])


def test_training_repeats_and_drops_the_last_partial_batch(digits):
  input_fn = data_lib.build_input_fn(
      digits, 500, True, split='test', image_size=8, train_mode='finetune')
  sizes = [int(images.shape[0]) for images, _ in
           input_fn(_one_pipeline()).take(3)]
  assert sizes == [500, 500, 500]  # 355 images: repeated, never partial.


def test_a_seed_makes_training_batches_reproducible(digits):
  def first_batch(seed):
    input_fn = data_lib.build_input_fn(
        digits, 32, True, split='train', image_size=16,
        train_mode='pretrain', seed=seed)
    images, labels = _first_batch(input_fn(_one_pipeline()))
    return images.numpy(), labels['labels'].numpy()
  first, again, other = first_batch(7), first_batch(7), first_batch(8)
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert np.abs(first[0] - other[0]).max() > 0.1


def test_per_replica_batches_under_two_replicas(digits, two_cpu_strategy):
  dataset = data_lib.build_distributed_dataset(
      digits, 16, True, two_cpu_strategy, split='train', image_size=8,
      train_mode='pretrain')
  images, labels = _first_batch(dataset)
  assert [t.shape for t in two_cpu_strategy.experimental_local_results(
      images)] == [(8, 8, 8, 6), (8, 8, 8, 6)]
  assert [t.shape for t in two_cpu_strategy.experimental_local_results(
      labels['labels'])] == [(8, 10), (8, 10)]


def test_input_pipelines_read_disjoint_shares_of_the_split(digits):
  # Several hosts: digits has one file per split, so it is sharded by
  # example; each pipeline gets its own, and together they cover the split.
  def share(pipeline_id):
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=pipeline_id,
        num_replicas_in_sync=2)
    input_fn = data_lib.build_input_fn(
        digits, 400, False, split='test', image_size=8, train_mode='finetune')
    return {x.tobytes() for images, _ in input_fn(context)
            for x in images.numpy()}
  first, second = share(0), share(1)
  assert len(first) == 178 and len(second) == 177
  assert not first & second


@pytest.mark.parametrize('name,size,classes', [('cifar10', 32, 10),
                                               ('imagenet2012', 40, 1000)])
@pytest.mark.parametrize('train_mode,is_training,channels', [
    ('pretrain', True, 6), ('finetune', True, 3), ('finetune', False, 3)])
def test_tfds_datasets_with_mock_data(tmp_path, name, size, classes,
                                      train_mode, is_training, channels):
  # mock_data fakes reading only: the builder is not prepared, so it comes
  # from tfds.builder, not get_builder. imagenet2012's mock images have
  # random sizes, which exercises the crops (eval crops above 32 px).
  with tfds.testing.mock_data(num_examples=8):
    builder = tfds.builder(name, data_dir=str(tmp_path))
    dataset = data_lib.build_distributed_dataset(
        builder, 4, is_training, tf.distribute.get_strategy(), split='train',
        image_size=size, train_mode=train_mode)
    images, labels = _first_batch(dataset)
  assert images.shape == (4, size, size, channels)
  assert labels['labels'].shape == (4, classes)
  np.testing.assert_array_equal(tf.reduce_sum(labels['labels'], 1), 1.0)


@pytest.mark.parametrize('name', ['cifar10', 'imagenet2012_subset/1pct'])
def test_unprepared_dataset_says_where_and_how_to_prepare(tmp_path, name):
  with pytest.raises(data_lib.DatasetNotPreparedError) as error:
    data_lib.get_builder(name, str(tmp_path))
  message = str(error.value)
  assert name in message and str(tmp_path) in message
  assert f'tfds build {name} --data_dir={tmp_path}' in message
  assert not list(tmp_path.iterdir())  # Nothing was downloaded or written.


def test_imagenet_error_names_the_manual_download(tmp_path):
  with pytest.raises(data_lib.DatasetNotPreparedError,
                     match='ILSVRC2012_img_train.tar') as error:
    data_lib.get_builder('imagenet2012', str(tmp_path))
  assert f'{tmp_path}/downloads/manual' in str(error.value)


@pytest.mark.parametrize('name', ['no_such_dataset', 'cifar10:9.9.9',
                                  'imagenet2012_subset/2pct'])
def test_unknown_dataset_config_or_version_is_one_clear_error(tmp_path, name):
  with pytest.raises(data_lib.DatasetNotPreparedError) as error:
    data_lib.get_builder(name, str(tmp_path))
  assert name in str(error.value) and str(tmp_path) in str(error.value)
  assert error.value.__suppress_context__  # No chained TFDS traceback.


def test_augment_on_device_keeps_the_host_crops_and_defers_colour(digits):
  def first_batch(train_mode='pretrain', **kwargs):
    input_fn = data_lib.build_input_fn(
        digits, 16, True, split='train', image_size=16, train_mode=train_mode,
        seed=5, **kwargs)
    images = _first_batch(input_fn(_one_pipeline()))[0].numpy()
    return np.concatenate(np.split(images, images.shape[-1] // 3, -1), 0)
  deferred = first_batch(augment_on_device=True)
  # Left unclipped: the device's colour distortion clips, as the host's does.
  assert deferred.min() < 0 or deferred.max() > 1
  # A jitter of strength 0 is the identity: the host's views are then the
  # same crops, clipped, or (p=0.2) their grey version.
  host = first_batch(color_jitter_strength=0.0)
  plain = np.all(np.abs(host - np.clip(deferred, 0, 1)) < 1e-6, (1, 2, 3))
  grey = np.all(np.abs(host - np.clip(color_ops.to_grayscale(deferred),
                                      0, 1)) < 1e-6, (1, 2, 3))
  assert np.all(plain | grey) and plain.mean() > 0.5
  # Only pretraining views are affected.
  np.testing.assert_array_equal(first_batch('finetune'),
                                first_batch('finetune', augment_on_device=True))
