"""benchmarks/memory.py: its points are parsed and planned as documented."""

import pathlib
import subprocess
import sys

import pytest

from benchmarks import memory
from benchmarks import memory_estimate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_sizes_are_parsed_with_sorted_batches():
  assert memory.parse_sizes('r18:32:64/32, r50:224:4') == [
      ('r18', 32, [32, 64]), ('r50', 224, [4])]


@pytest.mark.parametrize('spec', ['r50:224', 'r34:224:4', 'r50:224:4/x',
                                  'r50:4:8', ''])
def test_a_bad_size_spec_is_refused(spec):
  with pytest.raises(memory.UsageError, match='--sizes'):
    memory.parse_sizes(spec)


def test_a_bad_spec_is_one_line_and_exit_2_before_measuring():
  out = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'memory.py'),
       '--sizes=r50:224'], capture_output=True, text=True, check=False,
      timeout=60)
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().splitlines() == [
      "memory.py: --sizes: 'r50:224' is not ARCH:IMAGE_SIZE:B1/B2 "
      '(e.g. r50:224:4/8).']
  assert not out.stdout


def test_plan_adds_the_plain_batch_b_over_k_and_skips_ks_not_dividing():
  runs = memory.plan('r18', 32, [12], [2, 5])
  plain = sorted(r['batch'] for r in runs
                 if r['k'] == 1 and not r['recompute'] and
                 not r.get('baseline'))
  assert plain == [6, 12]
  assert {(r['k'], r['recompute']) for r in runs if r['batch'] == 12 and
          not r.get('baseline')} == {(1, False), (2, False), (1, True),
                                     (2, True)}
  assert sum(1 for r in runs if r.get('baseline')) == 1


def test_slope_is_the_least_squares_fit_of_step_memory_on_batch():
  rows = [dict(alias='r18', size=32, batch=b, k=1, recompute=False,
               mem=[100 + 3 * b]) for b in (4, 8, 16)]
  per_image, how = memory_estimate.slope(rows, 'r18', 32, 1, False)
  assert per_image == pytest.approx(3.0)
  assert 'B=4/8/16' in how


def test_an_option_at_one_batch_takes_the_plain_intercept():
  rows = [dict(alias='r18', size=32, batch=b, k=1, recompute=False,
               mem=[100 + 3 * b]) for b in (4, 8)]
  rows.append(dict(alias='r18', size=32, batch=8, k=2, recompute=False,
                   mem=[100 + 1.5 * 8]))
  per_image, how = memory_estimate.slope(rows, 'r18', 32, 2, False)
  assert per_image == pytest.approx(1.5)
  assert 'intercept' in how
