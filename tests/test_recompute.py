"""--recompute_blocks: the same gradients and moving averages, recomputed."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.models import recompute
from tf2.training import step as training

_CONFIG = config_lib.ModelConfig(num_classes=4, resnet_depth=18, image_size=8,
                                 use_blur=False, proj_out_dim=8,
                                 global_bn=False)


def _step(config, images, labels, compiled):
  tf_keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  loss_config = training.LossConfig(weight_decay=0.0)

  def grads():
    with tf.GradientTape() as tape:
      loss = training.compute_loss(model, images, labels, loss_config)
    return loss, tape.gradient(loss, model.trainable_variables)

  loss, gradients = (tf.function(grads) if compiled else grads)()
  moving = [v.numpy() for v in model.non_trainable_variables]
  return loss.numpy(), [g.numpy() for g in gradients], moving


@pytest.mark.parametrize('compiled', [False, True])
def test_recomputed_blocks_leave_gradients_and_statistics_unchanged(
    compiled):
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(size=[4, 8, 8, 6]), tf.float32)
  labels = tf.one_hot(rng.randint(0, 4, size=[4]), 4)
  plain = _step(_CONFIG, images, labels, compiled)
  rerun = _step(_CONFIG.replace(recompute_blocks=True), images, labels,
                compiled)
  np.testing.assert_allclose(rerun[0], plain[0], atol=1e-6, rtol=0)
  assert len(rerun[1]) == len(plain[1]) > 50
  for r, p in zip(rerun[1], plain[1]):
    np.testing.assert_allclose(r, p, atol=1e-6, rtol=0)
  # One update of the moving averages per step, not one per run of a block.
  assert len(rerun[2]) == len(plain[2]) > 20
  for r, p in zip(rerun[2], plain[2]):
    np.testing.assert_allclose(r, p, atol=1e-6, rtol=0)


def test_the_blocks_really_run_twice_under_a_tape():
  # Not vacuous: the wrapper is what the model calls, and it reruns.
  model = model_lib.build_model(_CONFIG.replace(recompute_blocks=True))
  block = model.resnet_model.block_groups[0].layers[1]
  calls = []
  original = block.call

  def counting(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  block.call = counting
  images = tf.zeros([2, 8, 8, 6])
  with tf.GradientTape() as tape:
    projection, _ = model(images, training=True)
  assert len(calls) == 1
  tape.gradient(projection, model.trainable_variables)
  assert len(calls) == 2
  assert not recompute.applies(True)  # No tape here: nothing to save.
  model(images, training=True)
  assert len(calls) == 3


def test_the_checkpoint_object_graph_does_not_change(tmp_path):
  keys = []
  for flag in (False, True):
    model = model_lib.build_model(_CONFIG.replace(recompute_blocks=flag))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / str(flag)))
    keys.append(sorted(tf.train.list_variables(path)))
  assert keys[0] == keys[1] and len(keys[0]) > 100
