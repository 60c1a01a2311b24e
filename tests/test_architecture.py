"""The architecture is read from names and shapes of every format."""

import pytest
import tensorflow as tf

from tests import golden
from tests.test_checkpoint_io import write_tf1_checkpoint
from tf2.checkpoints import architecture
from tf2.checkpoints import export
from tf2.checkpoints import restore as checkpoint_restore
from tf2.checkpoints import tf1_mapping
from tf2.models import config as config_lib
from tf2.models import model as model_lib

# Encoder parameters (M) of the 13 SimCLRv2 models as the reference README
# lists them (Table 1 of the paper).
_PUBLISHED_PARAMS_M = {
    'r50_1x_sk0': 24, 'r50_1x_sk1': 35, 'r50_2x_sk0': 94, 'r50_2x_sk1': 140,
    'r101_1x_sk0': 43, 'r101_1x_sk1': 65, 'r101_2x_sk0': 170,
    'r101_2x_sk1': 257, 'r152_1x_sk0': 58, 'r152_1x_sk1': 89,
    'r152_2x_sk0': 233, 'r152_2x_sk1': 354, 'r152_3x_sk1': 795}


@pytest.mark.parametrize('name', golden.LAYOUTS)
def test_architecture_of_every_published_layout(name):
  expected = golden.layout_config(name)
  for kind in ('tf1', 'tf2'):
    arch = architecture.infer_architecture_from_shapes(
        dict(golden.layout(kind, name)))
    assert {k: arch[k] for k in expected} == expected, kind
    assert arch['cifar_stem'] is False and arch['se_ratio'] == 0.0
    assert (arch['num_proj_layers'], arch['proj_out_dim'],
            arch['num_classes']) == (3, 128, 1000)
    # The table rounds (once up: 232.3 M is listed as 233).
    assert abs(arch['encoder_parameter_count'] / 1e6 -
               _PUBLISHED_PARAMS_M[name]) < 1


@pytest.mark.parametrize('name', golden.GOLDEN_CONFIGS)
def test_architecture_of_every_golden_fixture(name):
  fixture_config, _ = golden.load_golden(name)
  arch = architecture.infer_architecture_from_shapes(
      {n: s for n, s in fixture_config['tf1_variables']})
  for key in ('resnet_depth', 'width_multiplier', 'sk_ratio', 'cifar_stem',
              'num_classes', 'num_proj_layers', 'proj_out_dim'):
    assert arch[key] == fixture_config[key], key


@pytest.mark.parametrize('overrides', [
    dict(se_ratio=0.25),
    dict(sk_ratio=0.0625, image_size=16),
    dict(sk_ratio=0.0625, resnet_depth=50, image_size=16, cifar_stem=False),
    dict(resnet_depth=34),
    dict(num_proj_layers=2, proj_out_dim=16, train_mode='pretrain',
         lineareval_while_pretraining=False),
    dict(proj_head_mode='linear', proj_out_dim=16),
    dict(proj_head_mode='none', num_classes=7),
], ids=['se', 'cifar_sk', 'r50_sk', 'r34', 'no_sup_head', 'linear_head',
        'v1_no_proj_head'])
def test_architecture_inference_round_trips_through_every_format(
    overrides, tmp_path):
  fields = dict(num_classes=5, resnet_depth=18, image_size=8,
                train_mode='finetune', global_bn=False)
  fields.update(overrides)
  config = config_lib.ModelConfig(**fields)
  model = model_lib.build_model(config)
  values = {n: v.numpy() for n, v in
            tf1_mapping.tf1_variable_map(model).items()}
  paths = {
      'tf1_checkpoint': write_tf1_checkpoint(
          str(tmp_path / 'tf1' / 'model.ckpt-7'), values, step=7),
      'tf2_checkpoint': tf.train.Checkpoint(model=model).write(
          str(tmp_path / 'tf2' / 'ckpt-1')),
  }
  if config.resnet_depth == 18 and config.train_mode == 'finetune':
    # Exports trace every layer; deeper ones take long and add nothing here.
    paths['saved_model'] = export.export_saved_model(model, tmp_path / 'sm')
  for fmt, path in paths.items():
    arch = architecture.infer_architecture(path)
    assert arch['format'] == fmt
    assert arch['global_step'] == (7 if fmt == 'tf1_checkpoint' else None)
    rebuilt = architecture.model_config_for(arch)
    for field in ('resnet_depth', 'width_multiplier', 'se_ratio',
                  'use_cifar_stem', 'proj_out_dim'):
      if field != 'proj_out_dim' or config.proj_head_mode != 'none':
        assert getattr(rebuilt, field) == getattr(config, field), (fmt, field)
    if fmt == 'tf1_checkpoint' and config.use_cifar_stem and (
        config.resnet_depth < 50):
      # With a CIFAR stem, SK changes no variable of ResNet-18/34 (only
      # how the shortcut pools), so TF1 names cannot show it.
      assert arch['sk_ratio'] == 0.0
    else:
      assert arch['sk_ratio'] == config.sk_ratio, fmt
    # Object-graph keys cannot tell a linear head from a one-layer nonlinear
    # head, which computes the same; TF1 names can.
    mode = config.proj_head_mode
    if mode == 'linear' and fmt != 'tf1_checkpoint':
      mode = 'nonlinear'
      assert arch['num_proj_layers'] == 1
    assert arch['proj_head_mode'] == mode, fmt
    assert arch['has_supervised_head'] == (model.supervised_head is not None)
    if arch['has_supervised_head']:
      assert arch['num_classes'] == config.num_classes
    # The inferred architecture takes every value, exactly.
    checkpoint_restore.restore_model_weights(model_lib.build_model(rebuilt),
                                             path, strict=True)


def test_checkpoint_without_supervised_head_exports_as_saved_model(tmp_path):
  config = config_lib.ModelConfig(num_classes=5, resnet_depth=18, image_size=8,
                                  lineareval_while_pretraining=False,
                                  global_bn=False)
  path = export.export_saved_model(model_lib.build_model(config),
                                   tmp_path / 'sm')
  assert not architecture.infer_architecture(path)['has_supervised_head']
