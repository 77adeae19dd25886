"""What a model is, independent of any framework: its shape and its initial weights.

Weights are drawn once here, in NumPy, from a seeded generator, and handed to whichever backend
trains them. That is what lets every backend start from the same numbers and be compared with the
NumPy reference.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .memory import available_bytes, format_bytes

ACTIVATIONS = ("tanh", "relu")
EMBEDDINGS = ("onehot", "learned")
CELLS = ("rnn",)


@dataclass(frozen=True)
class ModelConfig:
    """The scratch RNN: h_t = act(x_t W_xh + h_{t-1} W_hh + b_h), o_t = h_t W_hq + b_q.

    ``embedding="onehot"`` feeds one-hot vectors as the chapter does; ``"learned"`` feeds a trained
    ``embed_dim``-wide embedding instead (the chapter's first exercise).
    """

    vocab_size: int
    num_hiddens: int = 512
    activation: str = "tanh"
    embedding: str = "onehot"
    embed_dim: int = 0
    cell: str = "rnn"
    num_layers: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, not {self.vocab_size}")
        if self.num_hiddens < 1:
            raise ValueError(f"num_hiddens must be positive, not {self.num_hiddens}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, not {self.activation!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, not {self.embedding!r}")
        if self.embedding == "learned" and self.embed_dim < 1:
            raise ValueError("a learned embedding needs embed_dim >= 1")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, not {self.cell!r}")
        if self.num_layers != 1:
            raise ValueError(f"num_layers must be 1 (deep models are not built yet), not {self.num_layers}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.dropout:
            raise ValueError(f"dropout must be 0.0 (no cell applies dropout yet), not {self.dropout}")

    @property
    def input_size(self) -> int:
        """Width of what reaches W_xh: the vocabulary for one-hot inputs, else the embedding."""
        return self.vocab_size if self.embedding == "onehot" else self.embed_dim

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in the chapter's order (W_xh, W_hh, b_h, W_hq, b_q)."""
        shapes = {}
        if self.embedding == "learned":
            shapes["W_emb"] = (self.vocab_size, self.embed_dim)
        shapes.update(
            W_xh=(self.input_size, self.num_hiddens),
            W_hh=(self.num_hiddens, self.num_hiddens),
            b_h=(self.num_hiddens,),
            W_hq=(self.num_hiddens, self.vocab_size),
            b_q=(self.vocab_size,),
        )
        return shapes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_seed(seed, field: str = "seed") -> None:
    """Refuse a seed NumPy's generators cannot take (negative, or not an integer), naming the field."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{field} must be an integer >= 0, not {seed!r}")
    if seed < 0:
        raise ValueError(f"{field} must be >= 0, not {seed}")


def init_params(config: ModelConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Weights ~ N(0, 0.01^2), biases 0, exactly as the chapter's ``get_params``.

    Refuses (UserError) weights larger than the memory available, before drawing any of them.
    """
    check_seed(seed)
    sizes = [int(np.prod(shape, dtype=object)) for shape in config.param_shapes().values()]
    # the draw is float64 before its cast, one matrix at a time
    needed = sum(sizes) * np.dtype(dtype).itemsize + max(sizes) * 8
    available = available_bytes()
    if available is not None and needed > available:
        raise UserError(f"the weights of a model with vocab_size {config.vocab_size}, num_hiddens "
                        f"{config.num_hiddens} need about {format_bytes(needed)}, more than the "
                        f"{format_bytes(available)} of memory available")
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in config.param_shapes().items():
        if name.startswith("b_"):
            params[name] = np.zeros(shape, dtype=dtype)
        else:
            params[name] = (rng.standard_normal(shape) * 0.01).astype(dtype)
    return params


# -- memory: refuse what cannot fit before allocating it -------------------------------------------------
OPTIMIZER_SLOTS = 2   # Adam's two moments: the most any optimizer keeps per parameter


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes training needs, by kind (Python ints: a size far beyond any machine must not overflow)."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations


def estimate_training_bytes(config: ModelConfig, batch_size: int, num_steps: int,
                            dtype="float32") -> MemoryEstimate:
    """What training ``config`` on (batch_size x num_steps) minibatches holds in memory at once.

    Parameters, their gradients, up to OPTIMIZER_SLOTS optimizer slots per parameter, and the
    activations backpropagation through one batch keeps: the inputs, the hidden states and their
    derivatives at every step, the logits with their softmax and its gradient. An estimate of what
    the backends allocate (each differs a little), to refuse sizes that cannot fit, not a measurement.
    """
    itemsize = np.dtype(dtype).itemsize
    params = sum(int(np.prod(shape, dtype=object)) for shape in config.param_shapes().values())
    rows = int(batch_size) * int(num_steps)
    hidden = (3 * rows + int(batch_size)) * config.num_hiddens   # states, pre-activations, their gradients
    inputs = rows * config.input_size
    outputs = 3 * rows * config.vocab_size                       # logits, probabilities, their gradient
    return MemoryEstimate(parameters=params * itemsize, gradients=params * itemsize,
                          optimizer=OPTIMIZER_SLOTS * params * itemsize,
                          activations=(hidden + inputs + outputs) * itemsize)


def check_fits_in_memory(config: ModelConfig, batch_size: int, num_steps: int, dtype="float32",
                         available: int | None = None) -> MemoryEstimate:
    """Refuse (UserError) a training run whose estimate exceeds the memory available, naming both.

    ``available`` defaults to what the system says it can give (``memory.available_bytes``); where
    that cannot be read, nothing is refused. Returns the estimate.
    """
    estimate = estimate_training_bytes(config, batch_size, num_steps, dtype)
    if available is None:
        available = available_bytes()
    if available is not None and estimate.total > available:
        raise UserError(
            f"training num_hiddens {config.num_hiddens}, vocab_size {config.vocab_size}, batch_size "
            f"{batch_size} x num_steps {num_steps} in {np.dtype(dtype).name} needs about "
            f"{format_bytes(estimate.total)} (parameters {format_bytes(estimate.parameters)}, gradients "
            f"and optimizer state {format_bytes(estimate.gradients + estimate.optimizer)}, activations "
            f"{format_bytes(estimate.activations)}), more than the {format_bytes(available)} of memory "
            f"available")
    return estimate


def global_norm(grads) -> float:
    """L2 norm of all gradients taken together, as one long vector."""
    values = grads.values() if isinstance(grads, dict) else grads
    return float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in values)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax of each row, computed stably (shifted by the row's maximum before exponentiating)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
