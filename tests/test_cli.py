"""The command line end to end, and every way a user can get it wrong (exit 2, one line, no traceback)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import backends, cli
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.data import load_corpus, num_batches

TINY = ["--epochs", "3", "--hidden", "16", "--batch-size", "4", "--num-steps", "5", "--no-progress",
        "--predict-every", "0"]


def run_cli(*args, cwd=None):
    """Run the real command in a fresh process, as a user would."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    path.write_text("the time traveller was expounding a recondite matter to us\n" * 12, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_run(tiny_text, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = run_cli("train", "--data", tiny_text, "--cleaning", "chapter", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def _metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_checkpoint_plots_metrics_and_ends_with_the_chapter_line(trained_run):
    out, proc = trained_run
    for name in ["last/model.safetensors", "last/config.json", "best/model.safetensors", "perplexity.png",
                 "perplexity.svg", "metrics.jsonl"]:
        assert (out / name).is_file(), name
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"perplexity \d+\.\d, \d+\.\d tokens/sec on cpu \(numpy\)", last), last
    history = [r["train_perplexity"] for r in _metrics(out)]
    assert len(history) == 3
    assert f"perplexity {history[-1]:.1f}," in last
    lowest_epoch = history.index(min(history)) + 1
    assert f"lowest perplexity {min(history):.2f}, at epoch {lowest_epoch}" in proc.stdout.splitlines()[-2]
    # --data holds out its last 10% by default, scored every epoch of a short run, and picks best/ by it
    held_out = [r["val_perplexity"] for r in _metrics(out)]
    assert all(v is not None for v in held_out)
    best_epoch = held_out.index(min(held_out)) + 1
    assert f"best (epoch {best_epoch}, val perplexity" in proc.stdout
    assert (out / "perplexity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_json_prints_only_json(tiny_text, tmp_path):
    proc = run_cli("train", "--data", tiny_text, "--out", tmp_path / "j", "--json", *TINY)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["perplexity"] > 1
    # tokens/s: the tokens of the batches trained (4 x 5 each, no more than the text holds) over the
    # seconds spent on them
    most = (len(load_corpus(tiny_text, 10000)[0]) - 1) // 4 // 5
    lines = (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    tokens = [r["tokens_per_sec"] * r["seconds"] for r in records]
    assert len(tokens) == 3, tokens
    assert all(20 <= t <= most * 20 * 1.001 and abs(t / 20 - round(t / 20)) < 1e-3 for t in tokens), tokens
    assert result["tokens_per_sec"] == pytest.approx(sum(tokens) / sum(r["seconds"] for r in records))
    # a text of one's own is continued from its own first words, not from the chapter's prompt
    assert set(result["samples"]) == {"the time traveller was"}


def test_generate_matches_the_model_saved_by_train(trained_run):
    out, proc = trained_run
    gen = run_cli("generate", out, "--prefix", "the time traveller was", "--num-chars", "50", "--json")
    assert gen.returncode == 0, gen.stderr
    text = json.loads(gen.stdout)["results"][0]["text"]
    assert text in proc.stdout.splitlines()        # the continuation train printed, by best/
    assert len(text) == len("the time traveller was") + 50


def test_generate_several_prefixes_stream_and_sampling(trained_run):
    out, _ = trained_run
    many = run_cli("generate", out, "--prefix", "the", "--prefix", "time traveller", "--num-chars", "8")
    lines = many.stdout.splitlines()[::2]
    assert many.stdout.splitlines()[1] == "---"          # the line between two continuations
    assert many.returncode == 0 and len(lines) == 2
    assert lines[0].startswith("the") and lines[1].startswith("time traveller")
    streamed = run_cli("generate", out, "--prefix", "the", "--num-chars", "8", "--stream")
    assert streamed.stdout == lines[0] + "\n"
    a = run_cli("generate", out, "--strategy", "sample", "--seed", "7", "--num-chars", "30")
    b = run_cli("generate", out, "--strategy", "sample", "--seed", "7", "--num-chars", "30")
    assert a.returncode == 0 and a.stdout == b.stdout


def test_prefix_is_cleaned_like_the_training_text(trained_run):
    out, _ = trained_run
    gen = run_cli("generate", out, "--prefix", "The Time-Traveller", "--num-chars", "5")
    assert gen.returncode == 0 and gen.stdout.startswith("the time traveller")


# -- bad input: exit 2, a clear line, no traceback, nothing overwritten ------------------------------
def _assert_user_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr    # one line, not a usage block
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


@pytest.mark.parametrize("args, fragments", [
    (["--epochs", "0"], ["--epochs", "positive"]),
    (["--lr", "-1"], ["--lr", "positive"]),
    (["--lr", "nan"], ["--lr"]),
    (["--hidden", "0"], ["--hidden"]),
    (["--batch-size", "-3"], ["--batch-size"]),
    (["--num-steps", "x"], ["--num-steps"]),
    (["--max-tokens", "0"], ["--max-tokens"]),
    (["--clip", "0"], ["--clip"]),
    (["--backend", "jax"], ["--backend"]),
    (["--max-tokens", "100"], ["corpus too short", "100 tokens", "32 x 35"]),
    (["--data", "/no/such/file.txt"], ["not found", "/no/such/file.txt"]),
    (["--no-detach", "--sampling", "random"], ["--no-detach"]),
    (["--forget-bias", "1"], ["--forget-bias", "--cell lstm"]),
    (["--init", "xavier"], ["--init"]),
])
def test_bad_train_options(tmp_path, args, fragments):
    proc = run_cli("train", "--out", tmp_path / "run", "--epochs", "1", *args)
    _assert_user_error(proc, *fragments)
    assert not (tmp_path / "run").exists()


def test_init_and_forget_bias_choose_the_starting_weights(tiny_text, tmp_path):
    """--init scaled and --forget-bias 1 reach the weights the run starts from (one epoch at a
    learning rate too small to move them visibly), and the run directory records them."""
    out = tmp_path / "run"
    proc = run_cli("train", "--data", tiny_text, "--out", out, "--cell", "lstm", "--hidden", "64", "--epochs", "1",
                   "--lr", "1e-9", "--init", "scaled", "--forget-bias", "1", "--batch-size", "4",
                   "--num-steps", "5", "--no-progress", "--predict-every", "0")
    assert proc.returncode == 0, proc.stderr
    params = load_checkpoint(out, "last").params
    np.testing.assert_allclose(params["b_f"], 1.0, atol=1e-6)
    np.testing.assert_allclose(params["b_i"], 0.0, atol=1e-6)
    assert 0.8 < params["W_hi"].std() * np.sqrt(64) < 1.2          # N(0, 1/64), not the book's 0.01


@pytest.mark.parametrize("content, fragment", [(b"", "empty"), (b"\xff\xfe\x00bad", "not UTF-8")])
def test_bad_data_files(tmp_path, content, fragment):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    _assert_user_error(run_cli("train", "--data", path, "--out", tmp_path / "run"), fragment)


def test_existing_checkpoint_is_not_overwritten_without_overwrite(trained_run, tiny_text):
    out, _ = trained_run
    before = (out / "last" / "model.safetensors").read_bytes()
    proc = run_cli("train", "--data", tiny_text, "--out", out, *TINY)
    _assert_user_error(proc, "--overwrite", "--resume")
    assert (out / "last" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, fragments", [
    (["--prefix", ""], ["prefix is empty"]),
    (["--num-chars", "-1"], ["--num-chars"]),
    (["--temperature", "0"], ["--temperature"]),
    (["--top-p", "1.5"], ["--top-p"]),
])
def test_bad_generate_options(trained_run, args, fragments):
    out, _ = trained_run
    _assert_user_error(run_cli("generate", out, *args), *fragments)


def test_prefix_outside_a_raw_vocabulary_is_refused_naming_the_characters(tmp_path):
    path = tmp_path / "raw.txt"
    path.write_text("abcab cab abc\n" * 40, encoding="utf-8")
    run = tmp_path / "raw"
    assert run_cli("train", "--data", path, "--cleaning", "raw", "--out", run, *TINY).returncode == 0
    _assert_user_error(run_cli("generate", run, "--prefix", "abz"), "'z'")


def test_missing_and_corrupt_checkpoints(trained_run, tmp_path):
    _assert_user_error(run_cli("generate", tmp_path / "nothing"), "checkpoint not found")
    out, _ = trained_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((out / "last" / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"PK garbage")
    _assert_user_error(run_cli("generate", broken), "corrupt")


def test_a_backend_whose_framework_is_missing_names_the_extra(monkeypatch, tmp_path, capsys):
    real_find_spec = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    code = cli.main(["train", "--backend", "torch", "--out", str(tmp_path / "r"), "--epochs", "1"])
    assert code == 2
    # the package that brings PyTorch (its CPU build), and the extra of scratchrnn's clone: scratchrnn
    # itself is on no index, so "pip install 'scratchrnn[torch]'" would find nothing
    err = capsys.readouterr().err
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in err
    assert "pip install '.[torch]'" in err and "scratchrnn[" not in err
    assert not (tmp_path / "r").exists()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(monkeypatch, tmp_path, capsys):
    """A loss that turns NaN at epoch 3: the epoch-2 checkpoint survives and the exit status is 2."""
    real_create = backends.create

    def create_failing_later(*args, **kwargs):
        backend = real_create(*args, **kwargs)
        real_step, steps = backend.train_step, {"n": 0}

        def step(*a):
            steps["n"] += 1
            loss, state = real_step(*a)
            return (float("nan") if steps["n"] > 2 * steps_per_epoch else loss), state
        backend.train_step = step
        return backend

    steps_per_epoch = num_batches(10000, 32, 35, "sequential")   # the chapter's settings: 8 batches
    monkeypatch.setattr(backends, "create", create_failing_later)
    out = tmp_path / "run"
    code = cli.main(["train", "--out", str(out), "--epochs", "5", "--hidden", "16", "--checkpoint-every", "1",
                     "--predict-every", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "diverged at epoch 3" in err and "epoch 2" in err
    last = load_checkpoint(out, "last")
    assert last.info["epoch"] == 2
    assert all(np.isfinite(value).all() for value in last.params.values())


def test_import_scratchrnn_imports_no_framework():
    code = ("import sys, scratchrnn, scratchrnn.cli; "
            "print([m for m in ('torch', 'tensorflow', 'paddle', 'mxnet', 'matplotlib') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_every_option_is_explained_in_help():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "train" in a.choices).choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    assert run_cli("train", "--help").returncode == 0


def test_import_scratchrnn_leaves_the_process_as_it_was():
    # the command's early Ctrl-C handling is the launcher's (scratchrnn.launch), not the library's: a
    # program that imports scratchrnn keeps its own SIGINT handler, whatever its argv[0] says
    code = ("import signal, sys; sys.argv = ['scratchrnn', 'train']; "
            "before = signal.getsignal(signal.SIGINT); "
            "import scratchrnn, scratchrnn.cli; scratchrnn.predict; "
            "sys.exit(signal.getsignal(signal.SIGINT) is not before)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_command_installs_its_start_up_handler_before_importing_the_cli(monkeypatch):
    # a Ctrl-C that lands while the command still imports its modules ends it with one line, status 130
    code = ("import os, signal, sys\n"
            "import scratchrnn.launch as launch\n"
            "def fake_import_then_interrupt(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    raise AssertionError('the handler should have ended the program')\n"
            "sys.modules['scratchrnn.cli'] = type(sys)('scratchrnn.cli')\n"
            "sys.modules['scratchrnn.cli'].__getattr__ = lambda name: fake_import_then_interrupt()\n"
            "launch.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 130
    assert proc.stderr == "scratchrnn: interrupted\n"
