"""SavedModel export with the published signature.

`saved_model(images, trainable)` returns a dict of the model's named outputs
(`initial_conv`, `initial_max_pool`, `block_group1..4`, `final_avg_pool`,
`proj_head_input`, `proj_head_output` and, with a supervised head,
`logits_sup`), exactly the keys of Google's exported models, so code written
for those (`tf.saved_model.load(path)(images, trainable=False)['logits_sup']`)
works with ours. The model sits under the attribute `model`, so the
SavedModel's variables have the same `model/...` object paths as a
checkpoint, and `trainable_variables_list` lists every trainable variable so
the loaded module can be fine-tuned as a whole.

Beside the published `__call__`, every export carries a `serving_default`
signature (`loaded.signatures['serving_default'](images=...)`): inference
mode only, float32 images in [0, 1] of any size and batch, the same named
outputs. Signatures are what TF Serving, `saved_model_cli run`, Keras 3's
`TFSMLayer` and converters such as tf2onnx call; the published SavedModels
have none, so those tools find nothing to call in them.
"""

import tensorflow as tf

from tf2.models import model as model_lib
from tf2.runtime import fileio
from tf2.runtime import model_dir as model_dir_lib
from tf2.runtime import precision

SERVING_SIGNATURE = 'serving_default'
# The serving signature's one input: a batch of RGB images in [0, 1].
IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name='images')
# What `__call__` is traced for (unnamed, as before the signature existed).
_CALL_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32)

SIGNATURE_KEYS = ('initial_conv', 'initial_max_pool', 'block_group1',
                  'block_group2', 'block_group3', 'block_group4',
                  'final_avg_pool', 'proj_head_input', 'proj_head_output',
                  'logits_sup')


class SimCLRModule(tf.Module):
  """Wraps a Model for export; see the module docstring."""

  def __init__(self, model):
    super().__init__()
    self.model = model
    # Not `trainable_variables`: tf.Module already defines that name.
    self.trainable_variables_list = list(model.trainable_variables)

  @tf.function
  def __call__(self, inputs, trainable):
    outputs = self.model.endpoints(inputs, training=trainable)
    return {k: outputs[k] for k in SIGNATURE_KEYS if k in outputs}

  @tf.function(input_signature=[IMAGES_SPEC])
  def serving_default(self, images):
    """`__call__(images, trainable=False)` as a signature: one input.

    It calls the concrete function `__call__` was traced into for
    trainable=False, so both run the same ops. The runtime rewrites each
    top-level function's graph on its own (fusions, op order), so the two
    agree to float32 rounding (about 1e-6 of an output's magnitude), not
    always to the bit.
    """
    return self.__call__.get_concrete_function(_CALL_SPEC, trainable=False)(
        images)


def build_saved_model(model):
  """A tf.Module with `__call__` traced for trainable=True and False."""
  module = SimCLRModule(model)
  module.__call__.get_concrete_function(_CALL_SPEC, trainable=True)
  module.__call__.get_concrete_function(_CALL_SPEC, trainable=False)
  return module


def save(module, export_dir):
  """tf.saved_model.save of a SimCLRModule, with its serving signature."""
  tf.saved_model.save(
      module, export_dir,
      signatures={SERVING_SIGNATURE: module.serving_default})


def float32_copy(model):
  """A freshly built float32 Model holding `model`'s weights.

  Exports compute in float32 whatever the model was trained in (a
  mixed-precision model computes in 16 bits), and every variable of the
  copy is trainable as in the published SavedModels (the memory's EMA
  model keeps its own weights non-trainable).
  """
  with precision.policy('float32'):
    copy = model_lib.build_model(model.config)
  for target, source in zip(model_lib.variables_in_creation_order(copy),
                            model_lib.variables_in_creation_order(model)):
    target.assign(tf.cast(source.read_value(), target.dtype))
  return copy


def export_saved_model(model, export_dir):
  """Writes the SavedModel to `export_dir` atomically, on any filesystem.

  A model trained under a mixed-precision policy is exported as its float32
  copy, so every export has the published float32 signature.

  The export is written to a temporary sibling and moved into place
  (`fileio.replace_dir_atomic`, `saved_model.pb` last), so an interrupted
  export never leaves a half-written directory that loads, and an existing
  export is only replaced once the new one is complete.

  Returns:
    export_dir.
  """
  if model.dtype_policy.name != 'float32':
    model = float32_copy(model)
  module = build_saved_model(model)
  return fileio.replace_dir_atomic(
      lambda tmp_dir: save(module, tmp_dir), export_dir,
      commit_file='saved_model.pb')


def exported_steps(model_dir):
  """Steps of the complete exports under `model_dir/saved_model/`, sorted."""
  export_root = model_dir_lib.path(model_dir, model_dir_lib.SAVED_MODEL)
  if not fileio.isdir(export_root):
    return []
  return sorted(int(d.rstrip('/')) for d in fileio.listdir(export_root)
                if d.rstrip('/').isdigit() and fileio.exists(
                    fileio.join(export_root, d.rstrip('/'), 'saved_model.pb')))


def export_step(model, model_dir, global_step, keep_max):
  """Exports to `model_dir/saved_model/<step>`, keeping the newest keep_max.

  keep_max <= 0 keeps every export (the reference's keep_hub_module_max).
  """
  export_root = model_dir_lib.path(model_dir, model_dir_lib.SAVED_MODEL)
  path = export_saved_model(model, model_dir_lib.export_dir(model_dir,
                                                            global_step))
  if keep_max > 0:
    for step in exported_steps(model_dir)[:-keep_max]:
      fileio.rmtree(fileio.join(export_root, str(step)))
  return path
