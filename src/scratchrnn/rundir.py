"""A run directory: where one training run keeps its checkpoints, metrics and plots.

```
DIR/run.lock          locked (filelock: flock on Unix, LockFileEx on Windows) while a run uses DIR: pid, host, start time
DIR/last -> ckpt-e12-s4800   the newest checkpoint (a relative symlink to a complete version)
DIR/best -> ckpt-e9-s3600    the best one so far
DIR/ckpt-eE-sS/       complete checkpoints (version 2) after E epochs and S optimizer steps (ckpt-N: saved
                      without a label, by older runs and save() callers that give none); those a pointer
                      names are kept, and the newest ``keep`` others
DIR/metrics.jsonl     one JSON object per line, one line per epoch
DIR/perplexity.png/.svg   the plot (``plot_stem`` is its path without the suffix)
```

Why versions and pointers: a directory cannot be replaced by a rename, but a symlink can, so a save
writes a complete ``ckpt-N`` first and then swaps the pointer with one ``os.replace``. At every
moment ``last`` and ``best`` name a complete checkpoint (the old one or the new one), whatever kill
or Ctrl-C arrives. What an interrupted save leaves (``.saving-*``, a version no pointer names) is
removed when the directory is next opened.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

from filelock import lock_descriptor

from . import faults
from .checkpoint import (CHECKPOINT_SUBDIR, CONFIG_FILE, RUN_POINTERS, Checkpoint, fsync_dir, remove_path,
                         load_checkpoint, write_checkpoint_files)
from .errors import UserError

LOCK_FILE = "run.lock"
METRICS_FILE = "metrics.jsonl"
PLOT_STEM = "perplexity"
V1_METRICS_FILE = "metrics.json"
MODES = ("new", "overwrite", "resume")
_VERSION_PREFIX = "ckpt-"
# ckpt-e<epochs>-s<steps>, and -<n> after it for a second save of the same step (a resumed run redoing
# steps a kept checkpoint already holds); ckpt-<n> for saves without a label
_LABELLED = re.compile(r"ckpt-e(\d+)-s(\d+)(?:-(\d+))?")
_NUMBERED = re.compile(r"ckpt-(\d+)")


def _version_order(name: str) -> tuple | None:
    """Where a version's name sorts among the others (oldest first), or None for a name that is not one."""
    labelled = _LABELLED.fullmatch(name)
    if labelled:
        return (1, int(labelled.group(2)), int(labelled.group(3) or 1))
    numbered = _NUMBERED.fullmatch(name)
    return (0, int(numbered.group(1)), 0) if numbered else None


class SaveFailed(UserError):
    """A checkpoint could not be written (a full disk, a lost permission); the previous one is kept."""


class RunExists(UserError):
    """``open("new")`` found a run in the directory; ``found`` names what (the CLI names its flags)."""

    def __init__(self, path: Path, found: list[str]):
        super().__init__(f"{path} already holds a run ({', '.join(found)}); overwrite it, resume it, "
                         "or use another directory")
        self.path, self.found = path, found


class NothingToResume(UserError):
    """``open("resume")`` found no ``last`` checkpoint to continue from."""

    def __init__(self, path: Path):
        super().__init__(f"cannot resume: {path} has no last/ checkpoint")
        self.path = path


