"""Generation's loops on a backend's own arrays, written once: one product per token for the chapter's
one-layer RNN (``decode_loop``), and a step through the forward pass per token for every other model
(``decode_by_forward``). The choice of each token (greedy or sampled) is a function of NumPy logits,
``pick``; the compiled decoder (``kernels.decode``) replaces ``decode_loop`` for greedy float32
decoding on the CPU where it was measured faster (``generation.py``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


class ArraySteps:
    """The operations ``decode_loop`` needs, on NumPy arrays (the torch backend has its own for a GPU)."""

    @staticmethod
    def matmul(a, b, out=None):
        return np.matmul(a, b, out=out)

    @staticmethod
    def add(a, b, out=None):
        return np.add(a, b, out=out)

    @staticmethod
    def rows(table, indices: np.ndarray):
        return table[indices]

    @staticmethod
    def activate(z, activation: str):
        return np.tanh(z, out=z) if activation == "tanh" else np.maximum(z, 0, out=z)

    @staticmethod
    def empty_like(a):
        return np.empty_like(a)

    @staticmethod
    def to_numpy(a) -> np.ndarray:
        return a


def decode_loop(h, logits: np.ndarray, input_rows, W_step, b_q, activation: str, num_tokens: int,
                pick: Callable[[np.ndarray], np.ndarray], on_step: Callable[[np.ndarray], None] | None,
                ops=ArraySteps) -> np.ndarray:
    """Generate ``num_tokens`` tokens for each row of the state ``h`` (batch, hidden), overwritten;
    returns them as (batch, num_tokens).

    ``logits`` (batch, vocab, NumPy) are those after the last token read; ``input_rows`` (vocab,
    hidden) holds x W_xh + b_h for every token; ``W_step`` is ``[W_hh | W_hq]``, so ``h @ W_step`` is
    the next recurrence term and the logits (less b_q) in one product: one matrix product per token,
    written into buffers made before the loop. ``ops``: the array operations (``ArraySteps``).
    """
    batch, hidden = h.shape
    tokens = np.empty((num_tokens, batch), dtype=np.int64)
    product = ops.matmul(h, W_step)
    recurrent, logits_less_bias = product[:, :hidden], product[:, hidden:]
    logits_buffer = ops.empty_like(logits_less_bias)
    for step in range(num_tokens):
        picked = pick(logits)
        tokens[step] = picked
        if on_step is not None:
            on_step(tokens[step])
        if step + 1 == num_tokens:
            break
        # h_t = act(x_t W_xh + b_h + h_{t-1} W_hh)
        ops.activate(ops.add(recurrent, ops.rows(input_rows, tokens[step]), out=h), activation)
        ops.matmul(h, W_step, out=product)
        logits = ops.to_numpy(ops.add(logits_less_bias, b_q, out=logits_buffer))
    return tokens.T


def decode_by_forward(step: Callable, state, logits: np.ndarray, num_tokens: int,
                      pick: Callable[[np.ndarray], np.ndarray],
                      on_step: Callable[[np.ndarray], None] | None) -> tuple[np.ndarray, object]:
    """Generation for any model: pick a token per row, feed it back through ``step(tokens, state)``
    (a (batch, 1) int64 array in, the (batch, vocab) logits and the new state out), one token at a time.

    Returns the tokens (batch, num_tokens) and the state before the last of them was fed back.
    """
    tokens = np.empty((num_tokens, len(logits)), dtype=np.int64)
    for index in range(num_tokens):
        tokens[index] = pick(logits)
        if on_step is not None:
            on_step(tokens[index])
        if index + 1 < num_tokens:
            logits, state = step(tokens[index][:, None], state)
    return tokens.T, state
