"""Decoding beyond greedy: temperature / alpha, top-k, top-p and seeds.

The statistical tests draw from fixed logits through the package's own ``generate_ids`` (a tiny
stand-in model returns the same logits at every step), so they exercise exactly the path the CLI
uses, and they use fixed seeds, so they are deterministic.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from scratchrnn import backends
from scratchrnn.cli import main
from scratchrnn.data import load_corpus
from scratchrnn.errors import UserError
from scratchrnn.generation import Decoding, generate_ids, next_token_probs, predict
from scratchrnn.model import ModelConfig, init_params

# index 0 plays <unk>, which sampling never draws (a logit of -inf says the same)
LOGITS = np.array([-np.inf, 2.0, 1.5, 1.0, 0.3, 0.0, -0.4, -1.0, -2.0, 0.8, 1.2])


class FixedLogitsModel:
    """Answers every step with the same logits, so each generated token is one draw from them.

    It offers just what ``generate_ids`` asks of a backend: its model's shape (a gated cell, so no
    compiled decoder), that it has no loop of its own (``has_fast_decode``), and the state methods.
    """

    has_fast_decode = False

    def __init__(self, logits: np.ndarray):
        self.logits = np.asarray(logits, dtype=np.float64)
        self.config = ModelConfig(len(self.logits), 1, cell="gru")

    def begin_state(self, batch_size):
        return (np.zeros((batch_size, 1)),)

    def forward(self, X, state):
        X = np.asarray(X)
        return np.tile(self.logits, (X.size, 1)), (np.zeros((X.shape[0], 1)),)

    def state_to_numpy(self, state):
        return tuple(np.asarray(s) for s in state)

    def state_from_numpy(self, state):
        return tuple(np.asarray(s) for s in state)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def draw(decoding: Decoding, rows: int = 200, per_row: int = 100) -> np.ndarray:
    """rows x per_row tokens sampled from LOGITS, through generate_ids."""
    out = generate_ids(FixedLogitsModel(LOGITS), [[0]] * rows, per_row, decoding)
    return np.asarray([seq[1:] for seq in out]).reshape(-1)


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic over the categories with positive expected count, and its degrees of freedom."""
    expected = counts.sum() * probs
    used = expected > 0
    assert counts[~used].sum() == 0, "a token with zero probability was drawn"
    stat = float(((counts[used] - expected[used]) ** 2 / expected[used]).sum())
    return stat, int(used.sum()) - 1


def chi_square_critical(df: int, z: float = 3.719) -> float:
    """Upper quantile of chi-square(df) by the Wilson-Hilferty cube approximation (z=3.719: p = 1e-4)."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_frequencies_match_softmax_of_logits_over_temperature(temperature):
    tokens = draw(Decoding("sample", temperature, seed=11))
    counts = np.bincount(tokens, minlength=LOGITS.size)
    stat, df = chi_square(counts, softmax(LOGITS / temperature))
    assert stat < chi_square_critical(df), (stat, df)
    # the test has teeth: the same counts are far from the distribution of another temperature
    wrong_stat, _ = chi_square(counts, softmax(LOGITS / (temperature * 2)))
    assert wrong_stat > 10 * chi_square_critical(df)


def test_chapter_alpha_form_is_temperature_one_over_alpha():
    p = softmax(LOGITS)
    for alpha in (0.5, 2.0, 4.0):
        q = p ** alpha / np.sum(p ** alpha)
        np.testing.assert_allclose(next_token_probs(LOGITS[None], Decoding("sample", 1 / alpha))[0], q,
                                   rtol=1e-12)


def test_temperature_towards_zero_is_greedy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (500, 28))
    logits[:, 0] = -np.inf            # <unk>, which sampling never draws and a trained model never picks
    model = FixedLogitsModel(logits[0])
    for seed in range(5):
        cold = generate_ids(model, [[1]] * 50, 20, Decoding("sample", 1e-6, seed=seed))
        greedy = generate_ids(model, [[1]] * 50, 20, Decoding("greedy"))
        assert cold == greedy
    # and row by row on many different logits
    probs = next_token_probs(logits, Decoding("sample", 1e-6))
    np.testing.assert_array_equal(np.argmax(probs, axis=1), np.argmax(logits, axis=1))
    assert np.all(probs.max(axis=1) == 1.0)


def test_temperature_towards_zero_is_greedy_with_a_real_model():
    corpus, vocab = load_corpus(None, 3000)
    config = ModelConfig(len(vocab), 24)
    rng = np.random.default_rng(1)
    params = {k: v * 30 if k.startswith("W") else rng.normal(0, 0.5, v.shape)
              for k, v in init_params(config, 2, np.float64).items()}
    params["b_q"][0] = -50.0          # <unk>: as unlikely as training makes it (sampling never draws it)
    backend = backends.create("numpy", params, config, dtype="float64")
    greedy = predict(backend, vocab, "time traveller", 60)
    cold = predict(backend, vocab, "time traveller", 60, decoding=Decoding("sample", 1e-6, seed=4))
    warm = predict(backend, vocab, "time traveller", 60, decoding=Decoding("sample", 1.0, seed=4))
    assert cold == greedy
    assert warm != greedy


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_first_sampled_character_of_a_real_model_follows_its_softmax(temperature):
    """The same check through a real backend's own decoding path, on the logits after a prefix."""
    corpus, vocab = load_corpus(None, 3000)
    config = ModelConfig(len(vocab), 24)
    params = {k: v * 30 for k, v in init_params(config, 6, np.float64).items()}
    backend = backends.create("numpy", params, config, dtype="float64")
    prefix = [vocab[ch] for ch in "time traveller"]
    logits, _ = backend.forward(np.asarray([prefix]), backend.begin_state(1))
    last = np.asarray(logits[-1], dtype=np.float64)
    last[vocab.unk] = -np.inf         # sampling never draws <unk>
    expected = softmax(last / temperature)
    draws = generate_ids(backend, [prefix] * 20000, 1, Decoding("sample", temperature, seed=9))
    counts = np.bincount([seq[-1] for seq in draws], minlength=len(vocab))
    stat, df = chi_square(counts, expected)
    assert stat < chi_square_critical(df), (stat, df)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_samples_only_the_k_likeliest_in_softmax_proportions(k):
    tokens = draw(Decoding("sample", 1.0, top_k=k, seed=3))
    allowed = np.argsort(-LOGITS)[:k]
    assert set(np.unique(tokens)) <= set(allowed)
    expected = np.zeros_like(LOGITS)
    expected[allowed] = softmax(LOGITS)[allowed] / softmax(LOGITS)[allowed].sum()
    counts = np.bincount(tokens, minlength=LOGITS.size)
    if k > 1:
        stat, df = chi_square(counts, expected)
        assert stat < chi_square_critical(df)


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9])
def test_top_p_keeps_the_smallest_set_reaching_the_mass(p):
    probs = softmax(LOGITS)
    order = np.argsort(-probs)
    # the smallest prefix of the ranking whose mass reaches p
    size = int(np.searchsorted(np.cumsum(probs[order]), p) + 1)
    allowed = set(order[:size])
    tokens = draw(Decoding("sample", 1.0, top_p=p, seed=5))
    assert set(np.unique(tokens)) == allowed
    restricted = next_token_probs(LOGITS[None], Decoding("sample", 1.0, top_p=p))[0]
    assert set(np.flatnonzero(restricted)) == allowed
    np.testing.assert_allclose(restricted[order[:size]], probs[order[:size]] / probs[order[:size]].sum())


