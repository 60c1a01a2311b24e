r"""Host pipeline images/s: cropped decode vs decode-then-crop vs the reference.

The same photo-like JPEGs (`synthetic_jpegs`, 500x375, an image folder
prepared once as TFDS) go through three training pipelines at 224 px with
two views per image and the colour distortion on the host:

- ours: `data.build_input_fn` as run.py builds it (only each crop window
  of a JPEG is decoded, `crop_decode.py`);
- ours, whole decode: the same with `decode_crops=False` (every JPEG decoded
  whole and then cropped, as before);
- reference: google-research/simclr's `tf2/data.py` (`--reference_dir`,
  unmodified; its flags set to the same mode and size) on the same builder;
- ours, colour on the device: `--augment_on_device`, the host only decodes
  each crop window, resizes and flips; the colour distortion runs in the
  train step on the accelerator (the reference has no such mode, so this
  row is what a user of each gets from the host, not the same work).

Each measurement is a fresh process (`--worker`), the three taking turns
(order rotated every repeat) so that other load on the machine hits each
alike; `--cores` pins every process to that many cores (sched_setaffinity,
which TensorFlow and tf.data size their thread pools by), so with
`--cores=1` the figures are per core. The clock starts after a few warm-up
batches; the rate is images (each giving two views) per second.

  python benchmarks/host_pipeline.py                 # one core, 3 repeats
  python benchmarks/host_pipeline.py --cores=0       # all cores
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

flags.DEFINE_string('reference_dir',
                    os.path.join(ROOT, '..', 'shared', 'reference',
                                 'simclr_tf2'),
                    "A checkout of google-research/simclr's tf2/ folder.")
flags.DEFINE_integer('cores', 1, 'Cores each measured process may use '
                     '(0: all of this machine\'s).')
flags.DEFINE_integer('repeats', 3, 'Measurements of each pipeline.')
flags.DEFINE_integer('batch_size', 64, 'Images per batch (two views each).')
flags.DEFINE_integer('batches', 8, 'Timed batches per measurement.')
flags.DEFINE_integer('warmup', 3, 'Batches before the clock starts.')
flags.DEFINE_integer('num_jpegs', 256, 'Synthetic JPEGs written.')
flags.DEFINE_integer('view_size', 224, 'Output size of the views.')
flags.DEFINE_string('worker', '', 'Internal: measure one pipeline '
                    '(ours, ours_whole_decode, reference) and print its rate.')
flags.DEFINE_string('folder', '', 'Internal: the image folder.')
flags.DEFINE_string('prepared_dir', '', 'Internal: where it is prepared.')
FLAGS = flags.FLAGS

PIPELINES = ('ours', 'ours_whole_decode', 'reference', 'ours_on_device')
LABELS = {'ours': 'ours (cropped decode)',
          'ours_whole_decode': 'ours, decode then crop',
          'reference': 'reference',
          'ours_on_device': 'ours, colour on device'}


def _our_input_fn(builder, decode_crops, augment_on_device=False):
  from tf2.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.build_input_fn(
      builder, FLAGS.batch_size, True, split='train',
      image_size=FLAGS.view_size, train_mode='pretrain',
      decode_crops=decode_crops, augment_on_device=augment_on_device)


def _reference_input_fn(builder):
  sys.path.insert(0, os.path.abspath(FLAGS.reference_dir))
  import run as reference_run  # pylint: disable=g-import-not-at-top,import-error,unused-import
  import data as reference_data  # pylint: disable=g-import-not-at-top,import-error
  # The reference's flags (defined by its run.py) choose its pipeline.
  FLAGS.train_mode, FLAGS.train_split = 'pretrain', 'train'
  FLAGS.image_size, FLAGS.color_jitter_strength = FLAGS.view_size, 1.0
  FLAGS.cache_dataset = False
  return reference_data.build_input_fn(builder, FLAGS.batch_size, None, True)


def measure():
  """Images per second of FLAGS.worker's pipeline (this process)."""
  import tf2  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf2.data import pipeline  # pylint: disable=g-import-not-at-top
  builder = pipeline.get_builder(FLAGS.folder, FLAGS.prepared_dir)
  if FLAGS.worker == 'reference':
    input_fn = _reference_input_fn(builder)
  else:
    input_fn = _our_input_fn(builder, FLAGS.worker != 'ours_whole_decode',
                             FLAGS.worker == 'ours_on_device')
  iterator = iter(input_fn(tf.distribute.InputContext()))
  for _ in range(FLAGS.warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(FLAGS.batches):
    images = next(iterator)[0]
  seconds = time.perf_counter() - start
  assert images.shape[-1] == 6, images.shape  # Two views.
  return FLAGS.batches * FLAGS.batch_size / seconds


def _run_worker(name, folder, data_dir):
  cores = sorted(os.sched_getaffinity(0))
  if FLAGS.cores:
    cores = cores[:FLAGS.cores]
  command = [sys.executable, os.path.abspath(__file__), f'--worker={name}',
             f'--folder={folder}', f'--prepared_dir={data_dir}',
             f'--reference_dir={FLAGS.reference_dir}',
             f'--batch_size={FLAGS.batch_size}', f'--batches={FLAGS.batches}',
             f'--warmup={FLAGS.warmup}', f'--view_size={FLAGS.view_size}']
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(command, capture_output=True, text=True, env=env,
                       check=False,
                       preexec_fn=lambda: os.sched_setaffinity(0, cores))
  for line in out.stdout.splitlines():
    if line.startswith('RATE '):
      return float(line.split()[1]), len(cores)
  raise RuntimeError(f'{name} failed:\n{out.stderr[-3000:]}')


def _pipelines():
  """PIPELINES, without the reference where --reference_dir lacks it."""
  if os.path.exists(os.path.join(FLAGS.reference_dir, 'data.py')):
    return PIPELINES
  print(f'no reference at {FLAGS.reference_dir} (its data.py): measuring '
        'ours only; pass --reference_dir to compare.', flush=True)
  return tuple(name for name in PIPELINES if name != 'reference')


def main(argv):
  del argv
  if FLAGS.worker:
    print(f'RATE {measure():.2f}')
    return
  import tf2  # pylint: disable=g-import-not-at-top,unused-import
  from benchmarks import machine  # pylint: disable=g-import-not-at-top
  from benchmarks import synthetic_jpegs  # pylint: disable=g-import-not-at-top
  from tf2.data import pipeline  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    folder, data_dir = os.path.join(tmp, 'jpegs'), os.path.join(tmp, 'tfds')
    synthetic_jpegs.write_jpegs(folder, FLAGS.num_jpegs)
    pipeline.get_builder(folder, data_dir)  # Prepared once, for all.
    pipelines = _pipelines()
    rates = {name: [] for name in pipelines}
    cores = None
    for repeat in range(FLAGS.repeats):
      shift = repeat % len(pipelines)
      for name in pipelines[shift:] + pipelines[:shift]:
        rate, cores = _run_worker(name, folder, data_dir)
        rates[name].append(rate)
        print(f'  repeat {repeat + 1}: {LABELS[name]}: {rate:.0f} images/s',
              flush=True)
  height, width = synthetic_jpegs.JPEG_SHAPE
  print(f'{machine.describe(machine.tensorflow_onednn_enabled())}; '
        f'{cores} core(s) per process; {FLAGS.num_jpegs} JPEGs '
        f'{width}x{height}, {FLAGS.view_size} px, two views, colour on the '
        f'host, batch {FLAGS.batch_size}, medians of {FLAGS.repeats} '
        'alternating runs:')
  medians = {name: statistics.median(r) for name, r in rates.items()}
  for name in pipelines:
    print(f'  {LABELS[name]:24s} {medians[name]:6.0f} images/s '
          f'(runs: {", ".join(f"{r:.0f}" for r in rates[name])}); '
          f'{medians[name] / cores:.0f} per core')
  whole = medians['ours'] / medians['ours_whole_decode']
  if 'reference' in medians:
    ratio = medians['ours'] / medians['reference']
    print(f'  ours / reference: {ratio:.2f}x (target 2x: '
          f'{"met" if ratio >= 2 else "NOT met"}); ours / whole decode: '
          f'{whole:.2f}x; per-run ratios to the reference: ' + ', '.join(
              f'{o / r:.2f}' for o, r in zip(rates['ours'],
                                             rates['reference'])))
    device_ratio = medians['ours_on_device'] / medians['reference']
    print(f'  ours with colour on the device / reference (colour on the '
          f'host): {device_ratio:.2f}x (target 2x: '
          f'{"met" if device_ratio >= 2 else "NOT met"}; not the same host '
          'work: the colour distortion then runs in the train step)')
  else:
    print(f'  ours / whole decode: {whole:.2f}x (no reference measured)')
  for name in ('ours', 'ours_on_device'):
    per_core = medians[name] / cores
    print(f'  estimate ({LABELS[name]}): one H200 at 4,000 views/s (2,000 '
          f'images/s) needs about {2000 / per_core:.1f} host cores at '
          f'{per_core:.0f} images/s per core (assumes linear scaling)')


if __name__ == '__main__':
  app.run(main)
