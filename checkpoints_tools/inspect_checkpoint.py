r"""Prints what a SimCLR checkpoint of any supported format holds.

  python checkpoints_tools/inspect_checkpoint.py --checkpoint=<path>

Works for TF2 checkpoints (prefix or directory), SavedModel directories and
TF1 checkpoints (`model.ckpt-<step>`): the format, architecture, parameter
count, which heads exist, whether EMA weights exist, the global step, and the
run.py flags that build a matching model. Reads names and shapes only.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tf2.checkpoints import architecture
from tf2.checkpoints import files as checkpoint_files

FLAGS = flags.FLAGS


def run_flags(arch):
  """The run.py architecture flags that build a model like `arch`."""
  values = dict(resnet_depth=arch['resnet_depth'],
                width_multiplier=arch['width_multiplier'],
                sk_ratio=arch['sk_ratio'], se_ratio=arch['se_ratio'],
                proj_head_mode=arch['proj_head_mode'])
  if arch['has_projection_head']:
    values.update(num_proj_layers=arch['num_proj_layers'],
                  proj_out_dim=arch['proj_out_dim'])
  return ' '.join(f'--{k}={v}' for k, v in values.items())


def describe(path):
  """A few lines describing the checkpoint at `path`."""
  arch = architecture.infer_architecture(path)
  mega = 1e6
  lines = [
      ('Checkpoint', f'{path} ({arch["format"]})'),
      ('Architecture', architecture.describe_architecture(arch)),
      ('Parameters', f'{arch["parameter_count"] / mega:.1f} M in all, '
                     f'{arch["encoder_parameter_count"] / mega:.1f} M in the '
                     'encoder (batch-norm moving statistics not counted)'),
      ('Projection head', f'{arch["num_proj_layers"]} layers, '
                          f'{arch["proj_out_dim"]} outputs'
       if arch['has_projection_head'] else 'none (as in SimCLRv1 models)'),
      ('Supervised head', f'{arch["num_classes"]} classes'
       if arch['has_supervised_head'] else 'none'),
      ('EMA weights', 'yes (ema_model/; pass --use_ema to use them)'
       if arch['has_ema'] else 'no'),
      ('Global step', 'not recorded' if arch['global_step'] is None
       else str(arch['global_step'])),
      ('Image size', '32 px or less (CIFAR stem)' if arch['cifar_stem']
       else 'over 32 px (ImageNet stem)'),
      ('run.py flags', run_flags(arch)),
  ]
  width = max(len(k) for k, _ in lines) + 2
  return '\n'.join(f'{k + ":":<{width}}{v}' for k, v in lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    print(describe(FLAGS.checkpoint))
  except checkpoint_files.CheckpointError as e:
    sys.exit(f'Error: {e}')


def define_flags():
  flags.DEFINE_string('checkpoint', None, 'A TF2 checkpoint prefix or '
                      'directory, a SavedModel directory or a TF1 checkpoint '
                      'prefix.')
  flags.mark_flag_as_required('checkpoint')


if __name__ == '__main__':
  define_flags()
  app.run(main)
