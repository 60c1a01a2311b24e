r"""How far our train-mode forward pass drifts from the reference's, and why.

In training mode every batch norm normalises with the statistics of its
batch, so a float32 rounding difference anywhere (the reduction order of a
convolution, a mean, a variance) is amplified block after block; deep
selective-kernel networks amplify most (~1e3x from float32 rounding to the
output on the configs below). Two formulations of the same maths therefore
differ in train mode by far more than float32 rounding, and none of them is
"the exact value" either. This script measures whether OUR formulation
drifts from the reference by more than the reference's own noise.

For each configuration it runs, in separate processes (alternating sides),
`--processes` forward passes of our model (tf2/) and as many of the
reference (google-research/simclr tf2/, `--reference_dir`, run unmodified:
its absl flags are set the way its run.py sets them before it builds its
model), with the same weights and the same batch of 8 images, in training
mode inside a tf.function and (unless --no_tape) a GradientTape, as in a
train step. Then it prints, per output, max |a - b| / max |b| for:

- ours-ref: ours vs the reference (max over all process pairs);
- ref-ref, ours-ours: between processes of one side (max over pairs). On
  one machine both are 0: each side reproduces itself bit for bit;
- ref-refEig: the reference with TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's Eigen
  kernels, what x86 CPUs without AVX512_VNNI/BF16/AMX run) vs the reference:
  its own noise across kernel libraries and machines;
- ours-f64, ref-f64: each vs our model computed in float64, the exact maths
  to ~1e-15 (how accurate each float32 formulation is);
- ours-gold, ref-gold: each vs the golden `train/*` outputs of the shared
  fixtures (the reference on another machine), where a fixture has them.

A line per config says whether ours-ref <= 2 x ref-ref, and gives the eval
mode (moving statistics) ours-ref, a check that both hold the same weights.

Weights follow the fixtures' rule (../shared/fixtures/README.md): every
variable is a function of its TF1 name and shape; a model's variables in
creation order are its TF1 names in order. The golden configs take their
names, moving statistics and input from the fixture; the deeper ones
(`r101_1x_sk1_64px`, `r152_1x_sk1_96px`) take the names from the published
TF1 layout, moving statistics 0 / 1 and a uniform input seeded by the name.

`--policies` adds our model's forward under Keras mixed-precision policies
vs our float32 forward, train and eval mode: the tolerances that tests of
mixed precision can use.

  python benchmarks/train_mode_drift.py --policies=mixed_bfloat16,mixed_float16
  python benchmarks/train_mode_drift.py --configs=r50_1x_sk1_64px --processes=2
  # The reference with its default --global_bn=True (SyncBatchNormalization,
  # sum / sum-of-squares statistics even on one replica):
  python benchmarks/train_mode_drift.py --reference_global_bn

argparse, not absl flags: the reference's flags live in absl's global FLAGS of
the worker process, and names such as `mode` would collide.
"""

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

# The reference reads tf.keras; it must be tf_keras (Keras 2), as for its
# own run.py. Set before any TensorFlow import in this process or a worker.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
FIXTURES = os.path.join(SHARED, 'fixtures')
DEFAULT_REFERENCE = os.path.join(SHARED, 'reference', 'simclr_tf2')

GOLDEN = ('r18_1x_sk0_32px', 'r50_1x_sk0_64px', 'r50_1x_sk1_64px')
# Deeper selective-kernel networks: (published TF1 layout, image size).
DEEP = {
    'r101_1x_sk1_64px': ('r101_1x_sk1', 64),
    'r152_1x_sk1_96px': ('r152_1x_sk1', 96),
}
CONFIGS = GOLDEN + tuple(DEEP)
BATCH = 8
REPORTED = ('block_group4', 'final_avg_pool', 'proj_head_output',
            'logits_sup')
SAVED = ('block_group1', 'block_group2', 'block_group3', 'block_group4',
         'final_avg_pool', 'proj_head_input', 'proj_head_output',
         'logits_sup')


# ---------------------------------------------------------------- the spec


