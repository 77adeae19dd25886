"""Exercise 4: train without gradient clipping."""
from __future__ import annotations

from .harness import Context
from .report import Report
from .stability import clip_label, stability_experiment


def run(ctx: Context) -> tuple[Report, dict]:
    """The chapter's lr and a larger one, each with and without clipping."""
    corpus, vocab = ctx.corpus()
    # the chapter's lr, and a larger one at which the updates of an unclipped gradient overshoot
    lrs = (1.0, 100.0) if ctx.quick else (1.0, 3.0)
    specs = [ctx.base_spec(f"lr {lr:g}, {clip_label(clip)}", 300, lr=lr, clip=clip)
             for lr in lrs for clip in (1.0, None)]
    return stability_experiment(
        ctx, specs, corpus, vocab, "Training without gradient clipping",
        "Exercise 4: run the code in this section without clipping the gradient. What happens?",
        f" {ctx.hidden} hidden units, tanh. The gradient norm is measured on one fixed batch, before any "
        "clipping, as training goes on.",
        "no_clip.png", "Perplexity and gradient norm with and without clipping")
