r"""SimCLR command line: pretrain, fine-tune, distill, evaluate and export.

The only module that defines or reads flags. They are defined from the
settings of `tf2.config.settings` (names, types, defaults and help texts of
google-research/simclr's tf2/run.py, so its documented commands work
unchanged, plus this project's own) and turned into one `Experiment`:

  flag defaults < a preset (--config=<name>, see tf2/config/presets.py)
    < the record of the run in --model_dir (experiment.json: a resumed run
      and --mode=eval continue the run as it was described)
    < the flags given on the command line.

Then `tf2.runner.run` validates it, resolves it against the dataset and the
checkpoint, and runs it. Bad input stops with one line naming the setting
or path and the fix (exit code 2), before anything is written. A run that
could not go on (a NaN, a full disk, a second run) says why in one line
(exit code 1). SIGTERM (a preemption) saves a checkpoint of the last step and
exits with code 75 (`runtime/preemption.py`) and one line saying where the
same command resumes.

Quickstart on the embedded digits dataset (no network needed):

  python run.py --config=digits_quickstart_pretrain --model_dir=/tmp/digits
  python run.py --config=digits_quickstart_pretrain --helpconfig
"""

import dataclasses
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging

import tf2  # pylint: disable=unused-import  (sets TF_USE_LEGACY_KERAS first)
import tensorflow as tf  # pylint: disable=g-bad-import-order

from tf2 import runner
from tf2.checkpoints import files as checkpoint_files
from tf2.config import experiment as experiment_lib
from tf2.config import preflight
from tf2.config import presets
from tf2.config import settings
from tf2.config import validation
from tf2.data import pipeline as data_lib
from tf2.evaluation import linear_head as evaluation
from tf2.runtime import cluster
from tf2.runtime import fileio
from tf2.runtime import preemption
from tf2.runtime import run_lock
from tf2.runtime import strategy as strategy_lib
from tf2.training import checkpoint_state
from tf2.training import loop as train_loop

FLAGS = flags.FLAGS

_DEFINE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, str: flags.DEFINE_string}


def _define_setting_flags():
  for name, (_, field) in settings.fields().items():
    help_text, choices = field.metadata['help'], field.metadata['choices']
    if choices:
      flags.DEFINE_enum(name, field.default, list(choices), help_text)
    else:
      _DEFINE[settings.setting_type(field)](name, field.default,
                                                  help_text)


_define_setting_flags()
flags.DEFINE_string('config', None, 'A named preset whose values replace the '
                    'defaults (flags given still win): '
                    f'{", ".join(presets.names())}. See tf2/presets.py.')
flags.DEFINE_bool('helpconfig', False, 'Print every setting of the '
                  'experiment these flags describe (with where each value '
                  'comes from) and exit.')

# Errors of bad input (exit code 2) and of a run that could not go on
# (exit code 1): shown as one line that says what to do, not a traceback.
_USER_ERRORS = (validation.ConfigError, preflight.PathError,
                strategy_lib.NoTPUError, data_lib.DatasetNotPreparedError,
                data_lib.ImageFolderError, checkpoint_files.CheckpointError,
                evaluation.EmptyEvalError)
_RUN_ERRORS = (run_lock.LockedError, train_loop.NonFiniteLossError,
               checkpoint_state.SaveError, cluster.ClusterError)


def _exit_with(error, code):
  print(f'run.py: error: {error}', file=sys.stderr)
  sys.exit(code)


def _out_of_memory(error):
  """'OOM when allocating tensor with shape[...] ...' of an error, or None."""
  if isinstance(error, MemoryError):
    return 'the host is out of memory'
  found = re.search(r'OOM when allocating tensor with shape\[[^\]]*\]'
                    r'( and type \w+)?( on [^ ]+)?', str(error))
  if not isinstance(error, tf.errors.ResourceExhaustedError) or not found:
    return None
  return found.group(0)


def runtime_failure(error):
  """The line for a run that could not go on (exit 1), or None.

  A lost worker of the cluster, memory or storage that failed.
  """
  lost = cluster.peer_failure(error, os.environ.get('TF_CONFIG'))
  if lost:
    return lost + '.'
  oom = _out_of_memory(error)
  if oom:
    return (f'{oom}: the model, batch or memory of these settings do not '
            'fit. Pass a smaller --train_batch_size (or --num_microbatches, '
            '--recompute_blocks), --image_size, --width_multiplier, '
            '--proj_out_dim or --memory_size.')
  problem = fileio.storage_problem(error)
  if problem is not None:
    return (f'writing failed: {problem}. Free some space (or fix the '
            'permissions) and run the same command again: the run resumes '
            'from its last complete checkpoint.')
  remote = fileio.remote_failure(error)
  return None if remote is None else f'remote storage failed: {remote}.'


def experiment_from_flags():
  """The Experiment the command line describes (see the module docstring)."""
  given = {name: FLAGS[name].value for name in settings.fields()
           if FLAGS[name].present}
  return experiment_lib.compose(given, FLAGS.config, FLAGS.model_dir)


def describe(experiment):
  """Every setting, by section, with the source of those not at default."""
  lines = []
  for section in settings.SECTIONS:
    lines.append(f'[{section}]')
    for name, value in sorted(
        dataclasses.asdict(getattr(experiment, section)).items()):
      source = experiment.sources.get(name)
      lines.append(f'  {name} = {value!r}' +
                   (f'    # {source}' if source else ''))
  return '\n'.join(lines)


def parse_flags(argv):
  """absl's parsing, with a flag it cannot parse as one line (exit code 2).

  absl would print two lines and exit with 1; a value of the wrong type, an
  unknown choice or an unknown flag is a usage error like the others.
  """
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _exit_with(f'{e}. See python run.py --helpfull for every flag, its type '
               'and its choices.', 2)


def main(argv):
  if len(argv) > 1:
    _exit_with(f'unexpected arguments {argv[1:]}: every setting is a flag '
               '(--name=value, e.g. --model_dir=/tmp/simclr).', 2)
  try:
    experiment = experiment_from_flags()
    if FLAGS.helpconfig:
      if FLAGS.config:
        print(presets.command(FLAGS.config))
      print(describe(experiment))
      return
    runner.run(experiment)
  except _USER_ERRORS as e:
    _exit_with(e, 2)
  except _RUN_ERRORS as e:
    _exit_with(e, 1)
  except preemption.Preempted as e:
    # Saved and stopped on SIGTERM: exit code 75, one line saying where the
    # same command resumes.
    print(f'run.py: {e}', file=sys.stderr)
    # Saved, summaries flushed, the lock released: leave now. The normal
    # exit waits for TensorFlow's teardown of its thread pools (14-22 s
    # measured here on 2 busy cores), much of a 30 s grace period, after
    # which the scheduler's SIGKILL would replace the exit code.
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(preemption.EXIT_CODE)  # pylint: disable=protected-access
  except (OSError, tf.errors.OpError, MemoryError) as e:
    failure = runtime_failure(e)
    if failure is None:
      raise
    _exit_with(failure, 1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
