"""What the no-clip and relu exercises share: train a few runs, report which of them diverged."""
from __future__ import annotations

from typing import Sequence

from .harness import Context, RunOutcome, train_run
from .report import Report, perplexity_panels, plot_panels, setup_line


def clip_label(clip: float | None) -> str:
    return f"clip {clip:g}" if clip is not None else "no clipping"


def _stability_rows(outcomes: Sequence[RunOutcome]) -> list[list]:
    return [[o.spec.model.activation, f"{o.spec.lr:g}", clip_label(o.spec.clip), o.final_perplexity,
             o.best_perplexity, o.max_grad_norm, o.status()] for o in outcomes]


STABILITY_HEADERS = ["activation", "lr", "clipping", "final perplexity", "best perplexity",
                     "largest probe gradient norm", "status"]


def _stability_summary(outcomes: Sequence[RunOutcome]) -> str:
    diverged = [o for o in outcomes if o.diverged]
    if not diverged:
        return "No run diverged."
    return "Diverged: " + "; ".join(f"{o.spec.label} diverged at epoch {o.diverged_epoch}"
                                    for o in diverged) + "."


def stability_experiment(ctx: Context, specs, corpus, vocab, title: str, question: str, setup: str,
                          figure_name: str, caption: str) -> tuple[Report, dict]:
    """Train ``specs`` and report how each run went (the no-clip and relu exercises)."""
    outcomes = [train_run(ctx, s, corpus, vocab) for s in specs]
    report = Report(title, question)
    report.text(setup_line(ctx, len(corpus), vocab) + setup)
    report.table(STABILITY_HEADERS, _stability_rows(outcomes))
    report.text(_stability_summary(outcomes))
    figure = plot_panels(ctx.out / figure_name, perplexity_panels(outcomes, norms=True))
    report.figure(figure, caption)
    return report, {"runs": [o.to_dict() for o in outcomes]}
