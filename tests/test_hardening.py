"""A run never writes what it cannot read back, and its directory is read as strictly as a checkpoint:
what train refuses, what resume refuses in the run directory (every field of the training state, the
metrics, the lock, the pointers), values that overflow in use, data files whose size lies, and the
command line's one-line refusals for them. In this process, through ``cli.main`` and the runner."""
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import cli, data
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import Vocab
from scratchrnn.errors import UserError
from scratchrnn.generation import encode_prefix
from scratchrnn.model import MAX_COUNT, ModelConfig, ModelSettings
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import resume, run
from scratchrnn.training import TrainConfig

TINY = ["--hidden", "8", "--epochs", "1", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "5",
        "--predict-every", "0", "--no-progress"]


def _cli(capsys, *args) -> tuple[int, list[str]]:
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def _refused(capsys, *args, naming: str) -> None:
    code, err = _cli(capsys, *args)
    assert code == 2 and len(err) == 1 and naming in err[0] and "Traceback" not in err[0], err


def _quiet(config, mode="new"):
    return run(config, mode, say=lambda line: None, progress=False)


def _tiny(out, **train) -> RunConfig:
    return RunConfig(out=str(out), max_tokens=2000, model=ModelSettings(num_hiddens=8), predict_every=0,
                     train=TrainConfig(**{"epochs": 1, "batch_size": 4, "num_steps": 5, **train}))


# -- one rule for the writer and the reader --------------------------------------------------------------
@pytest.mark.parametrize("flags, naming", [
    (["--seed", 10**30], "--seed"), (["--warmup", 10**30], "--warmup"), (["--eval-every", 10**30], "--eval-every"),
    (["--checkpoint-every", 10**30], "--checkpoint-every"), (["--predict-every", 10**30], "--predict-every"),
    (["--lr-decay-every", 10**30], "--lr-decay-every"), (["--max-tokens", 10**30], "--max-tokens"),
    (["--epochs", 10**30], "--epochs"), (["--layers", 65], "--layers"),
    (["--embedding", "learned", "--embed-dim", 65537], "--embed-dim"),
    (["--cell", "lstm", "--forget-bias", "inf"], "--forget-bias"),
    (["--cell", "lstm", "--forget-bias", "1e39"], "--forget-bias")])
def test_train_refuses_at_once_what_the_checkpoint_reader_would_refuse(tmp_path, capsys, flags, naming):
    out = tmp_path / "run"
    _refused(capsys, "train", "--out", out, *TINY, *flags, naming=naming)
    assert not out.exists()


def test_every_count_at_its_bound_is_written_and_read_back(tmp_path):
    out = tmp_path / "run"
    counts = dict(seed=MAX_COUNT, warmup=MAX_COUNT, eval_every=MAX_COUNT, lr_decay_every=MAX_COUNT)
    config = _tiny(out, **counts)
    config.checkpoint_every = config.predict_every = MAX_COUNT
    config.model = ModelSettings(num_hiddens=8, cell="lstm", forget_bias=float(np.finfo(np.float32).max))
    _quiet(config)
    for which in ("best", "last"):
        assert load_checkpoint(out, which).train_state["run"]["train"]["seed"] == MAX_COUNT
    outcome = resume(str(out), epochs=2, say=lambda line: None, progress=False)
    assert outcome.status == "finished" and len(outcome.history) == 2


