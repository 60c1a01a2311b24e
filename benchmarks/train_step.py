r"""Prints pretraining throughput (images/s) of the train step.

Synthetic two-view batches go through the same step run.py uses (model,
NT-Xent with cross-replica negatives, weight decay, LARS), under the default
strategy of this machine (all GPUs, else the CPU). Timing starts after
warm-up steps, so tracing and compilation are excluded.

  python benchmarks/train_step.py --config=r18_32px
  python benchmarks/train_step.py --config=r50_224px --batch_size=256 \
    --mixed_precision --jit
"""

import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf2  # pylint: disable=unused-import,g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top,g-bad-import-order
import tf_keras  # pylint: disable=g-import-not-at-top

from tf2 import config as config_lib  # pylint: disable=g-import-not-at-top
from tf2 import model as model_lib  # pylint: disable=g-import-not-at-top
from tf2 import optimization  # pylint: disable=g-import-not-at-top
from tf2 import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
from tf2 import training  # pylint: disable=g-import-not-at-top

CONFIGS = {
    'r18_32px': dict(resnet_depth=18, image_size=32, batch_size=128),
    'r50_224px': dict(resnet_depth=50, image_size=224, batch_size=64),
}

flags.DEFINE_enum('config', 'r18_32px', list(CONFIGS), 'Named configuration.')
flags.DEFINE_integer('batch_size', 0, 'Global batch; 0 = the config\'s.')
flags.DEFINE_integer('warmup_steps', 3, 'Untimed steps first.')
flags.DEFINE_integer('steps', 10, 'Timed steps.')
flags.DEFINE_bool('mixed_precision', False, 'mixed_bfloat16 compute (no loss '
                  'scaling needed).')
flags.DEFINE_bool('jit', False, 'Compile the step with XLA.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  spec = CONFIGS[FLAGS.config]
  batch = FLAGS.batch_size or spec['batch_size']
  size = spec['image_size']
  if FLAGS.mixed_precision:
    tf_keras.mixed_precision.set_global_policy('mixed_bfloat16')
  strategy = strategy_lib.build_strategy(use_tpu=False)
  replicas = strategy.num_replicas_in_sync
  config = config_lib.ModelConfig(
      num_classes=1000, resnet_depth=spec['resnet_depth'], image_size=size,
      global_bn=replicas > 1)
  loss_config = training.LossConfig()
  with strategy.scope():
    model = model_lib.build_model(config)
    optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6)
  step = training.make_train_step(model, optimizer, loss_config, strategy)

  @tf.function(jit_compile=FLAGS.jit)
  def replica_step(images, labels):
    return step(images, labels)

  @tf.function
  def run_steps(images, labels, n):
    for _ in tf.range(n):
      strategy.run(replica_step, (images, labels))

  per_replica = batch // replicas
  images = tf.random.uniform([per_replica, size, size, 6])
  labels = tf.one_hot(tf.zeros([per_replica], tf.int32), 1000)
  run_steps(images, labels, tf.constant(FLAGS.warmup_steps))
  _ = optimizer.iterations.numpy()  # Waits for the warm-up to finish.
  start = time.perf_counter()
  run_steps(images, labels, tf.constant(FLAGS.steps))
  _ = optimizer.iterations.numpy()
  elapsed = time.perf_counter() - start
  device = (tf.config.experimental.get_device_details(
      tf.config.list_physical_devices('GPU')[0]).get('device_name', 'GPU')
            if tf.config.list_physical_devices('GPU') else
            f'CPU ({os.cpu_count()} cores)')
  print(f'config={FLAGS.config} batch={batch} replicas={replicas} '
        f'mixed_precision={FLAGS.mixed_precision} jit={FLAGS.jit} '
        f'device={device}: {batch * FLAGS.steps / elapsed:.1f} images/s '
        f'({elapsed / FLAGS.steps * 1000:.1f} ms/step)')


if __name__ == '__main__':
  app.run(main)
