"""Damaged checkpoints for scripts/probe.py: each function takes a copy of a good checkpoint
directory and breaks one thing in it the way a hostile file would (recomputing the checksums where
that is what makes the damage get past them)."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import zipfile
from pathlib import Path

from probe_run import MiB, ROOT


def read_config(ckpt: Path) -> dict:
    return json.loads((ckpt / "config.json").read_text(encoding="utf-8"))


def write_config(ckpt: Path, config) -> None:
    (ckpt / "config.json").write_text(json.dumps(config), encoding="utf-8")


def reseal(ckpt: Path, filename: str = "model.safetensors") -> None:
    """Recompute the weights file's checksum and size in config.json, as an attacker would."""
    config = read_config(ckpt)
    data = (ckpt / filename).read_bytes()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == filename and isinstance(value, dict) and "sha256" in value:
                    value["sha256"] = hashlib.sha256(data).hexdigest()
                    if "bytes" in value:
                        value["bytes"] = len(data)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(config)
    if config.get("weights_sha256"):
        config["weights_sha256"] = hashlib.sha256(data).hexdigest()
    write_config(ckpt, config)


def read_safetensors(ckpt: Path) -> tuple[dict, bytes]:
    raw = (ckpt / "model.safetensors").read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def write_safetensors(ckpt: Path, header: dict, data: bytes, sealed=True) -> None:
    blob = json.dumps(header).encode()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    if sealed:
        reseal(ckpt)


def retype(dtype: str, itemsize: int):
    def damage(ckpt):
        header, data = read_safetensors(ckpt)
        out, offset = {}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                out[name] = entry
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            out[name] = {"dtype": dtype, "shape": entry["shape"], "data_offsets": [offset, offset + count * itemsize]}
            offset += count * itemsize
        write_safetensors(ckpt, out, b"\x01" * offset)
    return damage


def fill(value: float):
    def damage(ckpt):
        header, data = read_safetensors(ckpt)
        write_safetensors(ckpt, header, struct.pack("<f", value) * (len(data) // 4))
    return damage


def huge_shape(ckpt):
    header, data = read_safetensors(ckpt)
    header["W_hh"]["shape"] = [10**9, 10**9]
    write_safetensors(ckpt, header, data)


def huge_header_length(ckpt):
    raw = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + raw[8:])
    reseal(ckpt)


def truncate(ckpt):
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def flip(ckpt):
    path = ckpt / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0x40
    path.write_bytes(bytes(raw))


def other_shapes(ckpt):
    header, data = read_safetensors(ckpt)
    header["W_hh"]["shape"] = [4, 16]
    write_safetensors(ckpt, header, data)


def set_model(value):
    def damage(ckpt):
        config = read_config(ckpt)
        config["model"] = value
        write_config(ckpt, config)
    return damage


def set_model_field(field, value):
    def damage(ckpt):
        config = read_config(ckpt)
        config["model"][field] = value
        write_config(ckpt, config)
    return damage


def set_vocab_entry(index, value):
    def damage(ckpt):
        config = read_config(ckpt)
        config["vocab"][index] = value
        write_config(ckpt, config)
    return damage


def set_cleaning(ckpt):
    config = read_config(ckpt)
    if isinstance(config.get("data"), dict):
        config["data"]["cleaning"] = "shout"
    else:
        config["cleaning"] = "shout"
    write_config(ckpt, config)


def deep_json(ckpt):
    (ckpt / "config.json").write_text("[" * 200_000 + "]" * 200_000)


def long_integer(ckpt):
    text = (ckpt / "config.json").read_text()
    config = read_config(ckpt)
    hidden = config["model"]["num_hiddens"]
    (ckpt / "config.json").write_text(text.replace(f'"num_hiddens": {hidden}', '"num_hiddens": ' + "9" * 5000, 1))


def replace_with(kind, filename):
    def damage(ckpt):
        path = ckpt / filename
        path.unlink()
        if kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
    return damage


def big_config(ckpt):
    config = read_config(ckpt)
    config["padding"] = " " * (40 * MiB)
    write_config(ckpt, config)


def garbage_config(ckpt):
    (ckpt / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n not json at all")


def to_v1(ckpt: Path, members: dict[str, bytes] | None = None) -> None:
    """Rewrite the checkpoint in the version-1 layout (weights.npz), with ``members`` replacing the
    real .npy members when given."""
    from io import BytesIO

    import numpy as np
    sys.path.insert(0, str(ROOT / "src"))
    from scratchrnn.checkpoint_files import safetensors_arrays  # noqa: E402 -- the tree under test
    config = read_config(ckpt)
    path = ckpt / "model.safetensors"
    params = safetensors_arrays(path.read_bytes(), path)
    with zipfile.ZipFile(ckpt / "weights.npz", "w", zipfile.ZIP_DEFLATED) as npz:
        for name, value in params.items():
            if members and f"{name}.npy" in members:
                continue
            buffer = BytesIO()
            np.save(buffer, value, allow_pickle=False)
            npz.writestr(f"{name}.npy", buffer.getvalue())
        for name, blob in (members or {}).items():
            with npz.open(name, "w", force_zip64=True) as member:
                for block in blob:
                    member.write(block)
    (ckpt / "model.safetensors").unlink()
    old = {"format": config.get("format"), "version": 1, "model": config["model"], "vocab": config["vocab"],
           "data": config.get("data", {}),
           "weights_sha256": hashlib.sha256((ckpt / "weights.npz").read_bytes()).hexdigest()}
    write_config(ckpt, old)


def zip_bomb(ckpt):
    # a W_hh member whose header declares 8 GiB of float32 zeros, deflated to a few MB
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 32768), }"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    start = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    zeros = bytes(4 * MiB)
    to_v1(ckpt, {"W_hh.npy": [start, *([zeros] * 128)]})
