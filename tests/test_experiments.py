"""The exercises as experiments: exercise 1's identity, divergence handling, and every
``scratchrnn experiment NAME --quick`` end to end (numpy backend only, seconds each)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from scratchrnn import backends
from scratchrnn.cli import main
from scratchrnn.data import load_corpus
from scratchrnn.errors import UserError
from scratchrnn.experiments import EXPERIMENTS, run_experiment
from scratchrnn.experiments.harness import Context, train_run
from scratchrnn.experiments.registry import REPORT_NAME, RESULTS_NAME
from scratchrnn.experiments.report import Report
from scratchrnn.model import ModelConfig, init_params

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- exercise 1: one-hot inputs are an embedding lookup -------------------------------------------------
def test_one_hot_times_W_xh_is_the_row_gather_of_W_xh():
    rng = np.random.default_rng(0)
    vocab_size, hidden = 28, 17
    W_xh = rng.normal(size=(vocab_size, hidden))
    tokens = rng.integers(0, vocab_size, size=500)
    one_hot = np.eye(vocab_size)[tokens]
    # exactly equal: each output is one weight times 1 plus zeros
    np.testing.assert_array_equal(one_hot @ W_xh, W_xh[tokens])


def _boosted(config: ModelConfig, seed: int) -> dict:
    """float64 weights large enough that the logits differ a lot between tokens."""
    rng = np.random.default_rng(seed)
    return {name: (value * 40 if name.startswith("W") else rng.normal(0, 0.3, value.shape))
            for name, value in init_params(config, seed, np.float64).items()}


def _logits_and_loss(params, config, X, Y):
    backend = backends.create("numpy", params, config, dtype="float64")
    logits, state = backend.forward(X, backend.begin_state(X.shape[0]))
    # a second batch that starts from the carried state
    logits2, _ = backend.forward(X[:, ::-1].copy(), state)
    loss, grads, _ = backend.loss_and_grads(X, Y, backend.begin_state(X.shape[0]))
    return np.concatenate([logits, logits2]), loss, grads


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_learned_embedding_set_to_identity_gives_the_one_hot_models_logits(activation):
    vocab_size, hidden = 9, 6
    onehot = ModelConfig(vocab_size, hidden, activation)
    params = _boosted(onehot, seed=5)
    rng = np.random.default_rng(1)
    X, Y = rng.integers(0, vocab_size, (4, 7)), rng.integers(0, vocab_size, (4, 7))
    reference, ref_loss, ref_grads = _logits_and_loss(params, onehot, X, Y)

    # W_emb = I (vocab x vocab): the embedding of token x is the one-hot vector itself
    as_identity = ModelConfig(vocab_size, hidden, activation, "learned", embed_dim=vocab_size)
    logits, loss, grads = _logits_and_loss({**params, "W_emb": np.eye(vocab_size)}, as_identity, X, Y)
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-12)
    assert loss == pytest.approx(ref_loss, abs=1e-12)
    np.testing.assert_allclose(grads["W_xh"], ref_grads["W_xh"], atol=1e-12)

    # the embedding table initialised to W_xh, followed by an identity W_xh (embed_dim = hidden)
    as_table = ModelConfig(vocab_size, hidden, activation, "learned", embed_dim=hidden)
    logits, loss, grads = _logits_and_loss({**params, "W_emb": params["W_xh"], "W_xh": np.eye(hidden)},
                                           as_table, X, Y)
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-12)
    # the gradient of the table's rows is the one-hot model's gradient of W_xh's rows
    np.testing.assert_allclose(grads["W_emb"], ref_grads["W_xh"], atol=1e-12)

    # and the check can fail: another table gives other logits
    other = {**params, "W_emb": np.eye(vocab_size)[::-1].copy()}
    logits, _, _ = _logits_and_loss(other, as_identity, X, Y)
    assert np.max(np.abs(logits - reference)) > 1e-3


# -- divergence is recorded, never raised ----------------------------------------------------------------
def _quiet_context(tmp_path, **changes) -> Context:
    return Context("test", tmp_path, quick=True, log=lambda line: None, **changes)


def test_a_nan_loss_is_recorded_as_divergence(tmp_path):
    ctx = _quiet_context(tmp_path)
    corpus, vocab = ctx.corpus()
    spec = ctx.base_spec("relu, huge lr", 5, epochs=5, activation="relu", lr=1e4, clip=None)
    outcome = train_run(ctx, spec, corpus, vocab)
    assert outcome.diverged_epoch == 1
    assert "loss became" in outcome.diverged_reason
    assert outcome.status().startswith("diverged at epoch 1")
    assert outcome.history == []  # no finite epoch to report


def test_a_runaway_perplexity_is_recorded_as_divergence(tmp_path):
    ctx = _quiet_context(tmp_path)
    corpus, vocab = ctx.corpus()
    spec = ctx.base_spec("tanh, lr 100", 5, epochs=5, lr=100.0, clip=None)
    outcome = train_run(ctx, spec, corpus, vocab)
    assert outcome.diverged_epoch is not None and outcome.diverged_epoch < 5
    assert "uniform guessing" in outcome.diverged_reason
    assert outcome.history[-1] > 10 * len(vocab)


def test_a_healthy_run_trains_every_epoch(tmp_path):
    ctx = _quiet_context(tmp_path)
    corpus, vocab = ctx.corpus()
    outcome = train_run(ctx, ctx.base_spec("tanh", 4, epochs=4), corpus, vocab)
    assert not outcome.diverged and len(outcome.history) == 4
    assert outcome.history[-1] < outcome.history[0] < len(vocab) + 1
    assert outcome.grad_norms and len(outcome.batch_seconds) > 1


def test_report_tables_escape_pipes():
    report = Report("t", "e")
    report.table(["a", "b"], [["x|y", 1.5]])
    assert "| x\\|y | 1.50 |" in report.render()


# -- every experiment's --quick form through the CLI ---------------------------------------------------
@pytest.fixture(scope="module")
def other_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "other.txt"
    lines = ["The Martians came down in their cylinders upon the common at Horsell.",
             "No one would have believed that this world was being watched keenly.",
             "The narrator walked home through the pine woods in the evening light."]
    path.write_text("\n".join(lines * 20) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_quick_experiment_writes_a_report_with_a_table_and_plots(name, tmp_path, other_text, capsys):
    out = tmp_path / name
    argv = ["experiment", name, "--quick", "--out", str(out)]
    if name == "other-text":
        argv += ["--data", str(other_text)]
    assert main(argv) == 0
    report = out / REPORT_NAME
    assert f"report: {report}" in capsys.readouterr().out
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# ") and "\n|---|" in text
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert images
    for image in images:
        assert (out / image).read_bytes()[:8] == PNG_MAGIC
    results = json.loads((out / RESULTS_NAME).read_text(encoding="utf-8"))
    assert results["experiment"] == name and results["quick"] is True
    assert f"scratchrnn experiment {name}" in text


def test_quick_no_clip_report_records_divergence_as_a_result(tmp_path):
    path = run_experiment("no-clip", tmp_path, quick=True, log=lambda line: None)
    text = path.read_text(encoding="utf-8")
    assert "diverged at epoch" in text
    statuses = [run["status"] for run in json.loads((tmp_path / RESULTS_NAME).read_text())["runs"]]
    assert any(s.startswith("finished") for s in statuses) and any(s.startswith("diverged") for s in statuses)


def test_quick_sampling_cold_sampling_is_greedy(tmp_path):
    run_experiment("sampling", tmp_path, quick=True, log=lambda line: None)
    results = json.loads((tmp_path / RESULTS_NAME).read_text())
    assert results["cold_sampling_equals_greedy"] is True
    decoders = {d["decoder"]: d for d in results["decoders"]}
    # one greedy continuation per prefix copy: all the same; sampled ones differ
    assert len(set(decoders["greedy"]["texts"])) == 1
    assert len(set(decoders["alpha=1 (T=1, plain sampling)"]["texts"])) > 1


def test_onehot_experiment_measures_the_identity(tmp_path):
    run_experiment("onehot-vs-embedding", tmp_path, quick=True, log=lambda line: None)
    results = json.loads((tmp_path / RESULTS_NAME).read_text())
    assert results["identity_max_abs_diff"] == 0.0
    assert results["logits_max_abs_diff"] < 1e-12


# -- bad input ------------------------------------------------------------------------------------------
def test_other_text_needs_data(tmp_path, capsys):
    assert main(["experiment", "other-text", "--quick", "--out", str(tmp_path / "o")]) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--data", "/no/such/file.txt"], "not found"),
    (["--out", "FILE"], "not a directory"),
])
def test_bad_paths_are_user_errors(tmp_path, capsys, argv, message):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    assert main(["experiment", "relu", "--quick", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["no-such-experiment"], ["relu", "--epochs", "0"],
                                  ["relu", "--hidden", "-3"], ["relu", "--backend", "theano"]])
def test_bad_options_exit_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", *argv])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_api_refuses_bad_values(tmp_path):
    for kwargs in ({"epochs": 0}, {"hidden": 0}, {"backend": "theano"}):
        with pytest.raises(UserError):
            run_experiment("relu", tmp_path, quick=True, log=lambda line: None, **kwargs)
    with pytest.raises(UserError):
        run_experiment("no-such-experiment", tmp_path)


def test_a_text_too_short_is_a_user_error(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("just a few words here\n")
    argv = ["experiment", "no-detach", "--quick", "--data", str(short), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "too short" in capsys.readouterr().err


def test_experiments_import_no_framework():
    code = ("import sys, scratchrnn.cli, scratchrnn.experiments; "
            "sys.exit(sorted({'torch', 'tensorflow', 'paddle', 'mxnet'} & set(sys.modules)) != [])")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--quick", "--backend", "--data", "--epochs", "--hidden", "--seed"):
        assert option in text
    for name in EXPERIMENTS:
        assert name in text


def test_quick_corpus_loads_like_the_chapter(tmp_path):
    ctx = _quiet_context(tmp_path)
    corpus, vocab = ctx.corpus()
    assert len(vocab) == 28 and len(corpus) == ctx.scale.max_tokens
    again, again_vocab = load_corpus(None, ctx.scale.max_tokens)
    assert vocab.idx_to_token == again_vocab.idx_to_token
    np.testing.assert_array_equal(corpus, again)
