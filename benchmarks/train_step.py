r"""Prints pretraining throughput of the train step: bare, then end to end.

The bare step: one batch of synthetic two-view images, already in memory,
goes through the step run.py uses (model, NT-Xent with cross-replica
negatives, weight decay, LARS; with --augment_on_device the colour
distortion too) under the default strategy of this machine (all GPUs, else
the CPU). With --input=digits or --input=jpegs the same step is then fed by
run.py's input pipeline and training loop (decoding, crops, flips and, on
the host unless --augment_on_device, the colour distortion): the embedded
digits, or synthetic JPEGs the size of an average ImageNet photo
(benchmarks/synthetic_jpegs.py). Timing starts after warm-up steps, so
tracing and compilation are excluded. Figures: images/s, views/s (two views
per image), ms/step, the CPU time of the process per step (less moved by
other work on a shared machine than wall time) and, on a GPU, its peak
memory. The output names the CPU, AVX-512, whether TensorFlow's oneDNN
kernels ran and ONEDNN_MAX_CPU_ISA (benchmarks/machine.py): CPU figures mean
little without them.

  python benchmarks/train_step.py --config=r18_32px --input=digits
  python benchmarks/train_step.py --config=r50_224px --batch_size=256 \
    --mixed_precision=mixed_bfloat16 --jit_compile --input=jpegs \
    --augment_on_device
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

from benchmarks import synthetic_jpegs  # pylint: disable=g-import-not-at-top
from benchmarks import machine  # pylint: disable=g-import-not-at-top
from benchmarks import pretraining_step  # pylint: disable=g-import-not-at-top
from tf2.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top
from tf2.models import conv_ops  # pylint: disable=g-import-not-at-top
from tf2.runtime import precision  # pylint: disable=g-import-not-at-top
from tf2.training import loop as train_loop  # pylint: disable=g-import-not-at-top

CONFIGS = {
    'r18_16px': dict(resnet_depth=18, image_size=16, batch_size=64),
    'r18_32px': dict(resnet_depth=18, image_size=32, batch_size=128),
    'r50_224px': dict(resnet_depth=50, image_size=224, batch_size=64),
}

flags.DEFINE_enum('config', 'r18_32px', list(CONFIGS), 'Named configuration.')
flags.DEFINE_integer('batch_size', 0, 'Global batch; 0 = the config\'s.')
flags.DEFINE_integer('warmup_steps', 3, 'Untimed steps first.')
flags.DEFINE_integer('steps', 10, 'Timed steps.')
flags.DEFINE_enum('mixed_precision', 'float32', list(precision.POLICIES),
                  'As run.py\'s --mixed_precision.')
flags.DEFINE_bool('jit_compile', False, 'As run.py\'s --jit_compile.')
flags.DEFINE_bool('augment_on_device', False,
                  'As run.py\'s --augment_on_device: the colour distortion '
                  'runs in the step, not in the input pipeline.')
flags.DEFINE_enum('input', 'synthetic', ['synthetic', 'digits', 'jpegs'],
                  'synthetic: the bare step only; digits or jpegs: then the '
                  'same step end to end, fed by run.py\'s input pipeline.')
flags.DEFINE_integer('num_jpegs', 256, 'Synthetic JPEGs for --input=jpegs.')
flags.DEFINE_integer('num_microbatches', 1,
                     'As run.py\'s --num_microbatches.')
flags.DEFINE_bool('recompute_blocks', False,
                  'As run.py\'s --recompute_blocks.')
flags.DEFINE_enum('conv_gradients', 'auto', ['auto', 'tensorflow'],
                  'auto: tf2/conv_ops.py decides (its reformulated gradients '
                  'when no GPU/TPU is visible); tensorflow: TensorFlow\'s own '
                  'convolution gradient kernels everywhere.')
flags.DEFINE_integer('profile_ops', 0, 'If > 0, trace the timed bare steps '
                     'and print this many op types (and single ops) by total '
                     'time. Tracing slows the step a little.')
FLAGS = flags.FLAGS


def _timed(run, steps, wait):
  """(seconds, CPU seconds) per step of run(steps), after `wait()` returns.

  On a GPU the peak memory counter is reset first (see _peak_memory).
  """
  if pretraining_step.gpu():
    tf.config.experimental.reset_memory_stats('GPU:0')
  start, cpu_start = time.perf_counter(), time.process_time()
  run(steps)
  wait()
  return ((time.perf_counter() - start) / steps,
          (time.process_time() - cpu_start) / steps)


def _peak_memory():
  if not pretraining_step.gpu():
    return ''
  peak = tf.config.experimental.get_memory_info('GPU:0')['peak']
  return f', peak GPU memory {peak / 2**30:.1f} GiB'


def _line(name, batch, seconds, cpu_seconds):
  return (f'{name}: {batch / seconds:.1f} images/s, '
          f'{2 * batch / seconds:.1f} views/s ({seconds * 1000:.1f} ms/step, '
          f'{cpu_seconds * 1000:.0f} CPU ms/step{_peak_memory()})')


def _builder(tmp):
  """The TFDS builder --input names, prepared under `tmp`."""
  if FLAGS.input == 'digits':
    return data_lib.get_builder('digits', os.path.join(tmp, 'tfds'))
  folder = os.path.join(tmp, 'jpegs')
  synthetic_jpegs.write_jpegs(folder, FLAGS.num_jpegs)
  return data_lib.get_builder(folder, os.path.join(tmp, 'tfds'))


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    builder = None if FLAGS.input == 'synthetic' else _builder(tmp)
    measure(builder)
  print('machine:', machine.describe(machine.tensorflow_onednn_enabled()))


def measure(builder):
  """Prints the bare step's figures, then end to end from `builder` if any."""
  spec = CONFIGS[FLAGS.config]
  batch = FLAGS.batch_size or spec['batch_size']
  size = spec['image_size']
  if FLAGS.conv_gradients == 'tensorflow':
    conv_ops.set_cpu_gradients(False)
  num_classes = data_lib.num_classes(builder) if builder else 1000
  with precision.policy(FLAGS.mixed_precision):
    strategy, _, optimizer, step = pretraining_step.build(
        spec['resnet_depth'], size, num_classes,
        mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
        augment_on_device=FLAGS.augment_on_device,
        num_microbatches=FLAGS.num_microbatches,
        recompute_blocks=FLAGS.recompute_blocks)
    replicas = strategy.num_replicas_in_sync
    print(f'config={FLAGS.config} batch={batch} replicas={replicas} '
          f'mixed_precision={FLAGS.mixed_precision} '
          f'jit_compile={FLAGS.jit_compile} '
          f'augment_on_device={FLAGS.augment_on_device} '
          f'num_microbatches={FLAGS.num_microbatches} '
          f'recompute_blocks={FLAGS.recompute_blocks} '
          f'conv_gradients={FLAGS.conv_gradients} '
          f'device={pretraining_step.device_name()}')
    bare = _bare_step(strategy, step, optimizer, batch, size, num_classes)
    print(_line('bare step (synthetic batch in memory)', batch, *bare))
    if builder:
      seconds, cpu_seconds = _end_to_end(strategy, step, optimizer, batch,
                                         size, builder)
      print(_line(f'end to end ({FLAGS.input} through run.py\'s input '
                  'pipeline and loop)', batch, seconds, cpu_seconds) +
            f'; {bare[0] / seconds:.0%} of the bare step\'s rate')


