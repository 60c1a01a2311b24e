"""Every rule between an experiment's settings, checked before any work.

`validate(experiment)` raises `ConfigError` on the first broken rule, with a
message that names the setting (as the flag, or the preset or record it
came from), its value and what to pass instead. It reads no file: run.py
calls it before anything is read or written, and `resolve.py` calls it
again on the resolved experiment. `validate_replicas` holds the rules that
depend on the strategy the run uses (how many replicas, on which devices,
on how many workers); the runner applies them once the strategy is built,
before anything is written. Deep code may then
assume valid settings.
"""

import math

from tf2.config import settings
from tf2.models import resnet
from tf2.runtime import tf_config


class ConfigError(ValueError):
  """Settings that cannot work; the message says what to pass."""


def _fail(experiment, name, problem, fix):
  value = experiment.flat()[name]
  raise ConfigError(f'{experiment.source(name)}={value}: {problem}; {fix}.')


_MAX_PROJ_LAYERS = 100
# Sizes and counts become TensorFlow shapes and int32/int64 counters: a
# value past 32 bits is a typo that would crash deep inside (or hang).
_INT32 = 2**31
# Durations go to Event.wait and time.sleep, which overflow near 2**33 s.
_MAX_SECS = 10**9

# (setting, is the value valid, what valid means, an example to pass).
_RANGES = (
    ('learning_rate', lambda v: v > 0, 'the learning rate must be positive',
     'e.g. --learning_rate=0.3'),
    ('warmup_epochs', lambda v: v >= 0, 'warm-up epochs cannot be negative',
     'pass 0 for no warm-up'),
    ('warmup_epochs', lambda v: v < _INT32,
     'its steps would not fit in a step counter',
     f'pass fewer than 2**31 = {_INT32}, e.g. --warmup_epochs=10'),
    ('weight_decay', lambda v: v >= 0, 'weight decay cannot be negative',
     'pass 0 for none, e.g. --weight_decay=1e-6'),
    ('momentum', lambda v: 0 <= v < 1, 'momentum must be in [0, 1)',
     'e.g. --momentum=0.9'),
    ('batch_norm_decay', lambda v: 0 <= v < 1,
     'batch norm decay must be in [0, 1)', 'e.g. --batch_norm_decay=0.9'),
    ('train_batch_size', lambda v: v > 0, 'the batch size must be positive',
     'e.g. --train_batch_size=256'),
    ('eval_batch_size', lambda v: v > 0, 'the batch size must be positive',
     'e.g. --eval_batch_size=256'),
    ('train_epochs', lambda v: v >= 0, 'epochs cannot be negative',
     'e.g. --train_epochs=100'),
    ('train_steps', lambda v: v >= 0, 'steps cannot be negative',
     'pass 0 to train for --train_epochs, or a positive number'),
    ('eval_steps', lambda v: v >= 0, 'steps cannot be negative',
     'pass 0 to evaluate the whole --eval_split, or a positive number'),
    ('checkpoint_steps', lambda v: v >= 0, 'steps cannot be negative',
     'pass 0 to checkpoint every --checkpoint_epochs, or a positive number'),
    ('keep_checkpoint_max', lambda v: v >= 1,
     'at least one checkpoint must be kept to resume from',
     'e.g. --keep_checkpoint_max=5'),
    ('keep_hub_module_max', lambda v: v >= 0,
     'the number of exports kept cannot be negative',
     'pass 0 to keep every export, or e.g. 1'),
    ('image_size', lambda v: v >= 1, 'images need at least one pixel',
     'e.g. --image_size=224 (32 for CIFAR-10)'),
    ('width_multiplier', lambda v: v >= 1,
     'the width multiplier must be a positive integer',
     'e.g. --width_multiplier=1'),
    ('resnet_depth', lambda v: v in resnet.SUPPORTED_DEPTHS,
     f'supported depths are {resnet.SUPPORTED_DEPTHS}',
     'e.g. --resnet_depth=50'),
    ('sk_ratio', lambda v: 0 <= v <= 1, 'the SK ratio must be in [0, 1]',
     'pass 0 (no SK) or 0.0625 as published'),
    ('se_ratio', lambda v: 0 <= v <= 1, 'the SE ratio must be in [0, 1]',
     'pass 0 (no SE) or e.g. 0.25'),
    ('proj_out_dim', lambda v: v >= 1, 'the projection needs a dimension',
     'e.g. --proj_out_dim=128'),
    # Each layer is built one by one: a typo of a million would hang.
    ('num_proj_layers', lambda v: 1 <= v <= _MAX_PROJ_LAYERS,
     f'the nonlinear head needs 1 to {_MAX_PROJ_LAYERS} layers',
     'e.g. --num_proj_layers=3, or --proj_head_mode=none'),
    ('fine_tune_after_block', lambda v: -1 <= v <= 4,
     'it must be in -1..4', '-1 trains everything, 4 only the linear head'),
    ('temperature', lambda v: v > 0,
     'the contrastive loss divides by the temperature',
     'pass a positive value, e.g. --temperature=0.1'),
    ('color_jitter_strength', lambda v: v >= 0,
     'the colour jitter strength cannot be negative',
     'pass 0 for none, e.g. --color_jitter_strength=0.5'),
    # The hue changes by up to 0.2s, and tf.image.adjust_hue refuses more
    # than 1 (inside the input pipeline, where the run hung).
    ('color_jitter_strength', lambda v: v <= 5,
     'the hue change (up to 0.2 times it) must stay within [-1, 1]',
     'pass at most 5, e.g. --color_jitter_strength=1.0'),
    ('label_fraction', lambda v: 0 <= v <= 1,
     'it must be in (0, 1], or 0 for all labels',
     'e.g. --label_fraction=0.1 for 10%'),
    ('labels_per_class', lambda v: v >= 0,
     'it must be positive, or 0 for all labels', 'e.g. --labels_per_class=10'),
    ('label_loss_weight', lambda v: 0 <= v <= 1, 'it must be in [0, 1]',
     'pass 0 to learn from the teacher only'),
    ('distillation_temperature', lambda v: v > 0,
     'the distillation loss divides by the temperature',
     'pass a positive value, e.g. --distillation_temperature=1'),
    ('memory_size', lambda v: v >= 0, 'the memory size cannot be negative',
     'pass 0 to train without a memory'),
    ('memory_ema_decay', lambda v: 0 <= v < 1, 'it must be in [0, 1)',
     'e.g. --memory_ema_decay=0.999'),
    ('knn_k', lambda v: v >= 1, 'the kNN vote needs at least one neighbour',
     'e.g. --knn_k=200'),
    ('knn_temperature', lambda v: v > 0, 'the kNN weights divide by it',
     'pass a positive value, e.g. --knn_temperature=0.07'),
    ('linear_probe_held_out', lambda v: 0 < v < 1,
     'the probe fits on part of the training split and chooses its '
     'regularisation on the rest', 'pass a value in (0, 1), e.g. 0.2'),
    ('progress_interval_secs', lambda v: v > 0,
     'the progress interval must be positive',
     'e.g. --progress_interval_secs=60'),
    ('cluster_wait_secs', lambda v: v > 0,
     'the wait for the cluster to form must be positive',
     'e.g. --cluster_wait_secs=1800'),
    ('preemption_grace_secs', lambda v: v > 0,
     'the grace period must be positive', 'e.g. --preemption_grace_secs=30'),
    ('eval_timeout', lambda v: v is None or v > 0,
     'the timeout must be positive', 'e.g. --eval_timeout=3600, or leave it '
     'unset to wait until the last step of training'),
    *((name, lambda v: v is None or v <= _MAX_SECS,
       f'durations are at most {_MAX_SECS} s (31 years)',
       f'pass fewer seconds, e.g. --{name}={default}')
      for name, default in (('progress_interval_secs', 60),
                            ('preemption_grace_secs', 30),
                            ('cluster_wait_secs', 1800),
                            ('eval_timeout', 3600))),
    ('teacher_ft_proj_selector', lambda v: v is None or v >= -1,
     'it must be -1 (last layer), 0 (encoder output) or a layer number',
     "leave it unset to read the teacher's own record"),
    # NumPy's global generator (seeded too) takes seeds below 2**32.
    ('seed', lambda v: v is None or 0 <= v < 2**32,
     'the seed must be in [0, 2**32)',
     'e.g. --seed=0, or leave it unset for fresh randomness'),
    ('label_seed', lambda v: 0 <= v < 2**32,
     'the seed must be in [0, 2**32)', 'e.g. --label_seed=0'),
)
_OWN_INT_RANGE = ('seed', 'label_seed')


