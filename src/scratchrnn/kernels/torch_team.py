"""PyTorch's own threads for the compiled kernels' calls from the torch backend.

The library's own helper threads (pool.c) serve NumPy well, but beside PyTorch they compete for the
cores with PyTorch's OpenMP threads, which keep spinning for a while after each of its operations, so
a training step ran slower with the compiled loops than with PyTorch's own (benchmarks/README.md).
The torch backend therefore hands its kernel calls to PyTorch's team: ``torch_team.cpp`` calls
``at::parallel_for``, compiled on first use against the PyTorch that is loaded (its headers ship in
the wheel) with the C++ compiler ``CXX`` names (default ``c++``), and kept in a cache folder
(``SCRATCHRNN_CACHE``, else ``$XDG_CACHE_HOME/scratchrnn``, else ``~/.cache/scratchrnn``) under a name
that holds PyTorch's version and the source's hash. Where it cannot be built (no compiler, a PyTorch
without headers, another platform's OpenMP), the kernels keep their own threads and ``status()`` says
why. ``SCRATCHRNN_TORCH_TEAM=0`` (or off, no, false) keeps their own threads on purpose.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("torch_team.cpp")
BUILD_SECONDS = 300
_OFF = ("0", "off", "no", "false")

_team: int | None = None          # the address of scratchrnn_torch_team, once built and loaded
_error: str | None = None
_library = None                   # the loaded shim (kept referenced so it stays mapped)


def cache_dir() -> Path:
    if os.environ.get("SCRATCHRNN_CACHE", "").strip():
        return Path(os.environ["SCRATCHRNN_CACHE"].strip())
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scratchrnn"


def _compile_command(torch, output: Path) -> list[str]:
    root = Path(torch.__file__).parent
    command = [os.environ.get("CXX", "c++"), "-O2", "-shared", "-fPIC", "-std=c++17",
               f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
               f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}"]
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        # the parallel region is compiled here; its calls resolve to the OpenMP runtime PyTorch has
        # already loaded (same library name), so both share one team
        command.append("-fopenmp")
    return command + [str(SOURCE), "-o", str(output), f"-L{root / 'lib'}", "-lc10", "-ltorch_cpu",
                      f"-Wl,-rpath,{root / 'lib'}"]


def _library_path(torch) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode()
                            + sys.version.encode()).hexdigest()[:12]
    version = "".join(c if c.isalnum() or c in ".-" else "_" for c in torch.__version__)
    return cache_dir() / f"torch_team-{version}-{digest}.so"


def _build(torch, path: Path) -> str | None:
    """Compiles the shim into ``path`` (atomically: several ranks may build at once); None, or why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as error:
        return f"cannot write its cache folder ({error.strerror}: {path.parent})"
    try:
        done = subprocess.run(_compile_command(torch, Path(temporary)), capture_output=True, text=True,
                              timeout=BUILD_SECONDS)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            return f"could not compile torch_team.cpp ({first.strip()[:160] or 'exit ' + str(done.returncode)})"
        os.replace(temporary, path)
        return None
    except FileNotFoundError:
        return f"no C++ compiler ({os.environ.get('CXX', 'c++')})"
    except (OSError, subprocess.SubprocessError) as error:
        return f"could not compile torch_team.cpp ({error})"
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def team() -> int | None:
    """The address of PyTorch's team function for ``scratchrnn_use_team``, or None (``status()``)."""
    global _team, _error, _library
    if _team is not None or _error is not None:
        return _team
    if os.environ.get("SCRATCHRNN_TORCH_TEAM", "").strip().lower() in _OFF:
        _error = "SCRATCHRNN_TORCH_TEAM is off"
        return None
    torch = sys.modules.get("torch")
    if torch is None:
        _error = "PyTorch is not loaded"
        return None
    try:
        path = _library_path(torch)
        if not path.exists():
            _error = _build(torch, path)
            if _error:
                return None
        _library = ctypes.CDLL(str(path))
        _team = ctypes.cast(_library.scratchrnn_torch_team, ctypes.c_void_p).value
    except (OSError, AttributeError) as error:
        _error = f"cannot be loaded ({error})"
    return _team


def status() -> str:
    """"PyTorch's threads" or "the kernels' own threads (<why>)", for ``--version``."""
    return "PyTorch's threads" if team() is not None else f"the kernels' own threads ({_error})"
