"""What the tools' command lines share: the --checkpoint flag, one-line errors.

Bad input ends a tool with one line, `<tool>: error: <what and the fix>`, and
exit code 2, as run.py's usage errors do.
"""

import sys

from absl import flags


def define_checkpoint_flag():
  flags.DEFINE_string('checkpoint', None, 'A TF2 checkpoint prefix or '
                      'model_dir, a SavedModel directory or a TF1 checkpoint '
                      'prefix (model.ckpt-N).')


def fail(tool, message):
  """Prints `tool: error: message` on one line and exits with code 2."""
  print(f'{tool}: error: {" ".join(str(message).split())}', file=sys.stderr)
  sys.exit(2)


def refuse_positional_arguments(tool, argv):
  if len(argv) > 1:
    fail(tool, f'unexpected arguments {argv[1:]}: pass every setting as a '
         'flag (--help lists them).')
