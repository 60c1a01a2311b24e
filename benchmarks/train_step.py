r"""Prints pretraining throughput (images/s) of the train step.

Synthetic two-view batches go through the same step run.py uses (model,
NT-Xent with cross-replica negatives, weight decay, LARS), under the default
strategy of this machine (all GPUs, else the CPU). Timing starts after
warm-up steps, so tracing and compilation are excluded. The CPU time of the
process per step is printed too: on a machine shared with other work it
varies less than wall time. The output names the CPU, AVX-512, whether
TensorFlow's oneDNN kernels ran and ONEDNN_MAX_CPU_ISA (see
benchmarks/machine.py): CPU figures mean little without them.

  python benchmarks/train_step.py --config=r18_32px
  python benchmarks/train_step.py --config=r50_224px --batch_size=256 \
    --mixed_precision --jit
  # TensorFlow's own convolution gradients (before tf2/conv_ops.py), with the
  # 15 op types that took longest:
  python benchmarks/train_step.py --config=r18_16px --batch_size=64 \
    --conv_gradients=tensorflow --profile_ops=15
"""

import collections
import glob
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf2  # pylint: disable=unused-import,g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top,g-bad-import-order
import tf_keras  # pylint: disable=g-import-not-at-top

from benchmarks import machine  # pylint: disable=g-import-not-at-top
from tf2 import config as config_lib  # pylint: disable=g-import-not-at-top
from tf2 import conv_ops  # pylint: disable=g-import-not-at-top
from tf2 import model as model_lib  # pylint: disable=g-import-not-at-top
from tf2 import optimization  # pylint: disable=g-import-not-at-top
from tf2 import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
from tf2 import training  # pylint: disable=g-import-not-at-top

CONFIGS = {
    'r18_16px': dict(resnet_depth=18, image_size=16, batch_size=64),
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
flags.DEFINE_enum('conv_gradients', 'auto', ['auto', 'tensorflow'],
                  'auto: tf2/conv_ops.py decides (its reformulated gradients '
                  'when no GPU/TPU is visible); tensorflow: TensorFlow\'s own '
                  'convolution gradient kernels everywhere.')
flags.DEFINE_integer('profile_ops', 0, 'If > 0, trace the timed steps and '
                     'print this many op types (and single ops) by total '
                     'time. Tracing slows the step a little.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  spec = CONFIGS[FLAGS.config]
  batch = FLAGS.batch_size or spec['batch_size']
  size = spec['image_size']
  if FLAGS.conv_gradients == 'tensorflow':
    conv_ops.set_cpu_gradients(False)
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
    optimizer = optimization.build_optimizer('lars', 0.1, 0.9, 1e-6,
                                             model=model)
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
  trace_dir = tempfile.mkdtemp() if FLAGS.profile_ops else None
  if trace_dir:
    tf.profiler.experimental.start(trace_dir)
  start, cpu_start = time.perf_counter(), time.process_time()
  run_steps(images, labels, tf.constant(FLAGS.steps))
  _ = optimizer.iterations.numpy()
  elapsed = time.perf_counter() - start
  cpu_per_step = (time.process_time() - cpu_start) / FLAGS.steps
  if trace_dir:
    tf.profiler.experimental.stop()
  device = (tf.config.experimental.get_device_details(
      tf.config.list_physical_devices('GPU')[0]).get('device_name', 'GPU')
            if tf.config.list_physical_devices('GPU') else
            f'CPU ({os.cpu_count()} cores)')
  print(f'config={FLAGS.config} batch={batch} replicas={replicas} '
        f'mixed_precision={FLAGS.mixed_precision} jit={FLAGS.jit} '
        f'conv_gradients={FLAGS.conv_gradients} device={device}: '
        f'{batch * FLAGS.steps / elapsed:.1f} images/s '
        f'({elapsed / FLAGS.steps * 1000:.1f} ms/step, '
        f'{cpu_per_step * 1000:.0f} CPU ms/step)')
  print('machine:', machine.describe(machine.tensorflow_onednn_enabled()))
  if trace_dir:
    print_op_profile(trace_dir, FLAGS.profile_ops, FLAGS.steps)


def op_times(trace_dir):
  """Milliseconds per op type and per op name in a profiler trace.

  Args:
    trace_dir: the directory given to tf.profiler.experimental.start.

  Returns:
    (Counter {op type: ms}, Counter {op name: ms}), summed over the executor
    threads (concurrent ops both count, so the total can exceed wall time).
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                          recursive=True))[-1]
  space = xplane_pb2.XSpace()
  with open(path, 'rb') as f:
    space.ParseFromString(f.read())
  by_type, by_name = collections.Counter(), collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        metadata = plane.event_metadata[event.metadata_id]
        # Op events are named '<op name>:<op type>' and carry the type.
        if metadata.display_name and ':' in metadata.name:
          by_type[metadata.display_name] += event.duration_ps / 1e9
          by_name[metadata.name.rsplit(':', 1)[0]] += event.duration_ps / 1e9
  return by_type, by_name


def print_op_profile(trace_dir, top, steps):
  by_type, by_name = op_times(trace_dir)
  print(f'op time per step, summed over threads: '
        f'{sum(by_type.values()) / steps:.0f} ms')
  for op_type, ms in by_type.most_common(top):
    print(f'  {ms / steps:9.1f} ms  {op_type}')
  print('heaviest single ops (ms per step):')
  for name, ms in by_name.most_common(top):
    print(f'  {ms / steps:9.1f} ms  {name.split("gradient_tape/")[-1]}')


if __name__ == '__main__':
  app.run(main)
