"""TF1 names follow from the TF2 keys in creation order."""

import functools

import pytest

from tests import golden
from tf2.checkpoints import architecture
from tf2.checkpoints import object_graph
from tf2.checkpoints import tf1_mapping
from tf2.models import model as model_lib


@functools.lru_cache(maxsize=None)
def _keys_in_creation_order(resnet_depth, sk_ratio):
  """Keys of a 1x model of a published structure, in creation order.

  The width changes shapes, not keys, so the 1x model has the keys of the
  2x and 3x models too, and builds in seconds where they take minutes.
  """
  arch = dict(resnet_depth=resnet_depth, width_multiplier=1,
              sk_ratio=sk_ratio, se_ratio=0.0, cifar_stem=False,
              proj_head_mode='nonlinear', num_proj_layers=3,
              proj_out_dim=128, num_classes=1000, has_supervised_head=True)
  model = model_lib.build_model(architecture.model_config_for(
      arch, image_size=32))
  return tuple(key for key, _ in object_graph.keyed_in_creation_order(model))


@pytest.mark.parametrize('name', golden.LAYOUTS)
def test_tf1_names_map_one_to_one_onto_published_tf2_keys(name):
  tf2 = dict(golden.layout('tf2', name))
  tf1 = golden.layout('tf1', name)
  config = golden.layout_config(name)
  keys = _keys_in_creation_order(config['resnet_depth'], config['sk_ratio'])
  assert sorted(keys) == sorted(tf2)
  mapping = dict(zip(keys, tf1_mapping.tf1_names(keys)))
  assert len(mapping) == len(tf2) == len(tf1)
  assert len(set(mapping.values())) == len(mapping)
  # Same names, same shapes, in the TF1 creation order.
  assert [(tf1_name, tf2[key]) for key, tf1_name in mapping.items()] == tf1


def test_a_linear_head_is_named_l_0():
  keys = ['model/_projection_head/linear_layers/0/dense/kernel'
          '/.ATTRIBUTES/VARIABLE_VALUE',
          'model/_projection_head/linear_layers/0/bn_relu/bn/gamma'
          '/.ATTRIBUTES/VARIABLE_VALUE']
  assert tf1_mapping.tf1_names(keys, linear_head=True) == [
      'head_contrastive/l_0/dense/kernel',
      'head_contrastive/l_0/batch_normalization/gamma']
  assert tf1_mapping.tf1_names(keys)[0] == 'head_contrastive/nl_0/dense/kernel'


def test_a_key_of_no_model_part_is_refused():
  with pytest.raises(ValueError, match='no variable of a SimCLR model'):
    tf1_mapping.tf1_names(['optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE'])
