"""The chapter's own names, for a reader following Dive into Deep Learning 8.5 line by line.

Each is a thin face over the package's API (data.SeqDataLoader, backends, training.train_epoch,
generation.predict), so the chapter's code reads the same here:

    train_iter, vocab = load_data_time_machine(32, 35)
    net = RNNModelScratch(len(vocab), 512)                 # backend="torch", ... to pick a framework
    train_ch8(net, train_iter, vocab, lr=1, num_epochs=500)

Differences from the book, where the framework-free core makes them necessary: arrays are NumPy;
the loss and the SGD updater are built into ``train_epoch_ch8``; ``grad_clipping`` takes the gradients
themselves, because a NumPy model has no ``.grad`` attributes.
"""
from __future__ import annotations

import numpy as np

from . import backends
from .backends.base import TensorOps
from .optim import clip_by_global_norm
from .data import SeqDataLoader, Vocab, load_corpus
from .generation import predict
from .model import ModelConfig, init_params
from .training import TrainConfig, train_epoch


def load_data_time_machine(batch_size: int, num_steps: int, use_random_iter: bool = False,
                           max_tokens: int = 10000, seed: int = 0) -> tuple[SeqDataLoader, Vocab]:
    """Minibatches of the bundled Time Machine and its 28-token character vocabulary."""
    corpus, vocab = load_corpus(None, max_tokens)
    sampling = "random" if use_random_iter else "sequential"
    return SeqDataLoader(corpus, batch_size, num_steps, sampling, seed=seed), vocab


class RNNModelScratch:
    """The chapter's ``RNNModelScratch``: call it on (batch, steps) token indices and a state.

    ``num_layers`` stacks cells (the book's 9.3, deep RNNs) and ``dropout`` drops between them while
    training; ``GRUModelScratch`` and ``LSTMModelScratch`` are the same with the gated cells of 9.1/9.2.
    """

    cell = "rnn"

    def __init__(self, vocab_size: int, num_hiddens: int, device: str = "cpu", backend: str = "numpy",
                 seed: int = 0, dtype: str = "float32", activation: str = "tanh", num_layers: int = 1,
                 dropout: float = 0.0):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.config = ModelConfig(vocab_size, num_hiddens, activation, cell=self.cell, num_layers=num_layers,
                                  dropout=dropout)
        options = {"dropout_seed": seed} if dropout else {}
        self.backend = backends.create(backend, init_params(self.config, seed), self.config,
                                       device=device, dtype=dtype, **options)

    def __call__(self, X, state):
        """Logits of shape (steps * batch, vocab_size), time-major, and the new state."""
        return self.backend.forward(np.asarray(X), state)

    def begin_state(self, batch_size: int, device=None):
        return self.backend.begin_state(batch_size)

    @property
    def params(self) -> list[np.ndarray]:
        """The parameters as NumPy copies in the book's order ([W_xh, W_hh, b_h, W_hq, b_q] for the RNN)."""
        return list(self.backend.get_params().values())


class GRUModelScratch(RNNModelScratch):
    """The book's GRU from scratch (9.1): update and reset gates around a candidate state."""

    cell = "gru"


class LSTMModelScratch(RNNModelScratch):
    """The book's LSTM from scratch (9.2): input, forget and output gates and a memory cell (H, C)."""

    cell = "lstm"


def predict_ch8(prefix: str, num_preds: int, net: RNNModelScratch, vocab: Vocab, device=None) -> str:
    """Warm up on ``prefix``, then append ``num_preds`` greedy characters."""
    return predict(net.backend, vocab, prefix, num_preds, cleaning="raw")


def grad_clipping(grads, theta: float) -> float:
    """Scale gradients (a dict or list of arrays, in place) to global L2 norm <= theta; returns the norm."""
    arrays = grads if isinstance(grads, dict) else dict(enumerate(grads))
    clipped, norm = clip_by_global_norm(arrays, theta, TensorOps())
    for key, value in clipped.items():
        arrays[key][...] = value
    return norm


def train_epoch_ch8(net: RNNModelScratch, train_iter, lr: float = 1.0, use_random_iter: bool = False,
                    clip_theta: float | None = 1.0) -> tuple[float, float]:
    """One epoch; returns (perplexity, tokens per second) as the chapter does."""
    config = TrainConfig(epochs=1, lr=lr, batch_size=1, num_steps=1,
                         sampling="random" if use_random_iter else "sequential", clip=clip_theta)
    stats = train_epoch(net.backend, train_iter, config)
    return stats.perplexity, stats.tokens_per_sec


def train_ch8(net: RNNModelScratch, train_iter, vocab: Vocab, lr: float, num_epochs: int, device=None,
              use_random_iter: bool = False) -> tuple[float, float]:
    """Train, printing a prediction every 10 epochs and the chapter's closing lines."""
    ppl, speed = float("nan"), 0.0
    for epoch in range(num_epochs):
        ppl, speed = train_epoch_ch8(net, train_iter, lr, use_random_iter)
        if (epoch + 1) % 10 == 0:
            print(predict_ch8("time traveller", 50, net, vocab))
    print(f"perplexity {ppl:.1f}, {speed:.1f} tokens/sec on {net.backend.device}")
    print(predict_ch8("time traveller", 50, net, vocab))
    print(predict_ch8("traveller", 50, net, vocab))
    return ppl, speed
