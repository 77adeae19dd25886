"""Exercise 2: how low can the perplexity go? A one-factor-at-a-time sweep, scored on held-out text."""
from __future__ import annotations

import numpy as np

from ..data import load_corpus, split_heldout
from .formatting import fmt
from .harness import Context, RunOutcome, train_run
from .report import Panel, Report, best_val_cell, curve, plot_panels, setup_line, val_curve


def run(ctx: Context) -> tuple[Report, dict]:
    """Exercise 2: a one-factor-at-a-time sweep of hidden size, time steps and learning rate."""
    corpus, vocab = ctx.corpus()
    train_tokens, held_out = split_heldout(corpus, ctx.scale.val_fraction)
    full_epochs = 120
    base = ctx.base_spec("baseline", full_epochs)
    H, S = base.model.num_hiddens, base.num_steps
    # the name a factor goes by in the report -> (the setting it changes, what it is, the values tried)
    factors = {
        "hidden": ("num_hiddens", "hidden units", [max(1, H // 2), H, 2 * H]),
        "num_steps": ("num_steps", "time steps", [max(2, S // 2), S, 2 * S]),
        "lr": ("lr", "learning rate", [0.5, 1.0, 2.0]),
    }
    report = Report("Hyperparameters: how low can the perplexity go?",
                    "Exercise 2: adjust the hyperparameters (number of epochs, number of hidden units, "
                    "number of time steps in a minibatch, learning rate) to improve the perplexity. "
                    "How low can you go?")
    outcomes: dict[tuple[str, float], RunOutcome] = {}
    baseline = train_run(ctx, base, train_tokens, vocab, held_out)
    for factor, (setting, _, values) in factors.items():
        for value in values:
            if value == base.value(setting):
                outcomes[(factor, value)] = baseline
                continue
            spec = base.changed(label=f"{factor}={value:g}", **{setting: value})
            outcomes[(factor, value)] = train_run(ctx, spec, train_tokens, vocab, held_out)

    def score(o: RunOutcome) -> float:
        return o.best_validation[1] if o.best_validation else float("inf")

    # combine the best value of each factor into one more run (with one change it already ran)
    best_values = {f: min(values, key=lambda v: score(outcomes[(f, v)]))
                   for f, (_, _, values) in factors.items()}
    best_settings = {factors[f][0]: value for f, value in best_values.items()}
    changed = [name for name, value in best_settings.items() if value != base.value(name)]
    combined = None
    if len(changed) > 1:
        combined = train_run(ctx, base.changed(label="best of each factor", **best_settings),
                             train_tokens, vocab, held_out)

    # what limits every held-out number above is the amount of text: train once more on the rest of
    # the book (all of it but the held-out stretch; the one seam where the two parts meet is noise)
    whole, whole_vocab = load_corpus(ctx.data, 4 * ctx.scale.max_tokens if ctx.quick else None,
                                     cleaning="chapter")
    # in this run's vocabulary (the two agree for any book-length text; a longer one may count its
    # characters in another order)
    whole = np.array([vocab[token] for token in whole_vocab.idx_to_token])[whole]
    more_text = None
    if len(whole) > len(corpus):
        more_tokens = np.concatenate([whole[:len(train_tokens)], whole[len(corpus):]])
        spec = base.changed(label=f"{len(more_tokens)} training tokens", epochs=ctx.epochs(15))
        more_text = train_run(ctx, spec, more_tokens, vocab, held_out)

    report.text(setup_line(ctx, len(corpus), vocab) + f" Baseline: {base.describe()}, {base.epochs} "
                f"epochs; each row changes one factor. Held-out perplexity is measured on the last "
                f"{ctx.scale.val_fraction:.0%} of the tokens.")
    rows = []
    unique = []
    for (factor, value), o in outcomes.items():
        if not any(o is seen for seen in unique):  # the baseline stands in each factor's sweep
            unique.append(o)
        rows.append([factors[factor][1], f"{value:g}", o.final_perplexity, best_val_cell(o),
                     f"{o.seconds_per_epoch:.3f}", o.status()])
    if combined is not None:
        unique.append(combined)
        rows.append(["best of each factor", ", ".join(f"{f}={v:g}" for f, v in best_values.items()),
                     combined.final_perplexity, best_val_cell(combined),
                     f"{combined.seconds_per_epoch:.3f}", combined.status()])
    if more_text is not None:
        rows.append(["training tokens", f"{more_text.tokens_per_epoch:,} per epoch, {more_text.spec.epochs} "
                     f"epochs (baseline: {len(train_tokens):,})", more_text.final_perplexity,
                     best_val_cell(more_text), f"{more_text.seconds_per_epoch:.3f}", more_text.status()])
    report.table(["factor", "value", "final train perplexity", "best held-out perplexity",
                  "s / epoch", "status"], rows)

    # epochs come free from the baseline's curve: the perplexity after a quarter, half, all of them
    checkpoints = sorted({max(1, base.epochs // 4), max(1, base.epochs // 2), base.epochs})
    epoch_rows = []
    for e in checkpoints:
        if e <= len(baseline.history):
            val = [p for ve, p in baseline.validation if ve <= e]
            epoch_rows.append([e, baseline.history[e - 1], fmt(min(val)) if val else "-"])
    report.text("**Epochs** (read from the baseline's curve):")
    report.table(["epochs", "train perplexity", "best held-out perplexity so far"], epoch_rows)

    panels = []
    for factor, (_, title, values) in factors.items():
        curves = {f"{factor}={v:g}": val_curve(outcomes[(factor, v)]) for v in values}
        panels.append(Panel(f"held-out perplexity vs {title}", "perplexity", curves))
    overfit = {"baseline: train": curve(baseline), "baseline: held-out": val_curve(baseline)}
    if more_text is not None:
        overfit[f"{more_text.spec.label}: held-out"] = val_curve(more_text)
    panels.append(Panel("memorising: train vs held-out", "perplexity", overfit))
    figure = plot_panels(ctx.out / "sweep.png", panels)
    report.figure(figure, "Held-out perplexity for each factor; training vs held-out perplexity")

    best_val = min(unique, key=score)
    best_train = min(unique, key=lambda o: o.best_perplexity)
    rising = [o for o in unique if o.validation and o.validation[-1][1] > score(o)]
    summary = (f"On {len(train_tokens):,} training tokens the lowest held-out perplexity is "
               f"**{fmt(score(best_val))}** ({best_val.spec.label}: {best_val.spec.describe()}); the "
               f"lowest training perplexity is **{fmt(best_train.best_perplexity)}** "
               f"({best_train.spec.label}).")
    if rising:
        summary += (f" In {len(rising)} of these {len(unique)} runs the held-out perplexity ended above "
                    f"its best while the training perplexity kept falling: the model memorises its "
                    f"training text.")
    else:
        summary += " No run got past its best held-out perplexity yet: none has started to overfit."
    if more_text is not None:
        summary += (f" With {more_text.tokens_per_epoch:,} training tokens the held-out perplexity reaches "
                    f"**{fmt(score(more_text))}** after {len(more_text.history)} epochs.")
    report.text(summary)
    results = {"best_values": best_values, "best_validation": score(best_val),
               "best_validation_run": best_val.spec.label, "best_train": best_train.best_perplexity,
               "runs": [o.to_dict() for o in unique + [r for r in (more_text,) if r is not None]]}
    return report, results