# -- the run directory, read as strictly as a checkpoint -------------------------------------------------
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped by Ctrl-C inside its second epoch (after batch 31 of 99), with dropout (a
    generator's state) and held-out text: every field of the training state is in its last/."""
    from scratchrnn import faults
    out = tmp_path_factory.mktemp("stopped") / "run"
    config = _tiny(out, epochs=3, seed=2)
    config.model = ModelSettings(num_hiddens=8, num_layers=2, dropout=0.2)
    os.environ[faults.ENV] = "train.batch-end:after-130-sigint"
    faults._seen.clear()
    try:
        assert _quiet(config).status == "interrupted"
    finally:
        del os.environ[faults.ENV]
        faults._seen.clear()
    assert load_checkpoint(out, "last").train_state["progress"]["batch"] == 31
    return out


def _copy(run_dir: Path, where: Path) -> Path:
    import shutil
    return Path(shutil.copytree(run_dir, where / "run", symlinks=True))


def _edit_state(run_dir: Path, change) -> None:
    path = (run_dir / "last").resolve() / "config.json"
    config = json.loads(path.read_text())
    change(config["train_state"])
    path.write_text(json.dumps(config))


def _delete(keys):
    def change(state):
        parent = state
        for key in keys[:-1]:
            parent = parent[key]
        del parent[keys[-1]]
    return change


def _set(keys, value):
    def change(state):
        parent = state
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, naming", [
    (_set(("progress", "epoch"), "1"), "progress.epoch"), (_delete(("progress", "batch")), "progress.batch"),
    (_set(("progress", "step"), -1), "progress.step"), (_set(("progress", "batch"), 10**18), "progress.batch"),
    (_set(("progress", "partial", "tokens"), 2.5), "progress.partial.tokens"),
    (_delete(("progress", "partial", "seconds")), "progress.partial"),
    (_set(("progress", "best"), {"epoch": "one", "score": 3.0, "by": "train"}), "progress.best.epoch"),
    (_set(("progress", "best"), {"epoch": 1, "score": 3.0, "by": "nobody"}), "progress.best.by"),
    (_set(("progress", "loader_rng", "state", "state"), 1.5), "progress.loader_rng.state"),
    (_set(("progress", "loader_rng", "state", "inc"), "int:zz"), "progress.loader_rng"),
    (_delete(("progress", "loader_rng")), "progress.loader_rng"),
    (_set(("dropout_rng",), {"bit_generator": "MT19937"}), "dropout_rng"),
    (_set(("optimizer_steps",), "70"), "optimizer_steps"), (_set(("data_fingerprint",), 7), "data_fingerprint"),
    (_set(("run", "train", "seed"), -3), "seed"), (_set(("run", "checkpoint_every"), 10**30), "checkpoint_every")])
def test_resume_refuses_a_training_state_no_run_wrote_in_one_line(stopped_run, tmp_path, change, naming):
    run_dir = _copy(stopped_run, tmp_path)
    _edit_state(run_dir, change)
    with pytest.raises(UserError, match="cannot use") as refused:
        resume(str(run_dir), say=lambda line: None, progress=False)
    assert naming in str(refused.value) and "\n" not in str(refused.value)


def test_the_stopped_run_itself_resumes(stopped_run, tmp_path):
    outcome = resume(str(_copy(stopped_run, tmp_path)), say=lambda line: None, progress=False)
    assert outcome.status == "finished" and [r["epoch"] for r in outcome.history] == [1, 2, 3]


@pytest.mark.parametrize("damage, naming", [
    (lambda m: m.write_text(m.read_text() + json.dumps({"epoch": "2", "train_perplexity": 9.0}) + "\n"), "line"),
    (lambda m: m.write_text(m.read_text() + json.dumps([1, 2]) + "\n"), "must be an object"),
    (lambda m: (m.unlink(), m.mkdir()), "directory"), (lambda m: (m.unlink(), os.mkfifo(m)), "FIFO"),
    (lambda m: (m.unlink(), m.symlink_to("/dev/zero")), "device")])
def test_resume_refuses_metrics_no_run_wrote_without_hanging(stopped_run, tmp_path, damage, naming):
    run_dir = _copy(stopped_run, tmp_path)
    damage(run_dir / "metrics.jsonl")
    with pytest.raises(UserError, match="metrics.jsonl") as refused:
        resume(str(run_dir), say=lambda line: None, progress=False)
    assert naming in str(refused.value)


def test_a_lock_file_that_is_a_fifo_is_refused_without_hanging(stopped_run, tmp_path):
    run_dir = _copy(stopped_run, tmp_path)
    os.mkfifo(run_dir / "run.lock")
    with pytest.raises(UserError, match="run.lock is a FIFO"):
        resume(str(run_dir), say=lambda line: None, progress=False)


