"""Warm-up + cosine schedule against the reference."""

import json

import numpy as np
import pytest

from tf2.training import schedule


def _flags(fixtures_dir, i):
  with open(fixtures_dir / 'golden' / 'reference_ops_lr_flags.json') as f:
    raw = json.load(f)[f'lr{i}_flags']
  return dict(arg.lstrip('-').split('=', 1) for arg in raw)


@pytest.mark.parametrize('i', [0, 1])
def test_schedule_matches_reference(fixtures_dir, i):
  ref = np.load(fixtures_dir / 'golden' / 'reference_ops.npz')
  flags = _flags(fixtures_dir, i)
  num_examples = int(ref[f'lr{i}/num_examples'])
  batch = int(flags['train_batch_size'])
  total = schedule.get_train_steps(num_examples, batch,
                                   int(flags['train_epochs']))
  assert total == int(ref[f'lr{i}/total_steps'])
  lr = schedule.WarmUpAndCosineDecay(
      float(flags['learning_rate']), num_examples, batch,
      float(flags['warmup_epochs']), total, flags['learning_rate_scaling'])
  values = [float(lr(s)) for s in ref[f'lr{i}/steps']]
  np.testing.assert_allclose(values, ref[f'lr{i}/values'], rtol=1e-6,
                             atol=1e-6)


def test_unknown_scaling_names_the_choices():
  with pytest.raises(ValueError, match='sqrt'):
    schedule.WarmUpAndCosineDecay(0.1, 100, 10, 1, 100, 'log')
