r"""Peak memory of one pretraining step against batch, micro-batches, recompute.

The step is run.py's (`pretraining_step.build`: NT-Xent, weight decay, LARS),
on a synthetic two-view batch, for every point of --sizes: for each batch B
the plain step, K micro-batches (`--num_microbatches`, each K of
--microbatches that divides B), `--recompute_blocks`, and both. Each point is
a fresh process, so that its peak is its own; it runs warm-up steps, then
--steps timed steps (median ms/step).

- On a CPU: the peak resident memory of the process (ru_maxrss, a high-water
  mark of the whole process) minus that of a baseline process that builds
  the same model, optimizer slots and batch but runs no step: the step's
  activations, gradients and workspace (its trace included). These are not
  GPU allocator figures.
- On a GPU: tf.config.experimental.get_memory_info('GPU:0')['peak'] over the
  timed steps (stats reset before each), minus the memory the baseline
  process holds after building (weights, slots, batch); the absolute peak
  is printed too.

Then the issue's targets as PASS/FAIL lines, and an ESTIMATE of the largest
batch of ResNet-50 1x and ResNet-152 3x+SK on 80 GB and 141 GB GPUs from the
slope of step memory against batch (the model is printed with it).

  python benchmarks/memory.py --sizes=r18:32:16/32 --microbatches=2
  python benchmarks/memory.py --sizes=r18:32:32/64,r50:224:4/8 \
    --microbatches=2 --repeats=2
  # On a GPU (benchmarks/accelerator_check.sh):
  python benchmarks/memory.py --sizes=r50:224:128 --microbatches=4 \
    --mixed_precision=mixed_bfloat16
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import machine  # pylint: disable=g-import-not-at-top
from benchmarks import memory_estimate  # pylint: disable=g-import-not-at-top

ARCHITECTURES = {
    'r18': dict(resnet_depth=18),
    'r50': dict(resnet_depth=50),
    'r101': dict(resnet_depth=101),
    'r152': dict(resnet_depth=152),
}
POLICIES = ('float32', 'mixed_float16', 'mixed_bfloat16')


def define_flags():
  """This script's flags; defined only when it runs, not when imported.

  Tests import its parsing functions into a process whose flags are run.py's
  (two --mixed_precision flags would collide).
  """
  flags.DEFINE_string('sizes', 'r18:32:32/64,r50:224:4/8',
                      'Comma-separated points ARCH:IMAGE_SIZE:B1/B2/...; ARCH '
                      f'one of {", ".join(ARCHITECTURES)} (1x, no SK).')
  flags.DEFINE_string('microbatches', '2,4', 'Comma-separated K values (>= 2); '
                      'a K is measured at the batches it divides.')
  flags.DEFINE_integer('repeats', 1, 'Measurements of every point (medians).')
  flags.DEFINE_integer('warmup_steps', 1, 'Untimed steps first (tracing).')
  flags.DEFINE_integer('steps', 2, 'Timed steps per measurement.')
  flags.DEFINE_enum('mixed_precision', 'float32', list(POLICIES),
                    'As run.py\'s --mixed_precision.')
  flags.DEFINE_bool('jit_compile', False, 'As run.py\'s --jit_compile.')
  flags.DEFINE_bool('estimate', True, 'Print the largest-batch estimates.')
  flags.DEFINE_string('worker', '', 'Internal: one measurement, as JSON.')


FLAGS = flags.FLAGS


class UsageError(ValueError):
  """A flag value that cannot be measured; the message says what to pass."""


def parse_sizes(text):
  """[(alias, image_size, [batches])] of --sizes, or UsageError."""
  points = []
  for item in filter(None, (part.strip() for part in text.split(','))):
    fields = item.split(':')
    if len(fields) != 3:
      raise UsageError(f'--sizes: {item!r} is not ARCH:IMAGE_SIZE:B1/B2 '
                       '(e.g. r50:224:4/8).')
    alias, size, batches = fields
    if alias not in ARCHITECTURES:
      raise UsageError(f'--sizes: unknown architecture {alias!r} in '
                       f'{item!r}; use one of {", ".join(ARCHITECTURES)}.')
    try:
      size = int(size)
      batches = [int(b) for b in batches.split('/')]
    except ValueError:
      raise UsageError(f'--sizes: {item!r}: the image size and the batches '
                       'must be integers, batches separated by "/" '
                       '(e.g. r50:224:4/8).') from None
    if size < 8 or min(batches) < 1:
      raise UsageError(f'--sizes: {item!r}: use an image size of 8 or more '
                       'and batches of 1 or more.')
    points.append((alias, size, sorted(set(batches))))
  if not points:
    raise UsageError('--sizes is empty; pass e.g. --sizes=r18:32:16/32.')
  return points


def parse_microbatches(text):
  """The K values of --microbatches, or UsageError."""
  try:
    values = sorted({int(k) for k in text.split(',') if k.strip()})
  except ValueError:
    raise UsageError(f'--microbatches={text!r}: pass integers separated by '
                     'commas, e.g. --microbatches=2,4.') from None
  if not values or values[0] < 2:
    raise UsageError(f'--microbatches={text!r}: pass values of 2 or more '
                     '(1 is the plain step, always measured).')
  return values


def plan(alias, size, batches, ks):
  """The measurements of one --sizes item, as worker specs.

  For each B: plain, each K dividing B, recompute, each K with recompute;
  plain at B/K too where that batch is not listed (the memory target's
  reference), and one baseline (no step, at the largest batch).
  """
  base = dict(alias=alias, size=size)
  runs = [dict(base, batch=max(batches), k=1, recompute=False,
               baseline=True)]
  plain = set(batches) | {b // k for b in batches for k in ks if b % k == 0}
  for batch in sorted(plain):
    runs.append(dict(base, batch=batch, k=1, recompute=False))
  for batch in batches:
    for k in ks:
      if batch % k == 0:
        runs.append(dict(base, batch=batch, k=k, recompute=False))
    for k in [1] + ks:
      if batch % k == 0:
        runs.append(dict(base, batch=batch, k=k, recompute=True))
  return runs


# ---------------------------------------------------------------- worker --


def _kib_to_mib(kib):
  return kib / 1024.0


def count_activations(configs):
  """{name: (activations per view, parameters)} of each config, by tracing.

  Every config is traced at width 1 and batch 1 (no step runs): the
  elements of the 4-D float tensors of a training-mode forward pass, times
  the width multiplier (every channel count scales with it, the spatial
  sizes do not). Parameters: counted at width 1, or the given encoder count
  plus the heads' (memory_estimate.head_parameters).
  """
  # pylint: disable=g-import-not-at-top
  from tf2.models import config as config_lib
  from tf2.models import model as model_lib
  import tensorflow as tf
  # pylint: enable=g-import-not-at-top
  counts = {}
  for name, depth, width, sk_ratio, size, params in configs:
    model = model_lib.build_model(config_lib.ModelConfig(
        resnet_depth=depth, sk_ratio=sk_ratio, image_size=size,
        global_bn=False), build=False)
    forward = tf.function(lambda x, m=model: m(x, training=True))
    graph = forward.get_concrete_function(
        tf.TensorSpec([1, size, size, 3], tf.float32)).graph
    elements = 0
    for op in graph.get_operations():
      for out in op.outputs:
        if (out.dtype.is_floating and out.shape.rank == 4 and
            out.shape.is_fully_defined()):
          elements += out.shape.num_elements()
    if params is None:
      params = sum(v.shape.num_elements() for v in model.trainable_variables)
    else:
      params += memory_estimate.head_parameters(width)
    counts[name] = (elements * width, params)
  return counts


def measure(spec):
  """One point in this process; returns the dict the parent reads."""
  if 'count' in spec:
    return dict(counts=count_activations(spec['count']))
  # pylint: disable=g-import-not-at-top
  from tf2.runtime import precision
  from benchmarks import pretraining_step
  import tensorflow as tf
  # pylint: enable=g-import-not-at-top
  gpu = pretraining_step.gpu()
  result = dict(device=pretraining_step.device_name(), gpu=gpu,
                onednn=machine.tensorflow_onednn_enabled())
  with precision.policy(spec['mixed_precision']):
    built = pretraining_step.build(
        ARCHITECTURES[spec['alias']]['resnet_depth'], spec['size'],
        mixed_precision=spec['mixed_precision'],
        jit_compile=spec['jit_compile'], num_microbatches=spec['k'],
        recompute_blocks=spec['recompute'])
    strategy, model, optimizer = built.strategy, built.model, built.optimizer
    result['replicas'] = strategy.num_replicas_in_sync
    with strategy.scope():
      # The slots a first step would create, so that the baseline holds them.
      inner = getattr(optimizer, 'inner_optimizer', optimizer)
      inner._create_all_weights(model.trainable_variables)  # pylint: disable=protected-access
    images, labels = pretraining_step.synthetic_batch(
        strategy, spec['batch'], spec['size'])
    if spec.get('baseline'):
      result['rss_mib'] = _kib_to_mib(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
      if gpu:
        result['gpu_current'] = tf.config.experimental.get_memory_info(
            'GPU:0')['current']
      return result
    run_steps = pretraining_step.make_run_steps(strategy, built.step)
    # Traced before it runs: the high-water mark after tracing separates the
    # graph's memory from the running step's.
    run_steps.get_concrete_function(images, labels, tf.constant(1))
    result['rss_traced_mib'] = _kib_to_mib(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    wait = lambda: optimizer.iterations.numpy()
    run_steps(images, labels, tf.constant(spec['warmup_steps']))
    wait()
    seconds, cpu_seconds, peaks = [], [], []
    for _ in range(spec['steps']):
      if gpu:
        tf.config.experimental.reset_memory_stats('GPU:0')
      start, cpu_start = time.perf_counter(), time.process_time()
      run_steps(images, labels, tf.constant(1))
      wait()
      seconds.append(time.perf_counter() - start)
      cpu_seconds.append(time.process_time() - cpu_start)
      if gpu:
        peaks.append(tf.config.experimental.get_memory_info('GPU:0')['peak'])
  result['rss_mib'] = _kib_to_mib(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
  result['ms'] = 1000 * statistics.median(seconds)
  result['cpu_ms'] = 1000 * statistics.median(cpu_seconds)
  if gpu:
    result['gpu_peak'] = max(peaks)
  return result


def _worker_main(spec):
  try:
    result = measure(spec)
  except Exception as error:  # pylint: disable=broad-except
    # An out-of-memory batch is a result, not a crash of the benchmark.
    name = type(error).__name__
    result = dict(error=f'{name}: {str(error).splitlines()[0][:200]}')
  print('RESULT ' + json.dumps(result), flush=True)


# ---------------------------------------------------------------- parent --


def _run(spec):
  """Runs one worker process; its result dict (with 'error' if it failed)."""
  command = [sys.executable, os.path.abspath(__file__),
             '--worker=' + json.dumps(spec)]
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(command, capture_output=True, text=True, env=env,
                       check=False)
  for line in out.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  tail = (out.stderr.strip().splitlines() or ['no output'])[-1]
  return dict(error=f'exit {out.returncode}: {tail[:200]}')


def _key(spec):
  return (spec['alias'], spec['size'], spec['batch'], spec['k'],
          spec['recompute'], bool(spec.get('baseline')))


def collect(runs, repeats):
  """{key: [result, ...]} over `repeats` passes, the order rotated each."""
  results = {}
  for repeat in range(repeats):
    shift = repeat % len(runs)
    for spec in runs[shift:] + runs[:shift]:
      result = _run(spec)
      results.setdefault(_key(spec), []).append(result)
      what = ('baseline' if spec.get('baseline') else
              f'B={spec["batch"]} K={spec["k"]} '
              f'recompute={spec["recompute"]}')
      brief = result.get('error') or (
          f'{result["rss_mib"]:.0f} MiB RSS' +
          (f', GPU peak {result["gpu_peak"] / 2**20:.0f} MiB'
           if 'gpu_peak' in result else '') +
          (f', GPU held {result["gpu_current"] / 2**20:.0f} MiB'
           if 'gpu_current' in result else '') +
          (f', {result["ms"]:.0f} ms/step, {result["cpu_ms"]:.0f} CPU ms'
           if 'ms' in result else ''))
      print(f'  repeat {repeat + 1}: {spec["alias"]}:{spec["size"]} {what}: '
            f'{brief}', flush=True)
  return results


def _counts(rows):
  """The count worker's activations and parameters for the estimate."""
  base = memory_estimate.base_point(rows)
  if base is None:
    return {}
  configs = [('base', ARCHITECTURES[base[0]]['resnet_depth'], 1, 0.0,
              base[1], None)] + [list(t) for t in memory_estimate.TARGETS]
  result = _run(dict(count=configs))
  if 'error' in result:
    print(f'activation count failed: {result["error"]}')
    return {}
  return {name: tuple(v) for name, v in result['counts'].items()}


