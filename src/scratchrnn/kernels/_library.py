"""Loads the compiled kernels (the extension module ``_kernels``), picks their variant for this
processor, and reads the environment variables that steer them.

``pip install`` compiles one small extension module, ``scratchrnn/kernels/_kernels*.so`` (setup.py marks
it optional, so an install without a C compiler still succeeds), holding the greedy decoder and the
training loops in several variants: AVX-512, AVX2 with FMA and the architecture's baseline (only the
baseline off x86-64). The module says which variants it
holds and whether this processor runs each; the first that runs is used, unless
``SCRATCHRNN_KERNEL_VARIANT`` names one. Its functions check every array against the sizes they are
given (module.c) before a kernel touches it.

Whatever goes wrong in loading (no module, a file that cannot be imported, one built from other sources
than those beside it, an environment variable that makes no sense) turns the kernels off with a reason
(``status()``), never an exception: the backends then run their own loops, the same mathematics summed
in another order.

Environment: ``SCRATCHRNN_NO_KERNEL=1`` (or true, yes, on) turns them off; ``SCRATCHRNN_THREADS=N``
caps their threads (else ``OMP_NUM_THREADS``, else the CPUs this process may run on, up to 8; under
PyTorch never more than ``torch.get_num_threads()``); ``SCRATCHRNN_KERNEL_VARIANT`` forces a variant.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ._sources import source_hash

MODULE = "scratchrnn.kernels._kernels"
VARIANTS = ("avx512", "avx2", "baseline")     # in the order of preference
MAX_DEFAULT_THREADS = 8
# the most threads one process is given (--threads, SCRATCHRNN_THREADS): more only wait for cores, and
# thousands fail to start (an OpenMP runtime's "Thread creation failed", a crash)
MAX_THREADS = 1024
_TRUE = ("1", "true", "yes", "on")

_handle = None                # the imported module, once checked
_handle_error: str | None = None
_built: dict = {}             # variant -> (this processor runs it, floats per vector), as the module says
_bound: dict = {}             # variant -> Kernels
_chosen = None                # the Kernels in use, or None with _chosen_error
_chosen_error: str | None = None
_warned: set = set()


ENTRY_POINTS = ("tanh", "greedy_decode", "recurrence_forward", "recurrence_backward", "gru_forward",
                "gru_backward", "lstm_forward", "lstm_backward")


@dataclass(frozen=True)
class Kernels:
    """One variant's functions (the module's, with the variant's name bound as their first argument;
    their arguments: module.c and the wrappers in decode.py, recurrence.py, gated.py). Each returns
    None, or raises ValueError for an array that does not fit the sizes, MemoryError where the kernel
    ran out of memory."""
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
        if value is not None and value <= MAX_THREADS:
            return value
        _warn_once(f"SCRATCHRNN_THREADS={text[:40]!r} is not a whole number of threads from 1 to {MAX_THREADS}; "
                   f"ignored")
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
    """The module's file beside this one (under the first of this Python's extension suffixes that
    names one; setup.py leaves no other), or None."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_kernels{suffix}"
        if candidate.exists():
            return candidate
    return None


def _open():
    """The module, imported and checked against the sources beside it; None with ``_handle_error``."""
    global _handle, _handle_error
    if _handle is not None or _handle_error is not None:
        return _handle
    path = _find_library()
    if path is None:
        _handle_error = "not built (no C compiler at install time)"
        return None
    try:
        spec = importlib.util.spec_from_file_location(MODULE, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        built_from = module.SOURCE_HASH
        variants = module.variants()
    except (ImportError, AttributeError) as error:
        _handle_error = f"cannot be loaded ({path.name}: {error})"
        return None
    sources = source_hash(path.parent)
    if sources is not None and built_from != sources:
        _handle_error = ("stale: built from other sources than those beside it (rebuild: pip install ., "
                         "or python setup.py build_ext --inplace)")
        return None
    _handle = module
    _built.clear()
    _built.update((name, (bool(runs), floats)) for name, runs, floats in variants)
    return module


def _bind(module, variant: str) -> Kernels | None:
    """The variant's functions, or None where the module was built without it."""
    if variant not in _built:
        return None
    runs_here, vector_floats = _built[variant]
    functions = {name: functools.partial(getattr(module, name), variant) for name in ENTRY_POINTS}
    # vector_floats 0: a variant this processor does not run (see variant_kernels)
    return Kernels(variant, vector_floats if runs_here else 0, last_threads=module.last_threads, **functions)


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
    module = _open()
    return module.last_threads() if module is not None else 0


def openmp_found() -> bool:
    """Whether an OpenMP runtime with the GNU entry points is loaded (PyTorch's, once torch is
    imported), whose team ``running_on("openmp")`` can run the kernels on."""
    module = _open()
    return module is not None and module.openmp_found()


@contextlib.contextmanager
def running_on(team: str | None):
    """Within it, this thread's kernel calls run on ``team``: "openmp", the team of the OpenMP
    runtime loaded in the process (a framework's threads, see pool.c), where ``openmp_found()``;
    None, or a team that is not there, changes nothing: the library's own threads."""
    module = _open()
    if team != "openmp" or module is None or not module.use_openmp(True):
        yield
        return
    try:
        yield
    finally:
        module.use_openmp(False)


def helper_threads() -> int:
    """How many threads of its own the library has started (0 before any call that used them)."""
    module = _open()
    return module.pool_helpers() if module is not None else 0
