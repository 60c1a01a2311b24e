"""Every published checkpoint format restores into the model, on any filesystem.

Covers checkpoint_files.py (formats, paths, damaged files), object_graph.py
(keys) and checkpoint_restore.py (the strict restore); architecture and TF1
names have their own test files.
"""

import os
import shutil
import uuid

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import golden
from tests.golden import golden_config
from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import object_graph
from tf2.checkpoints import restore as checkpoint_restore
from tf2.checkpoints import tf1_mapping
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import fileio

STEP = 250228


def is_averaged(name):
  # The published checkpoints average the encoder and projection head only.
  return not name.startswith('head_supervised/')


def perturbed(weights):
  """Other values of the same shapes (variances stay positive)."""
  return {n: (v * 0.5 + 0.01 if is_averaged(n) else v)
          for n, v in weights.items()}


def write_tf1_checkpoint(prefix, weights, ema_weights=None, step=STEP,
                         extra=None):
  """Writes a checkpoint laid out like the published TF1 ones.

  Args:
    prefix: e.g. <dir>/model.ckpt-250228, on any filesystem.
    weights: {TF1 name: array} of the model.
    ema_weights: {TF1 name: array}, stored under `ema_model/` for the
      encoder and projection head, as published.
    step: the `global_step` value.
    extra: more {name: array} to store.

  Returns:
    prefix.
  """
  tensors = {'global_step': np.int64(step), **weights, **(extra or {})}
  for name, value in weights.items():
    if not name.rsplit('/', 1)[-1].startswith('moving_'):
      tensors[f'{name}/Momentum'] = np.full_like(value, 0.25)
  for name, value in (ema_weights or {}).items():
    if is_averaged(name):
      tensors[tf1_mapping.EMA_PREFIX + name] = value
  names = sorted(tensors)
  fileio.makedirs(fileio.dirname(prefix))
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(tensors[n]) for n in names])
  return prefix


def assert_matches_golden_eval(endpoints, arrays):
  checked = 0
  for key, expected in arrays.items():
    if key.startswith('eval/'):
      actual = np.asarray(endpoints[key[len('eval/'):]])[:len(expected)]
      golden.assert_close_relative(actual, expected, 1e-4, key)
      checked += 1
  assert checked == 10


@pytest.fixture(scope='module')
def r18(tmp_path_factory):
  """(fixture config, arrays, weights, TF1 checkpoint prefix with EMA)."""
  fixture_config, arrays = golden.load_golden('r18_1x_sk0_32px')
  weights = golden.golden_weights(fixture_config, arrays)
  directory = tmp_path_factory.mktemp('r18_tf1')
  prefix = write_tf1_checkpoint(str(directory / f'model.ckpt-{STEP}'),
                                weights, perturbed(weights))
  return fixture_config, arrays, weights, prefix


# ------------------------------------------------------------------ keys


def test_checkpoint_keys_are_the_keys_a_checkpoint_writes(tmp_path,
                                                          two_cpu_strategy):
  config = config_lib.ModelConfig(num_classes=3, resnet_depth=18,
                                  image_size=8, sk_ratio=0.0625,
                                  se_ratio=0.25, train_mode='finetune')
  with two_cpu_strategy.scope():
    mirrored = model_lib.build_model(config)
  for model in (model_lib.build_model(config), mirrored):
    keys = object_graph.checkpoint_keys(model)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
    written = {n: tuple(s) for n, s in tf.train.list_variables(path)
               if n != '_CHECKPOINTABLE_OBJECT_GRAPH'}
    assert {k: tuple(v.shape) for k, v in keys.items()} == written


# ---------------------------------------------------------------- restoring


@pytest.mark.parametrize('name', golden.GOLDEN_CONFIGS)
def test_tf1_checkpoint_restores_the_golden_outputs(name, tmp_path):
  fixture_config, arrays = golden.load_golden(name)
  weights = golden.golden_weights(fixture_config, arrays)
  prefix = write_tf1_checkpoint(str(tmp_path / f'model.ckpt-{STEP}'), weights,
                                perturbed(weights))
  model = model_lib.build_model(golden_config(fixture_config))
  report = checkpoint_restore.restore_model_weights(model, prefix)
  assert len(report.filled) == len(weights) and not report.missing
  assert_matches_golden_eval(
      model.endpoints(tf.constant(arrays['input']), training=False), arrays)


