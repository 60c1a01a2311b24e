"""What a CPU speed figure depends on, in one line for benchmark output.

TensorFlow's CPU kernels differ by machine: on Linux it turns oneDNN on by
default only when the CPU has AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX;
otherwise (an AVX2-only EPYC, say) its Eigen kernels run, and they are much
slower for some convolution gradients. `ONEDNN_MAX_CPU_ISA` limits the
instructions oneDNN uses but does not turn oneDNN off; `TF_ENABLE_ONEDNN_OPTS=0`
does. Every figure should be quoted with this line.
"""

import os
import subprocess


def cpu_model():
  """lscpu's model name, e.g. 'AMD EPYC'."""
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True,
                         check=False).stdout
  except OSError:
    return 'unknown CPU'
  for line in out.splitlines():
    if line.startswith('Model name:'):
      return line.split(':', 1)[1].strip()
  return 'unknown CPU'


def cpu_flags():
  """The instruction-set flags of /proc/cpuinfo (empty if unreadable)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def describe(onednn=None, env=None):
  """One line: CPU model, cores, AVX-512, oneDNN state and the ISA setting.

  Args:
    onednn: whether TensorFlow's oneDNN kernels ran (True/False), or None
      when unknown.
    env: the environment the measured process ran with (default: this one's).

  Returns:
    e.g. 'AMD EPYC, 2 cores, AVX-512: yes, oneDNN: on, ONEDNN_MAX_CPU_ISA=AVX2'.
  """
  avx512 = 'yes' if 'avx512f' in cpu_flags() else 'no'
  state = {True: 'on', False: 'off', None: 'unknown'}[onednn]
  isa = (os.environ if env is None else env).get('ONEDNN_MAX_CPU_ISA',
                                                 'unset (all)')
  return (f'{cpu_model()}, {os.cpu_count()} cores, AVX-512: {avx512}, '
          f'oneDNN: {state}, ONEDNN_MAX_CPU_ISA={isa}')


def tensorflow_onednn_enabled():
  """Whether this process's TensorFlow uses oneDNN (None if it cannot say)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return bool(_pywrap_util_port.IsMklEnabled())
