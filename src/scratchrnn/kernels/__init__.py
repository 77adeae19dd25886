"""The compiled kernels of scratchrnn, and the one question the rest of the package asks of them.

``supports(cell, dtype, device, op)`` says whether a compiled kernel takes an operation: ``op`` is
``"decode"`` (greedy generation with the RNN, ``decode.greedy_decode``), ``"forward"`` or ``"backward"``
(the step loops of a training step: the RNN's ``recurrence.forward`` / ``recurrence.backward``, the
GRU's and the LSTM's in ``gated``). It answers False where the library is not built, cannot be loaded,
is turned off (``SCRATCHRNN_NO_KERNEL=1``), or would be slower than the framework's own loops for that
cell, variant and size; callers then run their own code, the same mathematics.
``status()`` says which variant runs and why the kernels are off when they are (``scratchrnn
--version``). How the library is built, loaded and threaded: setup.py, ``_library.py``, ``pool.c``.
"""
from __future__ import annotations

import numpy as np

from . import decode, gated, recurrence, torch_team
from ._library import (built_variants, configured_threads, disabled, enabled, last_threads, load,
                       running_on, status, threads, variant_kernels)

CELLS = ("rnn", "gru", "lstm")
OPERATIONS = ("decode", "forward", "backward")

__all__ = ["supports", "status", "enabled", "disabled", "load", "threads", "configured_threads",
           "last_threads", "built_variants", "variant_kernels", "running_on", "decode", "recurrence",
           "torch_team", "gated"]


def supports(cell: str, dtype, device: str, op: str, *, batch: int | None = None,
             framework: str | None = None) -> bool:
    """Whether a compiled kernel takes ``op`` for this cell, dtype and device (and, where given, a
    batch of ``batch`` rows or streams, for the backend of ``framework``: "numpy", "torch", ...)."""
    if op not in OPERATIONS:
        raise ValueError(f"op must be one of {', '.join(OPERATIONS)}, not {op!r}")
    if cell not in CELLS or device != "cpu" or np.dtype(dtype) != np.float32 or not enabled():
        return False
    if op == "decode":
        most = decode.max_batch() if cell == "rnn" else 0
    elif cell == "rnn":
        most = recurrence.max_batch(framework)
    else:
        most = gated.max_batch(cell, op, framework)
    return most > 0 and (batch is None or 0 < batch <= most)
