"""Checks of the `serving_default` signature every export carries.

Shared by the tests of each export path (run.py, the TF1 converter,
export_saved_model.py, the library's export) so that each checks the same
contract: inference mode, float32 images of any size and batch, exactly
the outputs of the published `__call__(images, trainable=False)`.
"""

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from tf2.checkpoints import export as export_lib

# Images of another size and batch than the ones the model was built for:
# the signature takes any.
SIZES = ((1, 16, 16), (5, 20, 24))


@contextlib.contextmanager
def graph_rewrites_off():
  """Grappler off: functions run op for op as traced.

  The default runtime rewrites each function's graph on its own (fusions,
  op order), so two functions of the same ops can round differently (by
  up to ~1.4e-6 of an output's magnitude here); without the rewrites,
  equal ops give equal bits.
  """
  old = tf.config.optimizer.get_experimental_options()
  tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})
  try:
    yield
  finally:
    tf.config.optimizer.set_experimental_options(
        dict(old, disable_meta_optimizer=old.get('disable_meta_optimizer',
                                                 False)))


def _compare(loaded, images, exact):
  signature = loaded.signatures[export_lib.SERVING_SIGNATURE]
  served = signature(images=images)
  called = loaded(images, trainable=False)
  assert sorted(served) == sorted(called)
  for key, value in called.items():
    value, got = value.numpy(), served[key].numpy()
    if exact:
      np.testing.assert_array_equal(got, value, err_msg=key)
    else:
      scale = max(1.0, float(np.abs(value).max()))
      np.testing.assert_allclose(got, value, rtol=0, atol=1e-5 * scale,
                                 err_msg=key)


def assert_serving_equals_call(export, sizes=SIZES):
  """The signature's outputs are `__call__(images, trainable=False)`'s.

  Bit for bit when both run op for op (graph rewrites off), and within
  1e-5 of each output's magnitude with the runtime's default rewrites.

  Args:
    export: an export directory.
    sizes: (batch, height, width) of the images to compare on.

  Returns:
    The SavedModel, loaded with the default runtime.
  """
  with graph_rewrites_off():
    plain = tf.saved_model.load(str(export))
    signature = plain.signatures[export_lib.SERVING_SIGNATURE]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ['images']
    assert inputs['images'].shape.as_list() == [None, None, None, 3]
    assert inputs['images'].dtype == tf.float32
    for batch, height, width in sizes:
      _compare(plain, _images(batch, height, width), exact=True)
  loaded = tf.saved_model.load(str(export))
  for batch, height, width in sizes:
    _compare(loaded, _images(batch, height, width), exact=False)
  return loaded


def _images(batch, height, width):
  return tf.random.stateless_uniform([batch, height, width, 3],
                                     seed=(batch, height))


_KERAS3 = textwrap.dedent("""
    import os, sys
    assert 'TF_USE_LEGACY_KERAS' not in os.environ
    import numpy as np
    import keras
    assert keras.__version__.startswith('3.'), keras.__version__
    layer = keras.layers.TFSMLayer(sys.argv[1],
                                   call_endpoint='serving_default')
    images = np.load(sys.argv[2])
    outputs = layer(images)
    np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in outputs.items()})
""")


def keras3_outputs(export_dir, images, tmp_path):
  """The outputs Keras 3's TFSMLayer gives, in a process without tf-keras."""
  images_file, outputs_file = tmp_path / 'images.npy', tmp_path / 'out.npz'
  np.save(images_file, np.asarray(images, np.float32))
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  result = subprocess.run(
      [sys.executable, '-c', _KERAS3, str(export_dir), str(images_file),
       str(outputs_file)], capture_output=True, text=True, timeout=300,
      env=env, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return dict(np.load(outputs_file))