def test_same_seed_same_text_other_seed_other_text():
    first = draw(Decoding("sample", 1.0, seed=21), rows=4, per_row=50)
    again = draw(Decoding("sample", 1.0, seed=21), rows=4, per_row=50)
    other = draw(Decoding("sample", 1.0, seed=22), rows=4, per_row=50)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("bad", [dict(strategy="beam"), dict(temperature=0.0), dict(top_k=0),
                                 dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_decoding_options_are_user_errors(bad):
    with pytest.raises(UserError):
        Decoding(**{"strategy": "sample", **bad})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    code = main(["train", "--epochs", "2", "--hidden", "12", "--max-tokens", "2000", "--batch-size", "8",
                 "--num-steps", "8", "--out", str(run), "--no-progress", "--predict-every", "0", "--json"])
    assert code == 0
    return run


def _generate(capsys, run, *options) -> str:
    capsys.readouterr()
    assert main(["generate", str(run), "--num-chars", "40", *options]) == 0
    return capsys.readouterr().out


def test_cli_sampling_is_reproducible_and_alpha_means_temperature(tiny_checkpoint, capsys):
    run = tiny_checkpoint
    first = _generate(capsys, run, "--strategy", "sample", "--seed", "7")
    assert first == _generate(capsys, run, "--strategy", "sample", "--seed", "7")
    assert first != _generate(capsys, run, "--strategy", "sample", "--seed", "8")
    by_alpha = _generate(capsys, run, "--strategy", "sample", "--alpha", "2", "--seed", "7")
    assert by_alpha == _generate(capsys, run, "--strategy", "sample", "--temperature", "0.5", "--seed", "7")
    greedy = _generate(capsys, run)
    assert greedy == _generate(capsys, run, "--strategy", "sample", "--alpha", "1e6", "--seed", "7")


def test_cli_refuses_bad_sampling_options(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tiny_checkpoint), "--strategy", "sample", "--top-p", "1.5"])
    assert exit_info.value.code == 2
    assert "top-p" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tiny_checkpoint), "--temperature", "0"])
    assert exit_info.value.code == 2


def test_sampling_never_draws_unk():
    from scratchrnn.generation import Decoding, TokenPicker
    # <unk> (index 0) is by far the likeliest here, and still never drawn, at any temperature
    logits = np.tile(np.array([[8.0, 0.0, 0.5, 1.0]]), (2000, 1))
    for temperature in (0.5, 1.0, 3.0):
        picks = TokenPicker(Decoding("sample", temperature, seed=1))(logits)
        assert picks.min() >= 1 and len(set(picks.tolist())) == 3
