"""Run directories end to end: a run stopped any way -- after some epochs, by Ctrl-C inside an epoch,
by kill -9 at any point of a save -- and resumed gives the same epochs and weights as a run never
stopped (float64, to 1e-9)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plain_reference import plain_heldout_perplexity

from scratchrnn import faults
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.data import load_corpus
from scratchrnn.errors import UserError
from scratchrnn.model import ModelSettings
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import resume, run
from scratchrnn.training import TrainConfig

SRC = str(Path(__file__).resolve().parents[1] / "src")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _config(out, epochs=4, sampling="sequential", optimizer="sgd", **train) -> RunConfig:
    lr = 0.01 if optimizer == "adam" else 1.0
    return RunConfig(out=str(out), dtype="float64", max_tokens=3000, model=ModelSettings(num_hiddens=16),
                     predict_every=0, num_chars=10,
                     train=TrainConfig(epochs=epochs, batch_size=8, num_steps=10, sampling=sampling,
                                       optimizer=optimizer, lr=lr, seed=3, **train))


def _quiet_run(config, mode="new"):
    return run(config, mode, say=lambda line: None, progress=False)


def _epochs(out) -> list[tuple]:
    lines = Path(out, "metrics.jsonl").read_text().splitlines()
    return [(r["epoch"], r["train_perplexity"], r["val_perplexity"]) for r in map(json.loads, lines)]


def _assert_same_run(out, reference):
    got, want = _epochs(out), _epochs(reference)
    assert [e for e, *_ in got] == [e for e, *_ in want]
    np.testing.assert_allclose([p for _, p, _ in got], [p for _, p, _ in want], rtol=1e-9)
    np.testing.assert_allclose([v for *_, v in got], [v for *_, v in want], rtol=1e-9)
    ours, theirs = load_checkpoint(out, "last").params, load_checkpoint(reference, "last").params
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One run never stopped, per (sampling, optimizer)."""
    made = {}

    def get(sampling, optimizer):
        if (sampling, optimizer) not in made:
            out = tmp_path_factory.mktemp(f"whole-{sampling}-{optimizer}")
            _quiet_run(_config(out, sampling=sampling, optimizer=optimizer))
            made[sampling, optimizer] = out
        return made[sampling, optimizer]
    return get


