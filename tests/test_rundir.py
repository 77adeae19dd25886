"""Run directories: one run at a time, checkpoints that survive any kill, problems found before training."""
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import faults
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import Vocab
from scratchrnn.errors import UserError
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.rundir import NothingToResume, RunDirectory, RunExists, SaveFailed

SRC = Path(__file__).parents[1] / "src" / "scratchrnn"
FIXTURE_V1 = Path(__file__).parent / "fixtures" / "v1-checkpoint"
VOCAB = Vocab.from_tokens_list(["<unk>", " ", *"etaoinshrdlcumwfgypbvkjxqz"])
MODEL = ModelConfig(len(VOCAB), 8)


def _ckpt(epoch, optimizer=True):
    params = init_params(MODEL, epoch)
    state = {f"exp_avg/{name}": np.full_like(value, epoch) for name, value in params.items()} if optimizer else {}
    return Checkpoint(params, VOCAB, MODEL, info={"epoch": epoch}, train_state={"epoch": epoch},
                      optimizer_state=state)


@pytest.fixture
def run(tmp_path):
    run = RunDirectory(tmp_path / "run")
    yield run
    run.close()


def _listing(path):
    return sorted(p.name for p in Path(path).iterdir())


# -- saving, loading, metrics ------------------------------------------------------------------------
def test_last_and_best_are_pointers_to_complete_versions_and_old_ones_go(run):
    assert run.open("new", need_bytes=10_000) == []
    run.save("last", _ckpt(1))
    run.save(("last", "best"), _ckpt(2))
    run.save("last", _ckpt(3))
    assert load_checkpoint(run.path).info["epoch"] == 2
    assert load_checkpoint(run.path, "last").info["epoch"] == 3
    assert run.load("last").train_state == {"epoch": 3}
    assert os.readlink(run.path / "last") != os.readlink(run.path / "best")
    assert _listing(run.path) == ["best", "ckpt-2", "ckpt-3", "last", "run.lock"]
    run.save("best", _ckpt(4))
    assert _listing(run.path) == ["best", "ckpt-3", "ckpt-4", "last", "run.lock"]


def test_metrics_are_appended_one_line_each_and_a_torn_last_line_is_ignored(run):
    run.open("new")
    run.append_metrics({"epoch": 1, "train_perplexity": 9.0, "val_perplexity": None})
    run.append_metrics({"epoch": 2, "train_perplexity": 8.0, "val_perplexity": 8.5})
    with open(run.metrics_path, "a") as f:
        f.write('{"epoch": 3, "train_perp')           # a kill in the middle of a write
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    run.append_metrics({"epoch": 3, "train_perplexity": 7.0})
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
    run.trim_metrics(2)
    assert [r["epoch"] for r in run.read_metrics()] == [1, 2]
    assert run.plot_stem == run.path / "perplexity"


# -- the lock ----------------------------------------------------------------------------------------
def test_a_second_run_on_the_same_directory_is_refused_naming_the_holder(run):
    run.open("new")
    with pytest.raises(UserError, match=f"in use by another run \\(pid {os.getpid()} "):
        RunDirectory(run.path).open("resume")
    run.close()
    assert not (run.path / "run.lock").exists()


def test_a_second_process_is_refused_while_the_first_holds_the_lock(run):
    run.open("new")
    code = ("import sys; from scratchrnn.rundir import RunDirectory; from scratchrnn.errors import UserError\n"
            "try: RunDirectory(sys.argv[1]).open('overwrite')\n"
            "except UserError as e: print(e); sys.exit(2)\n")
    result = subprocess.run([os.sys.executable, "-c", code, str(run.path)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(SRC.parent)}, timeout=60)
    assert result.returncode == 2 and f"pid {os.getpid()}" in result.stdout


def test_a_stale_lock_of_a_killed_run_is_taken_over_saying_so(tmp_path):
    pid = os.fork()
    if pid == 0:   # the child opens the run and dies without closing it
        try:
            RunDirectory(tmp_path / "run").open("new")
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    holder = json.loads((tmp_path / "run" / "run.lock").read_text())
    assert holder["pid"] == pid
    run = RunDirectory(tmp_path / "run")
    notes = run.open("new")
    run.close()
    assert any("stale lock" in note and f"pid {pid}" in note for note in notes)


