"""The compiled parts of scratchrnn, loaded with ctypes where they were built.

``pip install`` compiles one small C library, ``scratchrnn._compiled`` (setup.py marks it optional, so
an install without a C compiler still succeeds): the greedy decoder (``_greedy_decode.c``, used through
``fast_decode``) and the recurrences of a training step (``_recurrence.c``, through
``fast_recurrence``), both for float32 on the CPU. Where it is missing, or ``SCRATCHRNN_NO_KERNEL=1``
turns it off, everything runs in the backends' own code: the same mathematics, summed in another
order. ``SCRATCHRNN_THREADS`` sets how many threads it uses (default: the CPUs this process may
run on, up to 8).
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path

import numpy as np

_library = None
_load_error: str | None = None
_openmp_team: str | None = None


def _find_library() -> Path | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_compiled{suffix}"
        if candidate.exists():
            return candidate
    return None


def load():
    """The library, whether or not it is turned off; None where it was not built (see ``status``)."""
    global _library, _load_error
    if _library is not None or _load_error is not None:
        return _library
    path = _find_library()
    if path is None:
        _load_error = "not built (no C compiler at install time)"
        return None
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        _load_error = f"cannot be loaded: {error}"
        return None
    floats = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    int64s = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
    optional_floats = ctypes.c_void_p                   # an array's address, or None for NULL
    ints = [ctypes.c_int] * 5
    library.scratchrnn_greedy_decode.argtypes = [
        *ints, ctypes.c_int, ctypes.c_int, int64s, floats, floats, floats, floats, floats, int64s]
    library.scratchrnn_recurrence_forward.argtypes = [*ints, floats, floats]
    library.scratchrnn_recurrence_backward.argtypes = [*ints, floats, floats, optional_floats,
                                                       optional_floats, floats, optional_floats]
    library.scratchrnn_use_openmp_team.argtypes = [ctypes.c_void_p]
    library.scratchrnn_use_openmp_team.restype = None
    for function in (library.scratchrnn_greedy_decode, library.scratchrnn_recurrence_forward,
                     library.scratchrnn_recurrence_backward, library.scratchrnn_vector_floats):
        function.restype = ctypes.c_int
    _library = library
    return library


def enabled() -> bool:
    """Built, loaded, and not turned off."""
    return not os.environ.get("SCRATCHRNN_NO_KERNEL") and load() is not None


def status() -> str:
    """For ``scratchrnn --version``: whether the compiled code runs, and if not, why."""
    if os.environ.get("SCRATCHRNN_NO_KERNEL"):
        return "off (SCRATCHRNN_NO_KERNEL is set)"
    if load() is None:
        return _load_error
    return f"on, {vector_floats()}-float vectors, {default_threads()} thread(s)"


def default_threads() -> int:
    configured = os.environ.get("SCRATCHRNN_THREADS")
    if configured:
        return max(1, int(configured))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def vector_floats() -> int:
    """The width of the vectors the library was compiled for: 16 with AVX-512, 8 with AVX, else 4."""
    return load().scratchrnn_vector_floats()


def share_openmp_team(runtime_name: str) -> bool:
    """Run the training recurrences' threads on the OpenMP team of a runtime this process has loaded
    (``runtime_name`` a part of its file name, e.g. "libgomp"); whether it was found.

    A framework that computes on an OpenMP team (PyTorch) keeps its threads spinning for milliseconds
    after each operation, waiting for the next; threads of our own would then share a core with one of
    them, at half speed, where the team's own threads take the work at once (_recurrence.c). Found by
    the mapped files of this process (Linux); the runtime must offer GNU OpenMP's ``GOMP_parallel``, as
    GNU's libgomp and Intel's libiomp5 do.
    """
    global _openmp_team
    library = load()
    if library is None:
        return False
    if _openmp_team is not None:
        return True
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if runtime_name in line.rsplit("/", 1)[-1]}
    except OSError:
        return False
    for path in sorted(paths):
        try:
            runtime = ctypes.CDLL(path)     # the same copy as is loaded: no second runtime
            parallel = ctypes.cast(runtime.GOMP_parallel, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        library.scratchrnn_use_openmp_team(parallel)
        _openmp_team = path
        return True
    return False


def openmp_team() -> str | None:
    """The OpenMP runtime whose team runs the training recurrences (see ``share_openmp_team``)."""
    return _openmp_team


def address(array: np.ndarray | None):
    """An optional array argument: its address, or None (NULL)."""
    return None if array is None else array.ctypes.data
