"""The reference backend: the scratch RNN in NumPy, backpropagation through time written out by hand.

No autograd anywhere: every gradient below is derived on paper and checked against finite differences
in the tests. The other backends are tested against this one.

Choices that make it fast without changing the mathematics:
- ``one_hot(x) @ W_xh`` is the row ``W_xh[x]``, so inputs are a gather, not a multiplication;
- the output layer and the weight gradients are one big matrix product over all time steps instead of
  one small product per step; only the recurrence itself has to walk step by step;
- the step-by-step loops write into preallocated buffers (``out=``), so a step allocates nothing;
- generation (``decode``) multiplies the state by ``[W_hh | W_hq]`` once per token, which gives the
  next recurrence term and the logits together.
In float32, where the compiled library is built, the two step-by-step loops (the forward recurrence
and backpropagation through it) run compiled instead (``scratchrnn.fast_recurrence``); the loops
written here stay the reference for float64 and where it is not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import fast_recurrence
from ..model import ModelConfig
from .base import Backend, decode_weights_of


class NumpyState(tuple):
    """The hidden state, plus -- until detached -- the batches whose computation led to it.

    That record is what an autograd framework keeps in its graph; here it is a plain list, so that
    training without detaching (the chapter's exercise) can backpropagate into earlier batches.
    """

    history: tuple = ()

    def __new__(cls, tensors, history=()):
        obj = super().__new__(cls, tensors)
        obj.history = tuple(history)
        return obj


@dataclass
class _BatchRecord:
    """What the backward pass needs from one forward pass over a (batch, steps) minibatch."""

    tokens: np.ndarray        # (steps, batch) input indices, time-major
    hs: np.ndarray            # (steps + 1, batch, hidden): hs[0] is the state the batch started from
    params: dict              # the parameter arrays used (updates replace arrays, never mutate them)
    embedded: np.ndarray | None = None  # (steps, batch, embed) for a learned embedding


def scatter_add_rows(indices: np.ndarray, rows: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[i] = sum of rows whose index is i``: the gradient of a row gather.

    For a vocabulary no wider than the rows (the chapter's 28 characters against 512 hidden units)
    that is ``one_hot(indices).T @ rows``, a product cheaper than the W_hh gradient next to it and
    ten times faster than ``np.add.at``. For a large vocabulary the rows are sorted by index and summed
    in runs instead, which costs memory traffic only.
    """
    out = np.zeros((num_rows, rows.shape[1]), dtype=rows.dtype)
    if num_rows <= rows.shape[1]:
        one_hot_T = (np.arange(num_rows)[:, None] == indices[None, :]).astype(rows.dtype)
        return np.matmul(one_hot_T, rows, out=out)
    order = np.argsort(indices, kind="stable")
    sorted_indices = indices[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_indices[1:] != sorted_indices[:-1]])
    out[sorted_indices[run_starts]] = np.add.reduceat(rows[order], run_starts, axis=0)
    return out


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of rows of logits against target indices, and its gradient w.r.t. the logits.

    Works in place on ``logits`` (the caller's scratch buffer): shift by the row maximum so exp cannot
    overflow, exponentiate, normalise; the gradient of the mean is (softmax - one_hot(y)) / n.
    """
    n = targets.size
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)
    target_logits = logits[rows, targets]
    probs = np.exp(logits, out=logits)
    sum_exp = probs.sum(axis=1)
    loss = float(np.mean(np.log(sum_exp) - target_logits))
    probs /= sum_exp[:, None]
    probs[rows, targets] -= 1
    probs /= n
    return loss, probs


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, params, config: ModelConfig, device: str = "cpu", dtype: str = "float32"):
        super().__init__(params, config, device, dtype)
        self.params = {name: np.array(params[name], dtype=dtype, copy=True) for name in config.param_shapes()}

    # -- state ------------------------------------------------------------------------------------
    def begin_state(self, batch_size):
        return NumpyState((np.zeros((batch_size, self.config.num_hiddens), dtype=self.dtype),))

    def detach(self, state):
        return NumpyState(tuple(state))

    def state_to_numpy(self, state):
        return tuple(np.array(s) for s in state)

    def state_from_numpy(self, state):
        return NumpyState(tuple(np.asarray(s, dtype=self.dtype) for s in state))

    # -- forward ----------------------------------------------------------------------------------
    def _activate_(self, z: np.ndarray) -> np.ndarray:
        """act(z), in place."""
        if self.config.activation == "tanh":
            return np.tanh(z, out=z)
        return np.maximum(z, 0, out=z)

    def _activation_grad(self, h: np.ndarray) -> np.ndarray:
        """d act(z) / dz, written in terms of the output h = act(z) (a new array)."""
        if self.config.activation == "tanh":
            grad = np.multiply(h, h)
            return np.subtract(1, grad, out=grad)
        return (h > 0).astype(h.dtype)

    def _input_projections(self, tokens: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """x_t W_xh + b_h for every step at once, (steps, batch, hidden); and the embeddings if learned."""
        if self.config.embedding == "onehot":
            inputs = p["W_xh"][tokens]                  # one_hot(x) @ W_xh == W_xh[x]
            embedded = None
        else:
            embedded = p["W_emb"][tokens]
            inputs = embedded @ p["W_xh"]
        inputs += p["b_h"]
        return inputs, embedded

    def _run(self, X: np.ndarray, state) -> tuple[np.ndarray, _BatchRecord]:
        p = self.params
        tokens = np.asarray(X).T                        # (steps, batch): time-major, as the chapter
        inputs, embedded = self._input_projections(tokens, p)
        num_steps, batch = tokens.shape
        hs = np.empty((num_steps + 1, batch, self.config.num_hiddens), dtype=self.dtype)
        hs[0] = state[0]
        W_hh = p["W_hh"]
        if fast_recurrence.can_run(batch, self.dtype):
            hs[1:] = inputs
            fast_recurrence.forward(hs, W_hh, self.config.activation)
        else:
            for t in range(num_steps):
                h = np.matmul(hs[t], W_hh, out=hs[t + 1])   # h_t = act(x_t W_xh + b_h + h_{t-1} W_hh)
                h += inputs[t]
                self._activate_(h)
        logits = np.matmul(hs[1:].reshape(num_steps * batch, -1), p["W_hq"])
        logits += p["b_q"]
        return logits, _BatchRecord(tokens, hs, p, embedded)

    def forward(self, X, state):
        logits, record = self._run(X, state)
        return logits, NumpyState((record.hs[-1].copy(),))

    # -- backward ---------------------------------------------------------------------------------
    def _backprop_recurrence(self, record: _BatchRecord, dhs: np.ndarray | None, dh_last: np.ndarray | None,
                             grads: dict, need_dh0: bool) -> np.ndarray | None:
        """Walk one batch backwards in time, add its parameter gradients to ``grads``.

        ``dhs`` is the loss gradient reaching each hidden state from the outputs (None for an earlier
        batch, whose outputs were already trained on); it is used as scratch space. ``dh_last`` is what
        reaches the final state from later batches (None: nothing). Returns the gradient with respect
        to the state the batch started from when ``need_dh0``, else None.
        """
        p = record.params
        hs = record.hs
        hidden = hs.shape[2]
        W_hh_T = np.ascontiguousarray(p["W_hh"].T)
        if fast_recurrence.can_run(hs.shape[1], self.dtype):
            dz, dh0 = fast_recurrence.backward(hs, W_hh_T, dhs, dh_last, self.config.activation, need_dh0)
        else:
            dz, dh0 = self._backprop_steps(hs, W_hh_T, dhs, dh_last, need_dh0)
        h_prev = hs[:-1].reshape(-1, hidden)
        dz2 = dz.reshape(-1, hidden)
        grads["W_hh"] += h_prev.T @ dz2
        grads["b_h"] += dz2.sum(axis=0)
        flat_tokens = record.tokens.reshape(-1)
        if self.config.embedding == "onehot":
            grads["W_xh"] += scatter_add_rows(flat_tokens, dz2, self.config.vocab_size)
        else:
            grads["W_xh"] += record.embedded.reshape(-1, self.config.embed_dim).T @ dz2
            grads["W_emb"] += scatter_add_rows(flat_tokens, dz2 @ p["W_xh"].T, self.config.vocab_size)
        return dh0

    def _backprop_steps(self, hs: np.ndarray, W_hh_T: np.ndarray, dhs: np.ndarray | None,
                        dh_last: np.ndarray | None, need_dh0: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The step-by-step part of ``_backprop_recurrence``: dL/dz_t for every step, and dL/dh_0."""
        num_steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        dz = self._activation_grad(hs[1:])              # becomes dL/dz_t step by step below
        carried = np.empty((batch, hidden), dtype=self.dtype)   # dL/dh_t arriving from step t + 1
        for t in range(num_steps - 1, -1, -1):
            # dL/dh_t: from this step's output, plus from step t + 1 (or, at the last step, later batches)
            from_later = dh_last if t == num_steps - 1 else carried
            if dhs is None:
                dh = from_later
            else:
                dh = dhs[t]
                if from_later is not None:
                    dh += from_later
            dz[t] *= dh
            if t > 0 or need_dh0:
                np.matmul(dz[t], W_hh_T, out=carried)
        return dz, carried if need_dh0 else None

    def gradients(self, X, Y, state):
        logits, record = self._run(X, state)
        targets = np.asarray(Y).T.reshape(-1)           # time-major, to line up with the logits
        loss, dlogits = softmax_cross_entropy(logits, targets)

        p = self.params
        grads = {name: np.zeros_like(value) for name, value in p.items()}
        hs_flat = record.hs[1:].reshape(-1, self.config.num_hiddens)
        grads["W_hq"] = hs_flat.T @ dlogits
        grads["b_q"] = dlogits.sum(axis=0)
        dhs = (dlogits @ p["W_hq"].T).reshape(record.hs[1:].shape)
        # a state that was never detached carries the batches before it: follow the gradient there too
        history = getattr(state, "history", ())
        dh0 = self._backprop_recurrence(record, dhs, None, grads, need_dh0=bool(history))
        for i, earlier in reversed(list(enumerate(history))):
            dh0 = self._backprop_recurrence(earlier, None, dh0, grads, need_dh0=i > 0)

        new_state = NumpyState((record.hs[-1].copy(),), history=(*history, record))
        return loss, grads, new_state

    def parameters(self):
        return dict(self.params)

    def assign(self, name, value):
        # a new dict rather than an update in place: the records of earlier batches (a state that was
        # not detached) keep the dict of weights they were computed with
        self.params = {**self.params, name: np.asarray(value, dtype=self.dtype)}

    def get_params(self):
        return {name: value.copy() for name, value in self.params.items()}

    def decode_weights(self):
        # Backend's, without copying every parameter first (updates replace arrays, never mutate them)
        return decode_weights_of(self.params, self.config)

    # -- generation -------------------------------------------------------------------------------
    def decode(self, state, logits: np.ndarray, num_tokens: int, pick: Callable[[np.ndarray], np.ndarray],
               on_step: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Generate ``num_tokens`` tokens for each row of ``state``, one step at a time.

        ``logits`` (batch, vocab) are those after the last token read; ``pick`` turns logits into the
        next tokens (greedy or sampled) and ``on_step`` sees each new column. Returns (batch, num_tokens).
        Same mathematics as calling ``forward`` one token at a time, without its per-call overhead.
        """
        input_rows, W_step, b_q = self.decode_weights()
        return decode_loop(np.array(state[0], dtype=self.dtype), np.asarray(logits), input_rows, W_step,
                           b_q, self.config.activation, num_tokens, pick, on_step)


def decode_loop(h: np.ndarray, logits: np.ndarray, input_rows: np.ndarray, W_step: np.ndarray,
                b_q: np.ndarray, activation: str, num_tokens: int,
                pick: Callable[[np.ndarray], np.ndarray],
                on_step: Callable[[np.ndarray], None] | None) -> np.ndarray:
    """The generation loop on NumPy arrays (shared by backends whose weights NumPy can view).

    ``h`` (batch, hidden) is overwritten; ``input_rows`` (vocab, hidden) holds x W_xh + b_h for every
    token; ``W_step`` is ``[W_hh | W_hq]``, so ``h @ W_step`` is the next recurrence term and the
    logits (less b_q) in one product: one matrix product per token.
    """
    batch, hidden = h.shape
    tokens = np.empty((num_tokens, batch), dtype=np.int64)
    product = np.empty((batch, W_step.shape[1]), dtype=h.dtype)
    recurrent, logits_less_bias = product[:, :hidden], product[:, hidden:]
    logits_buffer = np.empty_like(logits_less_bias)
    activate = np.tanh if activation == "tanh" else (lambda z, out: np.maximum(z, 0, out=out))
    np.matmul(h, W_step, out=product)
    for step in range(num_tokens):
        picked = pick(logits)
        tokens[step] = picked
        if on_step is not None:
            on_step(tokens[step])
        if step + 1 == num_tokens:
            break
        np.add(recurrent, input_rows[picked], out=h)    # h_t = act(x_t W_xh + b_h + h_{t-1} W_hh)
        activate(h, out=h)
        np.matmul(h, W_step, out=product)
        logits = np.add(logits_less_bias, b_q, out=logits_buffer)
    return tokens.T