def test_use_ema_picks_the_moving_average_copy(r18, tmp_path):
  fixture_config, arrays, weights, _ = r18
  # Raw weights perturbed, averages golden: only --use_ema gives the goldens.
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'),
                                perturbed(weights), weights)
  model = model_lib.build_model(golden_config(fixture_config))
  report = checkpoint_restore.restore_model_weights(model, prefix, use_ema=True)
  assert_matches_golden_eval(
      model.endpoints(tf.constant(arrays['input']), training=False), arrays)
  assert 'ema_model' in report.summary()
  raw = model_lib.build_model(golden_config(fixture_config))
  checkpoint_restore.restore_model_weights(raw, prefix)
  for name, variable in tf1_mapping.tf1_variable_map(
      raw).items():
    np.testing.assert_array_equal(variable.numpy(), perturbed(weights)[name])


def test_tf2_checkpoint_and_saved_model_hold_the_same_weights(r18, tmp_path):
  fixture_config, arrays, _, prefix = r18
  config = golden_config(fixture_config)
  model = model_lib.build_model(config)
  checkpoint_restore.restore_model_weights(model, prefix)
  optimizer = tf_keras.optimizers.SGD(momentum=0.9)
  optimizer.build(model.trainable_variables)
  # A model_dir checkpoint of run.py: model, step and optimizer slots.
  model_dir = tmp_path / 'model_dir'
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, global_step=optimizer.iterations,
                          optimizer=optimizer), str(model_dir), 1)
  manager.save(checkpoint_number=5)
  saved_model = export.export_saved_model(model, tmp_path / 'sm')
  for path, fmt in ((str(model_dir), 'tf2_checkpoint'),
                    (manager.latest_checkpoint, 'tf2_checkpoint'),
                    (saved_model, 'saved_model')):
    assert checkpoint_files.detect_format(path) == fmt
    checkpoint_restore.verify_matches_model(model, path)
    fresh = model_lib.build_model(config)
    report = checkpoint_restore.restore_model_weights(fresh, path)
    assert not report.missing
    assert_matches_golden_eval(
        fresh.endpoints(tf.constant(arrays['input']), training=False), arrays)


def test_restore_into_a_two_replica_model(r18, two_cpu_strategy):
  fixture_config, _, weights, prefix = r18
  with two_cpu_strategy.scope():
    model = model_lib.build_model(golden_config(fixture_config,
                                                global_bn=True))
    checkpoint_restore.restore_model_weights(model, prefix)
  for name, variable in tf1_mapping.tf1_variable_map(
      model).items():
    for replica_value in variable.values:
      np.testing.assert_array_equal(replica_value.numpy(), weights[name])


def test_new_number_of_classes_keeps_the_fresh_supervised_head(r18):
  fixture_config, _, weights, prefix = r18
  model = model_lib.build_model(golden_config(fixture_config, num_classes=4))
  initial = model.supervised_head.linear_layer.dense.kernel.numpy()
  report = checkpoint_restore.restore_model_weights(model, prefix)
  assert report.missing == ['head_supervised/linear_layer/dense/kernel',
                            'head_supervised/linear_layer/dense/bias']
  assert 'head_supervised/linear_layer/dense/kernel' in report.unused
  assert 'another number of classes' in report.summary()
  np.testing.assert_array_equal(
      model.supervised_head.linear_layer.dense.kernel.numpy(), initial)
  np.testing.assert_array_equal(
      model.resnet_model.block_groups[0].layers[0].shortcut_layers[0]
      .conv2d.kernel.numpy(), weights['base_model/conv2d_1/kernel'])
  with pytest.raises(checkpoint_files.CheckpointError, match='kernel'):
    checkpoint_restore.restore_model_weights(model, prefix, strict=True)


def test_simclr_v1_checkpoint_without_projection_head_loads(r18, tmp_path):
  fixture_config, _, weights, _ = r18
  v1 = {n: v for n, v in weights.items()
        if not n.startswith('head_contrastive/')}
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-9'), v1)
  model = model_lib.build_model(golden_config(fixture_config))
  report = checkpoint_restore.restore_model_weights(model, prefix)
  assert len(report.missing) == 14 and len(report.filled) == len(v1)
  assert 'projection head was left as initialised' in report.summary()
  arch = architecture.infer_architecture(prefix)
  assert not arch['has_projection_head'] and not arch['has_ema']
  assert arch['proj_head_mode'] == 'none'
  v1_model = model_lib.build_model(architecture.model_config_for(arch))
  checkpoint_restore.restore_model_weights(v1_model, prefix, strict=True)


def test_published_directory_with_foreign_state_file(r18, tmp_path):
  _, _, weights, _ = r18
  directory = tmp_path / 'r18_1x_sk0'
  write_tf1_checkpoint(str(directory / f'model.ckpt-{STEP}'), weights)
  # Published state files name the writer's bucket, not the local copy.
  (directory / 'checkpoint').write_text(
      f'model_checkpoint_path: "gs://bucket/run/model.ckpt-{STEP}"\n')
  assert checkpoint_files.detect_format(str(directory)) == 'tf1_checkpoint'
  # A path to one of the prefix's files is taken for the prefix.
  assert checkpoint_files.detect_format(
      str(directory / f'model.ckpt-{STEP}.index')) == 'tf1_checkpoint'
  assert architecture.infer_architecture(str(directory))['global_step'] == (
      STEP)


