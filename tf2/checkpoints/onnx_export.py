"""ONNX export of any SimCLR checkpoint, checked against its SavedModel.

For use outside TensorFlow (onnxruntime, TensorRT, PyTorch via
onnx2torch): tf2onnx converts the export's `serving_default` signature
(`export.py`: inference mode, float32 images in [0, 1], NHWC), so the ONNX
model has one input `images` (batch, height, width, 3), any batch and size,
and the signature's named outputs (`logits_sup`, `final_avg_pool`, ...).

Before the file is written, onnxruntime runs the converted graph on random
images of batches 1 and 5 at the model's image size, and every output must
equal the signature's within `TOLERANCE` of its largest magnitude; a graph
that does not is never written. The file is written whole or not at all and
never replaces an existing one.

tf2onnx and onnxruntime are optional (requirements-export.txt); they are
imported only here, when converting. ONNX files are protobufs, limited to
2 GB: the widest published models (ResNet-152 3x, 795 M parameters) exceed
it and are refused with a message.
"""

import numpy as np
import tensorflow as tf

from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import files as checkpoint_files
from tf2.checkpoints import restore as checkpoint_restore
from tf2.models import model as model_lib
from tf2.runtime import fileio

OPSET = 17
TOLERANCE = 1e-4
CHECK_BATCHES = (1, 5)
_PROTOBUF_LIMIT = 2 ** 31
_DIM_NAMES = ('batch', 'height', 'width')


class OnnxExportError(ValueError):
  """Bad input or a failed check; one line naming problem and fix."""


def _modules():
  """(tf2onnx, onnxruntime), or a message saying how to install them."""
  try:
    import onnxruntime  # pylint: disable=g-import-not-at-top
    import tf2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise OnnxExportError(
        f'ONNX export needs tf2onnx and onnxruntime ({e}): install them with '
        '`pip install -r requirements-export.txt`.') from None
  return tf2onnx, onnxruntime


def check_output(output):
  if not str(output).lower().endswith('.onnx'):
    raise OnnxExportError(f'--output={output}: pass a file name ending in '
                          '.onnx.')
  if fileio.exists(str(output)):
    raise OnnxExportError(f'--output={output} exists; nothing is '
                          'overwritten: pass a new file name or remove it.')


def load_model(checkpoint, use_ema=False, image_size=None):
  """The checkpoint's model, every variable filled (as export_saved_model).

  Returns:
    (Model, RestoreReport).
  """
  arch = architecture.infer_architecture(checkpoint)
  if 4 * arch['parameter_count'] >= _PROTOBUF_LIMIT * 0.95:
    raise OnnxExportError(
        f'{checkpoint}: {architecture.describe_architecture(arch)} has '
        f'{arch["parameter_count"] / 1e6:.0f} M parameters, more than the 2 '
        'GB an ONNX file holds; use its SavedModel (export_saved_model.py) '
        'instead.')
  overrides = {} if image_size is None else {'image_size': image_size}
  model = model_lib.build_model(architecture.model_config_for(
      arch, cifar_stem=arch['cifar_stem'], **overrides))
  report = checkpoint_restore.restore_model_weights(
      model, checkpoint, use_ema=use_ema, strict=True)
  return model, report


def convert_module(module, opset=OPSET):
  """The ONNX ModelProto of a SimCLRModule's serving signature."""
  tf2onnx, _ = _modules()
  proto, _ = tf2onnx.convert.from_function(
      module.serving_default, input_signature=[export.IMAGES_SPEC],
      opset=opset)
  # tf2onnx names unknown dimensions 'unk__N'; name them for their users.
  dims = proto.graph.input[0].type.tensor_type.shape.dim
  for dim, name in zip(dims, _DIM_NAMES):
    dim.dim_param = name
  return proto


def check_against_signature(proto, signature, image_size,
                            batches=CHECK_BATCHES, tolerance=TOLERANCE):
  """onnxruntime's outputs equal the signature's, or OnnxExportError.

  Args:
    proto: the ONNX ModelProto.
    signature: the SavedModel's serving function, `fn(images) -> dict`.
    image_size: height and width of the check images.
    batches: batch sizes to check.
    tolerance: of each output's largest magnitude (at least 1).

  Returns:
    The largest relative difference seen.
  """
  _, onnxruntime = _modules()
  session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                         providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  worst = 0.0
  for batch in batches:
    images = np.random.RandomState(batch).uniform(
        size=(batch, image_size, image_size, 3)).astype(np.float32)
    expected = {k: v.numpy() for k, v in signature(tf.constant(images)).items()}
    got = dict(zip(names, session.run(None, {'images': images})))
    if sorted(got) != sorted(expected):
      raise OnnxExportError(f'The ONNX graph has outputs {sorted(got)}, the '
                            f'SavedModel {sorted(expected)}.')
    for key, value in expected.items():
      scale = max(1.0, float(np.abs(value).max()))
      difference = float(np.abs(got[key] - value).max()) / scale
      worst = max(worst, difference)
      if got[key].shape != value.shape or not difference <= tolerance:
        raise OnnxExportError(
            f'onnxruntime and the SavedModel disagree on {key} at batch '
            f'{batch} (relative difference {difference:.2g} > {tolerance}): '
            'nothing was written; please report this with the checkpoint.')
  return worst


def export_onnx(checkpoint, output, use_ema=False, image_size=None,
                opset=OPSET):
  """Converts a checkpoint of any format to a checked ONNX file.

  Args:
    checkpoint: TF2 prefix or model_dir, SavedModel, TF1 `model.ckpt-N`.
    output: new `.onnx` file (any filesystem).
    use_ema: with a TF1 checkpoint, its moving-average weights.
    image_size: size of the check images; default: the architecture's
      build size (32 for a CIFAR stem, else 64). The file takes any size.
    opset: the ONNX opset.

  Returns:
    {'output', 'restore' (the restore summary), 'max_difference'}.

  Raises:
    OnnxExportError, checkpoint_files.CheckpointError: nothing written.
  """
  check_output(output)
  _modules()  # Before the model is built: a missing package fails fast.
  model, report = load_model(checkpoint, use_ema, image_size)
  module = export.build_saved_model(model)
  proto = convert_module(module, opset)
  worst = check_against_signature(proto, module.serving_default,
                                  model.config.image_size)
  try:
    fileio.write_bytes_new(str(output), proto.SerializeToString())
  except tf.errors.AlreadyExistsError:
    raise OnnxExportError(f'--output={output} appeared while converting; it '
                          'was kept: pass a new file name.') from None
  return {'output': str(output), 'restore': report.summary(),
          'max_difference': worst}


# The errors `export_onnx` raises for bad input.
INPUT_ERRORS = (OnnxExportError, checkpoint_files.CheckpointError)