def load_spec(name):
  """Architecture, [(TF1 name, shape)], {name: stored value}, input, golden.

  Returns:
    dict with `arch` (resnet_depth, width_multiplier, sk_ratio, image_size,
    num_classes), `variables` in creation order, `stored` (values not given
    by the rule), `input` (8, H, W, 3) and `golden` ({output: array} of the
    reference's train mode, empty for the deep configs).
  """
  if name in DEEP:
    layout, size = DEEP[name]
    with open(os.path.join(FIXTURES, 'checkpoint_layouts',
                           f'tf1_{layout}.json')) as f:
      variables = [(n, tuple(s)) for n, s in json.load(f)]
    depth, width, sk = layout.split('_')
    arch = dict(resnet_depth=int(depth[1:]), width_multiplier=int(width[:-1]),
                sk_ratio=0.0625 if sk == 'sk1' else 0.0, image_size=size,
                num_classes=variables[-1][1][0])
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    images = rng.uniform(size=(BATCH, size, size, 3)).astype(np.float32)
    return dict(arch=arch, variables=variables, stored={}, input=images,
                golden={})
  with open(os.path.join(FIXTURES, 'golden', f'{name}.json')) as f:
    config = json.load(f)
  arrays = dict(np.load(os.path.join(FIXTURES, 'golden', f'{name}.npz')))
  arch = {k: config[k] for k in ('resnet_depth', 'width_multiplier',
                                 'sk_ratio', 'image_size', 'num_classes')}
  stored = {k.partition('/')[2]: v for k, v in arrays.items()
            if k.startswith('bn_stats/')}
  golden = {k.partition('/')[2]: v for k, v in arrays.items()
            if k.startswith('train/')}
  return dict(arch=arch, variables=[(n, tuple(s))
                                    for n, s in config['tf1_variables']],
              stored=stored, input=arrays['input'], golden=golden)


