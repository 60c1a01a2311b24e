r"""One pretraining command on this project and on the reference: speed, results.

The same `run.py` pretraining command (ResNet-18, 16 px, batch 64, 30 steps
on the embedded digits by default) runs on this project and on
google-research/simclr's `tf2/` (`--reference_dir`, a checkout used
unmodified), alternately (`--repeats` of each, order swapped every repeat so
that drift in machine load hits both alike). Both read the same digits,
prepared once as TFDS under `--data_dir` with this project's builder (the
reference reads prepared TFDS data by name).

Timing excludes start-up: each run logs after every `--log_every` steps; the
seconds per step are the wall time from the log of step `--log_every` to the
last one, divided by the steps between them (taken when each log line
arrives). So process start, tracing and the first `--log_every` steps are
left out, and the per-log checkpoint and summary writing (the same for both)
stays in. The
CPU seconds per step (user + system time of the run's process over the same
interval) are printed too: they move less than wall time when other work
shares the cores. The final contrastive loss and accuracy (means over the
last `--log_every` steps) are read from each run's summaries.

  python benchmarks/compare_reference.py
  python benchmarks/compare_reference.py --isa=AVX2 --repeats=5
  # TensorFlow's Eigen kernels, as on x86 CPUs without AVX512_VNNI/BF16/AMX:
  python benchmarks/compare_reference.py --onednn=off
"""

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import machine  # pylint: disable=g-import-not-at-top

flags.DEFINE_string('reference_dir',
                    os.path.join(ROOT, '..', 'shared', 'reference',
                                 'simclr_tf2'),
                    "A checkout of google-research/simclr's tf2/ folder.")
flags.DEFINE_string('ours_dir', ROOT, 'The checkout of this project to time '
                    '(default: this one; e.g. a worktree of an older commit '
                    'for a before/after comparison).')
flags.DEFINE_string('data_dir', '', 'Where the digits are (or get) prepared '
                    'as TFDS; default: <work_dir>/data.')
flags.DEFINE_string('work_dir', '', 'Where the runs write; default: a new '
                    'temporary directory.')
flags.DEFINE_integer('repeats', 3, 'Runs of each implementation.')
flags.DEFINE_integer('train_steps', 30, 'Steps of each run.')
flags.DEFINE_integer('log_every', 5, '--checkpoint_steps of both: steps '
                     'between logs; the first log starts the clock.')
flags.DEFINE_integer('resnet_depth', 18, 'ResNet depth.')
flags.DEFINE_integer('image_size', 16, 'Image size.')
flags.DEFINE_integer('train_batch_size', 64, 'Global batch size.')
flags.DEFINE_string('extra_flags', '', 'More run.py flags for both, e.g. '
                    '"--sk_ratio=0.0625 --learning_rate=1.0".')
flags.DEFINE_string('isa', '', 'If set, ONEDNN_MAX_CPU_ISA for both runs '
                    '(e.g. AVX2): the newest instructions oneDNN may use.')
flags.DEFINE_enum('onednn', 'default', ['default', 'on', 'off'],
                  'TF_ENABLE_ONEDNN_OPTS for both runs; default leaves '
                  "TensorFlow's choice (on only for CPUs with AVX512_VNNI, "
                  'AVX512_BF16, AVX_VNNI or AMX).')
flags.DEFINE_bool('keep_model_dirs', False, 'Keep each run\'s model_dir.')
FLAGS = flags.FLAGS

# What both implementations log after each loop of --checkpoint_steps steps.
_STEP_LOG = re.compile(r'(?:Step|Completed:) (\d+) / \d+')
_ONEDNN_ON = 'oneDNN custom operations are on'
_METRICS = ('train/contrast_loss', 'train/contrast_acc')


