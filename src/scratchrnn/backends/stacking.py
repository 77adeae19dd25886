"""The book's deep recurrent network (D2L 9.3), written once for the autograd backends.

Layers of one cell, each reading the outputs of the layer below (layer 0 reads the inputs); inverted
dropout on each layer's output, as the layer above and the output layer read it; the output layer
o_t = H_t W_hq + b_q on the last layer. The chapter's own model (8.5) is the case of one RNN layer
without dropout. The regularisers of docs/regularization.md act here too, for every autograd
backend: the masks (``dropout.Masks``) multiply the embedded inputs, the recurrent weights and the
layers' outputs; tied weights make the output layer read W_emb; ``training_model`` adds AR and TAR.

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
from .regularization import activation_penalty, tied_logits


def layer_weights(weights: dict, config: ModelConfig, layer: int) -> dict:
    """One layer's weights under the cell's plain names (``l1.W_xz`` -> ``W_xz``)."""
    return {plain: weights[full] for plain, full in config.layer_param_names(layer).items()}


def _layers(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig, masks=None):
    """``stacked_layers``' result, and the last layer's steps before its dropout (for TAR)."""
    width = len(get_cell(config.cell).state_names)
    if masks is not None and masks.inputs is not None:
        inputs = inputs * masks.inputs
    new_state = []
    steps = raw = ops.unstack(inputs)
    for k in range(config.num_layers):
        w = layer_weights(weights, config, k)
        if masks is not None and masks.recurrent is not None:
            w.update({name: w[name] * mask for name, mask in masks.recurrent[k].items()})
        steps, final = layer(steps, tuple(state[k * width:(k + 1) * width]), w, config.activation)
        new_state.extend(final)
        raw = steps
        mask = None if masks is None or masks.outputs is None else masks.outputs[k]
        if mask is not None:
            # one product for every step's mask, rather than one per step
            steps = ops.unstack(ops.stack(steps) * mask)
    return steps, raw, tuple(new_state)


def stacked_layers(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig,
                   masks=None) -> tuple:
    """What the output layer reads -- the last layer's outputs as a list of (batch, hidden) steps,
    dropout applied -- and the flat state after the last step.

    ``inputs`` (steps, batch, input): one-hot vectors or embeddings. ``state`` is flat, each layer's
    tensors in turn (layer 0 first). ``masks`` (``dropout.Masks`` in the framework's tensors, or None:
    no dropout) multiply the inputs, each layer's recurrent weights and each layer's output.
    """
    steps, _, new_state = _layers(ops, layer, inputs, state, weights, config, masks)
    return steps, new_state


def output_layer(ops, rows, weights: dict, config: ModelConfig):
    """Logits of (N, hidden) rows: ``rows W_hq + b_q``, or through the tied embedding."""
    if config.tie_weights:
        return tied_logits(rows, weights, config, ops.matmul_transposed)
    return ops.matmul(rows, weights["W_hq"]) + weights["b_q"]


def deep_model(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig,
               masks=None) -> tuple:
    """Logits (steps * batch, vocab), time-major as in the chapter, and the flat state after the last
    step (the arguments as for ``stacked_layers``). The output layer is one product for all the steps."""
    steps, new_state = stacked_layers(ops, layer, inputs, state, weights, config, masks)
    return output_layer(ops, ops.concat(steps), weights, config), new_state


def training_model(ops, layer: Callable, inputs, state: tuple, weights: dict, config: ModelConfig,
                   masks=None) -> tuple:
    """``deep_model`` in training: the logits, the state, and what the objective adds to the
    cross-entropy -- AR and TAR (``regularization.activation_penalty``; 0.0 without them)."""
    steps, raw, new_state = _layers(ops, layer, inputs, state, weights, config, masks)
    logits = output_layer(ops, ops.concat(steps), weights, config)
    penalty = 0.0
    if config.has_penalty:
        penalty = activation_penalty(ops.stack(steps), ops.stack(raw), config, lambda x: ops.mean(x * x))
    return logits, new_state, penalty
