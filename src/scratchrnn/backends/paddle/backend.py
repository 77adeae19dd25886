"""PaddlePaddle backend: the chapter's code in Paddle's dygraph (eager) style, with autograd.

The pieces are the ones the Paddle edition of the chapter writes: parameters are plain tensors with
``stop_gradient=False``, inputs are ``F.one_hot`` vectors, a Python loop over time steps calls
``paddle.matmul`` and ``paddle.tanh`` (``cells.rnn``, with the output layer in ``backends.stacking``),
and ``loss.backward()`` fills ``.grad``. Clipping and the
optimizers are the package's own (``scratchrnn.optim``), written once for every backend over
``PaddleOps``; the new values are assigned under ``paddle.no_grad()``.

GRU and LSTM cells, stacked layers and dropout are the book's Paddle code of chapters 9.1-9.3
(``cells``, stacked as the chapter's model is). Dropout masks are drawn in NumPy
(``dropout.DropoutMasks``), as the NumPy backend draws them.
"""
from __future__ import annotations

import numpy as np

from ..base import Backend, TensorOps
from ..stacking import deep_model, training_model
from . import cells
from .framework import F, paddle


class PaddleOps(TensorOps):
    """The optimizers' and clipping's tensor operations in Paddle (see ``TensorOps``)."""

    def sqrt(self, x):
        return paddle.sqrt(x)

    def zeros_like(self, x):
        return paddle.zeros_like(x)

    def global_norm(self, tensors):
        # paddle.square, not ``t ** 2``: Paddle computes ``**`` with a general power function, a
        # hundred times slower, and that alone cost a tenth of each training step
        return paddle.sqrt(paddle.add_n([paddle.sum(paddle.square(t)) for t in tensors]))

    def clip_factor(self, norm, theta):
        return paddle.clip(theta / norm, max=1.0)   # theta / 0 = inf: a factor of 1

    def to_numpy(self, x):
        return np.array(x.numpy())

    def from_numpy(self, array, like):
        return paddle.to_tensor(np.asarray(array), dtype=like.dtype, place=like.place)

    def matmul(self, a, b):
        return paddle.matmul(a, b)

    def matmul_transposed(self, a, b):
        return paddle.matmul(a, b, transpose_y=True)

    def stack(self, tensors):
        return paddle.stack(tensors)

    def unstack(self, x):
        # one op for all the steps; iterating the tensor would run an indexing op (and its backward)
        # per step
        return paddle.unbind(x, axis=0)

    def concat(self, tensors):
        return paddle.concat(tensors, axis=0)


class PaddleBackend(Backend):
    name = "paddle"
    ops = PaddleOps()

    def __init__(self, params, config, device="cpu", dtype="float32", dropout_seed: int = 0):
        super().__init__(params, config, device, dtype, dropout_seed)
        self.place = paddle.CPUPlace()
        self.params = {}
        for name in config.param_shapes():
            tensor = paddle.to_tensor(np.asarray(params[name], dtype=dtype), place=self.place)
            tensor.stop_gradient = False          # a parameter: backward() fills its .grad
            self.params[name] = tensor

    # -- state ------------------------------------------------------------------------------------
    def detach(self, state):
        return tuple(s.detach() for s in state)

    def state_to_numpy(self, state):
        return tuple(np.array(s.detach().numpy()) for s in state)

    def state_from_numpy(self, state):
        return tuple(paddle.to_tensor(np.asarray(s, dtype=self.dtype), place=self.place) for s in state)

    # -- the chapter's model -------------------------------------------------------------------------
    def _tokens(self, X) -> "paddle.Tensor":
        """(steps, batch) token indices: time-major, as the chapter's ``X.T``."""
        return paddle.to_tensor(np.ascontiguousarray(np.asarray(X, dtype=np.int64).T), place=self.place)

    def _inputs(self, tokens, weights):
        """(steps, batch, input_size) inputs: one-hot vectors as in the chapter, or learned embeddings."""
        if self.config.embedding == "onehot":
            return F.one_hot(tokens, self.config.vocab_size).astype(self.dtype)
        return F.embedding(tokens, weights["W_emb"])

    def _graph_weights(self):
        # The graph of a batch must keep the weights it was computed with: a state that is not
        # detached carries that graph into the next batch, after the parameters were updated in
        # place. ``clone`` snapshots the values and still passes gradients back to the parameters.
        return {name: p.clone() for name, p in self.params.items()}

    def _model(self, X, state, weights, train: bool):
        """The book's deep model (9.3; the chapter's is one RNN layer): logits (steps * batch, vocab),
        time-major, and the state after the last step; in training (``stacking.training_model``) with
        the batch's dropout masks, and what AR and TAR add to the objective after them."""
        inputs = self._inputs(self._tokens(X), weights)
        layer = cells.CELL_FUNCTIONS[self.config.cell]
        if not train:
            return deep_model(self.ops, layer, inputs, state, weights, self.config)
        masks = self.draw_masks(X)
        if masks is not None:
            masks = masks.map(lambda mask: paddle.to_tensor(mask, place=self.place))
        return training_model(self.ops, layer, inputs, state, weights, self.config, masks)

    def forward(self, X, state):
        with paddle.no_grad():
            logits, state = self._model(X, state, self.params, train=False)
        return logits.numpy(), state

    def _loss(self, X, Y, state):
        """The cross-entropy, the objective whose gradients train (with AR and TAR), the new state."""
        weights = self._graph_weights()
        logits, new_state, penalty = self._model(X, state, weights, train=True)
        targets = paddle.to_tensor(np.asarray(Y, dtype=np.int64).T.reshape(-1), place=self.place)
        loss = F.cross_entropy(logits, targets)
        return loss, loss + penalty if self.config.has_penalty else loss, new_state

    def _backward(self, loss):
        for p in self.params.values():
            p.clear_gradient()
        # retain_graph: a state that is not detached lets the next batch backpropagate into this one
        loss.backward(retain_graph=True)

    def gradients(self, X, Y, state):
        loss, objective, new_state = self._loss(X, Y, state)
        self._backward(objective)
        # detached copies: the next backward() accumulates into .grad after clear_gradient
        grads = {name: p.grad.detach() for name, p in self.params.items()}
        return loss.detach(), grads, new_state

    def parameters(self):
        return {name: p.detach() for name, p in self.params.items()}

    def assign(self, name, value):
        # in place: ``self.params[name] = value`` would lose the tensor autograd fills .grad into
        with paddle.no_grad():
            paddle.assign(value, output=self.params[name])

    def add_to_parameters(self, deltas, alpha):
        # in place, as the chapter's sgd: no new parameter-sized tensor and copy back per parameter
        with paddle.no_grad():
            for name, param in self.params.items():
                param.add_(deltas[name] * alpha)

    def get_params(self):
        return {name: np.array(p.numpy()) for name, p in self.params.items()}
