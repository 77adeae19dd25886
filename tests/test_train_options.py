"""``scratchrnn train`` the way char-rnn and nanoGPT users work: presets and config files, a new run
from trained weights (--init-from), a text that moved, TensorBoard, a live plot in a notebook, and
``scratchrnn.load`` for Python."""
from __future__ import annotations

import json
import os
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import scratchrnn
from scratchrnn import cli, watch
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.errors import UserError
from scratchrnn.model import ModelSettings
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import run
from scratchrnn.training import TrainConfig

TEXT = "the time traveller was expounding a recondite matter to us\n"
TINY = ["--hidden", "16", "--batch-size", "4", "--num-steps", "5", "--epochs", "2", "--no-progress",
        "--predict-every", "0"]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    path.write_text(TEXT * 30, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(text, tmp_path_factory):
    """A run on the tiny text, by the command, with its stdout."""
    out = tmp_path_factory.mktemp("runs") / "first"
    return out, _main("train", "--data", text, "--out", out, *TINY)


def _main(*argv) -> str:
    """Run the command in this process; its stdout (status 0 expected)."""
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = cli.main([str(a) for a in argv])
    assert status == 0, stderr.getvalue()
    return stdout.getvalue()


def _refused(capsys, *argv) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _saved_run(out) -> dict:
    return load_checkpoint(out, "last").train_state["run"]


# -- presets and config files ------------------------------------------------------------------------------
def test_a_text_of_ones_own_says_which_settings_it_trains_with(trained):
    out, stdout = trained
    note = stdout.splitlines()[0]
    assert note.startswith("note: no --preset: the chapter's RNN (--preset chapter)") and "char-lstm" in note


def test_the_char_lstm_preset_is_the_shakespeare_configuration_and_flags_win(text, tmp_path):
    out = tmp_path / "lstm"
    stdout = _main("train", "--preset", "char-lstm", "--data", text, "--out", out, *TINY, "--layers", "1")
    assert "note: settings: preset char-lstm (the LSTM of docs/results/shakespeare.md" in stdout
    saved = _saved_run(out)
    assert saved["model"] == {**ModelSettings(cell="lstm", embedding="learned", embed_dim=64, dropout=0.2,
                                              init="scaled", forget_bias=1.0, num_hiddens=16).to_dict()}
    train = saved["train"]
    assert (train["optimizer"], train["lr"], train["lr_schedule"], train["warmup"], train["sampling"]) == \
        ("adam", 2e-3, "cosine", 50, "random")
    assert (train["batch_size"], train["num_steps"], train["epochs"]) == (4, 5, 2)      # the flags'


@pytest.mark.parametrize("name, content", [
    ("settings.toml", 'preset = "char-lstm"\nhidden = 12\nlayers = 1\nlr_schedule = "constant"\n'
                      'prefix = ["the time"]\nno_clip = true\nbatch_size = 4\n'),
    ("settings.json", '{"preset": "char-lstm", "hidden": 12, "layers": 1, "lr_schedule": "constant", '
                      '"prefix": "the time", "no_clip": true, "batch_size": 4}'),
])
def test_a_config_file_sits_between_the_preset_and_the_flags(text, tmp_path, name, content):
    config = tmp_path / name
    config.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    stdout = _main("train", "--config", config, "--data", text, "--out", out, "--hidden", "8", "--num-steps", "5",
                   "--epochs", "1", "--no-progress", "--clip", "0.5")
    assert f"{config} (batch_size, hidden, layers, lr_schedule, no_clip, prefix)" in stdout
    saved = _saved_run(out)
    assert (saved["model"]["cell"], saved["model"]["num_hiddens"], saved["model"]["num_layers"]) == ("lstm", 8, 1)
    assert (saved["train"]["lr_schedule"], saved["train"]["optimizer"]) == ("constant", "adam")
    assert saved["train"]["clip"] == 0.5 and saved["prefixes"] == ["the time"]


@pytest.mark.parametrize("content, fragments", [
    ('{"hiden": 8, "batchsize": 4, "lr": 0.1}', ["'batchsize', 'hiden' are not options"]),
    ('{"lr": -1}', ["lr", "positive"]),
    ('{"cell": "transformer"}', ["cell must be one of rnn, gru, lstm"]),
    ('{"no_clip": "yes"}', ["no_clip must be true or false"]),
    ('{"resume": "runs/x"}', ["'resume' is not an option"]),
    ('{"preset": "gpt"}', ["preset must be one of chapter, char-lstm"]),
    ('[1, 2]', ["must hold a table"]),
    ('{"hidden": ', ["not valid JSON"]),
])
def test_a_config_file_with_what_no_option_takes_is_refused_naming_it(capsys, tmp_path, content, fragments):
    config = tmp_path / "bad.json"
    config.write_text(content)
    err = _refused(capsys, "train", "--config", config, "--out", tmp_path / "run", "--epochs", "1")
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "run").exists()


