"""Hostile checkpoints: every one is refused with one UserError line before anything uses it.

The weights cases recompute the checksum in config.json, as an attacker would, so what refuses them
is the check of the content, not the SHA-256. The property-based fuzzing (hypothesis) of valid
checkpoints is in test_checkpoint_fuzz.py.
"""
import functools
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scratchrnn.checkpoint import load_checkpoint, save_checkpoint
from scratchrnn.errors import UserError

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "v1-checkpoint"
SRC = Path(__file__).parents[1] / "src"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid version-2 checkpoint (vocab 28, hidden 8) with optimizer state."""
    ckpt = load_checkpoint(FIXTURE_V1)
    ckpt.optimizer_state = {"exp_avg/W_xh": np.ones((28, 8), np.float32), "step/W_xh": np.array(2.0)}
    ckpt.train_state = {"epoch": 2}
    return save_checkpoint(tmp_path_factory.mktemp("base") / "ckpt", ckpt)


@pytest.fixture
def ckpt_dir(base, tmp_path):
    return Path(shutil.copytree(base, tmp_path / "ckpt"))


def _config(d):
    return json.loads((d / "config.json").read_text())


def _set_config(d, config):
    (d / "config.json").write_text(json.dumps(config))


def _replace_file(d, name, data: bytes):
    """Replace a weights file and recompute its checksum and size, as an attacker would."""
    (d / name).write_bytes(data)
    config = _config(d)
    import hashlib
    config["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _set_config(d, config)


def _safetensors(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _model_header(dtype="F32", **overrides):
    """A header for the base model's tensors, in order, with some entries overridden."""
    shapes = {"W_xh": [28, 8], "W_hh": [8, 8], "b_h": [8], "W_hq": [8, 28], "b_q": [28]}
    header, offset, size = {}, 0, {"F32": 4, "F64": 8}.get(dtype, 1)
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    header.update(overrides)
    return header, offset


def _expect_refusal(d, match=None):
    with pytest.raises(UserError, match=match) as info:
        load_checkpoint(d)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# -- config.json -------------------------------------------------------------------------------------
def _edit(path, value):
    def apply(config):
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return config
    return apply


