r"""Converts a TF1 SimCLR checkpoint (`model.ckpt-<step>`) to TF2 formats.

  python checkpoints_tools/convert_tf1_to_tf2.py \
    --tf1_checkpoint=r50_1x_sk0/model.ckpt-250228 --output_dir=r50_1x_sk0_tf2

writes

  <output_dir>/checkpoint, ckpt-<step>.index, ckpt-<step>.data-*
      a TF2 checkpoint (model weights and global_step) for
      `run.py --checkpoint=<output_dir>`;
  <output_dir>/saved_model/
      a SavedModel with the published signature
      (`tf.saved_model.load(d)(images, trainable=False)['logits_sup']`).

The architecture is read from the checkpoint. The conversion refuses, and
writes nothing, unless every model variable receives a value of its exact
shape and nothing but `global_step`, optimizer slots and the other EMA copy
is left over. Output is assembled in a temporary directory beside
`output_dir` and moved into place at the end (`fileio.replace_dir_atomic`),
on any filesystem TensorFlow supports.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf

from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.models import model as model_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib

FLAGS = flags.FLAGS


def _check_output_dir(output_dir):
  if fileio.exists(output_dir) and (not fileio.isdir(output_dir) or
                                    fileio.listdir(output_dir)):
    raise checkpoint_files.CheckpointError(
        f'{output_dir}: the output directory exists and is not empty. Pass a '
        'new --output_dir or remove this one; nothing is overwritten.')


def _write_converted(model, step, output_dir):
  """A function that writes checkpoint and SavedModel into a directory."""

  def write(directory):
    checkpoint = tf.train.Checkpoint(
        model=model, global_step=tf.Variable(step, dtype=tf.int64))
    # The manager writes the `checkpoint` file with relative paths, so the
    # directory stays valid once moved into place.
    tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save(
        checkpoint_number=step)
    export.export_saved_model(model, model_dir_lib.path(directory, model_dir_lib.SAVED_MODEL))
    _check_output_dir(output_dir)

  return write


def convert(tf1_checkpoint, output_dir, use_ema=False):
  """Converts; returns (checkpoint prefix, SavedModel dir, RestoreReport).

  Raises:
    checkpoint_files.CheckpointError: bad input; nothing was written.
  """
  output_dir = fileio.abspath(output_dir)
  fmt = checkpoint_files.detect_format(tf1_checkpoint)
  if fmt != 'tf1_checkpoint':
    raise checkpoint_files.CheckpointError(
        f'{tf1_checkpoint}: this is a {fmt}, not a TF1 checkpoint. Pass it '
        'to run.py --checkpoint as it is, or export it with '
        'checkpoints_tools/export_saved_model.py.')
  _check_output_dir(output_dir)
  arch = architecture.infer_architecture(tf1_checkpoint)
  model = model_lib.build_model(architecture.model_config_for(arch))
  report = checkpoint_restore.restore_model_weights(
      model, tf1_checkpoint, use_ema=use_ema, strict=True)
  step = arch['global_step'] or 0
  # The `checkpoint` file moves last where files move one by one: run.py
  # finds the checkpoint through it.
  fileio.replace_dir_atomic(_write_converted(model, step, output_dir),
                            output_dir, commit_file='checkpoint')
  return (fileio.join(output_dir, f'ckpt-{step}'),
          model_dir_lib.path(output_dir, model_dir_lib.SAVED_MODEL), report)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    prefix, saved_model, report = convert(
        FLAGS.tf1_checkpoint, FLAGS.output_dir, FLAGS.use_ema)
  except checkpoint_files.CheckpointError as e:
    sys.exit(f'Error: {e}')
  print(report.summary())
  print(f'TF2 checkpoint: {prefix}')
  print(f'SavedModel:     {saved_model}')


def define_flags():
  flags.DEFINE_string('tf1_checkpoint', None,
                      'TF1 checkpoint prefix, e.g. .../model.ckpt-250228.')
  flags.DEFINE_string('output_dir', None,
                      'New directory for ckpt-<step> and saved_model/.')
  flags.DEFINE_bool('use_ema', False,
                    'Convert the ema_model/ (moving average) weights instead '
                    'of the raw ones.')
  flags.mark_flags_as_required(['tf1_checkpoint', 'output_dir'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
