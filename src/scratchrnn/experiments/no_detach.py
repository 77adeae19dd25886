"""Exercise 5: sequential partitioning without detaching the state between batches."""
from __future__ import annotations

import numpy as np

from .harness import Context, train_run
from .report import Panel, Report, perplexity_panels, plot_panels, setup_line


def run(ctx: Context) -> tuple[Report, dict]:
    """The chapter's detached state against a state kept in the graph: time per epoch and perplexity."""
    corpus, vocab = ctx.corpus()
    specs = [ctx.base_spec("detached (chapter)", 100),
             ctx.base_spec("not detached", 100, detach=False)]
    outcomes = [train_run(ctx, s, corpus, vocab) for s in specs]
    detached, kept = outcomes
    report = Report("Keeping the graph between sequential batches",
                    "Exercise 5: change sequential partitioning so that it does not separate hidden "
                    "states from the computational graph. Does the running time change? How about "
                    "the perplexity?")
    batches = len(detached.batch_seconds)
    report.text(setup_line(ctx, len(corpus), vocab) + f" {ctx.hidden} hidden units, {batches} batches "
                "per epoch. Without detaching, batch k of an epoch backpropagates through all k-1 "
                "batches before it (with the weights those batches used), so an epoch's backward work "
                "grows with the square of its number of batches, and the graph (memory) grows with the "
                "epoch; the state is still reset at each epoch's start.")
    rows = [[o.spec.label, f"{o.seconds_per_epoch:.3f}", f"{o.tokens_per_sec:,.0f}", o.final_perplexity,
             o.best_perplexity, o.status()] for o in outcomes]
    report.table(["state between batches", "s / epoch", "tokens / s", "final perplexity",
                  "best perplexity", "status"], rows)
    ratio = kept.seconds_per_epoch / detached.seconds_per_epoch
    report.text(f"Not detaching makes an epoch {ratio:.1f}x as long here.")
    time_curves = {o.spec.label: (list(np.cumsum(o.epoch_seconds)), o.history) for o in outcomes}
    batch_curves = {o.spec.label: (list(range(1, len(o.batch_seconds) + 1)),
                                   [1000 * s for s in o.batch_seconds]) for o in outcomes}
    panels = perplexity_panels(outcomes) + [
        Panel("perplexity vs wall-clock time", "perplexity", time_curves, xlabel="seconds"),
        Panel("time of each batch in the last epoch", "ms", batch_curves, xlabel="batch", logy=False)]
    figure = plot_panels(ctx.out / "no_detach.png", panels)
    report.figure(figure, "Perplexity per epoch and per second, and the cost of each batch")
    return report, {"slowdown": ratio, "runs": [o.to_dict() for o in outcomes]}
