"""The chapter's six exercises as experiments: ``scratchrnn experiment NAME``.

Every experiment trains a few models with the package's own pieces -- ``data.load_corpus`` and
``SeqDataLoader`` for batches, ``backends.create`` for the model, ``training.train`` for the loop,
``generation`` for text -- and writes ``DIR/report.md`` (tables and PNG plots beside it) and
``DIR/results.json`` (every number measured). ``--quick`` shrinks the runs to a few seconds; the
full runs behind ``docs/exercises.md`` use the sizes below.

A run that blows up is a result, not a crash: training stops and the report says "diverged at
epoch N" with the reason (a NaN/infinite loss, or a perplexity far above uniform guessing).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import backends
from .data import SeqDataLoader, Vocab, check_corpus_fits, load_corpus, num_batches
from .errors import TrainingDiverged, UserError
from .generation import Decoding, encode_prefix, generate_ids, vocab_text
from .model import ModelConfig, global_norm, init_params
from .training import TrainConfig, evaluate_perplexity, train

REPORT_NAME = "report.md"
RESULTS_NAME = "results.json"

# A model that guesses uniformly has perplexity |V|; one ten times worse than that is not learning
# any more but running away, so the run is stopped and reported as diverged.
BLOWUP_FACTOR = 10


@dataclass(frozen=True)
class Scale:
    """Sizes shared by an experiment's runs: the full ones of docs/exercises.md or --quick ones."""

    max_tokens: int
    batch_size: int
    num_steps: int
    hidden: int
    epochs: int | None      # None: each experiment's own full length
    val_fraction: float
    num_chars: int          # characters generated per sample
    samples: int            # continuations drawn per decoder


FULL = Scale(max_tokens=10000, batch_size=32, num_steps=35, hidden=256, epochs=None,
             val_fraction=0.1, num_chars=100, samples=8)
QUICK = Scale(max_tokens=3000, batch_size=16, num_steps=10, hidden=16, epochs=3,
              val_fraction=0.1, num_chars=30, samples=4)


@dataclass
class Context:
    """What one ``scratchrnn experiment`` call was asked for."""

    name: str
    out: Path
    quick: bool = False
    backend: str = "numpy"
    data: str | None = None
    seed: int = 0
    epochs_override: int | None = None
    hidden_override: int | None = None
    log: Callable[[str], None] = print
    _corpus: tuple | None = field(default=None, repr=False)

    @property
    def scale(self) -> Scale:
        return QUICK if self.quick else FULL

    def epochs(self, full: int) -> int:
        """Epochs of a run: --epochs if given, else the quick length, else this experiment's full length."""
        if self.epochs_override is not None:
            return self.epochs_override
        return self.scale.epochs if self.quick else full

    @property
    def hidden(self) -> int:
        return self.hidden_override or self.scale.hidden

    def corpus(self) -> tuple[list[int], Vocab]:
        """The training text (--data, else the bundled Time Machine), cut to the scale's token count."""
        if self._corpus is None:
            self._corpus = load_corpus(self.data, self.scale.max_tokens, cleaning="chapter")
        return self._corpus

    def base_spec(self, label: str, full_epochs: int, **changes) -> "RunSpec":
        spec = RunSpec(label=label, hidden=self.hidden, epochs=self.epochs(full_epochs),
                       batch_size=self.scale.batch_size, num_steps=self.scale.num_steps)
        return replace(spec, **changes)


# -- one training run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One model trained with sequential partitioning, as in the chapter."""

    label: str
    hidden: int
    epochs: int
    batch_size: int
    num_steps: int
    lr: float = 1.0
    clip: float | None = 1.0
    detach: bool = True
    activation: str = "tanh"
    embedding: str = "onehot"
    embed_dim: int = 0

    def describe(self) -> str:
        clip = f"clip {self.clip:g}" if self.clip is not None else "no clipping"
        inputs = "one-hot" if self.embedding == "onehot" else f"embedding {self.embed_dim}"
        return (f"{self.activation}, {inputs}, {self.hidden} hidden, {self.num_steps} steps, "
                f"lr {self.lr:g}, {clip}{'' if self.detach else ', not detached'}")


