r"""Exports a SimCLR checkpoint of any format as a fine-tunable SavedModel.

  python checkpoints_tools/export_saved_model.py \
    --checkpoint=<ckpt, SavedModel or model.ckpt-N> --export_dir=<new dir>

The SavedModel has the published signature (`saved_model(images,
trainable)` returns the dict with `logits_sup`, `final_avg_pool`, ...) and,
unlike the published ones, lists every trainable variable in
`trainable_variables_list`, so the loaded model can be fine-tuned as a
whole:

  loaded = tf.saved_model.load(export_dir)
  with tf.GradientTape() as tape:
    logits = loaded(images, trainable=True)['logits_sup']
    loss = ...
  grads = tape.gradient(loss, loaded.trainable_variables_list)

The architecture is read from the checkpoint, and every variable must be
filled (see convert_tf1_to_tf2.py for the checks).
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.models import model as model_lib
from tf2.runtime import fileio

FLAGS = flags.FLAGS


def export_checkpoint(checkpoint, export_dir, use_ema=False):
  """Exports; returns (export_dir, RestoreReport).

  Raises:
    checkpoint_files.CheckpointError: bad input; nothing was written.
  """
  if fileio.exists(export_dir) and (not fileio.isdir(export_dir) or
                                    fileio.listdir(export_dir)):
    raise checkpoint_files.CheckpointError(
        f'{export_dir}: the export directory exists and is not empty. Pass a '
        'new --export_dir or remove this one; nothing is overwritten.')
  arch = architecture.infer_architecture(checkpoint)
  model = model_lib.build_model(architecture.model_config_for(arch))
  report = checkpoint_restore.restore_model_weights(
      model, checkpoint, use_ema=use_ema, strict=True)
  # Written beside export_dir and renamed: never half-written.
  return export.export_saved_model(model, export_dir), report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    export_dir, report = export_checkpoint(FLAGS.checkpoint, FLAGS.export_dir,
                                           FLAGS.use_ema)
  except checkpoint_files.CheckpointError as e:
    sys.exit(f'Error: {e}')
  print(report.summary())
  print(f'SavedModel: {export_dir}')


def define_flags():
  flags.DEFINE_string('checkpoint', None, 'A TF2 checkpoint prefix or '
                      'directory, a SavedModel directory or a TF1 checkpoint '
                      'prefix.')
  flags.DEFINE_string('export_dir', None, 'New directory for the SavedModel.')
  flags.DEFINE_bool('use_ema', False, 'With a TF1 checkpoint, export its '
                    'ema_model/ (moving average) weights.')
  flags.mark_flags_as_required(['checkpoint', 'export_dir'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
