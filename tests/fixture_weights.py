"""The fixtures' weight rule: every variable a function of its TF1 name.

Documented in ../shared/fixtures/README.md. Kept apart from golden.py (which
imports conftest, and so splits the CPU into two logical devices) so that
benchmarks can use it in processes that must see the plain CPU.
"""

import zlib

import numpy as np


def rule_weight(name, shape, moving_statistics=False):
  """The fixture's deterministic value for a TF1 variable.

  Args:
    name: the TF1 variable name.
    shape: its shape.
    moving_statistics: also give batch-norm moving statistics (mean 0,
      variance 1), which the golden fixtures store instead.

  Returns:
    float32 array of `shape`.
  """
  rng = np.random.RandomState(zlib.crc32(name.encode()))
  leaf = name.rsplit('/', 1)[-1]
  if leaf == 'kernel' and len(shape) == 4:
    value = rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[:-1]))
  elif leaf == 'kernel':
    value = rng.standard_normal(shape) * np.sqrt(1 / shape[0])
  elif leaf == 'bias':
    value = 0.01 * rng.standard_normal(shape)
  elif leaf == 'gamma':
    value = 1 + 0.1 * rng.standard_normal(shape)
  elif leaf == 'beta':
    value = 0.1 * rng.standard_normal(shape)
  elif moving_statistics and leaf == 'moving_mean':
    value = np.zeros(shape)
  elif moving_statistics and leaf == 'moving_variance':
    value = np.ones(shape)
  else:
    raise ValueError(f'No rule for {name}')
  return value.astype(np.float32)
