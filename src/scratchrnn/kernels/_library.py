"""Loads the compiled library with ctypes, picks its variant for this processor, and reads the
environment variables that steer it.

``pip install`` compiles one small C library, ``scratchrnn/kernels/_kernels*.so`` (setup.py marks it
optional, so an install without a C compiler still succeeds), holding the greedy decoder and the
training recurrences in several variants: AVX-512, AVX2 with FMA and the architecture's baseline (or
``native`` and the baseline, built with ``SCRATCHRNN_NATIVE=1``). Each variant answers whether this
processor runs it; the first that does is used, unless ``SCRATCHRNN_KERNEL_VARIANT`` names one.

Whatever goes wrong in loading (no library, a library that cannot be opened, lacks a function, was
built for another interface or from other sources, an environment variable that makes no sense) turns
the kernels off with a reason (``status()``), never an exception: the backends then run their own
loops, the same mathematics summed in another order.

Environment: ``SCRATCHRNN_NO_KERNEL=1`` (or true, yes, on) turns them off; ``SCRATCHRNN_THREADS=N``
caps their threads (else ``OMP_NUM_THREADS``, else the CPUs this process may run on, up to 8; under
PyTorch never more than ``torch.get_num_threads()``); ``SCRATCHRNN_KERNEL_VARIANT`` forces a variant.
"""
from __future__ import annotations

import ctypes
import contextlib
import importlib.machinery
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._sources import source_hash

ABI = 6                       # dispatch.c's SCRATCHRNN_KERNELS_ABI: the interface this file calls
VARIANTS = ("native", "avx512", "avx2", "baseline")     # in the order of preference
MAX_DEFAULT_THREADS = 8
_TRUE = ("1", "true", "yes", "on")

_handle = None                # the opened library (ctypes.CDLL), once checked
_handle_error: str | None = None
_bound: dict = {}             # variant -> Kernels
_chosen = None                # the Kernels in use, or None with _chosen_error
_chosen_error: str | None = None
_warned: set = set()


@dataclass(frozen=True)
class Kernels:
    """One variant's functions, bound with their argument types."""
    variant: str
    vector_floats: int
    greedy_decode: object
    recurrence_forward: object
    recurrence_backward: object
    tanh: object
    last_threads: object
    # the gated cells' step loops (gated.c; called through gated.py)
    gru_forward: object = None
    gru_backward: object = None
    lstm_forward: object = None
    lstm_backward: object = None


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(f"scratchrnn: {message}", file=sys.stderr)


def disabled() -> bool:
    """Whether ``SCRATCHRNN_NO_KERNEL`` turns the kernels off (1, true, yes or on; 0 or empty: not)."""
    return os.environ.get("SCRATCHRNN_NO_KERNEL", "").strip().lower() in _TRUE


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


def configured_threads() -> int | None:
    """``SCRATCHRNN_THREADS`` if it is a whole number of threads (1 or more); else, with a warning on
    stderr for a value that is not, ``OMP_NUM_THREADS``'s first number if it is one; else None."""
    text = os.environ.get("SCRATCHRNN_THREADS", "").strip()
    if text:
        value = _positive_int(text)
        if value is not None:
            return value
        _warn_once(f"SCRATCHRNN_THREADS={text!r} is not a whole number of threads (1 or more); ignored")
    return _positive_int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0] or None)


def threads(framework: str | None = None) -> int:
    """How many threads a kernel call may use: ``configured_threads()``, else the CPUs this process
    may run on (up to 8); for ``framework="torch"`` never more than ``torch.get_num_threads()``, what
    PyTorch itself is told to use."""
    count = configured_threads()
    if count is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:                      # not on Linux
            cpus = os.cpu_count() or 1
        count = max(1, min(cpus, MAX_DEFAULT_THREADS))
    if framework == "torch" and "torch" in sys.modules:
        count = min(count, max(1, sys.modules["torch"].get_num_threads()))
    return count


def _find_library() -> Path | None:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_kernels{suffix}"
        if candidate.exists():
            return candidate
    return None