# -- open(mode) --------------------------------------------------------------------------------------
@pytest.mark.parametrize("existing", ["last", "best", "metrics.jsonl", "checkpoint"])
def test_new_refuses_a_directory_that_holds_a_run(tmp_path, existing):
    (tmp_path / "run").mkdir()
    if existing == "checkpoint":
        shutil.copytree(FIXTURE_V1, tmp_path / "run" / "checkpoint")
    elif existing == "metrics.jsonl":
        (tmp_path / "run" / existing).write_text('{"epoch": 1}\n')
    else:
        save_checkpoint(tmp_path / "run" / existing, _ckpt(1))
    with pytest.raises(RunExists, match="already holds a run.*overwrite it, resume it") as info:
        RunDirectory(tmp_path / "run").open("new")
    assert info.value.found == [existing] and isinstance(info.value, UserError)
    assert not (tmp_path / "run" / "run.lock").exists()


def test_overwrite_removes_the_previous_runs_checkpoints_metrics_and_plots(run):
    run.open("new")
    run.save(("last", "best"), _ckpt(1))
    run.append_metrics({"epoch": 1})
    for name in ("perplexity.png", "perplexity.svg", "metrics.json", "notes.txt"):
        (run.path / name).write_text("x")
    shutil.copytree(FIXTURE_V1, run.path / "checkpoint")
    run.close()
    run.open("overwrite")
    assert _listing(run.path) == ["notes.txt", "run.lock"]


def test_resume_needs_last(run):
    with pytest.raises(NothingToResume, match="cannot resume.*no last/"):
        run.open("resume")
    run.open("new")
    run.save("last", _ckpt(5))
    run.close()
    run.open("resume")
    assert run.load().info["epoch"] == 5


def test_a_path_under_a_regular_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a directory"):
        RunDirectory(tmp_path / "file" / "run").open("new")
    with pytest.raises(UserError, match="exists and is not a directory"):
        RunDirectory(tmp_path / "file").open("new")


def test_dangling_symlinks_are_refused_or_removed(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="dangling symlink"):
        RunDirectory(tmp_path / "gone").open("new")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="last is a dangling symlink"):
        RunDirectory(tmp_path / "run").open("new")
    run = RunDirectory(tmp_path / "run")
    run.open("overwrite")
    run.save("last", _ckpt(1))
    run.close()
    assert load_checkpoint(tmp_path / "run", "last").info["epoch"] == 1


def test_too_little_free_space_is_refused_before_training(run):
    with pytest.raises(UserError, match="not enough free space.*two checkpoints"):
        run.open("new", need_bytes=shutil.disk_usage(run.path.parent).free)


def _read_only_dir(tmp_path):
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path, lambda: path.chmod(0o755)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("root, and mount -t tmpfs is not allowed here: cannot make a read-only directory")
    return path, lambda: subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_directory_is_refused_before_training(tmp_path):
    path, undo = _read_only_dir(tmp_path)
    try:
        with pytest.raises(UserError, match="cannot (write in|create)"):
            RunDirectory(path / "run").open("new")
    finally:
        undo()


# -- faults during a save ----------------------------------------------------------------------------
def _points(*files):
    return {p for f in files for p in re.findall(r'faults\.point\("(checkpoint\.[a-z-]+)"\)', (SRC / f).read_text())}


RUN_SAVE_POINTS = ["checkpoint.staging-created", "checkpoint.model-written", "checkpoint.optimizer-written",
                   "checkpoint.config-written", "checkpoint.files-synced", "checkpoint.version-named",
                   "checkpoint.pointer-created", "checkpoint.pointer-swapped", "checkpoint.dir-synced",
                   "checkpoint.old-removed"]
PLAIN_SAVE_POINTS = ["checkpoint.staging-created", "checkpoint.model-written", "checkpoint.optimizer-written",
                     "checkpoint.config-written", "checkpoint.files-synced", "checkpoint.old-moved-aside",
                     "checkpoint.new-in-place", "checkpoint.old-removed"]


def test_the_fault_tests_cover_every_point_in_the_code():
    assert set(RUN_SAVE_POINTS) | set(PLAIN_SAVE_POINTS) == _points("checkpoint.py", "rundir.py")