def _check_ranges(experiment):
  values = experiment.flat()
  for name, valid, problem, fix in _RANGES:
    value = values[name]
    if isinstance(value, float) and not math.isfinite(value):
      _fail(experiment, name, 'the value must be a finite number', fix)
    if not valid(value):
      _fail(experiment, name, problem, fix)
  for name, value in values.items():
    if (type(value) is int and name not in _OWN_INT_RANGE and  # pylint: disable=unidiomatic-typecheck
        not -_INT32 <= value < _INT32):
      _fail(experiment, name, 'sizes, counts and steps must fit in 32 bits',
            f'pass a value below 2**31 = {_INT32}')


def _check_paths_given(experiment):
  """A blank path (e.g. an unset shell variable after a space) would be a
  folder named ' ' in the working directory."""
  values = experiment.flat()
  if not values['dataset'].strip():
    _fail(experiment, 'dataset', 'no dataset is named', 'pass a TFDS name '
          '(e.g. cifar10), the path of a folder of images, or digits')
  for name in settings.PATHS:
    value = values[name]
    if value and not value.strip():
      _fail(experiment, name, 'the path is blank', 'pass a path, or leave '
            'the flag out')


def _check_run(experiment):
  run, data = experiment.run, experiment.data
  if not run.model_dir:
    raise ConfigError('--model_dir is required: checkpoints, summaries, '
                      'results and the SavedModel are written there; pass '
                      'e.g. --model_dir=/tmp/simclr.')
  if run.train_steps == 0 and run.train_epochs == 0 and run.mode != 'eval':
    _fail(experiment, 'train_epochs', 'with --train_steps=0 training would '
          'do nothing', 'pass a positive --train_epochs or --train_steps')
  if run.checkpoint_steps == 0 and run.checkpoint_epochs < 1:
    _fail(experiment, 'checkpoint_epochs', 'with --checkpoint_steps=0 it '
          'sets how often to checkpoint and must be at least 1',
          'pass e.g. --checkpoint_epochs=1 or --checkpoint_steps=1000')
  if run.deterministic and run.seed is None:
    _fail(experiment, 'deterministic', 'op determinism repeats a run only '
          'when its random draws are seeded too', 'pass --seed as well, '
          'e.g. --seed=0, or drop --deterministic')
  if run.use_ema and not run.checkpoint:
    _fail(experiment, 'use_ema', 'it selects the moving-average weights of '
          '--checkpoint, but no --checkpoint is given',
          'pass a TF1 --checkpoint with an ema_model/ copy, or drop --use_ema')
  if data.label_fraction and data.labels_per_class:
    _fail(experiment, 'labels_per_class', '--label_fraction and '
          '--labels_per_class both choose the labeled subset',
          'pass only one')


