"""The files a run writes in its model_dir, named once.

    model_dir/
      checkpoint, ckpt-<step>.*   training checkpoints (CheckpointManager)
      experiment.json             the resolved experiment (config/experiment)
      flags.json                  every setting and the run's counts, as the
                                  reference's flags.json
      label_subset.json           the labeled subset of --train_split
      result.json, result_<step>.json   eval results of the last / each step
      saved_model/<step>/         the exported SavedModel of each evaluation
      saved_model_ema/<step>/     the memory buffer's moving-average model
      run.lock                    the training run that holds model_dir
      events.out.tfevents.*       TensorBoard summaries

Every module that writes or reads one of these (the runner, evaluation,
export, distillation's teacher lookup, the notebooks' tools, the converters)
takes its name from here. `read_record` reads experiment.json as raw JSON, so
that low-level modules (a teacher's ft_proj_selector) need not import the
configuration; `config/experiment.py` turns it into an Experiment.
"""

from tf2.runtime import fileio

EXPERIMENT = 'experiment.json'
FLAGS = 'flags.json'
LABEL_SUBSET = 'label_subset.json'
RESULT = 'result.json'
SAVED_MODEL = 'saved_model'
SAVED_MODEL_EMA = 'saved_model_ema'
RUN_LOCK = 'run.lock'
# The sections of experiment.json that hold settings (config/settings.py).
RECORD_SECTIONS = ('model', 'data', 'optimizer', 'loss', 'run')


def path(model_dir, *names):
  """model_dir/<names...> on any filesystem."""
  return fileio.join(model_dir, *names)


def result_name(global_step):
  """The per-step result file, beside result.json."""
  return f'result_{int(global_step)}.json'


def export_dir(model_dir, global_step, ema=False):
  """model_dir/saved_model[_ema]/<step>."""
  return path(model_dir, SAVED_MODEL_EMA if ema else SAVED_MODEL,
              str(int(global_step)))


def read_record(model_dir):
  """The raw experiment.json of model_dir as a dict, or None if absent.

  Raises:
    ValueError: the file exists but is no experiment record.
  """
  record_path = path(model_dir, EXPERIMENT)
  if not fileio.exists(record_path):
    return None
  record = fileio.read_json(record_path)
  if not isinstance(record, dict) or 'run' not in record:
    raise ValueError(f'{record_path} is not an experiment record written by '
                     'run.py: move it away.')
  return record


def record_settings(record):
  """{setting name: value} of a raw experiment.json dict."""
  settings = {}
  for section in RECORD_SECTIONS:
    settings.update(record.get(section) or {})
  return settings


def settings_near(checkpoint_path, levels=3):
  """Settings of the run that wrote `checkpoint_path`, from its record.

  A run's checkpoints sit in model_dir and its SavedModels in
  model_dir/saved_model/<step>, so model_dir is at most three levels up.
  experiment.json is preferred to flags.json (older runs wrote only the
  latter).

  Returns:
    (flat {setting: value}, the record's path), or (None, None).
  """
  directory = (checkpoint_path if fileio.isdir(checkpoint_path) else
               fileio.dirname(checkpoint_path))
  for _ in range(levels + 1):
    if fileio.isfile(path(directory, EXPERIMENT)):
      return (record_settings(fileio.read_json(path(directory, EXPERIMENT))),
              path(directory, EXPERIMENT))
    if fileio.isfile(path(directory, FLAGS)):
      return fileio.read_json(path(directory, FLAGS)), path(directory, FLAGS)
    parent = fileio.dirname(directory)
    if not parent or parent == directory or (
        '://' in directory and '://' not in parent):  # Past gs://bucket.
      break
    directory = parent
  return None, None
