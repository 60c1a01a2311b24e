"""Mixed precision: float16 / bfloat16 compute, float32 everything that keeps.

`--mixed_precision` is 'float32' (as published), 'mixed_bfloat16' or
'mixed_float16'. Under a mixed policy tf_keras layers compute in 16 bits
while their variables stay float32, so checkpoints and SavedModels have
exactly the published layout and a run may resume under another policy.
What must not lose precision stays float32: batch-norm statistics (Keras
keeps them in float32), the projection output that enters NT-Xent, the
logits and every loss (`training._full_precision`), and the optimizer's
arithmetic (its variables and gradients are float32).

float16 has a small range, so 'mixed_float16' trains with dynamic loss
scaling (`LossScaleOptimizer`). Its loss scale is saved under its own name
(`loss_scale`) while the optimizer is saved as itself (`optimizer`, with
its `Momentum` slots), so the checkpoint keys of a float32 run and a
mixed_float16 run are the same plus that one object.
"""

import contextlib

import tensorflow as tf
import tf_keras

# The --mixed_precision choices (settings.py offers these).
POLICIES = ('float32', 'mixed_bfloat16', 'mixed_float16')


@contextlib.contextmanager
def policy(name):
  """Sets tf_keras's global dtype policy inside the block, then restores it.

  Models must be built inside the block: a layer takes the policy current
  when it is created.
  """
  if name not in POLICIES:
    raise ValueError(f'mixed_precision={name!r}: use one of {POLICIES}.')
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, policy_name):
  """The optimizer to train with: loss-scaled under 'mixed_float16'."""
  if policy_name == 'mixed_float16':
    return tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


def is_loss_scaled(optimizer):
  return isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)


def checkpoint_objects(optimizer):
  """{name: trackable} of the optimizer, as the published checkpoints key it.

  A LossScaleOptimizer would put the optimizer under
  `optimizer/base_optimizer/...`; saving the inner one as `optimizer` keeps
  the keys, and the scale's state goes under `loss_scale`.
  """
  if not is_loss_scaled(optimizer):
    return {'optimizer': optimizer}
  # tf_keras tracks the scale's state as this trackable (checkpoint name
  # 'loss_scale'); it holds the current scale and the count of good steps.
  return {'optimizer': optimizer.inner_optimizer,
          'loss_scale': optimizer._loss_scale}  # pylint: disable=protected-access


def scaled(optimizer, loss):
  """The loss to differentiate (multiplied by the loss scale, if any)."""
  return optimizer.get_scaled_loss(loss) if is_loss_scaled(optimizer) else loss


def unscaled(optimizer, grads):
  """The true gradients of `scaled`'s loss (None entries kept)."""
  if not is_loss_scaled(optimizer):
    return grads
  present = [g for g in grads if g is not None]
  restored = iter(optimizer.get_unscaled_gradients(present))
  return [None if g is None else next(restored) for g in grads]


def compute_dtype():
  """The compute dtype of the current global policy."""
  return tf.as_dtype(tf_keras.mixed_precision.global_policy().compute_dtype)
