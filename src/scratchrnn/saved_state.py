"""What a run keeps on disk besides its weights, checked as strictly as a checkpoint's weights are.

A resumed run reads its progress (``progress.TrainState``: epochs and steps done, where an interrupted epoch
stopped, its partial sums, the best score, the batch order's generator) from ``last/config.json`` and
its history from ``metrics.jsonl``. Both are JSON a person (or a broken disk) may have changed, so
every field is checked here before anything uses it -- its type, its range, and that it is there --
and what is wrong raises ValueError naming the field: a string where an epoch should be, a missing
key or a batch position of 10**18 is one line, never a traceback, a hang or the OOM killer. The
writer keeps to the same bounds (``check_count`` is what ``TrainConfig`` and ``RunConfig`` validate
their counts with), so a run never writes what it cannot read back.
"""
from __future__ import annotations

import math

import numpy as np

from .model import MAX_COUNT

BEST_BY = ("train", "val")
STEP_RECORD = "step"              # the "kind" of a metrics.jsonl line written inside an epoch (progress)
PROGRESS_KEYS = ("epoch", "step", "batch", "partial", "loader_rng", "best")
PARTIAL_KEYS = ("loss_sum", "tokens", "seconds")
_STATE_BITS = 128                 # PCG64's state and increment


def _shown(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_count(value, name: str, least: int = 0) -> None:
    """Refuse (ValueError, naming ``name``) what is not an integer from ``least`` to ``MAX_COUNT``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        kind = "a positive integer" if least == 1 else f"an integer >= {least}"
        raise ValueError(f"{name} must be {kind}, not {_shown(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be at most {MAX_COUNT}, not {value}")


def is_number(value) -> bool:
    """An int or float (NumPy's too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_number(value, name: str, *, least: float | None = None, positive: bool = False,
                  finite: bool = True) -> None:
    ok = is_number(value) and not (finite and not math.isfinite(value)) and not math.isnan(value)
    ok = ok and (least is None or value >= least) and (not positive or value > 0)
    if not ok:
        kind = "a positive number" if positive else "a number >= 0" if least == 0 else "a number"
        raise ValueError(f"{name} must be {kind}{'' if finite else ' (or infinity)'}, not {_shown(value)}")


def check_generator_state(value, name: str) -> None:
    """Refuse what is not the state of NumPy's PCG64 generator, as ``bit_generator.state`` gives it
    (its 128-bit numbers as integers): NumPy itself takes a float there, and truncates it."""
    if not isinstance(value, dict) or set(value) != {"bit_generator", "state", "has_uint32", "uinteger"} \
            or value["bit_generator"] != "PCG64":
        raise ValueError(f"{name} must be a PCG64 generator's state, not {_shown(value)}")
    inner = value["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"} or not all(
            type(part) is int and 0 <= part < 1 << _STATE_BITS for part in inner.values()):
        raise ValueError(f"{name}.state must hold the integers state and inc, not {_shown(inner)}")
    if type(value["has_uint32"]) is not int or value["has_uint32"] not in (0, 1):
        raise ValueError(f"{name}.has_uint32 must be 0 or 1, not {_shown(value['has_uint32'])}")
    if type(value["uinteger"]) is not int or not 0 <= value["uinteger"] < 1 << 32:
        raise ValueError(f"{name}.uinteger must be a 32-bit unsigned integer, not {_shown(value['uinteger'])}")


def check_best(best, name: str = "best") -> None:
    """None, or where the best score was: {"epoch", "score", "by"}, and "step" where it was found by
    an evaluation inside an epoch."""
    if best is None:
        return
    if not isinstance(best, dict) or not {"epoch", "score", "by"} <= set(best) <= {"epoch", "score", "by", "step"}:
        raise ValueError(f"{name} must be null or hold epoch, score, by (and step), not {_shown(best)}")
    check_count(best["epoch"], f"{name}.epoch", least=1)
    if "step" in best:
        check_count(best["step"], f"{name}.step", least=1)
    _check_number(best["score"], f"{name}.score", positive=True)
    if best["by"] not in BEST_BY:
        raise ValueError(f"{name}.by must be one of {', '.join(BEST_BY)}, not {_shown(best['by'])}")


def check_progress(data, name: str = "progress") -> None:
    """Refuse a ``TrainState.to_dict()`` that training could not have written (``loader_rng`` with
    its integers already back from text, ``training.json_safe_ints``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{name} must be an object, not {_shown(data)}")
    for key in PROGRESS_KEYS:
        if key not in data:
            raise ValueError(f"{name}.{key} is missing")
    for key in ("epoch", "step", "batch"):
        check_count(data[key], f"{name}.{key}")
    # "evaluated" (the sums as of the epoch's latest evaluation) is missing from older checkpoints
    for key in ("partial", "evaluated") if "evaluated" in data else ("partial",):
        sums = data[key]
        if not isinstance(sums, dict) or set(sums) != set(PARTIAL_KEYS):
            raise ValueError(f"{name}.{key} must hold exactly {', '.join(PARTIAL_KEYS)}, not {_shown(sums)}")
        # an epoch that was diverging when it was stopped sums to infinity: it diverges again on resuming
        _check_number(sums["loss_sum"], f"{name}.{key}.loss_sum", least=0, finite=False)
        check_count(sums["tokens"], f"{name}.{key}.tokens")
        _check_number(sums["seconds"], f"{name}.{key}.seconds", least=0)
    if data["loader_rng"] is not None:
        check_generator_state(data["loader_rng"], f"{name}.loader_rng")
    check_best(data["best"], f"{name}.best")
    history = data.get("history", [])
    if not isinstance(history, list):
        raise ValueError(f"{name}.history must be a list, not {_shown(history)}")
    for at, record in enumerate(history):
        check_metrics_record(record, f"{name}.history[{at}]")


def check_metrics_record(record, name: str) -> None:
    """Refuse a line of metrics.jsonl that neither an epoch (``EpochResult.record``) nor an evaluation
    inside one (``StepResult.record``, ``kind`` "step", its epoch a fraction) wrote; lines written by
    older versions lack ``lr``, ``world_size`` and ``step``, and other keys are left alone."""
    if not isinstance(record, dict):
        raise ValueError(f"{name} must be an object, not {_shown(record)}")
    for key in ("epoch", "train_perplexity"):
        if key not in record:
            raise ValueError(f"{name}.{key} is missing")
    kind = record.get("kind")
    if kind == STEP_RECORD:
        check_count(record.get("step"), f"{name}.step", least=1)
        _check_number(record["epoch"], f"{name}.epoch", least=0)
    elif kind is None:
        check_count(record["epoch"], f"{name}.epoch", least=1)
        if "step" in record:
            check_count(record["step"], f"{name}.step")
    else:
        raise ValueError(f"{name}.kind must be {STEP_RECORD!r} or absent, not {_shown(kind)}")
    _check_number(record["train_perplexity"], f"{name}.train_perplexity", positive=True)
    if record.get("val_perplexity") is not None:
        # held-out perplexity past float64's range is infinity: a result, recorded
        _check_number(record["val_perplexity"], f"{name}.val_perplexity", positive=True, finite=False)
    if "lr" in record:
        _check_number(record["lr"], f"{name}.lr", least=0)
    for key in ("tokens_per_sec", "seconds"):
        if key in record:
            # an epoch faster than the clock's resolution: infinitely many tokens a second
            _check_number(record[key], f"{name}.{key}", least=0, finite=key == "seconds")
    if "world_size" in record:
        check_count(record["world_size"], f"{name}.world_size", least=1)