def main(argv):
  del argv
  if FLAGS.worker:
    _worker_main(json.loads(FLAGS.worker))
    return
  try:
    sizes = parse_sizes(FLAGS.sizes)
    ks = parse_microbatches(FLAGS.microbatches)
    if FLAGS.repeats < 1 or FLAGS.steps < 1 or FLAGS.warmup_steps < 1:
      raise UsageError('--repeats, --steps and --warmup_steps must be 1 or '
                       'more.')
  except UsageError as error:
    print(f'memory.py: {error}', file=sys.stderr)
    sys.exit(2)
  common = dict(mixed_precision=FLAGS.mixed_precision,
                jit_compile=FLAGS.jit_compile, steps=FLAGS.steps,
                warmup_steps=FLAGS.warmup_steps)
  runs = [dict(spec, **common) for alias, size, batches in sizes
          for spec in plan(alias, size, batches, ks)]
  results = collect(runs, FLAGS.repeats)
  table = memory_estimate.summarise(results)
  device = memory_estimate.device_line(results)
  print()
  print(f'{device}; {FLAGS.mixed_precision}, jit_compile='
        f'{FLAGS.jit_compile}; medians of {FLAGS.repeats} run(s) '
        f'(ranges in brackets); each step time the median of {FLAGS.steps} '
        'steps after warm-up; "beyond trace": peak minus the same '
        'process\'s high-water mark after tracing the step')
  print(memory_estimate.format_table(table))
  print()
  for line in memory_estimate.targets(table):
    print(line)
  if FLAGS.estimate:
    print()
    for line in memory_estimate.estimates(
        table, ks, _counts(table), any(r.get('gpu') for rs in results.values()
                                       for r in rs)):
      print(line)


if __name__ == '__main__':
  define_flags()
  app.run(main)
