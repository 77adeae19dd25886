"""The reference backend: the book's models in NumPy, backpropagation through time written out by hand.

No autograd anywhere: every gradient below and in ``scratchrnn.cells`` is derived on paper and checked
against finite differences in the tests. The other backends are tested against this one.

The model: inputs (one-hot, or a learned embedding), ``num_layers`` layers of one cell (RNN, GRU or
LSTM, or a layer-normalised GRU or LSTM; ``scratchrnn.cells``), inverted dropout on each layer's output
in training, and the output layer. In training, the regularisers of docs/regularization.md act around
the cells with their gradients written here too: embedding and locked input dropout multiply the
embedded inputs, weight dropout the recurrent weights (their gradient by the same mask), locked
dropout each layer's output; tied weights make the output layer read W_emb, and AR/TAR add to the
objective (``backends.regularization``).

Choices that make it fast without changing the mathematics:
- ``one_hot(x) @ W_x`` is the row ``W_x[x]``, so inputs are a gather, not a multiplication;
- every gate's input terms, the output layer and the weight gradients are one big matrix product over
  all time steps instead of one small product per step; only the recurrence itself has to walk step by
  step (the cells' loops);
- the step-by-step loops write into preallocated buffers (``out=``);
- generation with the chapter's one-layer RNN (``decode``) multiplies the state by ``[W_hh | W_hq]``
  once per token, which gives the next recurrence term and the logits together.
In float32 on this machine, the cells' two step-by-step loops (the forward recurrence and
backpropagation through it) may run compiled instead: ``step_loops`` asks ``kernels.choose`` once per
shape of minibatch, which times both where it was never measured (``cells.py`` beside this file).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ... import kernels
from ...cells import CellWeights
from ...model import ModelConfig
from ..base import Backend, decode_weights_of
from ..decoding import decode_by_forward, decode_loop
from ..dropout import Masks
from ..records import BatchRecord, LayerRecord
from ..regularization import add_activation_grad, add_temporal_grad, tied_logits, tied_logits_grads
from .cells import step_loops, training_trial


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
    layer_norm = True

    def __init__(self, params, config: ModelConfig, device: str = "cpu", dtype: str = "float32",
                 dropout_seed: int = 0):
        super().__init__(params, config, device, dtype, dropout_seed)
        self.params = {name: np.array(params[name], dtype=dtype, copy=True) for name in config.param_shapes()}
        self.cell = config.cell_math
        self._layer_names = [config.layer_param_names(layer) for layer in range(config.num_layers)]
        self._loops: dict = {}        # (batch, steps, training) -> the cell whose loops run that shape

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

    # -- the step loops -------------------------------------------------------------------------
    def step_loops(self, batch: int, steps: int, training: bool):
        """The cell whose step loops run minibatches of ``batch`` rows and ``steps`` steps: asked of
        ``kernels.choose`` once per shape, for training (measured), forward passes alone, or one step."""
        if (batch, steps, training) not in self._loops:     # asked every minibatch: the dict first
            workload = kernels.Workload.of_minibatch("numpy", self.config, batch, steps, training, self.dtype,
                                                     self.device)
            choice = kernels.choose(workload, training_trial(workload))
            self._loops[batch, steps, training] = step_loops(self.config.cell, choice, self.config.layer_norm)
        return self._loops[batch, steps, training]

    # -- forward ----------------------------------------------------------------------------------
    def _prepare(self, params: dict, masks: Masks | None = None) -> list[CellWeights]:
        """Every layer's weights, side by side as its cell's step loop uses them (the recurrent ones
        times their weight-dropout masks, where ``masks`` has them)."""
        prepared = []
        for layer, names in enumerate(self._layer_names):
            plain = {name: params[full] for name, full in names.items()}
            if masks is not None and masks.recurrent is not None:
                plain.update({name: plain[name] * mask for name, mask in masks.recurrent[layer].items()})
            prepared.append(self.cell.prepare(plain))
        return prepared

    def _run(self, X: np.ndarray, state, train: bool, prepared: list | None = None
             ) -> tuple[np.ndarray, BatchRecord]:
        """Logits (steps * batch, vocab), time-major, and the record of the pass. ``train`` draws and
        applies the dropout masks."""
        p = self.params
        masks = self.draw_masks(X) if train else None
        prepared = self._prepare(p, masks) if prepared is None else prepared
        tokens = np.asarray(X).T                        # (steps, batch): time-major, as the chapter
        num_steps, batch = tokens.shape
        cell = self.step_loops(batch, num_steps, train)
        hidden = self.config.num_hiddens
        inputs_mask = None if masks is None else masks.inputs
        layers, final_state, embedded, x = [], [], None, None
        for layer, weights in enumerate(prepared):
            # the input terms x_t W_x + b of every gate and step at once
            if layer > 0:
                terms = (x.reshape(-1, hidden) @ weights.W_x).reshape(num_steps, batch, -1)
            elif self.config.embedding == "onehot":
                terms = weights.W_x[tokens]             # one_hot(x) @ W_x == W_x[x]
            else:
                embedded = p["W_emb"][tokens]
                if inputs_mask is not None:
                    embedded *= inputs_mask
                terms = embedded @ weights.W_x
            terms += weights.b
            outputs, final, cache = cell.forward(terms, self._layer_state(state, layer), weights,
                                                 self.config.activation)
            final_state.extend(final)
            raw_top = outputs
            mask = None if masks is None or masks.outputs is None else masks.outputs[layer]
            if mask is not None:
                outputs = outputs * mask
            recurrent_masks = None if masks is None or masks.recurrent is None else masks.recurrent[layer]
            layers.append(LayerRecord(weights, cache, x, mask, recurrent_masks))
            x = outputs
        rows = x.reshape(num_steps * batch, hidden)
        if self.config.tie_weights:
            logits = tied_logits(rows, p, self.config)
        else:
            logits = np.matmul(rows, p["W_hq"])
            logits += p["b_q"]
        return logits, BatchRecord(tokens, layers, x, tuple(final_state), cell, embedded, raw_top=raw_top,
                                   inputs_mask=inputs_mask)

    def forward(self, X, state):
        logits, record = self._run(X, state, train=False)
        return logits, NumpyState(record.final_state)

    # -- backward ---------------------------------------------------------------------------------
    def _backprop(self, record: BatchRecord, d_top: np.ndarray | None, d_final: tuple | None,
                  grads: dict, need_d_state0: bool, temporal: bool = False) -> tuple | None:
        """Walk one batch backwards through its layers and steps, adding its parameter gradients to
        ``grads``.

        ``d_top`` is the loss gradient reaching what the output layer read (None for an earlier batch,
        whose outputs were already trained on; may be overwritten); ``temporal``: TAR's gradient joins
        it at the last layer's output before dropout; ``d_final`` what reaches the state after the batch
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
            if temporal and layer == len(record.layers) - 1:
                add_temporal_grad(d_out, record.raw_top, self.config)
            d_layer_final = None if d_final is None else d_final[layer * width:(layer + 1) * width]
            d_terms, d_recurrent, d_start = record.loops.backward(rec.cache, rec.weights, d_out, d_layer_final,
                                                                  need_d_state0)
            d_terms = d_terms.reshape(num_steps * batch, -1)
            if layer > 0:
                d_W_x = rec.inputs.reshape(-1, hidden).T @ d_terms
                d_out = (d_terms @ rec.weights.W_x.T).reshape(num_steps, batch, hidden)
            elif self.config.embedding == "onehot":
                d_W_x = scatter_add_rows(flat_tokens, d_terms, vocab_size)
            else:
                embed_dim = self.config.embed_dim
                d_W_x = record.embedded.reshape(-1, embed_dim).T @ d_terms
                d_embedded = d_terms @ rec.weights.W_x.T
                if record.inputs_mask is not None:
                    d_embedded = (d_embedded.reshape(num_steps, batch, embed_dim) * record.inputs_mask
                                  ).reshape(-1, embed_dim)
                grads["W_emb"] += scatter_add_rows(flat_tokens, d_embedded, vocab_size)
            for plain, grad in self.cell.input_grads(d_W_x, d_terms.sum(axis=0)).items():
                grads[names[plain]] += grad
            for plain, grad in d_recurrent.items():
                if rec.recurrent_masks is not None and plain in rec.recurrent_masks:
                    grad = grad * rec.recurrent_masks[plain]     # the dropped weights' gradient, masked again
                grads[names[plain]] += grad
            d_state0[:0] = d_start or ()
        return tuple(d_state0) if need_d_state0 else None

    def _output_backward(self, record: BatchRecord, dlogits: np.ndarray, grads: dict) -> np.ndarray:
        """The output layer's gradients, added to ``grads``, and the gradient of what it read."""
        p, rows = self.params, record.top.reshape(-1, self.config.num_hiddens)
        grads["b_q"] = dlogits.sum(axis=0)
        if self.config.tie_weights:
            weight_grads, d_rows = tied_logits_grads(rows, dlogits, p, self.config)
            for name, grad in weight_grads.items():
                grads[name] += grad
        else:
            grads["W_hq"] = rows.T @ dlogits
            d_rows = dlogits @ p["W_hq"].T
        return d_rows.reshape(record.top.shape)

    def gradients(self, X, Y, state):
        """Mean cross-entropy of predicting Y from X, the gradients (NumPy arrays) of the objective --
        the cross-entropy, plus AR and TAR where the model has them -- and the state after X. With
        dropout, this draws the batch's masks. No update."""
        logits, record = self._run(X, state, train=True)
        targets = np.asarray(Y).T.reshape(-1)           # time-major, to line up with the logits
        loss, dlogits = softmax_cross_entropy(logits, targets)

        p = self.params
        grads = {name: np.zeros_like(value) for name, value in p.items()}
        d_top = self._output_backward(record, dlogits, grads)
        add_activation_grad(d_top, record.top, self.config)
        # a state that was never detached carries the batches before it: follow the gradient there too
        history = getattr(state, "history", ())
        d_state0 = self._backprop(record, d_top, None, grads, need_d_state0=bool(history),
                                  temporal=bool(self.config.temporal_reg))
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

        def step(tokens, state):
            logits, record = self._run(tokens, state, train=False, prepared=prepared)
            return logits, record.final_state
        return decode_by_forward(step, state, logits, num_tokens, pick, on_step)[0]