class RunDirectory:
    """One training run's directory. Use: ``open(mode)``, ``save``/``append_metrics`` while training,
    ``close()`` at the end (or ``with RunDirectory(path) as run:`` after ``open``)."""

    def __init__(self, path: str | Path, keep: int = 0):
        """``keep``: checkpoint versions kept besides those ``best`` and ``last`` name, the newest."""
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep must be an integer >= 0, not {keep!r}")
        self.path = Path(path)
        self.keep = keep
        self.notes: list[str] = []
        self._lock_fd: int | None = None

    @property
    def plot_stem(self) -> Path:
        return self.path / PLOT_STEM

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    # -- opening -------------------------------------------------------------------------------------
    def open(self, mode: str, need_bytes: int = 0) -> list[str]:
        """Lock the directory and make it ready for ``mode``; return notes the caller may print.

        ``new`` refuses a directory that already holds a run; ``overwrite`` removes the previous
        run's checkpoints, metrics and plots first (so that, killed early, this run never shows
        them as its own); ``resume`` needs ``last``. ``need_bytes``: the size of one checkpoint;
        room for two (old and new, during a save) is required. Every problem is a UserError.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if self._lock_fd is not None:
            raise RuntimeError(f"{self.path} is already open")
        self._make_directory()
        self._lock()
        try:
            self._clean_leftovers()
            self._prepare(mode)
            self._probe_writable()
            self._check_space(need_bytes)
        except BaseException:
            self.close()
            raise
        return list(self.notes)

    def _make_directory(self) -> None:
        path = self.path
        if path.is_symlink() and not path.exists():
            raise UserError(f"run directory {path} is a dangling symlink (to {os.readlink(path)})")
        if path.exists() and not path.is_dir():
            raise UserError(f"run directory {path} exists and is not a directory")
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise UserError(f"run directory {path} is under {parent}, which is a file, not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create run directory {path}: {err.strerror}") from None

    def _lock(self) -> None:
        lock_path = self.path / LOCK_FILE
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise UserError(f"cannot write in run directory {self.path}: {err.strerror}") from None
            try:
                locked = lock_descriptor(fd, blocking=False)
            except OSError as err:
                os.close(fd)
                raise UserError(f"cannot lock run directory {self.path}: {err.strerror or err}") from None
            if not locked:
                holder = self._read_holder(fd)
                os.close(fd)
                who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                       if holder else "a process that has not written its pid yet")
                raise UserError(f"run directory {self.path} is in use by another run ({who}); "
                                "wait for it to finish or use another directory")
            # The holder before us may have removed the file after we opened it: lock the file
            # that is at the path now, or try again.
            try:
                same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self._read_holder(fd)
        if previous:
            # The lock was free, so its holder ended without releasing it (killed, or a crash).
            self.notes.append(f"took over the stale lock of {self.path}: the run that held it (pid "
                              f"{previous.get('pid')} on {previous.get('host')}, since "
                              f"{previous.get('started')}) is no longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        _write_at(fd, 0, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self._lock_fd = fd

    @staticmethod
    def _read_holder(fd: int) -> dict | None:
        try:
            raw = _read_at(fd, 0, 4096)
            holder = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _versions(self) -> list[Path]:
        found = [entry for entry in self.path.iterdir()
                 if _version_order(entry.name) is not None and not entry.is_symlink()]
        return sorted(found, key=lambda p: _version_order(p.name))

    def _pointed(self) -> set[str]:
        names = set()
        for pointer in RUN_POINTERS:
            link = self.path / pointer
            if link.is_symlink():
                names.add(os.readlink(link))
        return names

    def _clean_leftovers(self) -> None:
        """Remove what interrupted saves left; put back a copy caught between two renames."""
        removed = []
        for entry in list(self.path.iterdir()):
            name = entry.name
            if name.startswith(".saving-") or name.startswith(".pointer-") or name.startswith(".probe-"):
                remove_path(entry)
                removed.append(name)
            elif name.startswith(".") and (".old-" in name or ".saving-" in name):
                base = self.path / name[1:].split(".old-")[0].split(".saving-")[0]
                if ".old-" in name and not os.path.lexists(base) and (entry / CONFIG_FILE).is_file():
                    os.rename(entry, base)
                    self.notes.append(f"restored {base.name}/ from a save interrupted mid-swap")
                else:
                    remove_path(entry)
                    removed.append(name)
        removed += self._remove_unreferenced()
        if removed:
            self.notes.append(f"removed leftovers of an interrupted save in {self.path}: "
                              f"{', '.join(sorted(removed))}")
        fsync_dir(self.path)

    def holds_run(self) -> list[str]:
        """The names in the directory that belong to a run (checkpoints, metrics)."""
        names = [*RUN_POINTERS, CHECKPOINT_SUBDIR, METRICS_FILE, V1_METRICS_FILE]
        return [name for name in names if os.path.lexists(self.path / name)]

    def _prepare(self, mode: str) -> None:
        for name in (*RUN_POINTERS, CHECKPOINT_SUBDIR):
            link = self.path / name
            if link.is_symlink() and not link.exists() and mode != "overwrite":
                raise UserError(f"{link} is a dangling symlink (to {os.readlink(link)}); remove it or "
                                "overwrite the run")
        if mode == "new" and self.holds_run():
            raise RunExists(self.path, self.holds_run())
        if mode == "overwrite":
            self._clear()
        if mode == "resume" and not os.path.lexists(self.path / "last"):
            raise NothingToResume(self.path)

    def _clear(self) -> None:
        # Pointers and metrics first: killed half-way, nothing left looks like a finished run.
        for name in (*RUN_POINTERS, METRICS_FILE, V1_METRICS_FILE):
            remove_path(self.path / name)
        for entry in self.path.iterdir():
            if entry.name.startswith(PLOT_STEM + ".") or entry.name == CHECKPOINT_SUBDIR:
                remove_path(entry)
        for version in self._versions():
            remove_path(version)
        fsync_dir(self.path)

    def _probe_writable(self) -> None:
        probe = self.path / f".probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise UserError(f"cannot write in run directory {self.path}: {err.strerror}") from None
        finally:
            probe.unlink(missing_ok=True)

    def _check_space(self, need_bytes: int) -> None:
        free = shutil.disk_usage(self.path).free
        if need_bytes and free < 2 * need_bytes:
            raise UserError(f"not enough free space in {self.path}: {free} bytes free, two checkpoints "
                            f"of {need_bytes} bytes need {2 * need_bytes}")

    # -- saving --------------------------------------------------------------------------------------
    def save(self, which, ckpt: Checkpoint, label: tuple[int, int] | None = None) -> Path:
        """Save ``ckpt`` as ``which`` ("last", "best", or both as a tuple, written once); ``label``
        (epochs, steps) names the version ``ckpt-eE-sS``, else it is numbered ``ckpt-N``.

        Fault points, in order: ``checkpoint.staging-created``, those of ``write_checkpoint_files``,
        ``checkpoint.version-named``, then per pointer ``checkpoint.pointer-created`` and
        ``checkpoint.pointer-swapped``, then ``checkpoint.dir-synced`` and ``checkpoint.old-removed``.
        A failure to write raises SaveFailed; the previous checkpoint stays where it was.
        """
        names = (which,) if isinstance(which, str) else tuple(which)
        if not names or any(name not in RUN_POINTERS for name in names):
            raise ValueError(f"which must be among {RUN_POINTERS}, not {which!r}")
        if self._lock_fd is None:
            raise RuntimeError("open() the run directory before saving")
        staging = self.path / f".saving-{os.getpid()}"
        version = self.path / self._new_version_name(label)
        swapped = False
        try:
            remove_path(staging)
            staging.mkdir()
            faults.point("checkpoint.staging-created")
            write_checkpoint_files(staging, ckpt)
            os.rename(staging, version)
            faults.point("checkpoint.version-named")
            for name in names:
                self._point(name, version.name)
            swapped = True
            fsync_dir(self.path)
            faults.point("checkpoint.dir-synced")
        except OSError as err:
            self._discard(staging, version, swapped)
            kept = [n for n in names if os.path.lexists(self.path / n)]
            kept_text = (f"the previous {'/'.join(kept)}/ checkpoint is kept" if kept
                         else "no earlier checkpoint exists")
            raise SaveFailed(f"could not save the {'/'.join(names)}/ checkpoint in {self.path} "
                             f"({err.strerror or err}); {kept_text}") from None
        except BaseException:
            self._discard(staging, version, swapped)
            raise
        self._remove_unreferenced()
        faults.point("checkpoint.old-removed")
        return self.path / names[0]

    def _new_version_name(self, label: tuple[int, int] | None) -> str:
        taken = {version.name for version in self._versions()}
        if label is None:
            numbered = [_version_order(name)[1] for name in taken if _NUMBERED.fullmatch(name)]
            return f"{_VERSION_PREFIX}{max(numbered, default=0) + 1}"
        epochs, steps = label
        name, again = f"{_VERSION_PREFIX}e{epochs}-s{steps}", 1
        while (f"{name}-{again}" if again > 1 else name) in taken:
            again += 1
        return f"{name}-{again}" if again > 1 else name

    def _point(self, name: str, target: str) -> None:
        pointer = self.path / name
        temporary = self.path / f".pointer-{name}-{os.getpid()}"
        remove_path(temporary)
        os.symlink(target, temporary)
        faults.point("checkpoint.pointer-created")
        if pointer.is_dir() and not pointer.is_symlink():
            # A real directory here (copied, or written by save_checkpoint): a symlink cannot
            # replace it in one step, so it moves aside first; load_checkpoint finds it there.
            retired = self.path / f".{name}.old-{os.getpid()}"
            os.rename(pointer, retired)
            os.replace(temporary, pointer)
            remove_path(retired)
        else:
            os.replace(temporary, pointer)
        faults.point("checkpoint.pointer-swapped")

    def _discard(self, staging: Path, version: Path, swapped: bool) -> None:
        for name in RUN_POINTERS:
            remove_path(self.path / f".pointer-{name}-{os.getpid()}")
        remove_path(staging)
        if not swapped and version.name not in self._pointed():
            remove_path(version)

    def _remove_unreferenced(self) -> list[str]:
        """Remove the checkpoint versions no pointer names, but the newest ``keep``; return their names."""
        pointed = self._pointed()
        others = [version for version in self._versions() if version.name not in pointed]
        removed = others[:len(others) - self.keep] if self.keep else others
        for version in removed:
            remove_path(version)
        return [version.name for version in removed]

    # -- metrics -------------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        """Append one JSON line to metrics.jsonl and make it durable before returning."""
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            fd = os.open(self.metrics_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and _read_at(fd, size - 1, 1) != b"\n":
                    line = "\n" + line   # a line torn by a kill stays alone and is skipped when read
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise SaveFailed(f"could not append to {self.metrics_path} ({err.strerror or err}); "
                             "the checkpoints are not affected") from None

    def read_metrics(self) -> list[dict]:
        """The records of metrics.jsonl in order; a line torn by a kill (not JSON) is skipped."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def trim_metrics(self, last_epoch: int, last_step: int | None = None) -> None:
        """Keep the records up to ``last_epoch`` and, given ``last_step``, those of steps up to it (on
        resume, what was recorded after the checkpoint is redone)."""
        def kept_record(r: dict) -> bool:
            if last_step is not None and isinstance(r.get("step"), int):
                return r["step"] <= last_step
            return not (isinstance(r.get("epoch"), (int, float)) and r["epoch"] > last_epoch)
        kept = [r for r in self.read_metrics() if kept_record(r)]
        temporary = self.path / f".saving-metrics-{os.getpid()}"
        try:
            with open(temporary, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.metrics_path)
        except OSError as err:
            remove_path(temporary)
            raise SaveFailed(f"could not rewrite {self.metrics_path} ({err.strerror or err}); "
                             "it is left as it was") from None
        fsync_dir(self.path)

    # -- loading and closing -------------------------------------------------------------------------
    def load(self, which: str = "last") -> Checkpoint:
        return load_checkpoint(self.path, which)

    def close(self) -> None:
        """Release the lock (and remove the lock file, so that no stale holder is reported)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            removed = True
        except OSError:
            removed = False         # Windows removes no open file: once it is closed, then
        os.close(fd)
        if not removed:
            try:
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            except OSError:
                pass

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# os.pread and os.pwrite exist on Unix only; the lock file and metrics.jsonl are read and written through
# descriptors of their own, so moving the position first does the same everywhere
def _read_at(fd: int, offset: int, size: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _write_at(fd: int, offset: int, data: bytes) -> None:
    os.lseek(fd, offset, os.SEEK_SET)
    os.write(fd, data)
