"""tf.train.Checkpoint(model=...) writes the published TF2 checkpoint keys."""

import pytest
import tensorflow as tf

from tests import golden
from tf2.checkpoints import tf1_mapping
from tf2.models import config as config_lib
from tf2.models import model as model_lib

# The widest networks take minutes and gigabytes to build and write on 2 CPUs.
_WIDE = ('r152_2x_sk0', 'r152_2x_sk1', 'r152_3x_sk1', 'r101_2x_sk1')
_LAYOUT_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in _WIDE else n
                  for n in golden.LAYOUTS]


def _published_architecture(name):
  # The layouts were made with 1000 classes in fine-tuning mode, so both heads
  # exist; the image size only changes activations, not variables.
  return model_lib.build_model(config_lib.ModelConfig(
      num_classes=1000, image_size=32, cifar_stem=False,
      train_mode='finetune', global_bn=False,
      **golden.layout_config(name)))


@pytest.mark.parametrize('name', _LAYOUT_PARAMS)
def test_checkpoint_keys_and_shapes_match_published_layout(name, tmp_path):
  model = _published_architecture(name)
  tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
  written = {n: tuple(s) for n, s in tf.train.list_variables(
      str(tmp_path / 'ckpt')) if n != '_CHECKPOINTABLE_OBJECT_GRAPH'}
  expected = dict(golden.layout('tf2', name))
  assert sorted(set(written) ^ set(expected)) == []
  assert written == expected

  # The same model's creation order names every TF1 variable, in order.
  tf1 = [(n, tuple(v.shape)) for n, v in
         tf1_mapping.tf1_variable_map(model).items()]
  assert tf1 == golden.layout('tf1', name)


def test_global_bn_writes_the_same_keys(tmp_path):
  config = config_lib.ModelConfig(num_classes=10, resnet_depth=18,
                                  image_size=32, train_mode='finetune')
  keys = []
  for global_bn in (False, True):
    model = model_lib.build_model(config.replace(global_bn=global_bn))
    path = tf.train.Checkpoint(model=model).write(
        str(tmp_path / f'bn{global_bn}'))
    keys.append([n for n, _ in tf.train.list_variables(path)])
  assert keys[0] == keys[1]
