"""Reading and appending to files that something else may have put in place of the ones expected.

A checkpoint, a run directory's metrics, its lock file, the wisdom file of measured choices: each is a
name where a regular file should be, and each could be a FIFO (opening it for reading blocks until a
writer comes), a device (``/dev/zero`` never ends), a directory, or a file far larger than any we
write. Every such file is read here, and only here: the name is checked with ``stat`` first, opened
non-blocking, checked again through the descriptor (so a swap between the two is caught), and read
up to a limit. What is refused raises ``FileRefused`` with a phrase the caller puts in its own
one-line message.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

_NONBLOCKING = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class FileRefused(Exception):
    """``path`` cannot be used: ``reason`` says why, as a phrase ("is not a regular file");
    ``missing`` is True when there is nothing at all under that name."""

    def __init__(self, path, reason: str, missing: bool = False):
        super().__init__(f"{path} {reason}")
        self.path, self.reason, self.missing = path, reason, missing


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_irregular(path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _kind(mode)
        raise FileRefused(path, "is not a regular file" if kind == "not a regular file"
                          else f"is {kind}, not a regular file")


def read_regular_file(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (FileRefused otherwise)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):      # nothing under that name (a path through a file)
        raise FileRefused(path, "is missing", missing=True) from None
    except OSError as err:
        raise FileRefused(path, f"cannot be read ({err.strerror})") from None
    _refuse_irregular(path, info.st_mode)
    if info.st_size > limit:
        raise FileRefused(path, f"is {info.st_size} bytes, more than the {limit} expected")
    fd = open_regular(path, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise FileRefused(path, f"cannot be read ({err.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileRefused(path, f"is more than the {limit} bytes expected")
    return data


def open_regular(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor of ``path`` opened with ``flags`` (plus O_NONBLOCK: a FIFO never blocks the open),
    refused unless what was opened is a regular file. Appending to a FIFO would block once its buffer
    fills, and to a device would write nowhere."""
    try:
        fd = os.open(path, flags | _NONBLOCKING, mode)
    except (FileNotFoundError, NotADirectoryError):
        raise FileRefused(path, "is missing", missing=True) from None
    except OSError as err:
        # ENXIO: a FIFO opened for writing with nobody reading it
        try:
            _refuse_irregular(path, os.stat(path).st_mode)
        except OSError:
            pass
        raise FileRefused(path, f"cannot be opened ({err.strerror})") from None
    try:
        _refuse_irregular(path, os.fstat(fd).st_mode)
        # reads and writes of a regular file never block anyway; clear the flag for what follows
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
