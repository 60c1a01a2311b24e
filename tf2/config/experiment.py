"""One experiment, described once: what a run.py command means.

An `Experiment` holds every setting of a run in the five frozen sections of
`settings.py` (model, data, optimizer, loss, run: run.py's flags, with
their names, defaults and help texts) plus `resolved`, the values the
dataset and the checkpoint determine (example counts, steps, the
architecture of a checkpoint).

The life of an experiment (Model Garden's validate, lock, save):
  1. `build(values, sources)`: flag defaults, then a preset's values
     (`presets.py`), then the record of the run being resumed or evaluated,
     then the flags given on the command line (`sources` says which).
  2. `validation.validate`: every rule between settings, before anything is
     read or written.
  3. `resolve.resolve`: counts and steps from the dataset, architecture from
     the checkpoint; validated again.
  4. `save(model_dir)`: `experiment.json`, read back by `--mode=eval` and by
     a resumed run, so both know the steps training reaches and its label
     subset.
Library code never reads flags: notebooks and tests build an Experiment
from keyword arguments (`Experiment.from_flat(resnet_depth=18, ...)`).
"""

import dataclasses
from typing import Optional

from tf2.config import presets
from tf2.config import settings as settings_lib
from tf2.config import validation
from tf2.data import label_subset as label_subset_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib

