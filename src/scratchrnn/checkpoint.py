"""Framework-neutral checkpoints: a directory with ``weights.npz`` and ``config.json``.

``weights.npz`` holds the parameters as NumPy arrays under the chapter's names (W_xh, W_hh, b_h,
W_hq, b_q); ``config.json`` holds the model's shape, the vocabulary in index order, how text was
cleaned, what training did, and the SHA-256 of the weights file so that a damaged or half-copied
checkpoint is refused instead of generating garbage. Any backend can load what any backend saved.

Saving is atomic: the new checkpoint is written beside the old one and swapped in with renames, so
an interrupted save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Vocab
from .errors import UserError
from .model import ModelConfig

FORMAT = "scratchrnn-checkpoint"
VERSION = 1
WEIGHTS_FILE = "weights.npz"
CONFIG_FILE = "config.json"
CHECKPOINT_SUBDIR = "checkpoint"


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    vocab: Vocab
    model: ModelConfig
    cleaning: str = "chapter"
    token: str = "char"
    info: dict = field(default_factory=dict)   # training settings and results, for the record
    path: Path | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``directory`` (created if needed), replacing an older checkpoint atomically."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.saving-{os.getpid()}")
    retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        weights = staging / WEIGHTS_FILE
        with open(weights, "wb") as f:
            np.savez(f, **{name: np.asarray(value) for name, value in ckpt.params.items()})
            f.flush()
            os.fsync(f.fileno())
        config = {
            "format": FORMAT,
            "version": VERSION,
            "model": ckpt.model.to_dict(),
            "vocab": list(ckpt.vocab.idx_to_token),
            "data": {"cleaning": ckpt.cleaning, "token": ckpt.token},
            "weights_sha256": _sha256(weights),
            "info": ckpt.info,
        }
        with open(staging / CONFIG_FILE, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(staging)
        if directory.exists():
            os.rename(directory, retired)
        os.rename(staging, directory)
        _fsync_dir(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a checkpoint directory or a run directory that holds one in ``checkpoint/``."""
    path = Path(path)
    if (path / CHECKPOINT_SUBDIR / CONFIG_FILE).exists() or (
            not (path / CONFIG_FILE).exists() and (path / CHECKPOINT_SUBDIR).is_dir()):
        return path / CHECKPOINT_SUBDIR
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint; a missing or damaged one raises UserError saying which part."""
    directory = resolve_checkpoint_dir(path)
    if not directory.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not directory.is_dir():
        raise UserError(f"not a checkpoint directory: {path}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.exists():
        raise UserError(f"not a scratchrnn checkpoint: {directory} has no {CONFIG_FILE}")
    if not weights_path.exists():
        raise UserError(f"checkpoint is incomplete: {directory} has no {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"checkpoint is corrupt: {config_path} is not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"not a scratchrnn checkpoint: {config_path} has no format {FORMAT!r}")
    if config.get("version") != VERSION:
        raise UserError(f"checkpoint format version {config.get('version')} is not supported "
                        f"(this scratchrnn reads version {VERSION})")
    if _sha256(weights_path) != config.get("weights_sha256"):
        raise UserError(f"checkpoint is corrupt: {weights_path} does not match the checksum in "
                        f"{CONFIG_FILE}")
    try:
        model = ModelConfig.from_dict(config["model"])
        vocab = Vocab.from_tokens_list(config["vocab"])
        with np.load(weights_path, allow_pickle=False) as npz:
            params = {name: npz[name] for name in npz.files}
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise UserError(f"checkpoint is corrupt: {directory} ({err})") from None
    if len(vocab) != model.vocab_size:
        raise UserError(f"checkpoint is corrupt: vocabulary has {len(vocab)} tokens but the model "
                        f"expects {model.vocab_size}")
    for name, shape in model.param_shapes().items():
        if name not in params or tuple(params[name].shape) != shape:
            found = None if name not in params else tuple(params[name].shape)
            raise UserError(f"checkpoint is corrupt: parameter {name} should have shape {shape}, "
                            f"found {found}")
    data = config.get("data", {})
    return Checkpoint(params, vocab, model, data.get("cleaning", "chapter"), data.get("token", "char"),
                      config.get("info", {}), directory)
