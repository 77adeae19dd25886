"""The kernels' variants, their loader and their switches (scratchrnn.kernels). Runs in the core process;
the emulated processors run in qemu-x86_64 where it is installed."""
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import kernels
from scratchrnn.kernels import _library, _sources
from scratchrnn.kernels import decode as fast_decode
from scratchrnn.kernels import gated
from scratchrnn.kernels import recurrence as fast_recurrence

SRC = Path(kernels.__file__).resolve().parents[2]
needs_kernels = pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")


@pytest.fixture
def fresh_loader(monkeypatch):
    """The loader as if the process had just started: what it caches is forgotten (and restored)."""
    for name, value in (("_handle", None), ("_handle_error", None), ("_bound", {}), ("_chosen", None),
                        ("_chosen_error", None), ("_warned", set())):
        monkeypatch.setattr(_library, name, value)
    return _library


def _runs_compiled(cell="rnn", group="decoding") -> bool:
    """Whether ``kernels.choose`` gives a workload the compiled loops when they are forced."""
    steps, vocab = (0, 28) if group == "decoding" else (35, 0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCRATCHRNN_LOOPS", "compiled")
        return kernels.choose(kernels.Workload("numpy", cell, group, 1, 64, steps, vocab)).compiled


def _scratchrnn(*args, env=None, timeout=120):
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run([sys.executable, "-m", "scratchrnn", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def _decode_problem(hidden=96, vocab=13, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    W_step = rng.normal(0, 1.5 / np.sqrt(hidden), (hidden, hidden + vocab)).astype(np.float32)
    input_rows = rng.normal(0, 0.8, (vocab, hidden)).astype(np.float32)
    b_q = rng.normal(0, 0.3, vocab).astype(np.float32)
    h = np.tanh(rng.normal(size=(batch, hidden))).astype(np.float32)
    return h, (h @ W_step[:, hidden:] + b_q).astype(np.float32), input_rows, W_step, b_q


@needs_kernels
@pytest.mark.parametrize("batch", [1, 3, 24])     # columns split between threads; rows in groups
def test_every_variant_this_cpu_runs_decodes_alike(batch):
    results = {}
    for variant in kernels.built_variants():
        h, logits, input_rows, W_step, b_q = _decode_problem(batch=batch)
        tokens = fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 40, threads=2,
                                           kernels=kernels.variant_kernels(variant))
        results[variant] = tokens, h, logits
    first, *others = results.values()
    assert len(np.unique(first[0])) > 1
    for variant, (tokens, h, logits) in zip(list(results)[1:], others):
        np.testing.assert_array_equal(tokens, first[0], err_msg=variant)
        np.testing.assert_allclose(h, first[1], atol=2e-5, err_msg=variant)
        np.testing.assert_allclose(logits, first[2], atol=2e-5, err_msg=variant)


@needs_kernels
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_every_variant_this_cpu_runs_the_recurrences_alike(activation):
    rng = np.random.default_rng(2)
    steps, batch, hidden = 7, 19, 70
    W = rng.normal(0, 1.2 / np.sqrt(hidden), (hidden, hidden)).astype(np.float32)
    inputs = rng.normal(0, 0.7, (steps + 1, batch, hidden)).astype(np.float32)
    dhs = rng.normal(0, 1, (steps, batch, hidden)).astype(np.float32)
    dh_last = rng.normal(0, 1, (batch, hidden)).astype(np.float32)
    results = {}
    for variant in kernels.built_variants():
        chosen = kernels.variant_kernels(variant)
        hs = inputs.copy()
        fast_recurrence.forward(hs, W, activation, threads=2, kernels=chosen)
        dz, dh0 = fast_recurrence.backward(hs, W, dhs, dh_last, activation, True, threads=2, kernels=chosen)
        results[variant] = hs, dz, dh0
    first = next(iter(results.values()))
    for variant, arrays in results.items():
        for got, want in zip(arrays, first):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=variant)


@needs_kernels
@pytest.mark.parametrize("variant", _library.VARIANTS)
def test_kernel_tanh_is_within_5_units_in_the_last_place(variant):
    """What benchmarks/README.md says: within 5 units in the last place of the exact tanh."""
    chosen = kernels.variant_kernels(variant)
    if chosen is None:
        pytest.skip(f"the {variant} variant is not built or this processor does not run it")
    x = np.concatenate([np.linspace(-30, 30, 600_001), np.geomspace(1e-30, 1, 20_000),
                        -np.geomspace(1e-30, 1, 20_000)]).astype(np.float32)
    special = np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, np.nan], dtype=np.float32)
    x = np.concatenate([x, special])
    out = np.empty_like(x)
    chosen.tanh(len(x), x, out)
    exact = np.tanh(x.astype(np.float64))
    finite = np.isfinite(x)
    ulps = np.abs(out[finite] - exact[finite]) / np.spacing(np.abs(exact[finite]).astype(np.float32))
    assert ulps.max() <= 5
    np.testing.assert_array_equal(out[-len(special):], np.tanh(special))   # signs, +-1, NaN


