"""Reads the reference fixtures: golden configs, weights and outputs.

The weight rule is the one documented in ../shared/fixtures/README.md: every
variable is a deterministic function of its TF1 name and shape, except the
batch-norm moving statistics, which are stored in the npz.
"""

import json

import numpy as np

from tf2.models import config as config_lib

from tests.conftest import FIXTURES
from tests.fixture_weights import rule_weight

GOLDEN_CONFIGS = ('r18_1x_sk0_32px', 'r50_1x_sk0_64px', 'r50_1x_sk1_64px')
LAYOUTS = ('r50_1x_sk0', 'r50_1x_sk1', 'r50_2x_sk0', 'r50_2x_sk1',
           'r101_1x_sk0', 'r101_1x_sk1', 'r101_2x_sk0', 'r101_2x_sk1',
           'r152_1x_sk0', 'r152_1x_sk1', 'r152_2x_sk0', 'r152_2x_sk1',
           'r152_3x_sk1')


def load_golden(name):
  """Returns (config dict, npz arrays) of one golden fixture."""
  with open(FIXTURES / 'golden' / f'{name}.json') as f:
    config = json.load(f)
  arrays = dict(np.load(FIXTURES / 'golden' / f'{name}.npz'))
  return config, arrays


def golden_weights(config, arrays):
  """{tf1_name: array} for every variable of a golden fixture."""
  weights = {}
  for name, shape in config['tf1_variables']:
    stats_key = f'bn_stats/{name}'
    if stats_key in arrays:
      weights[name] = arrays[stats_key].astype(np.float32)
    else:
      weights[name] = rule_weight(name, shape)
  return weights


def layout(kind, name):
  """[(key or name, shape)] of a published checkpoint layout."""
  with open(FIXTURES / 'checkpoint_layouts' / f'{kind}_{name}.json') as f:
    return [(n, tuple(s)) for n, s in json.load(f)]


def layout_config(name):
  """Architecture of a layout name such as 'r152_3x_sk1'."""
  depth, width, sk = name.split('_')
  return dict(resnet_depth=int(depth[1:]), width_multiplier=int(width[:-1]),
              sk_ratio=0.0625 if sk == 'sk1' else 0.0)


def assert_close_relative(actual, expected, tolerance, what):
  scale = float(np.max(np.abs(expected)))
  error = float(np.max(np.abs(np.asarray(actual) - expected)))
  assert error <= tolerance * scale, (
      f'{what}: max error {error:.3g} > {tolerance} x max |golden| {scale:.3g}')


def golden_config(fixture_config, **overrides):
  """The ModelConfig of a golden fixture (fine-tuning mode: both heads)."""
  fields = dict(
      num_classes=fixture_config['num_classes'],
      resnet_depth=fixture_config['resnet_depth'],
      width_multiplier=fixture_config['width_multiplier'],
      sk_ratio=fixture_config['sk_ratio'],
      image_size=fixture_config['image_size'],
      num_proj_layers=fixture_config['num_proj_layers'],
      proj_out_dim=fixture_config['proj_out_dim'],
      ft_proj_selector=fixture_config['ft_proj_selector'],
      train_mode='finetune', global_bn=False)
  fields.update(overrides)
  return config_lib.ModelConfig(**fields)
