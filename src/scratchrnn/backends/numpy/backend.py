"""The reference backend: the book's models in NumPy, backpropagation through time written out by hand.

No autograd anywhere: every gradient below and in ``scratchrnn.cells`` is derived on paper and checked
against finite differences in the tests. The other backends are tested against this one.

The model: inputs (one-hot, or a learned embedding), ``num_layers`` layers of one cell (RNN, GRU or
LSTM; ``scratchrnn.cells``), inverted dropout on each layer's output in training, and the output layer.

Choices that make it fast without changing the mathematics:
- ``one_hot(x) @ W_x`` is the row ``W_x[x]``, so inputs are a gather, not a multiplication;
- every gate's input terms, the output layer and the weight gradients are one big matrix product over
  all time steps instead of one small product per step; only the recurrence itself has to walk step by
  step (the cells' loops);
- the step-by-step loops write into preallocated buffers (``out=``);
- generation with the chapter's one-layer RNN (``decode``) multiplies the state by ``[W_hh | W_hq]``
  once per token, which gives the next recurrence term and the logits together.
In float32, where the compiled library is built, the RNN cell's two step-by-step loops (the forward
recurrence and backpropagation through it) run compiled instead (``scratchrnn.kernels``); the
loops written here stay the reference for float64 and where it is not.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...cells import CellWeights, dropout_mask, get_cell
from ...model import ModelConfig
from ..base import Backend, decode_weights_of


class NumpyState(tuple):
    """The state, plus -- until detached -- the batches whose computation led to it.

    The state is flat: each layer's state tensors in turn (H for the RNN and the GRU, H then C for the
    LSTM), layer 0 first, each (batch, hidden). The record of earlier batches is what an autograd
    framework keeps in its graph; here it is a plain list, so that training without detaching (the
    chapter's exercise) can backpropagate into earlier batches.
    """

    history: tuple = ()

    def __new__(cls, tensors, history=()):
        obj = super().__new__(cls, tensors)
        obj.history = tuple(history)
        return obj


@dataclass
class _LayerRecord:
    """What the backward pass needs from one layer of one forward pass."""

    weights: CellWeights
    cache: object                 # the cell's own (see Cell.forward)
    inputs: np.ndarray | None     # (steps, batch, hidden): what reached the layer (layers above 0)
    mask: np.ndarray | None       # the dropout mask applied to its output (training with dropout)


@dataclass
class _BatchRecord:
    """What the backward pass needs from one forward pass over a (batch, steps) minibatch."""

    tokens: np.ndarray            # (steps, batch) input indices, time-major
    layers: list                  # a _LayerRecord per layer, layer 0 first
    top: np.ndarray               # (steps, batch, hidden): what the output layer read
    final_state: tuple            # the flat state after the batch
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
    has_fast_decode = True

    def __init__(self, params, config: ModelConfig, device: str = "cpu", dtype: str = "float32",
                 dropout_seed: int = 0):
        super().__init__(params, config, device, dtype, dropout_seed)
        self.params = {name: np.array(params[name], dtype=dtype, copy=True) for name in config.param_shapes()}
        self.cell = get_cell(config.cell)
        self._layer_names = [config.layer_param_names(layer) for layer in range(config.num_layers)]

    # -- state ------------------------------------------------------------------------------------
    def begin_state(self, batch_size):
        per_layer = self.cell.begin_state(batch_size, self.config.num_hiddens, self.dtype)
        return NumpyState(tuple(np.zeros_like(s) for _ in range(self.config.num_layers) for s in per_layer))

    def detach(self, state):
        return NumpyState(tuple(state))

    def state_to_numpy(self, state):
        return tuple(np.array(s) for s in state)

    def state_from_numpy(self, state):
        return NumpyState(tuple(np.asarray(s, dtype=self.dtype) for s in state))

    def _layer_state(self, state, layer: int) -> tuple:
        width = len(self.cell.state_names)
        return tuple(state[layer * width:(layer + 1) * width])

    # -- forward ----------------------------------------------------------------------------------
    def _prepare(self, params: dict) -> list[CellWeights]:
        """Every layer's weights, side by side as its cell's step loop uses them."""
        return [self.cell.prepare({plain: params[full] for plain, full in names.items()})
                for names in self._layer_names]

    def _run(self, X: np.ndarray, state, train: bool, prepared: list | None = None
             ) -> tuple[np.ndarray, _BatchRecord]:
        """Logits (steps * batch, vocab), time-major, and the record of the pass. ``train`` draws and
        applies the dropout masks."""
        p = self.params
        prepared = self._prepare(p) if prepared is None else prepared
        tokens = np.asarray(X).T                        # (steps, batch): time-major, as the chapter
        num_steps, batch = tokens.shape
        hidden = self.config.num_hiddens
        rate = self.config.dropout if train else 0.0
        layers, final_state, embedded, x = [], [], None, None
        for layer, weights in enumerate(prepared):
            # the input terms x_t W_x + b of every gate and step at once
            if layer > 0:
                terms = (x.reshape(-1, hidden) @ weights.W_x).reshape(num_steps, batch, -1)
            elif self.config.embedding == "onehot":
                terms = weights.W_x[tokens]             # one_hot(x) @ W_x == W_x[x]
            else:
                embedded = p["W_emb"][tokens]
                terms = embedded @ weights.W_x
            terms += weights.b
            outputs, final, cache = self.cell.forward(terms, self._layer_state(state, layer), weights,
                                                      self.config.activation)
            final_state.extend(final)
            mask = None
            if rate:
                mask = dropout_mask(self._dropout_rng, outputs.shape, rate, outputs.dtype)
                outputs = outputs * mask
            layers.append(_LayerRecord(weights, cache, x, mask))
            x = outputs
        logits = np.matmul(x.reshape(num_steps * batch, hidden), p["W_hq"])
        logits += p["b_q"]
        return logits, _BatchRecord(tokens, layers, x, tuple(final_state), embedded)

    def forward(self, X, state):
        logits, record = self._run(X, state, train=False)
        return logits, NumpyState(record.final_state)

    # -- backward ---------------------------------------------------------------------------------
    def _backprop(self, record: _BatchRecord, d_top: np.ndarray | None, d_final: tuple | None,
                  grads: dict, need_d_state0: bool) -> tuple | None:
        """Walk one batch backwards through its layers and steps, adding its parameter gradients to
        ``grads``.

        ``d_top`` is the loss gradient reaching what the output layer read (None for an earlier batch,
        whose outputs were already trained on); ``d_final`` what reaches the state after the batch
        from later batches (None: nothing). Returns the gradient with respect to the state the batch
        started from (flat, like the state) when ``need_d_state0``, else None.
        """
        num_steps, batch = record.tokens.shape
        flat_tokens = record.tokens.reshape(-1)
        hidden, vocab_size = self.config.num_hiddens, self.config.vocab_size
        width = len(self.cell.state_names)
        d_out, d_state0 = d_top, []
        for layer in range(len(record.layers) - 1, -1, -1):
            rec, names = record.layers[layer], self._layer_names[layer]
            if d_out is not None and rec.mask is not None:
                d_out = d_out * rec.mask
            d_layer_final = None if d_final is None else d_final[layer * width:(layer + 1) * width]
            d_terms, d_recurrent, d_start = self.cell.backward(rec.cache, rec.weights, d_out, d_layer_final,
                                                               need_d_state0)
            d_terms = d_terms.reshape(num_steps * batch, -1)
            if layer > 0:
                d_W_x = rec.inputs.reshape(-1, hidden).T @ d_terms
                d_out = (d_terms @ rec.weights.W_x.T).reshape(num_steps, batch, hidden)
            elif self.config.embedding == "onehot":
                d_W_x = scatter_add_rows(flat_tokens, d_terms, vocab_size)
            else:
                d_W_x = record.embedded.reshape(-1, self.config.embed_dim).T @ d_terms
                grads["W_emb"] += scatter_add_rows(flat_tokens, d_terms @ rec.weights.W_x.T, vocab_size)
            for plain, grad in self.cell.input_grads(d_W_x, d_terms.sum(axis=0)).items():
                grads[names[plain]] += grad
            for plain, grad in d_recurrent.items():
                grads[names[plain]] += grad
            d_state0[:0] = d_start or ()
        return tuple(d_state0) if need_d_state0 else None

    def gradients(self, X, Y, state):
        """Mean cross-entropy of predicting Y from X, its gradients (NumPy arrays), and the state after
        X. With dropout, this draws the batch's masks. No update."""
        logits, record = self._run(X, state, train=True)
        targets = np.asarray(Y).T.reshape(-1)           # time-major, to line up with the logits
        loss, dlogits = softmax_cross_entropy(logits, targets)

        p = self.params
        grads = {name: np.zeros_like(value) for name, value in p.items()}
        top_flat = record.top.reshape(-1, self.config.num_hiddens)
        grads["W_hq"] = top_flat.T @ dlogits
        grads["b_q"] = dlogits.sum(axis=0)
        d_top = (dlogits @ p["W_hq"].T).reshape(record.top.shape)
        # a state that was never detached carries the batches before it: follow the gradient there too
        history = getattr(state, "history", ())
        d_state0 = self._backprop(record, d_top, None, grads, need_d_state0=bool(history))
        for i, earlier in reversed(list(enumerate(history))):
            d_state0 = self._backprop(earlier, None, d_state0, grads, need_d_state0=i > 0)

        new_state = NumpyState(record.final_state, history=(*history, record))
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
        Same mathematics as calling ``forward`` one token at a time, without most of its per-call cost:
        for the chapter's one-layer RNN, one product per token (``decode_loop``); for other models the
        weights are laid side by side once, not once per token.
        """
        if self.config.cell == "rnn" and self.config.num_layers == 1:
            input_rows, W_step, b_q = self.decode_weights()
            return decode_loop(np.array(state[0], dtype=self.dtype), np.asarray(logits), input_rows, W_step,
                               b_q, self.config.activation, num_tokens, pick, on_step)
        prepared = self._prepare(self.params)
        tokens = np.empty((num_tokens, len(logits)), dtype=np.int64)
        for step in range(num_tokens):
            tokens[step] = pick(logits)
            if on_step is not None:
                on_step(tokens[step])
            if step + 1 < num_tokens:
                logits, record = self._run(tokens[step][:, None], state, train=False, prepared=prepared)
                state = record.final_state
        return tokens.T


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
