"""The `serving_default` signature of the library's export."""

import numpy as np
import pytest
import tensorflow as tf

from tests import serving
from tf2.checkpoints import export
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import precision


# Slow (8 s): each export path's test (run.py's, the converters') already
# checks the signature of a fine-tuned float32 model.
@pytest.mark.slow
def test_a_pretrained_mixed_precision_model_serves_float32_without_logits(
    tmp_path):
  config = config_lib.ModelConfig(
      resnet_depth=18, image_size=16, proj_out_dim=8, train_mode='pretrain',
      lineareval_while_pretraining=False)
  with precision.policy('mixed_bfloat16'):
    model = model_lib.build_model(config)
  # Moving statistics other than 0 and 1, so that a signature in training
  # mode (batch statistics) would give other outputs.
  for variable in model.non_trainable_variables:
    variable.assign(tf.random.stateless_uniform(
        variable.shape, seed=(len(variable.name), 1), minval=0.5, maxval=1.5))
  path = export.export_saved_model(model, str(tmp_path / 'export'))
  loaded = serving.assert_serving_equals_call(path)
  served = loaded.signatures['serving_default'](
      images=tf.random.stateless_uniform([2, 16, 16, 3], seed=(3, 4)))
  assert 'logits_sup' not in served
  assert {v.dtype for v in served.values()} == {tf.float32}
  assert sorted(served) == sorted(
      k for k in export.SIGNATURE_KEYS if k != 'logits_sup')
  trained = loaded(tf.random.stateless_uniform([2, 16, 16, 3], seed=(3, 4)),
                   trainable=True)
  assert not np.allclose(trained['final_avg_pool'].numpy(),
                         served['final_avg_pool'].numpy(), atol=1e-3)
