"""The one place for the optimizer choice and the weight-decay policy.

LARS decays weights itself (decoupled from the loss) except batch-norm
parameters, biases and the supervised head; the supervised head's kernel is
decayed through the loss instead. Other optimizers get an l2 loss on every
variable except batch-norm parameters. This is the reference's policy.
"""

import tensorflow as tf
import tf_keras

from tf2 import lars_optimizer

EXCLUDE_FROM_WEIGHT_DECAY = ('batch_normalization', 'bias', 'head_supervised')
OPTIMIZERS = ('momentum', 'adam', 'lars')


def build_optimizer(name, learning_rate, momentum=0.9, weight_decay=0.0):
  """The optimizer named by --optimizer."""
  if name == 'momentum':
    return tf_keras.optimizers.legacy.SGD(learning_rate, momentum,
                                          nesterov=True)
  if name == 'adam':
    return tf_keras.optimizers.legacy.Adam(learning_rate)
  if name == 'lars':
    return lars_optimizer.LARSOptimizer(
        learning_rate, momentum=momentum, weight_decay=weight_decay,
        exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY))
  raise ValueError(f'optimizer={name!r}: use one of {OPTIMIZERS}.')


def weight_decay_loss(variables, weight_decay, optimizer_name):
  """The l2 term to add to the loss (scalar tensor, 0 if nothing to decay)."""
  if optimizer_name == 'lars':
    decayed = [v for v in variables
               if 'head_supervised' in v.name and 'bias' not in v.name]
  else:
    decayed = [v for v in variables if 'batch_normalization' not in v.name]
  if not decayed or not weight_decay:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
