"""Writing to the terminal (or a pipe) so that output problems never stop the program.

Two things go wrong with a program's output that have nothing to do with its work: the reader goes
away (``scratchrnn generate ... | head -c 10``: the next write fails with ``BrokenPipeError``), and the
output's encoding cannot hold a character (``PYTHONIOENCODING=ascii``: ``UnicodeEncodeError``). A
``SafeWriter`` absorbs both: characters the encoding lacks are written as backslash escapes, and once
the reader is gone every later write is dropped and ``closed`` says so, so that the caller decides
whether to go on working (training keeps training and saving) or to stop (generation has nobody left
to generate for). A write that fails otherwise (a full disk behind a redirection, ``> /dev/full``)
raises its OSError for the caller to report, and so does every later one; nothing of it stays
buffered to fail again when Python exits.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import TextIO


class SafeWriter:
    """A text stream's ``write``, ``print`` and ``flush`` that never raise for a closed reader or a
    character the stream's encoding lacks.

    ``stream`` defaults to ``sys.stdout`` as it is when the writer is made. Every method returns
    whether the text reached the stream (False from the moment the reader is gone).
    """

    def __init__(self, stream: TextIO | None = None):
        self.stream = sys.stdout if stream is None else stream
        encoding = getattr(self.stream, "encoding", None)
        # UTF-8 encodes every character (lone surrogates aside); other encodings are checked per write
        self._encoding = None if not encoding or encoding.lower().replace("-", "") == "utf8" else encoding
        # Python sets sys.stdout to None when the program starts with its stdout closed
        self._closed = self.stream is None
        self._failed: OSError | None = None     # the write that failed (a full disk), raised again

    @property
    def closed(self) -> bool:
        """True once the reader has gone away (a closed pipe) or the stream was closed."""
        return self._closed

    def can_write(self, text: str) -> bool:
        """Whether the stream's encoding holds every character of ``text`` (no escapes needed)."""
        if self._encoding is None:
            return True
        try:
            text.encode(self._encoding)
        except UnicodeEncodeError:
            return False
        return True

    def write(self, text: str, flush: bool = False) -> bool:
        """Write ``text`` (and flush the stream when ``flush``)."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            return False
        if self._encoding is not None:
            text = text.encode(self._encoding, "backslashreplace").decode(self._encoding)
        try:
            self.stream.write(text)
            if flush:
                self.stream.flush()
        except (BrokenPipeError, ValueError):
            # ValueError: the stream object was closed under us ("I/O operation on closed file")
            return self._reader_gone()
        except OSError as err:
            # a full disk behind a redirection (/dev/full): a real failure, which the caller reports,
            # and every later write fails alike; what is still buffered would fail again when Python
            # flushes the stream at exit ("Exception ignored", exit status 120), so it goes nowhere
            self._failed = err
            self._drop_pending()
            raise
        return True

    def print(self, *values, sep: str = " ", end: str = "\n", flush: bool = False) -> bool:
        """``print(*values, sep=sep, end=end)`` on the stream."""
        return self.write(sep.join(map(str, values)) + end, flush=flush)

    def flush(self) -> bool:
        """Flush the stream; call it before the program ends so that a closed pipe is noticed here,
        not in the interpreter's own flush at exit (which prints a traceback-like message)."""
        return self.write("", flush=True)

    def _reader_gone(self) -> bool:
        self._closed = True
        self._drop_pending()
        return False

    def _drop_pending(self) -> None:
        # What is still buffered for the stream would fail again when Python flushes it at exit
        # ("Exception ignored ... BrokenPipeError", exit status 120): point the file descriptor at
        # /dev/null so that last flush succeeds and says nothing.
        try:
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, fd)
            finally:
                os.close(devnull)
        except (AttributeError, OSError, ValueError):
            pass                        # not a file descriptor (a StringIO, a closed stream)


def stdout() -> SafeWriter:
    """A ``SafeWriter`` around the current ``sys.stdout``."""
    return SafeWriter(sys.stdout)


def stderr() -> SafeWriter:
    """A ``SafeWriter`` around the current ``sys.stderr``."""
    return SafeWriter(sys.stderr)


def keep_stderr_usable() -> None:
    """Give Python a stderr that takes writes when the program was started without one (``2>&-``).

    Python sets ``sys.stderr`` to None then, or keeps a stream whose descriptor is closed; either way
    the first message would raise (or be printed on stdout, mixed with the text). The messages go
    nowhere instead, and the exit status still says what happened.
    """
    stream = sys.stderr
    if stream is not None:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return                  # no descriptor behind it (a test's StringIO): the caller's to keep
        try:
            os.fstat(fd)
            return
        except OSError:
            pass
    sys.stderr = open(os.devnull, "w", encoding="utf-8")


def say_error(line: str) -> None:
    """``line`` on stderr, the program's last words: a stderr that fails takes nothing down with it."""
    try:
        SafeWriter(sys.stderr).print(line, flush=True)
    except OSError:
        pass


def strict_json(record, ensure_ascii: bool = False) -> str:
    """``record`` as strict JSON, for every ``--json`` output: a float that is not finite (an infinite
    held-out perplexity, the speed of an epoch shorter than the clock's tick) is written ``null``, as
    JSON has no such numbers (Python's ``Infinity`` and ``NaN`` are not JSON, and a strict parser
    refuses them)."""
    def finite(value):
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(item) for item in value]
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return json.dumps(finite(record), ensure_ascii=ensure_ascii, allow_nan=False)
