"""The experiment config: settings, precedence, validation rules, presets."""

import dataclasses
import types

import pytest

from tf2.config import experiment as experiment_lib
from tf2.config import presets
from tf2.config import resolve as resolve_lib
from tf2.config import settings
from tf2.config import validation

VALID = dict(model_dir='/tmp/m', dataset='digits', use_tpu=False)


def make(**values):
  return experiment_lib.Experiment.from_flat(**dict(VALID, **values))


def test_every_setting_has_a_help_text_and_one_home():
  fields = settings.fields()
  assert len(fields) == sum(len(dataclasses.fields(cls)) for cls in
                            settings.SECTIONS.values())
  for name, (_, field) in fields.items():
    assert field.metadata['help'], name


def test_reference_flags_keep_their_defaults():
  defaults = settings.defaults()
  # A sample of google-research/simclr tf2/run.py's flag defaults.
  assert defaults['learning_rate'] == 0.3
  assert defaults['train_batch_size'] == 512
  assert defaults['train_epochs'] == 100
  assert defaults['temperature'] == 0.1
  assert defaults['resnet_depth'] == 50
  assert defaults['image_size'] == 224
  assert defaults['use_tpu'] is True
  assert defaults['optimizer'] == 'lars'
  assert defaults['proj_head_mode'] == 'nonlinear'
  assert defaults['ft_proj_selector'] == 0


def test_flat_round_trip_and_unknown_names():
  experiment = make(learning_rate=0.5, resnet_depth=18)
  assert experiment.optimizer.learning_rate == 0.5
  assert experiment.model.resnet_depth == 18
  again = experiment_lib.Experiment.from_flat(**experiment.flat())
  assert again == experiment
  with pytest.raises(ValueError, match='learning_rat'):
    experiment_lib.Experiment.from_flat(learning_rat=1.0)


def test_later_layers_win_and_sources_say_where_each_value_came_from():
  experiment = experiment_lib.build([
      ('preset p', dict(learning_rate=1.0, resnet_depth=18)),
      ('record /m/experiment.json', dict(resnet_depth=34, unknown_old=1)),
      ('flag', dict(learning_rate=2.0))])
  assert experiment.optimizer.learning_rate == 2.0
  assert experiment.model.resnet_depth == 34
  assert experiment.sources == {'learning_rate': 'flag',
                                'resnet_depth': 'record /m/experiment.json'}
  assert experiment.source('learning_rate') == '--learning_rate'
  assert 'record' in experiment.source('resnet_depth')


def test_compose_reads_the_record_of_model_dir_but_not_its_mode(tmp_path):
  saved = make(model_dir=str(tmp_path), mode='train_then_eval',
               train_epochs=7, eval_split='test')
  experiment_lib.save(saved, str(tmp_path))
  composed = experiment_lib.compose({'mode': 'eval',
                                     'model_dir': str(tmp_path)},
                                    preset='digits_pretrain',
                                    model_dir=str(tmp_path))
  assert composed.run.mode == 'eval'
  assert composed.run.train_epochs == 7  # The record beats the preset.
  assert composed.data.eval_split == 'test'


