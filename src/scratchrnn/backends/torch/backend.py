"""PyTorch backend: the scratch RNN, in two implementations of the same mathematics.

``impl="chapter"`` is the chapter's code: one-hot inputs, its ``rnn`` function (``cells.rnn``: a
Python loop over time steps, ``@`` for every product), the output layer (``backends.stacking``), and
autograd for the gradients. It is kept for readers of the chapter and as the yardstick the fast path
is tested against.

``impl="fast"`` (the default) computes the same numbers with less work, for every model -- the
chapter's, GRU and LSTM cells, stacked layers, dropout -- through ``fast_model.StackedLoss``:
- ``one_hot(x) @ W_xh`` is the row ``W_xh[x]``: a gather instead of a multiplication;
- every gate's input terms and the output layer are one matrix product over all time steps, not one
  per step;
- backpropagation through time is written out by hand inside that ``torch.autograd.Function``, over
  the cells' step loops in ``fast_cells`` (gates side by side, one product per step, in-place
  updates), and the weight gradients are single large products over all steps;
- in float32 on the CPU the step loops run compiled where ``kernels.choose`` measured them faster on
  this machine (``step_loops``), on at most ``torch.get_num_threads()`` threads;
- inference and generation run without autograd; on the CPU the generation loop runs on NumPy views
  of the same memory, where NumPy's per-call cost is a fraction of PyTorch's.
Because ``StackedLoss`` returns the gradient with respect to the state it started from, a state that
is not detached still lets the next batch backpropagate into this one (the chapter's exercise).
``impl="chapter"`` runs the book's own code for the other models (chapters 9.1-9.3, ``cells``) with
autograd. Both draw their dropout masks from a NumPy generator exactly as the NumPy backend draws
them, so the two implementations, and the two backends, train alike from the same seed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ... import kernels
from ...errors import UserError
from ..base import Backend, TensorOps, decode_weights_of, has_decode_weights, state_size
from ..decoding import decode_loop
from ..stacking import deep_model, training_model
from . import cells
from .fast_cells import activate_, training_trial
from .fast_model import StackedLoss, StackedModel

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
IMPLEMENTATIONS = ("fast", "chapter")


class TorchOps(TensorOps):
    """The optimizers' and clipping's tensor operations in PyTorch (see ``TensorOps``)."""

    def sqrt(self, x):
        return torch.sqrt(x)

    def zeros_like(self, x):
        return torch.zeros_like(x)

    def global_norm(self, tensors):
        # the norm of the tensors' norms: two operations for any number of tensors
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))

    def clip_factor(self, norm, theta):
        # a tensor, not a Python number: no device-to-host copy of the norm on every step
        return torch.clamp(theta / (norm + 1e-30), max=1.0)

    def to_numpy(self, x):
        return x.detach().cpu().numpy().copy()

    def from_numpy(self, array, like):
        return torch.as_tensor(np.asarray(array), dtype=like.dtype, device=like.device).clone()

    def matmul(self, a, b):
        return a @ b

    def matmul_transposed(self, a, b):
        return a @ b.T

    def stack(self, tensors):
        return torch.stack(tensors)

    def unstack(self, x):
        return torch.unbind(x)

    def concat(self, tensors):
        return torch.cat(tensors)


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")
    ops = TorchOps()
    layer_norm = True         # on the fast path (fast_layernorm); the book's code has no such cells

    def __init__(self, params, config, device="cpu", dtype="float32", impl: str = "fast",
                 dropout_seed: int = 0):
        # dropout masks come from a NumPy generator, drawn as the NumPy backend draws them: the same
        # seed gives both backends, and both implementations, the same masks
        super().__init__(params, config, device, dtype, dropout_seed)
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but this PyTorch sees no CUDA GPU")
        if impl not in IMPLEMENTATIONS:
            raise UserError(f"the torch backend's impl must be one of {', '.join(IMPLEMENTATIONS)}, "
                            f"not {impl!r}")
        if impl == "chapter" and config.layer_norm:
            raise UserError("the torch backend's impl 'chapter' builds the book's cells, not layer-normalised "
                            "ones (layer_norm): its fast path (impl 'fast') has them")
        self.impl = impl
        # the fast path: StackedLoss for every model; impl="chapter" runs the book's code with autograd
        self.hand_bptt = impl == "fast"
        self.stacked = StackedModel(config) if self.hand_bptt else None
        self._loops: dict = {}        # (batch, steps, training) -> the kernels.Choice of step loops
        self.torch_device = torch.device(device)
        self.torch_dtype = _DTYPES[dtype]
        self.params = {
            name: torch.tensor(np.asarray(params[name]), dtype=self.torch_dtype,
                               device=self.torch_device).requires_grad_(True)
            for name in config.param_shapes()
        }

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", impl={self.impl})"

    # -- state ------------------------------------------------------------------------------------
    def begin_state(self, batch_size):
        # flat: each layer's tensors in turn (H; or H, C for the LSTM), as the NumPy backend's
        return tuple(torch.zeros((batch_size, self.config.num_hiddens), dtype=self.torch_dtype,
                                 device=self.torch_device) for _ in range(state_size(self.config)))

    def detach(self, state):
        return tuple(s.detach() for s in state)

    def state_to_numpy(self, state):
        return tuple(s.detach().cpu().numpy() for s in state)

    def state_from_numpy(self, state):
        return tuple(torch.as_tensor(np.asarray(s), dtype=self.torch_dtype, device=self.torch_device)
                     for s in state)

    def _tokens(self, X):
        """(batch, steps) indices -> a (steps, batch) int64 tensor on the device: time-major."""
        time_major = np.ascontiguousarray(np.asarray(X, dtype=np.int64).T)
        return torch.as_tensor(time_major, device=self.torch_device)

    # -- the chapter's model (impl="chapter") -------------------------------------------------------
    def _inputs(self, X, weights):
        """(steps, batch, input_size) inputs: one-hot vectors as in the chapter, or learned embeddings."""
        tokens = self._tokens(X)
        if self.config.embedding == "onehot":
            return F.one_hot(tokens, self.config.vocab_size).to(self.torch_dtype)
        return weights["W_emb"][tokens]

    def _graph_weights(self):
        # The graph of a batch must keep the weights it was computed with: a state that is not
        # detached carries that graph into the next batch, after the parameters were updated in
        # place. ``clone`` snapshots the values and still passes gradients to the parameters.
        return {name: p.clone() for name, p in self.params.items()}

    def _train_masks(self, X):
        """One training batch's dropout masks as tensors on the device (None without dropout)."""
        masks = self.draw_masks(X)
        return None if masks is None else masks.map(lambda m: torch.as_tensor(m, device=self.torch_device))

    def _chapter_logits(self, X, state, weights):
        """The book's deep model (9.3; the chapter's is one RNN layer): logits (steps * batch, vocab),
        time-major, and the state after the last step."""
        return deep_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell], self._inputs(X, weights), state,
                          weights, self.config)

    def _chapter_loss(self, X, Y, state):
        weights = self._graph_weights()
        logits, new_state, penalty = training_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell],
                                                    self._inputs(X, weights), state, weights, self.config,
                                                    self._train_masks(X))
        loss = F.cross_entropy(logits, self._tokens(Y).reshape(-1))
        return loss, loss + penalty if self.config.has_penalty else loss, new_state

    # -- the fast path (impl="fast") --------------------------------------------------------------
    def step_loops(self, batch: int, steps: int, training: bool) -> kernels.Choice:
        """Which step loops the fast path runs for minibatches of ``batch`` rows and ``steps`` steps:
        asked of ``kernels.choose`` once per shape, for training (which measures) or forward passes alone."""
        if (batch, steps, training) not in self._loops:     # asked every minibatch: the dict first
            workload = kernels.Workload.of_minibatch("torch", self.config, batch, steps, training, self.dtype,
                                                     self.device)
            self._loops[batch, steps, training] = kernels.choose(workload, training_trial(workload))
        return self._loops[batch, steps, training]

    def _stacked_loss(self, X, Y, state):
        loops = self.step_loops(*np.shape(X), training=True)
        loss, *new_state = StackedLoss.apply(self.stacked, loops, self._tokens(X), self._tokens(Y).reshape(-1),
                                             self._train_masks(X), *state,
                                             *(self.params[name] for name in self.stacked.param_names))
        if not self.config.has_penalty:
            return loss, loss, tuple(new_state)
        penalty, *new_state = new_state
        return loss, loss + penalty, tuple(new_state)

    def _fast_forward(self, X, state):
        p = self.params
        logits, new_state, _ = self.stacked.run(self._tokens(X), state, p, None,
                                                self.step_loops(*np.shape(X), training=False))
        return logits, new_state

    # -- the Backend interface --------------------------------------------------------------------
    def forward(self, X, state):
        with torch.no_grad():
            if self.hand_bptt:
                logits, state = self._fast_forward(X, state)
            else:
                logits, state = self._chapter_logits(X, state, self.params)
        # contiguous: the fast path's logits are the transpose of a product (StackedModel.run)
        return logits.contiguous().cpu().numpy(), state

    def _loss(self, X, Y, state):
        """The cross-entropy, the objective whose gradients train (the cross-entropy, plus AR and TAR
        where the model has them), and the new state."""
        return self._stacked_loss(X, Y, state) if self.hand_bptt else self._chapter_loss(X, Y, state)

    def _backward(self, loss):
        for p in self.params.values():
            p.grad = None
        # retain_graph: a state that is not detached lets the next batch backpropagate into this one
        loss.backward(retain_graph=True)

    def gradients(self, X, Y, state):
        loss, objective, new_state = self._loss(X, Y, state)
        self._backward(objective)
        return loss.detach(), {name: p.grad for name, p in self.params.items()}, new_state

    def parameters(self):
        return {name: p.detach() for name, p in self.params.items()}

    def assign(self, name, value):
        # in place: the parameter tensor stays the leaf autograd fills gradients into
        with torch.no_grad():
            self.params[name].copy_(value)

    def add_to_parameters(self, deltas, alpha):
        # one multi-tensor operation for every parameter, in place, where p + alpha * delta per
        # parameter and a copy back would make two new tensors and three operations each
        names = list(self.params)
        with torch.no_grad():
            torch._foreach_add_([self.params[name] for name in names], [deltas[name] for name in names], alpha=alpha)

    def get_params(self):
        return {name: p.detach().cpu().numpy().copy() for name, p in self.params.items()}

    # -- generation -------------------------------------------------------------------------------
    @property
    def has_fast_decode(self) -> bool:
        """Its own loop (``decode``) is for the chapter's one-layer RNN; generation steps every other
        model through ``forward``."""
        return has_decode_weights(self.config)

    def decode(self, state, logits: np.ndarray, num_tokens: int, pick: Callable[[np.ndarray], np.ndarray],
               on_step: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
        """Generate ``num_tokens`` tokens per row of ``state`` (the contract of ``NumpyBackend.decode``),
        for the chapter's one-layer RNN (``has_fast_decode``).

        One product per token: ``h @ [W_hh | W_hq]`` gives the next recurrence term and the logits
        together. On the CPU the loop runs on NumPy views of these tensors (no copies): with one token
        per step, per-call overhead is most of the cost, and NumPy's was measured a fraction of PyTorch's;
        on a GPU it runs in PyTorch. (Greedy float32 generation on the CPU does not come here when the
        compiled decoder is built: see ``generation.generate_ids``.)
        """
        with torch.no_grad():
            input_rows, W_step = self._decode_weights()
            h = state[0].detach().clone()
            if self.torch_device.type == "cpu":
                return decode_loop(h.numpy(), np.asarray(logits), input_rows.numpy(), W_step.numpy(),
                                   self.params["b_q"].detach().numpy(), self.config.activation,
                                   num_tokens, pick, on_step)
            return self._decode_in_torch(h, logits, input_rows, W_step, num_tokens, pick, on_step)

    def _decode_weights(self):
        """``decode_weights_of`` in torch tensors: x W_xh + b_h for every token, and [W_hh | W_hq]."""
        input_rows, W_step, _ = decode_weights_of(self.params, self.config, _torch_concat)
        return input_rows, W_step

    def _decode_in_torch(self, h, logits, input_rows, W_step, num_tokens, pick, on_step):
        """``decode_loop`` on the device's tensors (a GPU's); ``h`` is overwritten."""
        return decode_loop(h, np.asarray(logits), input_rows, W_step, self.params["b_q"].detach(),
                           self.config.activation, num_tokens, pick, on_step, _TensorSteps(self.torch_device))


class _TensorSteps:
    """The operations ``decoding.decode_loop`` needs, on torch tensors of one device."""

    def __init__(self, device):
        self.device = device

    @staticmethod
    def matmul(a, b, out=None):
        return torch.mm(a, b, out=out)

    @staticmethod
    def add(a, b, out=None):
        return torch.add(a, b, out=out)

    def rows(self, table, indices: np.ndarray):
        return table.index_select(0, torch.from_numpy(indices).to(self.device))

    @staticmethod
    def activate(z, activation: str):
        return activate_(z, activation)

    @staticmethod
    def empty_like(a):
        return torch.empty_like(a)

    @staticmethod
    def to_numpy(a) -> np.ndarray:
        return a.cpu().numpy()


def _torch_concat(tensors, axis: int):
    """``np.concatenate``'s signature over ``torch.cat``, for ``decode_weights_of``."""
    return torch.cat(tensors, dim=axis)
