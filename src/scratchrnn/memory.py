"""Memory a request would need, checked against what the machine has before anything is allocated.

A size no machine can hold (``--num-chars 1000000000000``) should end in one line that names the
estimate, not in NumPy's ``MemoryError`` after a long wait or in the kernel's out-of-memory killer.
"""
from __future__ import annotations

import os

from .errors import UserError

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``; powers of 1024, one decimal."""
    unit = 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.0f} bytes" if unit == 0 else f"{size:.1f} {_UNITS[unit]}"


def available_bytes() -> int | None:
    """Memory the system can give a new allocation without swapping (Linux's MemAvailable), or the
    free physical memory where that is not known; None where neither is."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def require(nbytes: float, what: str, hint: str = "") -> None:
    """Raise ``UserError`` when ``what`` (a phrase: "generating 10 characters") needs more than the
    memory available, naming both; ``hint`` (a sentence) says what to do instead."""
    available = available_bytes()
    if available is not None and nbytes > available:
        message = (f"{what} needs about {format_bytes(nbytes)} of memory, more than the "
                   f"{format_bytes(available)} available")
        raise UserError(f"{message}; {hint}" if hint else message)
