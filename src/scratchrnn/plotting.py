"""Perplexity-vs-epoch plots, as the chapter's animator draws them, saved as PNG and SVG.

Perplexity is drawn on a log axis (it falls from the vocabulary's size towards 1), labelled with plain
numbers (``2``, ``5``, ``10``) rather than matplotlib's default ``2x10^0``; epochs are whole numbers.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

# Multiples of a power of ten offered as ticks on a log axis, from dense to sparse: the densest set
# that puts at most _MAX_TICKS ticks inside the data's range is used, so a short range still gets a
# few labels and a long one does not crowd them.
_LOG_TICK_MULTIPLES = ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9), (1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1, 3),
                       (1,))
_MAX_TICKS = 8
# Up to this many epochs each one is marked on the curve, so a run of a few epochs shows its points.
_MARKED_EPOCHS = 30


def plain_number(value: float, _position=None) -> str:
    """A tick label without exponents: ``1``, ``1.5``, ``25``, ``1,000``, ``0.001``."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1e-4:
        # three significant digits: %g writes exponents only from 1000 up or below 1e-4
        return f"{value:.3g}"
    return f"{value:.1e}"   # a learning rate this small reads better as 1.0e-05 than as 0.00001


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis showing [lo, hi] (both > 0)."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for multiples in _LOG_TICK_MULTIPLES:
        candidates = (m * 10.0 ** d for d in range(first, last + 1) for m in multiples)
        inside = [t for t in candidates if lo <= t <= hi]
        if len(inside) <= _MAX_TICKS:
            break
    else:                               # many decades: every n-th power of ten
        return inside[::math.ceil(len(inside) / _MAX_TICKS)]
    if len(inside) >= 2:
        return inside
    # a range narrower than the densest set's spacing (say 1.02 to 1.17): evenly spaced plain ticks
    from matplotlib.ticker import MaxNLocator
    return [t for t in MaxNLocator(nbins=5).tick_values(lo, hi) if lo <= t <= hi]


