"""What a model is, independent of any framework: its shape and its initial weights.

Weights are drawn once here, in NumPy, from a seeded generator, and handed to whichever backend
trains them. That is what lets every backend start from the same numbers and be compared with the
NumPy reference.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

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


def init_params(config: ModelConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Weights ~ N(0, 0.01^2), biases 0, exactly as the chapter's ``get_params``."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in config.param_shapes().items():
        if name.startswith("b_"):
            params[name] = np.zeros(shape, dtype=dtype)
        else:
            params[name] = (rng.standard_normal(shape) * 0.01).astype(dtype)
    return params


def global_norm(grads) -> float:
    """L2 norm of all gradients taken together, as one long vector."""
    values = grads.values() if isinstance(grads, dict) else grads
    return float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in values)))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax of each row, computed stably (shifted by the row's maximum before exponentiating)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
