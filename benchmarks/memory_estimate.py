"""memory.py's report: the table, the targets and the largest-batch estimate.

Pure Python over the workers' results (no TensorFlow), so that the figures
can be re-read and the arithmetic tested without measuring.

The estimate's model, printed with it:
  peak(B) = fixed + B * slope
  fixed   = 12 bytes per parameter (float32 weights, gradients and LARS
            momentum);
  slope   = the measured slope of step memory against batch (per image,
            two views), per option, scaled from the measured architecture to
            the target by the ratio of activations per example: the elements
            of every 4-D float tensor of the forward pass in training mode,
            counted by tracing the project's model (memory.py's count worker).
  A GPU's usable memory is taken as 90% of its nominal bytes.
"""

import math
import statistics

from benchmarks import machine

GPUS = (('80 GB', 80e9), ('141 GB', 141e9))
USABLE = 0.9
BYTES_PER_PARAMETER = 12
# Targets: (name, resnet_depth, width_multiplier, sk_ratio, image_size,
# encoder parameters or None to count them). 795M is the SimCLRv2 paper's
# count for ResNet-152 3x+SK (Table 1); the heads are added to it.
TARGETS = (('r50_1x_sk0', 50, 1, 0.0, 224, None),
           ('r152_3x_sk1', 152, 3, 0.0625, 224, 795e6))
MIB = 2.0**20


def _median(values):
  return statistics.median(values) if values else None


def _span(values, digits=0):
  if len(values) < 2:
    return ''
  return f' [{min(values):.{digits}f}-{max(values):.{digits}f}]'


def option_name(k, recompute):
  parts = ([f'K={k}'] if k > 1 else []) + (['recompute'] if recompute else [])
  return ' + '.join(parts) or 'plain'


def summarise(results):
  """Rows of step memory (MiB) and ms/step per measured point.

  Args:
    results: {(alias, size, batch, k, recompute, baseline): [result dicts]}
      as memory.collect returns.

  Returns:
    A list of dicts (alias, size, batch, k, recompute, mem, peak, ms,
    errors), mem the step's memory (peak minus the baseline's), peak the
    absolute one; lists over repeats.
  """
  baselines = {}
  for key, found in results.items():
    if key[5]:
      good = [r for r in found if 'error' not in r]
      baselines[key[:2]] = dict(
          rss=_median([r['rss_mib'] for r in good]),
          gpu=_median([r['gpu_current'] / MIB for r in good
                       if 'gpu_current' in r]))
  rows = []
  for key, found in sorted(results.items()):
    if key[5]:
      continue
    alias, size, batch, k, recompute, _ = key
    base = baselines.get((alias, size), {})
    good = [r for r in found if 'error' not in r]
    on_gpu = bool(good and good[0].get('gpu'))
    if on_gpu:
      peak = [r['gpu_peak'] / MIB for r in good]
      zero = base.get('gpu')
      beyond = []
    else:
      peak = [r['rss_mib'] for r in good]
      zero = base.get('rss')
      beyond = [r['rss_mib'] - r['rss_traced_mib'] for r in good]
    mem = [p - zero for p in peak] if zero is not None else []
    # Wall time on a GPU; on a shared CPU the process's CPU time, which
    # other work moves less.
    cost = [r['ms'] if on_gpu else r['cpu_ms'] for r in good]
    rows.append(dict(alias=alias, size=size, batch=batch, k=k,
                     recompute=recompute, mem=mem, peak=peak, beyond=beyond,
                     ms=[r['ms'] for r in good], cost=cost, gpu=on_gpu,
                     errors=[r['error'] for r in found if 'error' in r]))
  return rows


def device_line(results):
  """Where it ran and what the memory figures are."""
  found = [r for rs in results.values() for r in rs if 'error' not in r]
  if not found:
    return 'no point could be measured'
  first = found[0]
  if first.get('gpu'):
    return (f'{first["device"]} x{first["replicas"]} replica(s): '
            'GPU allocator peak (get_memory_info) minus the baseline '
            'process\'s weights, slots and batch')
  return (f'{machine.describe(first.get("onednn"))}: peak RSS '
          '(ru_maxrss) minus a baseline process\'s; CPU RSS figures, NOT GPU '
          'allocator figures')


