"""The torch backend's fast path for every model, the chapter's included: GRU, LSTM or RNN cells, any
number of layers, dropout between layers and before the output layer -- backpropagation through time
written by hand inside one ``torch.autograd.Function`` (``StackedLoss``).

It is the NumPy reference's model (``backends.numpy``) in PyTorch operations: a layer's input terms
for every gate and step are one product (one row gather for one-hot inputs), the cells' step loops
(``fast_cells``) do one product of H with the side-by-side recurrent weights per step, and every
weight gradient is one large product over all steps. Against the book's autograd form
(``cells``, impl="chapter"), which multiplies each gate on its own at every step and records
every operation for autograd, that is fewer, larger products and no graph.

Dropout masks are handed in (``dropout.Masks``, drawn by the backend from its NumPy generator as the
autograd form draws them), so the two forms compute the same numbers; the tests hold them together.
The regularisers of docs/regularization.md are here as in the NumPy reference: weight dropout
multiplies the recurrent weights before a layer's step loops (and their gradients after), embedding
and locked input dropout the embedded inputs, locked dropout the layers' outputs; tied weights make
the output layer read W_emb (``regularization``); AR and TAR come out of the Function as a second
output, which the backend adds to the loss before ``backward``. Layer-normalised cells run the loops
of ``fast_layernorm``.
The Function returns the gradient of the state it started from, so a state that is not detached lets
the next batch backpropagate into this one, as autograd would.
"""
from __future__ import annotations

import dataclasses

import torch

from ..records import BatchRecord, LayerRecord
from ..regularization import (activation_penalty, add_activation_grad, add_temporal_grad, tied_logits,
                              tied_logits_grads)
from .fast_layernorm import torch_cell


def scatter_add_rows(indices, rows, num_rows: int):
    """``out[i] = sum of rows whose index is i``: the gradient of a row gather."""
    return rows.new_zeros((num_rows, rows.shape[1])).index_add_(0, indices, rows)


def mean_cross_entropy(logits, targets):
    """Mean cross-entropy of rows of logits against target indices, and the log-probabilities (what
    ``cross_entropy_grad`` needs)."""
    log_probs = torch.log_softmax(logits, dim=1)
    return -log_probs.gather(1, targets[:, None]).mean(), log_probs


def cross_entropy_grad(log_probs, targets, d_loss):
    """d loss / d logits of ``mean_cross_entropy``, times the loss's own gradient ``d_loss``:
    (softmax - one_hot(y)) * d_loss / n (a new tensor)."""
    dlogits = log_probs.exp()
    dlogits[torch.arange(targets.numel(), device=targets.device), targets] -= 1
    dlogits *= d_loss / targets.numel()
    return dlogits