@needs_kernels
@pytest.mark.parametrize("row,want", [([np.nan, 1, 2, 3, 0], 0), ([1, np.nan, 3], 1),
                                      ([1, 3, np.nan, np.nan], 2), ([2, 5, 5, 1], 1)])
def test_the_decoders_argmax_is_numpys_nan_included(row, want):
    """The first token is picked from the logits passed in, as np.argmax picks: the first NaN wins."""
    row = np.array(row, np.float32)
    assert np.argmax(row) == want
    vocab, hidden = len(row), 16
    _, _, input_rows, W_step, b_q = _decode_problem(hidden=hidden, vocab=vocab, batch=1)
    for variant in kernels.built_variants():
        h, logits = np.zeros((1, hidden), np.float32), row[None].copy()
        tokens = fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 1,
                                           kernels=kernels.variant_kernels(variant))
        assert tokens[0, 0] == want, variant


@needs_kernels
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_call_uses_no_more_threads_than_it_is_given(threads):
    hs = np.random.default_rng(0).normal(0, 0.5, (5, 48, 64)).astype(np.float32)
    W = np.eye(64, dtype=np.float32) * 0.5
    fast_recurrence.forward(hs, W, "tanh", threads=threads)
    assert kernels.last_threads() == threads           # 48 rows: six groups of 8 at most
    h, logits, input_rows, W_step, b_q = _decode_problem(hidden=256, batch=1)
    fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 5, threads=threads)
    assert kernels.last_threads() == threads           # 256 columns: 4 slices at most


