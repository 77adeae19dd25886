"""MXNet backend: the MXNet version of the chapter's code, with MXNet's autograd taking the gradients.

It is written in MXNet's NumPy idiom, as the chapter's MXNet code is: ``mxnet.np`` arrays after
``npx.set_np()``, ``npx.one_hot`` inputs, parameters with ``attach_grad()``, the tanh loop with
``np.dot`` (``cells.rnn``, with the output layer in ``backends.stacking``), ``autograd.record()`` then
``backward()``. Clipping and the optimizers are the package's
own (``scratchrnn.optim``), written once for every backend over ``MXNetOps``.

MXNet runs operators asynchronously: Python only queues them. Nothing in a training step reads a
value back to Python (not even the clipping factor), so a step costs no wait on the engine; the
loss comes back as an MXNet scalar that ``float()`` turns into a number when the caller needs one.

MXNet 1.9.1 is the last MXNet release and needs NumPy 1.x, so this backend lives in its own
environment (``.venv-mxnet``); nothing here may use NumPy 2 features.

GRU and LSTM cells, stacked layers and dropout are the book's MXNet code of chapters 9.1-9.3
(``cells``, stacked as the chapter's model is). Dropout masks are drawn in plain NumPy
(``dropout.DropoutMasks``), as the NumPy backend draws them.
"""
from __future__ import annotations

import numpy as onp   # plain NumPy: what crosses the backend boundary

from ...optim import apply_update
from ..base import Backend, TensorOps
from ..stacking import deep_model, training_model
from . import cells
from .framework import autograd, gluon, mx, np, npx, use_np


class MXNetOps(TensorOps):
    """The optimizers' and clipping's tensor operations in MXNet (see ``TensorOps``).

    The chapter reads the gradient norm into Python and branches on ``norm > theta``; the factor
    min(1, theta / norm) gives the same numbers while the norm stays inside MXNet, so its engine need
    not be waited for on every step.
    """

    def sqrt(self, x):
        return np.sqrt(x)

    def zeros_like(self, x):
        return np.zeros_like(x)

    def global_norm(self, tensors):
        # t * t rather than t ** 2: the same numbers, and MXNet's power operator is slower
        return np.sqrt(sum((t * t).sum() for t in tensors))

    def clip_factor(self, norm, theta):
        return np.minimum(theta / norm, 1.0)   # a zero norm gives theta / 0 = inf, so a factor of 1

    def to_numpy(self, x):
        return x.asnumpy()

    def from_numpy(self, array, like):
        return np.array(onp.asarray(array), dtype=like.dtype, ctx=like.ctx)

    def matmul(self, a, b):
        return np.dot(a, b)

    def stack(self, tensors):
        return np.stack(tensors)

    def concat(self, tensors):
        return np.concatenate(tensors, axis=0)


