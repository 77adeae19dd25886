"""Exercise 1 (and part of 2): one-hot inputs are a lookup table; compare with a learned embedding."""
from __future__ import annotations

import numpy as np

from .. import backends
from ..data import split_heldout
from ..model import ModelConfig, init_params
from .harness import Context, train_run
from .report import Report, best_val_cell, perplexity_panels, plot_panels, setup_line


def run(ctx: Context) -> tuple[Report, dict]:
    """Measure the identity one_hot(x) @ W_xh == W_xh[x], then train one-hot against embeddings."""
    corpus, vocab = ctx.corpus()
    train_tokens, held_out = split_heldout(corpus, ctx.scale.val_fraction)
    V = len(vocab)
    report = Report("One-hot inputs vs. a learned embedding",
                    "Exercise 1: show that one-hot encoding is equivalent to picking a different "
                    "embedding for each object. Exercise 2 (part): replace one-hot encoding with "
                    "learnable embeddings; does this lead to better performance?")

    # The identity, measured: x_onehot @ W_xh picks row x of W_xh ...
    model = ModelConfig(V, ctx.hidden)
    params = init_params(model, ctx.seed, np.float64)
    tokens = np.asarray(corpus[:200])
    gathered_diff = float(np.max(np.abs(np.eye(V)[tokens] @ params["W_xh"] - params["W_xh"][tokens])))
    # ... so a learned-embedding model whose table is the identity and whose W_xh is the one-hot
    # model's W_xh computes exactly the same logits.
    learned = ModelConfig(V, ctx.hidden, embedding="learned", embed_dim=V)
    learned_params = {**params, "W_emb": np.eye(V)}
    X = np.asarray(corpus[:ctx.scale.batch_size * ctx.scale.num_steps]).reshape(
        ctx.scale.batch_size, ctx.scale.num_steps)
    onehot_backend = backends.create(ctx.backend, params, model, dtype="float64")
    learned_backend = backends.create(ctx.backend, learned_params, learned, dtype="float64")
    logits_onehot, _ = onehot_backend.forward(X, onehot_backend.begin_state(X.shape[0]))
    logits_learned, _ = learned_backend.forward(X, learned_backend.begin_state(X.shape[0]))
    logits_diff = float(np.max(np.abs(np.asarray(logits_onehot) - np.asarray(logits_learned))))

    dims = (8, 32) if ctx.quick else (8, 32, 128)
    specs = [ctx.base_spec("one-hot", 120)]
    specs += [ctx.base_spec(f"embedding {d}", 120, embedding="learned", embed_dim=d) for d in dims]
    outcomes = [train_run(ctx, s, train_tokens, vocab, held_out) for s in specs]

    report.text(setup_line(ctx, len(corpus), vocab) + f" The last {ctx.scale.val_fraction:.0%} of the "
                "tokens are held out; every model starts from the same seed.")
    report.text("**The identity.** Multiplying a one-hot row vector by W_xh selects one row of "
                "W_xh, so W_xh *is* an embedding table with one learned vector per character. "
                "Measured on this run's data:")
    report.table(["check", "max abs difference"], [
        [f"one_hot(x) @ W_xh vs W_xh[x] ({len(tokens)} tokens, float64)", f"{gathered_diff:.3g}"],
        [f"logits: one-hot model vs learned model with W_emb = I ({V}x{V}) and the same W_xh",
         f"{logits_diff:.3g}"],
    ])
    rows = []
    for o in outcomes:
        model = o.spec.model
        inputs = V if model.embedding == "onehot" else model.embed_dim
        extra = V * model.embed_dim if model.embedding == "learned" else 0
        rows.append([o.spec.label, inputs, inputs * model.num_hiddens + extra, o.final_perplexity,
                     best_val_cell(o), o.validation[-1][1] if o.validation else "-",
                     f"{o.seconds_per_epoch:.3f}", o.status()])
    report.table(["inputs", "width into W_xh", "input parameters", "final train perplexity",
                  "best held-out perplexity", "final held-out perplexity", "s / epoch", "status"], rows)
    figure = plot_panels(ctx.out / "perplexity.png", perplexity_panels(outcomes, validation=True))
    report.figure(figure, "Training and held-out perplexity per epoch")
    winner = min((o for o in outcomes if o.best_validation), key=lambda o: o.best_validation[1], default=None)
    if winner is not None:
        report.text(f"Lowest held-out perplexity: **{winner.spec.label}**, {best_val_cell(winner)}.")
    results = {"identity_max_abs_diff": gathered_diff, "logits_max_abs_diff": logits_diff,
               "runs": [o.to_dict() for o in outcomes]}
    return report, results
