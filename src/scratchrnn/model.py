"""What a model is, independent of any framework: its shape and its initial weights.

Weights are drawn once here, in NumPy, from a seeded generator, and handed to whichever backend
trains them. That is what lets every backend start from the same numbers and be compared with the
NumPy reference.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import cells
from .errors import UserError
from .memory import available_bytes, format_bytes

ACTIVATIONS = ("tanh", "relu")
EMBEDDINGS = ("onehot", "learned")
CELLS = tuple(cells.CELLS)      # the cells' names, as scratchrnn.cells defines them

# The largest model a checkpoint may describe: the reader refuses more (a hostile file's claims are
# bounded before anything is allocated), and so training refuses more before it starts, so that every
# run can read back what it writes (``check_limits``).
MAX_HIDDEN = 65536              # num_hiddens, and embed_dim
MAX_LAYERS = 64
MAX_VOCAB = 1 << 21             # every Unicode code point, with room for reserved tokens
MAX_PARAMETERS = 1 << 32
# Every count a run keeps (a seed, epochs, intervals, a position in an epoch) fits a signed 64-bit
# integer, and so the checkpoint reader's bound on the digits of a JSON integer.
MAX_COUNT = (1 << 63) - 1
# weights start as float32 at the least: a forget-gate bias beyond its range would start as infinity
MAX_FORGET_BIAS = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ModelConfig:
    """A character-level recurrent language model: inputs, ``num_layers`` recurrent layers of one
    ``cell``, and the output layer o_t = h_t W_hq + b_q reading the last layer.

    ``cell="rnn"`` is the chapter's h_t = act(x_t W_xh + h_{t-1} W_hh + b_h) (``activation`` tanh or
    relu); ``"gru"`` and ``"lstm"`` are the book's gated cells (9.1, 9.2; tanh only). ``embedding=
    "onehot"`` feeds one-hot vectors as the chapter does; ``"learned"`` feeds a trained
    ``embed_dim``-wide embedding instead (the chapter's first exercise). ``dropout`` is the probability
    of dropping a unit of each layer's output (between layers and before the output layer) in training.
    The fields after it are what came after the book's LSTM, each off by default (docs/regularization.md):
    the layer-normalised gru and lstm, AWD-LSTM's weight, locked and embedding dropout, tied weights
    (which replace W_hq) and activation regularisation.
    """

    vocab_size: int
    num_hiddens: int = 512
    activation: str = "tanh"
    embedding: str = "onehot"
    embed_dim: int = 0
    cell: str = "rnn"
    num_layers: int = 1
    dropout: float = 0.0
    # what came after the book's LSTM (docs/regularization.md): every one off by default, so a model
    # saved before these fields existed loads as it was
    layer_norm: bool = False          # layer-normalised gru or lstm (Ba, Kiros and Hinton 2016)
    weight_dropout: float = 0.0       # DropConnect on each layer's recurrent weights, a mask per minibatch
    input_dropout: float = 0.0        # locked dropout on the embedding, one mask per sequence
    hidden_dropout: float = 0.0       # locked dropout between layers
    output_dropout: float = 0.0       # locked dropout on the last layer's output
    embed_dropout: float = 0.0        # whole rows of the embedding (characters) dropped per minibatch
    tie_weights: bool = False         # the output layer reuses the embedding (through W_proj if sizes differ)
    activation_reg: float = 0.0       # AR: alpha * mean of the squared (dropped) last layer's output
    temporal_reg: float = 0.0         # TAR: beta * mean of the squared h_t - h_{t-1} of the last layer

    def __post_init__(self):
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, not {self.vocab_size}")
        _check_architecture(self)

    @property
    def input_size(self) -> int:
        """Width of what reaches W_xh: the vocabulary for one-hot inputs, else the embedding."""
        return self.vocab_size if self.embedding == "onehot" else self.embed_dim

    def layer_input_size(self, layer: int) -> int:
        """Width of what reaches layer ``layer``: the input for layer 0, the layer below's H after."""
        return self.input_size if layer == 0 else self.num_hiddens

    @property
    def cell_math(self) -> "cells.Cell":
        """The cell's mathematics (``scratchrnn.cells``): the book's, or its layer-normalised form."""
        return cells.get_cell(self.cell, self.layer_norm)

    @property
    def draws_masks(self) -> bool:
        """Whether training draws dropout masks of any kind (and so needs the dropout generator)."""
        return any(getattr(self, name) for name in DROPOUT_RATES)

    @property
    def has_penalty(self) -> bool:
        """Whether the training objective adds activation regularisation (AR or TAR) to the loss."""
        return bool(self.activation_reg or self.temporal_reg)

    @property
    def projects_output(self) -> bool:
        """Tied weights through a projection W_proj (hidden, embed): the hidden and embedding widths differ."""
        return self.tie_weights and self.num_hiddens != self.embed_dim

    def layer_param_names(self, layer: int) -> dict[str, str]:
        """The cell's plain parameter names (W_xh, ...) -> their names in the model for one layer."""
        prefix = cells.layer_prefix(layer)
        shapes = self.cell_math.param_shapes(self.layer_input_size(layer), self.num_hiddens)
        return {name: prefix + name for name in shapes}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, in the book's order: W_emb (learned embedding only), every
        layer's cell parameters (layer 0 under the book's names, e.g. W_xh, W_hh, b_h for the RNN;
        layer 1 under ``l1.W_xh``...), then the output layer W_hq, b_q. With tied weights the output
        layer reads W_emb, so W_hq is not a parameter: W_proj (hidden, embed) projects the last layer's
        output to the embedding's width where they differ."""
        shapes = {}
        if self.embedding == "learned":
            shapes["W_emb"] = (self.vocab_size, self.embed_dim)
        cell = self.cell_math
        for layer in range(self.num_layers):
            prefix = cells.layer_prefix(layer)
            for name, shape in cell.param_shapes(self.layer_input_size(layer), self.num_hiddens).items():
                shapes[prefix + name] = shape
        if not self.tie_weights:
            shapes["W_hq"] = (self.num_hiddens, self.vocab_size)
        elif self.projects_output:
            shapes["W_proj"] = (self.num_hiddens, self.embed_dim)
        shapes["b_q"] = (self.vocab_size,)
        return shapes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _check_architecture(model) -> None:
    """Refuse a model shape no cell can have, naming the field (``model``: a ModelConfig or a
    ModelSettings, which share these fields)."""
    for name, least, most in (("num_hiddens", 1, None), ("num_layers", 1, MAX_LAYERS),
                              ("embed_dim", 0, MAX_HIDDEN)):
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            kind = "a positive integer" if least == 1 else f"an integer >= {least}"
            raise ValueError(f"{name} must be {kind}, not {value!r}")
        if most is not None and value > most:
            raise ValueError(f"{name} must be at most {most} (what a checkpoint may hold), not {value}")
    if model.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {model.activation!r}")
    if model.embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, not {model.embedding!r}")
    if model.embedding == "learned" and model.embed_dim < 1:
        raise ValueError("a learned embedding needs embed_dim >= 1")
    if model.cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, not {model.cell!r}")
    if model.cell != "rnn" and model.activation != "tanh":
        raise ValueError(f"activation must be 'tanh' for the {model.cell} cell (relu is for the rnn cell), "
                         f"not {model.activation!r}")
    for name in DROPOUT_RATES:
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    _check_regularization(model)


