"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow starts, so that
tests can run a real two-replica MirroredStrategy on a machine with one CPU
and no GPU. Single-replica code is unaffected: it runs on the first device.
"""

import os
import pathlib
import sys

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

FIXTURES = ROOT.parent / 'shared' / 'fixtures'


def _split_cpu_in_two():
  cpus = tf.config.list_physical_devices('CPU')
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
  except RuntimeError:
    pass  # Already initialised (e.g. by an earlier import): keep as is.


_split_cpu_in_two()


@pytest.fixture(scope='session')
def fixtures_dir():
  if not FIXTURES.is_dir():
    pytest.fail(f'Reference fixtures not found at {FIXTURES}: the project '
                'expects shared/ beside the checkout (../shared/fixtures).')
  return FIXTURES


@pytest.fixture(scope='session')
def reference_ops(fixtures_dir):
  """Golden values of the reference building blocks (losses, LARS, ...)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return dict(np.load(fixtures_dir / 'golden' / 'reference_ops.npz'))


@pytest.fixture(scope='session')
def two_cpu_strategy():
  """One MirroredStrategy over two logical CPUs, shared by all tests.

  Shared because collective ops of several strategies over the same devices
  in one process can collide.
  """
  devices = [d.name for d in tf.config.list_logical_devices('CPU')][:2]
  if len(devices) < 2:
    pytest.fail('Two logical CPU devices were not configured.')
  return tf.distribute.MirroredStrategy(devices)