# -- a new run from trained weights ------------------------------------------------------------------------
def test_init_from_starts_from_the_weights_in_their_vocabulary(trained, tmp_path):
    first, _ = trained
    other = tmp_path / "other.txt"
    other.write_text("a mouse ran up the tower to read a note\n" * 30, encoding="utf-8")
    out = tmp_path / "tuned"
    stdout = _main("train", "--init-from", first, "--data", other, "--out", out, "--batch-size", "4",
                   "--num-steps", "5", "--epochs", "1", "--lr", "1e-12", "--no-progress", "--predict-every", "0")
    assert f"from the weights of {(first / 'best').resolve()}" in stdout or f"from the weights of {first}" in stdout
    start, tuned = load_checkpoint(first, "best"), load_checkpoint(out, "last")
    assert tuned.vocab.idx_to_token == start.vocab.idx_to_token and tuned.model == start.model
    for name, value in start.params.items():
        np.testing.assert_allclose(tuned.params[name], value, atol=1e-6, err_msg=name)
    assert tuned.train_state["progress"]["epoch"] == 1 and tuned.train_state["run"]["init_from"]
    # it continues as a run of its own, in the same vocabulary
    _main("train", "--resume", out, "--epochs", "2", "--no-progress")
    assert load_checkpoint(out, "last").train_state["progress"]["epoch"] == 2


def test_init_from_refuses_characters_the_model_never_read_and_a_different_model(trained, tmp_path, capsys):
    first, _ = trained
    strange = tmp_path / "strange.txt"
    strange.write_text("quiz jazz, 42 fjords!\n" * 30, encoding="utf-8")
    err = _refused(capsys, "train", "--init-from", first, "--data", strange, "--out", tmp_path / "a", "--epochs", "1")
    assert "has 8 characters the model's vocabulary of" in err and "'q'" in err and "'z'" in err
    err = _refused(capsys, "train", "--init-from", first, "--hidden", "32", "--out", tmp_path / "a")
    assert "--hidden 32 is not the model of --init-from" in err and "num_hiddens 16" in err
    err = _refused(capsys, "train", "--init-from", first, "--resume", first)
    assert "--init-from starts a new run" in err
    assert not (tmp_path / "a").exists()


# -- the text of a run: stored whole-path, found again by its hash ---------------------------------------
def test_a_run_resumes_from_anywhere_and_follows_its_text_by_hash(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "input.txt").write_text(TEXT * 30, encoding="utf-8")
    monkeypatch.chdir(home)
    _main("train", "--data", "input.txt", "--out", "run", *TINY, "--max-steps", "30")
    saved = load_checkpoint(home / "run", "last").train_state
    assert saved["run"]["data"] == str(home / "input.txt")
    assert saved["data_file"]["bytes"] == len(TEXT * 30) and len(saved["data_file"]["sha256"]) == 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _main("train", "--resume", home / "run", "--max-steps", "40", "--no-progress")     # another directory
    (home / "input.txt").rename(elsewhere / "moved.txt")
    err = _refused(capsys, "train", "--resume", home / "run", "--max-steps", "50")
    assert "no longer where it was" in err and "--data NEW_PATH" in err
    (elsewhere / "changed.txt").write_text(TEXT * 29 + "the end\n", encoding="utf-8")
    err = _refused(capsys, "train", "--resume", home / "run", "--max-steps", "50", "--data", "changed.txt")
    assert "is not the text the run" in err and "SHA-256" in err
    _main("train", "--resume", home / "run", "--max-steps", "50", "--data", "moved.txt", "--no-progress")
    assert _saved_run(home / "run")["data"] == str(elsewhere / "moved.txt")


