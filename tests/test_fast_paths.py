"""The fast paths of the NumPy backend and of generation, held to the plain computations they replace,
and a smoke run of the benchmark. Runs in the core process: imports no deep-learning framework."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from contract import ForwardOnly, _boosted_params

from scratchrnn import backends
from scratchrnn.backends.numpy.backend import scatter_add_rows, softmax_cross_entropy
from scratchrnn.data import Vocab
from scratchrnn.generation import Decoding, generate_ids, predict, vocab_text
from scratchrnn.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent


VARIANTS = [ModelConfig(11, 16, "tanh"), ModelConfig(11, 16, "relu"),
            ModelConfig(11, 16, "tanh", "learned", 5)]


def _backend(config, seed=6):
    return backends.create("numpy", _boosted_params(config, seed=seed), config, dtype="float64")


# -- pieces of the training step ----------------------------------------------------------------------
@pytest.mark.parametrize("num_rows", [5, 300], ids=["one-hot-product", "sorted-runs"])
def test_scatter_add_rows_equals_add_at(num_rows):
    rng = np.random.default_rng(0)
    indices = rng.integers(0, num_rows, 400)
    rows = rng.normal(size=(400, 64))
    expected = np.zeros((num_rows, 64))
    np.add.at(expected, indices, rows)
    np.testing.assert_allclose(scatter_add_rows(indices, rows, num_rows), expected, rtol=1e-12, atol=1e-12)


def test_fused_softmax_cross_entropy_equals_the_textbook_formulas():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 30, (50, 7))          # an unshifted exp of these would overflow in float32
    targets = rng.integers(0, 7, 50)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    expected_loss = -np.mean(np.log(probs[np.arange(50), targets]))
    expected_grad = (probs - np.eye(7)[targets]) / 50
    loss, grad = softmax_cross_entropy(logits.copy(), targets)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-15)


def test_a_batch_long_chain_without_detaching_reaches_the_first_batch():
    """Three chained batches: the third loss' gradient must depend on the first batch's inputs."""
    config = ModelConfig(7, 6)
    params = _boosted_params(config, scale=10)
    rng = np.random.default_rng(2)
    X1, Y1, X2, Y2, X3, Y3 = (rng.integers(0, 7, (2, 4)) for _ in range(6))

    def third_grads(first_inputs):
        backend = backends.create("numpy", params, config, dtype="float64")
        _, _, state = backend.loss_and_grads(first_inputs, Y1, backend.begin_state(2))
        _, _, state = backend.loss_and_grads(X2, Y2, state)
        return backend.loss_and_grads(X3, Y3, state)[1]

    other_X1 = (X1 + 1) % 7
    assert np.abs(third_grads(X1)["W_hh"] - third_grads(other_X1)["W_hh"]).max() > 1e-8


# -- generation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["greedy", "sample"])
@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: f"{c.activation}-{c.embedding}")
def test_numpy_decode_equals_stepping_forward(config, strategy):
    backend = _backend(config)
    decoding = Decoding(strategy, temperature=0.7, top_k=5, seed=4)
    prefixes = [[1, 2, 3], [4], [5, 6, 7], [8, 9]]
    fast = generate_ids(backend, prefixes, 25, decoding)
    assert fast == generate_ids(ForwardOnly(backend), prefixes, 25, decoding)
    assert len({tok for row in fast for tok in row[3:]}) > 1


def test_batched_generation_equals_one_prefix_at_a_time():
    """Prefixes of equal length share one forward call when read; each row must still be its own."""
    backend = _backend(ModelConfig(11, 16))
    prefixes = [[1, 2, 3], [4, 5, 6], [7], [8, 9, 10], [2]]
    together = generate_ids(backend, prefixes, 20)
    alone = [generate_ids(backend, [ids], 20)[0] for ids in prefixes]
    assert together == alone


@pytest.mark.parametrize("use_decode", [True, False], ids=["decode", "generic"])
def test_zero_tokens_returns_the_prefixes(use_decode):
    backend = _backend(ModelConfig(11, 16))
    model = backend if use_decode else ForwardOnly(backend)
    assert generate_ids(model, [[1, 2], [3]], 0) == [[1, 2], [3]]


def test_streaming_writes_the_same_text_as_it_returns(tmp_path):
    config = ModelConfig(11, 16)
    vocab = Vocab.from_tokens_list(["<unk>", " ", *"abcdefghi"])
    backend = _backend(config)
    path = tmp_path / "stream.txt"
    with open(path, "w") as stream:
        text = predict(backend, vocab, "abc", 30, stream=stream)
    assert path.read_text() == text + "\n"
    assert text == vocab_text(vocab, generate_ids(ForwardOnly(backend), [vocab[list("abc")]], 30)[0])


# -- the benchmark ------------------------------------------------------------------------------------
def test_benchmark_quick_run_writes_a_sane_report(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--impls", "numpy",
               "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "train b32 tok/s" in done.stdout
    report = json.loads(out.read_text())
    numpy_results = report["results"]["numpy"]
    for key in ("train_b32_tokens_per_s", "train_b256_tokens_per_s", "gen_1_chars_per_s",
                "gen_64_chars_per_s", "peak_rss_mb"):
        assert numpy_results[key] > 0, key
    assert report["gemm_gflops"]["numpy"] > 0
    # the fraction is computed (its size depends on the machine's load, so only its sign is checked)
    assert report["ratios_to_chapter"]["numpy"]["train_b256_fraction_of_gemm"] > 0
    assert "torch" not in report["gemm_gflops"]          # no torch implementation asked for, none started
