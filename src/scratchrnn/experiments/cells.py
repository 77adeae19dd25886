"""The book's next chapters (9.1-9.3): RNN, GRU, LSTM and a two-layer LSTM on one text and budget."""
from __future__ import annotations

from ..data import split_heldout
from .harness import Context, train_run
from .report import Panel, Report, best_val_cell, curve, plot_panels, setup_line

# (label, changes to the base run's model): the chapter's RNN, then the gated cells the book builds from scratch next
CELLS = [
    ("rnn", {}),
    ("gru", {"cell": "gru"}),
    ("lstm", {"cell": "lstm"}),
    ("2-layer lstm", {"cell": "lstm", "num_layers": 2}),
]


def run(ctx: Context) -> tuple[Report, dict]:
    """Train each cell with the same data, epochs, learning rate and seed; compare held-out perplexity."""
    corpus, vocab = ctx.corpus()
    train_tokens, held_out = split_heldout(corpus, ctx.scale.val_fraction)
    specs = [ctx.base_spec(label, 100, **changes) for label, changes in CELLS]
    outcomes = [train_run(ctx, spec, train_tokens, vocab, held_out) for spec in specs]
    report = Report("RNN, GRU, LSTM and a deep LSTM",
                    "The book's chapters 9.1-9.3 replace the RNN's single tanh step with gated cells "
                    "(GRU, LSTM) and stack cells into deep RNNs. Same text, epochs, learning rate and "
                    "seed for every model: which fits the training text, which generalises?")
    report.text(setup_line(ctx, len(corpus), vocab) + f" The last {ctx.scale.val_fraction:.0%} of the "
                f"tokens are held out; every model has {ctx.hidden} hidden units per layer.")
    rows = [[o.spec.label, o.spec.describe(), f"{o.tokens_per_sec:,.0f}", o.final_perplexity,
             o.best_perplexity, best_val_cell(o), o.status()] for o in outcomes]
    report.table(["model", "settings", "tokens / s", "final perplexity", "best perplexity",
                  "best held-out (epoch)", "status"], rows)
    panels = [Panel("training perplexity", "perplexity", {o.spec.label: curve(o) for o in outcomes}),
              Panel("held-out perplexity", "perplexity",
                    {o.spec.label: ([e for e, _ in o.validation], [p for _, p in o.validation])
                     for o in outcomes if o.validation})]
    figure = plot_panels(ctx.out / "cells.png", panels)
    report.figure(figure, "Training and held-out perplexity of each model, per epoch")
    return report, {"runs": [o.to_dict() for o in outcomes]}
