"""The helpers several modules share, each written once: the held-out split, the loss, the default
prompt, matplotlib's set-up."""
from __future__ import annotations

import numpy as np
import pytest

from scratchrnn.data import load_corpus, split_heldout
from scratchrnn.generation import (CHAPTER_PREFIX, PROMPT_CHARS, PROMPT_WORDS, default_prefix,
                                   encode_prefix)
from scratchrnn.losses import softmax_cross_entropy, token_nll
from scratchrnn.plotting import pyplot


# -- the held-out split -----------------------------------------------------------------------------------
def test_split_heldout_keeps_the_end_of_the_text_in_order():
    corpus = list(range(100))
    train, held = split_heldout(corpus, 0.1)
    assert train == list(range(90)) and held.tolist() == list(range(90, 100))
    assert held.dtype == np.int64 and isinstance(train, list)
    train, held = split_heldout(corpus, 0.0)
    assert train == corpus and held.size == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_split_heldout_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="fraction"):
        split_heldout(list(range(10)), fraction)


# -- the loss ---------------------------------------------------------------------------------------------
def _textbook_nll(logits, targets):
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return -np.log(probs[np.arange(len(targets)), targets])


def test_token_nll_is_minus_log_softmax_of_the_target_and_leaves_the_logits_alone():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 7)).astype(np.float32)
    targets = rng.integers(0, 7, 50)
    before = logits.copy()
    nll = token_nll(logits, targets)
    assert nll.dtype == np.float64
    np.testing.assert_allclose(nll, _textbook_nll(logits.astype(np.float64), targets), rtol=1e-12)
    np.testing.assert_array_equal(logits, before)
    # targets may come as a (batch, steps) array read time-major, as the backends' logits are
    np.testing.assert_array_equal(token_nll(logits, targets.reshape(5, 10)), nll)


def test_token_nll_does_not_overflow_and_uniform_logits_give_the_vocabulary_size():
    huge = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    np.testing.assert_allclose(token_nll(huge, [0, 0]), [0.0, 1000.0])
    uniform = np.zeros((4, 28))
    assert np.exp(token_nll(uniform, [0, 5, 9, 27]).mean()) == pytest.approx(28)


def test_softmax_cross_entropy_is_the_mean_of_token_nll_with_its_gradient():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (12, 5))
    targets = rng.integers(0, 5, 12)
    loss, grad = softmax_cross_entropy(logits.copy(), targets)
    assert loss == pytest.approx(token_nll(logits, targets).mean(), rel=1e-12)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, (probs - np.eye(5)[targets]) / 12, atol=1e-15)


# -- the default prompt -----------------------------------------------------------------------------------
def _corpus_of(tmp_path, text: str, cleaning: str):
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    return load_corpus(path, None, cleaning=cleaning)


def test_the_bundled_book_keeps_the_chapters_prompt():
    corpus, vocab = load_corpus(None, 10000)
    assert default_prefix(corpus, vocab, bundled=True) == CHAPTER_PREFIX == "time traveller"


def test_another_text_is_continued_from_its_own_first_line(tmp_path):
    corpus, vocab = _corpus_of(tmp_path, "\n\nFirst Citizen:\nBefore we proceed any further.\n", "raw")
    assert default_prefix(corpus, vocab) == "First Citizen:"


def test_a_long_first_line_gives_its_first_words(tmp_path):
    corpus, vocab = _corpus_of(tmp_path, "The Martians came down in their cylinders.\nNo one\n", "chapter")
    prefix = default_prefix(corpus, vocab)
    assert prefix == "the martians came down" and len(prefix.split()) == PROMPT_WORDS
    encode_prefix(prefix, vocab, "chapter")


def test_a_prompt_is_cut_at_a_word_and_at_most_prompt_chars_long(tmp_path):
    corpus, vocab = _corpus_of(tmp_path, "abcdefghij abcdefghij abcdefghij abcdefghi klmnopq\n", "raw")
    assert default_prefix(corpus, vocab) == "abcdefghij abcdefghij abcdefghij"
    corpus, vocab = _corpus_of(tmp_path, "x" * 100 + " y\n", "raw")
    assert default_prefix(corpus, vocab) == "x" * PROMPT_CHARS


# -- matplotlib ---------------------------------------------------------------------------------------------
def test_pyplot_draws_into_files_only():
    plt = pyplot()
    assert plt.get_backend().lower() == "agg"
