"""Backends: one folder per framework (``backend.py``, and the book's cells in its idiom in ``cells.py``),
imported only when asked for. What they share is written once beside them: the interface and its
declared capabilities (``base.py``), the dropout masks (``dropout.py``) and the stacking of the
book's deep model over each framework's cells (``stacking.py``).

``import scratchrnn`` imports no framework; ``create("torch", ...)`` imports torch then, and a
framework that is not installed gives a message naming the package that installs it (scratchrnn itself is
installed from a clone, so its extras are named as ``pip install '.[torch]'``).
"""
from __future__ import annotations

import importlib
import inspect
import importlib.util

from ..errors import BackendUnavailable, UserError
from .base import Backend

# name (also the name of its pip extra) -> (module, class, framework module it needs)
_REGISTRY = {
    "numpy": ("numpy.backend", "NumpyBackend", "numpy"),
    "torch": ("torch.backend", "TorchBackend", "torch"),
    "tensorflow": ("tensorflow.backend", "TensorFlowBackend", "tensorflow"),
    "mxnet": ("mxnet.backend", "MXNetBackend", "mxnet"),
    "paddle": ("paddle.backend", "PaddleBackend", "paddle"),
}
# the package on PyPI that brings each framework (the extras of pyproject.toml ask for these)
_PYPI_PACKAGES = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow-cpu", "mxnet": "mxnet",
                  "paddle": "paddlepaddle"}
# PyTorch's default wheel on Linux is its CUDA build, gigabytes a CPU never uses
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def install_hint(framework: str) -> str:
    """How to install the framework a backend needs (``framework``: a backend's name)."""
    if framework == "torch":
        return f"{TORCH_CPU_INSTALL} (the CPU build), or pip install '.[torch]' in a clone of scratchrnn"
    extra = f", or pip install '.[{framework}]' in a clone of scratchrnn" if framework != "numpy" else ""
    return f"pip install {_PYPI_PACKAGES[framework]}{extra}"

BACKENDS = tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass for ``name``, importing its framework now."""
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    module_name, class_name, framework = _REGISTRY[name]
    if importlib.util.find_spec(framework) is None:
        raise BackendUnavailable(
            f"the {name} backend needs the {framework} package, which is not installed: {install_hint(name)}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def create(name: str, params, config, device: str = "cpu", dtype: str = "float32", **options) -> Backend:
    """A backend holding ``params`` (NumPy arrays) for a model of ``config``.

    ``options`` go to the backend's constructor, e.g. ``impl="chapter"`` for the torch backend.
    A backend that has no such option refuses it by name rather than with a TypeError.
    """
    cls = backend_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"the {name} backend has no option {', '.join(unknown)}")
    return cls(params, config, device=device, dtype=dtype, **options)
