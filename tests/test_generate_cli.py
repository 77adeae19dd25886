"""``scratchrnn generate``: what the options mean, where prefixes come from, and output that never
crashes (a closed pipe, an ASCII terminal, a length no memory holds)."""
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scratchrnn import backends, cli, console, memory
from scratchrnn.cli import generate as cli_generate
from scratchrnn.errors import UserError
from scratchrnn.generation import Decoding, generate_blocks, generate_ids
from scratchrnn.model import ModelConfig, init_params

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "4", "--num-steps", "5", "--no-progress",
        "--predict-every", "0"]


def run_cli(*args, env=None, **kwargs):
    full_env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "tiny.txt"
    data.write_text("the time traveller was expounding a recondite matter to us\n" * 12, encoding="utf-8")
    out = tmp_path_factory.mktemp("runs") / "tiny"
    # the chapter's cleaning: no newline in the vocabulary, so each continuation is one line
    proc = run_cli("train", "--data", data, "--cleaning", "chapter", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    return out


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def _beyond_the_checkpoint_line(stderr: str) -> list[str]:
    """stderr's lines other than the one that names the checkpoint used and its epoch."""
    return [line for line in stderr.splitlines() if not re.fullmatch(r"scratchrnn: .* \(epoch \d+\)", line)]


def _args(*argv):
    return cli.build_parser().parse_args(["generate", "ckpt", *argv])


# -- what the options mean ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["--temperature", "0.5"], ["--alpha", "2"], ["--top-k", "3"],
                                  ["--top-p", "0.9"], ["--seed", "0"], ["--num-samples", "2"]])
def test_any_sampling_option_implies_sampling_and_is_refused_with_explicit_greedy(argv):
    assert cli_generate._decoding_from(_args(*argv)).strategy == "sample"
    assert cli_generate._decoding_from(_args(*argv, "--strategy", "sample")).strategy == "sample"
    with pytest.raises(UserError, match=argv[0]):
        cli_generate._decoding_from(_args(*argv, "--strategy", "greedy"))


def test_defaults_are_greedy_at_temperature_one():
    decoding = cli_generate._decoding_from(_args())
    assert decoding == Decoding("greedy", 1.0, None, None, None)
    assert cli_generate._decoding_from(_args("--alpha", "4")).temperature == 0.25
    assert cli_generate._decoding_from(_args("--num-samples", "1", "--strategy", "greedy")).strategy == "greedy"


def test_temperature_changes_the_text_and_a_seed_fixes_it(run):
    greedy = run_cli("generate", run, "--num-chars", "40").stdout
    hot = run_cli("generate", run, "--num-chars", "40", "--temperature", "2", "--seed", "3").stdout
    assert hot != greedy
    assert run_cli("generate", run, "--num-chars", "40", "--temperature", "2", "--seed", "3").stdout == hot
    _one_line_error(run_cli("generate", run, "--strategy", "greedy", "--top-k", "2"), "--top-k", "greedy")


def test_num_samples_gives_several_samples_of_each_prefix(run):
    proc = run_cli("generate", run, "--prefix", "the", "--prefix", "time", "--num-samples", "3",
                   "--num-chars", "30", "--seed", "1")
    # a line "---" between two continuations
    assert proc.stdout.splitlines()[1::2] == [cli_generate.SEPARATOR] * 5, proc.stdout
    lines = proc.stdout.splitlines()[::2]
    assert proc.returncode == 0 and len(lines) == 6, proc.stderr
    assert all(line.startswith("the") for line in lines[:3]) and all(l.startswith("time") for l in lines[3:])
    assert len(set(lines[:3])) > 1
    as_json = json.loads(run_cli("generate", run, "--prefix", "the", "--prefix", "time", "--num-samples", "3",
                                 "--num-chars", "30", "--seed", "1", "--json").stdout)
    assert [r["text"] for r in as_json["results"]] == lines
    assert [(r["prefix"], r["sample"]) for r in as_json["results"]][:4] == [
        ("the", 1), ("the", 2), ("the", 3), ("time", 1)]
    assert as_json["strategy"] == "sample" and as_json["num_samples"] == 3


