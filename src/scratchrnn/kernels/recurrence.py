"""The recurrences of a training step on the compiled library (``recurrence.c``; see
``scratchrnn.kernels``), for float32 on the CPU.

The NumPy and PyTorch backends hand them the two loops that must walk the minibatch step by step: the
forward recurrence, and backpropagation through it. Each thread takes a group of the minibatch's rows
and walks all steps of those rows alone, reading W_hh packed in panels from its own core's cache;
NumPy's loops instead make a BLAS call and an elementwise pass per step (the two side by side:
benchmarks/recurrence_kernel.py). The backends keep their own loops for float64, GPUs, and where the
library is not built; those are the code the tests hold this to.

Threads: the library's own (pool.c), as many as the framework served is told to use
(``_library.threads``). They share the cores with the BLAS library's threads, which spin for a while
after every product the backend computes; whether the compiled loops or the framework's own are faster
inside a training step is measured on the machine at hand (``choice.py``).
"""
from __future__ import annotations

import numpy as np

from .. import faults
from . import _library


def forward(hs: np.ndarray, W_hh: np.ndarray, activation: str, threads: int | None = None,
            kernels: _library.Kernels | None = None) -> None:
    """``hs[t + 1] = act(hs[t + 1] + hs[t] @ W_hh)`` for every step t, in place.

    ``hs`` (steps + 1, batch, hidden), float32 and C-contiguous, comes in with the state before the
    minibatch in ``hs[0]`` and each step's input term ``x_t W_xh + b_h`` in ``hs[t + 1]``, and goes
    out holding every state. ``threads``: at most this many (default ``_library.threads()``);
    ``kernels``: a variant's. Raises ValueError for arrays of other sizes or types (the module checks
    them), MemoryError if the loop ran out of memory.
    """
    steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    (kernels or _library.load()).recurrence_forward(
        steps, batch, hidden, threads or _library.threads(), activation == "relu",
        np.ascontiguousarray(W_hh, dtype=np.float32), hs)
    faults.point("kernels.step-loops-returned")


def backward(hs: np.ndarray, W_hh: np.ndarray, dhs: np.ndarray | None, dh_last: np.ndarray | None,
             activation: str, need_dh0: bool, threads: int | None = None,
             kernels: _library.Kernels | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Backpropagation through the recurrence of one minibatch: ``(dz, dh0)``.

    ``hs`` are the states of its forward pass (``forward``'s output) and ``W_hh`` the weights it ran
    with, as they are (the compiled loop packs their transpose itself).
    ``dhs`` (steps, batch, hidden) is the loss gradient reaching each state from its own output (None
    for an earlier minibatch, which is reached through its last state only); ``dh_last`` is the
    gradient reaching the last state from later minibatches (None: nothing). Returns dL/dz_t for every
    step, (steps, batch, hidden), and dL/dh_0 when ``need_dh0``, else None.
    """
    steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    if dh_last is not None:
        dh_last = np.ascontiguousarray(dh_last, dtype=np.float32)
    dz = np.empty((steps, batch, hidden), dtype=np.float32)
    dh0 = np.empty((batch, hidden), dtype=np.float32) if need_dh0 else None
    (kernels or _library.load()).recurrence_backward(
        steps, batch, hidden, threads or _library.threads(), activation == "relu",
        np.ascontiguousarray(W_hh, dtype=np.float32), hs, dhs, dh_last, dz, dh0)
    faults.point("kernels.step-loops-returned")
    return dz, dh0
