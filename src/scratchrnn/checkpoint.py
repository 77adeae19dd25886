"""Framework-neutral checkpoints: a directory with ``model.safetensors`` and ``config.json``.

Format version 2:
- ``model.safetensors``: the parameters under the chapter's names (W_xh, W_hh, b_h, W_hq, b_q),
  written with the safetensors library, so the Hugging Face tooling reads it and no pickle is
  involved anywhere;
- ``optimizer.safetensors`` (optional): the optimizer's state, flat ``"slot/param"`` keys
  (``"exp_avg/W_xh"``), each shaped like its parameter or a scalar;
- ``config.json``: format and version, the model's shape, the vocabulary in index order, how text
  was cleaned and split into tokens, the SHA-256 and size of each file beside it, ``info`` (settings
  and results, for the record) and ``train_state`` (what the training loop needs to continue).

Version 1 (``weights.npz`` + ``config.json``) still loads. Everything is checked before use
(``checkpoint_files`` reads the files, ``_check_config`` the JSON), so a damaged or hostile
checkpoint is refused with one line naming the file and the field. Any backend loads what any
backend saved.

``save_checkpoint`` writes a complete copy beside the old one and swaps it in with renames; if it is
stopped between the two renames, ``load_checkpoint`` finds the old copy under its temporary name.
Run directories (``rundir.py``) avoid even that window with versioned copies and a symlink pointer.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import faults
from .checkpoint_files import (MAX_JSON_BYTES, corrupt, npz_arrays, parse_json, read_regular_file,
                               safetensors_arrays, safetensors_header, sha256, short)
from .data import CLEANING_MODES, Vocab
from .errors import UserError
from .model import (ACTIVATIONS, CELLS, EMBEDDINGS, MAX_HIDDEN, MAX_LAYERS, MAX_VOCAB, ModelConfig,
                    check_limits)

FORMAT = "scratchrnn-checkpoint"
VERSION = 2
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CONFIG_FILE = "config.json"
V1_WEIGHTS_FILE = "weights.npz"
CHECKPOINT_SUBDIR = "checkpoint"        # where a version-1 run directory kept its checkpoint
RUN_POINTERS = ("best", "last")         # where a version-2 run directory keeps its checkpoints
TOKENS = ("char", "word")

MAX_WORD_CHARS = 256
MAX_OPTIMIZER_SLOTS = 16
# An interrupted epoch also keeps the hidden state it carried into its next batch, under the keys
# "carried/0", "carried/1", ... (one per state tensor), each (batch, num_hiddens).
CARRIED_SLOT = "carried"
MAX_CARRIED_ROWS = 1 << 16
_SLOT = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    vocab: Vocab
    model: ModelConfig
    cleaning: str = "chapter"
    token: str = "char"
    info: dict = field(default_factory=dict)          # settings and results, for the record
    train_state: dict | None = None                   # the training loop's own, written back verbatim
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)   # "slot/param" -> array
    path: Path | None = None


# -- writing -----------------------------------------------------------------------------------------
def fsync_dir(path: Path) -> None:
    """Make a directory's entries (names created, renamed, removed) durable, where the system allows."""
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


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _tensors(arrays: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    out = {}
    for name, value in arrays.items():
        array = np.asarray(value, order="C")
        if array.dtype not in (np.float32, np.float64):
            raise ValueError(f"{what} {name} must be float32 or float64, not {array.dtype}")
        out[name] = array
    return out


def _write_tensor_file(path: Path, arrays: dict[str, np.ndarray], what: str) -> dict:
    """Write ``arrays`` as a safetensors file, synced; return its entry of config.json's ``files``."""
    from safetensors.numpy import save

    data = save(_tensors(arrays, what), metadata={"format": "np"})
    _write_durably(path, data)
    return {"sha256": sha256(data), "bytes": len(data)}


def write_checkpoint_files(directory: Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` into the new, empty ``directory``, every file synced to disk.

    Fault points after each file: ``checkpoint.model-written``, ``checkpoint.optimizer-written``
    (only with optimizer state), ``checkpoint.config-written``, ``checkpoint.files-synced``.
    """
    shapes = ckpt.model.param_shapes()
    if set(ckpt.params) != set(shapes):
        raise ValueError(f"params must be exactly {sorted(shapes)}, not {sorted(ckpt.params)}")
    problem = vocab_problem(list(ckpt.vocab.idx_to_token), ckpt.token)
    if problem:
        raise UserError(f"cannot save a checkpoint of this model: {problem}")
    files = {MODEL_FILE: _write_tensor_file(directory / MODEL_FILE, ckpt.params, "parameter")}
    faults.point("checkpoint.model-written")
    if ckpt.optimizer_state:
        files[OPTIMIZER_FILE] = _write_tensor_file(directory / OPTIMIZER_FILE, ckpt.optimizer_state,
                                                   "optimizer state")
        faults.point("checkpoint.optimizer-written")
    config = {
        "format": FORMAT,
        "version": VERSION,
        "model": ckpt.model.to_dict(),
        "vocab": list(ckpt.vocab.idx_to_token),
        "data": {"cleaning": ckpt.cleaning, "token": ckpt.token},
        "files": files,
        "info": ckpt.info,
        "train_state": ckpt.train_state,
    }
    text = json.dumps(config, indent=1, ensure_ascii=False) + "\n"
    _write_durably(directory / CONFIG_FILE, text.encode("utf-8"))
    faults.point("checkpoint.config-written")
    fsync_dir(directory)
    faults.point("checkpoint.files-synced")


def estimate_checkpoint_bytes(model: ModelConfig, itemsize: int = 4, optimizer_slots: int = 0,
                              extra_json_bytes: int = 1 << 16) -> int:
    """About how many bytes one checkpoint of ``model`` takes on disk (for a free-space check).

    ``itemsize``: 4 for float32 weights, 8 for float64; ``optimizer_slots``: arrays per parameter
    the optimizer keeps (0 for SGD, 1 for momentum, 2 for Adam); ``extra_json_bytes``: room for
    config.json beyond the vocabulary (info, train_state).
    """
    params = sum(math.prod(shape) for shape in model.param_shapes().values())
    headers = 2 * 4096
    return params * itemsize * (1 + optimizer_slots) + headers + 16 * model.vocab_size + extra_json_bytes


def save_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``directory`` (created if needed), replacing an older checkpoint atomically.

    The new copy is written complete under ``.NAME.saving-PID`` and then swapped in: the old one is
    renamed to ``.NAME.old-PID``, the new one to ``NAME``, the old one removed. Stopped between the
    renames, ``load_checkpoint(NAME)`` reads the old copy; a run directory cleans such leftovers.
    Fault points: ``checkpoint.staging-created``, those of ``write_checkpoint_files``,
    ``checkpoint.old-moved-aside``, ``checkpoint.new-in-place``, ``checkpoint.old-removed``.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.saving-{os.getpid()}")
    retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    remove_path(staging)
    staging.mkdir()
    moved_aside = False
    try:
        faults.point("checkpoint.staging-created")
        write_checkpoint_files(staging, ckpt)
        if os.path.lexists(directory):
            remove_path(retired)
            os.rename(directory, retired)
            moved_aside = True
            faults.point("checkpoint.old-moved-aside")
        os.rename(staging, directory)
        moved_aside = False
        fsync_dir(directory.parent)
        faults.point("checkpoint.new-in-place")
        remove_path(retired)
        faults.point("checkpoint.old-removed")
    finally:
        remove_path(staging)
        if moved_aside and not os.path.lexists(directory):
            os.rename(retired, directory)     # the new copy never arrived: put the old one back
        elif os.path.lexists(directory):
            remove_path(retired)
    return directory


def remove_path(path: Path) -> None:
    """Remove a file, symlink (not what it points to) or directory tree, if present."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


# -- checking config.json ----------------------------------------------------------------------------
def _int(value, where: str, path, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise corrupt(path, f"{where} must be an integer in [{lo}, {hi}], found {short(value)}")
    return value


def _choice(value, where: str, path, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise corrupt(path, f"{where} must be one of {', '.join(options)}, found {short(value)}")
    return value


def _check_model(spec, path) -> ModelConfig:
    if not isinstance(spec, dict):
        raise corrupt(path, f"model must be an object, found {short(spec)}")
    if "vocab_size" not in spec:
        raise corrupt(path, "model.vocab_size is missing")
    _int(spec["vocab_size"], "model.vocab_size", path, 2, MAX_VOCAB)
    for name, lo, hi in (("num_hiddens", 1, MAX_HIDDEN), ("embed_dim", 0, MAX_HIDDEN),
                         ("num_layers", 1, MAX_LAYERS)):
        if name in spec:
            _int(spec[name], f"model.{name}", path, lo, hi)
    for name, options in (("activation", ACTIVATIONS), ("embedding", EMBEDDINGS), ("cell", CELLS)):
        if name in spec:
            _choice(spec[name], f"model.{name}", path, options)
    dropout = spec.get("dropout", 0.0)
    if type(dropout) not in (int, float) or not (math.isfinite(dropout) and 0 <= dropout < 1):
        raise corrupt(path, f"model.dropout must be a number in [0, 1), found {short(dropout)}")
    try:
        model = ModelConfig.from_dict(spec)
        check_limits(model)             # the bounds training itself keeps to
    except (ValueError, TypeError) as err:
        raise corrupt(path, f"model: {short(str(err), 100)}") from None
    return model


def _bad_character(token: str) -> str | None:
    for ch in token:
        category = unicodedata.category(ch)
        if (category == "Cc" and not ch.isspace()) or category == "Cs":
            return ch
    return None


def vocab_problem(tokens, token: str = "char", where: str = "vocab") -> str | None:
    """What makes ``tokens`` a vocabulary no training could have written, or None if nothing does.

    Index 0 is ``<unk>``; tokens are unique strings; a char model's are single characters, a word
    model's short words; no control characters except whitespace (an ANSI escape in a token would
    reach the user's terminal raw when generated text is printed) and no lone surrogates.
    """
    if not isinstance(tokens, list) or not tokens:
        return f"{where} must be a non-empty list, found {short(tokens)}"
    if tokens[0] != Vocab.UNK:
        return f"{where}[0] must be {Vocab.UNK!r}, found {short(tokens[0])}"
    seen = set()
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            return f"{where}[{i}] must be a string, found {short(tok)}"
        if tok in seen:
            return f"{where}[{i}] repeats the token {short(tok)}"
        seen.add(tok)
        if i == 0:
            continue
        if token == "char" and len(tok) != 1:
            return f"{where}[{i}] must be one character, found {short(tok)}"
        if token == "word" and not 0 < len(tok) <= MAX_WORD_CHARS:
            return f"{where}[{i}] must be a word of 1 to {MAX_WORD_CHARS} characters, found {short(tok)}"
        bad = _bad_character(tok)
        if bad is not None:
            return f"{where}[{i}] holds the control character {bad!r}"
    return None


def _check_files(spec, path, present: list[str]) -> dict:
    if not isinstance(spec, dict) or MODEL_FILE not in spec:
        raise corrupt(path, f"files must be an object naming {MODEL_FILE}, found {short(spec)}")
    for name, entry in spec.items():
        if name not in (MODEL_FILE, OPTIMIZER_FILE):
            raise corrupt(path, f"files names an unknown file {short(name)}")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX64.fullmatch(entry["sha256"])):
            raise corrupt(path, f"files.{name}.sha256 must be 64 hexadecimal digits")
        _int(entry.get("bytes"), f"files.{name}.bytes", path, 8, 1 << 40)
    for name in present:
        if name not in spec:
            raise corrupt(path, f"files does not list {name}, which lies beside it")
    return spec


def _check_config(config, path) -> dict:
    """Check config.json's structure and values; return them with defaults filled in."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise UserError(f"not a scratchrnn checkpoint: {path} has no format {FORMAT!r}")
    version = config.get("version")
    if type(version) is not int or version not in (1, 2):
        raise UserError(f"checkpoint format version {short(version)} is not supported "
                        f"(this scratchrnn reads versions 1 and 2): {path}")
    model = _check_model(config.get("model"), path)
    data = config.get("data", {})
    if not isinstance(data, dict):
        raise corrupt(path, f"data must be an object, found {short(data)}")
    cleaning = _choice(data.get("cleaning", "chapter"), "data.cleaning", path, CLEANING_MODES)
    token = _choice(data.get("token", "char"), "data.token", path, TOKENS)
    vocab = config.get("vocab")
    problem = vocab_problem(vocab, token)
    if problem:
        raise corrupt(path, problem)
    if len(vocab) != model.vocab_size:
        raise corrupt(path, f"vocabulary has {len(vocab)} tokens but model.vocab_size is {model.vocab_size}")
    info = config.get("info", {})
    if not isinstance(info, dict):
        raise corrupt(path, f"info must be an object, found {short(info)}")
    train_state = config.get("train_state")
    if train_state is not None and not isinstance(train_state, dict):
        raise corrupt(path, f"train_state must be an object or null, found {short(train_state)}")
    if version == 1:
        digest = config.get("weights_sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise corrupt(path, "weights_sha256 must be 64 hexadecimal digits")
    return {"version": version, "model": model, "vocab": vocab, "cleaning": cleaning, "token": token,
            "info": info, "train_state": train_state}


# -- reading -----------------------------------------------------------------------------------------
def _max_bytes(shapes) -> int:
    """The most bytes a weights file for these shapes can take (float64, generous headers)."""
    return sum(8 * math.prod(s) for s in shapes.values()) + (1 << 20) + (1 << 16) * len(shapes)


def _read_verified(path: Path, entry: dict, limit: int) -> bytes:
    if entry["bytes"] > limit:
        raise corrupt(path.parent / CONFIG_FILE, f"files.{path.name}.bytes is {entry['bytes']}, more than "
                                                 f"the {limit} the model can need")
    data = read_regular_file(path, limit)
    if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
        raise corrupt(path, f"does not match the checksum in {CONFIG_FILE}")
    return data


def _finite(arrays: dict[str, np.ndarray], path) -> None:
    for name, array in arrays.items():
        if not np.isfinite(array).all():
            raise corrupt(path, f"tensor {short(name)} holds NaN or infinite values")


def _read_model(directory: Path, files: dict, shapes) -> dict[str, np.ndarray]:
    path = directory / MODEL_FILE
    data = _read_verified(path, files[MODEL_FILE], _max_bytes(shapes))
    header = safetensors_header(data, path)
    for name, shape in shapes.items():
        found = header[name][1] if name in header else None
        if found != shape:
            raise corrupt(path, f"parameter {name} should have shape {shape}, found {found}")
    if set(header) != set(shapes):
        raise corrupt(path, f"holds tensors the model does not have: {short(sorted(set(header) - set(shapes)))}")
    params = safetensors_arrays(data, path)
    _finite(params, path)
    return params


def _read_optimizer(directory: Path, files: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    path = directory / OPTIMIZER_FILE
    if OPTIMIZER_FILE not in files:
        return {}
    shapes, hidden = model.param_shapes(), model.num_hiddens
    carried_bytes = MAX_CARRIED_ROWS * hidden * 8 * 2
    data = _read_verified(path, files[OPTIMIZER_FILE], MAX_OPTIMIZER_SLOTS * _max_bytes(shapes) + carried_bytes)
    header = safetensors_header(data, path)
    for key, (_, shape) in header.items():
        slot, _, param = key.partition("/")
        if slot == CARRIED_SLOT and param.isdigit() and len(param) < 3:
            if len(shape) != 2 or shape[1] != hidden or not 1 <= shape[0] <= MAX_CARRIED_ROWS:
                raise corrupt(path, f"{short(key)} should have shape (batch, {hidden}), found {shape}")
            continue
        if not _SLOT.fullmatch(slot) or param not in shapes:
            raise corrupt(path, f"key {short(key)} is not slot/parameter")
        if shape not in (shapes[param], ()):
            raise corrupt(path, f"{short(key)} should have shape {shapes[param]} or be a scalar, found {shape}")
    state = safetensors_arrays(data, path)
    _finite(state, path)
    return state


def _complete_old_copy(path: Path) -> Path | None:
    """The newest ``.NAME.old-PID`` beside a missing ``NAME`` that holds a config.json."""
    if not path.parent.is_dir():
        return None
    olds = [p for p in path.parent.glob(f".{path.name}.old-*") if (p / CONFIG_FILE).is_file()]
    return max(olds, key=lambda p: p.stat().st_mtime) if olds else None


def resolve_checkpoint_dir(path: str | Path, which: str = "best") -> Path:
    """A checkpoint directory itself, or the one a run directory holds.

    A run directory holds ``best/`` and ``last/`` (``which`` chooses), or, written by version 1,
    ``checkpoint/``. A checkpoint caught mid-swap by ``save_checkpoint`` is found under its old name.
    """
    if which not in RUN_POINTERS:
        raise ValueError(f"which must be one of {RUN_POINTERS}, not {which!r}")
    path = Path(path)
    if not os.path.lexists(path):
        old = _complete_old_copy(path)
        if old is not None:
            return old
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise UserError(f"not a checkpoint directory: {path}")
    if os.path.lexists(path / CONFIG_FILE):
        return path
    for name in (which, CHECKPOINT_SUBDIR):
        candidate = path / name
        if os.path.lexists(candidate) or _complete_old_copy(candidate):
            return candidate
    others = [name for name in RUN_POINTERS if os.path.lexists(path / name)]
    if others:
        raise UserError(f"run directory {path} has no {which}/ checkpoint (it has {others[0]}/)")
    return path


def load_checkpoint(path: str | Path, which: str = "best") -> Checkpoint:
    """Read and verify a checkpoint (a checkpoint directory or a run directory, see
    ``resolve_checkpoint_dir``); anything missing, damaged or implausible raises UserError."""
    directory = resolve_checkpoint_dir(path, which)
    if not os.path.lexists(directory):
        old = _complete_old_copy(directory)
        if old is None:
            raise UserError(f"checkpoint not found: {directory}")
        directory = old
    if not directory.is_dir():
        kind = "a dangling symlink" if directory.is_symlink() and not directory.exists() else "not a directory"
        raise UserError(f"checkpoint is unusable: {directory} is {kind}")
    config_path = directory / CONFIG_FILE
    if not os.path.lexists(config_path):
        raise UserError(f"not a scratchrnn checkpoint: {directory} has no {CONFIG_FILE}")
    raw = parse_json(read_regular_file(config_path, MAX_JSON_BYTES), config_path)
    config = _check_config(raw, config_path)
    model: ModelConfig = config["model"]
    shapes = model.param_shapes()
    optimizer_state = {}
    if config["version"] == 1:
        weights = directory / V1_WEIGHTS_FILE
        if not os.path.lexists(weights):
            raise UserError(f"checkpoint is incomplete: {directory} has no {V1_WEIGHTS_FILE}")
        data = read_regular_file(weights, _max_bytes(shapes))
        if sha256(data) != raw["weights_sha256"]:
            raise corrupt(weights, f"does not match the checksum in {CONFIG_FILE}")
        params = npz_arrays(data, weights, shapes)
        _finite(params, weights)
    else:
        present = [name for name in (MODEL_FILE, OPTIMIZER_FILE) if os.path.lexists(directory / name)]
        files = _check_files(raw.get("files"), config_path, present)
        if not os.path.lexists(directory / MODEL_FILE):
            raise UserError(f"checkpoint is incomplete: {directory} has no {MODEL_FILE}")
        params = _read_model(directory, files, shapes)
        optimizer_state = _read_optimizer(directory, files, model)
    return Checkpoint(params, Vocab.from_tokens_list(config["vocab"]), model, config["cleaning"],
                      config["token"], config["info"], config["train_state"], optimizer_state, directory)
