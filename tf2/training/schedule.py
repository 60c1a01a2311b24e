"""Learning-rate schedule: linear warm-up then cosine decay, as published."""

import math

import tensorflow as tf
import tf_keras

SCALINGS = ('linear', 'sqrt')


def get_train_steps(num_examples, train_batch_size, train_epochs,
                    train_steps=0):
  """`train_steps` if given, else the reference's epoch-based count."""
  return train_steps or (num_examples * train_epochs // train_batch_size + 1)


def scaled_learning_rate(base_learning_rate, train_batch_size, scaling):
  """lr * B / 256 ('linear') or lr * sqrt(B) ('sqrt')."""
  if scaling == 'linear':
    return base_learning_rate * train_batch_size / 256.
  if scaling == 'sqrt':
    return base_learning_rate * math.sqrt(train_batch_size)
  raise ValueError(f'learning_rate_scaling={scaling!r}: use one of '
                   f'{SCALINGS}.')


class WarmUpAndCosineDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up to the scaled rate, then cosine decay to zero.

  Args:
    base_learning_rate: the rate per 256 examples ('linear') or the
      coefficient of sqrt(batch) ('sqrt').
    num_examples: training examples per epoch.
    train_batch_size: global batch size.
    warmup_epochs: epochs of linear warm-up.
    total_steps: steps of the whole run (see get_train_steps).
    learning_rate_scaling: 'linear' or 'sqrt'.
  """

  def __init__(self, base_learning_rate, num_examples, train_batch_size,
               warmup_epochs, total_steps, learning_rate_scaling='linear',
               name=None):
    super().__init__()
    self.base_learning_rate = base_learning_rate
    self.num_examples = num_examples
    self.train_batch_size = train_batch_size
    self.warmup_epochs = warmup_epochs
    self.total_steps = total_steps
    self.learning_rate_scaling = learning_rate_scaling
    self._name = name
    self.scaled_lr = scaled_learning_rate(base_learning_rate,
                                          train_batch_size,
                                          learning_rate_scaling)
    self.warmup_steps = int(round(warmup_epochs * num_examples //
                                  train_batch_size))
    self._cosine_decay = tf_keras.optimizers.schedules.CosineDecay(
        self.scaled_lr, total_steps - self.warmup_steps)

  def __call__(self, step):
    with tf.name_scope(self._name or 'WarmUpAndCosineDecay'):
      step = tf.cast(step, tf.float32)
      if self.warmup_steps:
        warmup = step / float(self.warmup_steps) * self.scaled_lr
      else:
        warmup = self.scaled_lr
      return tf.where(step < self.warmup_steps, warmup,
                      self._cosine_decay(step - self.warmup_steps))

  def get_config(self):
    return {
        'base_learning_rate': self.base_learning_rate,
        'num_examples': self.num_examples,
        'train_batch_size': self.train_batch_size,
        'warmup_epochs': self.warmup_epochs,
        'total_steps': self.total_steps,
        'learning_rate_scaling': self.learning_rate_scaling,
    }
