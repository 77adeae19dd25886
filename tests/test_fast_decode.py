"""The compiled greedy decoder (scratchrnn.kernels.decode) held to plain NumPy. Runs in the core process."""
import shutil

import numpy as np
import pytest
from contract import ForwardOnly, _boosted_params

from scratchrnn import backends, kernels
from scratchrnn.kernels import decode as fast_decode
from scratchrnn.data import Vocab
from scratchrnn import generation
from scratchrnn.generation import Decoding, generate_ids, predict, vocab_text
from scratchrnn.model import ModelConfig

needs_kernel = pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")


def test_the_library_is_built_where_there_is_a_c_compiler():
    """`make test` installs the package with pip, which must have compiled the library here."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine")
    assert kernels.load() is not None, kernels.status()


def _random_model(hidden, vocab, seed):
    rng = np.random.default_rng(seed)
    W_step = rng.normal(0, 1.5 / np.sqrt(hidden), (hidden, hidden + vocab)).astype(np.float32)
    input_rows = rng.normal(0, 0.8, (vocab, hidden)).astype(np.float32)
    b_q = rng.normal(0, 0.3, vocab).astype(np.float32)
    return input_rows, W_step, b_q


def _reference(h, logits, input_rows, W_step, b_q, activation, num_tokens):
    """The recurrence written out plainly, in float64: pick, feed back, num_tokens times."""
    hidden = h.shape[1]
    h, logits = h.astype(np.float64), logits.astype(np.float64)
    tokens = []
    for _ in range(num_tokens):
        picked = logits.argmax(axis=1)
        tokens.append(picked)
        z = input_rows[picked] + h @ W_step[:, :hidden]
        h = np.tanh(z) if activation == "tanh" else np.maximum(z, 0)
        logits = h @ W_step[:, hidden:] + b_q
    return np.stack(tokens, axis=1), h, logits


@needs_kernel
@pytest.mark.parametrize("hidden,vocab,batch,threads,activation,num_tokens", [
    (512, 28, 1, 2, "tanh", 40),      # the chapter's model, one stream
    (100, 5, 3, 3, "tanh", 40),       # the last thread's slice is 4 columns wide
    (37, 11, 2, 1, "relu", 40),       # rows and columns that fill no whole vector
    # enough streams for each thread to take a group of rows: groups of 10 and 9 rows, of 9, 9 and 9
    (64, 28, 19, 2, "tanh", 40),
    (40, 7, 27, 3, "tanh", 40),
    # W_hh in panels of 64, 64 and 32 columns (with AVX-512), every other step taken backwards
    (150, 28, 20, 2, "tanh", 40),
    (64, 28, 512, 2, "tanh", 20),   # as many streams as it takes with AVX-512
    # more threads than this machine's cores: they wait for each other, thread 0 goes on alone for a
    # while, they meet again, and it must all come out the same
    (96, 28, 2, 6, "tanh", 3000),
])
def test_kernel_equals_the_plain_recurrence(hidden, vocab, batch, threads, activation, num_tokens):
    input_rows, W_step, b_q = _random_model(hidden, vocab, seed=hidden + batch)
    rng = np.random.default_rng(1)
    h = np.tanh(rng.normal(size=(batch, hidden))).astype(np.float32)
    logits = (h @ W_step[:, hidden:] + b_q).astype(np.float32)
    want_tokens, want_h, want_logits = _reference(h, logits, input_rows, W_step, b_q, activation,
                                                  num_tokens)
    tokens = fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, activation, num_tokens,
                                       threads=threads)
    np.testing.assert_array_equal(tokens, want_tokens)
    assert len(np.unique(tokens)) > 1
    # h and logits are updated in place: the state after the last token, and its logits (to float32
    # rounding, accumulated over the steps: a ReLU state is not bounded by 1)
    np.testing.assert_allclose(h, want_h, rtol=5e-5, atol=5e-5)
    np.testing.assert_allclose(logits, want_logits, rtol=5e-5, atol=5e-5)


@needs_kernel
@pytest.mark.parametrize("batch", [2, 17])      # the threads split the columns; they take rows 9 and 8
def test_a_forced_prompt_is_read_as_the_plain_recurrence_reads_it(batch):
    hidden, vocab = 80, 13
    input_rows, W_step, b_q = _random_model(hidden, vocab, seed=7)
    prompt = np.random.default_rng(batch).integers(0, vocab, (batch, 5))
    h = np.zeros((batch, hidden), np.float32)
    logits = np.zeros((batch, vocab), np.float32)
    tokens = fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 20, forced=prompt,
                                       threads=2)
    # the reference: feed the prompt by hand, then generate from the logits it leaves
    want_h, want_logits = np.zeros((batch, hidden)), None
    for column in prompt.T:
        want_h = np.tanh(input_rows[column] + want_h @ W_step[:, :hidden])
        want_logits = want_h @ W_step[:, hidden:] + b_q
    want_tokens, want_h, want_logits = _reference(want_h, want_logits, input_rows, W_step, b_q, "tanh", 20)
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_allclose(h, want_h, atol=2e-5)
    np.testing.assert_allclose(logits, want_logits, atol=2e-5)


@needs_kernel
def test_two_calls_continue_where_one_call_stops():
    input_rows, W_step, b_q = _random_model(48, 9, seed=3)
    h = np.zeros((2, 48), np.float32)
    logits = np.array([b_q, b_q[::-1]], dtype=np.float32)
    h2, logits2 = h.copy(), logits.copy()
    once = fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 30)
    twice = np.concatenate([fast_decode.greedy_decode(h2, logits2, input_rows, W_step, b_q, "tanh", n)
                            for n in (13, 17)], axis=1)
    np.testing.assert_array_equal(once, twice)


def _float32_backend(config=ModelConfig(11, 64)):
    return backends.create("numpy", _boosted_params(config, seed=5, scale=8), config, dtype="float32")


@needs_kernel
def test_greedy_generation_runs_on_the_kernel_and_says_the_same(monkeypatch):
    monkeypatch.delenv("SCRATCHRNN_NO_KERNEL", raising=False)
    backend = _float32_backend()
    calls = []
    real = fast_decode.greedy_decode
    monkeypatch.setattr(fast_decode, "greedy_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    # prefixes of different lengths, as many as the build takes (a portable build takes one)
    prefixes = [[1, 2, 3], [4], [5, 6]][:fast_decode.max_batch()]
    with_kernel = generate_ids(backend, prefixes, 60)
    assert calls
    monkeypatch.setenv("SCRATCHRNN_NO_KERNEL", "1")
    calls.clear()
    assert generate_ids(backend, prefixes, 60) == with_kernel and not calls
    assert with_kernel == generate_ids(ForwardOnly(backend), prefixes, 60)


@needs_kernel
def test_streamed_text_comes_in_chunks_and_is_the_returned_text(tmp_path, monkeypatch):
    vocab = Vocab.from_tokens_list(["<unk>", " ", *"abcdefghi"])
    backend = _float32_backend()
    path = tmp_path / "stream.txt"
    num_chars = 2 * generation.STREAM_CHUNK + 5
    with open(path, "w") as stream:
        text = predict(backend, vocab, "abc", num_chars, stream=stream)
    assert path.read_text() == text + "\n"
    monkeypatch.setenv("SCRATCHRNN_NO_KERNEL", "1")     # the generic loop, to compare with
    assert text == vocab_text(vocab, generate_ids(ForwardOnly(backend), [vocab[list("abc")]], num_chars)[0])


def test_sampling_float64_gpus_and_many_streams_stay_off_the_compiled_decoder():
    assert kernels.supports("rnn", np.float32, "cpu", "decode", batch=1) == kernels.enabled()
    assert not kernels.supports("rnn", np.float64, "cpu", "decode", batch=1)
    assert not kernels.supports("rnn", np.float32, "cuda", "decode", batch=1)
    assert not kernels.supports("lstm", np.float32, "cpu", "decode", batch=1)
    assert not kernels.supports("rnn", np.float32, "cpu", "decode", batch=fast_decode.max_batch() + 1)
    backend = _float32_backend()
    decoding = Decoding("sample", temperature=0.8, seed=2)
    assert (generate_ids(backend, [[1, 2]], 40, decoding)
            == generate_ids(ForwardOnly(backend), [[1, 2]], 40, decoding))


def test_version_says_whether_the_kernels_are_on(capsys):
    from scratchrnn.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())             # as argparse may wrap it
    assert out.startswith("scratchrnn ") and f"compiled kernels: {kernels.status()}" in out
