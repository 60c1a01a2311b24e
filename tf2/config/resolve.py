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

from tf2.config import settings
from tf2.config import validation
from tf2.data import label_subset as label_subset_lib
from tf2.data import pipeline as data_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib
from tf2.training import schedule

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
    validation.ConfigError: see adopt_architecture; rules broken by the
      adopted architecture. (The rules of the replicas are checked before,
      by validation.validate_replicas, since they change nothing here.)
      A split the dataset lacks or that holds no example (the eval split
      too, before training rather than after it).
  """
  if arch is not None:
    experiment = adopt_architecture(experiment, arch, arch_path)
  validation.validate(experiment)
  run = experiment.run
  split_examples = _split_examples(experiment, builder, 'train_split',
                                   needed=run.mode != 'eval')
  labeled, unlabeled = split_examples, 0
  if subset is not None:
    labeled, unlabeled = subset.num_labeled, subset.num_unlabeled
  # An epoch of fine-tuning on a subset is a pass over its labeled part.
  train_examples = (labeled if subset is not None and
                    run.train_mode == 'finetune' else split_examples)
  eval_examples = (0 if run.mode == 'train' else
                   _split_examples(experiment, builder, 'eval_split'))
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



def _split_examples(experiment, builder, name, needed=True):
  """Examples of the split --name names; ConfigError if it has none."""
  split = experiment.flat()[name]
  try:
    count = data_lib.num_examples(builder, split)
  except data_lib.DatasetNotPreparedError as e:
    raise validation.ConfigError(f'{experiment.source(name)}={split}: '
                                 f'{e}') from None
  if needed and not count:
    # Before training, not after it: an empty eval split would stop the run
    # only once training is done.
    example = 'train' if name == 'train_split' else 'test'
    raise validation.ConfigError(
        f'{experiment.source(name)}={split} holds no example of '
        f'{experiment.data.dataset}: pass a split with examples, e.g. '
        f'{example} or {example}[:10%].')
  return count


def label_subset(experiment, builder):
  """The run's labeled subset of --train_split, or None (all labeled).

  A run that already chose one (model_dir/label_subset.json, written with
  the run's record) keeps it: a resumed run and --mode=eval use exactly the
  same labeled examples.
  """
  data = experiment.data
  if not (data.label_fraction or data.labels_per_class):
    return None
  path = model_dir_lib.path(experiment.run.model_dir,
                            model_dir_lib.LABEL_SUBSET)
  if fileio.exists(path):
    return label_subset_lib.load_label_subset(path)
  return label_subset_lib.make_label_subset(
      builder, data.train_split, fraction=data.label_fraction or None,
      per_class=data.labels_per_class or None, seed=data.label_seed)
