"""Errors a user can fix. The CLI prints their message and exits with status 2, without a traceback."""
from __future__ import annotations

import errno
import os


class UserError(Exception):
    """Bad input: a wrong option, a missing file, a corpus too short, a corrupt checkpoint."""


class BackendUnavailable(UserError):
    """The framework behind a backend is not installed (the message names the extra to install)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""

    def __init__(self, epoch: int, loss: float, what: str | None = None):
        self.epoch, self.loss, self.what = epoch, loss, what or f"the loss became {loss}"
        super().__init__(f"training diverged at epoch {epoch}: {self.what}")


class RunInterrupted(Exception):
    """Training was stopped at once (a second Ctrl-C); the message says what the run directory kept."""


# what a user can do about the errors the system gives most often, beside its own words for them
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up: free some space or write somewhere else",
    errno.EROFS: "that file system is mounted read-only: write somewhere else",
    errno.ENAMETOOLONG: "a name in the path is longer than the file system allows, usually 255 bytes",
    errno.EACCES: "this user may not do that there: choose another place, or change its permissions",
    errno.EPERM: "this user may not do that there: choose another place",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "a directory is where a file should be",
    errno.ELOOP: "the path goes round a loop of symbolic links",
}


def os_error_message(err: OSError, doing: str | None = None) -> str:
    """One line for an error of the operating system (a full disk, a read-only mount, a name too long,
    a path through a file...): what was being done (``doing``, e.g. "cannot save the plot"), the file,
    the system's words and what to do about it. Every command reports OSErrors through this."""
    what = err.strerror or str(err) or type(err).__name__
    names = [name for name in (err.filename, err.filename2) if name is not None]
    where = " -> ".join(os.fsdecode(name) if isinstance(name, bytes) else str(name) for name in names)
    hint = _OS_ERROR_HINTS.get(err.errno)
    line = f"{doing}: " if doing else ""
    line += f"{where}: {what}" if where else what
    return f"{line} ({hint})" if hint else line
