"""How the experiments write a number in their logs, reasons and reports.

A module of its own because both sides use it: ``harness`` (what a run logs and why it diverged)
and ``report`` (which reads the outcomes ``harness`` returns).
"""
from __future__ import annotations

import math


def fmt(value: float | None, digits: int = 2) -> str:
    """A number as the reports write it: ``-`` for none, scientific notation when large."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e4:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"
