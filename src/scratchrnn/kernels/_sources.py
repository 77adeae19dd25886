"""The hash of the kernels' C sources: setup.py compiles it into the library, and the loader compares
it with the sources beside the library, so that a library built from other sources is never used.

Kept free of imports beyond the standard library: setup.py loads this file by its path, before the
package (or NumPy) can be imported.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

SOURCE_SUFFIXES = (".c", ".h")


def source_files(directory: Path) -> list[Path]:
    """The C sources and headers of the kernels, in a fixed order."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix in SOURCE_SUFFIXES)


def source_hash(directory: Path) -> str | None:
    """The first 16 hex digits of a SHA-256 over the sources' names and contents; None where there
    are none (an installation that ships the library without them)."""
    files = source_files(directory)
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