def _cost_name(rows):
  return 'ms' if rows and rows[0]['gpu'] else 'CPU ms'


def format_table(rows):
  """A Markdown table of the rows (medians, [min-max] over repeats)."""
  cost = _cost_name(rows)
  lines = ['| model | B | option | step memory MiB | beyond trace MiB | '
           f'peak MiB | ms/step | CPU ms/step | {cost} vs plain |',
           '|---|--:|---|--:|--:|--:|--:|--:|--:|']
  plain = {(r['alias'], r['size'], r['batch']): _median(r['cost'])
           for r in rows if r['k'] == 1 and not r['recompute'] and r['cost']}
  for r in rows:
    name = f'{r["alias"]}:{r["size"]}'
    option = option_name(r['k'], r['recompute'])
    if not r['mem']:
      lines.append(f'| {name} | {r["batch"]} | {option} | failed: '
                   f'{(r["errors"] or ["no baseline"])[0]} | | | | | |')
      continue
    ref = plain.get((r['alias'], r['size'], r['batch']))
    ratio = f'{_median(r["cost"]) / ref:.2f}x' if ref else ''
    beyond = (f'{_median(r["beyond"]):.0f}{_span(r["beyond"])}'
              if r['beyond'] else 'n/a')
    cpu = '' if r['gpu'] else f'{_median(r["cost"]):.0f}{_span(r["cost"])}'
    lines.append(
        f'| {name} | {r["batch"]} | {option} | {_median(r["mem"]):.0f}'
        f'{_span(r["mem"])} | {beyond} | {_median(r["peak"]):.0f} | '
        f'{_median(r["ms"]):.0f}{_span(r["ms"])} | {cpu} | {ratio} |')
  return '\n'.join(lines)


def _find(rows, alias, size, batch, k, recompute):
  for r in rows:
    if (r['alias'], r['size'], r['batch'], r['k'], r['recompute']) == (
        alias, size, batch, k, recompute) and r['mem']:
      return r
  return None


def _verdict(ok):
  return 'PASS' if ok else 'FAIL'


def targets(rows):
  """PASS/FAIL lines of the issue's three targets, on medians."""
  lines, cost = [], _cost_name(rows)
  for r in rows:
    if not r['mem'] or (r['k'] == 1 and not r['recompute']):
      continue
    name = f'{r["alias"]}:{r["size"]} B={r["batch"]}'
    plain = _find(rows, r['alias'], r['size'], r['batch'], 1, False)
    if r['k'] > 1 and not r['recompute']:
      small = _find(rows, r['alias'], r['size'], r['batch'] // r['k'], 1,
                    False)
      if small:
        mem, ref = _median(r['mem']), _median(small['mem'])
        extra = ''
        if r['beyond'] and small['beyond']:
          extra = (f'; beyond trace {_median(r["beyond"]):.0f} vs '
                   f'{_median(small["beyond"]):.0f} MiB, '
                   f'{_median(r["beyond"]) / _median(small["beyond"]):.2f}x')
        lines.append(
            f'{_verdict(mem <= 1.3 * ref)} memory {name} K={r["k"]}: '
            f'{mem:.0f} MiB <= 1.3 x {ref:.0f} MiB (plain B='
            f'{small["batch"]}) = {1.3 * ref:.0f} MiB? ({mem / ref:.2f}x'
            f'{extra})')
    if plain and (r['k'] == 1 or not r['recompute']):
      ms, ref = _median(r['cost']), _median(plain['cost'])
      lines.append(
          f'{_verdict(ms <= 1.4 * ref)} time {name} '
          f'{option_name(r["k"], r["recompute"])}: {ms:.0f} {cost} <= 1.4 x '
          f'{ref:.0f} {cost} (plain)? ({ms / ref:.2f}x; wall '
          f'{_median(r["ms"]) / _median(plain["ms"]):.2f}x)')
  return lines or ['no target could be checked (no successful pair)']


def _points(rows, alias, size, k, recompute):
  return [(r['batch'], _median(r['mem'])) for r in rows
          if (r['alias'], r['size'], r['k'], r['recompute']) == (
              alias, size, k, recompute) and r['mem']]