def test_prefixes_file(run, tmp_path):
    path = tmp_path / "prefixes.txt"
    path.write_bytes("\ufeffthe\r\n\r\ntime traveller\n\nwas".encode("utf-8"))
    proc = run_cli("generate", run, "--prefix", "us", "--prefixes-file", path, "--num-chars", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()[::2]
    assert [line[:-5] for line in lines] == ["us", "the", "time traveller", "was"]


def test_prefix_file_is_one_primer_lines_and_all(tmp_path, capsys):
    """A multi-line primer (char-rnn's and nanoGPT's FILE: prompt): the whole file, its line breaks
    kept, continued once -- beside a --prefix, with the separator line between the two (in this
    process: the command's own entry point)."""
    data = tmp_path / "play.txt"
    data.write_text("ROMEO:\nBut soft, what light.\n\nJULIET:\nAy me.\n" * 30, encoding="utf-8")
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    primer = tmp_path / "primer.txt"
    primer.write_bytes("\ufeffROMEO:\r\nBut soft\r\n".encode("utf-8"))
    capsys.readouterr()
    assert cli.main(["generate", str(out), "--prefix", "JULIET:", "--prefix-file", str(primer), "--num-chars", "12",
                     "--seed", "4"]) == 0
    first, second = capsys.readouterr().out.split(f"\n{cli_generate.SEPARATOR}\n")
    assert first.startswith("JULIET:") and len(first) == len("JULIET:") + 12
    assert second.startswith("ROMEO:\nBut soft\n") and len(second) == len("ROMEO:\nBut soft\n") + 12 + 1
    assert cli.main(["generate", str(out), "--prefix-file", str(primer), "--prefix", "JULIET:", "--num-chars", "12",
                     "--seed", "4", "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [r["prefix"] for r in as_json["results"]] == ["JULIET:", "ROMEO:\nBut soft\n"]


@pytest.mark.parametrize("flag", ["--prefix-file", "--prefixes-file"])
@pytest.mark.parametrize("setup, fragment", [
    (lambda p: None, "not found"),
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: p.write_bytes(b"\xff\xfe bad"), "not UTF-8"),
    (lambda p: p.write_text(""), "no prefix"),
])
def test_bad_prefix_files(run, tmp_path, setup, fragment, flag):
    path = tmp_path / "prefixes"
    setup(path)
    _one_line_error(run_cli("generate", run, flag, path), flag, fragment)


def test_a_prefixes_file_of_empty_lines_holds_no_prefix(run, tmp_path):
    path = tmp_path / "prefixes"
    path.write_text("\n\n")
    _one_line_error(run_cli("generate", run, "--prefixes-file", path), "--prefixes-file", "no prefix")


def test_a_huge_prefix_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_generate, "MAX_PREFIX_FILE_BYTES", 10)
    path = tmp_path / "big.txt"
    path.write_text("the time traveller\n")
    with pytest.raises(UserError, match="read whole"):
        cli_generate._read_prefix_file(str(path))


def test_help_shows_real_defaults_once():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "train" in a.choices).choices
    for name, sub in subparsers.items():
        text = sub.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for action in sub._actions:
            assert (action.help or "").count("default") <= 1, (name, action.dest)
    generate = " ".join(subparsers["generate"].format_help().split())
    assert "implies --strategy sample" in generate and "refused" in generate
    assert "(default: 50)" in generate                 # --num-chars
    train = " ".join(subparsers["train"].format_help().split())
    assert "(default: the bundled Time Machine) (default" not in train
    assert "'time traveller' every" not in train


