"""Mixed precision and XLA: same step, float32 where it matters, same keys."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.checkpoints import export
from tf2.config import experiment as experiment_lib
from tf2.config import validation
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import precision
from tf2.training import checkpoint_state
from tf2.training import optimization
from tf2.training import step as training

_CONFIG = config_lib.ModelConfig(num_classes=4, resnet_depth=18, image_size=8,
                                 proj_out_dim=8, global_bn=False)
_IMAGES = tf.random.stateless_uniform([8, 8, 8, 6], [1, 2])
_LABELS = tf.one_hot([0, 1, 2, 3] * 2, 4)


def _one_step(policy, train_mode, optimizer_name='lars', jit_compile=False,
              learning_rate=0.1):
  """(loss, model, optimizer) after one step of a fresh seeded model."""
  strategy = tf.distribute.get_strategy()
  views = 6 if train_mode == 'pretrain' else 3
  with precision.policy(policy):
    tf_keras.utils.set_random_seed(0)
    model = model_lib.build_model(_CONFIG.replace(
        train_mode='pretrain' if train_mode == 'pretrain' else 'finetune'))
    teacher = None
    if train_mode == 'distill':
      teacher = model_lib.build_model(_CONFIG.replace(train_mode='finetune'))
      teacher.trainable = False
    optimizer = precision.wrap_optimizer(optimization.build_optimizer(
        optimizer_name, learning_rate, momentum=0.0, model=model), policy)
    step = training.make_train_step(
        model, optimizer, training.LossConfig(train_mode=train_mode,
                                              optimizer=optimizer_name),
        strategy, teacher=teacher, jit_compile=jit_compile)
    loss = tf.function(step)(_IMAGES[..., :views], _LABELS)
  return loss, model, optimizer


@pytest.mark.parametrize('policy', precision.POLICIES)
@pytest.mark.parametrize('train_mode', ['pretrain', 'finetune', 'distill'])
def test_every_policy_trains_every_mode_with_float32_loss_and_variables(
    policy, train_mode):
  loss, model, optimizer = _one_step(policy, train_mode)
  assert loss.dtype == tf.float32 and np.isfinite(loss.numpy())
  assert {v.dtype for v in model.variables} == {tf.float32}
  assert optimizer.iterations.numpy() == 1
  compute = {l.compute_dtype for l in model.resnet_model.block_groups}
  assert compute == {policy.replace('mixed_', '')}


def test_16_bit_first_losses_agree_with_float32():
  # Same weights and batch. bfloat16 keeps 8 significant bits (relative
  # rounding 2**-9 = 2e-3 per op), float16 11 (2**-12 = 2.4e-4); through
  # ~20 convolutions and batch norms the errors add up to about ten times
  # that, well below the loss's own changes between steps (~1e-1).
  reference, _, _ = _one_step('float32', 'pretrain')
  for policy, tolerance in (('mixed_bfloat16', 2e-2),
                            ('mixed_float16', 3e-3)):
    loss, _, _ = _one_step(policy, 'pretrain')
    np.testing.assert_allclose(loss.numpy(), reference.numpy(),
                               rtol=tolerance, err_msg=policy)


def _keys(path):
  return {k for k, _ in tf.train.list_variables(path)}


def test_mixed_float16_checkpoints_restore_under_float32_and_back(tmp_path):
  _, model_16, optimizer_16 = _one_step('mixed_float16', 'pretrain')
  assert precision.is_loss_scaled(optimizer_16)
  state_16 = checkpoint_state.CheckpointState(model_16, optimizer_16,
                                              str(tmp_path / 'fp16'), 1)
  path_16 = state_16.save()
  _, model_32, optimizer_32 = _one_step('float32', 'pretrain')
  path_32 = checkpoint_state.CheckpointState(
      model_32, optimizer_32, str(tmp_path / 'fp32'), 1).save()
  # The same keys (the model, its Momentum slots, the step), plus the scale.
  extra = _keys(path_16) - _keys(path_32)
  assert extra and all(k.startswith('loss_scale/') for k in extra)
  assert not _keys(path_32) - _keys(path_16)
  assert any('.OPTIMIZER_SLOT/optimizer/Momentum' in k
             for k in _keys(path_16))
  # Each restores into a model and optimizer of the other policy.
  for policy, path, source in (('float32', path_16, model_16),
                               ('mixed_float16', path_32, model_32)):
    with precision.policy(policy):
      model = model_lib.build_model(_CONFIG)
      optimizer = precision.wrap_optimizer(optimization.build_optimizer(
          'lars', 0.1, model=model), policy)
      state = checkpoint_state.CheckpointState(
          model, optimizer, str(tmp_path / policy), 1)
      status = state.checkpoint.restore(path).expect_partial()
      if policy == 'float32':  # A float32 checkpoint has no loss scale.
        status.assert_existing_objects_matched()
    for mine, theirs in zip(model.variables, source.variables):
      np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert state.global_step.numpy() == 1


def test_a_mixed_precision_model_exports_the_float32_signature(tmp_path):
  with precision.policy('mixed_bfloat16'):
    model = model_lib.build_model(_CONFIG)
  path = export.export_saved_model(model, tmp_path / 'export')
  outputs = tf.saved_model.load(path)(tf.zeros([2, 8, 8, 3]), trainable=False)
  assert {v.dtype for v in outputs.values()} == {tf.float32}
  _, logits = model(tf.zeros([2, 8, 8, 3]), training=False)
  np.testing.assert_allclose(outputs['logits_sup'].numpy(),
                             tf.cast(logits, tf.float32).numpy(), atol=2e-2)


def _update(jit_compile):
  """Loss and the first step's update of SGD (lr 1): minus the gradient."""
  strategy = tf.distribute.get_strategy()
  tf_keras.utils.set_random_seed(0)
  model = model_lib.build_model(_CONFIG)
  before = [v.numpy() for v in model.trainable_variables]
  optimizer = optimization.build_optimizer('momentum', 1.0, momentum=0.0,
                                           model=model)
  step = training.make_train_step(model, optimizer, training.LossConfig(),
                                  strategy, jit_compile=jit_compile)
  loss = tf.function(step)(_IMAGES, _LABELS)
  return loss.numpy(), [b - v.numpy() for b, v in
                        zip(before, model.trainable_variables)]


def test_the_xla_step_equals_the_plain_step():
  loss, update = _update(jit_compile=False)
  loss_xla, update_xla = _update(jit_compile=True)
  # The golden train-mode tolerance, relative to each tensor's largest
  # magnitude (batch statistics amplify reduction-order differences).
  np.testing.assert_allclose(loss_xla, loss, rtol=5e-3)
  for plain, compiled in zip(update, update_xla):
    scale = max(np.abs(plain).max(), 1e-6)
    assert np.abs(compiled - plain).max() <= 5e-3 * scale


def test_xla_with_several_cpu_replicas_says_why_it_cannot(two_cpu_strategy):
  # The rule lives in validation (one place); the step assumes it holds.
  experiment = experiment_lib.Experiment.from_flat(model_dir='/tmp/m',
                                                   jit_compile=True)
  with pytest.raises(ValueError, match='collectives between CPU replicas'):
    validation.validate_replicas(
        experiment, two_cpu_strategy.num_replicas_in_sync,
        xla_collectives=training.whole_step_compilable(two_cpu_strategy))