@dataclass
class RunOutcome:
    """Everything measured during one run; a diverged run keeps what it measured before."""

    spec: RunSpec
    vocab_size: int
    history: list[float] = field(default_factory=list)              # training perplexity per epoch
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, held-out perplexity)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)  # (epoch, norm on a probe batch)
    epoch_seconds: list[float] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)          # each batch of the last epoch
    tokens_per_epoch: int = 0
    diverged_epoch: int | None = None
    diverged_reason: str = ""
    backend: object = None

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    @property
    def final_perplexity(self) -> float:
        return self.history[-1] if self.history else float("nan")

    @property
    def best_perplexity(self) -> float:
        return min(self.history) if self.history else float("nan")

    @property
    def best_validation(self) -> tuple[int, float] | None:
        return min(self.validation, key=lambda item: item[1]) if self.validation else None

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean(self.epoch_seconds)) if self.epoch_seconds else float("nan")

    @property
    def tokens_per_sec(self) -> float:
        total = sum(self.epoch_seconds)
        return self.tokens_per_epoch * len(self.epoch_seconds) / total if total > 0 else float("nan")

    @property
    def max_grad_norm(self) -> float:
        return max((n for _, n in self.grad_norms if math.isfinite(n)), default=float("nan"))

    def status(self) -> str:
        if self.diverged:
            return f"diverged at epoch {self.diverged_epoch} ({self.diverged_reason})"
        return f"finished {len(self.history)} epochs"

    def to_dict(self) -> dict:
        return {
            "label": self.spec.label, "spec": dict(vars(self.spec)),
            "history": self.history, "validation": [list(v) for v in self.validation],
            "grad_norms": [[e, n if math.isfinite(n) else str(n)] for e, n in self.grad_norms],
            "epoch_seconds": self.epoch_seconds, "batch_seconds": self.batch_seconds,
            "tokens_per_epoch": self.tokens_per_epoch, "diverged_epoch": self.diverged_epoch,
            "diverged_reason": self.diverged_reason, "status": self.status(),
        }


class _RanAway(Exception):
    """Raised from the epoch callback to stop a run whose perplexity is far above uniform guessing."""

    def __init__(self, epoch: int, perplexity: float):
        super().__init__(epoch, perplexity)
        self.epoch, self.perplexity = epoch, perplexity


class _TimedBatches:
    """Wraps a loader and records how long each batch of the latest epoch took to train.

    The time between handing out batch k and being asked for batch k+1 is the training step of
    batch k, so this measures steps without touching the training loop.
    """

    def __init__(self, loader):
        self.loader = loader
        self.last_epoch: list[float] = []

    def __iter__(self):
        times: list[float] = []
        self.last_epoch = times
        previous = None
        for batch in self.loader:
            now = time.perf_counter()
            if previous is not None:
                times.append(now - previous)
            previous = now
            yield batch
            # the step of the batch just yielded has run once control comes back here
        if previous is not None:
            times.append(time.perf_counter() - previous)