# every dropout rate of a model: what ``draws_masks`` looks at
DROPOUT_RATES = ("dropout", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout", "embed_dropout")
LAYER_NORM_CELLS = ("gru", "lstm")


def _check_regularization(model) -> None:
    """Refuse what docs/regularization.md's techniques cannot be combined with, naming the field."""
    for name in ("layer_norm", "tie_weights"):
        if not isinstance(getattr(model, name), (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, not {getattr(model, name)!r}")
    for name in ("activation_reg", "temporal_reg"):
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    if model.layer_norm and model.cell not in LAYER_NORM_CELLS:
        raise ValueError(f"layer_norm is for the {' and '.join(LAYER_NORM_CELLS)} cells, not the {model.cell} cell")
    if model.embedding != "learned":
        for name in ("embed_dropout", "input_dropout", "tie_weights"):
            if getattr(model, name):
                raise ValueError(f"{name} needs a learned embedding (embedding 'learned'), not "
                                 f"{model.embedding} inputs")


def check_limits(config: "ModelConfig") -> None:
    """Refuse (ValueError, naming the field) a model larger than a checkpoint may describe. The
    checkpoint reader applies it to what it reads; training, to what it is asked for, after the
    memory check (a size no machine holds is refused with its estimate first)."""
    if config.num_hiddens > MAX_HIDDEN:
        raise ValueError(f"num_hiddens must be at most {MAX_HIDDEN} (what a checkpoint may hold), "
                         f"not {config.num_hiddens}")
    if config.vocab_size > MAX_VOCAB:
        raise ValueError(f"vocab_size must be at most {MAX_VOCAB}, not {config.vocab_size}")
    total = sum(math.prod(shape) for shape in config.param_shapes().values())
    if total > MAX_PARAMETERS:
        raise ValueError(f"the model has {total} parameters, more than the {MAX_PARAMETERS} a checkpoint "
                         f"may hold")


INITS = ("book", "scaled")


@dataclass(frozen=True)
class ModelSettings:
    """A model as it is chosen before its text is read: ModelConfig's fields but the vocabulary's size,
    and how its weights start (``init``, ``forget_bias``: see ``init_params``).

    ``scratchrnn train``'s flags, ``RunConfig.model``, the experiments' runs and a run's checkpoint
    carry the model this way; ``config(vocab_size)`` makes the ModelConfig once the text is read.
    """

    # ModelConfig's fields and defaults but vocab_size (``config`` reads them by ModelConfig's field
    # names, so a field added there and not here fails at once)
    num_hiddens: int = 512
    activation: str = "tanh"
    embedding: str = "onehot"
    embed_dim: int = 0
    cell: str = "rnn"
    num_layers: int = 1
    dropout: float = 0.0
    layer_norm: bool = False
    weight_dropout: float = 0.0
    input_dropout: float = 0.0
    hidden_dropout: float = 0.0
    output_dropout: float = 0.0
    embed_dropout: float = 0.0
    tie_weights: bool = False
    activation_reg: float = 0.0
    temporal_reg: float = 0.0
    init: str = "book"                   # "book": N(0, 0.01) as the book draws; "scaled": N(0, 1/fan-in)
    forget_bias: float = 0.0             # the LSTM's forget-gate bias at the start (char-rnn: 1)

    def __post_init__(self):
        _check_architecture(self)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, not {self.init!r}")
        bias = self.forget_bias
        if isinstance(bias, bool) or not isinstance(bias, (int, float, np.integer, np.floating)) \
                or not abs(bias) <= MAX_FORGET_BIAS:
            raise ValueError(f"forget_bias must be a number of float32's range (at most {MAX_FORGET_BIAS:.4g} "
                             f"either way), not {bias!r}")
        if bias and self.cell != "lstm":
            raise ValueError(f"forget_bias is for the lstm cell, not the {self.cell} cell")

    def config(self, vocab_size: int) -> ModelConfig:
        """The model over a vocabulary of ``vocab_size`` tokens."""
        shape = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"}
        return ModelConfig(vocab_size, **shape)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSettings":
        if not isinstance(data, dict):
            raise ValueError(f"model must be a mapping of its settings, not {data!r}")
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
    if seed > MAX_COUNT:
        raise ValueError(f"{field} must be at most {MAX_COUNT}, not {seed}")


def init_params(config: ModelConfig, seed: int = 0, dtype=np.float32, *,
                forget_bias: float = 0.0, init: str = "book") -> dict[str, np.ndarray]:
    """Weights ~ N(0, 0.01^2), biases 0, exactly as the book's ``get_params`` (8.5, 9.1, 9.2).

    The weights are drawn from one generator in ``param_shapes`` order, so a model's first layer and
    the chapter's RNN get the same numbers from the same seed. ``forget_bias`` starts every LSTM
    layer's forget-gate bias b_f there instead of at 0 (char-rnn uses 1: the memory is kept until the
    model learns to forget); it draws nothing, so the weights stay the same. ``init="scaled"`` draws
    each weight matrix from N(0, 1 / rows) instead (rows: the width of what it multiplies; a learned
    embedding N(0, 1)), so that signals keep their size through every product, as frameworks'
    defaults do: with the book's 0.01, a wide gated model with learned embeddings starts from
    near-zero signals in every gate and spends its first epoch growing them (a tied embedding, which
    the output layer also reads, N(0, 1 / embed_dim)). The gains of a layer-normalised cell start at
    1 and draw nothing, so its weights are those of the book's cell from the same seed. Refuses (UserError)
    weights larger than the memory available, before drawing any of them.
    """
    check_seed(seed)
    if forget_bias and config.cell != "lstm":
        raise ValueError(f"forget_bias is for the lstm cell, not the {config.cell} cell")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
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
        if cells.is_bias(name):
            value = forget_bias if name.rsplit(".", 1)[-1] == "b_f" else 0.0
            params[name] = np.full(shape, value, dtype=dtype)
        elif cells.is_gain(name):
            params[name] = np.ones(shape, dtype=dtype)
        else:
            params[name] = (rng.standard_normal(shape) * _init_scale(config, name, shape, init)).astype(dtype)
    return params


def _init_scale(config: ModelConfig, name: str, shape: tuple, init: str) -> float:
    """The standard deviation a weight matrix is drawn with (see ``init_params``)."""
    if init == "book":
        return 0.01
    if name != "W_emb":
        return 1.0 / np.sqrt(shape[0])
    # a tied embedding is the output layer's matrix too: N(0, 1/embed) keeps the logits of unit-sized
    # inputs at unit size, where N(0, 1) would make them embed_dim times larger
    return 1.0 / np.sqrt(shape[1]) if config.tie_weights else 1.0


# -- memory: refuse what cannot fit before allocating it -------------------------------------------------
OPTIMIZER_SLOTS = 2   # Adam's two moments: the most any optimizer keeps per parameter
# hidden-wide arrays per step and row that backpropagation keeps for one layer of each cell: the
# states and their gradients, and each gate's activations and gradients (cells/*.py)
ACTIVATION_WIDTHS = {"rnn": 3, "gru": 9, "lstm": 12}
# what a layer-normalised cell keeps beside them: the normalised input and recurrent terms of every
# gate, and the LSTM's normalised cell and its gradient (cells/layernorm.py)
LAYER_NORM_WIDTHS = {"gru": 7, "lstm": 11}


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
    # per layer: states, pre-activations (every gate's), their gradients, and the dropout masks
    per_row = ACTIVATION_WIDTHS[config.cell] + (2 if config.draws_masks else 0)
    if config.layer_norm:
        per_row += LAYER_NORM_WIDTHS[config.cell]
    hidden = config.num_layers * (per_row * rows + int(batch_size)) * config.num_hiddens
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
