"""TensorFlow backend: the chapter's TensorFlow code, with ``tf.GradientTape`` computing the gradients.

The pieces are the ones a reader of the TensorFlow version of D2L 8.5 knows: ``tf.one_hot`` inputs,
``tf.Variable`` parameters, the state as a tuple, a Python loop of ``tanh`` steps (``cells.rnn``) and
the output layer (``backends.stacking``, written once for the autograd backends over ``TFOps``).
Clipping and the optimizers are the package's own (``scratchrnn.optim``), written once for every
backend over ``TFOps`` too.

Speed: from a detached state (the normal case) the forward pass, the tape and the clipping of a
training step are one ``tf.function``, traced once for the batch shape and reused for every step, so
Python runs once per step rather than once per operation; the update then assigns the variables. A
state that was not detached makes the step replay earlier batches (see ``TFState``); that step runs
eagerly around compiled pieces instead, so a longer history never means a new trace.

GRU and LSTM cells, stacked layers and dropout are the book's TensorFlow code of chapters 9.1-9.3
(``cells``, stacked as the chapter's model is), in the same graphs. Dropout masks are drawn in NumPy
(``dropout.DropoutMasks``), as the NumPy backend draws them, and enter the graph as inputs: a mask
drawn inside a traced function would be drawn once, at tracing.
"""
from __future__ import annotations

import numpy as np

from ...optim import clip_by_global_norm
from ..base import Backend, TensorOps
from ..stacking import deep_model, stacked_layers, training_model
from . import cells
from .framework import tf

_DTYPES = {"float32": tf.float32, "float64": tf.float64}


class TFState(tuple):
    """The hidden state tensors, plus -- until detached -- what is needed to recompute them.

    PyTorch keeps the graph of earlier batches alive inside a state; a GradientTape cannot reach
    into the tape of an earlier step. So a state that was not detached carries the recipe instead:
    ``start``, the state its run of batches began from, and ``earlier``, each batch since then as
    (tokens, weights it was computed with, dropout masks or None), oldest first. The next training
    step replays them inside its own tape, so its loss backpropagates into those batches (the
    chapter's exercise). With dropout, each earlier batch keeps its masks: it is replayed as it ran.
    """

    start: tuple = ()
    earlier: tuple = ()

    def __new__(cls, tensors, start=(), earlier=()):
        obj = super().__new__(cls, tensors)
        obj.start, obj.earlier = tuple(start), tuple(earlier)
        return obj


class TFOps(TensorOps):
    """The optimizers' and clipping's tensor operations in TensorFlow (see ``TensorOps``)."""

    def sqrt(self, x):
        return tf.math.sqrt(x)

    def zeros_like(self, x):
        return tf.zeros_like(x)

    def global_norm(self, tensors):
        return tf.math.sqrt(tf.add_n([tf.reduce_sum(t * t) for t in tensors]))

    def clip_factor(self, norm, theta):
        return tf.minimum(tf.cast(theta, norm.dtype) / norm, 1)   # theta / 0 = inf: a factor of 1

    def to_numpy(self, x):
        return np.array(tf.convert_to_tensor(x))

    def from_numpy(self, array, like):
        return tf.constant(np.asarray(array), dtype=like.dtype)

    def matmul(self, a, b):
        return tf.matmul(a, b)

    def matmul_transposed(self, a, b):
        return tf.matmul(a, b, transpose_b=True)

    def mean(self, x):
        return tf.reduce_mean(x)

    def stack(self, tensors):
        return tf.stack(tensors)

    def unstack(self, x):
        # a Python list: a loop over it is unrolled when traced (the number of steps is fixed)
        return tf.unstack(x)

    def concat(self, tensors):
        return tf.concat(tensors, axis=0)