def test_the_default_thread_count_follows_the_environment(monkeypatch, capsys, fresh_loader):
    monkeypatch.delenv("SCRATCHRNN_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert kernels.threads() == 3
    monkeypatch.setenv("SCRATCHRNN_THREADS", "2")
    assert kernels.threads() == 2
    for bad in ("abc", "1.5", "0", "-2"):
        monkeypatch.setenv("SCRATCHRNN_THREADS", bad)
        assert kernels.threads() == 3                  # ignored, with one line on stderr
        assert f"SCRATCHRNN_THREADS={bad!r} is not a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["abc", "1.5", "0"])
def test_a_bad_thread_count_is_one_line_not_a_traceback(value):
    for args in (["--help"], ["--version"]):
        done = _scratchrnn(*args, env={"SCRATCHRNN_THREADS": value})
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 1


@pytest.mark.parametrize("value,off", [("1", True), ("true", True), ("YES", True), ("0", False),
                                       ("", False), ("no", False), ("false", False)])
def test_no_kernel_means_off_only_when_it_says_so(monkeypatch, value, off):
    monkeypatch.setenv("SCRATCHRNN_NO_KERNEL", value)
    assert kernels.disabled() == off
    if off:
        assert kernels.status() == "off, SCRATCHRNN_NO_KERNEL is set"
        assert not _runs_compiled()
        assert kernels.choose(kernels.Workload("numpy", "rnn", "training", 1, 64, 35)).reason == \
            "SCRATCHRNN_NO_KERNEL is set"
    else:
        assert kernels.enabled() == (kernels.load() is not None)


@needs_kernels
def test_a_forced_variant_is_used_or_refused_with_a_reason(monkeypatch, fresh_loader):
    for variant in kernels.built_variants():
        fresh_loader._chosen = fresh_loader._chosen_error = None
        monkeypatch.setenv("SCRATCHRNN_KERNEL_VARIANT", variant)
        assert kernels.load().variant == variant and kernels.status().startswith(f"on, {variant} variant")
    fresh_loader._chosen = fresh_loader._chosen_error = None
    monkeypatch.setenv("SCRATCHRNN_KERNEL_VARIANT", "sse9")
    assert kernels.load() is None and not _runs_compiled()
    assert kernels.status() == ("off, SCRATCHRNN_KERNEL_VARIANT='sse9' is not one of auto, avx512, avx2, "
                                "baseline")


def test_a_library_that_cannot_be_used_turns_the_kernels_off_with_a_reason(monkeypatch, tmp_path,
                                                                          fresh_loader):
    monkeypatch.delenv("SCRATCHRNN_NO_KERNEL", raising=False)
    monkeypatch.setattr(_library, "_find_library", lambda: None)
    assert kernels.load() is None and kernels.status() == "off, not built (no C compiler at install time)"
    # a file that is no library at all
    fake = tmp_path / "_kernels.so"
    fake.write_text("not a library")
    for name, value in (("_handle", None), ("_handle_error", None), ("_chosen_error", None)):
        setattr(fresh_loader, name, value)
    monkeypatch.setattr(_library, "_find_library", lambda: fake)
    assert kernels.load() is None and kernels.status().startswith("off, cannot be loaded (_kernels.so: ")


@needs_kernels
def test_a_library_built_from_other_sources_is_refused(monkeypatch, fresh_loader):
    monkeypatch.delenv("SCRATCHRNN_NO_KERNEL", raising=False)
    monkeypatch.setattr(_library, "source_hash", lambda directory: "0123456789abcdef")
    assert kernels.load() is None and kernels.status().startswith("off, stale: built from other sources")
    assert not _runs_compiled(group="training")


def test_the_source_hash_changes_with_any_source(tmp_path):
    for name in ("a.c", "b.h", "notes.txt"):
        (tmp_path / name).write_text(name)
    first = _sources.source_hash(tmp_path)
    (tmp_path / "notes.txt").write_text("changed")
    assert _sources.source_hash(tmp_path) == first                   # not a source
    (tmp_path / "b.h").write_text("changed")
    assert _sources.source_hash(tmp_path) != first
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _sources.source_hash(empty) is None          # an installation without the sources


def test_choose_answers_the_one_question():
    """Forced to the compiled loops, ``kernels.choose`` gives them to every cell's training loops and to
    the RNN's decoder where the library can run (``enabled``), never to another cell's decoder or a
    cell the library does not have; a group it does not know is refused by name."""
    with pytest.raises(ValueError, match="group must be one of"):
        kernels.Workload("numpy", "rnn", "sample", 1, 64, 35)
    on = kernels.enabled()
    assert _runs_compiled() == on
    for cell in ("rnn", "gru", "lstm"):
        assert _runs_compiled(cell, "training") == on
    for cell in ("gru", "lstm"):
        assert not _runs_compiled(cell, "decoding")
    assert not _runs_compiled("gcn", "training")


EMULATED = {"Haswell": "avx2", "Nehalem": "baseline"}   # no AVX-512; no AVX at all


@needs_kernels
@pytest.mark.slow
@pytest.mark.parametrize("cpu", list(EMULATED))
def test_the_library_runs_on_an_emulated_older_processor(cpu):
    """The built library in qemu-x86_64 under a processor without AVX-512 (Haswell) and one without
    AVX (Nehalem): it picks the variant that processor runs, and computes what NumPy computes."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the emulated processors are x86-64 ones")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user)")
    script = Path(__file__).with_name("kernels_emulated.py")
    done = subprocess.run([qemu, "-cpu", cpu, sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-1500:]
    assert done.stdout.split()[:2] == ["variant", EMULATED[cpu]], done.stdout
    assert "agree" in done.stdout


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_starts_its_own_threads():
    """Only the forking thread survives fork(): the child's first call must not wait for the parent's
    helper threads (it would hang), and it computes what the parent computes."""
    rng = np.random.default_rng(5)
    W = rng.normal(0, 0.05, (64, 64)).astype(np.float32)
    inputs = rng.normal(0, 0.5, (6, 32, 64)).astype(np.float32)
    parent = inputs.copy()
    fast_recurrence.forward(parent, W, "tanh", threads=2)           # the helpers exist now
    pid = os.fork()
    if pid == 0:                                                    # the child
        child = inputs.copy()
        fast_recurrence.forward(child, W, "tanh", threads=2)
        os._exit(0 if np.array_equal(child, parent) and kernels.last_threads() == 2 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


_INTERRUPTED = """
import numpy as np
from scratchrnn.kernels import recurrence
rng = np.random.default_rng(0)
inputs = rng.normal(0, 0.5, (400, 64, 256)).astype(np.float32)
W = rng.normal(0, 0.05, (256, 256)).astype(np.float32)
print("calling", flush=True)
try:
    while True:                      # nearly all of the time inside a kernel call, the GIL released
        recurrence.forward(inputs.copy(), W, "tanh", threads=2)
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
"""


@needs_kernels
@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_kernel_calls_is_a_keyboard_interrupt():
    """A Ctrl-C that lands while the kernels compute (with the GIL released, on several threads) is
    raised as the KeyboardInterrupt it is once the call returns: never lost, never a crash or a hang."""
    child = subprocess.Popen([sys.executable, "-c", _INTERRUPTED], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert child.stdout.readline().strip() == "calling"
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0 and out.strip() == "KeyboardInterrupt"


@needs_kernels
def test_the_module_refuses_arrays_that_do_not_fit_the_sizes_it_is_given():
    """Every array a kernel is handed is checked against the sizes first (module.c): its element type,
    C order, writability where the kernel writes, and its number of elements. A misfit raises
    ValueError naming the argument, and the kernel never runs."""
    chosen = kernels.load()
    steps, batch, hidden = 3, 8, 16
    W = np.full((hidden, hidden), 0.1, np.float32)
    hs = np.ones((steps + 1, batch, hidden), np.float32)
    read_only = hs.copy()
    read_only.flags.writeable = False
    wide = np.ones((steps + 1, batch, 2 * hidden), np.float32)
    for bad, message in ((hs.astype(np.float64), "hs must hold float32"),
                         (hs.astype(np.int32), "hs must hold float32"),
                         (wide[:, :, ::2], "hs must be a C-contiguous, writable float32 array"),
                         (read_only, "hs must be a C-contiguous, writable float32 array"),
                         (hs[:steps], f"hs must hold {(steps + 1) * batch * hidden} elements"),
                         ([1.0, 2.0], "hs must be a C-contiguous")):
        with pytest.raises(ValueError, match=message):
            chosen.recurrence_forward(steps, batch, hidden, 2, False, W, bad)
    np.testing.assert_array_equal(read_only, 1.0)                      # nothing ran
    with pytest.raises(ValueError, match="W_hh must hold 256 elements"):
        chosen.recurrence_forward(steps, batch, hidden, 2, False, W[:8], hs)
    with pytest.raises(ValueError, match="batch must be at least 1, not 0"):
        chosen.recurrence_forward(steps, 0, hidden, 2, False, W, hs)
    with pytest.raises(ValueError, match="dh_last must hold 128 elements"):
        chosen.recurrence_backward(steps, batch, hidden, 2, False, W, hs, None, np.ones(3, np.float32),
                                   np.empty((steps, batch, hidden), np.float32), None)
    np.testing.assert_array_equal(hs, 1.0)
    with pytest.raises(ValueError, match="forced must hold int64"):
        h, logits, input_rows, W_step, b_q = _decode_problem(batch=1)
        chosen.greedy_decode(1, 96, 13, 2, 3, 1, False, np.zeros((1, 2), np.int32), input_rows, W_step, b_q,
                             h, logits, np.empty((1, 3), np.int64))
    terms = np.zeros((steps, batch, 4 * hidden), np.float32)
    W_h = np.zeros((hidden, 4 * hidden), np.float32)
    cache = gated.lstm_forward(terms, hs[0], hs[0], W_h, threads=1, kernels=chosen)
    d_terms, rows = np.empty_like(terms), np.empty((batch, hidden), np.float32)
    with pytest.raises(ValueError, match="dh0 and dc0 must both be arrays or both be None"):
        chosen.lstm_backward(steps, batch, hidden, 1, 0, W_h, *cache[1:], None, None, None, d_terms, rows, None)