# -- TensorBoard and the notebook ---------------------------------------------------------------------------
def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalars of the TensorBoard event files in ``directory`` (the TFRecord framing read by hand)."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_event_files_hold_the_run_by_step(text, tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "run"
    _main("train", "--data", text, "--out", out, *TINY, "--tensorboard", "--eval-every-steps", "20")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = _scalars(out / "tensorboard")
    assert [step for step, _ in scalars["perplexity/train"]] == [r["step"] for r in records]
    np.testing.assert_allclose([v for _, v in scalars["perplexity/val"]], [r["val_perplexity"] for r in records],
                               rtol=1e-6)
    assert {"loss/train", "loss/val", "lr", "tokens_per_sec"} <= set(scalars)


def test_tensorboard_without_its_writer_is_one_line(monkeypatch, capsys, tmp_path):
    real = watch.importlib.util.find_spec
    monkeypatch.setattr(watch.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    err = _refused(capsys, "train", "--tensorboard", "--out", tmp_path / "run", "--epochs", "1")
    assert "--tensorboard needs the tensorboardX package" in err and "pip install '.[tensorboard]'" in err
    assert not (tmp_path / "run").exists()


def test_inside_jupyter_the_curves_are_redrawn_after_every_evaluation(monkeypatch, tmp_path):
    assert not watch.in_jupyter()
    shown = []

    class Handle:
        def update(self, image):
            shown.append(image)
    display_module = types.SimpleNamespace(
        Image=lambda data, format: data,
        display=lambda image, display_id: shown.append(image) or Handle())
    kernel = types.SimpleNamespace(get_ipython=lambda: types.SimpleNamespace(kernel=object()))
    monkeypatch.setitem(sys.modules, "IPython", kernel)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    assert watch.in_jupyter()
    config = RunConfig(out=str(tmp_path / "run"), max_tokens=2000, model=ModelSettings(num_hiddens=8),
                       predict_every=0, train=TrainConfig(epochs=3, batch_size=4, num_steps=5,
                                                          eval_every_steps=40))
    run(config, say=lambda line: None, progress=True)
    evaluations = len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    assert evaluations > 3 and len(shown) == evaluations
    assert all(png.startswith(b"\x89PNG") for png in shown)


# -- scratchrnn.load ---------------------------------------------------------------------------------------
def test_load_generates_what_the_command_generates_and_scores_text(trained):
    out, _ = trained
    model = scratchrnn.load(out)
    assert model.config == load_checkpoint(out).model and model.vocab.idx_to_token[0] == "<unk>"
    assert model.settings.train.epochs == 2 and model.cleaning == "raw"
    command = _main("generate", out, "--prefix", "the time", "--num-chars", "30")
    assert model.generate("the time", num_chars=30) + "\n" == command
    assert model.generate(["the", "us"], num_chars=5, seed=2) == model.generate(["the", "us"], num_chars=5, seed=2)
    # the perplexity: every character after the first predicted from the ones before, in one pass
    sample = TEXT * 3
    ids = [model.vocab[ch] for ch in sample]
    logits, _ = model._backend.forward(np.array([ids[:-1]]), model._backend.begin_state(1))
    logits = np.asarray(logits, dtype=np.float64)
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    expected = np.exp(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean())
    assert model.perplexity(sample) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(UserError, match="the text to score has characters .* 'z'"):
        model.perplexity("the zoo")
