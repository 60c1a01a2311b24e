"""The library's layout: groups import downward, facts have one source."""

import ast
import dataclasses
import pathlib

import pytest

from tf2 import runner
from tf2.checkpoints import files as checkpoint_files
from tf2.config import experiment as experiment_lib
from tf2.config import settings
from tf2.models import config as config_lib
from tf2.models import model as model_lib
from tf2.runtime import precision
from tf2.runtime import strategy
from tf2.training import optimization
from tf2.training import step as step_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Lowest first: a module may import its own group and the groups before it.
GROUP_ORDER = ('runtime', 'data', 'models', 'checkpoints', 'training',
               'evaluation', 'config', '')  # '': tf2/context, task, runner.
# Inside the top floor: a prepared run, the pieces it builds, the runner.
TOP_ORDER = ('context', 'task', 'runner')


def _group(module):
  """('group', name) of a dotted tf2 module name."""
  parts = module.split('.')[1:]
  if len(parts) >= 2 and parts[0] in GROUP_ORDER:
    return parts[0], parts[1]
  return '', parts[0] if parts else ''


def _level(module):
  group, name = _group(module)
  return (GROUP_ORDER.index(group),
          TOP_ORDER.index(name) if group == '' and name in TOP_ORDER else 0)


def _tf2_imports(path):
  """Dotted tf2 modules a file imports (module imports of `from` too)."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module == 'tf2' or node.module.startswith('tf2.')):
      found += [f'{node.module}.{alias.name}' for alias in node.names]
    elif isinstance(node, ast.Import):
      found += [a.name for a in node.names if a.name.startswith('tf2.')]
  return found


def _library_modules():
  for path in sorted((ROOT / 'tf2').rglob('*.py')):
    dotted = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    if not dotted.endswith('__init__'):
      yield path, dotted


def test_groups_import_only_their_own_group_or_those_below():
  upward = []
  for path, module in _library_modules():
    for imported in _tf2_imports(path):
      if _level(imported) > _level(module):
        upward.append(f'{module} imports {imported}')
  assert not upward, upward


def test_the_layering_check_sees_an_upward_import():
  # The table itself: training sits above models and below config.
  assert _level('tf2.training.step') > _level('tf2.models.resnet')
  assert _level('tf2.config.settings') > _level('tf2.training.step')
  assert _level('tf2.runner') > _level('tf2.task') > _level('tf2.context')


# Packages of requirements-export.txt and requirements-dev.txt only: a user
# who trains need not install them, so they are imported where used.
OPTIONAL_PACKAGES = ('tf2onnx', 'onnx', 'onnxruntime', 'matplotlib')


def _imported_package(node):
  names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
           [node.module or ''])
  return {name.split('.')[0] for name in names}


def test_imports_are_at_the_top_of_their_modules():
  inner = []
  for path, module in _library_modules():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        inner += [f'{module}:{n.lineno}' for n in ast.walk(node)
                  if isinstance(n, (ast.Import, ast.ImportFrom)) and
                  not _imported_package(n) <= set(OPTIONAL_PACKAGES)]
  assert not inner, inner


def test_no_library_module_passes_350_lines():
  long = {module: n for path, module in _library_modules()
          if (n := len(path.read_text().splitlines())) > 360}
  assert not long, long


@pytest.mark.parametrize('config', [config_lib.ModelConfig(),
                                    step_lib.LossConfig()],
                         ids=['ModelConfig', 'LossConfig'])
def test_library_config_defaults_equal_the_settings_defaults(config):
  defaults = settings.defaults()
  shared = [f.name for f in dataclasses.fields(config) if f.name in defaults]
  assert len(shared) >= 7
  differ = {name: (getattr(config, name), defaults[name]) for name in shared
            if getattr(config, name) != defaults[name]}
  assert not differ, differ


def test_choices_checked_by_the_library_are_the_flags_choices():
  choices = {name: field.metadata['choices']
             for name, (_, field) in settings.fields().items()}
  assert choices['proj_head_mode'] is model_lib.PROJ_HEAD_MODES
  assert choices['optimizer'] is optimization.OPTIMIZERS
  assert choices['nan_policy'] is step_lib.NAN_POLICIES
  assert choices['train_mode'] is step_lib.TRAIN_MODES
  assert choices['mixed_precision'] is precision.POLICIES
  assert choices['distribution_strategy'] is strategy.STRATEGIES
  assert choices['all_reduce_alg'] is strategy.ALL_REDUCE_ALGS


def test_a_fine_tuning_run_opens_its_start_checkpoint_once(
    tmp_path, monkeypatch):
  tiny = dict(dataset='digits', data_dir=str(tmp_path / 'tfds'),
              use_tpu=False, resnet_depth=18, image_size=8,
              train_batch_size=16, proj_out_dim=8, warmup_epochs=0,
              train_steps=1, checkpoint_steps=1)
  pretrained = str(tmp_path / 'pretrain')
  runner.run(experiment_lib.Experiment.from_flat(model_dir=pretrained,
                                                 **tiny))
  opened = []
  reader = checkpoint_files.py_checkpoint_reader.NewCheckpointReader

  def counting_reader(prefix):
    opened.append(prefix)
    return reader(prefix)

  # Every reader of TensorFlow's and ours goes through this function.
  monkeypatch.setattr(checkpoint_files.py_checkpoint_reader,
                      'NewCheckpointReader', counting_reader)
  runner.run(experiment_lib.Experiment.from_flat(
      model_dir=str(tmp_path / 'ft'), train_mode='finetune',
      checkpoint=pretrained, **tiny))
  start = f'{pretrained}/ckpt-1'
  assert opened.count(start) == 1, opened
