"""A trained model run forward in float64 by the reference cells, keeping everything a reader may want
to look at: every layer's hidden states, the LSTM's memory cells, every gate, and the distribution of
the next character at each position.

The step loops are those of ``scratchrnn.cells`` (the NumPy backend's), so what is shown is what the
model computes; float64 keeps the numbers comparable with finite differences. The compiled kernels
serve float32 only, so every loop here is the cells' plain NumPy one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backends.regularization import output_matrix
from ..cells import CellWeights, get_cell
from ..model import ModelConfig, log_softmax

# what each gate of a cell is called on the page, in the order of ``Cell.gates``
GATE_NAMES = {
    "gru": {"z": "update gate Z", "r": "reset gate R", "h": "candidate state H~"},
    "lstm": {"i": "input gate I", "f": "forget gate F", "o": "output gate O", "c": "candidate memory C~"},
}
# the gates whose values lie in (0, 1) (sigmoids): the ones that saturate at 0 or 1
SIGMOID_GATES = {"gru": ("z", "r"), "lstm": ("i", "f", "o")}


@dataclass
class LayerTrace:
    """One layer of one forward pass: its weights, the cell's cache and what reached the layer."""

    weights: CellWeights
    cache: tuple
    inputs: np.ndarray          # (steps, batch, width): one-hot rows, embeddings, or the layer below's H


@dataclass
class Trace:
    """A forward pass over (steps, batch) tokens, time-major."""

    tokens: np.ndarray          # (steps, batch)
    layers: list                # a LayerTrace per layer, layer 0 first
    logits: np.ndarray          # (steps, batch, vocab): the next token's logits after each step


class ReferenceModel:
    """A model's parameters (any float type, cast to float64) and its shape, run by the reference cells."""

    def __init__(self, params: dict[str, np.ndarray], config: ModelConfig):
        missing = sorted(set(config.param_shapes()) - set(params))
        if missing:
            raise ValueError(f"params lacks {', '.join(missing)}")
        self.config = config
        self.params = {name: np.asarray(params[name], dtype=np.float64) for name in config.param_shapes()}
        self.cell = config.cell_math
        self.layer_weights = [
            self.cell.prepare({plain: self.params[full] for plain, full in config.layer_param_names(layer).items()})
            for layer in range(config.num_layers)]

    @property
    def output_matrix(self) -> np.ndarray:
        """What the output layer multiplies the last layer's H by: W_hq, or the tied embedding's W_emb^T."""
        return output_matrix(self.params, self.config)

    @property
    def input_weights(self) -> np.ndarray:
        """What multiplies an input vector in layer 0: the input rows of every gate side by side."""
        return self.layer_weights[0].W_x

    def input_vectors(self, tokens: np.ndarray) -> np.ndarray:
        """The vectors layer 0 reads for (steps, batch) tokens: one-hot rows, or embedding rows."""
        if self.config.embedding == "onehot":
            return np.eye(self.config.vocab_size)[tokens]
        return self.params["W_emb"][tokens]

    def run(self, tokens: np.ndarray, state: tuple | None = None) -> Trace:
        """Every layer's pass over ``tokens`` (steps, batch), from ``state`` (flat, like a backend's) or zeros."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[0] < 1:
            raise ValueError(f"tokens must be (steps, batch) with at least one step, not {tokens.shape}")
        steps, batch = tokens.shape
        width = len(self.cell.state_names)
        if state is None:
            state = self.cell.begin_state(batch, self.config.num_hiddens, np.float64) * self.config.num_layers
        layers = []
        x = self.input_vectors(tokens)
        for layer, weights in enumerate(self.layer_weights):
            terms = x @ weights.W_x + weights.b
            outputs, _, cache = self.cell.forward(terms, tuple(state[layer * width:(layer + 1) * width]), weights,
                                                  self.config.activation)
            layers.append(LayerTrace(weights, cache, x))
            x = outputs
        logits = x @ self.output_matrix + self.params["b_q"]
        return Trace(tokens, layers, logits)


def layer_series(config: ModelConfig, trace: Trace, row: int = 0) -> list[dict[str, np.ndarray]]:
    """For each layer, its values at every step of one row of the batch, each (steps, hidden), by name:
    ``"H"`` the hidden state; for the LSTM ``"C"`` its memory cell; for gated cells every gate by its
    letter (``"f"``: the LSTM's forget gate, ``"z"``: the GRU's update gate ...), after its activation."""
    hidden = config.num_hiddens
    out = []
    for layer in trace.layers:
        cache = layer.cache
        series = {"H": cache[0][1:, row]}
        if config.cell == "lstm":
            hs, cs, acts = cache[:3]
            series["C"] = cs[1:, row]
            for k, gate in enumerate(get_cell("lstm").gates):
                series[gate] = acts[:, row, k * hidden:(k + 1) * hidden]
        elif config.cell == "gru":
            hs, zr, candidates = cache[:3]
            series["z"], series["r"] = zr[:, row, :hidden], zr[:, row, hidden:]
            series["h"] = candidates[:, row]
        out.append({name: np.array(values) for name, values in series.items()})
    return out


@dataclass
class Predictions:
    """What the model expects after each position of a text of T tokens."""

    top_ids: np.ndarray         # (T, k): the k likeliest next tokens after each position, likeliest first
    top_probs: np.ndarray       # (T, k): their probabilities
    surprise: np.ndarray        # (T - 1,): -log p(token t + 1 | tokens up to t), in nats
    log_probs: np.ndarray       # (T, vocab): log p(next token | tokens up to t)


def predictions(trace: Trace, top_k: int = 5, row: int = 0) -> Predictions:
    """The next-token distribution after each position of one row of ``trace``: its ``top_k`` likeliest
    tokens and the surprise of the token that does come next (the text's own), in nats."""
    if top_k < 1:
        raise ValueError(f"top_k must be positive, not {top_k}")
    log_probs = log_softmax(trace.logits[:, row])
    k = min(top_k, log_probs.shape[1])
    top_ids = np.argsort(-log_probs, axis=1, kind="stable")[:, :k]
    top_probs = np.exp(np.take_along_axis(log_probs, top_ids, axis=1))
    following = trace.tokens[1:, row]
    surprise = -log_probs[np.arange(len(following)), following]
    return Predictions(top_ids, top_probs, surprise, log_probs)


def as_tokens(ids: Sequence[int]) -> np.ndarray:
    """A text's token ids as (steps, 1): one row, time-major."""
    return np.asarray(ids, dtype=np.int64).reshape(-1, 1)
