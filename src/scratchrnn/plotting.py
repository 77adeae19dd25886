"""Perplexity-vs-epoch plots, as the chapter's animator draws them, saved as PNG and SVG."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def pyplot():
    """matplotlib's pyplot, drawing into files only (never needs a display); imported when first plotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_perplexity(history: Sequence[float], path_stem: str | Path, title: str = "",
                    validation: Sequence[tuple[int, float]] = (),
                    extra_curves: dict[str, Sequence[float]] | None = None,
                    label: str = "train") -> list[Path]:
    """Save ``<path_stem>.png`` and ``<path_stem>.svg``; returns both paths."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if len(extra_curves or {}) >= 10:
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # the default cycle repeats after ten colours
    epochs = range(1, len(history) + 1)
    ax.plot(epochs, history, label=label)
    for label, curve in (extra_curves or {}).items():
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    if validation:
        ax.plot([e for e, _ in validation], [p for _, p in validation], "o-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="x-small" if len(extra_curves or {}) > 3 else None)  # many curves: keep them visible
    fig.tight_layout()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
