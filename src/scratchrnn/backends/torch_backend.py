"""PyTorch backend: the chapter's code, with autograd computing the gradients.

``_rnn`` below is the chapter's ``rnn`` function: one-hot inputs, a Python loop over time steps,
``torch.mm`` for every product. It is the plain path, kept for readers of the chapter and as the
yardstick the fast path is tested against.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .base import Backend

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def grad_clipping(params, theta: float) -> torch.Tensor:
    """The chapter's ``grad_clipping``: rescale all gradients so their global L2 norm is at most theta."""
    norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
    # multiply by min(1, theta/norm) rather than branching on `norm > theta`: same numbers, but no
    # device-to-host copy of the norm on every step
    scale = torch.clamp(theta / (norm + 1e-30), max=1.0)
    for p in params:
        p.grad.mul_(scale)
    return norm


class TorchBackend(Backend):
    name = "torch"
    devices = ("cpu", "cuda")

    def __init__(self, params, config, device="cpu", dtype="float32"):
        super().__init__(params, config, device, dtype)
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but this PyTorch sees no CUDA GPU")
        if device not in self.devices:
            raise UserError(f"the torch backend runs on {' or '.join(self.devices)}, not {device!r}")
        self.torch_device = torch.device(device)
        self.torch_dtype = _DTYPES[dtype]
        self.params = {
            name: torch.tensor(np.asarray(params[name]), dtype=self.torch_dtype,
                               device=self.torch_device).requires_grad_(True)
            for name in config.param_shapes()
        }

    # -- state ------------------------------------------------------------------------------------
    def begin_state(self, batch_size):
        return (torch.zeros((batch_size, self.config.num_hiddens), dtype=self.torch_dtype,
                            device=self.torch_device),)

    def detach(self, state):
        return tuple(s.detach() for s in state)

    def state_to_numpy(self, state):
        return tuple(s.detach().cpu().numpy() for s in state)

    def state_from_numpy(self, state):
        return tuple(torch.as_tensor(np.asarray(s), dtype=self.torch_dtype, device=self.torch_device)
                     for s in state)

    # -- the chapter's model -------------------------------------------------------------------------
    def _inputs(self, X, weights):
        """(steps, batch, input_size) inputs: one-hot vectors as in the chapter, or learned embeddings."""
        X = torch.as_tensor(np.asarray(X), device=self.torch_device)
        if self.config.embedding == "onehot":
            return F.one_hot(X.T, self.config.vocab_size).to(self.torch_dtype)
        return weights["W_emb"][X.T]

    def _activation(self, z):
        return torch.tanh(z) if self.config.activation == "tanh" else torch.relu(z)

    def _rnn(self, inputs, state, weights):
        W_xh, W_hh, b_h, W_hq, b_q = (weights[k] for k in ("W_xh", "W_hh", "b_h", "W_hq", "b_q"))
        H, = state
        outputs = []
        for X in inputs:
            H = self._activation(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
            outputs.append(torch.mm(H, W_hq) + b_q)
        return torch.cat(outputs, dim=0), (H,)

    def _graph_weights(self):
        # The graph of a batch must keep the weights it was computed with: a state that is not
        # detached carries that graph into the next batch, after the parameters were updated in
        # place. ``clone`` snapshots the values and still passes gradients to the parameters.
        return {name: p.clone() for name, p in self.params.items()}

    def forward(self, X, state):
        with torch.no_grad():
            logits, state = self._rnn(self._inputs(X, self.params), state, self.params)
        return logits.cpu().numpy(), state

    def _loss(self, X, Y, state):
        weights = self._graph_weights()
        logits, new_state = self._rnn(self._inputs(X, weights), state, weights)
        y = torch.as_tensor(np.asarray(Y), device=self.torch_device).T.reshape(-1)
        return F.cross_entropy(logits, y.long()), new_state

    def _backward(self, loss):
        for p in self.params.values():
            p.grad = None
        # retain_graph: a state that is not detached lets the next batch backpropagate into this one
        loss.backward(retain_graph=True)

    def loss_and_grads(self, X, Y, state):
        loss, new_state = self._loss(X, Y, state)
        self._backward(loss)
        grads = {name: p.grad.detach().cpu().numpy() for name, p in self.params.items()}
        return float(loss.detach()), grads, new_state

    def train_step(self, X, Y, state, lr, clip_theta):
        loss, new_state = self._loss(X, Y, state)
        self._backward(loss)
        params = list(self.params.values())
        if clip_theta is not None:
            grad_clipping(params, clip_theta)
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        return loss.detach(), new_state

    def get_params(self):
        return {name: p.detach().cpu().numpy().copy() for name, p in self.params.items()}
