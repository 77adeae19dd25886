"""The one face every backend shows to the rest of the package.

A backend holds the model's parameters as its framework's tensors and knows how to run the model
forward and take gradients -- in its framework's idiom, with its autograd or a hand-written backward
pass. What happens to the gradients then -- clipping by their global norm, the optimizer's update --
is decided once for all backends (``scratchrnn.optim``), over the few tensor operations a backend's
``TensorOps`` provides. Everything else -- batches, when to reset or detach the state, perplexity,
decoding, checkpoints -- lives in the backend-agnostic core and talks to a backend through these
methods, with NumPy arrays crossing the boundary.

State is a tuple of framework tensors (one (batch, hidden) array for the RNN), as in the chapter, so
that cells with several state tensors (LSTM) fit the same shape.

What a backend may do beyond these methods is declared here, not probed for: ``has_fast_decode``
(its own generation loop, ``decode``), the cells it builds and whether it stacks layers with dropout
(``cells``, ``layers_and_dropout``); every backend draws dropout masks (``dropout.DropoutMasks``) and
gives its weights for the compiled decoder (``decode_weights``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..cells import CELLS, get_cell
from ..errors import UserError
from ..model import ModelConfig, global_norm
from ..optim import SGD, OptimizerConfig, Optimizer, apply_update
from .dropout import DropoutMasks
from .regularization import output_matrix

State = tuple


class TensorOps:
    """The tensor operations that the code written once for every backend needs beyond ``+ - * /``,
    here for NumPy: the optimizers and clipping (``scratchrnn.optim``), and the stacking of the book's
    deep model (``backends.stacking``).

    Each backend has a subclass for its framework (einops-style: one algorithm, small per-framework
    classes). Values may be the framework's tensors or its scalars; nothing here leaves the device
    except ``to_numpy``.
    """

    def sqrt(self, x):
        return np.sqrt(x)

    def zeros_like(self, x):
        return np.zeros_like(x)

    def global_norm(self, tensors) -> Any:
        """L2 norm of all tensors taken together, as one long vector (``model.global_norm``)."""
        return global_norm(tensors)

    def clip_factor(self, norm, theta: float) -> Any:
        """min(1, theta / norm): what clipping multiplies every gradient by (1 for a zero norm)."""
        return 1.0 if not norm > theta else theta / norm

    def to_numpy(self, x) -> np.ndarray:
        return np.array(x)

    def from_numpy(self, array: np.ndarray, like):
        return np.array(array, dtype=like.dtype)

    def matmul(self, a, b):
        return np.matmul(a, b)

    def matmul_transposed(self, a, b):
        """a b^T (the tied output layer's product with the embedding)."""
        return self.matmul(a, b.T)

    def mean(self, x):
        """The mean of every element, as a scalar of the framework (AR and TAR)."""
        return x.mean()

    def stack(self, tensors):
        """Tensors of one shape, stacked along a new first axis (the time steps)."""
        return np.stack(tensors)

    def unstack(self, x):
        """``stack`` undone: the (batch, width) steps of a (steps, batch, width) tensor, in order."""
        return list(x)

    def concat(self, tensors):
        """Tensors joined along their first axis: the (batch, width) steps as (steps * batch, width)."""
        return np.concatenate(tensors)


class Backend(DropoutMasks, ABC):
    """Base class: subclasses implement the framework-specific methods below.

    ``dropout_seed`` seeds the generator the dropout masks are drawn from (``DropoutMasks``).
    """

    #: short name used on the command line (``--backend``)
    name = "base"
    #: devices this backend can run on
    devices: tuple[str, ...] = ("cpu",)
    #: floating-point types every backend computes in
    dtypes: tuple[str, ...] = ("float32", "float64")
    #: recurrent cells this backend implements (a backend that builds fewer names its own)
    cells: tuple[str, ...] = tuple(CELLS)
    #: whether this backend builds more than one layer and dropout (ModelConfig.num_layers, .dropout)
    #: -- and with them the regularisers around the cells (weight, locked and embedding dropout, tied
    #: weights, AR and TAR: ``backends.stacking`` for the autograd backends)
    layers_and_dropout: bool = True
    #: whether this backend builds the layer-normalised cells (ModelConfig.layer_norm)
    layer_norm: bool = False
    #: whether this backend has a generation loop of its own, ``decode`` (see below), faster than
    #: stepping through ``forward`` one token at a time (which ``generation`` does otherwise)
    has_fast_decode: bool = False
    #: the framework's tensor operations, for the optimizers, clipping and the stacking of layers
    ops = TensorOps()
    #: the chapter's SGD, made when ``train_step`` is first given no optimizer
    _sgd: Optimizer | None = None

    def __init__(self, params: dict[str, np.ndarray], config: ModelConfig,
                 device: str = "cpu", dtype: str = "float32", dropout_seed: int = 0):
        missing = set(config.param_shapes()) - set(params)
        if missing:
            raise ValueError(f"parameters missing: {sorted(missing)}")
        for name, shape in config.param_shapes().items():
            if tuple(params[name].shape) != shape:
                raise ValueError(f"parameter {name} has shape {params[name].shape}, expected {shape}")
        if device not in self.devices:
            where = "the CPU only" if self.devices == ("cpu",) else " or ".join(self.devices)
            hint = "; use --backend torch for --device cuda" if device == "cuda" else ""
            raise UserError(f"the {self.name} backend runs on {where}, not {device!r}{hint}")
        if dtype not in self.dtypes:
            raise UserError(f"the {self.name} backend computes in {' or '.join(self.dtypes)}, not {dtype!r}")
        if config.cell not in self.cells:
            raise UserError(f"the {self.name} backend implements the {' and '.join(self.cells)} cell, "
                            f"not {config.cell!r}")
        if not self.layers_and_dropout and (config.num_layers > 1 or config.dropout):
            raise UserError(f"the {self.name} backend builds one layer without dropout, not num_layers "
                            f"{config.num_layers} with dropout {config.dropout}")
        if config.layer_norm and not self.layer_norm:
            raise UserError(f"the {self.name} backend builds the book's cells, not layer-normalised ones "
                            f"(layer_norm): the numpy and torch backends have them")
        self.config = config
        self.device = device
        self.dtype = dtype
        self._init_dropout(dropout_seed)

    # -- state ------------------------------------------------------------------------------------
    def begin_state(self, batch_size: int) -> State:
        """A fresh zero state for ``batch_size`` sequences: flat, each layer's tensors in turn (H; or
        H and C for the LSTM), layer 0 first, each (batch, hidden)."""
        shape = (batch_size, self.config.num_hiddens)
        return self.state_from_numpy(tuple(np.zeros(shape, dtype=self.dtype)
                                           for _ in range(state_size(self.config))))

    @abstractmethod
    def detach(self, state: State) -> State:
        """The same state values, cut from the graph that produced them."""

    @abstractmethod
    def state_to_numpy(self, state: State) -> tuple[np.ndarray, ...]:
        """The state as NumPy arrays."""

    @abstractmethod
    def state_from_numpy(self, state: tuple[np.ndarray, ...]) -> State:
        """A state of this backend holding the given values."""

    # -- the model ----------------------------------------------------------------------------------
    @abstractmethod
    def forward(self, X: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Logits of shape (num_steps * batch, vocab), time-major as in the chapter, and the new state."""

    @abstractmethod
    def gradients(self, X: np.ndarray, Y: np.ndarray, state: State) -> tuple[Any, dict[str, Any], State]:
        """Mean cross-entropy of predicting Y from X, its gradients as the framework's tensors, and the
        state after X. No update. The loss may be a framework scalar that ``float()`` accepts, so that
        a GPU backend need not wait for the device on every step."""

    @abstractmethod
    def parameters(self) -> dict[str, Any]:
        """The parameters as the framework's tensors (values the optimizer may read, not modify)."""

    @abstractmethod
    def assign(self, name: str, value) -> None:
        """Give parameter ``name`` a new value (a tensor of this framework, as the optimizer made it)."""

    @abstractmethod
    def get_params(self) -> dict[str, np.ndarray]:
        """Current parameters as NumPy arrays (for checkpoints and comparisons)."""

    def loss_and_grads(self, X: np.ndarray, Y: np.ndarray, state: State
                       ) -> tuple[float, dict[str, np.ndarray], State]:
        """``gradients`` with the loss as a float and the gradients as NumPy arrays."""
        loss, grads, new_state = self.gradients(X, Y, state)
        return float(loss), {name: self.ops.to_numpy(g) for name, g in grads.items()}, new_state

    def train_step(self, X: np.ndarray, Y: np.ndarray, state: State, lr: float,
                   clip_theta: float | None, optimizer: Optimizer | None = None, reduce=None
                   ) -> tuple[Any, State]:
        """One minibatch: forward, loss, backward, clip to ``clip_theta`` (None: no clipping), then
        ``optimizer``'s update (the chapter's SGD when None). ``reduce`` (several ranks) averages the
        gradients over the ranks before clipping (see ``optim.apply_update``). Returns the mean loss
        (a float or a framework scalar) and the new, not detached, state."""
        loss, grads, new_state = self.gradients(X, Y, state)
        apply_update(self, grads, lr, clip_theta, optimizer or self._chapter_sgd(), reduce)
        return loss, new_state

    def add_to_parameters(self, deltas: dict, alpha) -> None:
        """Every parameter p <- p + alpha * deltas[name] (plain SGD's step, ``optim.SGD``), through
        ``assign``; a backend may do it in place in fewer operations."""
        for name, value in self.parameters().items():
            self.assign(name, value + alpha * deltas[name])

    def _chapter_sgd(self) -> Optimizer:
        if self._sgd is None:
            self._sgd = SGD(OptimizerConfig("sgd"))
        return self._sgd

    # A backend whose ``has_fast_decode`` is true also defines ``decode(state, logits, num_tokens,
    # pick, on_step)``: generation's token-by-token loop without the per-call cost of ``forward`` (see
    # NumpyBackend.decode). ``generation.generate_blocks`` uses it then, and steps through ``forward``
    # otherwise.

    def decode_weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The weights as generation uses them, in NumPy (see ``decode_weights_of``). For the compiled
        decoder (scratchrnn.kernels.decode), which so serves every backend."""
        return decode_weights_of(self.get_params(), self.config)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(vocab={c.vocab_size}, hidden={c.num_hiddens}, "
                f"activation={c.activation}, embedding={c.embedding}, device={self.device}, "
                f"dtype={self.dtype})")


def has_decode_weights(config: ModelConfig) -> bool:
    """Whether a model's generation fits ``decode_weights_of`` (and so the compiled decoder): the
    chapter's one-layer RNN. Gated cells and deeper models step through their own loops."""
    return config.cell == "rnn" and config.num_layers == 1


def decode_weights_of(params: dict, config: ModelConfig, concat=np.concatenate) -> tuple:
    """Every token's input term x W_xh + b_h (vocab, hidden), ``[W_hh | W_hq]`` (hidden, hidden + vocab)
    and b_q: one row gather and one product per generated token. The one-layer RNN's only."""
    if not has_decode_weights(config):
        raise ValueError(f"decode weights exist for one rnn layer only, not for {config.num_layers} "
                         f"{config.cell} layer(s)")
    p = params
    if config.embedding == "onehot":
        input_rows = p["W_xh"] + p["b_h"]               # row v: one_hot(v) W_xh + b_h
    else:
        input_rows = p["W_emb"] @ p["W_xh"] + p["b_h"]
    return input_rows, concat([p["W_hh"], output_matrix(p, config)], axis=1), p["b_q"]


def is_chapter_model(config: ModelConfig) -> bool:
    """The chapter's own model (8.5): one RNN layer, no dropout. The torch backend's fast path has a
    backward pass of its own for it; the autograd backends build it as any other model, one RNN layer
    through ``backends.stacking``."""
    return config.cell == "rnn" and config.num_layers == 1 and not config.dropout


def state_size(config: ModelConfig) -> int:
    """How many (batch, hidden) tensors the flat state holds: each layer's, as its cell names them
    (``Cell.state_names``: H; or H and C for the LSTM)."""
    return len(get_cell(config.cell).state_names) * config.num_layers