def _plain_log_axis(axis) -> None:
    """Put the y axis of ``axis`` on a log scale with plain-number ticks chosen for its current range."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    axis.set_yscale("log")
    lo, hi = axis.get_ylim()
    axis.yaxis.set_major_locator(FixedLocator(_log_ticks(lo, hi)))
    axis.yaxis.set_major_formatter(FuncFormatter(plain_number))
    # unlabelled minor ticks keep the log scale's rhythm visible between the labelled ones
    axis.yaxis.set_minor_locator(LogLocator(subs=tuple(range(2, 10))))
    axis.yaxis.set_minor_formatter(NullFormatter())
    axis.set_ylim(lo, hi)


def _integer_epochs(axis) -> None:
    from matplotlib.ticker import MaxNLocator
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, steps=(1, 2, 2.5, 5, 10), min_n_ticks=1))


def _save(fig, path_stem: str | Path) -> list[Path]:
    import matplotlib.pyplot as plt

    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    for path in paths:
        # no creation date in the SVG: the same run gives the same file
        fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    return paths


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def plot_training(records: Sequence[dict], path_stem: str | Path, title: str = "") -> list[Path]:
    """Save ``<path_stem>.png`` and ``<path_stem>.svg`` of a run's metrics records; returns both paths.

    ``records`` are the lines of ``metrics.jsonl``: dicts with ``epoch``, ``train_perplexity``,
    ``val_perplexity`` (None where not measured) and ``lr``. Training and validation perplexity share
    one log-scaled panel; when ``lr`` is not the same in every record, a second panel below shows it.
    Records may come in any order; where an epoch appears twice (a run resumed after it was recorded)
    the later record wins. An evaluation inside an epoch (``progress.StepResult``) is a point at its
    fractional epoch. Values that are missing, infinite, NaN or not positive (a diverged epoch)
    are left out of the curves.
    """
    return _save(_training_figure(records, title), path_stem)


def training_figure(records: Sequence[dict], title: str = ""):
    """The figure ``plot_training`` saves, for a caller that shows it elsewhere (a notebook's live plot);
    close it with ``pyplot().close(figure)``."""
    return _training_figure(records, title)


def pyplot():
    """matplotlib's pyplot, drawing into files only (never needs a display); imported when first plotted."""
    import matplotlib
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt
    return plt


def _training_figure(records: Sequence[dict], title: str = ""):
    import matplotlib.ticker

    plt = pyplot()
    # an evaluation inside an epoch is recorded at its share of the epoch (2.5: half-way through the third)
    by_epoch: dict[float, dict] = {}
    for record in records:
        by_epoch[float(record["epoch"])] = record
    if not by_epoch:
        raise ValueError("records is empty: there is no epoch to plot")
    epochs = sorted(by_epoch)
    rows = [by_epoch[e] for e in epochs]
    lrs = [r.get("lr") if isinstance(r.get("lr"), (int, float)) and math.isfinite(r["lr"]) else None
           for r in rows]
    show_lr = len({lr for lr in lrs if lr is not None}) > 1

    if show_lr:
        fig, (ax, lr_ax) = plt.subplots(2, 1, sharex=True, figsize=(6, 5), dpi=120,
                                        gridspec_kw={"height_ratios": (3, 1)})
    else:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    marker = "o" if len(epochs) <= _MARKED_EPOCHS else None
    train = [(e, r["train_perplexity"]) for e, r in zip(epochs, rows) if _finite(r.get("train_perplexity"))]
    val = [(e, r["val_perplexity"]) for e, r in zip(epochs, rows) if _finite(r.get("val_perplexity"))]
    if train:
        ax.plot(*zip(*train), marker=marker, markersize=4, label="training")
    if val:
        # validation is often measured every few epochs only: mark each measurement
        ax.plot(*zip(*val), marker="o" if len(val) <= _MARKED_EPOCHS else None, markersize=4,
                label="validation")
    if train or val:
        _plain_log_axis(ax)
        ax.legend()
    ax.set_ylabel("perplexity")
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    if title:
        ax.set_title(title)
    bottom = ax
    if show_lr:
        points = [(e, lr) for e, lr in zip(epochs, lrs) if lr is not None]
        lr_ax.plot(*zip(*points), color="tab:green", drawstyle="steps-mid")
        lr_ax.set_ylabel("learning rate")
        lr_ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(plain_number))
        lr_ax.grid(True, alpha=0.4)
        bottom = lr_ax
    bottom.set_xlabel("epoch")
    _integer_epochs(bottom)
    fig.tight_layout()
    return fig


def plot_perplexity(history: Sequence[float], path_stem: str | Path, title: str = "",
                    validation: Sequence[tuple[int, float]] = (),
                    extra_curves: dict[str, Sequence[float]] | None = None,
                    label: str = "train") -> list[Path]:
    """Save ``<path_stem>.png`` and ``<path_stem>.svg`` of perplexity curves; returns both paths.

    ``history`` is one perplexity per epoch, ``validation`` (epoch, perplexity) pairs and
    ``extra_curves`` further labelled per-epoch curves (several runs compared in one figure).
    ``plot_training`` draws a run's ``metrics.jsonl`` records instead.
    """
    return _save(_perplexity_figure(history, title, validation, extra_curves, label), path_stem)


def _perplexity_figure(history, title, validation, extra_curves, label):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if len(extra_curves or {}) >= 10:
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # the default cycle repeats after ten colours
    curves = {label: list(history), **{k: list(v) for k, v in (extra_curves or {}).items()}}
    longest = max((len(c) for c in curves.values()), default=0)
    marker = "o" if longest <= _MARKED_EPOCHS else None
    plotted = False
    for name, curve in curves.items():
        points = [(e, p) for e, p in enumerate(curve, start=1) if _finite(p)]
        if points:
            ax.plot(*zip(*points), marker=marker, markersize=3, label=name)
            plotted = True
    points = [(e, p) for e, p in validation if _finite(p)]
    if points:
        ax.plot(*zip(*points), "o-", markersize=4, label="validation")
        plotted = True
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    if plotted:
        _plain_log_axis(ax)
        ax.legend(fontsize="x-small" if len(extra_curves or {}) > 3 else None)  # many curves: keep them visible
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    _integer_epochs(ax)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