CONFIG_CASES = {
    "model as a list": (_edit(["model"], [1, 2]), "model must be an object"),
    "model as null": (_edit(["model"], None), "model must be an object"),
    "model as a string": (_edit(["model"], "rnn"), "model must be an object"),
    "num_hiddens a float": (_edit(["model", "num_hiddens"], 8.0), "model.num_hiddens must be an integer"),
    "num_hiddens a bool": (_edit(["model", "num_hiddens"], True), "model.num_hiddens must be an integer"),
    "num_hiddens huge": (_edit(["model", "num_hiddens"], 10 ** 20), "model.num_hiddens must be an integer"),
    "num_hiddens over the cap": (_edit(["model", "num_hiddens"], 65537), r"\[1, 65536\]"),
    "too many parameters": (_edit(["model", "num_hiddens"], 65536), "parameters"),
    "vocab_size a string": (_edit(["model", "vocab_size"], "28"), "model.vocab_size"),
    "unknown activation": (_edit(["model", "activation"], "sigmoid"), "model.activation must be one of"),
    "unknown cell": (_edit(["model", "cell"], "transformer"), "model.cell must be one of"),
    "dropout NaN": (_edit(["model", "dropout"], float("nan")), "model.dropout"),
    "unknown cleaning": (_edit(["data", "cleaning"], "shout"), "data.cleaning must be one of"),
    "unknown token": (_edit(["data", "token"], "byte"), "data.token must be one of"),
    "data a list": (_edit(["data"], []), "data must be an object"),
    "vocab entry an int": (_edit(["vocab", 3], 7), r"vocab\[3\] must be a string"),
    "vocab entry null": (_edit(["vocab", 3], None), r"vocab\[3\] must be a string"),
    "vocab entry a bool": (_edit(["vocab", 3], False), r"vocab\[3\] must be a string"),
    "vocab duplicate": (_edit(["vocab", 3], "a"), "repeats"),
    "vocab empty token": (_edit(["vocab", 3], ""), "one character"),
    "vocab long token": (_edit(["vocab", 3], "x" * 800), "one character"),
    "vocab ANSI escape": (_edit(["vocab", 3], "\x1b"), "control character"),
    "vocab C1 CSI": (_edit(["vocab", 3], "\x9b"), "control character"),
    "vocab surrogate": (_edit(["vocab", 3], "\ud800"), "control character"),
    "vocab not a list": (_edit(["vocab"], "abc"), "vocab must be a non-empty list"),
    "vocab without unk": (_edit(["vocab", 0], "?"), r"vocab\[0\]"),
    "version 3": (_edit(["version"], 3), "not supported"),
    "version a string": (_edit(["version"], "2"), "not supported"),
    "files missing": (_edit(["files"], None), "files must be an object"),
    "files sha not hex": (_edit(["files", "model.safetensors", "sha256"], "zz"), "64 hexadecimal"),
    "files bytes a float": (_edit(["files", "model.safetensors", "bytes"], 10.0), "bytes must be an integer"),
    "files unknown name": (_edit(["files", "evil.bin"], {}), "unknown file"),
    "info a list": (_edit(["info"], []), "info must be an object"),
    "train_state a string": (_edit(["train_state"], "x"), "train_state must be an object"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_hostile_config_values_are_refused_naming_the_field(ckpt_dir, case):
    mutate, match = CONFIG_CASES[case]
    _set_config(ckpt_dir, mutate(_config(ckpt_dir)))
    message = _expect_refusal(ckpt_dir, match)
    assert "config.json" in message


@pytest.mark.parametrize("text, match", [
    ("[" * 200_000 + "]" * 200_000, "nests deeper"),
    ('{"format": "scratchrnn-checkpoint", "version": ' + "9" * 5000 + "}", "not valid JSON"),
    ("\xff\xfe", "not UTF-8"),
])
def test_hostile_json_text_is_refused(ckpt_dir, text, match):
    (ckpt_dir / "config.json").write_bytes(text.encode("latin1") if text.startswith("\xff") else text.encode())
    _expect_refusal(ckpt_dir, match)


def test_an_oversized_config_is_refused_before_it_is_read(ckpt_dir):
    with open(ckpt_dir / "config.json", "r+b") as f:
        f.truncate(1 << 30)     # sparse: costs no disk
    _expect_refusal(ckpt_dir, "bytes, more than")


# -- safetensors files -------------------------------------------------------------------------------
def _weights(header_and_size, fill=0.1, dtype=np.float32):
    header, size = header_and_size
    return _safetensors(header, np.full(size // np.dtype(dtype).itemsize, fill, dtype).tobytes())


WEIGHT_CASES = {
    "int8 dtype": (lambda: _weights(_model_header("I8"), dtype=np.int8), "only F32 and F64"),
    "bool dtype": (lambda: _weights(_model_header("BOOL"), dtype=np.int8), "only F32 and F64"),
    "float16 dtype": (lambda: _weights(_model_header("F16"), dtype=np.int8), "only F32 and F64"),
    "dtype not a string": (lambda: _weights(_model_header(7), dtype=np.int8), "only F32 and F64"),
    "huge shape": (lambda: _weights((_model_header(W_hh={"dtype": "F32", "shape": [10 ** 9, 10 ** 9],
                                                         "data_offsets": [896, 1152]})[0], 2192)),
                   "declares shape"),
    "transposed shape": (lambda: _weights((_model_header(W_xh={"dtype": "F32", "shape": [8, 28],
                                                               "data_offsets": [0, 896]})[0], 2192)),
                         r"W_xh should have shape \(28, 8\)"),
    "missing tensor": (lambda: _weights(({k: v for k, v in _model_header()[0].items() if k != "b_q"}, 2080)),
                       "b_q should have shape"),
    "extra tensor": (lambda: _weights(({**_model_header()[0], "evil": {"dtype": "F32", "shape": [1],
                                                                       "data_offsets": [2192, 2196]}}, 2196)),
                     "does not have"),
    "offsets past the end": (lambda: _weights((_model_header(b_q={"dtype": "F32", "shape": [28],
                                                                  "data_offsets": [2080, 99999]})[0], 2192)),
                             "outside"),
    "overlapping offsets": (lambda: _weights((_model_header(b_h={"dtype": "F32", "shape": [8],
                                                                 "data_offsets": [0, 32]})[0], 2192)),
                            "overlap|gaps|bytes no tensor"),
    "NaN weights": (lambda: _weights(_model_header(), fill=np.nan), "NaN or infinite"),
    "inf weights": (lambda: _weights(_model_header(), fill=np.inf), "NaN or infinite"),
    "huge header length": (lambda: struct.pack("<Q", 1 << 62) + b"{}", "safetensors header of"),
    "header a list": (lambda: _safetensors([1, 2], b""), "not a JSON object"),
    "header not JSON": (lambda: struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
    "too short": (lambda: b"abc", "too short|bytes must be"),
    "truncated": (lambda: _weights(_model_header())[:-7], "bytes no tensor|outside"),
}


@pytest.mark.parametrize("case", sorted(WEIGHT_CASES))
def test_hostile_safetensors_are_refused_even_with_a_matching_checksum(ckpt_dir, case):
    make, match = WEIGHT_CASES[case]
    _replace_file(ckpt_dir, "model.safetensors", make())
    message = _expect_refusal(ckpt_dir, match)
    assert "model.safetensors" in message


@pytest.mark.parametrize("key, shape, match", [
    ("exp_avg", [28, 8], "slot/parameter"),
    ("exp_avg/W_nope", [28, 8], "slot/parameter"),
    ("exp avg/W_xh", [28, 8], "slot/parameter"),
    ("exp_avg/W_xh", [8, 28], "should have shape"),
])
def test_hostile_optimizer_state_is_refused(ckpt_dir, key, shape, match):
    n = int(np.prod(shape)) * 4
    data = _safetensors({key: {"dtype": "F32", "shape": shape, "data_offsets": [0, n]}}, bytes(n))
    _replace_file(ckpt_dir, "optimizer.safetensors", data)
    _expect_refusal(ckpt_dir, match)


def test_an_optimizer_file_the_config_does_not_list_is_refused(ckpt_dir):
    config = _config(ckpt_dir)
    del config["files"]["optimizer.safetensors"]
    _set_config(ckpt_dir, config)
    _expect_refusal(ckpt_dir, "does not list optimizer.safetensors")


# -- files that are not files ------------------------------------------------------------------------
def _make_special(path: Path, kind: str):
    path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling symlink":
        path.symlink_to(path.parent / "nothing-here")


@pytest.mark.parametrize("kind", ["directory", "fifo", "/dev/zero", "dangling symlink"])
@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "optimizer.safetensors"])
def test_special_files_are_refused_without_hanging(ckpt_dir, name, kind):
    _make_special(ckpt_dir / name, kind)
    message = _expect_refusal(ckpt_dir)
    assert name in message


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_special_v1_weights_file_is_refused(tmp_path, kind):
    d = Path(shutil.copytree(FIXTURE_V1, tmp_path / "v1"))
    _make_special(d / "weights.npz", kind)
    _expect_refusal(d, "weights.npz")


def test_a_checkpoint_path_that_is_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    _expect_refusal(tmp_path / "pipe", "not a checkpoint directory")


# -- version 1: .npz ---------------------------------------------------------------------------------
def _v1_with(tmp_path, data: bytes) -> Path:
    import hashlib
    d = Path(shutil.copytree(FIXTURE_V1, tmp_path / "v1"))
    (d / "weights.npz").write_bytes(data)
    config = json.loads((d / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (d / "config.json").write_text(json.dumps(config))
    return d


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good_params(dtype=np.float32):
    with np.load(FIXTURE_V1 / "weights.npz") as npz:
        return {name: npz[name].astype(dtype) for name in npz.files}


def _zip(members: dict, method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy_header(descr, shape) -> bytes:
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


@functools.lru_cache(maxsize=None)
def _zip_bomb() -> bytes:
    """W_xh.npy inflating to 200 MB from about 200 KB (the probe's was 3 GB from 2.9 MB)."""
    members = {}
    for name, value in _good_params().items():
        buf = io.BytesIO()
        np.save(buf, value)
        members[f"{name}.npy"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            if name != "W_xh.npy":
                z.writestr(name, data)
        info = zipfile.ZipInfo("W_xh.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as member:
            member.write(_npy_header("<f4", (28, 8)))
            chunk = bytes(1 << 20)
            for _ in range(200):
                member.write(chunk)
    return buf.getvalue()


def _npz_deflated(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


NPZ_CASES = {
    "member not npy": (lambda: _zip({**{f"{k}.npy": b"" for k in _good_params()}, "W_xh.npy": b"hello"}),
                       "not .npy data"),
    "string dtype": (lambda: _npz(**{**_good_params(), "W_xh": np.full((28, 8), "abcde")}), "only float32"),
    "object dtype": (lambda: _zip({**{f"{k}.npy": _npy_header("<f4", (1,)) for k in _good_params()},
                                   "W_xh.npy": _npy_header("|O", (28, 8))}), "only float32"),
    "int8": (lambda: _npz(**_good_params(np.int8)), "only float32"),
    "bool": (lambda: _npz(**_good_params(bool)), "only float32"),
    "float16": (lambda: _npz(**_good_params(np.float16)), "only float32"),
    "complex": (lambda: _npz(**_good_params(np.complex64)), "only float32"),
    "datetime": (lambda: _npz(**{k: np.zeros(v.shape, "datetime64[s]") for k, v in _good_params().items()}),
                 "only float32"),
    "header claims (1e9, 1e9)": (lambda: _zip({**{f"{k}.npy": b"" for k in _good_params()},
                                               "W_xh.npy": _npy_header("<f4", (10 ** 9, 10 ** 9))}),
                                 "should have shape"),
    "missing member": (lambda: _npz(**{k: v for k, v in _good_params().items() if k != "b_q"}), "members are"),
    "extra member": (lambda: _npz(**_good_params(), evil=np.zeros(3, np.float32)), "members are"),
    "NaN": (lambda: _npz(**{**_good_params(), "b_h": np.full(8, np.nan, np.float32)}), "NaN or infinite"),
    "not a zip": (lambda: b"PK\x03\x04 nothing", "not a zip archive"),
    "zip bomb": (_zip_bomb, "declares"),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_hostile_v1_weights_are_refused_even_with_a_matching_checksum(tmp_path, case):
    make, match = NPZ_CASES[case]
    message = _expect_refusal(_v1_with(tmp_path, make()), match)
    assert "weights.npz" in message


def test_a_zip_member_larger_than_its_directory_says_is_refused(tmp_path):
    data = bytearray(_npz_deflated(_good_params()))
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo("W_xh.npy")
    # Shrink the uncompressed size recorded in the central directory and the local header.
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + name_len] == b"W_xh.npy":
            struct.pack_into("<I", data, central + 24, 100)
        central = data.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, info.header_offset + 22, 100)
    _expect_refusal(_v1_with(tmp_path, bytes(data)), "weights.npz")


def test_fortran_ordered_float64_v1_weights_load_with_their_values(tmp_path):
    params = {k: np.asfortranarray(v.astype(np.float64)) for k, v in _good_params().items()}
    ckpt = load_checkpoint(_v1_with(tmp_path, _npz(**params)))
    for name, value in params.items():
        np.testing.assert_array_equal(ckpt.params[name], value)


# -- the command line, in a child process: exit 2, one line, no hang, bounded memory ------------------
def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _hostile_copies(base, root):
    def copy(name):
        return Path(shutil.copytree(base, root / name))
    cases = {}
    d = copy("fifo-config")
    _make_special(d / "config.json", "fifo")
    cases["fifo config"] = d
    d = copy("dev-zero-model")
    _make_special(d / "model.safetensors", "/dev/zero")
    cases["/dev/zero weights"] = d
    d = copy("deep-json")
    (d / "config.json").write_text("[" * 200_000)
    cases["deep json"] = d
    d = copy("huge-shape")
    _replace_file(d, "model.safetensors", WEIGHT_CASES["huge shape"][0]())
    cases["huge shape"] = d
    d = _v1_with(root / "bomb", _zip_bomb())
    cases["zip bomb"] = d
    return cases


def test_the_cli_refuses_hostile_checkpoints_in_one_line_without_hanging(base, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("SCRATCHRNN_FAULT", None)
    for case, d in _hostile_copies(base, tmp_path).items():
        result = subprocess.run([sys.executable, "-m", "scratchrnn", "generate", str(d), "--num-chars", "5"],
                                capture_output=True, text=True, timeout=60, env=env, preexec_fn=_limit_memory)
        assert result.returncode == 2, (case, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, (case, result.stderr)
    ok = subprocess.run([sys.executable, "-m", "scratchrnn", "generate", str(base), "--num-chars", "5",
                         "--prefix", "the"], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stderr
