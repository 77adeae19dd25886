"""The quality goals of issues 12 and 26: held-out loss on tinyshakespeare against wall time, within a budget.

    .venv/bin/python scripts/shakespeare.py                        # every configuration below (make shakespeare)
    .venv/bin/python scripts/shakespeare.py --only lstm-512 --long none   # one configuration, 10 minutes
    .venv/bin/python scripts/shakespeare.py --budget-scale 0.01 --hidden 32   # a smoke test: every budget 1%
    .venv/bin/python scripts/shakespeare.py --only lstm-512-awd --long none --ablation lstm-512-awd --append

The goals, on this 2-core machine, from scratch (scratchrnn's cells, optimizers and training loop):
validation loss <= 1.45 nats per character within 10 minutes of wall time, and <= 1.40 within 30
minutes (issue 26; issue 12 asked for 1.50 and 1.45). The text is tinyshakespeare's raw characters
with the last 10% held out -- what ``scratchrnn train --data tinyshakespeare.txt`` does, and how
nanoGPT splits it.

Every configuration of CONFIGURATIONS trains for the short budget; the one whose held-out loss went
lowest then trains again, from its first step, for the long budget (``--long NAME`` picks another).
``--ablation NAME`` (or ``best``) then trains, for the short budget, NAME with each technique of
docs/regularization.md it has taken away and each one it lacks added (shakespeare_ablation.py), so the
record says what each one buys. ``--append`` keeps the runs of the record already in --out and adds
these to them, so that the whole comparison can be run in parts. The clock of a run starts at its
first batch and counts training and evaluation alike; a run stops when the time left would not cover
one more evaluation, so its last point lies within its budget. Writes
docs/results/shakespeare.{md,json,png} (shakespeare_report.py): the curves, a table of what each
configuration reached and when, the ablation, samples of the best model, and the command that reruns it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from scratchrnn import backends
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import SeqDataLoader, load_corpus, split_heldout
from scratchrnn.errors import TrainingDiverged
from scratchrnn.generation import Decoding, predict
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.optim import Schedule
from scratchrnn.run_config import DEFAULT_VAL_FRACTION
from scratchrnn.training import TrainConfig, train

import shakespeare_report
from shakespeare_ablation import ablations, regularization_words, train_flags

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tinyshakespeare.txt"      # shipped with the repository (data/README.md)

# The configurations, one a row; edit freely. Columns: name; cell (rnn, gru, lstm); L layers; H hidden
# units; emb the width of a learned embedding (0: one-hot inputs, the chapter's); drop dropout; optim
# and lr the optimizer and its learning rate; schedule "constant" or "cosine" (here over the run's
# wall-time budget, see WallClockTrainConfig) after warm steps of linear warm-up; B x T batches of B
# rows of T time steps; sampling "sequential" or "random" partitioning; init "book" (N(0, 0.01), the
# book's) or "scaled" (N(0, 1/fan-in), model.init_params); fb the LSTM's forget-gate bias at the start
# (char-rnn's 1); and, for the rows that have them, the techniques of docs/regularization.md as
# ModelSettings' fields (layer_norm, weight_dropout, input_dropout, hidden_dropout, output_dropout,
# embed_dropout, tie_weights, activation_reg, temporal_reg). The first row is the baseline: the
# chapter's RNN with its settings, 512 hidden, SGD at lr 1.
CONFIGURATIONS = [
    #name                         cell    L  H    emb drop optim   lr    schedule    warm B   T    sampling      init      fb
    ("rnn-baseline",              "rnn",  1, 512, 0,  0.0, "sgd",  1.0,  "constant", 0,   32, 35,  "sequential", "book",   0.0),
    ("lstm-512",                  "lstm", 1, 512, 64, 0.0, "adam", 2e-3, "constant", 0,   64, 100, "random",     "book",   0.0),
    ("gru-512",                   "gru",  1, 512, 64, 0.0, "adam", 2e-3, "constant", 0,   64, 100, "random",     "book",   0.0),
    ("lstm-512-dropout-cosine",   "lstm", 1, 512, 64, 0.2, "adam", 2e-3, "cosine",   200, 64, 100, "random",     "book",   0.0),
    ("lstm-512-scaled",           "lstm", 1, 512, 64, 0.2, "adam", 2e-3, "cosine",   50,  64, 100, "random",     "scaled", 1.0),
    ("lstm-2x512-dropout-cosine", "lstm", 2, 512, 64, 0.2, "adam", 2e-3, "cosine",   200, 64, 100, "random",     "book",   0.0),
    ("lstm-2x512-scaled",         "lstm", 2, 512, 64, 0.2, "adam", 2e-3, "cosine",   50,  64, 100, "random",     "scaled", 1.0),
    # AWD-LSTM's regularisers in place of the per-step dropout: light for the short budget, where the
    # one-layer model is still underfitting; heavier for two layers, which overfit after 25 minutes
    ("lstm-512-awd",              "lstm", 1, 512, 64, 0.0, "adam", 2e-3, "cosine",   50,  64, 100, "random",     "scaled", 1.0,
     {"weight_dropout": 0.1, "output_dropout": 0.2}),
    ("lstm-2x512-awd",            "lstm", 2, 512, 64, 0.0, "adam", 2e-3, "cosine",   50,  64, 100, "random",     "scaled", 1.0,
     {"weight_dropout": 0.25, "hidden_dropout": 0.2, "output_dropout": 0.25}),
]
BASELINE = CONFIGURATIONS[0][0]
GOALS = ((10.0, 1.45), (30.0, 1.40))          # (minutes, nats per character): issue 26's two goals
CLIP = 1.0                                     # every configuration clips the gradient's norm at 1
EVALUATIONS_PER_RUN = 20                       # points on each curve: one every 30 s of a 10-minute run
EVALUATION_MARGIN = 1.2                        # the time kept for the last evaluation: the latest one's, plus a fifth


@dataclass(frozen=True)
class Configuration:
    name: str
    cell: str
    layers: int
    hidden: int
    embed: int
    dropout: float
    optimizer: str
    lr: float
    lr_schedule: str
    warmup: int
    batch_size: int
    num_steps: int
    sampling: str
    init: str = "book"
    forget_bias: float = 0.0
    regularization: dict = field(default_factory=dict)     # docs/regularization.md's, ModelSettings' names

    def model(self, vocab_size: int) -> ModelConfig:
        embedding = {"embedding": "learned", "embed_dim": self.embed} if self.embed else {}
        return ModelConfig(vocab_size, self.hidden, cell=self.cell, num_layers=self.layers,
                           dropout=self.dropout, **embedding, **self.regularization)

    def settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}

    def describe(self) -> str:
        layers = f"{self.layers} x " if self.layers > 1 else ""
        inputs = f"embedding {self.embed}" if self.embed else "one-hot"
        dropout = f", dropout {self.dropout:g}" if self.dropout else ""
        schedule = f", {self.lr_schedule} (warm-up {self.warmup})" if self.lr_schedule != "constant" else ""
        init = f", init {self.init}" if self.init != "book" else ""
        forget = f", forget bias {self.forget_bias:g}" if self.forget_bias else ""
        techniques = regularization_words(self.regularization)
        techniques = f", {techniques}" if techniques else ""
        return (f"{self.cell} {layers}{self.hidden}, {inputs}{dropout}{techniques}, {self.optimizer} "
                f"{self.lr:g}{schedule}, batch {self.batch_size} x {self.num_steps} {self.sampling}{init}{forget}")


def configurations(hidden: int | None = None) -> list[Configuration]:
    table = [Configuration(*row) for row in CONFIGURATIONS]
    for configuration in table:
        if configuration.lr_schedule not in ("constant", "cosine"):
            raise SystemExit(f"{configuration.name}: lr_schedule must be 'constant' or 'cosine' (a step "
                             f"schedule counts epochs, which a run stopped by the clock does not know)")
    if hidden is not None:
        table = [replace(configuration, hidden=hidden) for configuration in table]
    return table


# -- the clock --------------------------------------------------------------------------------------------
class Budget:
    """A run's wall-time budget: training and evaluation both spend it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()   # start() again when the first batch is about to train
        self.evaluation_seconds = 0.0        # what the latest evaluation took: kept in reserve for the last
        self.step_seconds = 0.0              # what the latest training step took

    def start(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fraction_spent(self) -> float:
        return min(1.0, self.elapsed() / self.seconds)

    def training_left(self) -> float:
        """Seconds left after one more step and one more evaluation (the latest one's time, with a
        margin: it varies with the machine's load), so that the last point still lies within the budget."""
        return self.seconds - self.elapsed() - EVALUATION_MARGIN * self.evaluation_seconds - self.step_seconds


@dataclass
class WallClockTrainConfig(TrainConfig):
    """TrainConfig whose cosine schedule follows the budget's clock instead of a count of steps.

    A run that stops when its time is up does not know how many steps it will take (that depends on
    the machine and on its load), so the cosine's progress is the fraction of the budget spent: the
    learning rate reaches its floor (a tenth of lr, optim.Schedule's) as the time runs out. The
    warm-up stays counted in optimizer steps, as optim.Schedule counts it.
    """

    budget: Budget | None = None
    min_lr_ratio: float = Schedule.min_lr_ratio

    def schedule(self, steps_per_epoch: int):
        if self.lr_schedule != "cosine":
            return super().schedule(steps_per_epoch)

        def lr_at(step: int) -> float:
            warm = (step + 1) / self.warmup if step < self.warmup else 1.0
            floor = self.min_lr_ratio * self.lr
            cosine = 0.5 * (1 + math.cos(math.pi * self.budget.fraction_spent()))
            return warm * (floor + (self.lr - floor) * cosine)
        return lr_at


class WallClockRounds:
    """The training batches in rounds, each round one "epoch" of ``training.train``.

    TrainConfig.eval_every counts whole epochs, and an epoch of tinyshakespeare (a million characters)
    takes a minute or more for the gated cells: a curve of loss against wall time needs points more
    often than that. So the batches of the loader's passes are handed out in rounds, and
    ``training.train`` scores the held-out text after every round (eval_every=1). A round ends after
    ``interval`` seconds, at the end of a pass over the text, or when the budget has no training time
    left, whichever comes first. Every batch is still the loader's: the passes, their order and their
    random cuts are exactly those of SeqDataLoader, only cut into rounds. One consequence: with
    sequential partitioning the carried state starts from zero at each round, as it does at each epoch
    (train() carries no state across epochs); since a round never spans two passes, no state is ever
    carried from the end of one pass into the unrelated start of the next.
    """

    def __init__(self, loader: SeqDataLoader, budget: Budget, interval: float):
        self.loader, self.budget, self.interval = loader, budget, interval
        self.passes = 0                   # passes over the training text begun
        self.round_ended_at = time.perf_counter()
        self._pass = None                 # the batches left of the pass in progress

    def __iter__(self):
        round_started = time.perf_counter()
        if self._pass is None:
            self._pass, self.passes = iter(self.loader), self.passes + 1
        for batch in self._pass:
            handed_out = time.perf_counter()
            yield batch
            # control comes back here once the batch's step has run
            self.budget.step_seconds = time.perf_counter() - handed_out
            if time.perf_counter() - round_started >= self.interval or self.budget.training_left() <= 0:
                self.round_ended_at = time.perf_counter()
                return
        self._pass = None
        self.round_ended_at = time.perf_counter()


# -- one run ------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    name: str
    configuration: Configuration
    budget_minutes: float
    parameters: int
    points: list = field(default_factory=list)   # one per evaluation: seconds, val_nats, train_nats, ...
    train_tokens: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    passes: int = 0
    diverged: str | None = None
    best_params: dict | None = None
    ablation: dict | None = None        # {"base": its configuration, "change": in words} for an ablation's run

    @property
    def tokens_per_sec(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else float("nan")

    @property
    def best(self) -> dict | None:
        return min(self.points, key=lambda point: point["val_nats"]) if self.points else None

    def to_dict(self) -> dict:
        return {"name": self.name, "configuration": self.configuration.name,
                "settings": self.configuration.settings(), "describe": self.configuration.describe(),
                "budget_minutes": self.budget_minutes, "parameters": self.parameters,
                "tokens_per_sec": self.tokens_per_sec, "train_tokens": self.train_tokens,
                "train_seconds": self.train_seconds, "wall_seconds": self.wall_seconds,
                "passes_begun": self.passes, "diverged": self.diverged, "best": self.best,
                "ablation": self.ablation, "train_flags": train_flags(self.configuration), "points": self.points}


def train_within(configuration: Configuration, minutes: float, text: dict, args) -> RunResult:
    """Train one configuration for ``minutes`` of wall time, scoring the held-out text as it goes."""
    model = configuration.model(len(text["vocab"]))
    parameters = sum(int(np.prod(shape)) for shape in model.param_shapes().values())
    options = {"dropout_seed": args.seed} if model.draws_masks else {}
    params = init_params(model, args.seed, init=configuration.init, forget_bias=configuration.forget_bias)
    backend = backends.create(args.backend, params, model, device=args.device, dtype=args.dtype, **options)
    loader = SeqDataLoader(text["train"], configuration.batch_size, configuration.num_steps,
                           configuration.sampling, seed=args.seed)
    result = RunResult(f"{configuration.name} ({minutes:g}-minute run)", configuration, minutes, parameters)
    print(f"-> {result.name}: {configuration.describe()}, {parameters:,} parameters", flush=True)
    budget = Budget(minutes * 60)
    rounds = WallClockRounds(loader, budget, interval=budget.seconds / args.evaluations)
    # the budget, not a number of epochs, ends the run: epochs is only an upper bound train() needs
    config = WallClockTrainConfig(epochs=10**9, lr=configuration.lr, batch_size=configuration.batch_size,
                                  num_steps=configuration.num_steps, sampling=configuration.sampling,
                                  clip=CLIP, seed=args.seed, optimizer=configuration.optimizer,
                                  lr_schedule=configuration.lr_schedule, warmup=configuration.warmup,
                                  budget=budget)

    def on_round(stats) -> None:
        budget.evaluation_seconds = time.perf_counter() - rounds.round_ended_at
        result.train_tokens += stats.tokens
        result.train_seconds += stats.seconds
        result.points.append({"seconds": budget.elapsed(), "val_nats": math.log(stats.val_perplexity),
                              "train_nats": math.log(stats.perplexity), "lr": stats.lr,
                              "tokens": result.train_tokens,
                              "epochs": result.train_tokens / len(text["train"])})
        if stats.is_best:
            result.best_params = backend.get_params()

    # The budget ends the run through the rounds, not through train()'s should_stop: should_stop would
    # cut a round short without scoring it, so the minutes after the last evaluation would be spent and
    # never seen. Instead the round ends when no training time is left, train() scores it, and
    # stop_when ends the run after that evaluation, the last point of the curve.
    budget.start()
    try:
        train(backend, rounds, config, on_epoch=on_round, validation=text["heldout"], eval_every=1,
              best_by="val", stop_when=lambda stats: budget.training_left() <= 0)
    except TrainingDiverged as err:
        result.diverged = f"the loss became {err.loss} after {budget.elapsed():.0f} s"
    result.wall_seconds, result.passes = budget.elapsed(), rounds.passes
    best = result.best
    print(f"   best held-out {best['val_nats']:.3f} nats/char at {best['seconds'] / 60:.1f} min, "
          f"{result.tokens_per_sec:,.0f} tokens/s" if best else f"   no evaluation ({result.diverged})", flush=True)
    return result


def save_best_weights(result: RunResult, text: dict, runs: Path) -> Path | None:
    """The run's best weights as a checkpoint directory, for ``scratchrnn generate`` to read later."""
    if result.best_params is None:
        return None
    directory = best_weights_dir(result.configuration.name, result.budget_minutes, runs)
    info = {"configuration": result.configuration.settings(), "best": result.best,
            "budget_minutes": result.budget_minutes, "script": "scripts/shakespeare.py"}
    save_checkpoint(directory, Checkpoint(result.best_params, text["vocab"],
                                          result.configuration.model(len(text["vocab"])), "raw", info=info))
    return directory


def best_weights_dir(configuration_name: str, budget_minutes: float, runs: Path) -> Path:
    return runs / f"{configuration_name}-{budget_minutes:g}min"


def samples_of(run: dict, text: dict, args) -> str:
    """A sampled continuation of the prompt by a run's best weights (dropout is off when generating),
    read from where ``save_best_weights`` put them."""
    ckpt = load_checkpoint(best_weights_dir(run["configuration"], run["budget_minutes"], args.runs))
    backend = backends.create(args.backend, ckpt.params, ckpt.model, device=args.device, dtype=args.dtype)
    decoding = Decoding("sample", temperature=args.temperature, seed=args.seed)
    return predict(backend, text["vocab"], args.prompt, args.sample_chars, cleaning="raw", decoding=decoding)


# -- the whole comparison -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="only this configuration (repeatable); the others are not trained")
    parser.add_argument("--long", default="best", metavar="NAME",
                        help="which configuration gets the long budget: 'best' (the lowest short-budget "
                             "loss), a name, or 'none'")
    parser.add_argument("--budget-minutes", nargs=2, type=float, default=[g[0] for g in GOALS],
                        metavar=("SHORT", "LONG"), help="the two budgets (the goals': 10 and 30 minutes)")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply both budgets (0.01 for a smoke test of a few seconds per run)")
    parser.add_argument("--evaluations", type=int, default=EVALUATIONS_PER_RUN, help="points per curve")
    parser.add_argument("--hidden", type=int, default=None, help="every configuration with this many "
                        "hidden units (a smoke test); default: the table's")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--sample-chars", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results",
                        help="where shakespeare.{md,json,png} are written")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "shakespeare",
                        help="where each run's best weights are saved (scratchrnn generate DIR reads them)")
    parser.add_argument("--ablation", metavar="NAME", default=None,
                        help="then train NAME ('best': the lowest short-budget loss) with each technique of "
                             "docs/regularization.md taken away or added, for the short budget")
    parser.add_argument("--append", action="store_true",
                        help="keep the runs of the record already in --out, and add these runs to them")
    args = parser.parse_args(argv)
    names = [c.name for c in configurations()]
    named = [args.long, args.ablation or "none"]
    for name in (args.only or []) + [name for name in named if name not in ("best", "none")]:
        if name not in names:
            parser.error(f"no configuration {name!r}; the table has {', '.join(names)}")
    if args.budget_scale <= 0 or min(args.budget_minutes) <= 0 or args.evaluations < 1:
        parser.error("budgets, --budget-scale and --evaluations must be positive")
    return args