@pytest.mark.parametrize("spelling", ["./{}", "{}/", "{}/.", "ABSOLUTE"])
def test_pointers_spelled_by_hand_name_the_checkpoint_they_point_to(stopped_run, tmp_path, spelling):
    run_dir = _copy(stopped_run, tmp_path)
    version = os.readlink(run_dir / "last")
    target = str(run_dir / version) if spelling == "ABSOLUTE" else spelling.format(version)
    (run_dir / "last").unlink()
    (run_dir / "last").symlink_to(target)
    outcome = resume(str(run_dir), say=lambda line: None, progress=False)
    assert outcome.status == "finished" and len(outcome.history) == 3


def test_resume_of_a_missing_directory_creates_nothing(tmp_path, capsys):
    _refused(capsys, "train", "--resume", tmp_path / "no" / "such" / "run", naming="cannot resume")
    assert not (tmp_path / "no").exists()


# -- values that overflow in use -------------------------------------------------------------------------
def _checkpoint(where: Path, scale: float, dtype=np.float64) -> Path:
    vocab = Vocab.from_tokens_list(["<unk>", *"abcdefgh "])
    config = ModelConfig(len(vocab), 4)
    rng = np.random.default_rng(0)
    params = {name: (rng.standard_normal(shape) * scale).astype(dtype) for name, shape in config.param_shapes().items()}
    return save_checkpoint(where / "ckpt", Checkpoint(params, vocab, config, cleaning="raw"))


@pytest.mark.parametrize("scale, naming", [(1e39, "does not fit float32"), (1e300, "does not fit float32"),
                                           (3e37, "too large to generate with in float32")])
def test_weights_that_overflow_float32_are_refused_in_one_line(tmp_path, capsys, scale, naming):
    _refused(capsys, "generate", _checkpoint(tmp_path, scale), "--prefix", "ab", naming=naming)


@pytest.mark.parametrize("flags", [["--temperature", "1e-310"], ["--temperature", "5e-324"], ["--alpha", "1e308"],
                                   ["--temperature", "1e300"], ["--strategy", "greedy"]])
def test_no_temperature_prints_unk_and_json_stays_strict(tmp_path, capsys, flags):
    ckpt = _checkpoint(tmp_path, 1.0, np.float32)
    seed = [] if "--strategy" in flags else ["--seed", "1"]
    code = cli.main(["generate", str(ckpt), "--prefix", "ab", "--num-chars", "40", "--json", *flags, *seed])
    out = capsys.readouterr().out

    def no_constant(name):
        raise AssertionError(f"{name} is not JSON")
    record = json.loads(out, parse_constant=no_constant)
    assert code == 0 and "<unk>" not in record["results"][0]["text"]
    assert len(record["results"][0]["text"]) == len("ab") + 40


def test_an_alpha_whose_temperature_overflows_is_refused(tmp_path, capsys):
    _refused(capsys, "generate", _checkpoint(tmp_path, 1.0, np.float32), "--alpha", "5e-324", naming="--alpha")


def test_greedy_never_picks_unk_even_where_it_is_likeliest(tmp_path, capsys):
    saved = load_checkpoint(_checkpoint(tmp_path, 1.0, np.float32))
    saved.params["b_q"][0] = 1e4                # <unk>'s logit far above every other
    ckpt = save_checkpoint(tmp_path / "unk-likeliest", Checkpoint(saved.params, saved.vocab, saved.model, "raw"))
    for strategy in (["--strategy", "greedy"], ["--temperature", "0.5", "--seed", "3"]):
        code = cli.main(["generate", str(ckpt), "--prefix", "ab", "--num-chars", "30", *strategy])
        text = capsys.readouterr().out
        assert code == 0 and "<unk>" not in text and len(text.rstrip("\n")) == 32


