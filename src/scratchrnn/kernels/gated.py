"""The step loops of the gated cells on the compiled library (``gated.c``; see ``scratchrnn.kernels``),
for float32 on the CPU: the GRU's and the LSTM's forward recurrence and backpropagation through it.

They compute what ``cells.gru.GRUCell`` and ``cells.lstm.LSTMCell`` compute in their loops, on NumPy
arrays (a PyTorch caller passes ``tensor.numpy()`` views of CPU tensors), and keep the same cache:
the forward functions return the arrays the cells' forward passes keep for their backward passes, in
the same order, so a compiled forward pass can be followed by the cell's own backward pass and the
reverse. The backward functions return the gradient of the input terms and of the starting state;
the recurrent weights' gradients are one large product each over all steps, which the caller computes
from those (as the cells do).

Each thread takes a group of the minibatch's rows and walks all steps of those rows alone (or, for the
LSTM given ``unit_shares``, a share of the hidden units of every row, meeting the others at every step:
lstm_units.c, where each thread keeps only its units' weights in its core's cache), on the library's
own threads (pool.c) or the team a caller names (``_library.running_on``: the torch backend names
PyTorch's), at most ``threads`` of them (default ``_library.threads()``; a framework's backend passes
``_library.threads(framework)``). ``kernels`` names a variant's functions (tests and benchmarks); by
default the variant in use.
"""
from __future__ import annotations

import numpy as np

from .. import faults
from . import _library

GATES = {"gru": 3, "lstm": 4}

def _floats(array: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """``array`` as a C-contiguous float32 array (itself where it already is one), or None; refused
    unless it is ``shape``, since the C loops read and write exactly that much of it."""
    if array is None:
        return None
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"{name} must be {shape}, not {array.shape}")
    return array


def _shape(terms: np.ndarray, cell: str) -> tuple[int, int, int]:
    """(steps, batch, hidden) of the input terms of ``cell``'s gates."""
    if np.ndim(terms) != 3 or np.shape(terms)[2] % GATES[cell]:
        raise ValueError(f"terms must be (steps, batch, {GATES[cell]} * hidden), not {np.shape(terms)}")
    steps, batch, width = np.shape(terms)
    return steps, batch, width // GATES[cell]


def gru_forward(terms: np.ndarray, h0: np.ndarray, W_h: np.ndarray, W_hh: np.ndarray,
                threads: int | None = None, kernels: _library.Kernels | None = None) -> tuple:
    """The GRU's step loop over a minibatch: ``(hs, zr, candidates, reset_h)``, the cache of
    ``GRUCell.forward``.

    ``terms`` (steps, batch, 3 hidden) are the input terms of [z | r | h], ``h0`` (batch, hidden) the
    starting state, ``W_h`` = [W_hz | W_hr] (hidden, 2 hidden), ``W_hh`` (hidden, hidden). ``hs``
    (steps + 1, batch, hidden) holds h0 and every state after it; ``zr`` = [Z_t | R_t], ``candidates``
    H~_t, ``reset_h`` R_t * H_{t-1}.
    """
    steps, batch, hidden = _shape(terms, "gru")
    terms = _floats(terms, np.shape(terms), "terms")
    W_h, W_hh = _floats(W_h, (hidden, 2 * hidden), "W_h"), _floats(W_hh, (hidden, hidden), "W_hh")
    hs = np.empty((steps + 1, batch, hidden), dtype=np.float32)
    hs[0] = _floats(h0, (batch, hidden), "h0")
    zr = np.empty((steps, batch, 2 * hidden), dtype=np.float32)
    candidates = np.empty((steps, batch, hidden), dtype=np.float32)
    reset_h = np.empty((steps, batch, hidden), dtype=np.float32)
    (kernels or _library.load()).gru_forward(
        steps, batch, hidden, threads or _library.threads(), terms, W_h, W_hh, hs, zr, candidates, reset_h)
    faults.point("kernels.step-loops-returned")
    return hs, zr, candidates, reset_h


