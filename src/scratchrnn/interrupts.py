"""Ctrl-C during training: the first asks to stop after the current batch (and save), the second
stops at once. ``runner`` installs ``StopRequests`` around training and asks it after every batch."""
from __future__ import annotations

import os
import signal
import threading
import time


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