# One bad value per range rule: (setting, value, words of the fix).
_BAD_VALUES = [
    ('learning_rate', -0.5, 'positive'),
    ('learning_rate', float('nan'), 'finite'),
    ('warmup_epochs', -1, 'no warm-up'),
    ('weight_decay', -1e-4, 'none'),
    ('momentum', 1.5, '0.9'),
    ('batch_norm_decay', 1.0, '0.9'),
    ('train_batch_size', 0, 'positive'),
    ('eval_batch_size', -4, 'positive'),
    ('train_epochs', -1, '100'),
    ('train_steps', -1, 'pass 0'),
    ('eval_steps', -1, 'whole --eval_split'),
    ('checkpoint_steps', -1, 'checkpoint every'),
    ('keep_checkpoint_max', 0, 'resume'),
    ('keep_hub_module_max', -1, 'keep every export'),
    ('image_size', 0, 'pixel'),
    ('image_size', -8, 'pixel'),
    ('width_multiplier', 0, 'positive'),
    ('resnet_depth', 17, '(10, 18, 34, 50, 101, 152, 200)'),
    ('sk_ratio', -0.1, '0.0625'),
    ('se_ratio', 2.0, '0.25'),
    ('proj_out_dim', 0, '128'),
    ('num_proj_layers', 0, 'proj_head_mode=none'),
    ('fine_tune_after_block', 5, '-1 trains everything'),
    ('temperature', 0.0, 'positive'),
    ('color_jitter_strength', -1.0, '0.5'),
    ('label_fraction', 1.5, '10%'),
    ('labels_per_class', -2, 'labels_per_class=10'),
    ('label_loss_weight', 2.0, 'teacher only'),
    ('distillation_temperature', 0.0, 'positive'),
    ('memory_size', -1, 'without a memory'),
    ('memory_ema_decay', 1.0, '0.999'),
    ('knn_k', 0, '200'),
    ('knn_temperature', 0.0, 'positive'),
    ('linear_probe_held_out', 0.0, 'e.g. 0.2'),
    ('linear_probe_held_out', 1.0, 'e.g. 0.2'),
    ('eval_timeout', -5.0, 'unset'),
    ('progress_interval_secs', 0.0, '=60'),
    ('preemption_grace_secs', 0.0, '=30'),
    ('cluster_wait_secs', 0.0, '=1800'),
    ('teacher_ft_proj_selector', -2, "teacher's own record"),
    ('seed', -1, '--seed=0'),
    ('label_seed', -1, '--label_seed=0'),
    ('color_jitter_strength', 5.5, 'at most 5'),
    ('num_proj_layers', 101, 'proj_head_mode=none'),
    ('warmup_epochs', 1e30, '--warmup_epochs=10'),
    ('progress_interval_secs', 1e30, '=60'),
    ('eval_timeout', 1e30, '--eval_timeout=3600'),
    ('preemption_grace_secs', 1e10, '=30'),
    ('cluster_wait_secs', 1e10, 'fewer seconds, e.g. --cluster_wait_secs=1800'),
    # Not rules of _RANGES: every int setting fits in 32 bits, paths are
    # not blank.
    ('width_multiplier', 2**31, '2**31'),
    ('train_steps', 10**20, '2**31'),
    ('checkpoint', ' ', 'leave the flag out'),
    ('dataset', '', 'digits'),
]


@pytest.mark.parametrize('name,value,fix', _BAD_VALUES)
def test_each_range_rule_names_the_setting_its_value_and_the_fix(
    name, value, fix):
  with pytest.raises(validation.ConfigError) as error:
    validation.validate(make(**{name: value}))
  message = str(error.value)
  assert message.startswith(f'--{name}=')
  assert fix in message


def test_every_range_rule_is_exercised():
  assert {name for name, _, _, _ in validation._RANGES} <= {  # pylint: disable=protected-access
      name for name, _, _ in _BAD_VALUES}


@pytest.mark.parametrize('values,flag,fix', [
    (dict(model_dir=None), '--model_dir', 'e.g. --model_dir='),
    (dict(train_epochs=0), '--train_epochs=0', 'positive --train_epochs'),
    (dict(checkpoint_epochs=0), '--checkpoint_epochs=0',
     '--checkpoint_steps=1000'),
    (dict(checkpoint_epochs=-1), '--checkpoint_epochs=-1',
     '--checkpoint_epochs=1'),
    (dict(use_ema=True), '--use_ema=True', 'drop --use_ema'),
    (dict(deterministic=True), '--deterministic=True', 'pass --seed'),
    (dict(label_fraction=0.1, labels_per_class=3), '--labels_per_class=3',
     'only one'),
    (dict(fine_tune_after_block=2), '--fine_tune_after_block=2',
     '--train_mode=finetune'),
    (dict(train_mode='distill'), '--teacher_checkpoint', 'fine-tuned model'),
    (dict(train_mode='finetune', memory_size=16), '--memory_size=16',
     '--train_mode=pretrain'),
    (dict(proj_head_mode='none', memory_size=16), '--memory_size=16',
     '--proj_head_mode=nonlinear'),
    (dict(train_mode='finetune', augment_on_device=True),
     '--augment_on_device=True', 'drop --augment_on_device'),
    (dict(ft_proj_selector=4), '--ft_proj_selector=4', '0..3'),
    (dict(proj_head_mode='linear', ft_proj_selector=2),
     '--ft_proj_selector=2', '0..1'),
])
def test_each_combination_rule_names_the_setting_and_the_fix(values, flag,
                                                             fix):
  with pytest.raises(validation.ConfigError) as error:
    validation.validate(make(**values))
  assert flag in str(error.value)
  assert fix in str(error.value)


