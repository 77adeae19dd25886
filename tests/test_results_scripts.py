"""The scripts behind docs/results, at a tiny scale: shakespeare.py (issue 12's quality goal),
reproduce_cells.py (the book's GRU and LSTM) and reproduce_chapter.py's table; each writes its
Markdown, JSON and PNG, and what they say comes from what was measured."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# a text with the shape of tinyshakespeare: speakers' names, then their lines
PLAY = ("ROMEO:\nBut soft, what light through yonder window breaks?\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n"
        "MERCUTIO:\nA plague on both your houses! They have made worms' meat of me.\n\n"
        "NURSE:\nFaith, I can tell how to answer that: it is the nightingale, and not the lark.\n\n")

sys.path.insert(0, str(SCRIPTS))
import shakespeare  # noqa: E402  (a script, importable once its folder is on the path)
import shakespeare_ablation  # noqa: E402
import shakespeare_report  # noqa: E402


def _run(script: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture
def play(tmp_path) -> Path:
    path = tmp_path / "play.txt"
    path.write_text(PLAY * 80)
    return path


def test_shakespeare_trains_every_configuration_within_its_budget_and_writes_the_record(tmp_path, play):
    out = tmp_path / "results"
    # budgets of 0.3 s and 0.9 s; the numpy backend starts faster than torch
    _run("shakespeare.py", "--data", str(play), "--budget-scale", "0.0005", "--hidden", "8", "--evaluations",
         "3", "--backend", "numpy", "--sample-chars", "40", "--out", str(out), "--runs", str(tmp_path / "runs"))
    record = json.loads((out / "shakespeare.json").read_text())
    names = [row[0] for row in shakespeare.CONFIGURATIONS]
    # every configuration for the short budget, then the best of them again for the long one
    assert [run["configuration"] for run in record["runs"][:-1]] == names
    long_run = record["runs"][-1]
    assert long_run["budget_minutes"] == pytest.approx(30 * 0.0005)
    best_short = min(record["runs"][:-1], key=lambda run: run["best"]["val_nats"])
    assert long_run["configuration"] == best_short["configuration"]
    for run in record["runs"]:
        assert run["points"] and run["parameters"] > 0 and run["tokens_per_sec"] > 0
        seconds = [point["seconds"] for point in run["points"]]
        assert seconds == sorted(seconds)
        assert run["best"]["val_nats"] == min(point["val_nats"] for point in run["points"])
    assert [goal["nats"] for goal in record["goals"]] == [1.45, 1.40]       # issue 26's goals
    assert record["samples"] and all(text.startswith("ROMEO:") for text in record["samples"].values())
    markdown = (out / "shakespeare.md").read_text()
    for name in names:
        assert f"\n| {name} |" in markdown
    for words in ("Goal 1", "Goal 2", "1.47", "1.88", "--budget-scale 0.0005", "load average", "```text"):
        assert words in markdown
    assert (out / "shakespeare.png").read_bytes()[:8] == PNG_MAGIC
    # the long run's best weights, as a checkpoint scratchrnn generate reads
    generate = subprocess.run([sys.executable, "-m", "scratchrnn", "generate",
                               str(tmp_path / "runs" / f"{long_run['configuration']}-0.015min"), "--prefix",
                               "ROMEO:", "--num-chars", "10"], capture_output=True, text=True, timeout=60)
    assert generate.returncode == 0 and generate.stdout.startswith("ROMEO:"), generate.stderr


def test_shakespeare_only_one_configuration_and_no_long_run(tmp_path, play):
    out = tmp_path / "results"
    _run("shakespeare.py", "--data", str(play), "--only", "gru-512", "--long", "none", "--budget-scale", "0.0005",
         "--hidden", "8", "--evaluations", "2", "--backend", "numpy", "--sample-chars", "20", "--out", str(out),
         "--runs", str(tmp_path / "runs"))
    record = json.loads((out / "shakespeare.json").read_text())
    assert [run["name"] for run in record["runs"]] == ["gru-512 (0.005-minute run)"]
    assert "not tried" in (out / "shakespeare.md").read_text()     # no run had the long budget


def test_shakespeare_ablation_in_a_second_part_appended_to_the_first(tmp_path, play):
    """--append keeps the first part's runs; --ablation trains the named configuration's variants (its
    own run reused), and the page gets a table of what each change did to the held-out loss."""
    out, runs = tmp_path / "results", tmp_path / "runs"
    common = ["--data", str(play), "--budget-scale", "0.0002", "--hidden", "8", "--evaluations", "1", "--backend",
              "numpy", "--sample-chars", "20", "--long", "none", "--out", str(out), "--runs", str(runs)]
    _run("shakespeare.py", "--only", "gru-512", *common)
    _run("shakespeare.py", "--only", "lstm-512", "--ablation", "gru-512", "--append", *common)
    record = json.loads((out / "shakespeare.json").read_text())
    names = [run["configuration"] for run in record["runs"]]
    assert names[:2] == ["gru-512", "lstm-512"] and names.count("gru-512") == 1
    base = next(c for c in shakespeare.configurations(8) if c.name == "gru-512")
    changes = [change for change, _ in shakespeare_ablation.ablations(base)]
    assert [run["ablation"] for run in record["runs"][2:]] == [{"base": "gru-512", "change": c} for c in changes]
    markdown = (out / "shakespeare.md").read_text()
    assert "## What each technique buys: the ablation around gru-512" in markdown
    for change in changes:
        assert f"\n| {change} | " in markdown
    assert "scratchrnn train --data data/tinyshakespeare.txt --cell" in markdown


def test_the_ablation_takes_away_what_a_configuration_has_and_adds_what_it_lacks():
    lstm = next(c for c in shakespeare.configurations() if c.name == "lstm-512-scaled")
    regularized = replace(lstm, layers=2, regularization={"weight_dropout": 0.25, "tie_weights": True})
    changes = dict(shakespeare_ablation.ablations(regularized))
    assert set(changes) == {"without dropout 0.2", "without weight dropout 0.25", "with locked input dropout 0.1",
                            "with locked dropout between layers 0.2", "with locked output dropout 0.3",
                            "with embedding dropout 0.05", "without tied weights", "with AR 2", "with TAR 1",
                            "with layer norm"}
    assert changes["without weight dropout 0.25"].regularization == {"tie_weights": True}
    assert changes["with layer norm"].regularization == {"weight_dropout": 0.25, "tie_weights": True, "layer_norm": True}
    assert changes["without dropout 0.2"].dropout == 0 and changes["with AR 2"].dropout == 0.2
    rnn = next(c for c in shakespeare.configurations() if c.name == "rnn-baseline")
    assert [change for change, _ in shakespeare_ablation.ablations(rnn)] == [
        "with dropout 0.2", "with weight dropout 0.3", "with locked output dropout 0.3", "with AR 2", "with TAR 1"]
    flags = shakespeare_ablation.train_flags(regularized)
    assert flags[flags.index("--weight-dropout") + 1] == "0.25" and "--tie-weights" in flags
    # the flags are scratchrnn train's: its parser takes every one of them
    from scratchrnn import cli
    cli.build_parser().parse_args(["train", *flags])


def test_shakespeare_refuses_a_configuration_the_table_lacks(capsys):
    with pytest.raises(SystemExit):
        shakespeare.parse_args(["--only", "transformer"])
    assert "no configuration 'transformer'" in capsys.readouterr().err


def _run_record(losses: list[float], minutes_apart: float = 1.0, train_losses=None) -> dict:
    points = [{"seconds": (i + 1) * minutes_apart * 60, "val_nats": loss,
               "train_nats": (train_losses or losses)[i], "epochs": i + 1.0} for i, loss in enumerate(losses)]
    return {"name": "lstm (10-minute run)", "configuration": "lstm", "budget_minutes": 10.0, "points": points,
            "best": min(points, key=lambda p: p["val_nats"]), "tokens_per_sec": 20000.0}


@pytest.mark.parametrize("losses, train_losses, verdict", [
    ([2.0, 1.8, 1.7, 1.62, 1.58, 1.55, 1.53, 1.52], None, "still improving"),
    ([2.0, 1.7, 1.55, 1.53, 1.56, 1.58, 1.60, 1.62], [2.0, 1.6, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9], "overfits"),
    ([2.0, 1.7, 1.60, 1.56, 1.556, 1.555, 1.556, 1.555], None, "flattened"),
])
def test_the_diagnosis_of_a_missed_goal_reads_the_curve(losses, train_losses, verdict):
    assert verdict in shakespeare_report.diagnosis(_run_record(losses, train_losses=train_losses), 10)


def test_a_goal_counts_only_within_its_minutes():
    run = _run_record([1.6, 1.52, 1.49, 1.46, 1.44], minutes_apart=4.0)
    assert shakespeare_report.goal_reached(run["points"], 10, 1.50) is None     # 1.49 came at minute 12
    assert shakespeare_report.goal_reached(run["points"], 30, 1.45) == pytest.approx(20.0)
    run["goals"] = [None, 20.0]
    lines = shakespeare_report.verdicts({"goals": [{"minutes": 10, "nats": 1.50}, {"minutes": 30, "nats": 1.45}],
                                         "runs": [run]})
    assert "not reached" in lines[0] and "1.520 at minute 8.0" in lines[0]
    assert "reached, by lstm (10-minute run) at minute 20.0" in lines[1]


def test_reproduce_cells_writes_the_cells_beside_the_chapters_rnn(tmp_path):
    out = tmp_path / "results"
    _run("reproduce_cells.py", "--epochs", "2", "--hidden", "8", "--backends", "numpy", "--out",
         str(tmp_path / "runs"), "--record", str(out))
    record = json.loads((out / "cells.json").read_text())
    assert [(run["cell"], run["backend"]) for run in record["runs"]] == [("gru", "numpy"), ("lstm", "numpy")]
    for run in record["runs"]:
        assert len(run["perplexity_history"]) == 2 and run["tokens_per_sec"] > 0 and run["wall_seconds"] > 0
        assert set(run["samples"]) == {"time traveller", "traveller"}
    markdown = (out / "cells.md").read_text()
    assert "| gru, 8 hidden | numpy | 2 |" in markdown and "| lstm, 8 hidden | numpy | 2 |" in markdown
    if record["rnn_from_chapter"]:          # the RNN's rows of docs/results/chapter.json, beside them
        assert "| rnn, 512 hidden | numpy | 500 |" in markdown
    assert "--epochs 2 --hidden 8" in markdown
    assert (out / "cells.png").read_bytes()[:8] == PNG_MAGIC


def test_reproduce_chapter_rebuilds_its_table_from_the_record(tmp_path):
    record = ROOT / "docs" / "results" / "chapter.json"
    if not record.exists():
        pytest.skip("no chapter.json on record")
    shutil.copy(record, tmp_path / "chapter.json")
    _run("reproduce_chapter.py", "--table-only", "--out", str(tmp_path / "runs"), "--record", str(tmp_path))
    rows = json.loads(record.read_text())["runs"]
    assert json.loads((tmp_path / "chapter.json").read_text())["runs"] == rows
    table = (tmp_path / "chapter.md").read_text()
    assert table.count("\n| ") == len(rows) + 1      # the heading and a row per run
