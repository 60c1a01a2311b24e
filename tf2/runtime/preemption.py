"""Preemption: SIGTERM asks a training run to save and stop, not to die.

Spot and preemptible VMs, Kubernetes, Slurm and TPU maintenance send SIGTERM
and kill the process a grace period later (30 s on GCE spot and by default
on Kubernetes). `Watcher` turns SIGTERM into a request: a flag the training
loop reads before every step, inside its compiled loop of many steps
(`training/loop.py`), so that the run stops after the step that is running,
saves a checkpoint of it and exits with `EXIT_CODE`.

Python runs a signal handler only when the main thread returns to the
interpreter, which it does not while a compiled chunk of steps runs.
So the handler is also woken through `signal.set_wakeup_fd`: the C-level
handler writes to a socket at once, and a thread waiting on it sets the
flag variable (`Watcher.variable`) that the running chunk reads.

On a cluster every worker must stop at the same step (a worker that stops
alone leaves the others waiting in a collective). The loop therefore
all-reduces the flag across workers before every step: one scalar
collective per step, and every worker stops after the same step even when
only one of them got the signal. TensorFlow's PreemptionCheckpointHandler
was not used: it agrees on the step through a call per step from Python,
which a compiled loop of many steps does not make, and it writes and exits
on its own terms (its own checkpoint numbering and exit code, no run lock).
"""

import signal
import socket
import threading
import time

from absl import logging
import tensorflow as tf

# The exit status of a run stopped by SIGTERM after saving: sysexits.h's
# EX_TEMPFAIL ("temporary failure; the user is invited to retry"), distinct
# from 1 (failed), 2 (bad input) and from death by a signal (-15 / 143).
EXIT_CODE = 75
# Grace periods of the common preemption notices, in seconds.
DEFAULT_GRACE_S = 30.0


class Preempted(RuntimeError):
  """Training stopped on SIGTERM after saving; the message says where."""

  def __init__(self, message, step, checkpoint):
    super().__init__(message)
    self.step = step
    self.checkpoint = checkpoint


class Watcher:
  """Context manager: SIGTERM sets a flag instead of ending the process.

  Outside the main thread (signal handlers cannot be installed there) it
  watches nothing and says so once; `requested` then stays False.

  Attributes:
    variable: a boolean tf.Variable on the CPU, True once SIGTERM arrived;
      the training loop reads it before every step.
    received_at: time.monotonic() of the first SIGTERM, or None.
  """

  def __init__(self, signals=(signal.SIGTERM,)):
    self._signals = tuple(signals)
    self._event = threading.Event()
    self._previous = {}
    self._previous_fd = None
    self._sockets = None
    self._thread = None
    self.received_at = None
    self._logged = False
    with tf.device('/cpu:0'):
      self.variable = tf.Variable(False, trainable=False,
                                  name='preemption_requested')

  @property
  def requested(self):
    """Whether SIGTERM arrived since the watcher was installed."""
    return self._event.is_set()

  def _handle(self, unused_signum, unused_frame):
    # No TensorFlow here: the main thread may be tracing a function, which
    # would capture an assignment. The waking thread sets the variable.
    if not self._event.is_set():
      self.received_at = time.monotonic()
      self._event.set()

  def sync(self):
    """Sets the flag variable if a signal arrived (from the main thread)."""
    if self._event.is_set() and not bool(self.variable.numpy()):
      self.variable.assign(True)

  def _wake(self):
    reader = self._sockets[0]
    while True:
      try:
        data = reader.recv(64)
      except OSError:
        return
      if not data:
        return
      signums = [s for s in data if s in self._signals]
      if signums and not self._logged:
        self._logged = True
        if self.received_at is None:
          self.received_at = time.monotonic()
        self.variable.assign(True)
        logging.warning('Received %s: stopping after the step that runs, '
                        'then saving a checkpoint of it.',
                        signal.Signals(signums[0]).name)

  def install(self):
    if threading.current_thread() is not threading.main_thread():
      logging.warning('Not in the main thread: SIGTERM is not watched, a '
                      'preemption ends the run without saving.')
      return self
    self._sockets = socket.socketpair()
    self._sockets[1].setblocking(False)
    self._previous_fd = signal.set_wakeup_fd(self._sockets[1].fileno(),
                                             warn_on_full_buffer=False)
    for signum in self._signals:
      self._previous[signum] = signal.signal(signum, self._handle)
    self._thread = threading.Thread(target=self._wake, daemon=True,
                                    name='preemption-watcher')
    self._thread.start()
    return self

  def uninstall(self):
    """Restores the previous handlers (idempotent): SIGTERM ends the run."""
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}
    if self._sockets is not None:
      signal.set_wakeup_fd(self._previous_fd)
      self._sockets[1].close()  # Ends the thread's recv.
      self._thread.join(timeout=5)
      self._sockets[0].close()
      self._sockets = None

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc_info):
    self.uninstall()
