"""The language model's loss, written once: cross-entropy of softmax(logits) against the next token.

Everything that scores text in NumPy -- the numpy backend's training step, held-out perplexity, the
perplexity of generated text -- goes through here, so that all of them turn a row of logits into
log-probabilities the same way: shifted by the row's maximum, so that exp cannot overflow.
"""
from __future__ import annotations

import numpy as np


def _shift_and_exp(logits: np.ndarray, targets: np.ndarray):
    """In place on ``logits`` (rows, vocab): the exponentials of the shifted logits, their row sums,
    and each row's negative log-likelihood of its target, log(sum exp) - shifted logit of the target."""
    logits -= logits.max(axis=1, keepdims=True)
    target_logits = logits[np.arange(targets.size), targets]
    exps = np.exp(logits, out=logits)
    sum_exp = exps.sum(axis=1)
    return exps, sum_exp, np.log(sum_exp) - target_logits


def token_nll(logits, targets) -> np.ndarray:
    """-log softmax(logits)[i, targets[i]] for every row i, in float64; ``logits`` is not changed.

    ``logits`` (rows, vocab) may be any array NumPy reads; ``targets`` holds one index per row. The
    sum of the result is the text's negative log-likelihood in nats, exp of its mean the perplexity.
    """
    targets = np.asarray(targets).reshape(-1)
    _, _, nll = _shift_and_exp(np.array(logits, dtype=np.float64), targets)
    return nll


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of rows of logits against target indices, and its gradient w.r.t. the logits.

    Works in place on ``logits`` (the caller's scratch buffer) and in its dtype; the gradient of the
    mean is (softmax - one_hot(y)) / n, returned in that same buffer.
    """
    n = targets.size
    probs, sum_exp, nll = _shift_and_exp(logits, targets)
    loss = float(np.mean(nll))
    probs /= sum_exp[:, None]
    probs[np.arange(n), targets] -= 1
    probs /= n
    return loss, probs