@pytest.mark.parametrize("sampling", ["sequential", "random"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_stopped_after_k_epochs_and_resumed_equals_one_run(tmp_path, uninterrupted, sampling, optimizer):
    reference = uninterrupted(sampling, optimizer)
    _quiet_run(_config(tmp_path, epochs=2, sampling=sampling, optimizer=optimizer))
    assert len(_epochs(tmp_path)) == 2
    outcome = _quiet_run(RunConfig(out=str(tmp_path), train=TrainConfig(epochs=4)), "resume")
    assert outcome.status == "finished"
    _assert_same_run(tmp_path, reference)
    # both runs score held-out text with the same code: the last score is held to the plain reading
    # of the text after the training slice (3000 tokens, 8 rows) under the last weights
    last = load_checkpoint(tmp_path, "last")
    corpus, _ = load_corpus(None, 6000)
    expected = plain_heldout_perplexity(last.params, last.model, corpus[3000:], 8)
    assert _epochs(tmp_path)[-1][2] == pytest.approx(expected, rel=1e-9)


def test_a_deep_lstm_with_dropout_resumes_exactly(tmp_path):
    """The dropout masks' generator is part of the saved state: masks after the resume are the ones an
    uninterrupted run draws."""
    def config(out, epochs):
        cfg = _config(out, epochs=epochs, optimizer="adam")
        cfg.model = ModelSettings(num_hiddens=12, cell="lstm", num_layers=2, dropout=0.3)
        return cfg
    _quiet_run(config(tmp_path / "whole", 3))
    _quiet_run(config(tmp_path / "parts", 1))
    resume(str(tmp_path / "parts"), epochs=3, say=lambda line: None, progress=False)
    _assert_same_run(tmp_path / "parts", tmp_path / "whole")


def test_a_run_saved_by_an_earlier_scratchrnn_resumes_exactly(tmp_path):
    """fixtures/v2-run-interrupted was written before the model's settings became one dataclass (its
    saved settings hold ``init`` and ``forget_bias`` beside ``model``), and stopped by Ctrl-C inside
    its second epoch of three: a float64 LSTM, scaled init, forget bias 1, dropout 0.2, Adam, on the
    book's first 1,000 characters. Resumed, it trains what a run never stopped trains, and saves its
    settings as this scratchrnn writes them."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURES / "v2-run-interrupted", old, symlinks=True)
    resume(str(old), say=lambda line: None, progress=False)      # the 3 epochs it was started with
    settings = ModelSettings(num_hiddens=8, cell="lstm", dropout=0.2, init="scaled", forget_bias=1.0)
    _quiet_run(RunConfig(out=str(tmp_path / "whole"), dtype="float64", max_tokens=1000, model=settings,
                         predict_every=0, train=TrainConfig(epochs=3, batch_size=4, num_steps=5, seed=3,
                                                            optimizer="adam", lr=0.01)))
    _assert_same_run(old, tmp_path / "whole")
    saved = load_checkpoint(old, "last").train_state["run"]
    assert saved["model"] == settings.to_dict() and "init" not in saved and "forget_bias" not in saved


@pytest.mark.parametrize("edit, fragment", [
    (lambda run: run.update(model="lstm"), "model must be a mapping"),
    (lambda run: run["model"].update(cell="transformer"), "cell must be one of"),
    (lambda run: run["model"].update(num_hiddens="8"), "num_hiddens"),
    (lambda run: run.update(forget_bias="open"), "forget_bias must be a number"),      # the older layout
    (lambda run: run["model"].update(cell="rnn"), "forget_bias is for the lstm cell"),
    (lambda run: run.update(train=[]), "a mapping 'train'"),
])
def test_a_saved_run_with_settings_no_run_can_have_is_refused_naming_them(tmp_path, edit, fragment):
    run_dir = tmp_path / "old"
    shutil.copytree(FIXTURES / "v2-run-interrupted", run_dir, symlinks=True)
    config_path = run_dir / "last" / "config.json"
    config = json.loads(config_path.read_text())
    edit(config["train_state"]["run"])
    config_path.write_text(json.dumps(config))
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(UserError, match="training state this scratchrnn cannot use") as refused:
        resume(str(run_dir), say=lambda line: None, progress=False)
    assert fragment in str(refused.value)
    assert sorted(p.name for p in run_dir.iterdir()) == before and (run_dir / "metrics.jsonl").exists()


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_ctrl_c_inside_an_epoch_saves_and_resumes_exactly(tmp_path, uninterrupted, monkeypatch, sampling):
    reference = uninterrupted(sampling, "adam")
    # a first Ctrl-C arriving after the 45th batch: the middle of the second epoch (about 35 a epoch)
    monkeypatch.setenv(faults.ENV, "train.batch-end:after-45-sigint")
    monkeypatch.setattr(faults, "_seen", {})
    outcome = _quiet_run(_config(tmp_path, sampling=sampling, optimizer="adam"))
    assert outcome.status == "interrupted"
    assert any("--resume" in note for note in outcome.notes)
    saved = load_checkpoint(tmp_path, "last").train_state["progress"]
    assert saved["epoch"] == 1 and saved["batch"] > 0        # it stopped inside epoch 2
    assert Path(tmp_path, "perplexity.png").exists() and len(_epochs(tmp_path)) == 1
    monkeypatch.delenv(faults.ENV)
    resume(str(tmp_path), say=lambda line: None, progress=False)    # as many epochs as it was started with
    _assert_same_run(tmp_path, reference)


def _cli(args, env_extra=None, timeout=240):
    env = {**os.environ, "PYTHONPATH": SRC, **(env_extra or {})}
    env.pop(faults.ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "scratchrnn", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


TINY = ["--dtype", "float64", "--max-tokens", "3000", "--hidden", "16", "--batch-size", "8",
        "--num-steps", "10", "--epochs", "4", "--seed", "3", "--predict-every", "0", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["checkpoint.staging-created:after-2-kill",
                                   "checkpoint.pointer-created:after-3-kill",
                                   "checkpoint.pointer-swapped:after-4-kill",
                                   "train.batch-end:after-60-kill"])
def test_kill_at_any_point_loses_at_most_an_epoch(tmp_path, uninterrupted, point):
    reference = uninterrupted("sequential", "sgd")
    out = tmp_path / "run"
    killed = _cli(["train", *TINY, "--out", str(out)], {faults.ENV: point})
    assert killed.returncode == -9, killed.stderr
    last, best = load_checkpoint(out, "last"), load_checkpoint(out, "best")   # both load
    done = last.train_state["progress"]["epoch"]
    # an epoch's metrics line is written before its save: the kill came at or after the end of the
    # epochs recorded, so last/ holds the last of them or, killed inside its save, the one before
    recorded = [r["epoch"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
    assert recorded == list(range(1, len(recorded) + 1)) and 1 <= len(recorded) < 4
    assert len(recorded) - 1 <= done <= len(recorded) and done >= 1
    assert 1 <= best.info["epoch"] <= len(recorded)
    finished = _cli(["train", "--resume", str(out), "--no-progress"])
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr
    _assert_same_run(out, reference)


@pytest.mark.slow
def test_ctrl_c_on_the_command_line(tmp_path):
    out = tmp_path / "run"
    stopped = _cli(["train", *TINY, "--out", str(out)], {faults.ENV: "train.batch-end:after-45-sigint"})
    assert stopped.returncode == 130
    assert "Traceback" not in stopped.stderr
    assert f"scratchrnn train --resume {out}" in stopped.stderr
    assert (out / "perplexity.png").exists() and (out / "metrics.jsonl").exists()
    again = _cli(["train", "--resume", str(out), "--hidden", "32"])
    assert again.returncode == 2 and "--hidden" in again.stderr
    finished = _cli(["train", "--resume", str(out), "--no-progress", "--json"])
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["epochs"] == 4 and summary["best"]["by"] == "train"


def test_resume_refuses_a_finished_run_and_changed_text(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text("the quick brown fox jumps over the lazy dog\n" * 80)
    config = RunConfig(out=str(tmp_path / "run"), data=str(data), model=ModelSettings(num_hiddens=8),
                       predict_every=0, train=TrainConfig(epochs=2, batch_size=4, num_steps=8))
    _quiet_run(config)
    with pytest.raises(UserError, match="has done its 2 epochs"):
        resume(config.out, say=lambda line: None, progress=False)
    data.write_text("the quick brown fox jumps over the lazy cat\n" * 80)
    with pytest.raises(UserError, match="not the one the run"):
        _quiet_run(RunConfig(out=config.out, train=TrainConfig(epochs=3)), "resume")


def test_defaults_for_a_text_of_ones_own(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text("To be, or not to be: that is the question.\n" * 60)
    outcome = _quiet_run(RunConfig(out=str(tmp_path / "run"), data=str(data), model=ModelSettings(num_hiddens=8),
                                   predict_every=0, train=TrainConfig(epochs=2, batch_size=4, num_steps=8)))
    cfg = outcome.config
    assert (cfg.cleaning, cfg.max_tokens, cfg.val_fraction, cfg.best_by) == ("raw", "all", 0.1, "val")
    assert all(r["val_perplexity"] is not None for r in outcome.history)   # scored every epoch
    assert list(outcome.samples) == ["To be, or not"]        # the text's own first words
    assert outcome.state.best["by"] == "val"
