"""Which step loops run (scratchrnn.kernels.choose) and the wisdom file that remembers it
(kernels/wisdom.py), with the timings injected: no test here reads the real clock. Runs in the core
process; the library is stood in for where the logic does not need it, so these run without a compiler."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import backends, kernels
from scratchrnn.kernels import choice, wisdom
from scratchrnn.model import ModelConfig, init_params

SRC = Path(kernels.__file__).resolve().parents[2]
LSTM = kernels.Workload("numpy", "lstm", "training", 32, 512, 35)
RNN = kernels.Workload("numpy", "rnn", "training", 32, 512, 35)


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """A fresh process's view: measuring on (SCRATCHRNN_LOOPS unset), two threads, an empty cache in
    ``tmp_path`` (returned)."""
    for name in ("SCRATCHRNN_LOOPS", "SCRATCHRNN_NO_KERNEL", "SCRATCHRNN_FAULT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCRATCHRNN_THREADS", "2")
    monkeypatch.setenv("SCRATCHRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(choice, "_wisdoms", {})
    monkeypatch.setattr(wisdom, "_said", set())
    return tmp_path / "cache"


@pytest.fixture
def machine(measuring, monkeypatch):
    """``measuring``, with a library that loads (a stand-in for its avx2 variant: the choice never
    calls it), so that the choosing logic is tested where no compiler built the real one."""
    monkeypatch.setattr(choice._library, "load", lambda: types.SimpleNamespace(variant="avx2", vector_floats=8))
    return measuring


class Timings:
    """An injected measurement: the seconds it is given for each candidate, in every round; it counts
    its calls and which candidates it was handed."""

    def __init__(self, **seconds):
        self.seconds, self.calls, self.seen = seconds, 0, []

    def __call__(self, runners):
        self.calls += 1
        self.seen.append(sorted(runners))
        return {name: list(self.seconds[name.replace("-", "_")]) for name in runners}


def no_trial(candidate):
    raise AssertionError("nothing may be measured here")


def trial(candidate):
    return lambda: None


def wisdom_file(directory: Path) -> Path:
    files = list(directory.glob("wisdom-*.json"))
    assert len(files) == 1, files
    return files[0]


# -- the rules -----------------------------------------------------------------------------------------
def test_compiled_loops_measured_faster_are_chosen_and_remembered(machine):
    timings = Timings(own=[1.0, 1.0, 1.1], compiled=[0.5, 0.52, 0.5])
    chosen = kernels.choose(RNN, trial, measure=timings)
    assert chosen.compiled and chosen.variant == "avx2" and chosen.threads == 2 and chosen.unit_shares == 0
    assert chosen.reason.startswith("measured 2.00x the speed of the numpy loops here (wisdom file ")
    assert timings.seen == [["compiled", "own"]]
    again = kernels.choose(RNN, no_trial, measure=timings)          # remembered: not measured again
    assert again == chosen and timings.calls == 1


@pytest.mark.parametrize("compiled", [[1.2, 1.3, 1.25], [0.99, 0.98, 0.99], [1.0, 1.0, 1.0]],
                         ids=["slower", "within-noise", "tied"])
def test_compiled_loops_not_measurably_faster_are_not_chosen(machine, compiled):
    chosen = kernels.choose(RNN, trial, measure=Timings(own=[1.0, 1.0, 1.0], compiled=compiled))
    assert chosen.loops == "own"
    assert "not measurably faster" in chosen.reason


def test_faster_by_the_median_but_slower_in_most_rounds_is_not_chosen(machine):
    """Side by side, round by round: a median pulled down by one lucky round does not count."""
    assert choice.decide({"own": [1.0, 1.0, 1.0, 1.0], "compiled": [0.5, 0.5, 1.1, 1.1]})[0] == "own"
    assert choice.decide({"own": [1.0, 1.0, 1.0], "compiled": [0.5, 0.5, 1.1]})[0] == "compiled"


def test_the_lstm_takes_the_faster_way_of_sharing_out_its_work(machine):
    units_faster = kernels.choose(LSTM, trial, measure=Timings(own=[3.0] * 3, compiled=[2.0] * 3,
                                                                compiled_units=[1.5] * 3))
    assert units_faster.compiled and units_faster.unit_shares == 2
    rows = kernels.Workload("numpy", "lstm", "training", 256, 512, 35)
    rows_faster = kernels.choose(rows, trial, measure=Timings(own=[3.0] * 3, compiled=[1.5] * 3,
                                                             compiled_units=[2.0] * 3))
    assert rows_faster.compiled and rows_faster.unit_shares == 0


def test_one_thread_has_no_hidden_units_to_share_out(machine, monkeypatch):
    monkeypatch.setenv("SCRATCHRNN_THREADS", "1")
    timings = Timings(own=[3.0] * 3, compiled=[1.0] * 3)
    assert kernels.choose(LSTM, trial, measure=timings).threads == 1
    assert timings.seen == [["compiled", "own"]]


@pytest.mark.parametrize("setting", ["own", "compiled"])
def test_a_forced_choice_measures_nothing(machine, monkeypatch, setting):
    monkeypatch.setenv("SCRATCHRNN_LOOPS", setting)
    chosen = kernels.choose(LSTM, no_trial, measure=no_trial)
    assert chosen.loops == setting and chosen.reason == f"SCRATCHRNN_LOOPS={setting}"
    assert not machine.exists()                                      # nothing written either


def test_no_kernel_means_the_frameworks_loops_with_the_reason(machine, monkeypatch):
    monkeypatch.setenv("SCRATCHRNN_NO_KERNEL", "1")
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")                 # NO_KERNEL wins
    chosen = kernels.choose(RNN, no_trial, measure=no_trial)
    assert chosen == kernels.Choice("own", "SCRATCHRNN_NO_KERNEL is set")


def test_what_the_library_cannot_take_is_never_measured(machine):
    cases = {"float64: the compiled loops compute in float32": dict(dtype="float64"),
             "on cuda: the compiled loops run on the CPU": dict(device="cuda")}
    for reason, change in cases.items():
        workload = kernels.Workload("torch", "gru", "training", 32, 64, 35, **change)
        assert kernels.choose(workload, no_trial, measure=no_trial) == kernels.Choice("own", reason)
    gated_decoder = kernels.Workload("numpy", "gru", "decoding", 1, 64, vocab=28)
    assert kernels.choose(gated_decoder, no_trial, measure=no_trial).reason == \
        "the compiled library has no decoder for the gru"


def test_a_library_that_cannot_be_used_gives_its_reason(machine, monkeypatch):
    monkeypatch.setattr(choice._library, "load", lambda: None)
    monkeypatch.setattr(choice._library, "status", lambda: "off, not built (no C compiler at install time)")
    assert kernels.choose(RNN, no_trial, measure=no_trial).reason == \
        "the compiled library is off, not built (no C compiler at install time)"


def test_forward_passes_alone_follow_training_and_are_never_measured(machine):
    inference = kernels.Workload("numpy", "rnn", "inference", 32, 512, 35)
    before = kernels.choose(inference, no_trial, measure=no_trial)
    assert before.loops == "own" and "not" in before.reason
    kernels.choose(RNN, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3))
    assert kernels.choose(inference, no_trial, measure=no_trial).compiled


def test_decoding_is_measured_once_per_bucket_of_streams(machine):
    timings = Timings(own=[1.0] * 3, compiled=[0.4] * 3)
    for streams in (33, 40, 64, 50):
        workload = kernels.Workload("numpy", "rnn", "decoding", streams, 512, vocab=28)
        assert kernels.choose(workload, trial, measure=timings).compiled
    assert timings.calls == 1
    assert list(json.loads(wisdom_file(machine).read_text())["entries"]) == \
        ["numpy/rnn/decoding/float32/b64/h512/v28/tanh/t2"]
    assert [kernels.decoding_bucket(n) for n in (1, 2, 3, 4, 5, 64, 65)] == [1, 2, 4, 4, 8, 64, 128]


def test_without_a_trial_an_unmeasured_workload_runs_the_frameworks_loops(machine):
    assert kernels.choose(RNN).reason == "not measured here (scratchrnn tune measures it)"


def test_each_thread_count_is_its_own_workload(machine, monkeypatch):
    timings = Timings(own=[1.0] * 3, compiled=[0.5] * 3)
    kernels.choose(RNN, trial, measure=timings)
    monkeypatch.setenv("SCRATCHRNN_THREADS", "1")
    kernels.choose(RNN, trial, measure=timings)
    assert timings.calls == 2


def test_a_bad_loops_setting_is_said_once_and_measured(machine, monkeypatch, capsys):
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "fastest")
    timings = Timings(own=[1.0] * 3, compiled=[0.5] * 3)
    assert kernels.choose(RNN, trial, measure=timings).compiled and timings.calls == 1
    kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    err = capsys.readouterr().err
    assert err == "scratchrnn: SCRATCHRNN_LOOPS='fastest' is not one of measure, own, compiled; measuring\n"


def test_the_progress_line_is_for_a_terminal_only(machine, monkeypatch, capsys):
    kernels.choose(RNN, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3))
    assert capsys.readouterr().err == ""                             # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    lines = capsys.readouterr()
    assert lines.out == ""
    assert lines.err.splitlines() == ["scratchrnn: timing the lstm step loops 32x512, 35 steps (numpy) on this "
                                      "machine (once; scratchrnn tune --show)"]


def test_the_measurement_alternates_and_takes_the_rounds_it_is_allowed(monkeypatch):
    """measure_interleaved on a fake clock: one untimed run each, then rounds in alternating order
    until the budget is spent (never fewer than MIN_ROUNDS)."""
    now, order = [0.0], []

    def runner(name, seconds):
        def run():
            order.append(name)
            now[0] += seconds
        return run
    times = choice.measure_interleaved({"own": runner("own", 0.2), "compiled": runner("compiled", 0.1)},
                                       clock=lambda: now[0])
    assert order[:2] == ["own", "compiled"]                          # the untimed runs
    assert order[2:8] == ["own", "compiled", "compiled", "own", "own", "compiled"]
    assert len(times["own"]) == len(times["compiled"]) == choice.MIN_ROUNDS   # 0.9 s > the budget by then
    assert times == {"own": pytest.approx([0.2] * 3), "compiled": pytest.approx([0.1] * 3)}


# -- the wisdom file ------------------------------------------------------------------------------------
def _measure_rnn(timings=None):
    return kernels.choose(RNN, trial, measure=timings or Timings(own=[1.0] * 3, compiled=[0.5] * 3))


def test_the_wisdom_file_round_trips(machine, monkeypatch):
    chosen = _measure_rnn()
    path = wisdom_file(machine)
    document = json.loads(path.read_text())
    assert document["format"] == wisdom.FORMAT and document["cpu"] == wisdom.cpu_model()
    assert document["library"] == choice.library_identity()
    assert document["entries"]["numpy/rnn/training/float32/b32/h512/s35/tanh/t2"] == {
        "loops": "compiled", "unit_shares": 0, "speedup": 2.0, "times": {"compiled": 0.5, "own": 1.0}}
    monkeypatch.setattr(choice, "_wisdoms", {})                      # as a new process reads it
    assert kernels.choose(RNN, no_trial, measure=no_trial) == chosen


def test_a_second_process_keeps_what_the_first_wrote(machine, monkeypatch):
    _measure_rnn()
    other = wisdom.Wisdom(machine, wisdom.cpu_model(), choice.library_identity())
    other.remember("torch/gru/training/float32/b8/h64/s5/tanh/t2",
                   {"loops": "own", "unit_shares": 0, "speedup": 0.9, "times": {"own": 1.0, "compiled": 1.1}})
    kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    assert len(json.loads(wisdom_file(machine).read_text())["entries"]) == 3


def test_a_crash_between_writing_and_renaming_leaves_the_old_file_whole(machine, monkeypatch, capsys):
    _measure_rnn()
    path = wisdom_file(machine)
    before = path.read_bytes()
    monkeypatch.setenv("SCRATCHRNN_FAULT", "wisdom.temporary-written:enospc")
    chosen = kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    assert chosen.compiled                                           # kept in memory
    assert path.read_bytes() == before
    assert sorted(p.name for p in machine.iterdir()) == [path.name]  # no temporary file left behind
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"scratchrnn: cannot write the wisdom file {path} (")
    monkeypatch.setenv("SCRATCHRNN_FAULT", "wisdom.temporary-written:interrupt")
    monkeypatch.setattr(choice, "_wisdoms", {})
    with pytest.raises(KeyboardInterrupt):
        kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    assert path.read_bytes() == before and sorted(p.name for p in machine.iterdir()) == [path.name]


def _spoil(path: Path, how: str) -> None:
    document = json.loads(path.read_text())
    entry = document["entries"]["numpy/rnn/training/float32/b32/h512/s35/tanh/t2"]
    if how == "not-json":
        path.write_text('{"format": 1, "entries": {')
        return
    if how == "wrong-type":
        entry["speedup"] = "fast"
    elif how == "unknown-loops":
        entry["loops"] = "gpu"
    elif how == "negative-time":
        entry["times"]["own"] = -1.0
    elif how == "foreign-cpu":
        document["cpu"] = "Some Other Processor 9000"
    elif how == "foreign-build":
        document["library"] = {**document["library"], "build": "0123456789abcdef"}
    elif how == "other-format":
        document["format"] = wisdom.FORMAT + 1
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("how", ["not-json", "wrong-type", "unknown-loops", "negative-time", "foreign-cpu",
                                 "foreign-build", "other-format"])
def test_a_corrupt_or_foreign_wisdom_file_is_ignored_with_one_line_and_rewritten(machine, monkeypatch, capsys,
                                                                              how):
    _measure_rnn()
    path = wisdom_file(machine)
    _spoil(path, how)
    monkeypatch.setattr(choice, "_wisdoms", {})                      # a new process meets the file
    timings = Timings(own=[1.0] * 3, compiled=[2.0] * 3)
    again = kernels.choose(RNN, trial, measure=timings)
    assert timings.calls == 1 and again.loops == "own"               # measured again, not read
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"scratchrnn: ignoring the wisdom file {path} (")
    assert err[0].endswith("; it will be rewritten")
    document = json.loads(path.read_text())                          # rewritten, valid
    assert wisdom.check(document, wisdom.cpu_model(), choice.library_identity()) is None
    assert document["entries"]["numpy/rnn/training/float32/b32/h512/s35/tanh/t2"]["loops"] == "own"


def test_an_unwritable_cache_keeps_the_choices_in_memory_with_one_line(machine, monkeypatch, capsys):
    blocker = machine.parent / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SCRATCHRNN_CACHE", str(blocker / "cache"))
    timings = Timings(own=[1.0] * 3, compiled=[0.5] * 3)
    assert _measure_rnn(timings).compiled
    assert kernels.choose(RNN, no_trial, measure=no_trial).compiled  # remembered in memory
    kernels.choose(LSTM, trial, measure=Timings(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.6] * 3))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("scratchrnn: cannot write the wisdom file ")
    assert err[0].endswith("the measured choices are kept for this process only")


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCHRNN_CACHE", str(tmp_path / "mine"))
    assert wisdom.cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("SCRATCHRNN_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wisdom.cache_dir() == tmp_path / "xdg" / "scratchrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert wisdom.cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "scratchrnn"


def test_one_file_per_processor_and_library_build():
    library = {"build": "0123456789abcdef", "variant": "avx2"}
    name = wisdom.file_name("AMD EPYC 7B13 64-Core Processor", library)
    assert name.startswith("wisdom-amd-epyc-7b13-64-core-processor-") and name.endswith("-0123456789abcdef-avx2.json")
    assert wisdom.file_name("AMD EPYC 7B13 64-Core Processor ", library) != name
    assert wisdom.file_name("AMD EPYC 7B13 64-Core Processor", {**library, "variant": "baseline"}) != name


# -- the trials: what is timed ---------------------------------------------------------------------------
class RunsEach(Timings):
    """An injected measurement that runs every candidate once (what is timed must run), then gives the
    seconds it was told."""

    def __call__(self, runners):
        for run in runners.values():
            run()
        return super().__call__(runners)


@pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_numpy_trial_runs_each_candidates_loops(cell, measuring, monkeypatch):
    """What the choice times for the numpy backend: its own loops, and the compiled ones (both loops)."""
    from scratchrnn.backends.numpy.cells import training_trial
    from scratchrnn.kernels import gated, recurrence
    ran = []
    for module, name in ((recurrence, "forward"), (recurrence, "backward"), (gated, f"{cell}_forward"),
                         (gated, f"{cell}_backward")):
        if hasattr(module, name):
            real = getattr(module, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: ran.append(_name) or _real(*a, **k))
    workload = kernels.Workload("numpy", cell, "training", 5, 16, 4)
    timings = RunsEach(own=[1.0] * 3, compiled=[0.5] * 3, compiled_units=[0.4] * 3)
    chosen = kernels.choose(workload, training_trial(workload), measure=timings)
    assert chosen.compiled and chosen.unit_shares == (2 if cell == "lstm" else 0)
    compiled_candidates = len(timings.seen[0]) - 1                   # all but "own"
    assert len(ran) == 2 * compiled_candidates                       # each ran its forward and backward loop


# -- the backends ask once ------------------------------------------------------------------------------
def test_the_numpy_backend_asks_once_per_shape(machine, monkeypatch):
    asked = []
    real = kernels.choose
    monkeypatch.setattr(kernels, "choose", lambda workload, *a, **k: asked.append(workload) or real(workload, *a, **k))
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "own")
    config = ModelConfig(11, 16, cell="gru", num_layers=2)
    backend = backends.create("numpy", init_params(config, 0), config)
    X, Y = np.random.default_rng(0).integers(0, 11, (2, 4, 6))
    state = backend.begin_state(4)
    for _ in range(3):
        _, state = backend.train_step(X, Y, backend.detach(state), 0.1, 1.0)
    for _ in range(2):
        backend.forward(X, backend.begin_state(4))
    assert [(w.group, w.batch, w.steps) for w in asked] == [("training", 4, 6), ("inference", 4, 6)]


# -- the seam ----------------------------------------------------------------------------------------------
def test_the_cells_import_no_compiled_code():
    """scratchrnn.cells is the mathematics in NumPy: importing it loads nothing of scratchrnn.kernels."""
    done = subprocess.run([sys.executable, "-c", "import sys, scratchrnn.cells; "
                           "print(sorted(m for m in sys.modules if m.startswith('scratchrnn.kernels')))"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- what the command line says ------------------------------------------------------------------------------
def _main(capsys, *argv):
    from scratchrnn.cli import main
    try:
        code = main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr()


def test_version_says_how_the_loops_are_chosen_and_where_the_wisdom_is(machine, monkeypatch, capsys):
    code, out = _main(capsys, "--version")
    assert code == 0
    line = " ".join(out.out.split())
    assert f"compiled kernels: {kernels.status()}; " in line
    if choice._library.disabled() or kernels.load() is None:
        assert line.endswith("; step loops: the frameworks' own)")
    else:
        path = choice.current_wisdom().path
        assert line.endswith(f"; step loops: measured on first use, remembered in {path})")
        assert path.parent == machine
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")
    assert _main(capsys, "--version")[1].out.rstrip().endswith("; step loops: compiled (SCRATCHRNN_LOOPS))")


def test_tune_show_lists_every_remembered_choice_and_why(machine, capsys):
    code, out = _main(capsys, "tune", "--show")
    path = choice.current_wisdom().path
    assert code == 0 and f"nothing measured yet on this machine (wisdom file: {path})" in out.out
    _measure_rnn()
    kernels.choose(LSTM, trial, measure=Timings(own=[3.0] * 3, compiled=[2.0] * 3, compiled_units=[1.5] * 3))
    decoder = kernels.Workload("numpy", "rnn", "decoding", 64, 512, vocab=28)
    kernels.choose(decoder, trial, measure=Timings(own=[1.0] * 3, compiled=[1.5] * 3))
    code, out = _main(capsys, "tune", "--show")
    assert code == 0 and out.err == ""
    lines = out.out.splitlines()
    assert lines[0] == f"compiled kernels: {kernels.status()}"
    assert f"wisdom file: {path} (3 workload(s))" in lines
    assert lines[-3:] == [
        "  numpy/lstm/training/float32/b32/h512/s35/tanh/t2: compiled, hidden units in 2 shares: 2.00x the speed "
        "of the framework's loops (compiled 2000.00 ms, compiled-units 1500.00 ms, own 3000.00 ms)",
        "  numpy/rnn/decoding/float32/b64/h512/v28/tanh/t2: own: the compiled loops 0.67x, not measurably faster "
        "(compiled 1500.00 ms, own 1000.00 ms)",
        "  numpy/rnn/training/float32/b32/h512/s35/tanh/t2: compiled: 2.00x the speed of the framework's loops "
        "(compiled 500.00 ms, own 1000.00 ms)"]


def test_tune_refuses_a_backend_it_cannot_tune_in_one_line(capsys):
    code, out = _main(capsys, "tune", "--backend", "tensorflow")
    assert code == 2 and out.err.count("\n") == 1
    assert "--backend takes a comma-separated list of numpy, torch, not 'tensorflow'" in out.err
    code, out = _main(capsys, "tune", "--streams", "1,x")
    assert code == 2 and "--streams takes a comma-separated list of positive integers" in out.err


@pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
def test_tune_measures_the_workloads_it_is_given_and_show_lists_them(tmp_path):
    """The command end to end at a tiny size (which loops win is the machine's business, not the test's)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "SCRATCHRNN_CACHE": str(tmp_path)}
    env.pop("SCRATCHRNN_LOOPS", None)
    command = [sys.executable, "-m", "scratchrnn", "tune", "--backend", "numpy", "--cell", "rnn,lstm", "--hidden", "8",
               "--batch-size", "3", "--num-steps", "4", "--streams", "3"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [
        "the rnn step loops 3x8, 4 steps (numpy)", "the lstm step loops 3x8, 4 steps (numpy)",
        "the rnn decoder, 4 stream(s) of 8 units (numpy)", "one step of the rnn loops, 4 stream(s) of 8 units (numpy)",
        "one step of the lstm loops, 4 stream(s) of 8 units (numpy)"]
    shown = subprocess.run([sys.executable, "-m", "scratchrnn", "tune", "--show"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert shown.returncode == 0
    listed = [line.split(":")[0].strip() for line in shown.stdout.splitlines() if line.startswith("  ")]
    threads = str(kernels.threads())
    assert listed == ["numpy/lstm/stepping/float32/b4/h8/s1/tanh/t" + threads,
                      "numpy/lstm/training/float32/b3/h8/s4/tanh/t" + threads,
                      "numpy/rnn/decoding/float32/b4/h8/v28/tanh/t" + threads,
                      "numpy/rnn/stepping/float32/b4/h8/s1/tanh/t" + threads,
                      "numpy/rnn/training/float32/b3/h8/s4/tanh/t" + threads]


def test_one_step_for_many_streams_is_measured_once_per_bucket(machine):
    """A server's batch of streams advanced one step is no training shape: it is measured on its own,
    once per bucket of streams."""
    timings = Timings(own=[1.0] * 3, compiled=[0.4] * 3)
    for streams in (17, 20, 32):
        stepping = kernels.Workload("numpy", "gru", "stepping", streams, 512, 1)
        assert kernels.choose(stepping, trial, measure=timings).compiled
    assert timings.calls == 1
    assert list(json.loads(wisdom_file(machine).read_text())["entries"]) == \
        ["numpy/gru/stepping/float32/b32/h512/s1/tanh/t2"]
    with pytest.raises(ValueError, match="one step at a time"):
        kernels.Workload("numpy", "gru", "stepping", 4, 512, 35)


def test_the_numpy_backend_asks_for_single_steps_as_stepping(machine, monkeypatch):
    asked = []
    real = kernels.choose
    monkeypatch.setattr(kernels, "choose", lambda workload, *a, **k: asked.append(workload) or real(workload, *a, **k))
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "own")
    config = ModelConfig(11, 16, cell="lstm")
    backend = backends.create("numpy", init_params(config, 0), config)
    X = np.random.default_rng(0).integers(0, 11, (5, 1))
    backend.forward(X, backend.begin_state(5))
    backend.forward(np.concatenate([X, X], axis=1), backend.begin_state(5))
    assert [(w.group, w.batch, w.steps) for w in asked] == [("stepping", 5, 1), ("inference", 5, 2)]