def _open():
    """The library, opened and checked (interface number, sources); None with ``_handle_error``."""
    global _handle, _handle_error
    if _handle is not None or _handle_error is not None:
        return _handle
    path = _find_library()
    if path is None:
        _handle_error = "not built (no C compiler at install time)"
        return None
    try:
        library = ctypes.CDLL(str(path))
        library.scratchrnn_kernels_abi.restype = ctypes.c_int
        library.scratchrnn_kernels_source_hash.restype = ctypes.c_char_p
        abi = library.scratchrnn_kernels_abi()
        built_from = library.scratchrnn_kernels_source_hash().decode("ascii", "replace")
        library.scratchrnn_last_threads.restype = ctypes.c_int
        library.scratchrnn_use_team.argtypes = [ctypes.c_void_p]
        library.scratchrnn_use_team.restype = None
        library.scratchrnn_pool_helpers.restype = ctypes.c_int
    except (OSError, AttributeError, ValueError) as error:
        _handle_error = f"cannot be loaded ({path.name}: {error})"
        return None
    if abi != ABI:
        _handle_error = f"built for interface {abi}, this scratchrnn calls {ABI} (reinstall to rebuild it)"
        return None
    sources = source_hash(path.parent)
    if sources is not None and built_from != sources:
        _handle_error = ("stale: built from other sources than those beside it (rebuild: pip install ., "
                         "or python setup.py build_ext --inplace)")
        return None
    _handle = library
    return library


def _bind(library, variant: str) -> Kernels | None:
    """The variant's functions, or None where the library was built without it."""
    try:
        function = lambda name: getattr(library, f"scratchrnn_{name}_{variant}")  # noqa: E731
        runs_here, vector_floats = function("runs_here"), function("vector_floats")
        decode, forward = function("greedy_decode"), function("recurrence_forward")
        backward, tanh = function("recurrence_backward"), function("tanh")
        gated = {name: function(name) for name in ("gru_forward", "gru_backward", "lstm_forward",
                                                   "lstm_backward")}
    except AttributeError:
        return None
    floats = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    int64s = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
    optional_floats = ctypes.c_void_p                   # an array's address, or None for NULL
    ints = [ctypes.c_int] * 5
    decode.argtypes = [*ints, ctypes.c_int, ctypes.c_int, int64s, floats, floats, floats, floats, floats,
                       int64s]
    forward.argtypes = [*ints, floats, floats]
    backward.argtypes = [*ints, floats, floats, optional_floats, optional_floats, floats, optional_floats]
    tanh.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    tanh.restype = None
    for f in (runs_here, vector_floats, decode, forward, backward):
        f.restype = ctypes.c_int
    _declare_gated(gated, floats, optional_floats)
    # vector_floats 0: a variant this processor does not run (see variant_kernels)
    return Kernels(variant, vector_floats() if runs_here() else 0, _interruptible(decode),
                   _interruptible(forward), _interruptible(backward), tanh, library.scratchrnn_last_threads,
                   **{name: _interruptible(f) for name, f in gated.items()})


def _declare_gated(gated: dict, floats, optional_floats) -> None:
    """The argument types of gated.c's four functions: the sizes and the thread count, then arrays
    (an optional one, None for NULL, where the C function accepts NULL)."""
    sizes = [ctypes.c_int] * 4
    gated["gru_forward"].argtypes = [*sizes, *[floats] * 7]
    gated["gru_backward"].argtypes = [*sizes, *[floats] * 5, optional_floats, optional_floats, floats,
                                      optional_floats]
    # the LSTM's take the number of shares of its hidden units after the thread count (lstm_units.c)
    gated["lstm_forward"].argtypes = [*sizes, ctypes.c_int, *[floats] * 6]
    gated["lstm_backward"].argtypes = [*sizes, ctypes.c_int, *[floats] * 4, *[optional_floats] * 3, floats,
                                       optional_floats, optional_floats]
    for f in gated.values():
        f.restype = ctypes.c_int