class StackedModel:
    """One model configuration's forward pass and hand-written backward pass, on torch tensors.

    Parameters and gradients travel as lists in ``param_names`` order (ModelConfig.param_shapes), the
    state as the backend's flat tuple (each layer's H, and C for the LSTM, layer 0 first).
    """

    def __init__(self, config):
        self.config = config
        self.cell = torch_cell(config)
        self.param_names = list(config.param_shapes())
        self.layer_names = [config.layer_param_names(layer) for layer in range(config.num_layers)]
        self.state_count = self.cell.state_size * config.num_layers

    def run(self, tokens, state, params: dict, masks=None, loops=None):
        """Logits (steps * batch, vocab), time-major; the flat state after the last step; and the
        record the backward pass reads. ``tokens`` (steps, batch); ``masks``: the batch's
        ``dropout.Masks`` as tensors, or None (no dropout: evaluation, generation, or no rate);
        ``loops``: the ``kernels.Choice`` of step loops (None: PyTorch's)."""
        config = self.config
        num_steps, batch = tokens.shape
        hidden, width = config.num_hiddens, self.cell.state_size
        flat_tokens = tokens.reshape(-1)
        inputs_mask = None if masks is None else masks.inputs
        layers, final_state, embedded, x = [], [], None, None
        for layer, names in enumerate(self.layer_names):
            plain = {name: params[full] for name, full in names.items()}
            recurrent_masks = None if masks is None or masks.recurrent is None else masks.recurrent[layer]
            if recurrent_masks is not None:
                plain.update({name: plain[name] * mask for name, mask in recurrent_masks.items()})
            weights = self.cell.prepare(plain, loops)
            start = tuple(state[layer * width:(layer + 1) * width])
            terms, states = self.cell.input_buffer(num_steps, batch, start, params["b_q"])
            flat_terms = terms.view(num_steps * batch, -1)
            # the input terms x_t W_x + b of every gate and step at once
            if layer > 0:
                torch.addmm(weights.b, x.reshape(-1, hidden), weights.W_x, out=flat_terms)
            elif config.embedding == "onehot":
                # one_hot(x) @ W_x + b == (W_x + b)[x]: the bias added to vocabulary rows, not to tokens
                torch.index_select(weights.W_x + weights.b, 0, flat_tokens, out=flat_terms)
            else:
                embedded = torch.index_select(params["W_emb"], 0, flat_tokens)
                if inputs_mask is not None:
                    embedded = (embedded.view(num_steps, batch, -1) * inputs_mask).view(num_steps * batch, -1)
                torch.addmm(weights.b, embedded, weights.W_x, out=flat_terms)
            outputs, final, cache = self.cell.forward(terms, start, weights, config.activation, states)
            final_state.extend(final)
            raw_top = outputs
            mask = None if masks is None or masks.outputs is None else masks.outputs[layer]
            if mask is not None:
                outputs = outputs * mask
            layers.append(LayerRecord(weights, cache, x, mask, recurrent_masks))
            x = outputs
        rows = x.reshape(-1, hidden)
        if config.tie_weights:
            # snapshots: the update changes the parameters in place before this batch's backward pass
            tied = {name: params[name].clone() for name in ("W_emb", "W_proj") if name in params}
            logits = tied_logits(rows, {**tied, "b_q": params["b_q"]}, config)
            record = BatchRecord(tokens, layers, x, tuple(final_state), loops, embedded, raw_top=raw_top,
                                 inputs_mask=inputs_mask, output_weights=tied)
        else:
            # logits^T = W_hq^T x^T + b_q, its transpose returned: MKL computes the product faster with
            # the few rows of W_hq^T on the left than with its few columns on the right
            logits = torch.addmm(params["b_q"][:, None], params["W_hq"].T, rows.T).T
            record = BatchRecord(tokens, layers, x, tuple(final_state), loops, embedded, params["W_hq"].clone(),
                                 raw_top=raw_top, inputs_mask=inputs_mask)
        return logits, tuple(final_state), record

    def backprop(self, record: BatchRecord, dlogits, d_final, need_d_state0: bool, d_penalty=None):
        """The gradients of every parameter (a list in ``param_names`` order) and, if
        ``need_d_state0``, of the starting state (a flat tuple), from the gradient of the logits
        (``dlogits``, or None: nothing reaches this batch's outputs), of AR and TAR (``d_penalty``, or
        None) and of the state after the batch (``d_final``, flat, entries None where nothing reaches
        them)."""
        config = self.config
        hidden, vocab_size = config.num_hiddens, config.vocab_size
        num_steps = record.num_steps
        width = self.cell.state_size
        grads: dict = {}
        d_out = None
        flat_tokens = record.tokens.reshape(-1)
        if dlogits is not None:
            rows = record.top.reshape(-1, hidden)
            if config.tie_weights:
                weight_grads, d_rows = tied_logits_grads(rows, dlogits, record.output_weights, config)
                grads.update(weight_grads)
            else:
                grads["W_hq"] = (dlogits.T @ rows).T  # the transpose of a product: faster on MKL
                d_rows = dlogits @ record.W_hq.T
            grads["b_q"] = dlogits.sum(dim=0)
            d_out = d_rows.view(num_steps, -1, hidden)
        if d_penalty is not None:
            if d_out is None:
                d_out = torch.zeros_like(record.top)
            add_activation_grad(d_out, record.top, config, d_penalty)
        d_state0 = []
        for layer in range(len(record.layers) - 1, -1, -1):
            rec, names = record.layers[layer], self.layer_names[layer]
            if d_out is not None and rec.mask is not None:
                d_out = d_out * rec.mask
            if d_penalty is not None and layer == len(record.layers) - 1:
                add_temporal_grad(d_out, record.raw_top, config, d_penalty)
            d_layer_final = d_final[layer * width:(layer + 1) * width]
            if d_out is None and all(d is None for d in d_layer_final):
                d_state0[:0] = (None,) * width    # nothing reaches this layer: no gradients from it
                continue
            d_terms, d_recurrent, d_start = self.cell.backward(rec.cache, rec.weights, d_out, d_layer_final,
                                                               need_d_state0)
            d_terms = d_terms.view(-1, d_terms.shape[-1])
            d_b = None
            if layer > 0:
                d_W_x = rec.inputs.reshape(-1, hidden).T @ d_terms
                d_out = (d_terms @ rec.weights.W_x.T).view(num_steps, -1, hidden)
            elif record.embedded is None:
                d_W_x = scatter_add_rows(flat_tokens, d_terms, vocab_size)
                # each row of d_terms went to one row of d_W_x: the bias's gradient, the sum of them
                # all, is the sum of d_W_x's vocabulary rows, far fewer than the steps * batch
                d_b = d_W_x.sum(dim=0)
            else:
                d_W_x = record.embedded.T @ d_terms
                d_embedded = d_terms @ rec.weights.W_x.T
                if record.inputs_mask is not None:
                    d_embedded = (d_embedded.view(num_steps, -1, config.embed_dim) * record.inputs_mask
                                  ).view(-1, config.embed_dim)
                from_inputs = scatter_add_rows(flat_tokens, d_embedded, vocab_size)
                grads["W_emb"] = from_inputs if "W_emb" not in grads else grads["W_emb"] + from_inputs
            d_b = d_terms.sum(dim=0) if d_b is None else d_b
            for plain, grad in {**self.cell.input_grads(rec.weights, d_W_x, d_b), **d_recurrent}.items():
                if rec.recurrent_masks is not None and plain in rec.recurrent_masks:
                    grad = grad * rec.recurrent_masks[plain]     # the dropped weights' gradient, masked again
                grads[names[plain]] = grad
            d_state0[:0] = d_start or ()
        return [grads.get(name) for name in self.param_names], tuple(d_state0) if need_d_state0 else None