def _bare_step(strategy, step, optimizer, batch, size, num_classes):
  """(s, CPU s) per step on one synthetic batch held by the device."""
  run_steps = pretraining_step.make_run_steps(strategy, step)
  images, labels = pretraining_step.synthetic_batch(strategy, batch, size,
                                                    num_classes)
  run_steps(images, labels, tf.constant(FLAGS.warmup_steps))
  wait = lambda: optimizer.iterations.numpy()
  wait()
  trace_dir = tempfile.mkdtemp() if FLAGS.profile_ops else None
  if trace_dir:
    tf.profiler.experimental.start(trace_dir)
  result = _timed(lambda n: run_steps(images, labels, tf.constant(n)),
                  FLAGS.steps, wait)
  if trace_dir:
    tf.profiler.experimental.stop()
    print_op_profile(trace_dir, FLAGS.profile_ops, FLAGS.steps)
  return result


def _end_to_end(strategy, step, optimizer, batch, size, builder):
  """(s, CPU s) per step with run.py's input pipeline and training loop."""
  dataset = data_lib.build_distributed_dataset(
      builder, batch, True, strategy, split='train', image_size=size,
      train_mode='pretrain', augment_on_device=FLAGS.augment_on_device)
  iterator = iter(dataset)
  loop = train_loop.make_train_loop(strategy, step)
  loop(iterator, tf.constant(FLAGS.warmup_steps))
  wait = lambda: optimizer.iterations.numpy()
  wait()
  return _timed(lambda n: loop(iterator, tf.constant(n)), FLAGS.steps, wait)


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