def test_many_unknown_characters_are_named_by_the_first_few_and_counted():
    vocab = Vocab.from_tokens_list(["<unk>", "a", "b"])
    unknown = "".join(chr(0x4e00 + i) for i in range(20000))
    with pytest.raises(UserError) as refused:
        encode_prefix("ab" + unknown, vocab, "raw")
    message = str(refused.value)
    assert len(message) < 200 and "20000 in all" in message and repr(chr(0x4e00)) in message


# -- data files whose size lies --------------------------------------------------------------------------
def test_a_file_under_proc_whose_size_says_0_is_read_whole():
    assert os.stat("/proc/self/status").st_size == 0
    corpus, vocab = data.load_corpus("/proc/self/status", None, cleaning="raw")
    assert len(corpus) > 100 and "Name" in "".join(vocab.to_tokens(list(corpus[:4])))


def test_a_file_that_grows_while_it_is_read_is_read_whole(tmp_path, monkeypatch):
    path = tmp_path / "text.txt"
    path.write_text("abc def\n" * 20000)
    real = data._Held.start

    def start_and_grow(self, capacity):
        real(self, capacity)               # room for the file as it was: it grows tenfold now
        with open(path, "a") as f:
            f.write("ghi jkl\n" * 200000)
    monkeypatch.setattr(data._Held, "start", start_and_grow)
    corpus, vocab = data.load_corpus(path, None, cleaning="raw")
    assert len(corpus) == path.stat().st_size and "g" in vocab


def test_a_sparse_hole_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "sparse.txt"
    with open(path, "wb") as f:
        f.write(b"the time traveller was expounding\n" * 50)
        f.truncate(1 << 32)                 # a 4 GiB hole, on file systems that keep holes
    if os.stat(path).st_blocks * 512 > 1 << 24:
        pytest.skip("this file system wrote the hole out")
    read = []
    real = data._pieces

    def counting(handle, chunk_bytes, where):
        for piece, length in real(handle, chunk_bytes, where):
            read.append(len(piece))
            yield piece, length
    monkeypatch.setattr(data, "_pieces", counting)
    corpus, _ = data.load_corpus(path, 3000, cleaning="raw")
    assert len(corpus) == 1700 and sum(read) < 1 << 20


# -- names and texts the file system or the output cannot take ------------------------------------------
def test_an_out_in_bytes_that_are_not_utf8_is_refused_in_one_line(tmp_path, capsys):
    out = str(tmp_path) + "/run-\udcff"
    _refused(capsys, "train", "--out", out, *TINY, naming="--out")
    assert not os.path.lexists(os.fsencode(out))


def test_a_name_longer_than_the_file_system_allows_is_one_line(tmp_path, capsys):
    _refused(capsys, "train", "--out", tmp_path / ("a" * 300), *TINY, naming="File name too long")


def test_an_experiment_out_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _refused(capsys, "experiment", "relu", "--quick", "--out", tmp_path / "file" / "report", naming="Not a directory")


def test_threads_beyond_any_machine_are_refused(capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(["train", "--threads", str(10**30), "--epochs", "1"])
    assert ended.value.code == 2 and "--threads" in capsys.readouterr().err


def test_a_distributed_timeout_of_infinity_is_refused(monkeypatch):
    from scratchrnn import distributed
    for value in ("inf", "nan", "-1", "1e300", "soon"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, value)
        with pytest.raises(UserError, match="SCRATCHRNN_DIST_TIMEOUT"):
            distributed.timeout_seconds()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "30")
    assert distributed.timeout_seconds() == 30.0


def test_regular_files_refuse_what_is_not_one_without_blocking(tmp_path):
    from scratchrnn.regular_files import FileRefused, open_regular, read_regular_file
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for call in (lambda: read_regular_file(fifo, 100), lambda: open_regular(fifo, os.O_RDWR | os.O_APPEND)):
        with pytest.raises(FileRefused, match="FIFO"):
            call()
    with pytest.raises(FileRefused, match="device"):
        read_regular_file("/dev/zero", 100)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
