"""Ctrl-C and full disks at named moments, injected (``scratchrnn.faults``), never by timing: while a
framework is imported, right after a compiled call returns (where a SIGINT that arrived inside it is
seen), during a save, while metrics are written, while resuming, while the plot is saved, while an
experiment writes its report; and outputs that cannot be written (/dev/full, a closed stderr, a tiny
tmpfs). Each ends in one line and its exit status: 130 after Ctrl-C, 2 for a disk or a name, and what
was saved still loads."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchrnn import faults, kernels
from scratchrnn.checkpoint import load_checkpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["--hidden", "8", "--epochs", "2", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "5",
        "--predict-every", "0", "--no-progress"]


def _cli(args, fault=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **env):
    environment = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "ignore", **env}
    environment.pop(faults.ENV, None)
    if fault:
        environment[faults.ENV] = fault
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], stdout=stdout, stderr=stderr,
                          text=True, env=environment, timeout=120)


def _one_line(result, code: int, naming: str = "") -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("scratchrnn") and naming in lines[-1], result.stderr
    assert sum("error" in line or "interrupted" in line for line in lines) == 1, result.stderr


@pytest.mark.parametrize("command", [["train", "--out", "{out}", *TINY], ["generate", "{ckpt}"]])
def test_ctrl_c_while_the_framework_is_imported(tmp_path, trained, command):
    args = [a.format(out=tmp_path / "run", ckpt=trained) for a in command]
    _one_line(_cli(args, "backends.framework-import:sigint"), 130, "interrupted")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
@pytest.mark.parametrize("action, code", [("sigint", 130), ("interrupt", 130)])
def test_ctrl_c_inside_a_compiled_training_loop(tmp_path, action, code):
    # a SIGINT arriving inside the compiled call runs Python's handler as the call returns: here
    out = tmp_path / "run"
    result = _cli(["train", "--out", out, *TINY, "--cell", "gru"], f"kernels.step-loops-returned:after-301-{action}",
                  SCRATCHRNN_LOOPS="compiled")
    if action == "interrupt":                   # a second Ctrl-C: at once
        _one_line(result, code, "interrupted")
    else:                                       # the first: after this batch, saved, and how to go on
        assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("scratchrnn: stopped in epoch 2")
        assert load_checkpoint(out, "last").train_state["progress"]["batch"] > 0
        finished = _cli(["train", "--resume", out, "--no-progress"])
        assert finished.returncode == 0, finished.stderr


@pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
def test_ctrl_c_inside_the_compiled_decoder(trained):
    result = _cli(["generate", trained, "--num-chars", "500"], "kernels.decode-returned:sigint",
                  SCRATCHRNN_LOOPS="compiled")
    _one_line(result, 130, "interrupted")


@pytest.mark.parametrize("fault, code, naming", [
    ("checkpoint.model-written:after-2-interrupt", 130, "interrupted"),
    ("checkpoint.config-written:after-2-enospc", 2, "No space left"),
    ("rundir.metrics-append:enospc", 2, "No space left"),
    ("rundir.metrics-append:after-2-enospc", 2, "No space left"),
    ("plot.saving:enospc", 0, "could not write the plot")])
def test_a_stop_or_a_full_disk_while_saving(tmp_path, fault, code, naming):
    out = tmp_path / "run"
    result = _cli(["train", "--out", out, *TINY], fault)
    if code:
        _one_line(result, code, naming)
    else:
        assert result.returncode == 0 and naming in result.stdout + result.stderr, result.stderr
    if (out / "last").exists():
        assert load_checkpoint(out, "last").params


def test_a_full_disk_while_resuming(tmp_path, trained_run):
    import shutil
    out = Path(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))
    result = _cli(["train", "--resume", out, "--epochs", "3", "--no-progress"], "rundir.metrics-trim:enospc")
    _one_line(result, 2, "No space left")
    assert load_checkpoint(out, "last").train_state["progress"]["epoch"] == 2


@pytest.mark.parametrize("fault", ["experiment.out-probed:enospc", "experiment.report-writing:enospc"])
def test_a_full_disk_under_an_experiment(tmp_path, fault):
    _one_line(_cli(["experiment", "relu", "--quick", "--out", tmp_path / "report"], fault), 2, "No space left")


@pytest.mark.parametrize("command", [["train", "--out", "{out}", *TINY], ["generate", "{ckpt}", "--num-chars", "99"],
                                     ["generate", "{ckpt}", "--json"]])
def test_output_to_a_full_device_is_one_line(tmp_path, trained, command):
    args = [a.format(out=tmp_path / "run", ckpt=trained) for a in command]
    with open("/dev/full", "w") as full:
        _one_line(_cli(args, stdout=full), 2, "No space left")


def test_a_closed_stderr_changes_no_exit_status(trained):
    environment = {**os.environ, "PYTHONPATH": SRC}
    environment.pop(faults.ENV, None)
    for args, code in ((["generate", str(trained), "--num-chars", "5"], 0), (["generate", "nowhere"], 2)):
        ended = subprocess.run(f"{sys.executable} -m scratchrnn {' '.join(args)} 2>&-", shell=True,
                               capture_output=False, stdout=subprocess.DEVNULL, env=environment, timeout=120)
        assert ended.returncode == code


def test_a_matplotlib_backend_that_does_not_exist_falls_back_to_agg(tmp_path):
    out = tmp_path / "run"
    result = _cli(["train", "--out", out, *TINY], MPLBACKEND="bogus")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MPLBACKEND='bogus'") == 1 and "Traceback" not in result.stderr
    assert (out / "perplexity.png").exists() and (out / "perplexity.svg").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_tiny_tmpfs_ends_train_and_experiment_in_one_line(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        _one_line(_cli(["train", "--out", mount / "run", *TINY, "--hidden", "200"]), 2, "space")
        _one_line(_cli(["experiment", "relu", "--quick", "--out", mount / "report"]), 2, "No space left")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        _one_line(_cli(["experiment", "relu", "--quick", "--out", mount / "elsewhere"]), 2, "Read-only")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    result = _cli(["train", "--out", out, *TINY])
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run / "best"