def train_run(ctx: Context, spec: RunSpec, corpus: Sequence[int], vocab: Vocab,
              validation: np.ndarray | None = None, probe_every: int | None = None) -> RunOutcome:
    """Train one model with ``training.train`` and collect what the reports need.

    Divergence ends the run early and is recorded in the outcome; it is never raised.
    """
    check_corpus_fits(len(corpus), spec.batch_size, spec.num_steps, "sequential")
    model = ModelConfig(len(vocab), spec.hidden, spec.activation, spec.embedding,
                        spec.embed_dim if spec.embedding == "learned" else 0)
    backend = backends.create(ctx.backend, init_params(model, ctx.seed), model)
    config = TrainConfig(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size,
                         num_steps=spec.num_steps, sampling="sequential", clip=spec.clip,
                         detach=spec.detach, seed=ctx.seed)
    loader = _TimedBatches(SeqDataLoader(corpus, spec.batch_size, spec.num_steps, "sequential",
                                         seed=ctx.seed))
    outcome = RunOutcome(spec, len(vocab), backend=backend)
    # one fixed batch on which the (unclipped) gradient norm is measured as training goes on
    probe_X, probe_Y = next(iter(SeqDataLoader(corpus, spec.batch_size, spec.num_steps, seed=ctx.seed)))
    probe_every = probe_every or max(1, spec.epochs // 60)
    validate_every = max(1, spec.epochs // 30)

    def on_epoch(stats):
        outcome.history.append(stats.perplexity)
        outcome.epoch_seconds.append(stats.seconds)
        outcome.tokens_per_epoch = stats.tokens
        last = stats.epoch == spec.epochs
        running_away = stats.perplexity > BLOWUP_FACTOR * len(vocab)
        if stats.epoch % probe_every == 0 or last or running_away:
            _, grads, _ = backend.loss_and_grads(probe_X, probe_Y, backend.begin_state(spec.batch_size))
            outcome.grad_norms.append((stats.epoch, global_norm(grads)))
        if validation is not None and (stats.epoch % validate_every == 0 or last or running_away):
            outcome.validation.append((stats.epoch, evaluate_perplexity(
                backend, validation, spec.batch_size, spec.num_steps)))
        if running_away:
            raise _RanAway(stats.epoch, stats.perplexity)

    ctx.log(f"[{ctx.name}] {spec.label}: {spec.describe()}, {spec.epochs} epochs")
    try:
        train(backend, loader, config, on_epoch=on_epoch)
    except TrainingDiverged as err:
        outcome.diverged_epoch = err.epoch
        outcome.diverged_reason = f"the loss became {err.loss}"
    except _RanAway as err:
        outcome.diverged_epoch = err.epoch
        outcome.diverged_reason = (f"perplexity {_fmt(err.perplexity)}, over {BLOWUP_FACTOR}x the "
                                   f"{len(vocab)} of uniform guessing")
    outcome.batch_seconds = list(loader.last_epoch)
    ctx.log(f"[{ctx.name}]   -> {outcome.status()}, perplexity {_fmt(outcome.final_perplexity)}, "
            f"{sum(outcome.epoch_seconds):.1f} s")
    return outcome


def split_validation(corpus: Sequence[int], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last ``fraction`` of the tokens for held-out perplexity (as ``train --val-fraction``)."""
    cut = int(len(corpus) * (1 - fraction))
    return np.asarray(corpus[:cut]), np.asarray(corpus[cut:], dtype=np.int64)


# -- reports -------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e4:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


class Report:
    """A Markdown report assembled piece by piece, written next to its plots."""

    def __init__(self, title: str, exercise: str):
        self.parts = [f"# {title}", "", f"> {exercise}", ""]

    def text(self, paragraph: str) -> None:
        self.parts += [paragraph, ""]

    def table(self, headers: Sequence[str], rows: Sequence[Sequence]) -> None:
        def cell(value) -> str:
            text = _fmt(value) if isinstance(value, float) else str(value)
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


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt
    return plt


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
    plt = _pyplot()
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


def _curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    return list(range(1, len(outcome.history) + 1)), outcome.history


def _val_curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    return [e for e, _ in outcome.validation], [p for _, p in outcome.validation]


def _norm_curve(outcome: RunOutcome) -> tuple[list[int], list[float]]:
    finite = [(e, n) for e, n in outcome.grad_norms if math.isfinite(n)]
    return [e for e, _ in finite], [n for _, n in finite]


def _label(outcome: RunOutcome) -> str:
    return outcome.spec.label + (f" (diverged, epoch {outcome.diverged_epoch})" if outcome.diverged else "")


def _perplexity_panels(outcomes: Sequence[RunOutcome], norms: bool = False,
                       validation: bool = False) -> list[Panel]:
    flags = {_label(o): o.diverged for o in outcomes}
    # show up to a little past the divergence threshold: the point is where a run left, not how far
    ymax = 3 * BLOWUP_FACTOR * max((o.vocab_size for o in outcomes), default=1)
    panels = [Panel("training perplexity", "perplexity", {_label(o): _curve(o) for o in outcomes},
                    diverged=flags, ymax=ymax)]
    if validation:
        panels.append(Panel("held-out perplexity", "perplexity",
                            {_label(o): _val_curve(o) for o in outcomes}, diverged=flags, ymax=ymax))
    if norms:
        panels.append(Panel("gradient norm (probe batch, before clipping)", "global L2 norm",
                            {_label(o): _norm_curve(o) for o in outcomes}, diverged=flags))
    return panels


def _best_val_cell(outcome: RunOutcome) -> str:
    best = outcome.best_validation
    return f"{_fmt(best[1])} (epoch {best[0]})" if best else "-"


def _setup_line(ctx: Context, tokens: int, vocab: Vocab) -> str:
    data = ctx.data or "the bundled Time Machine"
    mode = "quick" if ctx.quick else "full"
    return (f"Setup ({mode} run, backend `{ctx.backend}`, seed {ctx.seed}): {tokens} character tokens "
            f"of {data}, vocabulary {len(vocab)}, sequential minibatches of {ctx.scale.batch_size} x "
            f"{ctx.scale.num_steps}, SGD.")


# -- the experiments -----------------------------------------------------------------------------------
def exp_onehot_vs_embedding(ctx: Context) -> tuple[Report, dict]:
    """Exercise 1 (and 2b): one-hot inputs are a lookup table; compare with a learned embedding."""
    corpus, vocab = ctx.corpus()
    train_tokens, held_out = split_validation(corpus, ctx.scale.val_fraction)
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

    report.text(_setup_line(ctx, len(corpus), vocab) + f" The last {ctx.scale.val_fraction:.0%} of the "
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
        inputs = V if o.spec.embedding == "onehot" else o.spec.embed_dim
        extra = V * o.spec.embed_dim if o.spec.embedding == "learned" else 0
        rows.append([o.spec.label, inputs, inputs * o.spec.hidden + extra, o.final_perplexity,
                     _best_val_cell(o), o.validation[-1][1] if o.validation else "-",
                     f"{o.seconds_per_epoch:.3f}", o.status()])
    report.table(["inputs", "width into W_xh", "input parameters", "final train perplexity",
                  "best held-out perplexity", "final held-out perplexity", "s / epoch", "status"], rows)
    figure = plot_panels(ctx.out / "perplexity.png", _perplexity_panels(outcomes, validation=True))
    report.figure(figure, "Training and held-out perplexity per epoch")
    winner = min((o for o in outcomes if o.best_validation), key=lambda o: o.best_validation[1], default=None)
    if winner is not None:
        report.text(f"Lowest held-out perplexity: **{winner.spec.label}**, {_best_val_cell(winner)}.")
    results = {"identity_max_abs_diff": gathered_diff, "logits_max_abs_diff": logits_diff,
               "runs": [o.to_dict() for o in outcomes]}
    return report, results


def exp_hyperparams(ctx: Context) -> tuple[Report, dict]:
    """Exercise 2: a one-factor-at-a-time sweep of hidden size, time steps and learning rate."""
    corpus, vocab = ctx.corpus()
    train_tokens, held_out = split_validation(corpus, ctx.scale.val_fraction)
    full_epochs = 120
    base = ctx.base_spec("baseline", full_epochs)
    H, S = base.hidden, base.num_steps
    factors = {
        "hidden": ("hidden units", [max(1, H // 2), H, 2 * H]),
        "num_steps": ("time steps", [max(2, S // 2), S, 2 * S]),
        "lr": ("learning rate", [0.5, 1.0, 2.0]),
    }
    report = Report("Hyperparameters: how low can the perplexity go?",
                    "Exercise 2: adjust the hyperparameters (number of epochs, number of hidden units, "
                    "number of time steps in a minibatch, learning rate) to improve the perplexity. "
                    "How low can you go?")
    outcomes: dict[tuple[str, float], RunOutcome] = {}
    baseline = train_run(ctx, base, train_tokens, vocab, held_out)
    for factor, (_, values) in factors.items():
        for value in values:
            if value == getattr(base, factor):
                outcomes[(factor, value)] = baseline
                continue
            spec = replace(base, label=f"{factor}={value:g}", **{factor: value})
            outcomes[(factor, value)] = train_run(ctx, spec, train_tokens, vocab, held_out)

    def score(o: RunOutcome) -> float:
        return o.best_validation[1] if o.best_validation else float("inf")

    # combine the best value of each factor into one more run (with one change it already ran)
    best_values = {f: min(values, key=lambda v: score(outcomes[(f, v)]))
                   for f, (_, values) in factors.items()}
    changed = [f for f in factors if best_values[f] != getattr(base, f)]
    combined = None
    if len(changed) > 1:
        combined = train_run(ctx, replace(base, label="best of each factor", **best_values),
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
        spec = replace(base, label=f"{len(more_tokens)} training tokens", epochs=ctx.epochs(15))
        more_text = train_run(ctx, spec, more_tokens, vocab, held_out)

    report.text(_setup_line(ctx, len(corpus), vocab) + f" Baseline: {base.describe()}, {base.epochs} "
                f"epochs; each row changes one factor. Held-out perplexity is measured on the last "
                f"{ctx.scale.val_fraction:.0%} of the tokens.")
    rows = []
    unique = []
    for (factor, value), o in outcomes.items():
        if not any(o is seen for seen in unique):  # the baseline stands in each factor's sweep
            unique.append(o)
        rows.append([factors[factor][0], f"{value:g}", o.final_perplexity, _best_val_cell(o),
                     f"{o.seconds_per_epoch:.3f}", o.status()])
    if combined is not None:
        unique.append(combined)
        rows.append(["best of each factor", ", ".join(f"{f}={v:g}" for f, v in best_values.items()),
                     combined.final_perplexity, _best_val_cell(combined),
                     f"{combined.seconds_per_epoch:.3f}", combined.status()])
    if more_text is not None:
        rows.append(["training tokens", f"{more_text.tokens_per_epoch:,} per epoch, {more_text.spec.epochs} "
                     f"epochs (baseline: {len(train_tokens):,})", more_text.final_perplexity,
                     _best_val_cell(more_text), f"{more_text.seconds_per_epoch:.3f}", more_text.status()])
    report.table(["factor", "value", "final train perplexity", "best held-out perplexity",
                  "s / epoch", "status"], rows)

    # epochs come free from the baseline's curve: the perplexity after a quarter, half, all of them
    checkpoints = sorted({max(1, base.epochs // 4), max(1, base.epochs // 2), base.epochs})
    epoch_rows = []
    for e in checkpoints:
        if e <= len(baseline.history):
            val = [p for ve, p in baseline.validation if ve <= e]
            epoch_rows.append([e, baseline.history[e - 1], _fmt(min(val)) if val else "-"])
    report.text("**Epochs** (read from the baseline's curve):")
    report.table(["epochs", "train perplexity", "best held-out perplexity so far"], epoch_rows)

    panels = []
    for factor, (title, values) in factors.items():
        curves = {f"{factor}={v:g}": _val_curve(outcomes[(factor, v)]) for v in values}
        panels.append(Panel(f"held-out perplexity vs {title}", "perplexity", curves))
    overfit = {"baseline: train": _curve(baseline), "baseline: held-out": _val_curve(baseline)}
    if more_text is not None:
        overfit[f"{more_text.spec.label}: held-out"] = _val_curve(more_text)
    panels.append(Panel("memorising: train vs held-out", "perplexity", overfit))
    figure = plot_panels(ctx.out / "sweep.png", panels)
    report.figure(figure, "Held-out perplexity for each factor; training vs held-out perplexity")

    best_val = min(unique, key=score)
    best_train = min(unique, key=lambda o: o.best_perplexity)
    rising = [o for o in unique if o.validation and o.validation[-1][1] > score(o)]
    summary = (f"On {len(train_tokens):,} training tokens the lowest held-out perplexity is "
               f"**{_fmt(score(best_val))}** ({best_val.spec.label}: {best_val.spec.describe()}); the "
               f"lowest training perplexity is **{_fmt(best_train.best_perplexity)}** "
               f"({best_train.spec.label}).")
    if rising:
        summary += (f" In {len(rising)} of these {len(unique)} runs the held-out perplexity ended above "
                    f"its best while the training perplexity kept falling: the model memorises its "
                    f"training text.")
    else:
        summary += " No run got past its best held-out perplexity yet: none has started to overfit."
    if more_text is not None:
        summary += (f" With {more_text.tokens_per_epoch:,} training tokens the held-out perplexity reaches "
                    f"**{_fmt(score(more_text))}** after {len(more_text.history)} epochs.")
    report.text(summary)
    results = {"best_values": best_values, "best_validation": score(best_val),
               "best_validation_run": best_val.spec.label, "best_train": best_train.best_perplexity,
               "runs": [o.to_dict() for o in unique + [r for r in (more_text,) if r is not None]]}
    return report, results


SAMPLING_DECODERS = [
    ("greedy", Decoding("greedy")),
    ("alpha=4 (T=0.25)", Decoding("sample", 0.25)),
    ("alpha=2 (T=0.5)", Decoding("sample", 0.5)),
    ("alpha=1.25 (T=0.8)", Decoding("sample", 0.8)),
    ("alpha=1 (T=1, plain sampling)", Decoding("sample", 1.0)),
    ("alpha=0.67 (T=1.5)", Decoding("sample", 1.5)),
    ("top-k 3, T=1", Decoding("sample", 1.0, top_k=3)),
    ("top-p 0.9, T=1", Decoding("sample", 1.0, top_p=0.9)),
]


def _pick_prefix(vocab: Vocab, corpus: Sequence[int]) -> str:
    try:
        encode_prefix("time traveller", vocab)
        return "time traveller"
    except UserError:
        return vocab_text(vocab, corpus[:10])


def continuation_perplexity(backend, sequences: np.ndarray, prefix_len: int) -> float:
    """Perplexity the model itself (at T = 1) assigns to the generated part of each sequence."""
    logits, _ = backend.forward(sequences[:, :-1], backend.begin_state(sequences.shape[0]))
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    targets = sequences[:, 1:].T.reshape(-1)                       # time-major like the logits
    picked = log_probs[np.arange(targets.size), targets].reshape(sequences.shape[1] - 1, -1)
    generated = picked[prefix_len - 1:]                            # row t predicts token t + 1
    return float(np.exp(-generated.mean()))


def text_statistics(texts: Sequence[str], prefix: str, known_words: set[str]) -> tuple[float, float]:
    """(share of generated words that occur in the training text, share of distinct words).

    The words that overlap the prefix and the last, possibly cut-off word are left out.
    """
    skip = len(prefix.split())
    words = []
    for text in texts:
        split = text.split()
        words += split[skip:-1]
    if not words:
        return float("nan"), float("nan")
    known = sum(w in known_words for w in words) / len(words)
    return known, len(set(words)) / len(words)


def exp_sampling(ctx: Context) -> tuple[Report, dict]:
    """Exercise 3: sample instead of taking the argmax; bias towards likely characters with alpha > 1."""
    from .plotting import plot_perplexity

    corpus, vocab = ctx.corpus()
    spec = ctx.base_spec("model", 200)
    outcome = train_run(ctx, spec, corpus, vocab)
    backend = outcome.backend
    prefix = _pick_prefix(vocab, corpus)
    prefix_ids = encode_prefix(prefix, vocab)
    known_words = set(vocab_text(vocab, corpus).split())
    n, k = ctx.scale.num_chars, ctx.scale.samples
    rows, stats = [], []
    for label, decoding in SAMPLING_DECODERS:
        seeded = replace(decoding, seed=ctx.seed)
        ids = generate_ids(backend, [prefix_ids] * k, n, seeded)
        texts = [vocab_text(vocab, seq) for seq in ids]
        ppl = continuation_perplexity(backend, np.asarray(ids, dtype=np.int64), len(prefix_ids))
        known, distinct = text_statistics(texts, prefix, known_words)
        stats.append({"decoder": label, "strategy": decoding.strategy,
                      "temperature": decoding.temperature, "top_k": decoding.top_k,
                      "top_p": decoding.top_p, "perplexity_of_text": ppl,
                      "book_words": known, "distinct_words": distinct, "texts": texts})
        rows.append([label, ppl, f"{known:.0%}" if math.isfinite(known) else "-",
                     f"{distinct:.0%}" if math.isfinite(distinct) else "-", texts[0]])

    # temperature -> 0 (alpha -> infinity) is greedy decoding
    greedy_ids = generate_ids(backend, [prefix_ids], n, Decoding("greedy"))
    cold_ids = generate_ids(backend, [prefix_ids], n, Decoding("sample", 1e-6, seed=ctx.seed))
    cold_is_greedy = greedy_ids == cold_ids

    report = Report("Sampling instead of greedy decoding",
                    "Exercise 3: modify the prediction function to sample rather than pick the most "
                    "likely next character. What happens? Bias the model towards more likely outputs, "
                    "e.g. by sampling from q(x_t | ...) proportional to P(x_t | ...)^alpha for alpha > 1.")
    report.text(_setup_line(ctx, len(corpus), vocab) + f" One model ({spec.describe()}, "
                f"{spec.epochs} epochs, final training perplexity {_fmt(outcome.final_perplexity)}), "
                f"{k} continuations of {n} characters after '{prefix}' per decoder, seed {ctx.seed}. "
                "q proportional to P^alpha is softmax(logits / T) with T = 1/alpha.")
    report.table(["decoder", "perplexity of the text (model, T=1)", "words found in the book",
                  "distinct words", "first sample"], rows)
    report.text(f"Sampling with alpha = 10^6 (T = 1e-6) reproduces the greedy text: **{cold_is_greedy}**.")

    sampled = [s for s in stats if s["strategy"] == "sample" and s["top_k"] is None and s["top_p"] is None]
    greedy = stats[0]
    temps = [s["temperature"] for s in sampled]
    panels = [
        Panel("generated text under the model", "perplexity (T=1)",
              {"sampling": (temps, [s["perplexity_of_text"] for s in sampled]),
               "greedy": (temps, [greedy["perplexity_of_text"]] * len(temps))},
              xlabel="temperature T = 1/alpha", references=("greedy",)),
        Panel("words of the generated text", "share", {
            "found in the book": (temps, [s["book_words"] for s in sampled]),
            "distinct": (temps, [s["distinct_words"] for s in sampled]),
            "greedy: found in the book": (temps, [greedy["book_words"]] * len(temps)),
            "greedy: distinct": (temps, [greedy["distinct_words"]] * len(temps))},
              xlabel="temperature T = 1/alpha", logy=False,
              references=("greedy: found in the book", "greedy: distinct")),
    ]
    figure = plot_panels(ctx.out / "sampling.png", panels)
    report.figure(figure, "What the temperature does to the generated text (greedy as flat lines)")
    curve = plot_perplexity(outcome.history, ctx.out / "training", f"model used for sampling ({spec.label})")
    report.figure(curve[0], "Training perplexity of the model that generates")
    results = {"prefix": prefix, "cold_sampling_equals_greedy": cold_is_greedy, "decoders": stats,
               "run": outcome.to_dict()}
    return report, results


def _clip_label(clip: float | None) -> str:
    return f"clip {clip:g}" if clip is not None else "no clipping"


def _stability_rows(outcomes: Sequence[RunOutcome]) -> list[list]:
    return [[o.spec.activation, f"{o.spec.lr:g}", _clip_label(o.spec.clip), o.final_perplexity,
             o.best_perplexity, o.max_grad_norm, o.status()] for o in outcomes]


STABILITY_HEADERS = ["activation", "lr", "clipping", "final perplexity", "best perplexity",
                     "largest probe gradient norm", "status"]


def _stability_summary(outcomes: Sequence[RunOutcome]) -> str:
    diverged = [o for o in outcomes if o.diverged]
    if not diverged:
        return "No run diverged."
    return "Diverged: " + "; ".join(f"{o.spec.label} diverged at epoch {o.diverged_epoch}"
                                    for o in diverged) + "."


def exp_no_clip(ctx: Context) -> tuple[Report, dict]:
    """Exercise 4: train without gradient clipping."""
    corpus, vocab = ctx.corpus()
    # the chapter's lr, and a larger one at which the updates of an unclipped gradient overshoot
    lrs = (1.0, 100.0) if ctx.quick else (1.0, 3.0)
    specs = [ctx.base_spec(f"lr {lr:g}, {_clip_label(clip)}", 300, lr=lr, clip=clip)
             for lr in lrs for clip in (1.0, None)]
    return _stability_experiment(
        ctx, specs, corpus, vocab, "Training without gradient clipping",
        "Exercise 4: run the code in this section without clipping the gradient. What happens?",
        f" {ctx.hidden} hidden units, tanh. The gradient norm is measured on one fixed batch, before any "
        "clipping, as training goes on.",
        "no_clip.png", "Perplexity and gradient norm with and without clipping")


def _stability_experiment(ctx: Context, specs, corpus, vocab, title: str, question: str, setup: str,
                          figure_name: str, caption: str) -> tuple[Report, dict]:
    """Train ``specs`` and report how each run went (the no-clip and relu exercises)."""
    outcomes = [train_run(ctx, s, corpus, vocab) for s in specs]
    report = Report(title, question)
    report.text(_setup_line(ctx, len(corpus), vocab) + setup)
    report.table(STABILITY_HEADERS, _stability_rows(outcomes))
    report.text(_stability_summary(outcomes))
    figure = plot_panels(ctx.out / figure_name, _perplexity_panels(outcomes, norms=True))
    report.figure(figure, caption)
    return report, {"runs": [o.to_dict() for o in outcomes]}


def exp_no_detach(ctx: Context) -> tuple[Report, dict]:
    """Exercise 5: sequential partitioning without detaching the state between batches."""
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
    report.text(_setup_line(ctx, len(corpus), vocab) + f" {ctx.hidden} hidden units, {batches} batches "
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
    panels = _perplexity_panels(outcomes) + [
        Panel("perplexity vs wall-clock time", "perplexity", time_curves, xlabel="seconds"),
        Panel("time of each batch in the last epoch", "ms", batch_curves, xlabel="batch", logy=False)]
    figure = plot_panels(ctx.out / "no_detach.png", panels)
    report.figure(figure, "Perplexity per epoch and per second, and the cost of each batch")
    return report, {"slowdown": ratio, "runs": [o.to_dict() for o in outcomes]}


def exp_relu(ctx: Context) -> tuple[Report, dict]:
    """Exercise 6: ReLU instead of tanh; is clipping still needed?"""
    corpus, vocab = ctx.corpus()
    lrs = (1.0, 100.0) if ctx.quick else (1.0, 3.0)
    # as long as the no-clip experiment: instabilities there came late in training
    specs = [ctx.base_spec("tanh, clip 1", 300, activation="tanh", clip=1.0)]
    specs += [ctx.base_spec(f"relu, lr {lr:g}, {_clip_label(clip)}", 300, activation="relu", lr=lr,
                            clip=clip) for lr in lrs for clip in (1.0, None)]
    return _stability_experiment(
        ctx, specs, corpus, vocab, "ReLU instead of tanh",
        "Exercise 6: replace the activation function used in this section with ReLU and repeat the "
        "experiments. Do we still need gradient clipping? Why?",
        f" {ctx.hidden} hidden units. The gradient norm is measured on one fixed batch, before any clipping.",
        "relu.png", "tanh vs ReLU, with and without clipping")


def exp_other_text(ctx: Context) -> tuple[Report, dict]:
    """Exercise 2 (last part): the same model on another text (--data), and each model on the other text."""
    if ctx.data is None:
        raise UserError(f"the {ctx.name} experiment needs --data PATH: the text to compare with the "
                        f"Time Machine")
    scale = ctx.scale
    reference = load_corpus(None, scale.max_tokens, cleaning="chapter")
    other = ctx.corpus()
    texts = {"Time Machine": reference, Path(ctx.data).name: other}
    runs, held = {}, {}
    for name, (corpus, vocab) in texts.items():
        train_tokens, held_out = split_validation(corpus, scale.val_fraction)
        if len(held_out) < scale.batch_size + 1:
            raise UserError(f"{name}: {len(corpus)} tokens leave too little held-out text; "
                            f"give a longer text")
        held[name] = (held_out, vocab)
        runs[name] = train_run(ctx, ctx.base_spec(f"trained on {name}", 150), train_tokens, vocab, held_out)

    report = Report("Another text",
                    "Exercise 2 (part): how well does the model work on other books, e.g. another "
                    "book by H. G. Wells?")
    report.text(f"Setup ({'quick' if ctx.quick else 'full'} run, backend `{ctx.backend}`): the first "
                f"{scale.max_tokens} character tokens of each text, the chapter's cleaning (letters "
                f"and spaces, lower case), {ctx.hidden} hidden units, the last "
                f"{scale.val_fraction:.0%} held out. Cross rows read one text's held-out part with the "
                "other text's model (characters mapped by identity; characters the model never saw "
                "count as <unk>).")
    rows = []
    cross = {}
    for model_name, outcome in runs.items():
        model_vocab = texts[model_name][1]
        for text_name, (held_out, text_vocab) in held.items():
            mapped = np.asarray([model_vocab[text_vocab.idx_to_token[int(i)]] for i in held_out],
                                dtype=np.int64)
            unknown = float(np.mean(mapped == model_vocab.unk))
            ppl = (evaluate_perplexity(outcome.backend, mapped, scale.batch_size, scale.num_steps)
                   if not outcome.diverged else float("nan"))
            cross[f"{model_name} -> {text_name}"] = ppl
            rows.append([model_name, text_name, ppl, f"{unknown:.1%}",
                         outcome.final_perplexity, outcome.status()])
    report.table(["model trained on", "held-out text", "perplexity", "unknown characters",
                  "final train perplexity", "status"], rows)
    samples = []
    for name, outcome in runs.items():
        corpus, vocab = texts[name]
        prefix = _pick_prefix(vocab, corpus)
        ids = generate_ids(outcome.backend, [encode_prefix(prefix, vocab)], 60, Decoding("greedy"))
        samples.append([name, vocab_text(vocab, ids[0])])
    report.text("Greedy continuations:")
    report.table(["model", "text"], samples)
    outcomes = list(runs.values())
    figure = plot_panels(ctx.out / "other_text.png", _perplexity_panels(outcomes, validation=True))
    report.figure(figure, "Each model on its own text")
    return report, {"cross_perplexity": cross, "samples": samples, "runs": [o.to_dict() for o in outcomes]}


EXPERIMENTS: dict[str, tuple[Callable[[Context], tuple[Report, dict]], str]] = {
    "onehot-vs-embedding": (exp_onehot_vs_embedding,
                            "exercise 1: one-hot @ W_xh is a row lookup; one-hot vs learned embeddings"),
    "hyperparams": (exp_hyperparams, "exercise 2: sweep hidden size, time steps, lr (epochs from the "
                                     "curves); best held-out perplexity"),
    "sampling": (exp_sampling, "exercise 3: greedy vs sampling at temperatures / alpha, top-k, top-p"),
    "no-clip": (exp_no_clip, "exercise 4: with and without gradient clipping, at two learning rates"),
    "no-detach": (exp_no_detach, "exercise 5: detached vs not detached state: time and perplexity"),
    "relu": (exp_relu, "exercise 6: ReLU with and without clipping, against tanh"),
    "other-text": (exp_other_text, "exercise 2: train on the --data text too, evaluate each model on both"),
}


NEEDS_DATA = {"other-text"}


def _check_long_enough(ctx: Context) -> None:
    """Every experiment fits in what is left after the held-out part, with twice the time steps."""
    corpus, _ = ctx.corpus()
    scale = ctx.scale
    usable = int(len(corpus) * (1 - scale.val_fraction))
    if num_batches(usable, scale.batch_size, 2 * scale.num_steps, "sequential") < 1:
        needed = math.ceil((scale.batch_size * 2 * scale.num_steps + 2 * scale.num_steps + 1)
                           / (1 - scale.val_fraction))
        raise UserError(f"{ctx.data or 'the text'} is too short: {len(corpus)} tokens after cleaning, the "
                        f"{'quick' if ctx.quick else 'full'} experiments need at least {needed}")


def describe_experiments() -> str:
    width = max(map(len, EXPERIMENTS))
    return "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in EXPERIMENTS.items())


def run_experiment(name: str, out: str | Path | None = None, *, quick: bool = False,
                   backend: str = "numpy", data: str | None = None, seed: int = 0,
                   epochs: int | None = None, hidden: int | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Run one experiment and write its report; returns the report's path."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be a positive integer, not {epochs}")
    if hidden is not None and hidden < 1:
        raise UserError(f"--hidden must be a positive integer, not {hidden}")
    out = Path(out) if out is not None else Path("runs") / "experiments" / name
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if name in NEEDS_DATA and data is None:
        raise UserError(f"the {name} experiment needs --data PATH: the text to compare with the Time Machine")
    backends.backend_class(backend)  # an unknown or missing framework fails before any work
    ctx = Context(name, out, quick, backend, data, seed, epochs, hidden, log)
    _check_long_enough(ctx)  # a missing, unreadable or too short --data fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    function, _ = EXPERIMENTS[name]
    started = time.perf_counter()
    report, results = function(ctx)
    seconds = time.perf_counter() - started
    command = f"scratchrnn experiment {name} --out {out}" + (" --quick" if quick else "")
    command += "".join(f" {flag} {value}" for flag, value in (
        ("--backend", backend if backend != "numpy" else None), ("--data", data),
        ("--seed", seed or None), ("--epochs", epochs), ("--hidden", hidden)) if value is not None)
    report.text(f"Regenerate with `{command}` ({seconds:.0f} s on the machine that wrote this).")
    path = out / REPORT_NAME
    path.write_text(report.render(), encoding="utf-8")
    results = {"experiment": name, "quick": quick, "backend": backend, "data": data, "seed": seed,
               "seconds": seconds, "command": command, **results}
    (out / RESULTS_NAME).write_text(json.dumps(_finite(results), indent=1) + "\n", encoding="utf-8")
    return path


def _finite(value):
    """``value`` made strict JSON: NumPy scalars as Python numbers, NaN and infinities as strings."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value
