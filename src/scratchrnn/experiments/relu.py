"""Exercise 6: ReLU instead of tanh; is gradient clipping still needed?"""
from __future__ import annotations

from .harness import Context
from .report import Report
from .stability import clip_label, stability_experiment


def run(ctx: Context) -> tuple[Report, dict]:
    """tanh with clipping against ReLU at two learning rates, with and without clipping."""
    corpus, vocab = ctx.corpus()
    lrs = (1.0, 100.0) if ctx.quick else (1.0, 3.0)
    # as long as the no-clip experiment: instabilities there came late in training
    specs = [ctx.base_spec("tanh, clip 1", 300, activation="tanh", clip=1.0)]
    specs += [ctx.base_spec(f"relu, lr {lr:g}, {clip_label(clip)}", 300, activation="relu", lr=lr,
                            clip=clip) for lr in lrs for clip in (1.0, None)]
    return stability_experiment(
        ctx, specs, corpus, vocab, "ReLU instead of tanh",
        "Exercise 6: replace the activation function used in this section with ReLU and repeat the "
        "experiments. Do we still need gradient clipping? Why?",
        f" {ctx.hidden} hidden units. The gradient norm is measured on one fixed batch, before any clipping.",
        "relu.png", "tanh vs ReLU, with and without clipping")
