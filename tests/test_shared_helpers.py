"""The helpers several modules share, each written once: the held-out split, the log-softmax, the
default prompt, matplotlib's set-up."""
from __future__ import annotations

import numpy as np
import pytest

from scratchrnn.data import load_corpus, split_heldout
from scratchrnn.generation import (CHAPTER_PREFIX, PROMPT_CHARS, PROMPT_WORDS, default_prefix,
                                   encode_prefix)
from scratchrnn.model import log_softmax
from scratchrnn.plotting import pyplot


# -- the held-out split -----------------------------------------------------------------------------------
def test_split_heldout_keeps_the_end_of_the_text_in_order():
    for corpus in (list(range(100)), np.arange(100, dtype=np.uint8)):
        train, held = split_heldout(corpus, 0.1)
        assert train.tolist() == list(range(90)) and held.tolist() == list(range(90, 100))
        assert train.dtype.kind in "iu" and held.dtype == np.int64
        train, held = split_heldout(corpus, 0.0)
        assert train.tolist() == list(range(100)) and held.size == 0
    # a compact corpus (1 byte per token) stays compact
    assert split_heldout(np.arange(100, dtype=np.uint8), 0.1)[0].dtype == np.uint8


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_split_heldout_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="fraction"):
        split_heldout(list(range(10)), fraction)


# -- the loss ---------------------------------------------------------------------------------------------
def test_log_softmax_is_the_textbook_formula_and_does_not_overflow():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 7))
    textbook = np.log(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(log_softmax(logits), textbook, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_softmax(np.array([[1000.0, 0.0]])), [[0.0, -1000.0]])
    assert np.exp(-log_softmax(np.zeros((4, 28)))[:, 3].mean()) == pytest.approx(28)


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
