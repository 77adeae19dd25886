"""The book's deep recurrent network (D2L 9.3), written once for the autograd backends.

Layers of one cell, each reading the outputs of the layer below (layer 0 reads the inputs); inverted
dropout on each layer's output, as the layer above and the output layer read it; the output layer
o_t = H_t W_hq + b_q on the last layer. The chapter's own model (8.5) is the case of one RNN layer
without dropout.

What differs between frameworks comes in as arguments: ``layer``, one of the cell functions a
framework's ``cells.py`` writes in that framework's idiom (``rnn``, ``gru``, ``lstm``: a layer's
inputs as a sequence of steps, its state, its weights under the book's names -> every step's H and
the state after the last step), and ``ops``, the framework's ``TensorOps`` (``unstack``, ``stack``,
``concat``, ``matmul``). The NumPy backend builds the same model from ``scratchrnn.cells`` with its
backward pass written by hand; the contract tests hold every backend to it.
"""
from __future__ import annotations

from typing import Callable

from ..cells import get_cell
from ..model import ModelConfig


def layer_weights(weights: dict, config: ModelConfig, layer: int) -> dict:
    """One layer's weights under the cell's plain names (``l1.W_xz`` -> ``W_xz``)."""
    return {plain: weights[full] for plain, full in config.layer_param_names(layer).items()}


def stacked_layers(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig,
                   masks=None) -> tuple:
    """What the output layer reads -- the last layer's outputs as a list of (batch, hidden) steps,
    dropout applied -- and the flat state after the last step.

    ``inputs`` (steps, batch, input): one-hot vectors or embeddings. ``state`` is flat, each layer's
    tensors in turn (layer 0 first). ``masks`` (one (steps, batch, hidden) tensor per layer, or None:
    no dropout) multiply each layer's output.
    """
    width = len(get_cell(config.cell).state_names)
    new_state = []
    steps = ops.unstack(inputs)
    for k in range(config.num_layers):
        steps, final = layer(steps, tuple(state[k * width:(k + 1) * width]), layer_weights(weights, config, k),
                             config.activation)
        new_state.extend(final)
        if masks is not None:
            # one product for every step's mask, rather than one per step
            steps = ops.unstack(ops.stack(steps) * masks[k])
    return steps, tuple(new_state)


def deep_model(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig,
               masks=None) -> tuple:
    """Logits (steps * batch, vocab), time-major as in the chapter, and the flat state after the last
    step (the arguments as for ``stacked_layers``). The output layer is one product for all the steps."""
    steps, new_state = stacked_layers(ops, layer, inputs, state, weights, config, masks)
    return ops.matmul(ops.concat(steps), weights["W_hq"]) + weights["b_q"], new_state