def _rule_weight():
  """tests/fixture_weights.rule_weight, loaded by path.

  By path, not as `tests.fixture_weights`: the reference's worker puts its
  own folder first on sys.path.
  """
  spec = importlib.util.spec_from_file_location(
      'fixture_weights', os.path.join(ROOT, 'tests', 'fixture_weights.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.rule_weight


def weight_values(spec):
  """[(TF1 name, float32 array)] in creation order.

  The deep configs have no stored moving statistics: mean 0, variance 1.
  """
  rule_weight = _rule_weight()
  return [(n, spec['stored'][n].astype(np.float32) if n in spec['stored']
           else rule_weight(n, s, moving_statistics=True))
          for n, s in spec['variables']]


# ---------------------------------------------------------------- workers


def _assign_in_order(variables, values, what):
  if len(variables) != len(values):
    raise ValueError(f'{what}: {len(variables)} variables, {len(values)} '
                     'TF1 names')
  for variable, (name, value) in zip(variables, values):
    if tuple(variable.shape) != value.shape:
      raise ValueError(f'{what}: {variable.name} {variable.shape} != '
                       f'{name} {value.shape}')
    variable.assign(value)


def _run_ours(spec, args):
  """{'train/<key>', 'eval/<key>': array} of our model."""
  sys.path.insert(0, ROOT)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tf2.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from tf2.models import model as model_lib  # pylint: disable=g-import-not-at-top
  from tf2.checkpoints import tf1_mapping  # pylint: disable=g-import-not-at-top

  config = config_lib.ModelConfig(
      **spec['arch'], num_proj_layers=3, proj_out_dim=128,
      ft_proj_selector=0, train_mode='finetune', global_bn=False)
  model = model_lib.build_model(config)
  names = list(tf1_mapping.tf1_variable_map(model))
  expected = [n for n, _ in spec['variables']]
  if names != expected:
    raise ValueError('Our TF1 names differ from the spec\'s.')
  _assign_in_order(model_lib.variables_in_creation_order(model),
                   weight_values(spec), 'ours')
  if args.policy != 'float32':
    # Loaded in float32 first: tf1_mapping cannot map a model built under a
    # mixed policy (its AutoCastVariables are not the created variables).
    # 'float64' too: every layer then computes in float64 (and the batch
    # norms unfused), the exact maths up to ~1e-15.
    tf_keras.mixed_precision.set_global_policy(args.policy)
    weights = model.get_weights()
    model = model_lib.build_model(config)
    model.set_weights([w.astype(v.dtype.as_numpy_dtype)
                       for w, v in zip(weights, model.weights)])

  def forward(images, training):
    if args.under_tape:
      # As in a train step: conv_ops' convolutions and BatchNormRelu take
      # their own gradient paths only while a tape records.
      with tf.GradientTape():
        outputs = model.endpoints(images, training=training)
    else:
      outputs = model.endpoints(images, training=training)
    return {k: tf.cast(outputs[k], tf.float32) for k in SAVED}

  return _forward_both_modes(tf, forward, spec['input'], args.repeats)


def _run_reference(spec, args):
  """{'train/<key>', 'eval/<key>': array} of the reference model."""
  sys.path.insert(0, args.reference_dir)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  import run as reference_run  # pylint: disable=g-import-not-at-top
  import model as reference_model  # pylint: disable=g-import-not-at-top

  flag_values = flags.FLAGS
  flag_values(['reference'])
  arch = spec['arch']
  for key, value in dict(
      resnet_depth=arch['resnet_depth'],
      width_multiplier=arch['width_multiplier'], sk_ratio=arch['sk_ratio'],
      image_size=arch['image_size'], train_mode='finetune', use_tpu=False,
      global_bn=args.reference_global_bn, proj_head_mode='nonlinear',
      num_proj_layers=3, proj_out_dim=128, ft_proj_selector=0).items():
    setattr(flag_values, key, value)
  model = reference_model.Model(arch['num_classes'])
  created = []

  def record(next_creator, **kwargs):
    created.append(next_creator(**kwargs))
    return created[-1]

  size = arch['image_size']
  with tf.variable_creator_scope(record):
    model(tf.zeros([1, size, size, 3]), training=False)
  _assign_in_order(created, weight_values(spec), 'reference')

  def forward(images, training):
    # The reference names its endpoints in the graph (its SavedModel export
    # reads them the same way).
    model(images, training=training)
    outputs = reference_run.get_salient_tensors_dict(True)
    return {k: outputs[k] for k in SAVED}

  return _forward_both_modes(tf, forward, spec['input'], args.repeats)


def _forward_both_modes(tf, forward, images, repeats):
  """Runs the forward once in eval mode, then `repeats` times in train mode.

  Eval first: a train-mode pass updates the moving statistics.
  """
  train = tf.function(lambda x: forward(x, True))
  evaluate = tf.function(lambda x: forward(x, False))
  images = tf.constant(images)
  results = {f'eval/{k}': v.numpy() for k, v in evaluate(images).items()}
  first = None
  within = 0.0
  for _ in range(repeats):
    outputs = {k: v.numpy() for k, v in train(images).items()}
    if first is None:
      first = outputs
    else:
      within = max(within, max(_relative(outputs[k], first[k])
                               for k in outputs))
  results.update({f'train/{k}': v for k, v in first.items()})
  results['within_process'] = np.float64(within)
  return results


def worker(args):
  spec = load_spec(args.config)
  start = time.time()
  if args.side == 'ours':
    results = _run_ours(spec, args)
  else:
    results = _run_reference(spec, args)
  results['seconds'] = np.float64(time.time() - start)
  np.savez(args.out, **results)


# ---------------------------------------------------------------- driver


def _relative(actual, expected):
  scale = float(np.max(np.abs(expected)))
  return float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale


def _spawn(args, config, side, out, policy='float32', env=None):
  """Runs one worker process; returns its outputs."""
  command = [sys.executable, os.path.abspath(__file__), '--worker',
             f'--side={side}', f'--config={config}', f'--out={out}',
             f'--policy={policy}', f'--repeats={args.repeats}',
             f'--reference_dir={args.reference_dir}']
  if args.reference_global_bn:
    command.append('--reference_global_bn')
  if not args.under_tape:
    command.append('--no_tape')
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
             **(env or {}))
  done = subprocess.run(command, env=env, capture_output=True, text=True,
                        check=False)
  if done.returncode:
    # The traceback's last lines, without the tensors some errors print.
    lines = [l[:300] for l in done.stderr.splitlines()
             if l.strip() and not l.lstrip().startswith(('[', '-', '0.'))]
    raise RuntimeError(f'{side} {config} {policy} failed:\n' +
                       '\n'.join(lines[-12:]))
  return dict(np.load(out))


def _deviation(runs_a, runs_b, key, same=False):
  """max |a - b| / max |b| over process pairs (distinct pairs if `same`)."""
  pairs = (itertools.combinations(range(len(runs_a)), 2) if same else
           itertools.product(range(len(runs_a)), range(len(runs_b))))
  worst = 0.0
  for i, j in pairs:
    worst = max(worst, _relative(runs_a[i][key], runs_b[j][key]))
  return worst


def _print_config(config, spec, runs):
  """One table: every comparison of one configuration, per output."""
  ours, reference = runs['ours'], runs['reference']
  columns = [('ours-ref', lambda k: _deviation(ours, reference, k)),
             ('ref-ref', lambda k: _deviation(reference, reference, k, True)),
             ('ours-ours', lambda k: _deviation(ours, ours, k, True))]
  if runs.get('eigen'):
    columns.append(('ref-refEig',
                    lambda k: _deviation(runs['eigen'], reference, k)))
  if runs.get('float64'):
    columns += [('ours-f64', lambda k: _deviation(ours, runs['float64'], k)),
                ('ref-f64',
                 lambda k: _deviation(reference, runs['float64'], k))]
  if spec['golden']:
    gold = [{f'train/{k}': v for k, v in spec['golden'].items()}]
    columns += [('ours-gold', lambda k: _deviation(ours, gold, k)),
                ('ref-gold', lambda k: _deviation(reference, gold, k))]
  print(f'\n{config}  (train mode; max |a-b| / max |b|; {len(ours)} + '
        f'{len(reference)} processes)')
  print(f'  {"output":<18}' + ''.join(f'{name:>11}' for name, _ in columns))
  exact = True
  for key in REPORTED:
    k = f'train/{key}'
    row = [fn(k) for _, fn in columns]
    exact = exact and row[0] <= 2 * row[1]
    print(f'  {key:<18}' + ''.join(f'{v:>11.2e}' for v in row))
  evals = max(_deviation(ours, reference, f'eval/{k}') for k in SAVED)
  within = max(float(r['within_process']) for r in ours + reference)
  seconds = [np.mean([r['seconds'] for r in runs[side]])
             for side in ('ours', 'reference')]
  print(f'  ours-ref <= 2 x ref-ref on every output: {exact}; eval mode '
        f'ours-ref (all outputs): {evals:.1e}; repeated train forward in one '
        f'process: {within:.1e}; s/process ours {seconds[0]:.0f}, reference '
        f'{seconds[1]:.0f}')


def _print_policies(config, args, runs, tmp):
  """Our forward under each mixed-precision policy vs our float32 forward."""
  float32 = runs['ours']
  results = {}
  for policy in args.policies:
    try:
      results[policy] = _spawn(args, config, 'ours',
                               os.path.join(tmp, f'{policy}.npz'), policy)
    except RuntimeError as e:
      print(f'\n{config}: {policy} FAILED: {e}')
  header = ['float32-f64'] if runs.get('float64') else []
  header += [f'{p}-f32' for p in results]
  print(f'\n{config}: our forward under each policy vs our float32 (max '
        '|a-b| / max |float32|); float32 vs float64 for scale')
  print(f'  {"output":<24}' + ''.join(f'{h:>21}' for h in header))
  for mode in ('train', 'eval'):
    for key in REPORTED:
      k = f'{mode}/{key}'
      row = ([_deviation(float32, runs['float64'], k)]
             if runs.get('float64') else [])
      row += [_deviation([r], float32, k) for r in results.values()]
      print(f'  {k:<24}' + ''.join(f'{v:>21.2e}' for v in row))


def driver(args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  print(f'TensorFlow {tf.__version__}; ours: {ROOT}; reference: '
        f'{args.reference_dir} (global_bn={args.reference_global_bn}); '
        f'forward under a tape: {args.under_tape}')
  sys.path.insert(0, ROOT)
  from benchmarks import machine  # pylint: disable=g-import-not-at-top
  print(machine.describe(machine.tensorflow_onednn_enabled()))
  print('Columns: ours/ref = this process set; refEig = the reference with '
        'TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels, as on AVX2-only CPUs); f64 = '
        'our model in float64 (the exact maths to ~1e-15); gold = the '
        'fixture\'s train/* outputs (the reference on another machine).')
  with tempfile.TemporaryDirectory() as tmp:
    for config in args.configs:
      spec = load_spec(config)
      runs = {'ours': [], 'reference': []}
      for p in range(args.processes):
        # Alternate the order so that load drift hits both sides alike.
        sides = ('ours', 'reference') if p % 2 == 0 else ('reference',
                                                           'ours')
        for side in sides:
          runs[side].append(_spawn(args, config, side,
                                   os.path.join(tmp, f'{side}{p}.npz')))
      if args.eigen_reference:
        runs['eigen'] = [_spawn(args, config, 'reference',
                                os.path.join(tmp, 'eigen.npz'),
                                env={'TF_ENABLE_ONEDNN_OPTS': '0'})]
      if args.float64:
        runs['float64'] = [_spawn(args, config, 'ours',
                                  os.path.join(tmp, 'float64.npz'), 'float64')]
      _print_config(config, spec, runs)
      if args.policies and config in args.policy_configs:
        _print_policies(config, args, runs, tmp)
      sys.stdout.flush()


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--configs', default=','.join(CONFIGS),
                      help=f'Comma-separated, from {", ".join(CONFIGS)}.')
  parser.add_argument('--processes', type=int, default=3,
                      help='Processes per side and config.')
  parser.add_argument('--repeats', type=int, default=2,
                      help='Train-mode forwards per process (the first is '
                      'kept; the others measure in-process determinism).')
  parser.add_argument('--policies', default='',
                      help='Comma-separated Keras policies for our model, '
                      'e.g. mixed_bfloat16,mixed_float16.')
  parser.add_argument('--policy_configs', default='r18_1x_sk0_32px,'
                      'r50_1x_sk0_64px,r50_1x_sk1_64px',
                      help='Configs on which --policies run.')
  parser.add_argument('--reference_dir', default=DEFAULT_REFERENCE)
  parser.add_argument('--reference_global_bn', action='store_true',
                      help='The reference\'s default --global_bn=True '
                      '(SyncBatchNormalization even on one replica).')
  parser.add_argument('--no_eigen_reference', dest='eigen_reference',
                      action='store_false',
                      help='Skip the reference process with oneDNN off.')
  parser.add_argument('--no_float64', dest='float64', action='store_false',
                      help='Skip our float64 forward (the exact maths).')
  parser.add_argument('--no_tape', dest='under_tape', action='store_false',
                      help='Run the forward passes without a GradientTape '
                      '(inference-like graphs; a train step records one).')
  # Internal: one side of one config in this process.
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--side', choices=('ours', 'reference'),
                      help=argparse.SUPPRESS)
  parser.add_argument('--config', help=argparse.SUPPRESS)
  parser.add_argument('--out', help=argparse.SUPPRESS)
  parser.add_argument('--policy', default='float32', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args)
    return
  args.configs = [c for c in args.configs.split(',') if c]
  args.policies = [p for p in args.policies.split(',') if p]
  args.policy_configs = args.policy_configs.split(',')
  unknown = sorted(set(args.configs) - set(CONFIGS))
  if unknown:
    parser.error(f'unknown --configs {unknown}: use some of {CONFIGS}')
  driver(args)


if __name__ == '__main__':
  main()
