"""Steps alongside epochs: evaluations and checkpoints inside an epoch, --max-steps and --max-minutes,
checkpoints named by epoch and step, --keep; a run paused, stopped or killed inside an epoch and
resumed is the run never stopped (float64, to 1e-9)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import faults
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.errors import UserError
from scratchrnn.model import ModelSettings
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import run
from scratchrnn.training import TrainConfig

SRC = str(Path(__file__).resolve().parents[1] / "src")
FIRST_EPOCH = 37              # steps of the first epoch: 3,000 tokens in batches of 8 x 10, seed 3's offset


def _config(out, epochs=3, sampling="sequential", max_steps=0, eval_every_steps=0, **options) -> RunConfig:
    return RunConfig(out=str(out), dtype="float64", max_tokens=3000, model=ModelSettings(num_hiddens=16),
                     predict_every=0, num_chars=10, **options,
                     train=TrainConfig(epochs=epochs, batch_size=8, num_steps=10, sampling=sampling,
                                       optimizer="adam", lr=0.01, seed=3, max_steps=max_steps,
                                       eval_every_steps=eval_every_steps))


def _quiet(config, mode="new"):
    return run(config, mode, say=lambda line: None, progress=False)


def _records(out) -> list[dict]:
    return [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]


def _assert_same(out, reference, kinds=("epoch", "step")):
    """The same metrics (those of ``kinds``) and the same weights in last/."""
    def pick(records):
        return [r for r in records if (r.get("kind") or "epoch") in kinds]
    got, want = pick(_records(out)), pick(_records(reference))
    assert [(r.get("kind"), r["epoch"], r.get("step")) for r in got] == \
           [(r.get("kind"), r["epoch"], r.get("step")) for r in want]
    for key in ("train_perplexity", "val_perplexity"):
        np.testing.assert_allclose([r[key] for r in got], [r[key] for r in want], rtol=1e-9, err_msg=key)
    ours, theirs = load_checkpoint(out, "last").params, load_checkpoint(reference, "last").params
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_evaluations_and_checkpoints_inside_epochs_leave_the_run_unchanged(tmp_path, sampling):
    """Pausing every few steps (an evaluation, a checkpoint with the carried state) is invisible to
    training: the epochs and the weights are those of the run that never paused."""
    _quiet(_config(tmp_path / "plain", sampling=sampling))
    paused = _config(tmp_path / "paused", sampling=sampling, eval_every_steps=6, checkpoint_every_steps=4, keep=3)
    outcome = _quiet(paused)
    _assert_same(tmp_path / "paused", tmp_path / "plain", kinds=("epoch",))
    steps = [r for r in _records(tmp_path / "paused") if r.get("kind") == "step"]
    assert steps and all(r["step"] % 6 == 0 for r in steps)
    assert all(r["val_perplexity"] > 1 and r["train_perplexity"] > 1 for r in steps)
    assert 0 < steps[0]["epoch"] < 1 and [r["step"] for r in steps] == sorted(r["step"] for r in steps)
    # checkpoints are named by epochs and steps done: last/ at the end, the 3 newest besides
    state = outcome.state
    assert os.readlink(tmp_path / "paused" / "last") == f"ckpt-e3-s{state.step}"
    versions = sorted(p.name for p in (tmp_path / "paused").glob("ckpt-*"))
    assert all(re.fullmatch(r"ckpt-e\d-s\d+", name) for name in versions)
    pointed = {os.readlink(tmp_path / "paused" / name) for name in ("last", "best")}
    assert len(set(versions) - pointed) <= 3 and len(versions) >= 4


def test_max_steps_ends_inside_an_epoch_and_a_resume_with_more_steps_is_one_run(tmp_path):
    whole = _config(tmp_path / "whole", max_steps=80, eval_every_steps=9, checkpoint_every_steps=7)
    _quiet(whole)
    part = _config(tmp_path / "part", max_steps=50, eval_every_steps=9, checkpoint_every_steps=7)
    outcome = _quiet(part)
    assert outcome.status == "finished" and outcome.stopped_by == "max_steps"
    saved = load_checkpoint(tmp_path / "part", "last").train_state["progress"]
    assert (saved["epoch"], saved["batch"], saved["step"]) == (1, 50 - FIRST_EPOCH, 50)
    with pytest.raises(UserError, match="has taken its 50 steps"):
        _quiet(RunConfig(out=str(tmp_path / "part")), "resume")
    with pytest.raises(UserError, match="max_steps 40 is below the 50"):
        _quiet(RunConfig(out=str(tmp_path / "part"), train=TrainConfig(epochs=0, max_steps=40)), "resume")
    resumed = _quiet(RunConfig(out=str(tmp_path / "part"), train=TrainConfig(epochs=0, max_steps=80)), "resume")
    assert resumed.state.step == 80 and resumed.stopped_by == "max_steps"
    _assert_same(tmp_path / "part", tmp_path / "whole")


def test_epochs_cannot_be_lowered_on_resume(tmp_path):
    _quiet(_config(tmp_path, epochs=3, max_steps=40))
    with pytest.raises(UserError, match="epochs 2 is below the 3"):
        _quiet(RunConfig(out=str(tmp_path), train=TrainConfig(epochs=2, max_steps=60)), "resume")


def test_a_time_budget_stops_after_a_batch_saves_and_resumes_exactly(tmp_path, monkeypatch):
    """max_minutes as good as spent from the start: the run stops after its first batch, as a first
    Ctrl-C would, but finishes (status, samples) and says how to continue; resumed, it is one run."""
    _quiet(_config(tmp_path / "whole", epochs=2))
    budget = _config(tmp_path / "budget", epochs=2, max_minutes=1e-9)
    outcome = _quiet(budget)
    assert outcome.status == "finished" and outcome.stopped_by == "max_minutes"
    assert any("max_minutes" in note and f"--resume {tmp_path / 'budget'}" in note for note in outcome.notes)
    progress = load_checkpoint(tmp_path / "budget", "last").train_state["progress"]
    assert (progress["epoch"], progress["batch"]) == (0, 1)
    for _ in range(3):                        # a budget on a resume too: one batch each
        _quiet(RunConfig(out=str(tmp_path / "budget"), train=TrainConfig(epochs=0), max_minutes=1e-9), "resume")
    assert load_checkpoint(tmp_path / "budget", "last").train_state["progress"]["step"] == 4
    _quiet(RunConfig(out=str(tmp_path / "budget"), train=TrainConfig(epochs=0)), "resume")
    _assert_same(tmp_path / "budget", tmp_path / "whole")


def _cli(args, fault=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(faults.ENV, None)
    if fault:
        env[faults.ENV] = fault
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=240, cwd=cwd)


TINY = ["--dtype", "float64", "--max-tokens", "3000", "--hidden", "16", "--batch-size", "8", "--num-steps", "10",
        "--epochs", "2", "--seed", "3", "--optimizer", "adam", "--lr", "0.01", "--predict-every", "0"]


def test_a_kill_after_a_step_checkpoint_loses_only_the_steps_since(tmp_path):
    """kill -9 inside the second epoch, after the checkpoint of step 50: resume starts at step 50
    with the carried state and ends where the run never killed ends."""
    whole = tmp_path / "whole"
    _quiet(_config(whole, epochs=2))              # what TINY asks for, in this process
    out = tmp_path / "killed"
    killed = _cli(["train", *TINY, "--no-progress", "--checkpoint-every-steps", "25", "--out", out],
                  fault="train.batch-end:after-60-kill")
    assert killed.returncode == -9
    progress = load_checkpoint(out, "last").train_state["progress"]
    assert (progress["step"], progress["batch"]) == (50, 50 - FIRST_EPOCH)
    assert "carried/0" in load_checkpoint(out, "last").optimizer_state
    finished = _cli(["train", "--resume", out, "--no-progress"])
    assert finished.returncode == 0, finished.stderr
    _assert_same(out, whole)


def test_the_header_comes_before_the_bar_which_counts_steps(tmp_path):
    """stdout and stderr into one stream, as a terminal shows them: the header (with the parameter count)
    is out before the bar starts, and the bar ends at 40 of 40 steps with the summary's tokens/s."""
    import contextlib
    import io

    from scratchrnn import cli

    screen = io.StringIO()
    with contextlib.redirect_stdout(screen), contextlib.redirect_stderr(screen):
        assert cli.main(["train", *TINY, "--max-steps", "40", "--out", str(tmp_path / "run")]) == 0
    shown = screen.getvalue()
    header = shown.index("training NumpyBackend")
    assert "parameters" in shown[header:shown.index("\n", header)]
    assert header < shown.index("step/s") and header < shown.index("0/40")
    bar = [line for line in shown.replace("\r", "\n").split("\n") if "40/40" in line][-1]
    speed = re.search(r"perplexity [\d.]+, ([\d.]+) tokens/sec", shown).group(1)
    shown_speed = float(re.search(r"([\d,]+) tokens/s", bar).group(1).replace(",", ""))
    # the summary prints one decimal, the bar none: the same number, rounded twice
    assert "epoch 2/2" in bar and abs(shown_speed - float(speed)) <= 1


def test_a_second_ctrl_c_during_the_save_still_says_how_to_continue(tmp_path):
    """The first Ctrl-C after batch 45 asks for a save; a second one lands while it is written: the
    save is abandoned, last/ keeps epoch 1, and the one line says so and how to continue."""
    out = tmp_path / "run"
    stopped = _cli(["train", *TINY, "--no-progress", "--out", out],
                   fault="train.batch-end:after-45-sigint,checkpoint.staging-created:after-2-interrupt")
    assert stopped.returncode == 130 and "Traceback" not in stopped.stderr
    line = stopped.stderr.strip().splitlines()[-1]
    assert f"{out}/last holds epoch 1 (step {FIRST_EPOCH})" in line
    assert f"Continue with: scratchrnn train --resume {out}" in line
    assert load_checkpoint(out, "last").train_state["progress"]["epoch"] == 1