def test_every_format_restores_from_an_in_memory_filesystem(r18):
  fixture_config, arrays, weights, _ = r18
  # ram:// stands for any filesystem TensorFlow reaches (gs://, ...).
  root = f'ram://checkpoints-{uuid.uuid4().hex[:8]}'
  tf1_prefix = write_tf1_checkpoint(f'{root}/tf1/model.ckpt-{STEP}', weights,
                                    perturbed(weights))
  source = model_lib.build_model(golden_config(fixture_config))
  checkpoint_restore.restore_model_weights(source, tf1_prefix)
  tf.train.CheckpointManager(tf.train.Checkpoint(model=source),
                             f'{root}/model_dir', 1).save(checkpoint_number=3)
  paths = {tf1_prefix: 'tf1_checkpoint',
           f'{root}/model_dir': 'tf2_checkpoint',
           export.export_saved_model(source, f'{root}/sm'): 'saved_model'}
  try:
    for path, fmt in paths.items():
      arch = architecture.infer_architecture(path)
      assert (arch['format'], arch['resnet_depth'], arch['num_classes']) == (
          fmt, 18, fixture_config['num_classes'])
      model = model_lib.build_model(golden_config(fixture_config))
      report = checkpoint_restore.restore_model_weights(model, path)
      assert not report.missing, fmt
      assert_matches_golden_eval(
          model.endpoints(tf.constant(arrays['input']), training=False),
          arrays)
  finally:
    fileio.rmtree(root)


# ---------------------------------------------------------------- bad input


def _copy_tf1(prefix, directory):
  os.makedirs(directory)
  for suffix in ('.index', '.data-00000-of-00001'):
    shutil.copy(prefix + suffix, directory)
  return os.path.join(directory, os.path.basename(prefix))


def _assert_refused(call, path, *phrases):
  with pytest.raises(checkpoint_files.CheckpointError) as error:
    call()
  message = str(error.value)
  assert str(path) in message
  for phrase in phrases:
    assert phrase in message, message
  return message


def test_a_path_that_is_no_checkpoint(tmp_path):
  missing = tmp_path / 'nothing'
  _assert_refused(lambda: checkpoint_files.detect_format(missing), missing,
                  'no such file', 'TF1 checkpoint prefix')
  (tmp_path / 'notes.txt').write_text('hello')
  _assert_refused(
      lambda: checkpoint_files.detect_format(tmp_path / 'notes.txt'),
      tmp_path / 'notes.txt', 'not a checkpoint')
  _assert_refused(lambda: architecture.infer_architecture(tmp_path),
                  tmp_path, 'no `checkpoint` file')
  (tmp_path / 'bad.index').write_bytes(b'\0' * 100)
  _assert_refused(lambda: checkpoint_files.detect_format(tmp_path / 'bad'),
                  tmp_path / 'bad', 'not a readable checkpoint index')


def test_a_truncated_data_file(r18, tmp_path):
  prefix = _copy_tf1(r18[3], tmp_path / 'ckpt')
  data = prefix + '.data-00000-of-00001'
  with open(data, 'r+b') as f:
    f.truncate(os.path.getsize(data) - 3)
  _assert_refused(lambda: checkpoint_files.detect_format(prefix), prefix,
                  'truncated', 'Download or copy')


def test_a_corrupted_data_file(r18, tmp_path):
  fixture_config, _, _, source = r18
  prefix = _copy_tf1(source, tmp_path / 'ckpt')
  with open(prefix + '.data-00000-of-00001', 'r+b') as f:
    contents = bytearray(f.read())
    for i in range(0, len(contents), 4096):
      contents[i] ^= 0xff
    f.seek(0)
    f.write(contents)
  model = model_lib.build_model(golden_config(fixture_config))
  before = [v.numpy() for v in model.variables]
  _assert_refused(
      lambda: checkpoint_restore.restore_model_weights(model, prefix),
      prefix, 'corrupted')
  # Nothing was assigned.
  for old, variable in zip(before, model.variables):
    np.testing.assert_array_equal(old, variable.numpy())


def test_an_index_without_its_data_file(r18, tmp_path):
  prefix = _copy_tf1(r18[3], tmp_path / 'ckpt')
  os.remove(prefix + '.data-00000-of-00001')
  _assert_refused(lambda: checkpoint_files.detect_format(prefix), prefix,
                  'has no data file')