def _fit(points):
  """(slope, intercept) of the least-squares line through (B, MiB) points."""
  xs, ys = zip(*points)
  mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
  fit = (sum((x - mean_x) * (y - mean_y) for x, y in points) /
         sum((x - mean_x)**2 for x in xs))
  return fit, mean_y - fit * mean_x


def slope(rows, alias, size, k, recompute):
  """(MiB per image, how) of step memory against batch for one option.

  A least-squares fit over the option's batches; an option measured at one
  batch only takes the plain step's intercept (its fixed part) from the
  plain fit. (None, why) when neither is possible.
  """
  points = _points(rows, alias, size, k, recompute)
  if len(points) >= 2:
    xs = [x for x, _ in points]
    return _fit(points)[0], f'least squares over B={"/".join(map(str, xs))}'
  plain = _points(rows, alias, size, 1, False)
  if len(points) == 1 and len(plain) >= 2:
    (batch, mem), intercept = points[0], _fit(plain)[1]
    return ((mem - intercept) / batch,
            f'one batch (B={batch}), less the plain fit\'s intercept')
  return None, 'needs two batches (or one and two plain ones)'


def base_point(rows):
  """The measured (alias, size) the estimate scales from: r50:224 first."""
  measured = {(r['alias'], r['size']) for r in rows if r['mem']}
  if ('r50', 224) in measured:
    return ('r50', 224)
  return max(measured, key=lambda p: (p[1], p[0])) if measured else None


def head_parameters(width_multiplier, proj_out_dim=128, num_classes=1000):
  """Weights of the pretraining heads: 3-layer projection, linear head."""
  d = 2048 * width_multiplier
  return 2 * d * d + d * proj_out_dim + d * num_classes


def estimates(rows, ks, counts, on_gpu):
  """The largest-batch lines, each labelled ESTIMATE.

  Args:
    rows: summarise's rows.
    ks: the K values measured.
    counts: {name: (activations per example, parameters)} from the count
      worker, for the base point ('base') and each TARGETS name.
  """
  base = base_point(rows)
  if base is None or 'base' not in counts:
    return ['ESTIMATE: not possible (no measured point, or no count)']
  lines = [
      'ESTIMATE (a model, not a measurement): peak = 12 B x parameters '
      '(float32 weights + gradients + LARS momentum) + B x slope; slope = '
      f'the measured slope at {base[0]}:{base[1]}, scaled by the ratio of '
      'activations per example (elements of the 4-D float tensors of one '
      'training-mode forward pass, traced) and assumed the same for every '
      f'option; usable memory {USABLE:.0%} of nominal; per replica.']
  if not on_gpu:
    lines.append('  From CPU RSS slopes: a CPU process is not a GPU allocator '
                 '(different kernels, workspace and freeing); a rough guide '
                 'until the GPU figures are measured.')
  base_acts = counts['base'][0]
  options = [(1, False)] + [(k, False) for k in ks] + [(1, True)] + [
      (k, True) for k in ks]
  for name, *_ in TARGETS:
    acts, params = counts[name]
    ratio = acts / base_acts
    fixed = BYTES_PER_PARAMETER * params
    lines.append(f'  {name}: {params / 1e6:.0f}M parameters (fixed '
                 f'{fixed / 1e9:.1f} GB), {acts / 1e6:.1f}M activations per '
                 f'view, {ratio:.2f}x {base[0]}:{base[1]}\'s')
    for k, recompute in options:
      per_image, how = slope(rows, base[0], base[1], k, recompute)
      if per_image is None or per_image <= 0:
        lines.append(f'    {option_name(k, recompute):15s} not estimated: '
                     + (how if per_image is None else
                        f'slope {per_image:.0f} MiB/image ({how})'))
        continue
      per_image_bytes = per_image * MIB * ratio
      fits = []
      for label, nominal in GPUS:
        room = USABLE * nominal - fixed
        fits.append(f'{label}: B~{max(0, math.floor(room / per_image_bytes))}')
      lines.append(f'    {option_name(k, recompute):15s} '
                   f'{per_image_bytes / MIB:8.0f} MiB/image ({how}); '
                   + ', '.join(fits))
  return lines