def load_text(path: str) -> dict:
    """The raw characters, the last 10% held out: what ``scratchrnn train --data PATH`` trains on."""
    corpus, vocab = load_corpus(path, None, cleaning="raw")
    train_ids, heldout = split_heldout(corpus, DEFAULT_VAL_FRACTION)
    return {"name": Path(path).name, "train": train_ids, "heldout": heldout, "vocab": vocab}


def samples_of_best(runs: list[dict], text: dict, args) -> dict:
    """Text sampled by the run that went lowest and, beside it, by the baseline (what the
    configurations changed), each from its best weights."""
    scored = [run for run in runs if run["best"] is not None]
    if not scored:
        return {}
    best = min(scored, key=lambda run: run["best"]["val_nats"])
    samples = {best["name"]: samples_of(best, text, args)}
    baseline = next((run for run in scored if run["configuration"] == BASELINE and not run.get("ablation")), None)
    if baseline is not None and best["configuration"] != BASELINE:
        samples[baseline["name"]] = samples_of(baseline, text, args)
    return samples


def earlier_runs(args, text: dict) -> list[dict]:
    """With --append, the runs of the record in --out (of the same text, backend and budgets' scale)."""
    path = args.out / "shakespeare.json"
    if not args.append or not path.exists():
        return []
    earlier = json.loads(path.read_text())
    same = (earlier["data"]["train_tokens"] == len(text["train"]) and earlier["backend"] == args.backend
            and earlier["budget_scale"] == args.budget_scale)
    if not same:
        raise SystemExit(f"--append: {path} was measured on other text, another backend or another --budget-scale")
    return earlier["runs"]


