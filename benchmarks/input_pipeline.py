r"""Prints the input pipeline's speed with and without augment_on_device.

For each source -- the embedded digits at 32 px and synthetic JPEGs (the
size of an average ImageNet photo) at 224 px -- the host pipeline of
run.py (`data.build_input_fn`, two views per example) is timed with the
colour distortion on the host and with it left to the accelerator
(`augment_on_device`). Then the accelerator's share is timed on its own:
`color_augment.make_augment_fn` on a batch of two-view images, on the
device TensorFlow picks (the GPU if any, else this CPU). Last, what sending
the crops in fewer bytes would cost in exactness.

  python benchmarks/input_pipeline.py
  python benchmarks/input_pipeline.py --batch_size=256 --batches=20

Timings are medians over --repeats runs; other processes on the machine
move them.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tf2  # pylint: disable=unused-import,g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top,g-bad-import-order

from benchmarks import machine  # pylint: disable=g-import-not-at-top
from benchmarks import synthetic_jpegs  # pylint: disable=g-import-not-at-top
from tf2.data import color_augment  # pylint: disable=g-import-not-at-top
from tf2.data import pipeline as data_lib  # pylint: disable=g-import-not-at-top

flags.DEFINE_integer('batch_size', 64, 'Examples per batch (two views each).')
flags.DEFINE_integer('batches', 10, 'Timed host batches per run.')
flags.DEFINE_integer('device_batches', 5, 'Timed device batches per run.')
flags.DEFINE_integer('repeats', 3, 'Runs per measurement; the median is shown.')
flags.DEFINE_integer('num_jpegs', 128, 'Synthetic JPEGs written.')
FLAGS = flags.FLAGS

def _median_rate(run, repeats):
  """Median of `repeats` calls of run() -> (count, seconds), as count/s."""
  rates = []
  for _ in range(repeats):
    count, seconds = run()
    rates.append(count / seconds)
  return statistics.median(rates)


def host_rate(builder, image_size, augment_on_device):
  """Examples per second out of the host pipeline (after a warm-up)."""
  input_fn = data_lib.build_input_fn(
      builder, FLAGS.batch_size, True, split='train', image_size=image_size,
      train_mode='pretrain', augment_on_device=augment_on_device)
  context = tf.distribute.InputContext()

  def run():
    iterator = iter(input_fn(context))
    for _ in range(3):
      next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
      next(iterator)
    return FLAGS.batches * FLAGS.batch_size, time.perf_counter() - start

  return _median_rate(run, FLAGS.repeats)


def device_ms_per_batch(image_size, jit_compile=False):
  """Milliseconds per batch of make_augment_fn on TensorFlow's device."""
  augment = tf.function(color_augment.make_augment_fn(
      seed=0, jit_compile=jit_compile))
  images = tf.random.uniform([FLAGS.batch_size, image_size, image_size, 6])
  step = tf.constant([0, 0])
  augment(images, step).numpy()  # Traces (and compiles).

  def run():
    start = time.perf_counter()
    for _ in range(FLAGS.device_batches):
      out = augment(images, step)
    out.numpy()
    return FLAGS.device_batches, time.perf_counter() - start

  return 1000 / _median_rate(run, FLAGS.repeats)


def transfer_rounding(builder, image_size):
  """Largest change of the deferred crops if sent as float16 or uint8.

  uint8 also clips, losing the bicubic overshoot the colour maths sees.
  """
  input_fn = data_lib.build_input_fn(
      builder, FLAGS.batch_size, True, split='train', image_size=image_size,
      train_mode='pretrain', augment_on_device=True, seed=0)
  crops, _ = next(iter(input_fn(tf.distribute.InputContext())))
  as_half = tf.cast(tf.cast(crops, tf.float16), tf.float32)
  as_uint8 = tf.cast(tf.image.convert_image_dtype(
      tf.clip_by_value(crops, 0.0, 1.0), tf.uint8, saturate=True),
                     tf.float32) / 255.0
  return (float(tf.reduce_max(tf.abs(as_half - crops))),
          float(tf.reduce_max(tf.abs(as_uint8 - crops))))


def main(argv):
  del argv
  gpus = tf.config.list_physical_devices('GPU')
  print(f'{machine.describe(machine.tensorflow_onednn_enabled())}; '
        f'TensorFlow {tf.__version__}; device augmentation on '
        f'{"GPU" if gpus else "CPU"}; batch {FLAGS.batch_size} examples '
        '(two views each)')
  height, width = synthetic_jpegs.JPEG_SHAPE
  with tempfile.TemporaryDirectory() as tmp:
    synthetic_jpegs.write_jpegs(os.path.join(tmp, 'jpegs'), FLAGS.num_jpegs)
    sources = [
        ('digits', 32, data_lib.get_builder('digits',
                                            os.path.join(tmp, 'tfds'))),
        (f'{FLAGS.num_jpegs} JPEGs {width}x{height}', 224,
         data_lib.get_builder(os.path.join(tmp, 'jpegs'),
                              os.path.join(tmp, 'tfds')))]
    for name, size, builder in sources:
      on_host = host_rate(builder, size, augment_on_device=False)
      deferred = host_rate(builder, size, augment_on_device=True)
      half, uint8 = transfer_rounding(builder, size)
      print(f'{name} at {size} px, host pipeline: {on_host:.0f} examples/s '
            f'with colour on the host, {deferred:.0f} with augment_on_device '
            f'({deferred / on_host:.2f}x)')
      print(f'  device colour distortion: '
            f'{device_ms_per_batch(size):.1f} ms/batch, '
            f'{device_ms_per_batch(size, jit_compile=True):.1f} ms/batch '
            'under XLA (jit_compile)')
      print(f'  crops sent: {size * size * 6 * 4} bytes/example as float32; '
            f'float16 would change them by up to {half:.1e}, uint8 (clipped) '
            f'by up to {uint8:.1e}: not exact, so float32 is kept')


if __name__ == '__main__':
  app.run(main)
