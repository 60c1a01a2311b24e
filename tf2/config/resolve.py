"""Fills in what the dataset and the checkpoint determine.

`resolve(experiment, builder, num_replicas, ...)` returns the experiment
with its architecture completed from the checkpoint the run starts from and
its `Resolved` counts and steps, validated again. Architecture settings
left at their defaults (or taken from a run's record) follow the
checkpoint; one given explicitly (a flag or a preset) that disagrees stops
the run with both values, instead of failing later on shapes.

All step counts come from `steps()`, the one place that turns epochs into
steps (big_vision's `steps` helper), so eval mode, a resumed run and the
training run compute the same numbers.
"""

import math

from tf2.checkpoints import architecture
from tf2.data import pipeline as data_lib
from tf2.config import settings
from tf2.training import schedule
from tf2.config import validation

# Settings a checkpoint determines; the head ones only if it has the head.
ENCODER_SETTINGS = ('resnet_depth', 'width_multiplier', 'sk_ratio',
                    'se_ratio')
HEAD_SETTINGS = ('proj_head_mode', 'num_proj_layers', 'proj_out_dim')


def _explicit(experiment, name):
  source = experiment.sources.get(name)
  return source is not None and not source.startswith('record')


def adopt_architecture(experiment, arch, path):
  """The experiment with the architecture of `arch` (infer_architecture).

  Raises:
    validation.ConfigError: an explicit setting disagrees with the
      checkpoint, or the image size selects the other stem.
  """
  names = ENCODER_SETTINGS + (HEAD_SETTINGS if arch['has_projection_head']
                              else ())
  current = experiment.flat()
  changes, sources = {}, dict(experiment.sources)
  for name in names:
    found = arch[name]
    if found is None or found == current[name]:
      continue
    if _explicit(experiment, name):
      raise validation.ConfigError(
          f'{experiment.source(name)}={current[name]} but the checkpoint '
          f'{path} has {name}={found}. Drop it to use the checkpoint\'s '
          'value, or pass a checkpoint of the architecture you want.')
    changes[name] = found
    sources[name] = f'checkpoint {path}'
  image_size = experiment.model.image_size
  if arch['cifar_stem'] != (image_size <= 32):
    stem = ('the CIFAR stem (--image_size <= 32)' if arch['cifar_stem'] else
            'the ImageNet stem (--image_size > 32)')
    raise validation.ConfigError(
        f'The checkpoint {path} has {stem}, but '
        f'{experiment.source("image_size")}={image_size} selects the other; '
        'pass an image size of its kind.')
  if not changes:
    return experiment
  return experiment.replace(sources=sources, **changes)


def steps(experiment, num_train_examples, num_eval_examples):
  """(train_steps, steps_per_epoch, steps_per_loop, eval_steps).

  As the reference: `train_steps` wins over epochs (epochs give
  examples * epochs // batch + 1 steps), checkpoints every
  `checkpoint_steps` or `checkpoint_epochs` epochs, evaluation of the whole
  split unless `eval_steps`.
  """
  run, data = experiment.run, experiment.data
  train_steps = schedule.get_train_steps(
      num_train_examples, data.train_batch_size, run.train_epochs,
      run.train_steps)
  per_epoch = max(1, int(round(num_train_examples / data.train_batch_size)))
  per_loop = run.checkpoint_steps or run.checkpoint_epochs * per_epoch
  eval_steps = run.eval_steps or max(
      1, int(math.ceil(num_eval_examples / data.eval_batch_size)))
  return train_steps, per_epoch, max(1, per_loop), eval_steps


def _check_replicas(experiment, num_replicas):
  for name in ('train_batch_size', 'eval_batch_size'):
    value = experiment.flat()[name]
    if value % num_replicas:
      raise validation.ConfigError(
          f'{experiment.source(name)}={value} does not divide among the '
          f'{num_replicas} replicas; pass a multiple of {num_replicas}.')


def resolve(experiment, builder, num_replicas, subset=None, arch=None,
            arch_path=''):
  """The experiment with its `Resolved` part, validated again.

  Args:
    experiment: a validated Experiment.
    builder: the prepared TFDS builder of `data.dataset`.
    num_replicas: replicas of the strategy the run uses.
    subset: the `label_subset.LabelSubset` of the run, or None.
    arch: `architecture.infer_architecture` of the checkpoint the run
      starts from (model_dir's latest, else `--checkpoint`), or None.
    arch_path: that checkpoint, for messages.

  Returns:
    A new Experiment.

  Raises:
    validation.ConfigError: see adopt_architecture; batch sizes that do not
      divide among the replicas; rules broken by the adopted architecture.
    data.DatasetNotPreparedError: a split the dataset lacks.
  """
  if arch is not None:
    experiment = adopt_architecture(experiment, arch, arch_path)
  validation.validate(experiment)
  _check_replicas(experiment, num_replicas)
  data, run = experiment.data, experiment.run
  split_examples = data_lib.num_examples(builder, data.train_split)
  labeled, unlabeled = split_examples, 0
  if subset is not None:
    labeled, unlabeled = subset.num_labeled, subset.num_unlabeled
  # An epoch of fine-tuning on a subset is a pass over its labeled part.
  train_examples = (labeled if subset is not None and
                    run.train_mode == 'finetune' else split_examples)
  eval_examples = (0 if run.mode == 'train' else
                   data_lib.num_examples(builder, data.eval_split))
  train_steps, per_epoch, per_loop, eval_steps = steps(
      experiment, train_examples, eval_examples)
  return experiment.with_resolved(settings.Resolved(
      num_classes=data_lib.num_classes(builder),
      num_split_examples=split_examples, num_labeled_examples=labeled,
      num_unlabeled_examples=unlabeled, num_train_examples=train_examples,
      num_eval_examples=eval_examples, train_steps=train_steps,
      steps_per_epoch=per_epoch, steps_per_loop=per_loop,
      eval_steps=eval_steps, num_replicas=num_replicas,
      architecture_from=arch_path if arch is not None else ''))


def architecture_of(path):
  """`infer_architecture(path)`, or None without a path."""
  return architecture.infer_architecture(path) if path else None
