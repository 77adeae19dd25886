"""Greedy generation on the compiled decoder (``_greedy_decode.c``; see ``scratchrnn.compiled``).

It runs greedy generation (the chapter's ``predict_ch8``) in float32 on the CPU, for any backend,
prompt included: ``generation.generate_ids`` hands it the weights (``Backend.decode_weights``) when it
applies. Where it does not (sampling, float64, a GPU, more than ``max_batch()`` streams, no compiler),
generation runs the backend's own loop, e.g. ``numpy_backend.decode_loop``; both compute the same sums
in another order.

Why: for one stream Python's per-step cost is most of NumPy's time, and that is what it removes; for
tens of streams its products, with the weights kept in each core's cache and no other work between
them, beat a BLAS call per step (64 streams: 120 us a step against 160 us for the BLAS product alone,
benchmarks/README.md). Past ``max_batch()`` streams the BLAS product in ``decode_loop`` is faster.
"""
from __future__ import annotations

import numpy as np

from . import compiled

# Streams up to which the decoder beats decode_loop's BLAS product, by the width (in floats) of the
# vectors it was compiled for: AVX-512 (-march=native on the machines measured), AVX2, and the SSE of a
# portable build, whose products are four times narrower than those of the BLAS library
# (benchmarks/README.md, "Generation: the compiled decoder").
MAX_BATCH_BY_VECTOR_FLOATS = {16: 512, 8: 32, 4: 1}
MIN_COLUMNS_PER_THREAD = 64


def max_batch() -> int:
    """The most streams the compiled decoder takes (0 where it is not built)."""
    return MAX_BATCH_BY_VECTOR_FLOATS.get(compiled.vector_floats(), 1) if compiled.load() else 0


def can_decode(batch: int, dtype, device: str, greedy: bool) -> bool:
    """Whether the compiled decoder can take this generation (and is built and not turned off)."""
    return (greedy and 0 < batch <= max_batch() and np.dtype(dtype) == np.float32 and device == "cpu"
            and compiled.enabled())


def greedy_decode(h: np.ndarray, logits: np.ndarray, input_rows: np.ndarray, W_step: np.ndarray,
                  b_q: np.ndarray, activation: str, num_tokens: int, forced: np.ndarray | None = None,
                  threads: int | None = None) -> np.ndarray:
    """Feed ``forced`` (batch, n) tokens if given, then pick and feed back ``num_tokens`` greedy tokens
    per row; returns the picked ones as (batch, num_tokens).

    ``h`` (batch, hidden) and ``logits`` (batch, vocab), float32 and C-contiguous, are the state and
    its logits before the first step (the logits choose the first token when nothing is forced); they
    are updated in place to those after the last step, so a second call continues the text.
    ``input_rows`` (vocab, hidden) holds x W_xh + b_h for every token, ``W_step`` is [W_hh | W_hq].
    ``threads`` defaults to ``compiled.default_threads()``, fewer for a small model (a thread's slice
    of the columns must be worth the cost of meeting the others at every step).
    """
    library = compiled.load()
    batch, hidden = h.shape
    vocab = logits.shape[1]
    if threads is None:
        threads = max(1, min(compiled.default_threads(), hidden // MIN_COLUMNS_PER_THREAD))
    forced = np.zeros((batch, 0), np.int64) if forced is None else np.ascontiguousarray(forced, np.int64)
    tokens = np.empty((batch, num_tokens), dtype=np.int64)
    as_float32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    status = library.scratchrnn_greedy_decode(
        batch, hidden, vocab, forced.shape[1], num_tokens, threads, int(activation == "relu"), forced,
        as_float32(input_rows), as_float32(W_step), as_float32(b_q), h, logits, tokens)
    if status != 0:
        raise MemoryError("the compiled decoder ran out of memory")
    return tokens
