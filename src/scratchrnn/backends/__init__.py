"""Backends: one folder per framework (``backend.py``, and the book's cells in its idiom in ``cells.py``),
imported only when asked for. What they share is written once beside them: the interface and its
declared capabilities (``base.py``), the dropout masks (``dropout.py``) and the stacking of the
book's deep model over each framework's cells (``stacking.py``).

``import scratchrnn`` imports no framework; ``create("torch", ...)`` imports torch then, and a
framework that is not installed gives a message naming the pip extra that installs it.
"""
from __future__ import annotations

import importlib
import inspect
import importlib.util

import numpy as np

from .. import faults
from ..errors import BackendUnavailable, UserError
from ..interrupts import importing
from .base import Backend

# name -> (module, class, framework module it needs, pip extra that installs that framework)
_REGISTRY = {
    "numpy": ("numpy.backend", "NumpyBackend", "numpy", None),
    "torch": ("torch.backend", "TorchBackend", "torch", "torch"),
    "tensorflow": ("tensorflow.backend", "TensorFlowBackend", "tensorflow", "tensorflow"),
    "mxnet": ("mxnet.backend", "MXNetBackend", "mxnet", "mxnet"),
    "paddle": ("paddle.backend", "PaddleBackend", "paddle", "paddle"),
}

BACKENDS = tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass for ``name``, importing its framework now."""
    if name not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    module_name, class_name, framework, extra = _REGISTRY[name]
    if importlib.util.find_spec(framework) is None:
        hint = f"pip install 'scratchrnn[{extra}]'" if extra else "pip install scratchrnn"
        raise BackendUnavailable(
            f"the {name} backend needs the {framework} package, which is not installed: {hint}")
    with importing():
        # Ctrl-C from here to the end of the framework's import ends the program with one line
        faults.point("backends.framework-import")
        module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def create(name: str, params, config, device: str = "cpu", dtype: str = "float32", **options) -> Backend:
    """A backend holding ``params`` (NumPy arrays) for a model of ``config``.

    ``options`` go to the backend's constructor, e.g. ``impl="chapter"`` for the torch backend.
    A backend that has no such option refuses it by name rather than with a TypeError.
    """
    check_finite_in(params, dtype)
    cls = backend_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"the {name} backend has no option {', '.join(unknown)}")
    return cls(params, config, device=device, dtype=dtype, **options)


def check_finite_in(params, dtype: str) -> None:
    """Refuse (UserError, naming the parameter) weights that are not finite once cast to ``dtype``: a
    float64 checkpoint's 1e39 is infinity in float32, which no backend can compute with."""
    if dtype not in ("float32", "float64"):
        return                           # the backend names the types it computes in
    for name, value in params.items():
        array = np.asarray(value)
        if array.dtype.kind != "f":
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            finite = np.isfinite(array.astype(dtype, copy=False)).all()
        if not finite:
            largest = np.finfo(dtype).max
            raise UserError(f"parameter {name} does not fit {dtype}: it holds values that are infinite or NaN "
                            f"there (beyond {largest:.4g} either way)")
