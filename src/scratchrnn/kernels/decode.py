"""Greedy generation on the compiled decoder (``greedy_decode.c``; see ``scratchrnn.kernels``).

It runs greedy generation (the chapter's ``predict_ch8``) in float32 on the CPU, for any backend,
prompt included: ``generation.generate_ids`` hands it the weights (``Backend.decode_weights``) where
``kernels.choose`` picks it for greedy decoding. Where it does not (sampling, float64, a GPU, a number
of streams for which it was not measured faster here, no compiler), generation runs the backend's own
loop, e.g. ``backends.decoding.decode_loop``; both compute the same sums in another order.

Why: for one stream Python's per-step cost is most of NumPy's time, and that is what it removes; for
tens of streams its products, with the weights kept in each core's cache and no other work between
them, beat a BLAS call per step (benchmarks/README.md); for many streams the BLAS product in
``decode_loop`` can be faster, which ``kernels.choose`` measures.
"""
from __future__ import annotations

import numpy as np

from . import _library

MIN_COLUMNS_PER_THREAD = 64


def greedy_decode(h: np.ndarray, logits: np.ndarray, input_rows: np.ndarray, W_step: np.ndarray,
                  b_q: np.ndarray, activation: str, num_tokens: int, forced: np.ndarray | None = None,
                  threads: int | None = None, kernels: _library.Kernels | None = None,
                  framework: str | None = None) -> np.ndarray:
    """Feed ``forced`` (batch, n) tokens if given, then pick and feed back ``num_tokens`` greedy tokens
    per row; returns the picked ones as (batch, num_tokens).

    ``h`` (batch, hidden) and ``logits`` (batch, vocab), float32 and C-contiguous, are the state and
    its logits before the first step (the logits choose the first token when nothing is forced); they
    are updated in place to those after the last step, so a second call continues the text.
    ``input_rows`` (vocab, hidden) holds x W_xh + b_h for every token, ``W_step`` is [W_hh | W_hq].
    ``threads`` defaults to ``_library.threads(framework)`` (what the framework of the backend served
    is told to use), fewer for a small model (a thread's slice of the columns must be worth the cost of
    meeting the others at every step). ``kernels``: a variant's (``_library.variant_kernels``), else
    the one in use.
    """
    kernels = kernels or _library.load()
    batch, hidden = h.shape
    vocab = logits.shape[1]
    if threads is None:
        threads = max(1, min(_library.threads(framework), hidden // MIN_COLUMNS_PER_THREAD))
    forced = np.zeros((batch, 0), np.int64) if forced is None else np.ascontiguousarray(forced, np.int64)
    tokens = np.empty((batch, num_tokens), dtype=np.int64)
    as_float32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    kernels.greedy_decode(batch, hidden, vocab, forced.shape[1], num_tokens, threads, activation == "relu", forced,
                          as_float32(input_rows), as_float32(W_step), as_float32(b_q), h, logits, tokens)
    return tokens