def pick(name: str, runs: list[dict], minutes: float, table: list[Configuration]) -> Configuration | None:
    """The configuration ``name`` names, or for "best" the one whose short run went lowest."""
    if name == "best":
        short = [run for run in runs if run["best"] and not run.get("ablation")
                 and abs(run["budget_minutes"] - minutes) < 1e-9]
        if not short:
            return None
        name = min(short, key=lambda run: run["best"]["val_nats"])["configuration"]
    return next((c for c in table if c.name == name), None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    short, long = (minutes * args.budget_scale for minutes in args.budget_minutes)
    load_before = round(os.getloadavg()[0], 2)
    started = datetime.datetime.now(datetime.timezone.utc)
    command = shlex.join([".venv/bin/python", "scripts/shakespeare.py", *(sys.argv[1:] if argv is None else argv)])
    text = load_text(args.data)
    earlier = earlier_runs(args, text)
    results: list[RunResult] = []
    table = configurations(args.hidden)

    def runs() -> list[dict]:
        return earlier + [result.to_dict() for result in results]

    def train_and_keep(configuration: Configuration, minutes: float, ablation: dict | None = None) -> None:
        results.append(train_within(configuration, minutes, text, args))
        results[-1].ablation = ablation
        save_best_weights(results[-1], text, args.runs)
        save({})

    def save(samples: dict) -> list[Path]:
        rec = shakespeare_report.record(args, runs(), samples, text, command=command, started=started,
                                        load_average=[load_before, round(os.getloadavg()[0], 2)],
                                        budgets=(short, long), goals=GOALS)
        return shakespeare_report.write(rec, args.out)

    # the record is rewritten after every run: a session cut short still leaves what it measured
    for configuration in table:
        if not args.only or configuration.name in args.only:
            train_and_keep(configuration, short)
    if args.long != "none":
        chosen = pick(args.long, runs(), short, table)
        if chosen is not None:
            train_and_keep(chosen, long)
    if args.ablation:
        base = pick(args.ablation, runs(), short, table)
        if base is not None:
            if not any(run["configuration"] == base.name and abs(run["budget_minutes"] - short) < 1e-9
                       for run in runs()):
                train_and_keep(base, short)
            for change, variant in ablations(base):
                train_and_keep(variant, short, {"base": base.name, "change": change})
    paths = save(samples_of_best(runs(), text, args))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
