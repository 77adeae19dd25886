"""The wisdom file: which step loops were measured faster on this machine, remembered between runs.

The idea is FFTW's wisdom (and cuDNN's benchmark mode): the first time a workload is used, the
candidates are timed here, on this processor, and the answer is kept so that later runs only read it.
One JSON file per processor model and library build, in the user's cache directory
(``SCRATCHRNN_CACHE``, else ``$XDG_CACHE_HOME/scratchrnn``, else ``~/.cache/scratchrnn``):

    {"format": 1, "cpu": "<model name>", "library": {"build": "<hash>", "variant": "avx2"},
     "entries": {"<workload key>": {"loops": "compiled", "unit_shares": 0, "speedup": 1.31,
                                    "times": {"own": 0.012, "compiled": 0.009}}}}

Written atomically (a temporary file beside it, then ``os.replace``), merged with what another
process may have written meanwhile, and checked when read: a file that is not JSON, holds values of
the wrong type or range, or was written for another processor or library build is ignored with one
line on stderr, and rewritten by the next measurement. Where the directory cannot be written, the
choices are kept in memory for this process, with one line on stderr.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

from .. import faults
from ..regular_files import FileRefused, read_regular_file

FORMAT = 1
LOOPS = ("own", "compiled")
MAX_UNIT_SHARES = 1024
MAX_BYTES = 16 << 20        # a few hundred bytes a workload: far more than any machine measures
_said: set = set()          # the lines already printed, so that each is said once per process


def cache_dir() -> Path:
    """Where scratchrnn keeps what it makes for this user and machine."""
    configured = os.environ.get("SCRATCHRNN_CACHE", "").strip()
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scratchrnn"


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), or what the platform says of it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "unknown"


def file_name(cpu: str, library: dict) -> str:
    """The wisdom file's name for a processor and a library build: readable, and unique to both."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40] or "cpu"
    digest = hashlib.sha256(cpu.encode()).hexdigest()[:6]
    return f"wisdom-{slug}-{digest}-{library['build']}-{library['variant']}.json"


def say(message: str) -> None:
    """One line on stderr, once per process."""
    if message not in _said:
        _said.add(message)
        print(f"scratchrnn: {message}", file=sys.stderr)


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_entry(entry) -> str | None:
    """Why a remembered entry cannot be used (None: it can)."""
    if not isinstance(entry, dict) or set(entry) != {"loops", "unit_shares", "speedup", "times"}:
        return "an entry without exactly the keys loops, unit_shares, speedup, times"
    if entry["loops"] not in LOOPS:
        return f"an entry's loops is {entry['loops']!r}, not one of {', '.join(LOOPS)}"
    shares = entry["unit_shares"]
    if not isinstance(shares, int) or isinstance(shares, bool) or not 0 <= shares <= MAX_UNIT_SHARES:
        return f"an entry's unit_shares is {shares!r}, not a whole number from 0 to {MAX_UNIT_SHARES}"
    if not _positive_number(entry["speedup"]):
        return f"an entry's speedup is {entry['speedup']!r}, not a positive number"
    times = entry["times"]
    if (not isinstance(times, dict) or "own" not in times
            or not all(isinstance(k, str) and _positive_number(v) for k, v in times.items())):
        return "an entry's times are not positive numbers of seconds by candidate, own included"
    return None


def check(document, cpu: str, library: dict) -> str | None:
    """Why a wisdom file's contents cannot be used here (None: they can)."""
    if not isinstance(document, dict) or set(document) != {"format", "cpu", "library", "entries"}:
        return "not a wisdom file (its keys are not format, cpu, library, entries)"
    if document["format"] != FORMAT:
        return f"format {document['format']!r}, this scratchrnn reads {FORMAT}"
    if document["cpu"] != cpu:
        return f"written on another processor ({str(document['cpu'])[:60]!r})"
    if document["library"] != library:
        return "written for another build of the compiled library"
    entries = document["entries"]
    if not isinstance(entries, dict) or not all(isinstance(key, str) for key in entries):
        return "its entries are not an object keyed by workload"
    for entry in entries.values():
        reason = check_entry(entry)
        if reason:
            return reason
    return None


class Wisdom:
    """The remembered choices of one processor and library build: read once, written on every new
    measurement (merged with the file as it is then), kept in memory where the file cannot be."""

    def __init__(self, directory: Path, cpu: str, library: dict):
        self.cpu, self.library = cpu, dict(library)
        self.path = Path(directory) / file_name(cpu, library)
        self._entries: dict | None = None
        self.writable = True

    def _read(self, warn: bool) -> dict:
        """The file's valid entries ({} where there is none, or it is unusable: said once if ``warn``)."""
        try:
            # the reader that refuses a FIFO or a device under the name, which would block or never end
            text = read_regular_file(self.path, MAX_BYTES).decode("utf-8")
        except FileRefused as refused:
            if refused.missing:                             # nothing written there yet
                return {}
            reason = refused.reason
        except UnicodeDecodeError:
            reason = "not UTF-8 text"
        else:
            try:
                document = json.loads(text)
            except ValueError:
                reason = "not valid JSON"
            else:
                reason = check(document, self.cpu, self.library)
                if reason is None:
                    return dict(document["entries"])
        if warn:
            say(f"ignoring the wisdom file {self.path} ({reason}); it will be rewritten")
        return {}

    def entries(self) -> dict:
        """Every remembered workload key and its entry."""
        if self._entries is None:
            self._entries = self._read(warn=True)
        return dict(self._entries)

    def lookup(self, key: str) -> dict | None:
        return self.entries().get(key)

    def remember(self, key: str, entry: dict) -> None:
        """Keep ``entry`` for ``key``, in memory and in the file (atomically), with whatever another
        process has written there since this one read it."""
        reason = check_entry(entry)
        if reason:
            raise ValueError(reason)
        self.entries()
        self._entries[key] = entry
        if not self.writable:
            return
        try:
            merged = {**self._read(warn=False), **self._entries}
            self._write(merged)
            self._entries = merged
        except OSError as error:
            self.writable = False
            say(f"cannot write the wisdom file {self.path} ({error.strerror or error}); the measured "
                f"choices are kept for this process only")

    def _write(self, entries: dict) -> None:
        document = {"format": FORMAT, "cpu": self.cpu, "library": self.library, "entries": entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            faults.point("wisdom.temporary-written")
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
