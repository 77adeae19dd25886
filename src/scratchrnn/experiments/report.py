"""How an experiment shows what it measured: a Markdown report, its tables, and PNG plot panels.

Nothing here trains; the panels read the outcomes ``harness.train_run`` returns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..plotting import pyplot
from .formatting import fmt

if TYPE_CHECKING:
    from ..data import Vocab
    from .harness import Context, RunOutcome


class Report:
    """A Markdown report assembled piece by piece, written next to its plots."""

    def __init__(self, title: str, exercise: str):
        self.parts = [f"# {title}", "", f"> {exercise}", ""]

    def text(self, paragraph: str) -> None:
        self.parts += [paragraph, ""]

    def table(self, headers: Sequence[str], rows: Sequence[Sequence]) -> None:
        def cell(value) -> str:
            text = fmt(value) if isinstance(value, float) else str(value)
            return text.replace("|", "\\|").replace("\n", " ")
        self.parts.append("| " + " | ".join(headers) + " |")
        self.parts.append("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            self.parts.append("| " + " | ".join(cell(v) for v in row) + " |")
        self.parts.append("")

    def figure(self, path: Path, caption: str) -> None:
        self.parts += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]

    def render(self) -> str:
        return "\n".join(self.parts).rstrip() + "\n"


def setup_line(ctx: Context, tokens: int, vocab: Vocab) -> str:
    """The sentence every report opens with: what was trained on, and how."""
    data = ctx.data or "the bundled Time Machine"
    mode = "quick" if ctx.quick else "full"
    return (f"Setup ({mode} run, backend `{ctx.backend}`, seed {ctx.seed}): {tokens} character tokens "
            f"of {data}, vocabulary {len(vocab)}, sequential minibatches of {ctx.scale.batch_size} x "
            f"{ctx.scale.num_steps}, SGD.")


def best_val_cell(outcome: RunOutcome) -> str:
    best = outcome.best_validation
    return f"{fmt(best[1])} (epoch {best[0]})" if best else "-"


def finite(value):
    """``value`` made strict JSON: NumPy scalars as Python numbers, NaN and infinities as strings."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


# -- plots ---------------------------------------------------------------------------------------------
@dataclass
class Panel:
    """One subplot: named curves of (x values, y values)."""

    title: str
    ylabel: str
    curves: dict[str, tuple[Sequence[float], Sequence[float]]]
    xlabel: str = "epoch"
    logy: bool = True
    diverged: dict[str, bool] = field(default_factory=dict)
    ymax: float | None = None   # values above are cut off, so a blow-up does not flatten the rest
    references: tuple[str, ...] = ()  # curves drawn dashed: levels to compare with, not measurements


def plot_panels(path: Path, panels: Sequence[Panel]) -> Path:
    """Save the panels in a grid as one PNG; a diverged curve ends in an ``x``."""
    plt = pyplot()
    columns = 2 if len(panels) == 4 else min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.8 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        for label, (xs, ys) in panel.curves.items():
            if not len(xs):
                continue
            style = {"linestyle": "--"} if label in panel.references else {}
            if len(xs) <= 12 and label not in panel.references:
                style["marker"] = "o"  # few points: show where the measurements are
            (line,) = ax.plot(xs, ys, label=label, **style)
            if panel.diverged.get(label):
                top = ys[-1] if panel.ymax is None else min(ys[-1], panel.ymax)
                ax.plot([xs[-1]], [top], "x", color=line.get_color(), markersize=10, mew=2, clip_on=False)
        if panel.logy:
            ax.set_yscale("log")
        if panel.ymax is not None and ax.get_ylim()[1] > panel.ymax:
            lowest = min(min(ys) for xs, ys in panel.curves.values() if len(ys))
            ax.set_ylim(lowest / 1.5, panel.ymax)
        ax.set_title(panel.title)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    """Training perplexity per epoch."""
    return list(range(1, len(outcome.history) + 1)), outcome.history


def val_curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    """Held-out perplexity at the epochs where it was measured."""
    return [e for e, _ in outcome.validation], [p for _, p in outcome.validation]


def _norm_curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    finite_norms = [(e, n) for e, n in outcome.grad_norms if math.isfinite(n)]
    return [e for e, _ in finite_norms], [n for _, n in finite_norms]


def _label(outcome: RunOutcome) -> str:
    return outcome.spec.label + (f" (diverged, epoch {outcome.diverged_epoch})" if outcome.diverged else "")


def perplexity_panels(outcomes: Sequence[RunOutcome], norms: bool = False,
                      validation: bool = False) -> list[Panel]:
    """Training perplexity of each run; held-out perplexity and probe gradient norms when asked."""
    flags = {_label(o): o.diverged for o in outcomes}
    # show up to a little past the divergence threshold: the point is where a run left, not how far
    ymax = 3 * max(o.runaway_perplexity for o in outcomes)
    panels = [Panel("training perplexity", "perplexity", {_label(o): curve(o) for o in outcomes},
                    diverged=flags, ymax=ymax)]
    if validation:
        panels.append(Panel("held-out perplexity", "perplexity",
                            {_label(o): val_curve(o) for o in outcomes}, diverged=flags, ymax=ymax))
    if norms:
        panels.append(Panel("gradient norm (probe batch, before clipping)", "global L2 norm",
                            {_label(o): _norm_curve(o) for o in outcomes}, diverged=flags))
    return panels
