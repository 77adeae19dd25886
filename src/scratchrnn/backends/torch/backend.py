"""PyTorch backend: the scratch RNN, in two implementations of the same mathematics.

``impl="chapter"`` is the chapter's code: one-hot inputs, its ``rnn`` function (``cells.rnn``: a
Python loop over time steps, ``@`` for every product), the output layer (``backends.stacking``), and
autograd for the gradients. It is kept for readers of the chapter and as the yardstick the fast path
is tested against.

``impl="fast"`` (the default) computes the same numbers with less work:
- ``one_hot(x) @ W_xh`` is the row ``W_xh[x]``: a gather instead of a multiplication;
- the output layer is one matrix product over all time steps, not one per step;
- backpropagation through time is written out by hand inside a ``torch.autograd.Function``
  (``_RNNLoss``): the step loop does one fused ``addmm`` and one multiply per step, and the weight
  gradients are single large products over all steps instead of one small product per step;
- inference and generation run without autograd; on the CPU, tanh and the generation loop run on
  NumPy views of the same memory, where NumPy is measurably faster (see the comments there);
- in float32 on the CPU, where the compiled library is built, the two step loops (forward, and
  backpropagation through time) run compiled on those views (``scratchrnn.kernels``), on at most
  ``torch.get_num_threads()`` threads.
Because ``_RNNLoss`` returns the gradient with respect to the state it started from, a state that is
not detached still lets the next batch backpropagate into this one (the chapter's exercise).

Every other model -- GRU and LSTM cells, stacked layers, dropout -- has a fast path of the same kind,
``fast_model.StackedLoss`` over the cells' step loops in ``fast_cells`` (gates side by side, one
product per step, BPTT by hand); ``impl="chapter"`` runs the book's own code for them (chapters
9.1-9.3, ``cells``) with autograd. Both draw their dropout masks from a NumPy generator exactly
as the NumPy backend draws them, so the two implementations, and the two backends, train alike from
the same seed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import UserError
from ..base import Backend, TensorOps, decode_weights_of, has_decode_weights, is_chapter_model, state_size
from ..numpy.backend import decode_loop
from ..stacking import deep_model
from . import cells
from .fast_cells import activate_, rnn_backward_steps, rnn_forward_steps
from .fast_model import StackedLoss, StackedModel, cross_entropy_grad, mean_cross_entropy, scatter_add_rows

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

    def stack(self, tensors):
        return torch.stack(tensors)

    def unstack(self, x):
        return torch.unbind(x)

    def concat(self, tensors):
        return torch.cat(tensors)


# -- the fast path's pieces: plain tensor functions, no autograd inside -------------------------------
def _run_recurrence(tokens, h0, W_xh, W_hh, b_h, W_emb, activation: str):
    """Every hidden state, (steps + 1, batch, hidden) with hs[0] = h0; and the embeddings if learned.

    h_t = act(x_t W_xh + b_h + h_{t-1} W_hh). hs[1:] first receives all input projections with their
    bias at once (a row gather, or one product for a learned embedding); each step then adds
    h_{t-1} W_hh in place (``addmm_``) and activates in place, so the loop allocates nothing.
    """
    num_steps, batch = tokens.shape
    hidden = W_hh.shape[0]
    hs = h0.new_empty((num_steps + 1, batch, hidden))
    hs[0] = h0
    projections = hs[1:].view(num_steps * batch, hidden)
    flat_tokens = tokens.reshape(-1)
    embedded = None
    if W_emb is None:
        # one_hot(x) @ W_xh + b_h == (W_xh + b_h)[x]: the bias added to vocab rows, not to every token
        torch.index_select(W_xh + b_h, 0, flat_tokens, out=projections)
    else:
        embedded = torch.index_select(W_emb, 0, flat_tokens)
        torch.addmm(b_h, embedded, W_xh, out=projections)
    rnn_forward_steps(hs, W_hh, activation)
    return hs, embedded


class _RNNLoss(torch.autograd.Function):
    """Mean cross-entropy of the scratch RNN over one minibatch, and the state after it.

    forward(h0, W_xh, W_hh, b_h, W_hq, b_q, W_emb, tokens, targets, activation) -> (loss, h_last)
    with ``tokens`` (steps, batch) time-major, ``targets`` flattened time-major, ``W_emb`` None for
    one-hot inputs. backward is BPTT by hand, the same derivation as the NumPy reference.
    """

    @staticmethod
    def forward(ctx, h0, W_xh, W_hh, b_h, W_hq, b_q, W_emb, tokens, targets, activation):
        # Snapshot the weights the backward pass needs: the update changes parameters in place, and a
        # later batch whose state was not detached still backpropagates through this batch with the
        # weights as they were here.
        W_hh_used, W_hq = W_hh.clone(), W_hq.clone()
        W_xh_used = W_xh.clone() if W_emb is not None else None
        hs, embedded = _run_recurrence(tokens, h0, W_xh, W_hh, b_h, W_emb, activation)
        num_steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        logits = torch.addmm(b_q, hs[1:].view(num_steps * batch, hidden), W_hq)
        loss, log_probs = mean_cross_entropy(logits, targets)
        ctx.save_for_backward(hs, log_probs, W_hh_used, W_hq, W_xh_used, embedded, tokens, targets)
        ctx.activation = activation
        # unused outputs give None gradients (rather than zeros), so backward can skip their terms
        ctx.set_materialize_grads(False)
        return loss, hs[-1].clone()

    @staticmethod
    def backward(ctx, d_loss, d_h_last):
        hs, log_probs, W_hh, W_hq, W_xh, embedded, tokens, targets = ctx.saved_tensors
        num_steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        hs_flat = hs[1:].reshape(-1, hidden)
        d_W_hq = d_b_q = dhs = None
        if d_loss is not None:
            dlogits = cross_entropy_grad(log_probs, targets, d_loss)
            d_W_hq = (dlogits.T @ hs_flat).T     # as the transpose of a product: ~2.5x faster on MKL
            d_b_q = dlogits.sum(dim=0)
            dhs = (dlogits @ W_hq.T).view(num_steps, batch, hidden)

        dz, d_h0 = rnn_backward_steps(hs, W_hh, dhs, d_h_last, ctx.activation, ctx.needs_input_grad[0])
        dz_flat = dz.view(-1, hidden)
        d_W_hh = hs[:-1].view(-1, hidden).T @ dz_flat
        d_b_h = dz_flat.sum(dim=0)
        flat_tokens = tokens.reshape(-1)
        vocab_size = log_probs.shape[1]
        d_W_emb = None
        if embedded is None:
            d_W_xh = scatter_add_rows(flat_tokens, dz_flat, vocab_size)
        else:
            d_W_xh = embedded.reshape(-1, embedded.shape[-1]).T @ dz_flat
            d_W_emb = scatter_add_rows(flat_tokens, dz_flat @ W_xh.T, vocab_size)
        return d_h0, d_W_xh, d_W_hh, d_b_h, d_W_hq, d_b_q, d_W_emb, None, None, None


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")
    ops = TorchOps()

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
        self.impl = impl
        # the fast path: _RNNLoss for the chapter's model, StackedLoss for every other (gated cells,
        # more layers, dropout); impl="chapter" runs the book's code with autograd
        self.hand_bptt = impl == "fast"
        self.stacked = StackedModel(config) if self.hand_bptt and not is_chapter_model(config) else None
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
        return None if masks is None else [torch.as_tensor(m, device=self.torch_device) for m in masks]

    def _chapter_logits(self, X, state, weights, train: bool):
        """The book's deep model (9.3; the chapter's is one RNN layer), with dropout masks in training:
        logits (steps * batch, vocab), time-major, and the state after the last step."""
        masks = self._train_masks(X) if train else None
        return deep_model(self.ops, cells.CELL_FUNCTIONS[self.config.cell], self._inputs(X, weights), state,
                          weights, self.config, masks)

    def _chapter_loss(self, X, Y, state):
        weights = self._graph_weights()
        logits, new_state = self._chapter_logits(X, state, weights, train=True)
        return F.cross_entropy(logits, self._tokens(Y).reshape(-1)), new_state

    # -- the fast path (impl="fast") --------------------------------------------------------------
    def _stacked_loss(self, X, Y, state):
        loss, *new_state = StackedLoss.apply(self.stacked, self._tokens(X), self._tokens(Y).reshape(-1),
                                             self._train_masks(X), *state,
                                             *(self.params[name] for name in self.stacked.param_names))
        return loss, tuple(new_state)

    def _fast_loss(self, X, Y, state):
        p = self.params
        loss, h_last = _RNNLoss.apply(state[0], p["W_xh"], p["W_hh"], p["b_h"], p["W_hq"], p["b_q"],
                                      p.get("W_emb"), self._tokens(X), self._tokens(Y).reshape(-1),
                                      self.config.activation)
        return loss, (h_last,)

    def _fast_forward(self, X, state):
        p = self.params
        if self.stacked is not None:
            logits, new_state, _ = self.stacked.run(self._tokens(X), state, p)
            return logits, new_state
        hs, _ = _run_recurrence(self._tokens(X), state[0], p["W_xh"], p["W_hh"], p["b_h"], p.get("W_emb"),
                                self.config.activation)
        logits = torch.addmm(p["b_q"], hs[1:].reshape(-1, self.config.num_hiddens), p["W_hq"])
        return logits, (hs[-1].clone(),)

    # -- the Backend interface --------------------------------------------------------------------
    def forward(self, X, state):
        with torch.no_grad():
            if self.hand_bptt:
                logits, state = self._fast_forward(X, state)
            else:
                logits, state = self._chapter_logits(X, state, self.params, train=False)
        return logits.cpu().numpy(), state

    def _loss(self, X, Y, state):
        if not self.hand_bptt:
            return self._chapter_loss(X, Y, state)
        return (self._fast_loss if self.stacked is None else self._stacked_loss)(X, Y, state)

    def _backward(self, loss):
        for p in self.params.values():
            p.grad = None
        # retain_graph: a state that is not detached lets the next batch backpropagate into this one
        loss.backward(retain_graph=True)

    def gradients(self, X, Y, state):
        loss, new_state = self._loss(X, Y, state)
        self._backward(loss)
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
        per step, per-call overhead is most of the cost, and NumPy's is a fraction of PyTorch's (about
        3.5x the speed for one stream, measured); on a GPU it runs in PyTorch. (Greedy float32
        generation on the CPU does not come here when the compiled decoder is built: see
        ``generation.generate_ids``.)
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
        """``decode_loop`` written in PyTorch, for tensors on a GPU; ``h`` is overwritten."""
        hidden = self.config.num_hiddens
        tokens = np.empty((num_tokens, h.shape[0]), dtype=np.int64)
        product = torch.mm(h, W_step)
        logits = np.asarray(logits)
        for step in range(num_tokens):
            picked = pick(logits)
            tokens[step] = picked
            if on_step is not None:
                on_step(tokens[step])
            if step + 1 == num_tokens:
                break
            rows = input_rows.index_select(0, torch.from_numpy(tokens[step]).to(self.torch_device))
            activate_(torch.add(product[:, :hidden], rows, out=h), self.config.activation)
            torch.mm(h, W_step, out=product)
            logits = (product[:, hidden:] + self.params["b_q"]).cpu().numpy()
        return tokens.T


def _torch_concat(tensors, axis: int):
    """``np.concatenate``'s signature over ``torch.cat``, for ``decode_weights_of``."""
    return torch.cat(tensors, dim=axis)