FILENAME = model_dir_lib.EXPERIMENT
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Every setting of one run; see the module docstring.

  Attributes:
    model, data, optimizer, loss, run: the sections.
    resolved: `Resolved` once `resolve.resolve` ran, else None.
    sources: {setting name: where its value came from} for settings not at
      their default: 'flag', 'preset <name>' or 'record <path>'.
  """
  model: settings_lib.ModelSection = settings_lib.ModelSection()
  data: settings_lib.DataSection = settings_lib.DataSection()
  optimizer: settings_lib.OptimizerSection = settings_lib.OptimizerSection()
  loss: settings_lib.LossSection = settings_lib.LossSection()
  run: settings_lib.RunSection = settings_lib.RunSection()
  resolved: Optional[settings_lib.Resolved] = None
  sources: dict = dataclasses.field(default_factory=dict, compare=False)

  @classmethod
  def from_flat(cls, sources=None, **values):
    """An Experiment from {setting name: value}; others keep defaults.

    Raises:
      ValueError: a name that is no setting.
    """
    known = settings_lib.fields()
    unknown = sorted(set(values) - set(known))
    if unknown:
      raise ValueError(f'Unknown settings {unknown}.')
    by_section = {name: {} for name in settings_lib.SECTIONS}
    for name, value in values.items():
      by_section[known[name][0]][name] = value
    return cls(**{name: settings_lib.SECTIONS[name](**kwargs)
                  for name, kwargs in by_section.items()},
               sources=dict(sources or {}))

  def flat(self):
    """{setting name: value} of every setting (not `resolved`)."""
    values = {}
    for name in settings_lib.SECTIONS:
      values.update(dataclasses.asdict(getattr(self, name)))
    return values

  def replace(self, sources=None, **values):
    """A copy with some settings changed (by setting name)."""
    merged = dict(self.flat(), **values)
    new = Experiment.from_flat(sources=sources or self.sources, **merged)
    return dataclasses.replace(new, resolved=self.resolved)

  def with_resolved(self, resolved):
    return dataclasses.replace(self, resolved=resolved)

  def source(self, name):
    """'--name' when given as a flag, else its source, for messages."""
    where = self.sources.get(name, 'flag')
    return f'--{name}' if where == 'flag' else f'{name} (from {where})'

  def to_json(self):
    record = {name: dataclasses.asdict(getattr(self, name))
              for name in settings_lib.SECTIONS}
    record['resolved'] = (None if self.resolved is None else
                          dataclasses.asdict(self.resolved))
    record['sources'] = dict(sorted(self.sources.items()))
    record['format_version'] = _FORMAT_VERSION
    return record


def build(layers):
  """Merges layers of settings, later ones winning.

  Args:
    layers: [(source label, {setting name: value})], e.g. [('preset
      digits', {...}), ('record /m/experiment.json', {...}), ('flag',
      {...})]. Unknown names in a record (written by another version) are
      ignored; unknown names elsewhere raise ValueError.

  Returns:
    Experiment whose `sources` names the layer of each value.
  """
  values, sources = {}, {}
  known = settings_lib.fields()
  for label, layer in layers:
    for name, value in layer.items():
      if name not in known:
        if label.startswith('record'):
          continue
        raise ValueError(f'{label}: {name!r} is no setting of run.py.')
      values[name] = value
      sources[name] = label
  return Experiment.from_flat(sources=sources, **values)


# Record settings a new command never inherits: what to do, and where.
_NOT_INHERITED = ('mode', 'model_dir')


def compose(given, preset=None, model_dir=None):
  """The Experiment of a command: defaults < preset < record < given.

  Args:
    given: {setting: value} given explicitly (run.py: the flags present on
      the command line); a path starting with '~' is taken from $HOME.
    preset: name of a preset (`presets.py`), or None.
    model_dir: a model_dir whose experiment.json (if any) describes the run
      being resumed or evaluated; its settings, except `mode` and
      `model_dir`, replace the preset's.

  Returns:
    Experiment.

  Raises:
    validation.ConfigError: an unknown preset or an unreadable record.
  """
  given = {name: fileio.expand_home(value) if name in settings_lib.PATHS and value
           else value for name, value in given.items()}
  model_dir = model_dir and fileio.expand_home(model_dir)
  layers = []
  if preset:
    layers.append((f'preset {preset}', presets.get(preset)))
  if model_dir and fileio.isdir(model_dir):
    try:
      record = load_record(model_dir)
    except ValueError as e:
      raise validation.ConfigError(str(e)) from None
    if record is not None:
      layers.append((f'record {record_path(model_dir)}',
                     {k: v for k, v in record[0].items()
                      if k not in _NOT_INHERITED}))
  layers.append(('flag', dict(given)))
  return build(layers)


def record_path(model_dir):
  return fileio.join(model_dir, FILENAME)


def save(experiment, model_dir):
  """Writes `model_dir/experiment.json` atomically; returns its path."""
  return fileio.write_json_atomic(record_path(model_dir),
                                  experiment.to_json())


def flags_record(experiment):
  """flags.json's content: every setting, plus the run's counts and steps."""
  resolved = experiment.resolved
  return dict(experiment.flat(),
              num_labeled_examples=resolved.num_labeled_examples,
              num_unlabeled_examples=resolved.num_unlabeled_examples,
              num_train_examples=resolved.num_train_examples,
              num_eval_examples=resolved.num_eval_examples,
              train_steps=resolved.train_steps)


def record(experiment, subset=None):
  """Writes label_subset.json (once), experiment.json and flags.json."""
  model_dir = experiment.run.model_dir
  fileio.makedirs(model_dir)
  subset_path = model_dir_lib.path(model_dir, model_dir_lib.LABEL_SUBSET)
  if subset is not None and not fileio.exists(subset_path):
    label_subset_lib.save_label_subset(subset, subset_path)
  save(experiment, model_dir)
  fileio.write_json_atomic(model_dir_lib.path(model_dir, model_dir_lib.FLAGS),
                           flags_record(experiment))


def final_step(experiment):
  """The step training ends at: its own record's, else the settings'."""
  steps = experiment.resolved.train_steps
  found = load_record(experiment.run.model_dir)
  if found is not None and found[1]:
    steps = min(steps, found[1]['train_steps'])
  return steps


def load_record(model_dir):
  """(settings, resolved) of a model_dir's experiment.json, or None.

  settings is flat {setting name: value}; resolved a dict or None.

  Raises:
    ValueError: the file exists but is no experiment record.
  """
  record = model_dir_lib.read_record(model_dir)
  if record is None:
    return None
  return model_dir_lib.record_settings(record), record.get('resolved')
