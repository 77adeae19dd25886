"""More of scripts/probe.py's catalogue (issue 28): a run never writes what it cannot read back, its
directory is read as strictly as a checkpoint, values that overflow in use, Ctrl-C injected at named
points and at real moments during PyTorch's import, full and odd disks everywhere, data files whose
size lies, threads and the environment. ``CASES`` holds (category, name, function of the workspace);
probe.py runs them with its own."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from probe_damage import read_config, reseal, write_config
from probe_run import MiB, TINY, Broke, Skip, cli, env_for, expect, finish, kill_group, loadable, start, train_tiny

CASES: list[tuple[str, str, callable]] = []
BIG = str(10 ** 30)
MAX_COUNT = str((1 << 63) - 1)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def case(category: str, name: str):
    def register(fn):
        CASES.append((category, name, fn))
        return fn
    return register


def _needs_torch():
    if not HAS_TORCH:
        raise Skip("PyTorch is not installed here")


def _strict_json(text: str) -> dict:
    def refuse(name):
        raise Broke(f"--json printed {name}, which is not JSON")
    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError as err:
        raise Broke(f"--json printed no JSON: {err}") from None


# -- what train accepts its reader accepts; what the reader refuses train refuses first -------------------
for _name, _flags in [("seed-1e30", ["--seed", BIG]), ("warmup-1e30", ["--warmup", BIG]),
                      ("eval-every-1e30", ["--eval-every", BIG]),
                      ("checkpoint-every-1e30", ["--checkpoint-every", BIG]),
                      ("predict-every-1e30", ["--predict-every", BIG]),
                      ("lr-decay-every-1e30", ["--lr-decay-every", BIG]),
                      ("max-tokens-1e30", ["--max-tokens", BIG]), ("epochs-1e30", ["--epochs", BIG]),
                      ("layers-65", ["--layers", "65"]),
                      ("embed-dim-65537", ["--embedding", "learned", "--embed-dim", "65537"]),
                      ("forget-bias-inf", ["--cell", "lstm", "--forget-bias", "inf"]),
                      ("forget-bias-1e39", ["--cell", "lstm", "--forget-bias", "1e39"]),
                      ("threads-1e30", ["--threads", BIG]), ("threads-5000", ["--threads", "5000"])]:
    def _refused_before(ws, _flags=_flags):
        out = ws.dir("rule") / "run"
        expect(train_tiny(out, *_flags, timeout=60), seconds=45)
        if out.exists():
            raise Broke(f"{out} was created by a refused command")
    case("bad options", f"train-{_name}-refused-before-it-starts")(_refused_before)


@case("bad options", "counts-at-their-bound-written-read-back-resumed")
def _(ws):
    out = ws.dir("bound") / "run"
    expect(train_tiny(out, "--seed", MAX_COUNT, "--warmup", MAX_COUNT, "--eval-every", MAX_COUNT,
                      "--checkpoint-every", MAX_COUNT, "--predict-every", MAX_COUNT, "--lr-decay-every", MAX_COUNT,
                      "--cell", "lstm", "--forget-bias", "3.4e38"), codes=(0,), one_line=False)
    loadable(out)
    expect(cli("train", "--resume", out, "--epochs", "3", "--no-progress", timeout=120), codes=(0,), one_line=False)


@case("bad options", "resume-of-a-missing-directory-creates-nothing")
def _(ws):
    where = ws.dir("nothing")
    expect(cli("train", "--resume", where / "no" / "such" / "run", timeout=60))
    if (where / "no").exists():
        raise Broke("the refused --resume created the directory tree")


@case("bad options", "out-in-bytes-that-are-not-utf8")
def _(ws):
    out = os.fsdecode(os.fsencode(str(ws.dir("bytes"))) + b"/run-\xff")
    expect(train_tiny(out, timeout=60))


@case("bad options", "out-with-a-300-character-name")
def _(ws):
    expect(train_tiny(ws.dir("long") / ("a" * 300), timeout=60))


@case("bad options", "scratchrnn-threads-100000")
def _(ws):
    proc = expect(train_tiny(ws.dir("envthreads") / "run", env={"SCRATCHRNN_THREADS": "100000"}), codes=(0,),
                  one_line=False)
    if proc.err.count("SCRATCHRNN_THREADS") != 1:
        raise Broke(f"not one line about SCRATCHRNN_THREADS: {proc.err[-300:]!r}")


@case("bad options", "mplbackend-bogus-falls-back-to-agg")
def _(ws):
    out = ws.dir("mpl") / "run"
    proc = expect(train_tiny(out, env={"MPLBACKEND": "bogus"}), codes=(0,), one_line=False)
    if proc.err.count("MPLBACKEND") != 1 or not (out / "perplexity.png").exists():
        raise Broke(f"no plot, or not one line saying so: {proc.err[-300:]!r}")


@case("bad options", "dist-timeout-inf-with-nproc-2-said-once")
def _(ws):
    _needs_torch()
    proc = expect(train_tiny(ws.dir("dtinf") / "run", "--backend", "torch", "--nproc", "2",
                             env={"SCRATCHRNN_DIST_TIMEOUT": "inf"}, timeout=120), seconds=60)
    if proc.err.count("SCRATCHRNN_DIST_TIMEOUT") != 1:
        raise Broke(f"said {proc.err.count('SCRATCHRNN_DIST_TIMEOUT')} times")


@case("bad options", "torchrun-rank-1-without-rank-0")
def _(ws):
    _needs_torch()
    with socket.socket() as s:                       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "SCRATCHRNN_DIST_TIMEOUT": "4"}
    proc = expect(train_tiny(ws.dir("rank1") / "run", "--backend", "torch", env=env, timeout=120), seconds=90)
    if "frame #" in proc.err:
        raise Broke("a C++ stack on stderr")


# -- generate: overflow, temperatures, <unk>, strict JSON, many unknown characters ----------------------
def _weights(scale: float, dtype: str, unk_bias: float | None = None):
    def damage(ckpt: Path):
        import numpy as np
        header_len = struct.unpack("<Q", (ckpt / "model.safetensors").read_bytes()[:8])[0]
        header = json.loads((ckpt / "model.safetensors").read_bytes()[8:8 + header_len])
        rng = np.random.default_rng(0)
        blobs, offset, new = [], 0, {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            values = (rng.standard_normal(entry["shape"]) * scale).astype(dtype)
            if unk_bias is not None and name == "b_q":
                values = np.zeros(entry["shape"], dtype)
                values[0] = unk_bias
            blob = values.tobytes()
            new[name] = {"dtype": {"float32": "F32", "float64": "F64"}[dtype], "shape": entry["shape"],
                         "data_offsets": [offset, offset + len(blob)]}
            blobs.append(blob)
            offset += len(blob)
        raw = json.dumps(new).encode()
        (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
        reseal(ckpt)
    return damage


for _name, _scale, _dtype in [("float64-weights-1e39", 1e39, "float64"), ("float64-weights-1e300", 1e300, "float64"),
                              ("float32-weights-near-the-limit", 3e37, "float32")]:
    def _overflowing(ws, _scale=_scale, _dtype=_dtype, _name=_name):
        ckpt = ws.checkpoint_copy(_name)
        _weights(_scale, _dtype)(ckpt)
        expect(cli("generate", ckpt, "--num-chars", "20", timeout=60))
    case("hostile checkpoints", _name)(_overflowing)


@case("hostile checkpoints", "unk-the-likeliest-is-never-printed")
def _(ws):
    ckpt = ws.checkpoint_copy("unk")
    _weights(0.1, "float32", unk_bias=1e4)(ckpt)
    for extra in ([], ["--temperature", "0.5", "--seed", "1"], ["--prefix", "the", "--prefix", "a"]):
        proc = expect(cli("generate", ckpt, "--num-chars", "40", *extra, timeout=60), codes=(0,), one_line=False)
        if "<unk>" in proc.out:
            raise Broke(f"<unk> printed with {extra}")


for _name, _flags in [("temperature-1e-310", ["--temperature", "1e-310"]),
                      ("temperature-5e-324", ["--temperature", "5e-324"]),
                      ("alpha-1e308", ["--alpha", "1e308"]), ("temperature-1e308", ["--temperature", "1e308"])]:
    def _tiny_temperature(ws, _flags=_flags):
        proc = expect(cli("generate", ws.base_run(), "--num-chars", "30", "--json", "--seed", "2", *_flags, timeout=60),
                      codes=(0,), one_line=False)
        record = _strict_json(proc.out)
        if any("<unk>" in r["text"] for r in record["results"]):
            raise Broke("<unk> in the text")
    case("bad options", f"generate-{_name}-strict-json-no-unk")(_tiny_temperature)


@case("bad options", "generate-alpha-5e-324")
def _(ws):
    expect(cli("generate", ws.base_run(), "--alpha", "5e-324", timeout=60))


@case("bad options", "generate-20000-unknown-characters")
def _(ws):
    text = ws.text("raw", ("The Time Traveller, for so it will be convenient to speak of him.\n" * 80).encode())
    out = ws.dir("rawrun") / "run"
    expect(train_tiny(out, "--data", text, "--cleaning", "raw"), codes=(0,), one_line=False)
    prefix = "".join(chr(0x4e00 + i) for i in range(20000))
    proc = expect(cli("generate", out, "--prefix", prefix, timeout=60))
    if len(proc.err) > 400 or "20000" not in proc.err:
        raise Broke(f"a refusal of {len(proc.err)} characters: {proc.err[:200]!r}")


# -- the run directory, validated like a checkpoint ---------------------------------------------------------
def _stopped_run(ws, name: str) -> Path:
    """A copy of a run stopped by Ctrl-C inside its second epoch (with dropout: every field is in last/)."""
    out = ws.dir(name) / "run"
    proc = train_tiny(out, "--layers", "2", "--dropout", "0.2", "--epochs", "3",
                      env={"SCRATCHRNN_FAULT": "train.batch-end:after-130-sigint"})
    expect(proc, codes=(130,), one_line=False)
    return out


def _edit_state(keys, value=None, delete=False):
    def edit(out: Path):
        ckpt = (out / "last").resolve()
        config = read_config(ckpt)
        parent = config["train_state"]
        for key in keys[:-1]:
            parent = parent[key]
        if delete:
            del parent[keys[-1]]
        else:
            parent[keys[-1]] = value
        write_config(ckpt, config)
    return edit


for _name, _edit in [("epoch-a-string", _edit_state(("progress", "epoch"), "1")),
                     ("batch-missing", _edit_state(("progress", "batch"), delete=True)),
                     ("batch-1e18", _edit_state(("progress", "batch"), 10 ** 18)),
                     ("step-negative", _edit_state(("progress", "step"), -1)),
                     ("partial-a-list", _edit_state(("progress", "partial"), [1, 2, 3])),
                     ("partial-tokens-a-float", _edit_state(("progress", "partial", "tokens"), 2.5)),
                     ("best-an-integer", _edit_state(("progress", "best"), 7)),
                     ("loader-rng-a-float", _edit_state(("progress", "loader_rng", "state", "state"), 1.5)),
                     ("loader-rng-missing", _edit_state(("progress", "loader_rng"), delete=True)),
                     ("dropout-rng-not-pcg64", _edit_state(("dropout_rng",), {"bit_generator": "MT19937"})),
                     ("optimizer-steps-a-string", _edit_state(("optimizer_steps",), "70")),
                     ("seed-negative", _edit_state(("run", "train", "seed"), -3))]:
    def _hostile_state(ws, _edit=_edit, _name=_name):
        out = _stopped_run(ws, "state")
        _edit(out)
        expect(cli("train", "--resume", out, "--no-progress", timeout=60), seconds=45, max_rss=1024 * MiB)
    case("hostile checkpoints", f"run-state-{_name}")(_hostile_state)


def _metrics(kind: str):
    def damage(out: Path):
        metrics = out / "metrics.jsonl"
        if kind == "string-epoch":
            metrics.write_text(metrics.read_text() + json.dumps({"epoch": "2", "train_perplexity": 9.0}) + "\n")
            return
        metrics.unlink()
        if kind == "directory":
            metrics.mkdir()
        elif kind == "fifo":
            os.mkfifo(metrics)
        else:
            metrics.symlink_to("/dev/zero")
    return damage


for _name, _damage in [("metrics-string-epoch", _metrics("string-epoch")),
                       ("metrics-a-directory", _metrics("directory")),
                       ("metrics-a-fifo", _metrics("fifo")), ("metrics-link-to-dev-zero", _metrics("zero")),
                       ("lock-file-a-fifo", lambda out: os.mkfifo(out / "run.lock")),
                       ("last-config-a-fifo", lambda out: ((out / "last").resolve().joinpath("config.json").unlink(),
                                                           os.mkfifo((out / "last").resolve() / "config.json")))]:
    def _hostile_directory(ws, _damage=_damage):
        out = _stopped_run(ws, "dir")
        _damage(out)
        expect(cli("train", "--resume", out, "--no-progress", timeout=60), seconds=45, max_rss=1024 * MiB)
    case("hostile checkpoints", f"run-{_name}")(_hostile_directory)


for _name, _spelling in [("dot-slash", "./{}"), ("trailing-slash", "{}/"), ("absolute", "ABSOLUTE")]:
    def _pointer(ws, _spelling=_spelling):
        out = _stopped_run(ws, "pointer")
        version = os.readlink(out / "last")
        (out / "last").unlink()
        (out / "last").symlink_to(str(out / version) if _spelling == "ABSOLUTE" else _spelling.format(version))
        expect(cli("train", "--resume", out, "--no-progress", timeout=120), codes=(0,), one_line=False)
        loadable(out)
    case("hostile checkpoints", f"run-last-pointer-spelled-{_name}")(_pointer)


for _kind in ("fifo", "dev-zero"):
    def _wisdom(ws, _kind=_kind):
        cache = ws.dir("cache")
        version = cli("--version", env={"SCRATCHRNN_CACHE": str(cache)}, timeout=60).out
        if str(cache) not in version:
            raise Skip("the step loops are not measured here (no compiled library, or SCRATCHRNN_LOOPS)")
        wisdom = Path(version.split(str(cache), 1)[1].split(")")[0].lstrip("/"))
        path = cache / wisdom
        if _kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero")
        expect(train_tiny(ws.dir("w") / "run", env={"SCRATCHRNN_CACHE": str(cache)}, timeout=120), codes=(0,),
               one_line=False, seconds=90)
    case("hostile checkpoints", f"wisdom-file-a-{_kind}")(_wisdom)


# -- Ctrl-C at named points (injected) and at real moments of PyTorch's import -------------------------------
for _backend in ("numpy", "torch"):
    def _import_interrupted(ws, _backend=_backend):
        if _backend == "torch":
            _needs_torch()
        out = ws.dir("imp") / "run"
        expect(train_tiny(out, "--backend", _backend, env={"SCRATCHRNN_FAULT": "backends.framework-import:sigint"}),
               codes=(130,), one_line=False)
        if out.exists():
            raise Broke("a run directory was made before the framework was imported")
    case("signals", f"ctrl-c-while-{_backend}-is-imported")(_import_interrupted)


for _backend in ("numpy", "torch"):
    for _action in ("sigint", "interrupt"):
        def _compiled_interrupted(ws, _backend=_backend, _action=_action):
            if _backend == "torch":
                _needs_torch()
            out = ws.dir("kern") / "run"
            proc = train_tiny(out, "--backend", _backend, "--cell", "gru",
                              env={"SCRATCHRNN_FAULT": f"kernels.step-loops-returned:after-301-{_action}",
                                   "SCRATCHRNN_LOOPS": "compiled"})
            if "compiled" not in cli("--version", timeout=60).out and proc.rc == 0:
                raise Skip("no compiled library here")
            expect(proc, codes=(130,), one_line=False)
            if (out / "last").exists():
                loadable(out, "the run stopped inside a compiled loop")
        case("signals", f"ctrl-c-{_action}-inside-compiled-loops-{_backend}")(_compiled_interrupted)


@case("signals", "ctrl-c-inside-the-compiled-decoder")
def _(ws):
    proc = cli("generate", ws.base_run(), "--num-chars", "2000", timeout=60,
               env={"SCRATCHRNN_FAULT": "kernels.decode-returned:sigint", "SCRATCHRNN_LOOPS": "compiled"})
    expect(proc, codes=(130, 0), one_line=False)


@case("signals", "ctrl-c-at-real-moments-of-the-torch-import")
def _(ws):
    _needs_torch()
    for delay in (0.6, 0.9, 1.1, 1.3, 1.6):
        proc = start(["train", "--out", ws.dir("tsig") / "run", *TINY, "--backend", "torch"])
        began = time.monotonic()
        time.sleep(delay)
        kill_group(proc.pid, signal.SIGINT)
        result = finish(proc, 120, began)
        if result.rc == -signal.SIGSEGV or result.rc == 139:
            raise Broke(f"a segfault after Ctrl-C at {delay} s")
        expect(result, codes=(130, 0), one_line=False)


@case("signals", "kill-a-rank-of-nproc-2-then-resume")
def _(ws):
    _needs_torch()
    out = ws.dir("rankkill") / "run"
    killed = train_tiny(out, "--backend", "torch", "--nproc", "2", "--epochs", "3",
                        env={"SCRATCHRNN_FAULT": "train.rank1.epoch-end:after-2-kill"}, timeout=240)
    expect(killed, codes=(1, 2), one_line=False)
    expect(cli("train", "--resume", out, "--nproc", "2", "--no-progress", timeout=240), codes=(0,), one_line=False,
           seconds=180)
    loadable(out)


# -- full and odd disks, everywhere -----------------------------------------------------------------------------
for _name, _fault, _codes in [("no-space-appending-metrics", "rundir.metrics-append:enospc", (2,)),
                              ("no-space-at-the-plot", "plot.saving:enospc", (0,)),
                              ("no-space-in-the-second-save", "checkpoint.config-written:after-2-enospc", (2,))]:
    def _full(ws, _fault=_fault, _codes=_codes):
        out = ws.dir("full") / "run"
        expect(train_tiny(out, env={"SCRATCHRNN_FAULT": _fault}), codes=_codes, one_line=_codes == (2,))
        if (out / "last").exists():
            loadable(out)
    case("disk full", _name)(_full)


@case("disk full", "no-space-while-resuming")
def _(ws):
    out = ws.dir("resfull") / "run"
    expect(train_tiny(out), codes=(0,), one_line=False)
    expect(cli("train", "--resume", out, "--epochs", "3", "--no-progress", timeout=60,
               env={"SCRATCHRNN_FAULT": "rundir.metrics-trim:enospc"}))
    loadable(out)


for _name, _fault in [("no-space-under-experiment-out", "experiment.out-probed:enospc"),
                      ("no-space-writing-the-experiment-report", "experiment.report-writing:enospc")]:
    def _experiment_full(ws, _fault=_fault):
        expect(cli("experiment", "relu", "--quick", "--out", ws.dir("exp") / "report", timeout=120,
                   env={"SCRATCHRNN_FAULT": _fault}))
    case("disk full", _name)(_experiment_full)


@case("disk full", "experiment-out-under-a-file")
def _(ws):
    blocker = ws.dir("expfile") / "file"
    blocker.write_text("x")
    expect(cli("experiment", "relu", "--quick", "--out", blocker / "report", timeout=60), seconds=30)


@case("disk full", "experiment-out-in-proc")
def _(ws):
    expect(cli("experiment", "relu", "--quick", "--out", "/proc/scratchrnn-report", timeout=60), seconds=30)


def _tmpfs(ws, options: str) -> Path:
    mount = ws.dir("mnt")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True).returncode:
        raise Skip("cannot mount a tmpfs here")
    return mount


@case("disk full", "experiment-on-a-64k-tmpfs")
def _(ws):
    mount = _tmpfs(ws, "size=64k")
    try:
        expect(cli("experiment", "relu", "--quick", "--out", mount / "report", timeout=180))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@case("disk full", "experiment-on-a-read-only-mount")
def _(ws):
    mount = _tmpfs(ws, "size=1m,ro")
    try:
        expect(cli("experiment", "relu", "--quick", "--out", mount / "report", timeout=60), seconds=30)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@case("disk full", "train-stdout-to-dev-full")
def _(ws):
    with open("/dev/full", "wb") as full:
        proc = start(["train", "--out", ws.dir("devfull") / "run", *TINY], stdout=full)
        result = expect(finish(proc, 120), codes=(2,))
    if "Exception ignored" in result.err:
        raise Broke("'Exception ignored' at exit")


@case("disk full", "generate-json-to-dev-full")
def _(ws):
    with open("/dev/full", "wb") as full:
        result = expect(finish(start(["generate", ws.base_run(), "--json"], stdout=full), 60), codes=(2,))
    if "Exception ignored" in result.err:
        raise Broke("'Exception ignored' at exit")


@case("pipes", "generate-with-stderr-closed")
def _(ws):
    for args, code in (([ws.base_run(), "--num-chars", "5"], 0), (["nowhere"], 2)):
        ended = subprocess.run([sys.executable, "-c", "import os, runpy, sys; os.close(2); sys.argv = ['scratchrnn', "
                                "'generate', *sys.argv[1:]]; runpy.run_module('scratchrnn', run_name='__main__')",
                                *map(str, args)], stdout=subprocess.DEVNULL, env=env_for(), timeout=60)
        if ended.returncode != code:
            raise Broke(f"exit status {ended.returncode} with stderr closed, expected {code}")


# -- data files whose size lies -----------------------------------------------------------------------------------
for _path in ("/proc/self/status", "/proc/cpuinfo"):
    def _proc_file(ws, _path=_path):
        expect(train_tiny(ws.dir("proc") / "run", "--data", _path, "--val-fraction", "0", "--max-tokens", "all",
                          "--batch-size", "2"), codes=(0, 2), one_line=None, seconds=60)
    case("bad data", f"data-{_path.replace('/', '-').strip('-')}")(_proc_file)


@case("bad data", "sparse-4-gib-of-nul-max-tokens-3000")
def _(ws):
    path = ws.dir("sparse") / "sparse.txt"
    with open(path, "wb") as f:
        f.write(("The Time Traveller was expounding a recondite matter to us.\n" * 60).encode())
        f.truncate(4 << 30)
    expect(train_tiny(ws.dir("sparserun") / "run", "--data", path, "--max-tokens", "3000", timeout=120),
           codes=(0, 2), one_line=None, seconds=60, max_rss=600 * MiB)


@case("bad data", "a-file-growing-while-it-is-read")
def _(ws):
    path = ws.text("grow", (("The Time Traveller was expounding a recondite matter. " * 20 + "\n") * 2000).encode())
    stop = threading.Event()

    def grow():
        with open(path, "ab") as f:
            while not stop.is_set():
                f.write(b"His grey eyes shone and twinkled.\n" * 2000)
                f.flush()
                time.sleep(0.01)
    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    try:
        expect(train_tiny(ws.dir("growrun") / "run", "--data", path, "--max-tokens", "5000", timeout=180),
               codes=(0, 2), one_line=None)
    finally:
        stop.set()
        writer.join(5)
