"""LARS and the weight-decay policy against the reference."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tf2.training import lars_optimizer
from tf2.training import optimization


@pytest.mark.parametrize('i', [0, 1, 2])
def test_three_lars_steps_match_reference(reference_ops, i):
  ref = {k.split('/', 1)[1]: v for k, v in reference_ops.items()
         if k.startswith(f'lars{i}/')}
  lr, momentum, nesterov, weight_decay, classic = ref['params']
  kernel = tf.Variable(ref['kernel_init'], name='dense/kernel')
  beta = tf.Variable(ref['beta_init'], name='batch_normalization/beta')
  optimizer = lars_optimizer.LARSOptimizer(
      float(lr), momentum=float(momentum), use_nesterov=bool(nesterov),
      weight_decay=float(weight_decay), classic_momentum=bool(classic),
      # The reference excludes `batch_normalization/beta` by its name.
      exclude_from_weight_decay=lambda v: v.ref() == beta.ref())
  for step in range(3):
    optimizer.apply_gradients([
        (tf.constant(ref[f'grad_kernel_{step}']), kernel),
        (tf.constant(ref[f'grad_beta_{step}']), beta)])
  np.testing.assert_allclose(kernel.numpy(), ref['kernel_final'], atol=1e-6,
                             rtol=1e-6)
  np.testing.assert_allclose(beta.numpy(), ref['beta_final'], atol=1e-6,
                             rtol=1e-6)


def test_slot_is_named_momentum_in_checkpoints(tmp_path):
  var = tf.Variable([1.0, 2.0], name='dense/kernel')
  optimizer = lars_optimizer.LARSOptimizer(0.1)
  optimizer.apply_gradients([(tf.constant([0.1, 0.1]), var)])
  assert optimizer.get_slot_names() == ['Momentum']
  path = tf.train.Checkpoint(v=var, optimizer=optimizer).write(
      str(tmp_path / 'ckpt'))
  assert any('.OPTIMIZER_SLOT/optimizer/Momentum' in name
             for name, _ in tf.train.list_variables(path))


class _TinyModel(tf_keras.layers.Layer):
  """A model's parts in miniature: an encoder conv + batch norm, a head."""

  def __init__(self):
    super().__init__()
    self.resnet_model = tf_keras.Sequential([
        tf_keras.layers.Conv2D(1, (3, 1), use_bias=False,
                               kernel_initializer='ones'),
        tf_keras.layers.BatchNormalization(gamma_initializer='ones',
                                           beta_initializer='ones')])
    self.resnet_model.build([None, 3, 1, 1])
    self._projection_head = None
    self.supervised_head = tf_keras.layers.Dense(
        2, kernel_initializer='ones', bias_initializer='ones')
    self.supervised_head.build([None, 2])


def test_weight_decay_loss_lars_only_decays_supervised_kernel():
  # Ones everywhere: head kernel 2x2, head bias 2, conv kernel 3, and batch
  # norm gamma and beta 1 each.
  model = _TinyModel()
  lars = optimization.weight_decay_loss(model, 0.1, 'lars')
  np.testing.assert_allclose(lars.numpy(), 0.1 * 4 / 2)
  momentum = optimization.weight_decay_loss(model, 0.1, 'momentum')
  np.testing.assert_allclose(momentum.numpy(), 0.1 * (4 + 2 + 3) / 2)


def test_unknown_optimizer_names_the_choices():
  with pytest.raises(ValueError, match='momentum'):
    optimization.build_optimizer('sgd', 0.1)
