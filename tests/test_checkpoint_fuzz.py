"""Fuzzing valid checkpoints (hypothesis): every mutation either loads or is refused with one UserError
line, nothing else -- and where the outcome follows from what was changed, the test says which:

- changing bytes of a weights file without recomputing its checksum: refused, always;
- changing tensor bytes (past the header) and recomputing the checksum: loads exactly when every
  value is still finite (a NaN or an infinity is refused);
- cutting a weights file short, checksum recomputed: refused;
- free-form fields (``info``, ``train_state``, keys the reader does not know): any JSON there loads;
- a checked field (format, version, the model's shape, cleaning, the vocabulary, the files' checksums)
  set to a value of the wrong type or out of range: refused;
- a special file in place of any file of the checkpoint, or of the directory itself: refused.
"""
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_checkpoint_hostile import FIXTURE_V1, _config, _make_special, _replace_file, _v1_with, base  # noqa: F401

from scratchrnn import backends
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.errors import UserError
from scratchrnn.generation import predict


def _load_or_refuse(d):
    """Loading either works (and then the model generates) or raises UserError; nothing else."""
    try:
        ckpt = load_checkpoint(d)
    except UserError as err:
        assert "\n" not in str(err)
        return False
    backend = backends.create("numpy", ckpt.params, ckpt.model)
    try:
        predict(backend, ckpt.vocab, ckpt.vocab.idx_to_token[-1], 3, cleaning=ckpt.cleaning)
    except UserError:
        pass
    return True


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:40]):
            yield from _paths(item, prefix + (i,))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-2, max_value=70000)
    | st.floats() | st.text(max_size=4) | st.sampled_from(["<unk>", "a", "\x1b", "tanh", "raw", "F32"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_config_mutations_load_or_refuse(base, tmp_path_factory, data):
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "ckpt"))
    config = _config(d)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(config))))
        if not path:
            config = data.draw(json_values)
            continue
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
        if not isinstance(config, dict):
            break
    (d / "config.json").write_text(json.dumps(config, ensure_ascii=data.draw(st.booleans())))
    _load_or_refuse(d)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["model.safetensors", "optimizer.safetensors"]),
       edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 3000), recompute=st.booleans())
def test_fuzz_weight_bytes_load_or_refuse(base, tmp_path_factory, name, edits, cut, recompute):
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "ckpt"))
    original = (d / name).read_bytes()
    raw = bytearray(original)
    for position, value in edits:
        raw[position % len(raw)] = value
    raw = bytes(raw[:cut] if cut is not None else raw)
    if recompute:
        _replace_file(d, name, raw)
    else:
        (d / name).write_bytes(raw)
    loaded = _load_or_refuse(d)
    # what follows from the change alone, read from the bytes here, not by the loader
    data_start = 8 + struct.unpack("<Q", original[:8])[0]
    if raw == original:
        assert loaded
    elif not recompute or len(raw) < len(original):
        assert not loaded, "a changed file that does not match its checksum, or one cut short, was loaded"
    elif all(position % len(original) >= data_start for position, _ in edits):
        finite = _all_tensor_values_finite(raw, data_start)
        assert loaded is finite, f"tensor bytes changed: all finite {finite}, yet loaded {loaded}"


def _all_tensor_values_finite(raw: bytes, data_start: int) -> bool:
    """Whether every tensor of a safetensors file (its header read here with json) holds finite values."""
    header = json.loads(raw[8:data_start])
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = {"F32": "<f4", "F64": "<f8"}[entry["dtype"]]
        if not np.isfinite(np.frombuffer(raw[data_start + begin:data_start + end], dtype=dtype)).all():
            return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_v1_npz_bytes_load_or_refuse(tmp_path_factory, edits):
    original = (FIXTURE_V1 / "weights.npz").read_bytes()
    raw = bytearray(original)
    for position, value in edits:
        raw[position % len(raw)] = value
    loaded = _load_or_refuse(_v1_with(tmp_path_factory.mktemp("fuzz"), bytes(raw)))
    # _v1_with recomputes the checksum; a changed byte of a member's data still breaks its CRC-32
    changed = [p % len(original) for p, v in edits if original[p % len(original)] != raw[p % len(original)]]
    if not changed:
        assert loaded
    elif all(any(begin <= at < end for begin, end in _member_data(original)) for at in changed):
        assert not loaded, f"bytes {changed} of the members' data changed, yet the weights loaded"


