"""Corpus, tokens, vocabulary and the two partitioning iterators."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchrnn import data
from scratchrnn.data import (SeqDataLoader, Vocab, check_corpus_fits, load_corpus, num_batches,
                             seq_data_iter_random, seq_data_iter_sequential, tokenize)
from scratchrnn.errors import UserError

SHARED_COPY = Path(__file__).resolve().parents[2] / "shared" / "data" / "timemachine.txt"


def test_bundled_book_is_the_time_machine():
    digest = hashlib.sha1(data.time_machine_path().read_bytes()).hexdigest()
    assert digest == data.TIME_MACHINE_SHA1 == "090b5e7e70c295757f55df93cb0a180b9691891a"


@pytest.mark.skipif(not SHARED_COPY.exists(), reason="../shared/data not beside this checkout")
def test_bundled_book_equals_the_shared_copy():
    assert data.time_machine_path().read_bytes() == SHARED_COPY.read_bytes()


def test_chapter_cleaning_keeps_lower_case_letters_and_single_spaces():
    assert data.clean_lines("The Time-Machine, by H. G. Wells [1898]\n") == ["the time machine by h g wells"]
    assert data.clean_lines("a\n\nB") == ["a", "", "b"]
    assert data.clean_lines("Ünïcode ok?", "raw") == ["Ünïcode ok?"]


def test_char_vocabulary_of_the_book_is_the_chapters():
    corpus, vocab = load_corpus()
    assert len(vocab) == 28
    assert vocab.idx_to_token[:6] == ["<unk>", " ", "e", "t", "a", "i"]   # by falling frequency
    assert vocab.to_tokens(corpus[:13]) == list("the time mach")
    assert len(load_corpus(max_tokens=10000)[0]) == 10000


def test_vocab_unknown_reserved_min_freq_and_round_trip():
    tokens = tokenize(["a a a b b c"], "word")
    vocab = Vocab(tokens, min_freq=2, reserved_tokens=["<pad>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "a", "b"]   # c is below min_freq
    assert vocab["c"] == vocab.unk == 0
    assert vocab[["a", "b", "zzz"]] == [2, 3, 0]
    assert vocab.to_tokens([3, 2]) == ["b", "a"]
    assert Vocab.from_tokens_list(vocab.idx_to_token).token_to_idx == vocab.token_to_idx


def test_tokenize_words_and_chars():
    assert tokenize(["the time", "machine"], "word") == [["the", "time"], ["machine"]]
    assert tokenize(["ab"], "char") == [["a", "b"]]
    with pytest.raises(ValueError):
        tokenize(["ab"], "byte")


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"caf\xe9 latin-1", "not UTF-8"),
])
def test_unusable_data_files_are_refused_by_name(tmp_path, content, message):
    path = tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_corpus(path)


def test_too_short_corpus_message_names_the_numbers():
    with pytest.raises(UserError) as err:
        check_corpus_fits(100, 32, 35, "sequential")
    assert "100 tokens" in str(err.value) and "32 x 35" in str(err.value)


# -- partitioning: the corpus is 0..n-1, so every token tells where it came from ----------------------
shapes = st.tuples(st.integers(1, 600), st.integers(1, 8), st.integers(1, 12), st.integers(0, 2**31))


@settings(max_examples=150, deadline=None)
@given(shapes)
def test_sequential_batches_continue_each_other_row_by_row(args):
    length, batch_size, num_steps, seed = args
    corpus = np.arange(length)
    batches = list(seq_data_iter_sequential(corpus, batch_size, num_steps, np.random.default_rng(seed)))
    assert len(batches) >= num_batches(length, batch_size, num_steps, "sequential")
    for X, Y in batches:
        assert X.shape == Y.shape == (batch_size, num_steps)
        np.testing.assert_array_equal(Y, X + 1)                        # Y is X shifted by one
        np.testing.assert_array_equal(np.diff(X, axis=1), 1)           # rows are contiguous text
    for (X, Y), (X_next, _) in zip(batches, batches[1:]):
        np.testing.assert_array_equal(X_next[:, 0], X[:, -1] + 1)     # row i goes on in the next batch
    if batches:
        assert batches[0][0][0, 0] <= num_steps                        # offset in [0, num_steps]
        assert batches[-1][1].max() < length


@settings(max_examples=150, deadline=None)
@given(shapes)
def test_random_batches_hold_disjoint_subsequences(args):
    length, batch_size, num_steps, seed = args
    corpus = np.arange(length)
    batches = list(seq_data_iter_random(corpus, batch_size, num_steps, np.random.default_rng(seed)))
    assert len(batches) >= num_batches(length, batch_size, num_steps, "random")
    starts = []
    for X, Y in batches:
        assert X.shape == Y.shape == (batch_size, num_steps)
        np.testing.assert_array_equal(Y, X + 1)
        np.testing.assert_array_equal(np.diff(X, axis=1), 1)
        starts.extend(X[:, 0].tolist())
    assert len(set(starts)) == len(starts)                              # never the same subsequence twice
    if starts:
        offset = min(starts) % num_steps
        assert offset < num_steps
        assert all((s - offset) % num_steps == 0 for s in starts)       # cut on one grid: disjoint
        assert max(starts) + num_steps < length                         # Y stays inside the corpus


def test_random_partitioning_shuffles_and_reshuffles_each_epoch():
    loader = SeqDataLoader(np.arange(5000), 4, 10, "random", seed=1)
    first = [X[:, 0].tolist() for X, _ in loader]
    second = [X[:, 0].tolist() for X, _ in loader]
    flat = [s for batch in first for s in batch]
    assert flat != sorted(flat)
    assert first != second


def test_same_seed_gives_the_same_batches():
    a = [X for X, _ in SeqDataLoader(np.arange(3000), 8, 7, "random", seed=5)]
    b = [X for X, _ in SeqDataLoader(np.arange(3000), 8, 7, "random", seed=5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12), st.sampled_from(["sequential", "random"]), st.integers(0, 999))
def test_the_shortest_corpus_that_fits_always_yields_a_batch(batch_size, num_steps, sampling, seed):
    length = batch_size * num_steps + num_steps + (sampling == "sequential")
    check_corpus_fits(length, batch_size, num_steps, sampling)
    with pytest.raises(UserError):
        check_corpus_fits(length - 1, batch_size, num_steps, sampling)
    loader = SeqDataLoader(np.arange(length), batch_size, num_steps, sampling, seed=seed)
    assert len(list(loader)) >= 1
