"""How strongly each earlier character drives a prediction, by backpropagation through time.

For a position t of a text, the objective is log p(y | x_0 .. x_t), y the character that follows (or
any other the caller names). Its gradient is taken by the cells' hand-written backward passes
(``Cell.backward``, the NumPy backend's BPTT), layer by layer, and two things are read from it:

- the *saliency* of each earlier input: the norm of the gradient with respect to the vector layer 0
  read at step s (the one-hot vector, or the embedding row) -- how much a small change of that input
  would move the prediction;
- the norm of the gradient with respect to each layer's hidden state after step s, dL/dh_s, as it
  flows back through time: the quantity whose growth or decay with t - s is the chapter's reason for
  clipping gradients (8.5, 8.7).

Many positions are handled at once: the text is run as a batch with one row per position, each row's
gradient starting at its own position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .reference import ReferenceModel, Trace

TARGETS_PER_PASS = 64       # positions backpropagated together: rows of one batched pass


@dataclass
class Gradients:
    """Gradient norms for P positions of a text of T tokens (entries after a position are 0)."""

    positions: np.ndarray       # (P,): each position t
    targets: np.ndarray         # (P,): the token whose log-probability after t was differentiated
    inputs: np.ndarray          # (P, T): ||d log p / d input_s||
    states: list                # per layer, (P, T): ||d log p / d h_s||, h_s the state after step s


def state_gradients(cell: str, trace_layer, d_terms: np.ndarray, d_outputs: np.ndarray) -> np.ndarray:
    """dL/dh_s for the state after every step s of one layer, from what its backward pass gave.

    ``d_terms`` is the gradient of the layer's input terms (``Cell.backward``), ``d_outputs`` what
    reached each step's output from outside the layer (the output layer, the layer above). A state h_s
    reaches the loss through its own output and through step s + 1; that step's share follows from
    step s + 1's gradients by the cell's equations (see the cells' backward loops).
    """
    weights, cache = trace_layer.weights, trace_layer.cache
    steps = d_terms.shape[0]
    grads = np.array(d_outputs)
    if cell in ("rnn", "lstm"):
        # the state enters step s + 1 only through h_s W_h (every gate's block side by side)
        grads[:-1] += d_terms[1:] @ weights.W_h.T
        return grads
    # GRU: h_s enters step s + 1 directly (Z h_s), through R * h_s, and through both gates
    hidden = grads.shape[-1]
    zr = cache[1]
    for s in range(steps - 2, -1, -1):
        later = s + 1
        z, r = zr[later, :, :hidden], zr[later, :, hidden:]
        grads[s] += grads[later] * z
        grads[s] += (d_terms[later, :, 2 * hidden:] @ weights.W_hh.T) * r
        grads[s] += d_terms[later, :, :2 * hidden] @ weights.W_h.T
    return grads


def _backprop(model: ReferenceModel, trace: Trace, d_top: np.ndarray):
    """The gradient reaching layer 0's inputs (steps, batch, input) and every layer's states, from the
    gradient ``d_top`` reaching the top layer's outputs (steps, batch, hidden)."""
    d_out = d_top
    state_grads = [None] * len(trace.layers)
    for layer in range(len(trace.layers) - 1, -1, -1):
        record = trace.layers[layer]
        if model.cell.layer_norm:
            # the state reaches step s + 1 through a normalisation: the cell's loop keeps dL/dh_s itself
            d_terms, state_grads[layer] = model.cell.state_gradients(record.cache, record.weights, np.array(d_out))
        else:
            # backward may write into what it is given: keep d_out for the state gradients
            d_terms, _, _ = model.cell.backward(record.cache, record.weights, np.array(d_out), None, False)
            state_grads[layer] = state_gradients(model.config.cell, record, d_terms, d_out)
        d_out = d_terms @ record.weights.W_x.T
    return d_out, state_grads


def prediction_gradients(model: ReferenceModel, ids: Sequence[int], positions: Sequence[int],
                         targets: Sequence[int] | None = None) -> Gradients:
    """Gradient norms of log p(target | ids[0..t]) for each position t in ``positions``.

    ``targets`` defaults to the token that follows t in ``ids``, or, after the last token, the one the
    model finds likeliest. Positions are backpropagated ``TARGETS_PER_PASS`` at a time, each pass over
    the steps up to its last position only.
    """
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    length = len(ids)
    if length < 1:
        raise ValueError("ids must hold at least one token")
    if positions.size and (positions.min() < 0 or positions.max() >= length):
        raise ValueError(f"positions must lie in [0, {length - 1}], not {positions.tolist()}")
    chosen = None if targets is None else np.asarray(targets, dtype=np.int64).reshape(-1)
    if chosen is not None and chosen.shape != positions.shape:
        raise ValueError(f"targets must be one per position ({positions.size}), not {chosen.size}")
    vocab = model.config.vocab_size
    if chosen is not None and chosen.size and (chosen.min() < 0 or chosen.max() >= vocab):
        raise ValueError(f"targets must be token ids in [0, {vocab - 1}]")
    layers = model.config.num_layers
    inputs = np.zeros((positions.size, length))
    states = [np.zeros((positions.size, length)) for _ in range(layers)]
    all_targets = np.zeros(positions.size, dtype=np.int64)
    for start in range(0, positions.size, TARGETS_PER_PASS):
        part = positions[start:start + TARGETS_PER_PASS]
        steps = int(part.max()) + 1
        batch = len(part)
        trace = model.run(np.repeat(ids[:steps, None], batch, axis=1))
        rows = np.arange(batch)
        logits = trace.logits[part, rows]                       # (batch, vocab) at each row's position
        if chosen is not None:
            target = chosen[start:start + batch]
        else:
            following = np.minimum(part + 1, length - 1)
            target = np.where(part + 1 < length, ids[following], np.argmax(logits, axis=1))
        # d log softmax(o)[y] / d o = one_hot(y) - softmax(o)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        d_logits = -shifted / shifted.sum(axis=1, keepdims=True)
        d_logits[rows, target] += 1
        d_top = np.zeros(trace.layers[-1].cache[0][1:].shape)
        d_top[part, rows] = d_logits @ model.output_matrix.T
        d_inputs, d_states = _backprop(model, trace, d_top)
        inputs[start:start + batch, :steps] = np.linalg.norm(d_inputs, axis=-1).T
        for layer in range(layers):
            states[layer][start:start + batch, :steps] = np.linalg.norm(d_states[layer], axis=-1).T
        all_targets[start:start + batch] = target
    return Gradients(positions, all_targets, inputs, states)
