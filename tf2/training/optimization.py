"""The one place for the optimizer choice and the weight-decay policy.

LARS decays weights itself (decoupled from the loss) and scales no update by
the trust ratio for batch-norm parameters, biases and the supervised head;
the supervised head's kernel is decayed through the loss instead. Other
optimizers get an l2 loss on every variable except batch-norm parameters.
This is the reference's policy. Which variable is which is decided by the
layer that holds it (variable_roles.py), not by its name.
"""

import tensorflow as tf
import tf_keras

from tf2.models import variable_roles as roles_lib
from tf2.training import lars_optimizer

OPTIMIZERS = ('momentum', 'adam', 'lars')
_BATCH_NORM = frozenset({roles_lib.BATCH_NORM_PARAMETER,
                         roles_lib.BATCH_NORM_STATISTIC})
_LARS_EXCLUDED = _BATCH_NORM | {roles_lib.BIAS, roles_lib.SUPERVISED_KERNEL,
                                roles_lib.SUPERVISED_BIAS}


def decayed_in_loss(kind, optimizer_name):
  """Whether the l2 loss decays a variable of this kind (a RULES name)."""
  if optimizer_name == 'lars':
    return kind == roles_lib.SUPERVISED_KERNEL
  return kind not in _BATCH_NORM


def excluded_from_lars(kind):
  """Whether LARS skips weight decay and layer adaptation for this kind."""
  return kind in _LARS_EXCLUDED


def _kind_lookup(model):
  """variable -> kind, from the model's layers."""
  roles = {}
  for ref, role in roles_lib.classify(model).items():
    roles[ref] = role
    # A distributed variable's per-device copies: the optimizer's update
    # receives those under some strategies (multi-worker).
    for component in getattr(ref.deref(), 'values', ()):
      roles[component.ref()] = role

  def kind(variable):
    role = roles.get(variable.ref())
    if role is None:
      raise ValueError(f'{variable.name} is no variable of the model the '
                       'optimizer was built for.')
    return role.kind

  return kind


def build_optimizer(name, learning_rate, momentum=0.9, weight_decay=0.0,
                    model=None):
  """The optimizer named by --optimizer.

  Args:
    name: one of OPTIMIZERS.
    learning_rate: float or schedule.
    momentum: for 'momentum' and 'lars'.
    weight_decay: LARS's decoupled weight decay (others decay through
      `weight_decay_loss`).
    model: the `tf2.models.model.Model` LARS will train, whose layers say which
      variables it excludes (required for 'lars').
  """
  if name == 'momentum':
    return tf_keras.optimizers.legacy.SGD(learning_rate, momentum,
                                          nesterov=True)
  if name == 'adam':
    return tf_keras.optimizers.legacy.Adam(learning_rate)
  if name == 'lars':
    if model is None:
      raise ValueError("optimizer='lars' needs the model it trains: its "
                       'layers say which variables LARS excludes.')
    kind = _kind_lookup(model)
    return lars_optimizer.LARSOptimizer(
        learning_rate, momentum=momentum, weight_decay=weight_decay,
        exclude_from_weight_decay=lambda v: excluded_from_lars(kind(v)))
  raise ValueError(f'optimizer={name!r}: use one of {OPTIMIZERS}.')


def weight_decay_loss(model, weight_decay, optimizer_name):
  """The l2 term to add to the loss (scalar tensor, 0 if nothing to decay).

  Args:
    model: a `tf2.models.model.Model`; its trainable variables are decayed as the
      policy above says.
    weight_decay: the l2 coefficient.
    optimizer_name: one of OPTIMIZERS.
  """
  kind = _kind_lookup(model)
  decayed = [v for v in model.trainable_variables
             if decayed_in_loss(kind(v), optimizer_name)]
  if not decayed or not weight_decay:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
