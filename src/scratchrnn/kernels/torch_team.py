"""PyTorch's own threads for the compiled kernels' calls from the torch backend.

The library's own helper threads (pool.c) serve NumPy well, but beside PyTorch they compete for the
cores with PyTorch's OpenMP threads, which keep spinning for a while after each of its operations.
The torch backend therefore hands its kernel calls to PyTorch's team: where PyTorch runs its
operators on OpenMP (its x86-64 and aarch64 Linux wheels bundle GNU OpenMP), the kernels run their
jobs on the team of that runtime, through the entry point a ``#pragma omp parallel`` compiles to,
found in the process at run time (pool.c): no compiler, nothing built or cached. Where PyTorch has
another thread pool, or no such runtime is loaded, the kernels keep their own threads and
``status()`` says why. ``SCRATCHRNN_TORCH_TEAM=0`` (or off, no, false) keeps their own threads on
purpose.
"""
from __future__ import annotations

import os
import sys

from . import _library

_OFF = ("0", "off", "no", "false")


def _why_not() -> str | None:
    """None where the kernels can run on PyTorch's OpenMP team, else why not."""
    if os.environ.get("SCRATCHRNN_TORCH_TEAM", "").strip().lower() in _OFF:
        return "SCRATCHRNN_TORCH_TEAM is off"
    torch = sys.modules.get("torch")
    if torch is None:
        return "PyTorch is not loaded"
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return "this PyTorch does not run its operators on OpenMP"
    if not _library.openmp_found():
        return "no OpenMP runtime with GOMP_parallel is loaded"
    return None


_answer: list = []          # the first answer, (team, reason): the process's PyTorch does not change


def team() -> str | None:
    """"openmp" (for ``_library.running_on``) where the kernels run on PyTorch's team, else None."""
    if not _answer:
        reason = _why_not()
        if reason == "PyTorch is not loaded":
            return None                     # not remembered: it may be imported later
        _answer.append(("openmp" if reason is None else None, reason))
    return _answer[0][0]


def status() -> str:
    """"PyTorch's threads" or "the kernels' own threads (<why>)", for ``--version``."""
    if team() is not None:
        return "PyTorch's threads"
    return f"the kernels' own threads ({_answer[0][1] if _answer else 'PyTorch is not loaded'})"