def _member_data(archive: bytes) -> list[tuple[int, int]]:
    """Where each member's (compressed) data lies in a zip archive: after its local header, whose
    name and extra field lengths sit at bytes 26-29 of it."""
    import zipfile
    from io import BytesIO
    spans = []
    for info in zipfile.ZipFile(BytesIO(archive)).infolist():
        name_length, extra_length = struct.unpack("<HH", archive[info.header_offset + 26:info.header_offset + 30])
        begin = info.header_offset + 30 + name_length + extra_length
        spans.append((begin, begin + info.compress_size))
    return spans




@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(replaced=st.lists(st.tuples(st.sampled_from(["config.json", "model.safetensors", "optimizer.safetensors"]),
                                   st.sampled_from(["directory", "fifo", "/dev/zero", "dangling symlink"])),
                         max_size=2, unique_by=lambda item: item[0]),
       whole=st.sampled_from([None, "fifo", "file", "/dev/zero"]))
def test_fuzz_files_replaced_by_special_files_load_or_refuse(base, tmp_path_factory, replaced, whole):
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "ckpt"))
    for name, kind in replaced:
        _make_special(d / name, kind)
    if whole is not None:
        shutil.rmtree(d)
        if whole == "fifo":
            os.mkfifo(d)
        elif whole == "file":
            d.write_bytes(b"{}")
        else:
            d.symlink_to("/dev/zero")
    assert _load_or_refuse(d) is (not replaced and whole is None)


# -- the fields a reader leaves alone load whatever they hold; those it checks refuse what is wrong ----
FREE_FIELDS = (("info",), ("train_state",), ("written_by_a_later_version",))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FREE_FIELDS), value=st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_fuzz_free_fields_load_whatever_they_hold(base, tmp_path_factory, field, value):
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "ckpt"))
    config = _config(d)
    config[field[0]] = value
    (d / "config.json").write_text(json.dumps(config))
    assert _load_or_refuse(d), f"{field[0]} = {value!r} was refused"


not_a_count = st.none() | st.booleans() | st.floats() | st.text(max_size=3) | st.lists(st.integers(), max_size=2) \
    | st.integers(max_value=0) | st.integers(min_value=1 << 22)
# (where in config.json, values that must be refused there)
CHECKED_FIELDS = [
    (("format",), st.text(max_size=8).filter(lambda t: t != "scratchrnn-checkpoint") | st.none() | st.integers()),
    (("version",), st.integers().filter(lambda v: v not in (1, 2)) | st.text(max_size=2) | st.floats()),
    (("model", "vocab_size"), not_a_count | st.integers(2, 27) | st.integers(29, 200)),
    (("model", "num_hiddens"), not_a_count),
    (("model", "num_layers"), not_a_count | st.integers(65, 1000)),
    (("model", "cell"), st.text(max_size=5).filter(lambda t: t not in ("rnn", "gru", "lstm")) | st.integers()),
    (("model", "dropout"), st.floats().filter(lambda f: not 0 <= f < 1) | st.text(max_size=2) | st.none()),
    (("data", "cleaning"), st.text(max_size=6).filter(lambda t: t not in ("chapter", "raw")) | st.integers()),
    (("vocab", 0), st.text(max_size=3).filter(lambda t: t != "<unk>") | st.none() | st.integers()),
    (("vocab", 3), st.none() | st.integers() | st.sampled_from(["", "ab", "e", "\x1b", "\x00"])),
    (("files", "model.safetensors", "sha256"), st.text(max_size=64) | st.none() | st.integers()),
    (("files", "model.safetensors", "bytes"), not_a_count | st.integers(8, 4000)),
]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), at=st.integers(0, len(CHECKED_FIELDS) - 1))
def test_fuzz_checked_fields_refuse_wrong_values(base, tmp_path_factory, data, at):
    path, wrong = CHECKED_FIELDS[at]
    d = Path(shutil.copytree(base, tmp_path_factory.mktemp("fuzz") / "ckpt"))
    config = _config(d)
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    before = parent[path[-1]]
    value = data.draw(wrong.filter(lambda v: v != before or type(v) is not type(before)))
    parent[path[-1]] = value
    (d / "config.json").write_text(json.dumps(config))
    assert not _load_or_refuse(d), f"{'.'.join(map(str, path))} = {value!r} was loaded"