def test_a_preset_value_is_named_with_its_preset():
  experiment = experiment_lib.build([('preset p', dict(VALID, temperature=0.0))])
  with pytest.raises(validation.ConfigError, match=r'temperature \(from '
                     r'preset p\)=0.0'):
    validation.validate(experiment)


def test_valid_settings_pass():
  assert validation.validate(make()) is not None
  validation.validate(make(train_steps=10, train_epochs=0))
  validation.validate(make(mode='eval', train_mode='distill'))


def _fake_builder(splits, num_classes):
  """Split sizes and classes, as a prepared TFDS builder's info gives them."""
  return types.SimpleNamespace(name='fake', info=types.SimpleNamespace(
      splits={k: types.SimpleNamespace(num_examples=v)
              for k, v in splits.items()},
      features={'label': types.SimpleNamespace(num_classes=num_classes)}))


_IMAGENET = {'train': 1281167, 'validation': 50000}
_SPLITS = {
    'imagenet2012': _IMAGENET,
    'imagenet2012_subset/1pct': {'train': 12811, 'validation': 50000},
    'imagenet2012_subset/10pct': {'train': 128116, 'validation': 50000},
    'cifar10': {'train': 50000, 'test': 10000},
    'digits': {'train': 1442, 'test': 355},
}
# Published SimCLRv2 checkpoints end at these steps (model.ckpt-<step>).
_PUBLISHED_STEPS = {
    'imagenet_pretrain_r50_1x_sk0': 250228,
    'imagenet_pretrain_r152_3x_sk1': 250228,
    'imagenet_finetune_1pct': 751,
    'imagenet_finetune_10pct': 3754,
    'imagenet_finetune_100pct': 37535,
}


@pytest.mark.parametrize('name', presets.names())
def test_each_preset_resolves_and_validates(name):
  paths = dict(model_dir='/tmp/m', checkpoint=None, teacher_checkpoint=None)
  if 'distill' in name:
    paths['teacher_checkpoint'] = '/tmp/teacher'
  experiment = experiment_lib.compose(paths, preset=name)
  validation.validate(experiment)
  dataset = experiment.data.dataset
  builder = _fake_builder(_SPLITS[dataset],
                          10 if dataset in ('cifar10', 'digits') else 1000)
  validation.validate_replicas(experiment, num_replicas=8)
  resolved = resolve_lib.resolve(experiment, builder, num_replicas=8)
  assert resolved.resolved.train_steps >= 1
  assert resolved.resolved.steps_per_loop >= 1
  if name in _PUBLISHED_STEPS:
    assert resolved.resolved.train_steps == _PUBLISHED_STEPS[name]
  assert presets.command(name).count(f'--config={name}') == 1


def test_unknown_preset_lists_the_presets():
  with pytest.raises(validation.ConfigError, match='digits_pretrain'):
    presets.get('digit_pretrain')


def test_explicit_architecture_that_disagrees_with_the_checkpoint_stops():
  arch = dict(resnet_depth=34, width_multiplier=1, sk_ratio=0.0,
              se_ratio=0.0, proj_head_mode='nonlinear', num_proj_layers=3,
              proj_out_dim=128, has_projection_head=True, cifar_stem=False)
  experiment = experiment_lib.build([('flag', dict(VALID, resnet_depth=18))])
  with pytest.raises(validation.ConfigError,
                     match='--resnet_depth=18 but the checkpoint'):
    resolve_lib.adopt_architecture(experiment, arch, '/c')
  adopted = resolve_lib.adopt_architecture(
      experiment_lib.build([('flag', VALID)]), arch, '/c')
  assert adopted.model.resnet_depth == 34
  assert adopted.sources['resnet_depth'] == 'checkpoint /c'