class TensorFlowBackend(Backend):
    name = "tensorflow"
    ops = TFOps()

    def __init__(self, params, config, device="cpu", dtype="float32", dropout_seed: int = 0):
        super().__init__(params, config, device, dtype, dropout_seed)
        self.tf_dtype = _DTYPES[dtype]
        self.params = {name: tf.Variable(np.asarray(params[name], dtype=dtype), name=name)
                       for name in config.param_shapes()}
        # Each graph is traced once per input shape (the training loop feeds one shape throughout)
        # and then reused. A detached training step is a single graph; ``forward`` stays eager:
        # generation calls it with a new shape for every prompt length and batch size, and for
        # those short inputs eager execution was as fast as a graph, without the half-second trace.
        self._clipped_graph = tf.function(self._clipped_gradients)
        self._loss_graph = tf.function(self._batch_loss)
        self._replay_graph = tf.function(self._state_after)
        self._step_graphs = {}      # id(optimizer) -> its whole step as one graph (a stateless rule)

    # -- state ------------------------------------------------------------------------------------
    def detach(self, state):
        # eager tensors hold no graph: forgetting the recipe of earlier batches is all it takes
        return TFState(tuple(state))

    def state_to_numpy(self, state):
        return tuple(np.array(s) for s in state)

    def state_from_numpy(self, state):
        return TFState(tuple(tf.constant(np.asarray(s, dtype=self.dtype)) for s in state))

    # -- the chapter's model -------------------------------------------------------------------------
    def _inputs(self, tokens, weights):
        """(steps, batch, input_size) inputs: one-hot vectors as in the chapter, or learned embeddings."""
        if self.config.embedding == "onehot":
            return tf.one_hot(tokens, self.config.vocab_size, dtype=self.tf_dtype)
        return tf.gather(weights["W_emb"], tokens)

    def _model(self, tokens, state, weights, masks):
        """The book's deep model (9.3; the chapter's is one RNN layer): logits (steps * batch, vocab),
        time-major, and the state after the last step."""
        return deep_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell], self._inputs(tokens, weights),
                          state, weights, self.config, masks)

    def _forward(self, tokens, state, masks=None):
        return self._model(tokens, state, self.params, masks)

    def _batch_loss(self, tokens, targets, state, masks):
        """Mean cross-entropy of predicting the targets from the tokens, the objective whose gradients
        train (with AR and TAR where the model has them: ``stacking.training_model``), and the state
        after the tokens."""
        logits, new_state, penalty = training_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell],
                                                    self._inputs(tokens, self.params), state, self.params,
                                                    self.config, masks)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits))
        return loss, loss + penalty if self.config.has_penalty else loss, new_state

    def _state_after(self, tokens, state, weights, masks):
        """The state at the end of an earlier batch, recomputed with the weights (and dropout masks)
        that batch used. Its outputs are not needed: they were trained on when that batch ran."""
        _, state = stacked_layers(self.ops, cells.CELL_FUNCTIONS[self.config.cell],
                                  self._inputs(tokens, weights), state, weights, self.config, masks)
        return state

    def _loss_and_grads(self, tokens, targets, start, earlier, masks):
        """Loss and gradients of one batch, replaying the ``earlier`` batches (see TFState) first."""
        earlier_weights = [weights for _tokens, weights, _masks in earlier]
        with tf.GradientTape() as tape:
            tape.watch(earlier_weights)
            state = start
            for earlier_tokens, weights, earlier_masks in earlier:
                state = self._replay_graph(earlier_tokens, state, weights, earlier_masks)
            loss, objective, new_state = self._loss_graph(tokens, targets, state, masks)
        grads, earlier_grads = tape.gradient(
            objective, (self.params, earlier_weights), unconnected_gradients=tf.UnconnectedGradients.ZERO)
        # an earlier batch used older values of the same parameters: its gradients are theirs too
        grads = {name: tf.convert_to_tensor(g) for name, g in grads.items()}
        for batch_grads in earlier_grads:
            grads = {name: g + tf.convert_to_tensor(batch_grads[name]) for name, g in grads.items()}
        return loss, grads, new_state

    def _clipped_gradients(self, tokens, targets, start, earlier, masks, theta):
        """Loss, gradients clipped by their global norm (``optim.clip_by_global_norm``, traced into the
        graph with TensorFlow's operations), and the new state."""
        loss, grads, new_state = self._loss_and_grads(tokens, targets, start, earlier, masks)
        grads, _ = clip_by_global_norm(grads, theta, self.ops)
        return loss, grads, new_state

    # -- between NumPy and the graphs ----------------------------------------------------------------
    @staticmethod
    def _time_major(X):
        """(steps, batch) tokens from a (batch, steps) array: the chapter's ``tf.transpose(X)``.

        Transposed in NumPy: TensorFlow's oneDNN build prints an error line to the terminal the
        first time it transposes an integer tensor. One dtype for every call, so that int32 and
        int64 batches share a trace.
        """
        return tf.constant(np.ascontiguousarray(np.asarray(X, dtype=np.int64).T))

    @staticmethod
    def _targets(Y):
        """Y time-major and flattened, to line up with the (steps * batch) rows of the logits."""
        return tf.constant(np.asarray(Y, dtype=np.int64).T.reshape(-1))

    def _masks(self, X):
        """A training batch's dropout masks as constants (None without dropout); see DropoutMasks."""
        masks = self.draw_masks(X)
        return None if masks is None else masks.map(tf.constant)

    def _carry(self, state, tokens, masks):
        """What a step needs to replay ``state``'s history, and the history the new state will carry."""
        start, earlier = (state.start, state.earlier) if getattr(state, "earlier", ()) else (tuple(state), ())
        # read_value is a snapshot: the update after this step does not change it (copy on write)
        weights_now = {name: param.read_value() for name, param in self.params.items()}
        return start, earlier, (*earlier, (tokens, weights_now, masks))

    def forward(self, X, state):
        logits, new_state = self._forward(self._time_major(X), tuple(state))
        return logits.numpy(), TFState(new_state)

    def gradients(self, X, Y, state):
        tokens, targets, masks = self._time_major(X), self._targets(Y), self._masks(X)
        start, earlier, history = self._carry(state, tokens, masks)
        loss, grads, new_state = self._loss_and_grads(tokens, targets, start, earlier, masks)
        return loss, grads, TFState(new_state, start, history)

    def train_step(self, X, Y, state, lr, clip_theta, optimizer=None, reduce=None):
        """The base class's step, with the gradients and their clipping fused into one graph; the
        optimizer's update (the same code as for every backend) then runs eagerly on the variables."""
        if reduce is not None:
            # gradients averaged over ranks would have to leave the graph before clipping
            raise ValueError("the tensorflow backend trains in one process (no reduce)")
        tokens, targets, masks = self._time_major(X), self._targets(Y), self._masks(X)
        start, earlier, history = self._carry(state, tokens, masks)
        # A detached state: gradients and clipping run as one graph, traced once. A state carrying
        # earlier batches runs eagerly around the compiled pieces, because a single graph would be
        # traced anew for every length of history.
        optimizer = optimizer or self._chapter_sgd()
        # None or a tensor, not a Python float: a new float value would trace the graph again
        theta = None if clip_theta is None else tf.constant(clip_theta, dtype=self.tf_dtype)
        if optimizer.stateless and not earlier:
            # the update in the same graph too (it is the chapter's whole step): the rule's code,
            # traced; the step count, a Python number, is kept outside
            optimizer.step_count += 1
            loss, new_state = self._step_graph(optimizer)(tokens, targets, start, masks, theta,
                                                          tf.constant(lr, dtype=self.tf_dtype))
            return loss, TFState(new_state, start, history)
        step = self._clipped_gradients if earlier else self._clipped_graph
        loss, grads, new_state = step(tokens, targets, start, earlier, masks, theta)
        optimizer.update(self, grads, lr)
        return loss, TFState(new_state, start, history)

    def _step_graph(self, optimizer):
        """A whole training step for ``optimizer``'s stateless rule, as one graph traced once."""
        if id(optimizer) not in self._step_graphs:
            def step(tokens, targets, start, masks, theta, lr):
                loss, grads, new_state = self._clipped_gradients(tokens, targets, start, (), masks, theta)
                optimizer.move(self, grads, lr)
                return loss, new_state
            # one optimizer per run; an older one's graph is dropped with it
            self._step_graphs = {id(optimizer): tf.function(step)}
        return self._step_graphs[id(optimizer)]

    def parameters(self):
        return dict(self.params)

    def assign(self, name, value):
        self.params[name].assign(value)

    def get_params(self):
        return {name: np.array(param.numpy()) for name, param in self.params.items()}
