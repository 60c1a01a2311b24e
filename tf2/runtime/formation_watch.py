"""Says, while a cluster forms, which of its tasks do not answer yet.

Run as a separate process (`cluster.FormationWatch` starts it) rather than a
thread: while MultiWorkerMirroredStrategy waits for the other tasks to
register, TensorFlow's C++ code holds the interpreter lock of the process
that builds it, so no Python thread of that process could print.

Standard library only, so that it starts in a fraction of a second. Every
`interval` seconds it tries a TCP connection to each other task's host:port
and prints one line naming those that do not answer. If TensorFlow has not
given up `GRACE_S` seconds after --cluster_wait_secs, it ends the waiting
process itself (SIGKILL: nothing else can interrupt the wait), with one line.
It stops when the process it watches ends or stops it (SIGTERM).

Usage: python formation_watch.py '<json: parent, wait, interval, peers>'
where peers is a list of [description, "host:port"].
"""

import json
import os
import signal
import socket
import sys
import time

# How long past --cluster_wait_secs the watch lets TensorFlow give up itself.
GRACE_S = 60.0


def answering(address, timeout=1.0):
  """Whether something accepts TCP connections at 'host:port'."""
  host, port = address.rsplit(':', 1)
  try:
    with socket.create_connection((host.strip('[]'), int(port)),
                                  timeout=timeout):
      return True
  except (OSError, ValueError):
    return False


def interval_for(wait_secs):
  """Seconds between two waiting lines: a quarter of the wait, 1 to 30 s."""
  return min(30.0, max(1.0, wait_secs / 4.0))


def _alive(pid):
  try:
    os.kill(pid, 0)
  except OSError:
    return False
  return os.getppid() == pid


def _say(text):
  print(f'run.py: {text}', file=sys.stderr, flush=True)


def watch(parent, wait_secs, interval, peers):
  """Prints waiting lines until `parent` ends; ends it past the wait."""
  start = time.monotonic()
  next_line = start + interval
  while _alive(parent):
    time.sleep(0.25)
    now = time.monotonic()
    if now < next_line:
      continue
    next_line = now + interval
    silent = [name for name, address in peers if not answering(address)]
    elapsed = now - start
    if elapsed > wait_secs + GRACE_S:
      _say(f'the cluster did not form within --cluster_wait_secs='
           f'{wait_secs:g} and TensorFlow did not give up; stopping. '
           + (f'No answer from {", ".join(silent)}. ' if silent else '')
           + 'Check that every task of TF_CONFIG was started with the same '
           'TF_CONFIG cluster, then start them all again.')
      os.kill(parent, signal.SIGKILL)
      return
    waiting = (f'no answer yet from {", ".join(silent)}' if silent else
               'every task answers; waiting for all of them to join')
    _say(f'waiting for the cluster to form ({elapsed:.0f} s of '
         f'--cluster_wait_secs={wait_secs:g}): {waiting}.')


def main(argv):
  settings = json.loads(argv[1])
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  try:
    watch(settings['parent'], settings['wait'], settings['interval'],
          [tuple(peer) for peer in settings['peers']])
  except KeyboardInterrupt:
    pass


if __name__ == '__main__':
  main(sys.argv)