def _interruptible(function):
    """``function``, but a Ctrl-C that lands while ctypes converts its arguments is raised as the
    KeyboardInterrupt it is (ctypes wraps it in an ArgumentError, which nobody would take for Ctrl-C)."""
    def call(*args):
        try:
            return function(*args)
        except ctypes.ArgumentError as err:
            if "KeyboardInterrupt" in str(err):
                raise KeyboardInterrupt from None
            raise
    call.__name__ = getattr(function, "__name__", "kernel")
    return call


def variant_kernels(variant: str) -> Kernels | None:
    """A variant's kernels if the library has it and this processor runs it (for tests and
    benchmarks, which compare the variants), else None."""
    library = _open()
    if library is None or variant not in VARIANTS:
        return None
    if variant not in _bound:
        _bound[variant] = _bind(library, variant)
    kernels = _bound[variant]
    return kernels if kernels is not None and kernels.vector_floats else None


def built_variants() -> list[str]:
    """The variants in the library that this processor runs, best first."""
    return [v for v in VARIANTS if variant_kernels(v) is not None]


def load() -> Kernels | None:
    """The kernels in use (the best variant this processor runs, or the one
    ``SCRATCHRNN_KERNEL_VARIANT`` names), whether or not they are turned off; None where they cannot
    be used, with the reason in ``status()``."""
    global _chosen, _chosen_error
    if _chosen is not None or _chosen_error is not None:
        return _chosen
    try:
        library = _open()
        if library is None:
            _chosen_error = _handle_error
            return None
        wanted = os.environ.get("SCRATCHRNN_KERNEL_VARIANT", "").strip().lower()
        if wanted in ("", "auto"):
            usable = built_variants()
            _chosen = variant_kernels(usable[0]) if usable else None
            _chosen_error = None if usable else "no variant in the library runs on this processor"
        elif wanted not in VARIANTS:
            _chosen_error = (f"SCRATCHRNN_KERNEL_VARIANT={wanted!r} is not one of auto, "
                             f"{', '.join(VARIANTS)}")
        elif _bind(library, wanted) is None:
            _chosen_error = f"SCRATCHRNN_KERNEL_VARIANT={wanted} names a variant this build lacks"
        else:
            _chosen = variant_kernels(wanted)
            _chosen_error = None if _chosen else f"this processor cannot run the {wanted} variant"
    except Exception as error:          # never a traceback for a library we could not use
        _chosen, _chosen_error = None, f"cannot be loaded ({type(error).__name__}: {error})"
    return _chosen


def enabled() -> bool:
    """Built, loaded, usable here, and not turned off."""
    return not disabled() and load() is not None


def status() -> str:
    """For ``scratchrnn --version``: "on, <variant> ..." or "off, <reason>"."""
    if disabled():
        return "off, SCRATCHRNN_NO_KERNEL is set"
    kernels = load()
    if kernels is None:
        return f"off, {_chosen_error}"
    return (f"on, {kernels.variant} variant ({kernels.vector_floats}-float vectors), "
            f"up to {threads()} thread(s)")


def last_threads() -> int:
    """How many threads the last kernel call handed work to (0 before any call)."""
    library = _open()
    return library.scratchrnn_last_threads() if library is not None else 0


@contextlib.contextmanager
def running_on(team: int | None):
    """Within it, this thread's kernel calls run on ``team`` (the address of a function of the
    ``scratchrnn_team`` type, pool.h: a framework's threads) instead of the library's own threads;
    None changes nothing."""
    library = _open()
    if team is None or library is None:
        yield
        return
    library.scratchrnn_use_team(team)
    try:
        yield
    finally:
        library.scratchrnn_use_team(None)


def helper_threads() -> int:
    """How many threads of its own the library has started (0 before any call that used them)."""
    library = _open()
    return library.scratchrnn_pool_helpers() if library is not None else 0


def address(array: np.ndarray | None):
    """An optional array argument: its address, or None (NULL)."""
    return None if array is None else array.ctypes.data
