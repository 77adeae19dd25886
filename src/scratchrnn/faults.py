"""Fault injection for the tests: stop the program at a named point, on purpose.

``SCRATCHRNN_FAULT=NAME:ACTION`` (several separated by commas) makes ``point(NAME)`` act when the
program reaches it; unset, ``point`` does nothing but one dictionary look-up. The points are named
after what has just happened (``checkpoint.weights-written``, ``train.epoch-end``, ...), so a test can
stop a save between any two of its file operations and check what a real crash there would leave.

Actions:
- ``kill``: SIGKILL this process (a power cut, ``kill -9``, the OOM killer);
- ``interrupt``: raise KeyboardInterrupt here (Ctrl-C arriving at this moment, with Python's own
  handler in place, or a second Ctrl-C during training);
- ``sigint``: send this process SIGINT (a first Ctrl-C: whatever handler is installed sees it);
- ``enospc``: raise OSError(ENOSPC) (the disk filled up);
- ``after-N-ACTION``: do ACTION on the N-th time the point is reached (1 is the first).

This is for tests and the probe script; nothing a user does sets it.
"""
from __future__ import annotations

import errno
import os
import signal

ENV = "SCRATCHRNN_FAULT"
_seen: dict[str, int] = {}


def _plan() -> dict[str, str]:
    spec = os.environ.get(ENV, "")
    plan = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition(":")
        plan[name] = action or "kill"
    return plan


def point(name: str) -> None:
    """Act here if ``SCRATCHRNN_FAULT`` names this point."""
    if ENV not in os.environ:
        return
    action = _plan().get(name)
    if action is None:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if action.startswith("after-"):
        count, _, action = action[len("after-"):].partition("-")
        if _seen[name] != int(count):
            return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
    elif action == "interrupt":
        raise KeyboardInterrupt(f"fault injected at {name}")
    elif action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (fault injected at {name})")
    else:
        raise ValueError(f"{ENV}: unknown action {action!r} for point {name!r}")