# -- output that never crashes ------------------------------------------------------------------------
def test_a_closed_pipe_ends_quietly_with_status_0(run):
    """generate ... | head -c 10: nobody reads any more, so stop, exit 0, say nothing."""
    for extra in ([], ["--stream"], ["--seed", "1"]):
        proc = subprocess.Popen([sys.executable, "-m", "scratchrnn", "generate", str(run), "--num-chars",
                                 "1000000000000", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started = time.monotonic()
        assert len(proc.stdout.read(10)) == 10
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
        assert _beyond_the_checkpoint_line(err) == [], err
        assert time.monotonic() - started < 30


def test_ctrl_c_during_generation_is_one_line_and_status_130(run):
    proc = subprocess.Popen([sys.executable, "-m", "scratchrnn", "generate", str(run), "--num-chars",
                             "1000000000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert len(proc.stdout.read(1000)) == 1000
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()                  # keep reading so that the process is never blocked on the pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 130, err
    assert _beyond_the_checkpoint_line(err) == ["scratchrnn: generation interrupted"], err


def test_one_long_continuation_streams_in_bounded_memory(run):
    """A trillion characters are not held: the first hundred thousand arrive at once and memory
    stays small (the process is read while it runs, then the pipe is closed)."""
    proc = subprocess.Popen([sys.executable, "-m", "scratchrnn", "generate", str(run), "--num-chars",
                             "1000000000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = 0
    while got < 300_000:
        got += len(proc.stdout.read1(1 << 16))
    with open(f"/proc/{proc.pid}/status") as status:
        rss_kib = int(next(line for line in status if line.startswith("VmRSS")).split()[1])
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert rss_kib < 400 * 1024, rss_kib


def test_sizes_no_memory_holds_are_refused_with_the_estimate(run):
    _one_line_error(run_cli("generate", run, "--num-chars", "1000000000000", "--json"), "TiB", "--num-chars")
    _one_line_error(run_cli("generate", run, "--num-chars", "1000000000000", "--prefix", "the",
                            "--prefix", "us"), "each of 2 continuations", "TiB")


def test_an_ascii_stdout_gets_escapes_not_a_crash(tmp_path):
    data = tmp_path / "accents.txt"
    data.write_text("café déjà vu, naïve résumé\n" * 30, encoding="utf-8")
    out = tmp_path / "run"
    assert run_cli("train", "--data", data, "--cleaning", "raw", "--out", out, *TINY).returncode == 0
    ascii_env = {"PYTHONIOENCODING": "ascii"}
    plain = run_cli("generate", out, "--prefix", "café", "--num-chars", "10", env=ascii_env)
    assert plain.returncode == 0 and plain.stdout.startswith("caf\\xe9"), plain.stderr
    streamed = run_cli("generate", out, "--prefix", "café", "--num-chars", "10", "--stream", env=ascii_env)
    assert streamed.returncode == 0 and streamed.stdout == plain.stdout
    as_json = run_cli("generate", out, "--prefix", "café", "--prefix", "déjà", "--num-chars", "10", "--json",
                      env=ascii_env)
    assert as_json.returncode == 0
    assert [r["prefix"] for r in json.loads(as_json.stdout)["results"]] == ["café", "déjà"]


# -- the pieces: SafeWriter, memory, generate_blocks --------------------------------------------------
class _ClosedPipe(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_safe_writer():
    buffer = io.StringIO()
    out = console.SafeWriter(buffer)
    assert out.print("a", 1, sep="-") and out.write("b", flush=True) and buffer.getvalue() == "a-1\nb"
    gone = console.SafeWriter(_ClosedPipe())
    assert gone.write("x") is False and gone.closed and gone.print("y") is False and gone.flush() is False
    raw = io.BytesIO()
    ascii_out = console.SafeWriter(io.TextIOWrapper(raw, encoding="ascii"))
    assert not ascii_out.can_write("é") and ascii_out.can_write("e")
    assert ascii_out.write("café", flush=True) and raw.getvalue() == b"caf\\xe9"
    closed = io.StringIO()
    closed.close()
    assert console.SafeWriter(closed).write("x") is False



def test_safe_writer_without_a_stdout(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)
    nowhere = console.stdout()
    assert nowhere.closed and nowhere.print("lost") is False and nowhere.flush() is False


def test_a_closed_stdout_from_the_start(run):
    proc = subprocess.run(f"{sys.executable} -m scratchrnn generate {run} --num-chars 20 >&-", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and _beyond_the_checkpoint_line(proc.stderr) == [], proc.stderr


def test_memory_require(monkeypatch):
    assert memory.format_bytes(512) == "512 bytes" and memory.format_bytes(1536) == "1.5 KiB"
    assert memory.format_bytes(8e12) == "7.3 TiB"
    assert memory.available_bytes() is None or memory.available_bytes() > 0
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    memory.require(1 << 29, "a half")
    with pytest.raises(UserError, match=r"^doing it needs about 2.0 GiB of memory, more than the 1.0 GiB "
                                        r"available; try less$"):
        memory.require(2 << 30, "doing it", "try less")


@pytest.mark.parametrize("dtype, decoding", [("float32", Decoding()), ("float64", Decoding()),
                                             ("float64", Decoding("sample", 0.8, seed=5))])
def test_blocks_make_the_same_tokens_as_one_piece(dtype, decoding):
    config = ModelConfig(vocab_size=11, num_hiddens=8)
    backend = backends.create("numpy", init_params(config, 0), config, dtype=dtype)
    prefixes = [[1, 2, 3], [4, 5, 6]]
    whole = generate_ids(backend, prefixes, 50, decoding)
    blocks = list(generate_blocks(backend, prefixes, 50, decoding, block=7))
    assert [b.shape for b in blocks] == [(2, 7)] * 7 + [(2, 1)]
    joined = np.concatenate(blocks, axis=1).tolist()
    assert [p + j for p, j in zip(prefixes, joined)] == whole
    assert list(generate_blocks(backend, prefixes, 0, decoding, block=7)) == []