def _check_training_mode(experiment):
  run, model, loss = experiment.run, experiment.model, experiment.loss
  if run.train_mode == 'pretrain' and model.fine_tune_after_block > -1:
    _fail(experiment, 'fine_tune_after_block', 'it freezes layers, which '
          'pretraining does not support',
          'pass --fine_tune_after_block=-1, or --train_mode=finetune')
  if (run.train_mode == 'distill' and run.mode != 'eval' and
      not run.teacher_checkpoint):
    raise ConfigError('--train_mode=distill needs --teacher_checkpoint: the '
                      'fine-tuned model whose predictions the student learns '
                      '(a checkpoint, model_dir or SavedModel).')
  if experiment.data.augment_on_device and run.train_mode != 'pretrain':
    _fail(experiment, 'augment_on_device', 'only pretraining distorts '
          'colours, so there is nothing to move to the accelerator',
          'drop --augment_on_device')
  if loss.memory_size:
    if run.train_mode != 'pretrain':
      _fail(experiment, 'memory_size', 'the memory holds negatives of the '
            'contrastive loss, which only pretraining has',
            'use it with --train_mode=pretrain, or pass --memory_size=0')
    if model.proj_head_mode == 'none':
      _fail(experiment, 'memory_size', 'the memory holds projections of the '
            'projection head, and --proj_head_mode=none has none',
            'pass --proj_head_mode=nonlinear (or linear), or --memory_size=0')


