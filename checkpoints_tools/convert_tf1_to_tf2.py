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
`output_dir` and renamed into place at the end.
"""

import os
import shutil
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf

from tf2 import checkpoint_io
from tf2 import export
from tf2 import model as model_lib

FLAGS = flags.FLAGS


def _check_output_dir(output_dir):
  if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or
                                     os.listdir(output_dir)):
    raise checkpoint_io.CheckpointError(
        f'{output_dir}: the output directory exists and is not empty. Pass a '
        'new --output_dir or remove this one; nothing is overwritten.')


def convert(tf1_checkpoint, output_dir, use_ema=False):
  """Converts; returns (checkpoint prefix, SavedModel dir, RestoreReport).

  Raises:
    checkpoint_io.CheckpointError: bad input; nothing was written.
  """
  output_dir = os.path.abspath(output_dir)
  fmt = checkpoint_io.detect_format(tf1_checkpoint)
  if fmt != 'tf1_checkpoint':
    raise checkpoint_io.CheckpointError(
        f'{tf1_checkpoint}: this is a {fmt}, not a TF1 checkpoint. Pass it '
        'to run.py --checkpoint as it is, or export it with '
        'checkpoints_tools/export_saved_model.py.')
  _check_output_dir(output_dir)
  arch = checkpoint_io.infer_architecture(tf1_checkpoint)
  model = model_lib.build_model(checkpoint_io.model_config_for(arch))
  report = checkpoint_io.restore_model_weights(
      model, tf1_checkpoint, use_ema=use_ema, strict=True)
  step = arch['global_step'] or 0

  parent = os.path.dirname(output_dir)
  os.makedirs(parent, exist_ok=True)
  tmp_dir = os.path.join(parent, f'.tmp-{os.path.basename(output_dir)}-'
                         f'{uuid.uuid4().hex[:8]}')
  try:
    checkpoint = tf.train.Checkpoint(
        model=model, global_step=tf.Variable(step, dtype=tf.int64))
    # The manager writes the `checkpoint` file with relative paths, so the
    # directory stays valid after the rename below.
    prefix = tf.train.CheckpointManager(checkpoint, tmp_dir, max_to_keep=1).save(
        checkpoint_number=step)
    export.export_saved_model(model, os.path.join(tmp_dir, 'saved_model'))
    _check_output_dir(output_dir)
    if os.path.isdir(output_dir):
      os.rmdir(output_dir)
    os.rename(tmp_dir, output_dir)
  finally:
    if os.path.exists(tmp_dir):
      shutil.rmtree(tmp_dir, ignore_errors=True)
  return (os.path.join(output_dir, os.path.basename(prefix)),
          os.path.join(output_dir, 'saved_model'), report)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    prefix, saved_model, report = convert(
        FLAGS.tf1_checkpoint, FLAGS.output_dir, FLAGS.use_ema)
  except checkpoint_io.CheckpointError as e:
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
