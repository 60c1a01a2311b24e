"""The pretraining step run.py runs, built from plain arguments for benchmarks.

One source for `train_step.py` (throughput) and `memory.py` (peak memory):
the model of `model.build_model`, LARS wrapped for the precision policy, and
`step.make_train_step` (NT-Xent with cross-replica negatives, weight decay,
optionally K micro-batches, recomputed blocks, the colour distortion on the
device) under the default strategy of this machine (all GPUs, else the CPU).
Call `build` inside `precision.policy(mixed_precision)`.
"""

import collections
import os

import tensorflow as tf

from tf2.data import color_augment
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import precision
from tf2.runtime import strategy as strategy_lib
from tf2.training import optimization
from tf2.training import step as training

Built = collections.namedtuple('Built', 'strategy model optimizer step')


def gpu():
  return bool(tf.config.list_physical_devices('GPU'))


def device_name():
  if gpu():
    return tf.config.experimental.get_device_details(
        tf.config.list_physical_devices('GPU')[0]).get('device_name', 'GPU')
  return f'CPU ({os.cpu_count()} cores)'


def build(resnet_depth, image_size, num_classes=1000, width_multiplier=1,
          sk_ratio=0.0, mixed_precision='float32', jit_compile=False,
          augment_on_device=False, num_microbatches=1,
          recompute_blocks=False):
  """The strategy, model, optimizer and replica step of one pretraining run.

  Args:
    resnet_depth, image_size, num_classes, width_multiplier, sk_ratio,
      recompute_blocks: the ModelConfig fields.
    mixed_precision: the policy name, for wrapping the optimizer (the
      caller holds `precision.policy` of the same name).
    jit_compile, augment_on_device, num_microbatches: as run.py's flags.

  Returns:
    Built(strategy, model, optimizer, step); step(images, labels) is the
    replica step (images (B/replicas, H, W, 6), two views).
  """
  strategy = strategy_lib.build_strategy(use_tpu=False)
  config = config_lib.ModelConfig(
      num_classes=num_classes, resnet_depth=resnet_depth,
      width_multiplier=width_multiplier, sk_ratio=sk_ratio,
      image_size=image_size, global_bn=strategy.num_replicas_in_sync > 1,
      recompute_blocks=recompute_blocks)
  with strategy.scope():
    model = model_lib.build_model(config)
    optimizer = precision.wrap_optimizer(
        optimization.build_optimizer('lars', 0.1, 0.9, 1e-6, model=model),
        mixed_precision)
  augment_fn = color_augment.make_augment_fn() if augment_on_device else None
  step = training.make_train_step(
      model, optimizer, training.LossConfig(), strategy,
      augment_fn=augment_fn, jit_compile=jit_compile,
      num_microbatches=num_microbatches)
  return Built(strategy, model, optimizer, step)


def synthetic_batch(strategy, batch, image_size, num_classes=1000):
  """One replica's share of a random two-view batch, and its labels."""
  per_replica = batch // strategy.num_replicas_in_sync
  images = tf.random.uniform([per_replica, image_size, image_size, 6])
  labels = tf.one_hot(tf.zeros([per_replica], tf.int32), num_classes)
  return images, labels


def make_run_steps(strategy, step):
  """`run_steps(images, labels, n)`: n steps on the same batch, one trace."""

  @tf.function
  def run_steps(images, labels, n):
    for _ in tf.range(n):
      strategy.run(step, (images, labels))

  return run_steps