def gru_backward(cache: tuple, W_h: np.ndarray, W_hh: np.ndarray, d_outputs: np.ndarray | None,
                 dh_last: np.ndarray | None, need_dh0: bool, threads: int | None = None,
                 kernels: _library.Kernels | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Backpropagation through the GRU's step loop: ``(d_terms, dh0)``.

    ``cache`` is ``gru_forward``'s (or ``GRUCell.forward``'s) ``(hs, zr, candidates, reset_h)``, with
    the weights it was computed with (not transposed). ``d_outputs`` (steps, batch, hidden): the loss
    gradient reaching each H_t from its own output (None: nothing); ``dh_last`` what reaches the last
    state from later minibatches (None: nothing). Returns the gradient of the input terms (steps,
    batch, 3 hidden) and dL/dH_0 when ``need_dh0``, else None.
    """
    steps, batch, hidden = np.shape(cache[2])
    hs = _floats(cache[0], (steps + 1, batch, hidden), "hs")
    zr = _floats(cache[1], (steps, batch, 2 * hidden), "zr")
    candidates = _floats(cache[2], (steps, batch, hidden), "candidates")
    W_h, W_hh = _floats(W_h, (hidden, 2 * hidden), "W_h"), _floats(W_hh, (hidden, hidden), "W_hh")
    d_outputs = _floats(d_outputs, (steps, batch, hidden), "d_outputs")
    dh_last = _floats(dh_last, (batch, hidden), "dh_last")
    d_terms = np.empty((steps, batch, 3 * hidden), dtype=np.float32)
    dh0 = np.empty((batch, hidden), dtype=np.float32) if need_dh0 else None
    (kernels or _library.load()).gru_backward(
        steps, batch, hidden, threads or _library.threads(), W_h, W_hh, hs, zr, candidates, d_outputs, dh_last,
        d_terms, dh0)
    faults.point("kernels.step-loops-returned")
    return d_terms, dh0


def lstm_forward(terms: np.ndarray, h0: np.ndarray, c0: np.ndarray, W_h: np.ndarray,
                 threads: int | None = None, kernels: _library.Kernels | None = None,
                 unit_shares: int = 0) -> tuple:
    """The LSTM's step loop over a minibatch: ``(hs, cs, acts, tanh_cs)``, the cache of
    ``LSTMCell.forward``.

    ``terms`` (steps, batch, 4 hidden) are the input terms of [i | f | o | c], ``h0`` and ``c0``
    (batch, hidden) the starting state, ``W_h`` = [W_hi | W_hf | W_ho | W_hc] (hidden, 4 hidden).
    ``hs`` and ``cs`` (steps + 1, batch, hidden) hold the start and every state after it, ``acts`` =
    [I | F | O | C~] (steps, batch, 4 hidden), ``tanh_cs`` tanh(C_t). ``unit_shares``: the hidden units
    shared out in that many shares (0: the rows).
    """
    steps, batch, hidden = _shape(terms, "lstm")
    terms = _floats(terms, np.shape(terms), "terms")
    W_h = _floats(W_h, (hidden, 4 * hidden), "W_h")
    hs = np.empty((steps + 1, batch, hidden), dtype=np.float32)
    cs = np.empty((steps + 1, batch, hidden), dtype=np.float32)
    hs[0], cs[0] = _floats(h0, (batch, hidden), "h0"), _floats(c0, (batch, hidden), "c0")
    acts = np.empty((steps, batch, 4 * hidden), dtype=np.float32)
    tanh_cs = np.empty((steps, batch, hidden), dtype=np.float32)
    (kernels or _library.load()).lstm_forward(steps, batch, hidden, threads or _library.threads(), unit_shares,
                                              terms, W_h, hs, cs, acts, tanh_cs)
    faults.point("kernels.step-loops-returned")
    return hs, cs, acts, tanh_cs


def lstm_backward(cache: tuple, W_h: np.ndarray, d_outputs: np.ndarray | None, dh_last: np.ndarray | None,
                  dc_last: np.ndarray | None, need_d_state0: bool, threads: int | None = None,
                  kernels: _library.Kernels | None = None, unit_shares: int = 0
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backpropagation through the LSTM's step loop: ``(d_terms, dh0, dc0)``.

    ``cache`` is ``lstm_forward``'s (or ``LSTMCell.forward``'s) ``(hs, cs, acts, tanh_cs)``, with the
    ``W_h`` it was computed with (not transposed). ``d_outputs`` as for ``gru_backward``; ``dh_last``
    and ``dc_last`` what reaches the last H and C from later minibatches (each None: nothing). Returns
    the gradient of the input terms (steps, batch, 4 hidden), and dL/dH_0 and dL/dC_0 when
    ``need_d_state0``, else None and None. ``unit_shares`` as for ``lstm_forward``.
    """
    steps, batch, hidden = np.shape(cache[3])
    cs = _floats(cache[1], (steps + 1, batch, hidden), "cs")
    acts = _floats(cache[2], (steps, batch, 4 * hidden), "acts")
    tanh_cs = _floats(cache[3], (steps, batch, hidden), "tanh_cs")
    W_h = _floats(W_h, (hidden, 4 * hidden), "W_h")
    d_outputs = _floats(d_outputs, (steps, batch, hidden), "d_outputs")
    dh_last, dc_last = _floats(dh_last, (batch, hidden), "dh_last"), _floats(dc_last, (batch, hidden), "dc_last")
    d_terms = np.empty((steps, batch, 4 * hidden), dtype=np.float32)
    dh0, dc0 = ((np.empty((batch, hidden), dtype=np.float32) for _ in range(2)) if need_d_state0
                else (None, None))
    (kernels or _library.load()).lstm_backward(steps, batch, hidden, threads or _library.threads(), unit_shares,
                                               W_h, cs, acts, tanh_cs, d_outputs, dh_last, dc_last, d_terms, dh0,
                                               dc0)
    faults.point("kernels.step-loops-returned")
    return d_terms, dh0, dc0