def _mean_square(x):
    """The mean of the squares of x's elements, as one dot product (no squared copy of x)."""
    flat = x.reshape(-1)
    return torch.dot(flat, flat) / flat.numel()


class StackedLoss(torch.autograd.Function):
    """Mean cross-entropy of a ``StackedModel`` over one minibatch, and the state after it.

    apply(model, loops, tokens, targets, masks, *state, *params) -> (loss, *new_state), or (loss,
    penalty, *new_state) for a model with AR or TAR (``ModelConfig.has_penalty``: the objective is
    loss + penalty); ``loops`` the ``kernels.Choice`` of step loops, ``tokens`` (steps, batch)
    time-major, ``targets`` flattened time-major, ``masks`` as ``StackedModel.run`` takes them, the
    state flat and the parameters in ``model.param_names`` order. backward is BPTT by hand
    (``StackedModel.backprop``).
    """

    @staticmethod
    def forward(ctx, model, loops, tokens, targets, masks, *tensors):
        state, params = tensors[:model.state_count], tensors[model.state_count:]
        logits, final_state, record = model.run(tokens, state, dict(zip(model.param_names, params)), masks, loops)
        loss, log_probs = mean_cross_entropy(logits, targets)
        # the record holds only tensors made here (the weights as snapshots), none of the inputs, which
        # the update will change in place; kept on ctx, it lives as long as the graph that needs it.
        # Not the final state: those tensors are this function's outputs, whose grad_fn is this node,
        # so ctx holding them would be a reference cycle through autograd's C++ graph, which Python's
        # collector frees late or (the LSTM's two states) never -- every batch's record kept for good.
        ctx.record = dataclasses.replace(record, final_state=())
        ctx.model, ctx.log_probs, ctx.targets = model, log_probs, targets
        # unused outputs give None gradients (rather than zeros), so backward can skip their terms
        ctx.set_materialize_grads(False)
        if not model.config.has_penalty:
            return (loss, *final_state)
        penalty = activation_penalty(record.top, record.raw_top, model.config, _mean_square)
        return (loss, penalty if torch.is_tensor(penalty) else loss.new_zeros(()), *final_state)

    @staticmethod
    def backward(ctx, d_loss, *d_outputs):
        model = ctx.model
        d_penalty, d_final = (d_outputs[0], d_outputs[1:]) if model.config.has_penalty else (None, d_outputs)
        need_d_state0 = any(ctx.needs_input_grad[5:5 + model.state_count])
        # the hand-written gradient is not itself differentiable: nothing for autograd to record, even
        # under backward(create_graph=True)
        with torch.no_grad():
            dlogits = None if d_loss is None else cross_entropy_grad(ctx.log_probs, ctx.targets, d_loss)
            grads, d_state0 = model.backprop(ctx.record, dlogits, d_final, need_d_state0, d_penalty)
        return (None, None, None, None, None, *(d_state0 or (None,) * model.state_count), *grads)
