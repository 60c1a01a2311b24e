r"""Exports a SimCLR checkpoint of any format as an ONNX model, checked.

  python checkpoints_tools/export_onnx.py \
    --checkpoint=<ckpt, model_dir, SavedModel or model.ckpt-N> \
    --output=model.onnx

The ONNX model has one input `images`, float32 (batch, height, width, 3) in
[0, 1], any batch and size, and the outputs of the SavedModel's
`serving_default` signature (`logits_sup`, `final_avg_pool`, ...), computed
in inference mode. Before the file is written, onnxruntime runs it on
batches of 1 and 5 images and every output must equal the SavedModel's
within 1e-4. Needs `pip install -r requirements-export.txt` (tf2onnx,
onnxruntime). See tf2/checkpoints/onnx_export.py.

  import numpy as np, onnxruntime
  session = onnxruntime.InferenceSession('model.onnx')
  logits, = session.run(['logits_sup'], {'images': images})
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from checkpoints_tools import cli

from tf2.checkpoints import onnx_export

FLAGS = flags.FLAGS


def main(argv):
  cli.refuse_positional_arguments('export_onnx.py', argv)
  try:
    summary = onnx_export.export_onnx(
        FLAGS.checkpoint, FLAGS.output, use_ema=FLAGS.use_ema,
        image_size=FLAGS.image_size, opset=FLAGS.opset)
  except onnx_export.INPUT_ERRORS as e:
    cli.fail('export_onnx.py', e)
  print(summary['restore'])
  print(f'ONNX model: {summary["output"]} (onnxruntime matches the '
        f'SavedModel to {summary["max_difference"]:.1g} relative)')


def define_flags():
  cli.define_checkpoint_flag()
  flags.DEFINE_string('output', None, 'New .onnx file; an existing file is '
                      'never replaced.')
  flags.DEFINE_bool('use_ema', False, 'With a TF1 checkpoint, export its '
                    'ema_model/ (moving average) weights.')
  flags.DEFINE_integer('image_size', None, 'Size of the images the check '
                       'runs on (the ONNX model takes any size); default 32 '
                       'for a CIFAR stem, else 64.')
  flags.DEFINE_integer('opset', onnx_export.OPSET, 'ONNX opset version.')
  flags.mark_flags_as_required(['checkpoint', 'output'])


if __name__ == '__main__':
  define_flags()
  app.run(main)