def prepare_digits(data_dir):
  """Prepares the embedded digits as TFDS under data_dir (once)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tf2.data import datasets  # pylint: disable=g-import-not-at-top,unused-import
  tfds.builder('digits', data_dir=data_dir).download_and_prepare()


def run_flags(data_dir, model_dir):
  """The run.py command line (after `run.py`) both implementations get."""
  return [
      '--train_mode=pretrain', '--use_tpu=False', '--dataset=digits',
      '--eval_split=test',  # The digits have no 'validation' split.
      f'--data_dir={data_dir}', f'--resnet_depth={FLAGS.resnet_depth}',
      f'--image_size={FLAGS.image_size}',
      f'--train_batch_size={FLAGS.train_batch_size}',
      f'--train_steps={FLAGS.train_steps}',
      f'--checkpoint_steps={FLAGS.log_every}', '--keep_checkpoint_max=1',
      f'--model_dir={model_dir}',
  ] + shlex.split(FLAGS.extra_flags)


def run_environment():
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONUNBUFFERED='1',
             TF_CPP_MIN_LOG_LEVEL='0')  # 0: TensorFlow says if oneDNN is on.
  if FLAGS.isa:
    env['ONEDNN_MAX_CPU_ISA'] = FLAGS.isa
  if FLAGS.onednn != 'default':
    env['TF_ENABLE_ONEDNN_OPTS'] = '1' if FLAGS.onednn == 'on' else '0'
  return env


def _cpu_seconds(pid):
  """User + system CPU seconds of a running process (all its threads)."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def timed_run(cwd, model_dir, data_dir):
  """Runs run.py in cwd; returns its step logs and whether oneDNN was on.

  Returns:
    ([(step, wall seconds, CPU seconds)] at each step log, onednn_on).
  """
  command = [sys.executable, 'run.py'] + run_flags(data_dir, model_dir)
  process = subprocess.Popen(command, cwd=cwd, env=run_environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
  logs, tail, onednn = [], [], False
  for line in process.stdout:
    match = _STEP_LOG.search(line)
    if match:
      logs.append((int(match.group(1)), time.monotonic(),
                   _cpu_seconds(process.pid)))
    onednn = onednn or _ONEDNN_ON in line
    tail = (tail + [line])[-30:]
  if process.wait() != 0 or logs[-1][0] <= FLAGS.log_every:
    sys.exit(f'{shlex.join(command)} (in {cwd}) failed or logged no step '
             f'after {FLAGS.log_every}; its last lines:\n{"".join(tail)}')
  return logs, onednn


def per_step(logs, first_step):
  """(wall, CPU) seconds per step from the log of first_step to the last.

  A step logged twice (ours logs progress before saving the checkpoint, and
  the save after it) counts from its last line, as the reference's one line
  comes after its save.
  """
  last_line = {step: (wall, cpu) for step, wall, cpu in logs}
  start = min(step for step in last_line if step >= first_step)
  end = max(last_line)
  (wall0, cpu0), (wall1, cpu1) = last_line[start], last_line[end]
  return (wall1 - wall0) / (end - start), (cpu1 - cpu0) / (end - start)


def final_metrics(model_dir):
  """{summary tag: value at the last step} for _METRICS, from model_dir."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  found = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(model_dir,
                                                   'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag in _METRICS:
          number = (float(tf.make_ndarray(value.tensor))
                    if value.HasField('tensor') else value.simple_value)
          if event.step >= found.get(value.tag, (-1, 0))[0]:
            found[value.tag] = (event.step, number)
  return {tag: value for tag, (_, value) in found.items()}


def measure(name, cwd, work_dir, data_dir, repeat):
  model_dir = os.path.join(work_dir, f'{name}_{repeat}')
  logs, onednn = timed_run(cwd, model_dir, data_dir)
  wall, cpu = per_step(logs, FLAGS.log_every)
  result = dict(name=name, wall=wall, cpu=cpu, onednn=onednn,
                **final_metrics(model_dir))
  if not FLAGS.keep_model_dirs:
    shutil.rmtree(model_dir, ignore_errors=True)
  print(f'{repeat:>3}  {name:9s}  {wall:8.3f}  {cpu:10.3f}  '
        f'{result.get(_METRICS[0], float("nan")):13.4f}  '
        f'{result.get(_METRICS[1], float("nan")):12.4f}', flush=True)
  return result


def _spread(values):
  return (f'{statistics.median(values):.4f} '
          f'(min {min(values):.4f}, max {max(values):.4f})')


def summarize(results):
  """Prints medians, the speed ratio and the final metrics of both."""
  by_name = {n: [r for r in results if r['name'] == n]
             for n in ('ours', 'reference')}
  walls = {n: [r['wall'] for r in rs] for n, rs in by_name.items()}
  cpus = {n: [r['cpu'] for r in rs] for n, rs in by_name.items()}
  ratios = [ref / ours for ours, ref in zip(walls['ours'],
                                            walls['reference'])]
  print(f'median s/step: ours {statistics.median(walls["ours"]):.3f}, '
        f'reference {statistics.median(walls["reference"]):.3f}')
  print(f'median CPU s/step: ours {statistics.median(cpus["ours"]):.3f}, '
        f'reference {statistics.median(cpus["reference"]):.3f}')
  cpu_ratio = (statistics.median(cpus['reference']) /
               statistics.median(cpus['ours']))
  print(f'speed ratio (reference s/step / ours), median over repeats: '
        f'{statistics.median(ratios):.2f}x (each: '
        f'{", ".join(f"{r:.2f}" for r in ratios)}); on CPU time: '
        f'{cpu_ratio:.2f}x')
  for tag in _METRICS:
    for name, rs in by_name.items():
      values = [r[tag] for r in rs if tag in r]
      if values:
        print(f'final {tag} {name}: {_spread(values)}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.ERROR)  # TFDS and summary reading chatter.
  reference_dir = os.path.abspath(FLAGS.reference_dir)
  if not os.path.isfile(os.path.join(reference_dir, 'run.py')):
    raise app.UsageError(f'No run.py in --reference_dir={reference_dir}; pass '
                         "a checkout of google-research/simclr's tf2/ folder.")
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix='compare_reference_')
  data_dir = FLAGS.data_dir or os.path.join(work_dir, 'data')
  prepare_digits(data_dir)
  runs = {'ours': os.path.abspath(FLAGS.ours_dir), 'reference': reference_dir}
  print(f'ours: {runs["ours"]}\nreference: {reference_dir}')
  print('command (both): run.py ' +
        shlex.join(run_flags(data_dir, '<work_dir>/<name>_<repeat>')))
  print(f'timing: wall and CPU seconds per step between the logs of steps '
        f'{FLAGS.log_every} and {FLAGS.train_steps} (start-up, tracing and '
        f'the first {FLAGS.log_every} steps excluded)')
  print('repeat  run        s/step  CPU s/step  contrast_loss  contrast_acc')
  results = []
  for repeat in range(FLAGS.repeats):
    order = ['ours', 'reference'] if repeat % 2 == 0 else ['reference', 'ours']
    for name in order:
      results.append(measure(name, runs[name], work_dir, data_dir, repeat))
  onednn = {r['onednn'] for r in results}
  print('machine: ' + machine.describe(
      onednn.pop() if len(onednn) == 1 else None, run_environment()))
  summarize(results)


if __name__ == '__main__':
  app.run(main)