def test_a_sharded_checkpoint_missing_a_shard(r18, tmp_path):
  fixture_config, _, weights, _ = r18
  names = sorted(weights)
  shards = []
  for i, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
    shard = tf.raw_ops.ShardedFilename(
        basename=str(tmp_path / 'part'), shard=i, num_shards=2)
    tf.raw_ops.SaveV2(prefix=shard, tensor_names=part,
                      shape_and_slices=[''] * len(part),
                      tensors=[tf.constant(weights[n]) for n in part])
    shards.append(shard)
  prefix = str(tmp_path / 'model.ckpt-1')
  tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=shards,
                                destination_prefix=prefix)
  os.remove(prefix + '.data-00000-of-00002')
  model = model_lib.build_model(golden_config(fixture_config))
  before = [v.numpy() for v in model.variables]
  _assert_refused(
      lambda: checkpoint_restore.restore_model_weights(model, prefix),
      prefix, 'has no data file', '.data-00000-of-00002')
  for old, variable in zip(before, model.variables):
    np.testing.assert_array_equal(old, variable.numpy())


def test_a_checkpoint_of_another_architecture(r18, tmp_path):
  fixture_config, _, _, prefix = r18
  wider = model_lib.build_model(golden_config(fixture_config,
                                              width_multiplier=2))
  _assert_refused(
      lambda: checkpoint_restore.restore_model_weights(wider, prefix), prefix,
      'first mismatching variable is base_model/conv2d/kernel',
      'expects shape (3, 3, 3, 128)', 'has (3, 3, 3, 64)', 'ResNet-18 1x')
  model_dir = tmp_path / 'model_dir'
  narrow = model_lib.build_model(golden_config(fixture_config))
  tf.train.CheckpointManager(tf.train.Checkpoint(model=narrow),
                             str(model_dir), 1).save()
  _assert_refused(
      lambda: checkpoint_restore.verify_matches_model(wider, str(model_dir)),
      model_dir, 'initial_conv_relu_max_pool/0/conv2d/kernel',
      '(3, 3, 3, 128)', '(3, 3, 3, 64)')
  deeper = model_lib.build_model(golden_config(fixture_config,
                                               resnet_depth=34))
  _assert_refused(
      lambda: checkpoint_restore.verify_matches_model(deeper, str(model_dir)),
      model_dir, 'model/resnet_model/block_groups/0/layers/2/')


def test_a_tf1_checkpoint_missing_a_variable(r18, tmp_path):
  fixture_config, _, weights, _ = r18
  lacking = dict(weights)
  del lacking['base_model/batch_normalization_3/moving_variance']
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'), lacking)
  model = model_lib.build_model(golden_config(fixture_config))
  _assert_refused(
      lambda: checkpoint_restore.restore_model_weights(model, prefix),
      prefix, '1 model variables are not in the checkpoint',
      'base_model/batch_normalization_3/moving_variance')


def test_a_checkpoint_value_that_fits_no_variable(r18, tmp_path):
  fixture_config, _, weights, _ = r18
  extra = {'head_contrastive/nl_3/dense/kernel': np.zeros([128, 128],
                                                          np.float32)}
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'), weights,
                                extra=extra)
  model = model_lib.build_model(golden_config(fixture_config))
  _assert_refused(
      lambda: checkpoint_restore.restore_model_weights(model, prefix),
      prefix, 'head_contrastive/nl_3/dense/kernel', 'fits no variable')


def test_a_saved_model_without_variables(r18, tmp_path):
  fixture_config, _, _, _ = r18
  model = model_lib.build_model(golden_config(fixture_config))
  saved_model = export.export_saved_model(model, tmp_path / 'sm')
  shutil.rmtree(os.path.join(saved_model, 'variables'))
  _assert_refused(lambda: checkpoint_restore.restore_model_weights(
      model, saved_model), saved_model, 'SavedModel has no variables')


def test_use_ema_without_an_ema_copy(r18, tmp_path):
  fixture_config, _, weights, _ = r18
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'), weights)
  model = model_lib.build_model(golden_config(fixture_config))
  _assert_refused(lambda: checkpoint_restore.restore_model_weights(
      model, prefix, use_ema=True), prefix, 'has none', '--use_ema=False')
  tf2_path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt-1'))
  _assert_refused(lambda: checkpoint_restore.restore_model_weights(
      model, tf2_path, use_ema=True), tf2_path, 'one set of weights')


def test_a_tf2_checkpoint_of_something_else(tmp_path):
  path = tf.train.Checkpoint(net=tf.Variable(1.0)).write(
      str(tmp_path / 'ckpt-1'))
  _assert_refused(lambda: architecture.infer_architecture(path), path,
                  'no `model` object')
