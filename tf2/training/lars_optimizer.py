"""LARS: layer-wise adaptive rate scaling for large-batch training.

You, Gitman, Ginsburg (2017), as used by SimCLR. The slot is named
`Momentum`: published checkpoints store it under that name, so resuming a
reference model_dir (optimizer included) needs the same name.

Which variables skip weight decay and layer adaptation is a predicate on the
variable (optimization.py builds it from the model's layers), not a list of
name patterns as in the reference.
"""

import tensorflow as tf
import tf_keras

EETA_DEFAULT = 0.001


class LARSOptimizer(tf_keras.optimizers.legacy.Optimizer):
  """Momentum SGD whose step per layer is scaled by eeta * |w| / |g|.

  Args:
    learning_rate: float or schedule.
    momentum: momentum coefficient.
    use_nesterov: Nesterov momentum.
    weight_decay: added to the gradient as weight_decay * w (decoupled from
      the loss), except for variables excluded by
      `exclude_from_weight_decay`.
    exclude_from_weight_decay: predicate, variable -> bool: True for the
      variables updated without weight decay. None excludes none. It gets
      the variables given to `apply_gradients`.
    exclude_from_layer_adaptation: predicate for the variables updated
      without the trust ratio; defaults to `exclude_from_weight_decay`.
    classic_momentum: apply the trust ratio to the gradient before momentum
      (True, as in SimCLR) or to the momentum update after it.
    eeta: trust coefficient.
  """

  def __init__(self, learning_rate, momentum=0.9, use_nesterov=False,
               weight_decay=0.0, exclude_from_weight_decay=None,
               exclude_from_layer_adaptation=None, classic_momentum=True,
               eeta=EETA_DEFAULT, name='LARSOptimizer', **kwargs):
    super().__init__(name, **kwargs)
    self._set_hyper('learning_rate', learning_rate)
    self.momentum = momentum
    self.weight_decay = weight_decay
    self.use_nesterov = use_nesterov
    self.classic_momentum = classic_momentum
    self.eeta = eeta
    self.exclude_from_weight_decay = exclude_from_weight_decay or (
        lambda variable: False)
    self.exclude_from_layer_adaptation = (
        exclude_from_layer_adaptation or self.exclude_from_weight_decay)

  def _create_slots(self, var_list):
    for var in var_list:
      self.add_slot(var, 'Momentum')

  @staticmethod
  def _given_variable(var):
    """The variable given to apply_gradients for the one being updated.

    Under a MirroredStrategy each replica's component is updated; the
    predicates are about the MirroredVariable holding it (Keras finds slots
    the same way).
    """
    container = getattr(var, '_distributed_container', None)
    return container() if container is not None else var

  def _use_weight_decay(self, var):
    return bool(self.weight_decay) and not self.exclude_from_weight_decay(
        self._given_variable(var))

  def _do_layer_adaptation(self, var):
    return not self.exclude_from_layer_adaptation(self._given_variable(var))

  @staticmethod
  def _trust_ratio(eeta, w_norm, u_norm):
    """eeta * |w| / |u| where both norms are positive, else 1."""
    safe = tf.logical_and(w_norm > 0, u_norm > 0)
    return tf.where(safe, eeta * w_norm / tf.where(safe, u_norm, 1.0), 1.0)

  def _resource_apply_dense(self, grad, var, apply_state=None):
    coefficients = ((apply_state or {}).get((var.device, var.dtype.base_dtype))
                    or self._fallback_apply_state(var.device,
                                                  var.dtype.base_dtype))
    learning_rate = coefficients['lr_t']
    momentum_slot = self.get_slot(var, 'Momentum')
    if self._use_weight_decay(var):
      grad = grad + self.weight_decay * var
    adapt = self._do_layer_adaptation(var)
    if self.classic_momentum:
      trust_ratio = 1.0
      if adapt:
        trust_ratio = self._trust_ratio(self.eeta, tf.norm(var),
                                        tf.norm(grad))
      scaled_lr = learning_rate * trust_ratio
      next_v = self.momentum * momentum_slot + scaled_lr * grad
      update = (self.momentum * next_v + scaled_lr * grad
                if self.use_nesterov else next_v)
      next_var = var - update
    else:
      next_v = self.momentum * momentum_slot + grad
      update = self.momentum * next_v + grad if self.use_nesterov else next_v
      trust_ratio = 1.0
      if adapt:
        trust_ratio = self._trust_ratio(self.eeta, tf.norm(var),
                                        tf.norm(update))
      next_var = var - trust_ratio * learning_rate * update
    return tf.group(var.assign(next_var), momentum_slot.assign(next_v))

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    raise NotImplementedError('LARS needs dense gradients.')

  def get_config(self):
    """The hyperparameters; the exclusion predicates cannot be serialised."""
    config = super().get_config()
    config.update({
        'learning_rate': self._serialize_hyperparameter('learning_rate'),
        'momentum': self.momentum,
        'use_nesterov': self.use_nesterov,
        'weight_decay': self.weight_decay,
        'classic_momentum': self.classic_momentum,
        'eeta': self.eeta,
    })
    return config
