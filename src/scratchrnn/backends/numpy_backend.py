"""The reference backend: the scratch RNN in NumPy, backpropagation through time written out by hand.

No autograd anywhere: every gradient below is derived on paper and checked against finite differences
in the tests. The other backends are tested against this one.

Two choices keep it fast without changing the mathematics:
- ``one_hot(x) @ W_xh`` is the row ``W_xh[x]``, so inputs are a gather, not a multiplication;
- the output layer and the weight gradients are one big matrix product over all time steps instead of
  one small product per step; only the recurrence itself has to walk step by step.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..model import ModelConfig, global_norm
from .base import Backend


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
    h0: np.ndarray            # (batch, hidden) state the batch started from
    hs: np.ndarray            # (steps, batch, hidden) every hidden state
    params: dict              # the parameter arrays used (updates replace arrays, never mutate them)
    embedded: np.ndarray | None = None  # (steps, batch, embed) for a learned embedding


def _scatter_add_rows(indices: np.ndarray, rows: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[i] = sum of rows whose index is i``: the gradient of a row gather."""
    out = np.zeros((num_rows, rows.shape[1]), dtype=rows.dtype)
    np.add.at(out, indices, rows)
    return out


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, params, config: ModelConfig, device: str = "cpu", dtype: str = "float32"):
        super().__init__(params, config, device, dtype)
        if device != "cpu":
            raise UserError("the numpy backend runs on the CPU only; use --backend torch for --device cuda")
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
    def _activate(self, z: np.ndarray, out: np.ndarray) -> np.ndarray:
        if self.config.activation == "tanh":
            return np.tanh(z, out=out)
        return np.maximum(z, 0, out=out)

    def _activation_grad(self, h: np.ndarray) -> np.ndarray:
        """d act(z) / dz, written in terms of the output h = act(z)."""
        if self.config.activation == "tanh":
            return 1 - h * h
        return (h > 0).astype(h.dtype)

    def _run(self, X: np.ndarray, state) -> tuple[np.ndarray, _BatchRecord]:
        p = self.params
        tokens = np.asarray(X).T                        # (steps, batch): time-major, as the chapter
        embedded = None
        if self.config.embedding == "onehot":
            inputs = p["W_xh"][tokens] + p["b_h"]       # one_hot(x) @ W_xh == W_xh[x]
        else:
            embedded = p["W_emb"][tokens]
            inputs = embedded @ p["W_xh"] + p["b_h"]
        num_steps, batch = tokens.shape
        hs = np.empty((num_steps, batch, self.config.num_hiddens), dtype=self.dtype)
        h = np.asarray(state[0], dtype=self.dtype)
        record = _BatchRecord(tokens, h, hs, p, embedded)
        W_hh = p["W_hh"]
        for t in range(num_steps):
            h = self._activate(inputs[t] + h @ W_hh, out=hs[t])
        logits = hs.reshape(num_steps * batch, -1) @ p["W_hq"] + p["b_q"]
        return logits, record

    def forward(self, X, state):
        logits, record = self._run(X, state)
        return logits, NumpyState((record.hs[-1].copy(),))

    # -- backward ---------------------------------------------------------------------------------
    def _backprop_recurrence(self, record: _BatchRecord, dhs: np.ndarray | None, dh_last: np.ndarray,
                             grads: dict) -> np.ndarray:
        """Walk one batch backwards in time, add its parameter gradients to ``grads``.

        ``dhs`` is the loss gradient reaching each hidden state from the outputs (None for an earlier
        batch, whose outputs were already trained on); ``dh_last`` is what reaches its final state
        from later batches. Returns the gradient with respect to the state the batch started from.
        """
        p = record.params
        hs = record.hs
        num_steps, batch, hidden = hs.shape
        dz = np.empty_like(hs)
        dh_next = dh_last
        W_hh_T = p["W_hh"].T
        act_grad = self._activation_grad(hs)
        for t in range(num_steps - 1, -1, -1):
            dh = dh_next if dhs is None else dhs[t] + dh_next
            np.multiply(dh, act_grad[t], out=dz[t])
            dh_next = dz[t] @ W_hh_T
        h_prev = np.concatenate([record.h0[None], hs[:-1]]).reshape(-1, hidden)
        dz2 = dz.reshape(-1, hidden)
        grads["W_hh"] += h_prev.T @ dz2
        grads["b_h"] += dz2.sum(axis=0)
        flat_tokens = record.tokens.reshape(-1)
        if self.config.embedding == "onehot":
            grads["W_xh"] += _scatter_add_rows(flat_tokens, dz2, self.config.vocab_size)
        else:
            grads["W_xh"] += record.embedded.reshape(-1, self.config.embed_dim).T @ dz2
            grads["W_emb"] += _scatter_add_rows(flat_tokens, dz2 @ p["W_xh"].T, self.config.vocab_size)
        return dh_next

    def loss_and_grads(self, X, Y, state):
        logits, record = self._run(X, state)
        targets = np.asarray(Y).T.reshape(-1)           # time-major, to line up with the logits
        n = targets.size
        # cross-entropy through a max-shifted softmax, so large logits cannot overflow exp
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = float(np.mean(np.log(sum_exp[:, 0]) - shifted[rows, targets]))
        dlogits = exp / sum_exp                         # softmax - one_hot(y), over n for the mean
        dlogits[rows, targets] -= 1
        dlogits /= n

        p = self.params
        grads = {name: np.zeros_like(value) for name, value in p.items()}
        hidden = self.config.num_hiddens
        grads["W_hq"] = record.hs.reshape(-1, hidden).T @ dlogits
        grads["b_q"] = dlogits.sum(axis=0)
        dhs = (dlogits @ p["W_hq"].T).reshape(record.hs.shape)
        dh0 = self._backprop_recurrence(record, dhs, np.zeros_like(record.h0), grads)
        # a state that was never detached carries the batches before it: follow the gradient there too
        for earlier in reversed(getattr(state, "history", ())):
            dh0 = self._backprop_recurrence(earlier, None, dh0, grads)

        new_state = NumpyState((record.hs[-1].copy(),), history=(*getattr(state, "history", ()), record))
        return loss, grads, new_state

    def train_step(self, X, Y, state, lr, clip_theta):
        loss, grads, new_state = self.loss_and_grads(X, Y, state)
        if clip_theta is not None:
            clip_gradients(grads, clip_theta)
        # new arrays rather than in-place updates: records of earlier batches keep the weights they used
        self.params = {name: value - lr * grads[name] for name, value in self.params.items()}
        return loss, new_state

    def get_params(self):
        return {name: value.copy() for name, value in self.params.items()}


def clip_gradients(grads: dict[str, np.ndarray], theta: float) -> float:
    """Scale all gradients together so their global L2 norm is at most ``theta``; return the old norm."""
    norm = global_norm(grads)
    if norm > theta:
        scale = theta / norm
        for g in grads.values():
            g *= scale
    return norm