@use_np
class MXNetBackend(Backend):
    name = "mxnet"
    ops = MXNetOps()

    def __init__(self, params, config, device="cpu", dtype="float32", dropout_seed: int = 0):
        # CPU only: MXNet 1.9.1 from pip is a CPU build
        super().__init__(params, config, device, dtype, dropout_seed)
        self.ctx = mx.cpu()
        self.params = {}
        for name in config.param_shapes():
            param = np.array(onp.asarray(params[name]), dtype=dtype, ctx=self.ctx)
            param.attach_grad()   # grad_req "write": every backward() overwrites the last gradient
            self.params[name] = param
        self.loss = gluon.loss.SoftmaxCrossEntropyLoss()

    # -- state ------------------------------------------------------------------------------------
    def detach(self, state):
        # detach() returns a new array. The chapter calls `s.detach()` and drops the result, which
        # works there only because backward() without retain_graph frees the graph anyway; here
        # graphs are retained (see _backward), so the new array is what cuts the history.
        return tuple(s.detach() for s in state)

    def state_to_numpy(self, state):
        return tuple(s.asnumpy() for s in state)

    def state_from_numpy(self, state):
        return tuple(np.array(onp.asarray(s), dtype=self.dtype, ctx=self.ctx) for s in state)

    # -- the chapter's model -------------------------------------------------------------------------
    def _tokens(self, X):
        """(batch, steps) token indices from the caller, as an MXNet integer array."""
        return np.array(onp.asarray(X, dtype=onp.int64), dtype="int64", ctx=self.ctx)

    def _inputs(self, X, weights):
        """(steps, batch, input_size) inputs: one-hot vectors as in the chapter, or learned embeddings."""
        X = self._tokens(X)
        if self.config.embedding == "onehot":
            return npx.one_hot(X.T, self.config.vocab_size, dtype=self.dtype)
        return np.take(weights["W_emb"], X.T, axis=0)

    def _graph_weights(self):
        # The graph of a batch must keep the weights it was computed with: a state that is not
        # detached carries that graph into the next batch, after the parameters were updated in
        # place, and MXNet's graph holds the very arrays it was given. A recorded copy snapshots
        # the values and still passes its gradient on to the parameter.
        return {name: np.copy(p) for name, p in self.params.items()}

    def _model(self, X, state, weights):
        """The book's deep model (9.3; the chapter's is one RNN layer): logits (steps * batch, vocab),
        time-major, and the state after the last step."""
        return deep_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell], self._inputs(X, weights), state,
                          weights, self.config)

    def forward(self, X, state):
        # pause(): inference records nothing, even if a caller is inside autograd.record()
        with autograd.pause():
            logits, state = self._model(X, state, self.params)
        return logits.asnumpy(), state

    def _loss(self, X, Y, state):
        """The cross-entropy, the objective whose gradients train (with AR and TAR, where the model
        has them: ``stacking.training_model``), and the new state."""
        y = self._tokens(onp.asarray(Y).T.reshape(-1))   # time-major, to line up with the logits
        masks = self.draw_masks(X)
        if masks is not None:
            masks = masks.map(lambda mask: np.array(mask, dtype=self.dtype, ctx=self.ctx))
        with autograd.record():
            weights = self._graph_weights()
            logits, new_state, penalty = training_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell],
                                                        self._inputs(X, weights), state, weights, self.config,
                                                        masks)
            loss = self.loss(logits, y).mean()
            objective = loss + penalty if self.config.has_penalty else loss
        return loss, objective, new_state

    def _backward(self, loss):
        # retain_graph: a state that is not detached lets the next batch backpropagate into this
        # one. Without it MXNet frees the graph, and a later backward() silently stops there.
        loss.backward(retain_graph=True)

    def gradients(self, X, Y, state):
        loss, objective, new_state = self._loss(X, Y, state)
        self._backward(objective)
        # copies: the next backward() overwrites the gradient buffers (grad_req "write")
        return loss.detach(), {name: p.grad.copy() for name, p in self.params.items()}, new_state

    def train_step(self, X, Y, state, lr, clip_theta, optimizer=None, reduce=None):
        loss, objective, new_state = self._loss(X, Y, state)
        self._backward(objective)
        # the gradient buffers themselves, not copies as gradients() returns: the update reads them
        # before the next backward() overwrites them (MXNet's engine orders the two), and at the
        # chapter's size each operation the engine runs costs more than its arithmetic, so the copies
        # showed in the step's time (benchmarks/versions.py, against the code before)
        grads = {name: p.grad for name, p in self.params.items()}
        apply_update(self, grads, lr, clip_theta, optimizer or self._chapter_sgd(), reduce)
        return loss.detach(), new_state

    def parameters(self):
        return dict(self.params)

    def assign(self, name, value):
        # in place: the array stays the one whose gradient buffer autograd fills
        self.params[name][:] = value

    def get_params(self):
        return {name: p.asnumpy() for name, p in self.params.items()}
