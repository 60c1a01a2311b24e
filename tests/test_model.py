"""The model reproduces the reference implementation's outputs."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import golden
from tests.test_checkpoint_io import write_tf1_checkpoint
from tf2.checkpoints import restore as checkpoint_restore
from tf2.checkpoints import tf1_mapping
from tf2.models import config as config_lib
from tf2.models import model as model_lib


def _golden_model(fixture_config, **overrides):
  return model_lib.build_model(golden.golden_config(fixture_config,
                                                   **overrides))


@pytest.mark.parametrize('name', golden.GOLDEN_CONFIGS)
def test_creation_order_gives_the_tf1_names_and_shapes(name):
  fixture_config, _ = golden.load_golden(name)
  model = _golden_model(fixture_config)
  ours = [(n, list(v.shape)) for n, v in
          tf1_mapping.tf1_variable_map(model).items()]
  assert ours == [(n, list(s)) for n, s in fixture_config['tf1_variables']]


@pytest.mark.parametrize('name', golden.GOLDEN_CONFIGS)
def test_outputs_match_reference_in_eval_and_train_mode(name, tmp_path):
  fixture_config, arrays = golden.load_golden(name)
  model = _golden_model(fixture_config)
  prefix = write_tf1_checkpoint(str(tmp_path / 'model.ckpt-1'),
                                golden.golden_weights(fixture_config, arrays))
  checkpoint_restore.restore_model_weights(model, prefix, strict=True)
  images = tf.constant(arrays['input'])

  eval_outputs = model.endpoints(images, training=False)
  train_outputs = model.endpoints(images, training=True)
  checked = 0
  for key, expected in arrays.items():
    mode, _, endpoint = key.partition('/')
    if mode == 'eval':
      actual = eval_outputs[endpoint].numpy()[:len(expected)]
      golden.assert_close_relative(actual, expected, 1e-4, key)
    elif mode == 'train':
      golden.assert_close_relative(train_outputs[endpoint].numpy(), expected,
                                   5e-3, key)
    else:
      continue
    checked += 1
  assert checked == len(fixture_config['outputs'])


def test_call_returns_heads_as_published():
  config = config_lib.ModelConfig(num_classes=5, resnet_depth=18,
                                  image_size=16, global_bn=False)
  model = model_lib.build_model(config)
  two_views = tf.random.uniform([4, 16, 16, 6])
  projection, logits = model(two_views, training=True)
  assert projection.shape == (8, 128) and logits.shape == (8, 5)

  finetune = model_lib.build_model(config.replace(train_mode='finetune'))
  projection, logits = finetune(tf.random.uniform([4, 16, 16, 3]),
                                training=True)
  assert projection is None and logits.shape == (4, 5)

  no_head = model_lib.build_model(
      config.replace(lineareval_while_pretraining=False))
  projection, logits = no_head(tf.random.uniform([2, 16, 16, 3]),
                               training=False)
  assert projection.shape == (2, 128) and logits is None


def test_linear_eval_while_pretraining_does_not_train_the_encoder():
  config = config_lib.ModelConfig(num_classes=3, resnet_depth=18,
                                  image_size=8, global_bn=False,
                                  use_blur=False)
  model = model_lib.build_model(config)
  images = tf.random.uniform([2, 8, 8, 6])
  with tf.GradientTape() as tape:
    _, logits = model(images, training=True)
    loss = tf.reduce_sum(logits)
  grads = tape.gradient(loss, model.resnet_model.trainable_variables)
  assert all(g is None for g in grads)


@pytest.mark.parametrize('after_block,frozen_groups', [(0, 0), (2, 2), (4, 4)])
def test_fine_tune_after_block_freezes_stem_and_early_groups(after_block,
                                                             frozen_groups):
  config = config_lib.ModelConfig(num_classes=3, resnet_depth=18,
                                  image_size=8, global_bn=False,
                                  train_mode='finetune',
                                  fine_tune_after_block=after_block)
  model = model_lib.build_model(config)
  resnet = model.resnet_model
  assert not any(layer.trainable
                 for layer in resnet.initial_conv_relu_max_pool)
  assert [g.trainable for g in resnet.block_groups] == (
      [False] * frozen_groups + [True] * (4 - frozen_groups))
  stem_bn = resnet.initial_conv_relu_max_pool[2].bn
  before = stem_bn.moving_mean.numpy().copy()
  with tf.GradientTape() as tape:
    _, logits = model(tf.random.uniform([4, 8, 8, 3]) + 1.0, training=True)
  trained = (model.resnet_model.trainable_variables +
             model.supervised_head.trainable_variables)
  assert len(trained) > len(model.supervised_head.trainable_variables) or (
      after_block == 4)
  grads = tape.gradient(logits, trained)
  assert all(g is not None for g in grads)
  np.testing.assert_array_equal(stem_bn.moving_mean.numpy(), before)


def test_fine_tune_after_block_is_refused_in_pretraining():
  config = config_lib.ModelConfig(num_classes=3, resnet_depth=18,
                                  image_size=8, global_bn=False,
                                  fine_tune_after_block=2)
  model = model_lib.build_model(config)
  with pytest.raises(ValueError, match='fine_tune_after_block'):
    model(tf.zeros([2, 8, 8, 6]), training=True)


def test_zero_initialised_last_batch_norm_of_each_block():
  config = config_lib.ModelConfig(num_classes=3, resnet_depth=50,
                                  image_size=32, global_bn=False)
  model = model_lib.build_model(config)
  for group in model.resnet_model.block_groups:
    for block in group.layers:
      last_bn = block.conv_relu_dropblock_layers[-2].bn
      assert np.all(last_bn.gamma.numpy() == 0)


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_pretraining_with_blur_runs_under_mixed_precision(policy):
  # The layers cast the input to float16 / bfloat16 before the blur.
  tf_keras.mixed_precision.set_global_policy(policy)
  try:
    model = model_lib.build_model(config_lib.ModelConfig(
        num_classes=5, resnet_depth=18, image_size=32, use_blur=True,
        global_bn=False))
    projection, logits = model(tf.random.uniform([2, 32, 32, 6]),
                               training=True)
  finally:
    tf_keras.mixed_precision.set_global_policy('float32')
  assert projection.shape == (4, 128) and logits.shape == (4, 5)
  assert np.all(np.isfinite(tf.cast(projection, tf.float32)))
