"""What AWD-LSTM added around the cells, written once with plain array operators (``*``, ``@``, ``.T``,
slicing), so that the same lines serve NumPy arrays and torch tensors: the tied output layer and its
backward pass, and activation regularisation (AR and TAR) with its gradient. The hand-written
backward passes (``backends.numpy``, the torch backend's fast path) call the ``*_grads`` functions;
the autograd backends reach the forward ones through ``backends.stacking``.

The output layer of a model with tied weights (Press and Wolf 2017; Inan, Khosravi and Socher 2017)
reads the embedding itself: o_t = h_t W_emb^T + b_q, or o_t = (h_t W_proj) W_emb^T + b_q where the
hidden width differs from the embedding's. AR (Merity, McCann and Socher 2017) adds
alpha * mean(m * h_t)^2 over the last layer's dropped output, TAR beta * mean(h_t - h_{t-1})^2 over
its output before dropout: the first keeps the activations small, the second keeps them from jumping
between steps. Both only in training; the loss the training loop reports stays the cross-entropy.
"""
from __future__ import annotations

import math


def output_weights(params: dict, config) -> tuple:
    """The output layer's matrices: (W_hq,) untied; (W_emb,) tied; (W_proj, W_emb) tied through a projection."""
    if not config.tie_weights:
        return (params["W_hq"],)
    return (params["W_proj"], params["W_emb"]) if config.projects_output else (params["W_emb"],)


def output_matrix(params: dict, config):
    """The (hidden, vocab) matrix the output layer multiplies the last layer's output by: W_hq, or with
    tied weights W_emb^T (W_proj W_emb^T through a projection). NumPy arrays or torch tensors."""
    if not config.tie_weights:
        return params["W_hq"]
    if config.projects_output:
        return params["W_proj"] @ params["W_emb"].T
    return params["W_emb"].T


def tied_logits(rows, params: dict, config, matmul_transposed=None):
    """Logits of (N, hidden) rows through tied weights: ``rows [W_proj] W_emb^T + b_q``.
    ``matmul_transposed(a, b)`` computes a b^T (default ``a @ b.T``; TensorFlow's tensors have no .T)."""
    if config.projects_output:
        rows = rows @ params["W_proj"]
    product = matmul_transposed(rows, params["W_emb"]) if matmul_transposed else rows @ params["W_emb"].T
    return product + params["b_q"]


def tied_logits_grads(rows, dlogits, params: dict, config) -> tuple[dict, object]:
    """The backward pass of ``tied_logits`` (without b_q): the gradients it gives W_emb (to be added
    to what the inputs give it) and W_proj, and the gradient of the rows."""
    if not config.projects_output:
        return {"W_emb": dlogits.T @ rows}, dlogits @ params["W_emb"]
    projected = rows @ params["W_proj"]
    d_projected = dlogits @ params["W_emb"]
    return {"W_emb": dlogits.T @ projected, "W_proj": rows.T @ d_projected}, d_projected @ params["W_proj"].T


def activation_penalty(top, raw_top, config, mean_square=None):
    """AR + TAR of one batch (0.0 without either): ``top`` the last layer's dropped output (steps, batch,
    hidden), ``raw_top`` the same before dropout. ``mean_square(x)`` is the mean of x's squared elements
    (default ``(x * x).mean()``; a hand-written backend passes one that makes no temporary array)."""
    mean_square = mean_square or (lambda x: (x * x).mean())
    value = 0.0
    if config.activation_reg:
        value = value + config.activation_reg * mean_square(top)
    if config.temporal_reg and raw_top.shape[0] > 1:
        value = value + config.temporal_reg * mean_square(raw_top[1:] - raw_top[:-1])
    return value


def add_activation_grad(d_top, top, config, scale=1.0) -> None:
    """Add AR's gradient, 2 alpha top / n (times ``scale``, the penalty's own gradient), to ``d_top`` in
    place: the gradient reaching what the output layer read."""
    if config.activation_reg:
        d_top += top * (2 * config.activation_reg / math.prod(top.shape) * scale)


def add_temporal_grad(d_raw, raw_top, config, scale=1.0) -> None:
    """Add TAR's gradient to ``d_raw`` in place, the gradient reaching the last layer's output before its
    dropout: 2 beta (h_t - h_{t-1}) / n' (times ``scale``) sent to h_t and, negated, to h_{t-1}."""
    if config.temporal_reg and raw_top.shape[0] > 1:
        change = raw_top[1:] - raw_top[:-1]
        change *= 2 * config.temporal_reg / math.prod(change.shape) * scale
        d_raw[1:] += change
        d_raw[:-1] -= change
