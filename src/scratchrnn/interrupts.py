"""Ctrl-C during training: the first asks to stop after the current batch (and save), the second
stops at once. ``runner`` installs ``StopRequests`` around training and asks it after every batch.
While a framework is being imported (``importing``), a Ctrl-C ends the program at once."""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager


class StopRequests:
    """The first SIGINT asks training to stop after the current batch; the second stops at once.

    ``grace`` seconds after the first, a SIGINT counts as the same request: under torchrun a Ctrl-C
    reaches every rank twice, from the terminal and forwarded by torchrun's agent.
    """

    def __init__(self, grace: float = 0.0, quiet: bool = False):
        self.requested = False
        self.grace, self.quiet = grace, quiet
        self._first = 0.0
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._first < self.grace:
                return
            raise KeyboardInterrupt
        self.requested = True
        self._first = time.monotonic()
        # os.write: safe inside a signal handler, unlike print
        if not self.quiet:
            os.write(2, b"\nscratchrnn: stopping after this batch and saving (Ctrl-C again: stop at once)\n")

    def __call__(self) -> bool:
        return self.requested


def _end_at_once(signum, frame):
    try:
        os.write(2, b"scratchrnn: interrupted\n")
    except OSError:
        pass                # no stderr to say it on: the exit status says it
    os._exit(130)


@contextmanager
def importing():
    """Around the import of a framework (PyTorch, TensorFlow...): a Ctrl-C then ends the program at
    once, with one line and exit status 130.

    A KeyboardInterrupt raised inside a framework's import leaves it half-initialised in
    ``sys.modules``; whatever touches it afterwards -- a ``finally`` leaving a process group, the
    interpreter's own shutdown -- fails with "partially initialized module" tracebacks or a segfault.
    Nothing is half-written while a framework loads (the run directory is written only after), so
    ending the process there loses nothing; a run directory already opened keeps its lock file, which
    the next run takes over as stale.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _end_at_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
