"""Corpus, tokens, vocabulary and the two partitioning iterators."""
import collections
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchrnn import data
from scratchrnn.batches import seq_data_iter_random
from scratchrnn.data import (SeqDataLoader, Vocab, check_corpus_fits, load_corpus, num_batches,
                             seq_data_iter_sequential, tokenize)
from scratchrnn.errors import UserError

SHARED_COPY = Path(__file__).resolve().parents[2] / "shared" / "data" / "timemachine.txt"
TIME_MACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"     # the book's file as D2L's data hub serves it


def test_bundled_book_is_the_time_machine():
    digest = hashlib.sha1(data.time_machine_path().read_bytes()).hexdigest()
    assert digest == TIME_MACHINE_SHA1


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
    (b"\xff", "not UTF-8.*byte 0 "),
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


def test_each_epoch_of_sequential_batches_starts_at_a_fresh_offset():
    # an iterator that draws its offset once (or never) still passes the row-by-row checks above
    loader = SeqDataLoader(np.arange(2000), 4, 10, "sequential", seed=0)
    offsets = [int(next(iter(loader))[0][0, 0]) for _ in range(40)]
    assert all(0 <= o <= 10 for o in offsets)
    assert len(set(offsets)) >= 5, offsets      # 40 draws from 11 values
    assert any(o != 0 for o in offsets)


def test_each_epoch_of_random_batches_cuts_on_a_fresh_grid():
    loader = SeqDataLoader(np.arange(2000), 4, 10, "random", seed=0)
    grids = {int(min(X[:, 0].min() for X, _ in loader)) % 10 for _ in range(40)}
    assert len(grids) >= 5, grids


# -- reading a file: streamed, bounded, and the same corpus as reading it whole ------------------------
def _whole_file_load_corpus(path=None, max_tokens=None, cleaning="chapter"):
    """How load_corpus worked before it streamed: read everything, clean line by line, count every
    character, then cut. The streamed version must give the same ids and vocabulary."""
    raw = (data.time_machine_path() if path is None else Path(path)).read_bytes().decode("utf-8")
    if cleaning == "chapter":
        lines = [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in raw.splitlines()]
    else:
        lines = raw.splitlines(keepends=True)
    chars = [ch for line in lines for ch in line]
    by_freq = sorted(collections.Counter(chars).items(), key=lambda item: item[1], reverse=True)
    idx_to_token = ["<unk>"] + [tok for tok, _ in by_freq]
    index = {tok: i for i, tok in enumerate(idx_to_token)}
    ids = [index[ch] for ch in chars]
    return (ids[:max_tokens] if max_tokens else ids), idx_to_token


@pytest.mark.parametrize("max_tokens", [10000, None, 1, 3000])
@pytest.mark.parametrize("cleaning", ["chapter", "raw"])
def test_the_book_loads_as_it_did_read_whole(max_tokens, cleaning):
    corpus, vocab = load_corpus(None, max_tokens, cleaning=cleaning)
    want, want_tokens = _whole_file_load_corpus(None, max_tokens, cleaning)
    assert vocab.idx_to_token == want_tokens
    assert corpus.dtype == np.uint8
    np.testing.assert_array_equal(corpus, want)


