"""Reading the files of a checkpoint that may have been written by someone hostile.

A checkpoint can come from anywhere (a download, a shared drive), so nothing in it is trusted until
it has been checked: files are read only when they are regular files of a bounded size (a FIFO or
``/dev/zero`` behind a name would hang or never end), JSON is parsed only below a size and nesting
cap, and the headers of weight files (safetensors; the ``.npy`` members of a version-1 ``.npz``)
are parsed and checked against the shapes the model needs before any tensor data is read or
inflated. Every refusal is a UserError of one line that names the file and what is wrong with it.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from . import regular_files
from .errors import UserError

MAX_JSON_BYTES = 16 << 20     # config.json: a char vocabulary and a long history fit many times over
MAX_JSON_DEPTH = 64           # our own files nest four levels deep
MAX_INT_DIGITS = 80           # a 128-bit RNG state fits; int("9" * 5000) costs quadratic time
MAX_SAFETENSORS_HEADER = 1 << 20
MAX_NPY_HEADER = 1 << 16      # the .npy format's own limit for version 1 headers
FLOAT_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?', re.S)   # an unterminated string runs to the end
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def corrupt(path, what: str) -> UserError:
    """The one-line refusal every check here raises."""
    return UserError(f"checkpoint is corrupt: {path}: {what}")


def short(value, limit: int = 60) -> str:
    """A value for an error message: one line, bounded, control characters escaped."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes (``regular_files``:
    a FIFO behind the name would block, ``/dev/zero`` never end), else a one-line refusal."""
    try:
        return regular_files.read_regular_file(path, limit)
    except regular_files.FileRefused as refused:
        if refused.missing:
            raise UserError(f"checkpoint is incomplete: {path} is missing") from None
        reason = refused.reason.replace(" expected", " this checkpoint can need")
        raise corrupt(path, reason) from None


def bounded_int(text: str) -> int:
    """``int(text)`` for ``json.loads``, refusing more than MAX_INT_DIGITS digits (quadratic time)."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, counted without recursion."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def parse_json(data: bytes, path) -> object:
    """JSON from bytes, refusing non-UTF-8, deep nesting and huge integers with a one-line error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise corrupt(path, f"is not UTF-8 (byte {err.start})") from None
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise corrupt(path, f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_int=bounded_int)
    except (ValueError, RecursionError) as err:
        raise corrupt(path, f"is not valid JSON ({short(str(err), 80)})") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- safetensors -------------------------------------------------------------------------------------
def safetensors_header(data: bytes, path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Check a safetensors file's header against its own length; return name -> (dtype, shape).

    The layout: an 8-byte little-endian header length, a JSON header, then the tensors' bytes back
    to back. Only float32 and float64 are accepted, and the declared offsets must tile the data
    exactly, so a header cannot point outside the file or make a tensor larger than its bytes.
    """
    if len(data) < 8:
        raise corrupt(path, "is too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_SAFETENSORS_HEADER or 8 + length > len(data):
        raise corrupt(path, f"declares a safetensors header of {length} bytes, which the file cannot hold")
    header = parse_json(data[8:8 + length], path)
    if not isinstance(header, dict):
        raise corrupt(path, "safetensors header is not a JSON object")
    data_size = len(data) - 8 - length
    entries, spans = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise corrupt(path, "__metadata__ must map names to strings")
            continue
        where = f"tensor {short(name)}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise corrupt(path, f"{where} must have exactly dtype, shape and data_offsets")
        dtype = FLOAT_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise corrupt(path, f"{where} has dtype {short(entry['dtype'])}; only F32 and F64 are accepted")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise corrupt(path, f"{where} has shape {short(shape)}, not a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int and 0 <= o <= data_size for o in offsets)):
            raise corrupt(path, f"{where} has data_offsets {short(offsets)} outside the file's data")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * dtype.itemsize:
            raise corrupt(path, f"{where} declares shape {tuple(shape)} but {offsets[1] - offsets[0]} bytes")
        entries[name] = (dtype, tuple(shape))
        spans.append(tuple(offsets))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise corrupt(path, "tensor data overlap or leave gaps")
        position = end
    if position != data_size:
        raise corrupt(path, f"holds {data_size - position} bytes no tensor declares")
    return entries


def safetensors_arrays(data: bytes, path) -> dict[str, np.ndarray]:
    """Decode a file whose header ``safetensors_header`` accepted, with the safetensors library."""
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as err:   # the library's own SafetensorError has no stable import path
        raise corrupt(path, f"safetensors cannot read it ({short(str(err), 80)})") from None


# -- version 1: .npz ---------------------------------------------------------------------------------
def _npy_header(member, path, name) -> tuple[np.dtype, tuple[int, ...], bool]:
    """Parse a .npy header from a member's first bytes, with our own caps, before any data."""
    magic = member.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise corrupt(path, f"member {short(name)} is not .npy data")
    size_bytes = 2 if magic[6] == 1 else 4
    raw = member.read(size_bytes)
    if len(raw) != size_bytes:
        raise corrupt(path, f"member {short(name)} has a truncated .npy header")
    length = int.from_bytes(raw, "little")
    if length > MAX_NPY_HEADER:
        raise corrupt(path, f"member {short(name)} declares a .npy header of {length} bytes")
    text = member.read(length)
    try:
        header = ast.literal_eval(text.decode("latin1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError, UnicodeDecodeError):
        raise corrupt(path, f"member {short(name)} has an unreadable .npy header") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise corrupt(path, f"member {short(name)} has a malformed .npy header")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if descr not in ("<f4", "<f8", "|f4", "|f8") or not isinstance(fortran, bool):
        raise corrupt(path, f"member {short(name)} has dtype {short(descr)}; only float32 and float64 "
                            "are accepted")
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise corrupt(path, f"member {short(name)} has shape {short(shape)}")
    return np.dtype(descr.replace("|", "<")), shape, fortran


def npz_arrays(data: bytes, path, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The arrays of a version-1 ``weights.npz``, each checked before its data is inflated.

    Members must be exactly ``<name>.npy`` for the expected names; a member's declared compressed
    and uncompressed sizes must fit what its shape needs (a zip bomb is refused from its directory),
    its header must declare float32/float64 and the expected shape, and the zip CRC is checked.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise corrupt(path, f"is not a zip archive ({short(str(err), 80)})") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(infos) > 2 * len(shapes) or len(set(names)) != len(names):
            raise corrupt(path, "has unexpected or duplicate members")
        expected = {f"{name}.npy" for name in shapes}
        if set(names) != expected:
            extra = sorted(set(names) - expected) or sorted(expected - set(names))
            raise corrupt(path, f"members are {short(sorted(names), 120)}, expected {short(sorted(expected), 120)} "
                                f"(first difference {short(extra[0])})")
        arrays = {}
        for info in infos:
            name = info.filename[:-4]
            shape = shapes[name]
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            limit = 8 + 4 + MAX_NPY_HEADER + count * 8
            if info.file_size > limit or info.compress_size > len(data):
                raise corrupt(path, f"member {short(info.filename)} declares {info.file_size} bytes, more than "
                                    f"parameter {name} can need")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
                raise corrupt(path, f"member {short(info.filename)} uses an unsupported compression")
            try:
                with archive.open(info) as member:
                    dtype, found, fortran = _npy_header(member, path, info.filename)
                    if found != shape:
                        raise corrupt(path, f"parameter {name} should have shape {shape}, found {found}")
                    nbytes = count * dtype.itemsize
                    raw = member.read(nbytes)
                    if len(raw) != nbytes or member.read(1):   # reading to the end checks the CRC
                        raise corrupt(path, f"member {short(info.filename)} does not hold {nbytes} bytes of data")
            # RuntimeError: what zipfile raises for a compression method it lacks (a crafted member)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as err:
                raise corrupt(path, f"member {short(info.filename)} is damaged ({short(str(err), 80)})") from None
            array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
            arrays[name] = array.copy()
    return arrays