def _check_head(experiment):
  model = experiment.model
  layers = {'none': 0, 'linear': 1,
            'nonlinear': model.num_proj_layers}[model.proj_head_mode]
  if not -1 <= model.ft_proj_selector <= layers:
    _fail(experiment, 'ft_proj_selector', f'the {model.proj_head_mode} '
          f'projection head has {layers} layers',
          f'pass a value in 0..{layers} (0: the encoder output) or -1 (the '
          'last layer)')


def validate(experiment):
  """Raises ConfigError unless the settings can work together.

  Args:
    experiment: an `experiment.Experiment`.

  Returns:
    The experiment, unchanged.
  """
  _check_ranges(experiment)
  _check_paths_given(experiment)
  _check_run(experiment)
  _check_training_mode(experiment)
  _check_head(experiment)
  return experiment


def validate_cluster(tf_config_text):
  """Raises ConfigError unless TF_CONFIG (its text, or None) can form a cluster."""
  wrong = tf_config.problem(tf_config_text)
  if wrong:
    raise ConfigError(f'{wrong}. Fix the TF_CONFIG environment variable, or '
                      'unset it to train on this machine alone.')


def validate_replicas(experiment, num_replicas, multi_worker=False,
                      xla_collectives=True):
  """Raises ConfigError for settings the strategy's replicas cannot run.

  Args:
    experiment: an `experiment.Experiment`.
    num_replicas: replicas in sync (every device of every worker).
    multi_worker: the replicas span several workers.
    xla_collectives: XLA can compile the cross-replica reductions (GPUs;
      see `step.whole_step_compilable`).
  """
  run = experiment.run
  for name in ('train_batch_size', 'eval_batch_size'):
    value = experiment.flat()[name]
    if value % num_replicas:
      raise ConfigError(
          f'{experiment.source(name)}={value} does not divide among the '
          f'{num_replicas} replicas; pass a multiple of {num_replicas}.')
  per_replica = experiment.data.train_batch_size // num_replicas
  if run.num_microbatches < 1 or per_replica % run.num_microbatches:
    raise ConfigError(
        f'{experiment.source("num_microbatches")}={run.num_microbatches} '
        f'does not divide the per-replica batch of {per_replica} '
        f'(--train_batch_size={experiment.data.train_batch_size} over '
        f'{num_replicas} replicas); pass a divisor of {per_replica} '
        '(1 = no micro-batches).')
  if run.jit_compile and num_replicas > 1 and not xla_collectives:
    raise ConfigError(
        f'--jit_compile with {num_replicas} CPU replicas: XLA cannot compile '
        'the collectives between CPU replicas; use one replica (the default '
        'on CPUs) or GPUs, or drop --jit_compile.')
  for name, what in (('eval_knn', 'kNN memory'),
                     ('eval_linear_probe', "linear probe's training set")):
    if getattr(run, name) and run.mode != 'train' and multi_worker:
      raise ConfigError(
          f'--{name} on several workers: the {what} would only hold each '
          "worker's share of the training split. Train without it, then run "
          f'--mode=eval --{name} on one machine with the same --model_dir.')