text_pieces = st.text(st.sampled_from("aZ ,.\n\r\x0b\x0c\x1c\x85\u2028\t9\xe9"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(text_pieces, st.lists(st.integers(0, 40), max_size=5))
def test_cleaning_in_pieces_equals_cleaning_the_whole_text(text, cuts):
    cuts = sorted(min(c, len(text)) for c in cuts)
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert "".join(data.clean_stream(pieces, "chapter")) == "".join(data.clean_lines(text, "chapter"))
    assert "".join(data.clean_stream(pieces, "raw")) == "".join(data.clean_lines(text, "raw"))


def test_a_character_cut_between_two_reads_decodes(tmp_path):
    path = tmp_path / "utf8.txt"
    path.write_text("h\u00e9llo \u4e16\u754c " * 50, encoding="utf-8")
    assert "".join(data.iter_text(path, chunk_bytes=3)) == path.read_text(encoding="utf-8")
    path.write_bytes("\u00e9t\u00e9 ".encode() * 10 + b"\xc3(")   # 60 good bytes, then a bad pair
    with pytest.raises(UserError, match="byte 60 "):
        list(data.iter_text(path, chunk_bytes=4))


def test_raw_cleaning_drops_control_characters_but_tabs_and_line_ends(tmp_path):
    path = tmp_path / "ctl.txt"
    path.write_bytes("a\tb\r\nc\x1b[31md\x00e\x7f\u0085f\x0c".encode())
    corpus, vocab = load_corpus(path, cleaning="raw")
    assert "".join(vocab.to_tokens(corpus)) == "a\tb\r\nc[31mdef"


def test_large_vocabularies_get_wider_ids(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("".join(chr(0x4e00 + i) for i in range(300)) * 2, encoding="utf-8")
    corpus, vocab = load_corpus(path, cleaning="raw")
    assert len(vocab) == 301 and corpus.dtype == np.uint16
    assert "".join(vocab.to_tokens(corpus[:3])) == "\u4e00\u4e01\u4e02"


def test_compact_corpus_gives_the_same_int64_batches_as_a_list():
    corpus, _ = load_corpus(max_tokens=3000)
    for sampling in ("sequential", "random"):
        compact = list(SeqDataLoader(corpus, 4, 7, sampling, seed=3))
        listed = list(SeqDataLoader(corpus.tolist(), 4, 7, sampling, seed=3))
        assert len(compact) == len(listed) > 0
        for (X, Y), (X2, Y2) in zip(compact, listed):
            assert X.dtype == Y.dtype == np.int64
            np.testing.assert_array_equal(X, X2)
            np.testing.assert_array_equal(Y, Y2)


def test_a_file_behind_a_directory_the_user_cannot_enter_is_refused(tmp_path, monkeypatch):
    # what stat() raises there (root may enter anything, so the test below may skip)
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))
    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(UserError, match="cannot read data file .*: Permission denied"):
        load_corpus(tmp_path / "locked" / "text.txt")


def test_a_directory_a_fifo_and_an_unenterable_directory_are_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_corpus(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load_corpus(fifo)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "text.txt").write_text("hello world " * 100)
    locked.chmod(0)
    try:
        if os.access(locked / "text.txt", os.R_OK):
            pytest.skip("running as a user who may enter any directory")
        with pytest.raises(UserError, match="cannot read data file .*ermission denied"):
            load_corpus(locked / "text.txt")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_a_seed_numpy_cannot_take_is_refused_naming_the_field(seed):
    with pytest.raises(ValueError, match="seed must be"):
        SeqDataLoader(np.arange(100), 2, 3, seed=seed)


BOUNDED_READ = """
import sys, tracemalloc
from scratchrnn import data
def io():
    with open("/proc/self/io") as f:
        return dict(line.split(": ") for line in f.read().splitlines())
# a smaller scan keeps the test fast; what it checks is that reading stops there
data.VOCAB_SCAN_TOKENS = 1 << 18
before = int(io()["rchar"])
tracemalloc.start()
corpus, vocab = data.load_corpus(sys.argv[1], 3000)
peak = tracemalloc.get_traced_memory()[1]
read = int(io()["rchar"]) - before
tracemalloc.reset_peak()
whole, _ = data.load_corpus(sys.argv[2], None, "raw")
print(len(corpus), corpus.dtype, peak, read, len(whole), whole.nbytes, tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_a_large_file_is_read_only_as_far_as_max_tokens_needs_and_held_once_whole(tmp_path):
    path = tmp_path / "large.txt"
    book = data.time_machine_path().read_bytes()
    with open(path, "wb") as out:
        for _ in range(50_000_000 // len(book) + 1):
            out.write(book)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(data.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", BOUNDED_READ, str(path), str(path)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    tokens, dtype, peak, read, whole, whole_bytes, whole_peak = proc.stdout.split()
    # all of it: one byte per character, held once (plus about 30 MB of one piece's working arrays)
    assert int(whole) == int(whole_bytes) == path.stat().st_size
    assert int(whole_peak) < 1.3 * int(whole) + 30 * 2**20, (whole, whole_peak)
    assert (int(tokens), dtype) == (3000, "uint8")
    # the vocabulary's scan and a piece more, not the 50 MB file
    assert int(read) < (1 << 18) * 1.1 + 2 * data.READ_CHUNK_BYTES, read
    assert int(peak) < 50 * 2**20, peak