def _killed_in_child(action, point):
    """Run ``action`` in a forked child with the fault armed; True if it was killed there."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.environ[faults.ENV] = f"{point}:kill"
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


@pytest.mark.parametrize("point", RUN_SAVE_POINTS)
@pytest.mark.parametrize("names", [("last",), ("last", "best")])
def test_a_kill_at_any_step_of_a_save_leaves_a_loadable_checkpoint(tmp_path, point, names):
    run = RunDirectory(tmp_path / "run")
    run.open("new")
    run.save(("last", "best"), _ckpt(1))
    run.close()

    def save_again():
        again = RunDirectory(tmp_path / "run")
        again.open("resume")
        again.save(names, _ckpt(2))

    assert _killed_in_child(save_again, point)
    for which in ("last", "best"):
        assert load_checkpoint(tmp_path / "run", which).info["epoch"] in (1, 2)
    run = RunDirectory(tmp_path / "run")
    notes = run.open("resume")
    assert any("stale lock" in note for note in notes)
    leftovers = [n for n in _listing(run.path) if n.startswith(".")]
    pointed = {os.readlink(run.path / "last"), os.readlink(run.path / "best")}
    versions = {n for n in _listing(run.path) if n.startswith("ckpt-")}
    assert not leftovers and versions == pointed
    run.save("last", _ckpt(3))
    run.close()
    assert load_checkpoint(tmp_path / "run", "last").info["epoch"] == 3


@pytest.mark.parametrize("point", RUN_SAVE_POINTS)
def test_ctrl_c_at_any_step_of_a_save_keeps_a_checkpoint(run, point, monkeypatch):
    run.open("new")
    run.save(("last", "best"), _ckpt(1))
    monkeypatch.setenv(faults.ENV, f"{point}:interrupt")
    with pytest.raises(KeyboardInterrupt):
        run.save(("last", "best"), _ckpt(2))
    monkeypatch.delenv(faults.ENV)
    for which in ("last", "best"):
        assert load_checkpoint(run.path, which).info["epoch"] in (1, 2)
    assert not [n for n in _listing(run.path) if n.startswith(".")]
    run.save("last", _ckpt(3))
    assert load_checkpoint(run.path, "last").info["epoch"] == 3


@pytest.mark.parametrize("point", PLAIN_SAVE_POINTS)
def test_a_kill_at_any_step_of_save_checkpoint_leaves_a_loadable_checkpoint(tmp_path, point):
    save_checkpoint(tmp_path / "ckpt", _ckpt(1))
    assert _killed_in_child(lambda: save_checkpoint(tmp_path / "ckpt", _ckpt(2)), point)
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] in (1, 2)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(run, monkeypatch):
    run.open("new")
    run.save("last", _ckpt(1))
    monkeypatch.setenv(faults.ENV, "checkpoint.model-written:enospc")
    with pytest.raises(SaveFailed, match="could not save the last/ checkpoint.*No space left.*previous last/ "
                                         "checkpoint is kept") as info:
        run.save("last", _ckpt(2))
    assert "\n" not in str(info.value) and isinstance(info.value, UserError)
    assert load_checkpoint(run.path, "last").info["epoch"] == 1
    assert _listing(run.path) == ["ckpt-1", "last", "run.lock"]


def test_a_real_tiny_filesystem_that_fills_up(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mount -t tmpfs is not allowed here")
    try:
        run = RunDirectory(mount / "run")
        run.open("new")
        run.save(("last", "best"), _ckpt(1, optimizer=False))
        big = ModelConfig(len(VOCAB), 400)          # about 0.7 MB of float32 weights and as much state
        params = init_params(big, 0)
        ckpt = Checkpoint(params, VOCAB, big, optimizer_state={f"m/{k}": v for k, v in params.items()})
        with pytest.raises(SaveFailed, match="No space left on device.*previous last/best/ checkpoint is kept"):
            run.save(("last", "best"), ckpt)
        assert load_checkpoint(run.path, "last").model == MODEL
        assert not [n for n in _listing(run.path) if n.startswith(".")]
        run.close()
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_leftovers_of_interrupted_saves_are_cleaned_and_a_mid_swap_copy_restored(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.open("new")
    run.save("last", _ckpt(1))
    run.close()
    (tmp_path / "run" / ".saving-999").mkdir()
    (tmp_path / "run" / "ckpt-77").mkdir()
    (tmp_path / "run" / ".pointer-last-999").symlink_to("ckpt-77")
    save_checkpoint(tmp_path / "run" / "checkpoint", _ckpt(0))
    os.rename(tmp_path / "run" / "checkpoint", tmp_path / "run" / ".checkpoint.old-999")
    notes = run.open("resume")
    assert any("removed leftovers" in n for n in notes) and any("restored checkpoint/" in n for n in notes)
    assert _listing(run.path) == ["checkpoint", "ckpt-1", "last", "run.lock"]


def test_a_real_directory_at_last_is_replaced_by_a_pointer(tmp_path):
    save_checkpoint(tmp_path / "run" / "last", _ckpt(1))
    run = RunDirectory(tmp_path / "run")
    run.open("resume")
    run.save("last", _ckpt(2))
    run.close()
    assert (tmp_path / "run" / "last").is_symlink()
    assert load_checkpoint(tmp_path / "run", "last").info["epoch"] == 2
    assert _listing(tmp_path / "run") == ["ckpt-1", "last"]


def test_metrics_that_cannot_be_written_raise_save_failed(run):
    run.open("new")
    run.metrics_path.mkdir()
    with pytest.raises(SaveFailed, match="could not append to .*metrics.jsonl"):
        run.append_metrics({"epoch": 1})
