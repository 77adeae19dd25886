"""What a run's settings promise, each held to a reference computed here rather than by the code under
test: the seed picks the starting weights (the book's N(0, 0.01) draws, transcribed) and the batch
order (the chapter's sequential partitioning, transcribed); best/ holds the best epoch, not the last;
held-out perplexity carries the state across the chunks it is read in (``plain_reference``); and the
held-out text is scored after the last epoch even where --eval-every does not divide the epochs."""
import json

import numpy as np
import pytest
from plain_reference import plain_heldout_perplexity, plain_loss

from scratchrnn import backends
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.data import load_corpus
from scratchrnn.model import ModelConfig, ModelSettings
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import Run, run
from scratchrnn.training import TrainConfig, evaluate_perplexity


def _config(out, **train) -> RunConfig:
    settings = dict(epochs=2, batch_size=4, num_steps=5, seed=0)
    settings.update(train)
    return RunConfig(out=str(out), dtype="float64", max_tokens=2000, model=ModelSettings(num_hiddens=8),
                     predict_every=0, train=TrainConfig(**settings))


def _quiet(config):
    return run(config, say=lambda line: None, progress=False)


def _book_weights(vocab_size: int, hidden: int, seed: int) -> dict:
    """The book's get_params (8.5) with NumPy's seeded normal: W_xh, W_hh, W_hq ~ N(0, 0.01^2) drawn in
    that order, biases zero."""
    rng = np.random.default_rng(seed)
    W_xh = rng.standard_normal((vocab_size, hidden)) * 0.01
    W_hh = rng.standard_normal((hidden, hidden)) * 0.01
    b_h = np.zeros(hidden)
    W_hq = rng.standard_normal((hidden, vocab_size)) * 0.01
    return {"W_xh": W_xh, "W_hh": W_hh, "b_h": b_h, "W_hq": W_hq, "b_q": np.zeros(vocab_size)}


@pytest.mark.parametrize("seed", [0, 5])
def test_the_seed_picks_the_starting_weights(tmp_path, seed):
    prepared = Run.prepare(_config(tmp_path / "run", seed=seed), None)
    expected = _book_weights(prepared.model.vocab_size, 8, seed)
    got = prepared.backend.get_params()
    for name, value in expected.items():
        # drawn in float64 and kept in float32 (the draw's precision), then trained in float64
        np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-12, err_msg=name)
    assert not np.allclose(_book_weights(28, 8, 0)["W_xh"], _book_weights(28, 8, 5)["W_xh"])


def _sequential_batches(corpus, batch_size: int, num_steps: int, seed: int):
    """The chapter's seq_data_iter_sequential, transcribed: a random offset in [0, num_steps] from the
    seeded generator, the rest cut into batch_size rows read num_steps at a time."""
    offset = int(np.random.default_rng(seed).integers(0, num_steps + 1))
    tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    xs = np.asarray(corpus[offset:offset + tokens]).reshape(batch_size, -1)
    return [xs[:, i:i + num_steps] for i in range(0, num_steps * (xs.shape[1] // num_steps), num_steps)]


def test_the_seed_picks_the_batch_order(tmp_path):
    offsets = {seed: int(np.random.default_rng(seed).integers(0, 6)) for seed in (1, 2)}
    assert offsets[1] != offsets[2]           # the two seeds cut the text differently
    for seed in offsets:
        prepared = Run.prepare(_config(tmp_path / f"run{seed}", seed=seed), None)
        expected = _sequential_batches(prepared.corpus.train, 4, 5, seed)
        got = [X for X, _ in prepared.loader]
        assert len(got) == len(expected)
        for X, want in zip(got, expected):
            np.testing.assert_array_equal(X, want)


def test_best_holds_the_best_epoch_not_the_last(tmp_path):
    # lr 4 without clipping in float64: the first epoch scores best, the later ones worse (deterministic)
    out = tmp_path / "run"
    outcome = _quiet(_config(out, epochs=4, lr=4.0, clip=None, seed=1))
    perplexities = [r["train_perplexity"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    best_epoch = int(np.argmin(perplexities)) + 1
    assert best_epoch < len(perplexities), perplexities          # the last epoch is not the best
    best, last = load_checkpoint(out, "best"), load_checkpoint(out, "last")
    assert best.info["epoch"] == best_epoch == outcome.state.best["epoch"]
    assert outcome.state.best["score"] == pytest.approx(min(perplexities), rel=1e-12)
    assert last.info["epoch"] == 4
    assert any(not np.array_equal(best.params[k], last.params[k]) for k in best.params)


def test_heldout_perplexity_carries_the_state_across_chunks():
    corpus, vocab = load_corpus(None, 700)
    config = ModelConfig(len(vocab), 6)
    rng = np.random.default_rng(2)
    # weights large enough that the state carried over changes every prediction
    params = {name: rng.normal(0, 0.8, shape) for name, shape in config.param_shapes().items()}
    backend = backends.create("numpy", params, config, dtype="float64")
    heldout = np.asarray(corpus[:600], dtype=np.int64)
    expected = plain_heldout_perplexity(params, config, heldout, batch_size=4)
    # read 7 tokens at a time, the state carried from each chunk to the next
    assert evaluate_perplexity(backend, heldout, 4, 7) == pytest.approx(expected, rel=1e-10)
    # a reading that restarts the state at every chunk is measurably different
    rows = (len(heldout) - 1) // 4
    X, Y = heldout[:rows * 4].reshape(4, rows), heldout[1:rows * 4 + 1].reshape(4, rows)
    restarted = np.exp(np.mean([plain_loss(params, config, X[:, i:i + 7], Y[:, i:i + 7])
                                for i in range(0, rows - rows % 7, 7)]))
    assert abs(restarted / expected - 1) > 1e-3


def test_the_last_epoch_is_scored_when_eval_every_does_not_divide_the_epochs(tmp_path):
    outcome = _quiet(_config(tmp_path / "run", epochs=5, eval_every=2))
    scored = [r["epoch"] for r in outcome.history if r["val_perplexity"] is not None]
    assert scored == [2, 4, 5]
    # and the last score is the held-out text's perplexity under the last weights
    last = load_checkpoint(tmp_path / "run", "last")
    corpus, _ = load_corpus(None, 4000)
    expected = plain_heldout_perplexity(last.params, last.model, corpus[2000:], 4)
    assert outcome.history[-1]["val_perplexity"] == pytest.approx(expected, rel=1e-9)


def test_train_seed_reaches_the_weights_from_the_command_line(tmp_path, capsys):
    from scratchrnn.cli import main
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--seed", "5", "--epochs", "1", "--hidden", "8", "--max-tokens", "2000",
                 "--batch-size", "4", "--num-steps", "5", "--predict-every", "0", "--no-progress", "--json"]) == 0
    capsys.readouterr()
    saved = load_checkpoint(out, "last").train_state["run"]["train"]
    assert saved["seed"] == 5
    prepared = Run.prepare(_config(tmp_path / "again", seed=saved["seed"], epochs=1), None)
    assert np.allclose(prepared.backend.get_params()["W_xh"], _book_weights(28, 8, 5)["W_xh"], rtol=1e-6)
