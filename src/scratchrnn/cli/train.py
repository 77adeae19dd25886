"""``scratchrnn train``: its parser and the command.

Flags (over the values of ``--preset`` and ``--config``, see ``cli.presets``) become a
``runner.RunConfig`` and one call of ``runner.run``; this module only translates (and speaks in flag
names) and prints what the run did.
"""
from __future__ import annotations

import math
import os
import re

from ..backends import BACKENDS
from ..errors import RunInterrupted, UserError
from ..model import ACTIVATIONS, CELLS, EMBEDDINGS, INITS, ModelSettings
from . import regularization
from .common import (EXIT_INTERRUPTED, HelpFormatter, Parser, decay, fraction, max_tokens, non_negative_float,
                     non_negative_int, positive_float, positive_int, thread_count)
from .presets import PRESETS, given_options, with_settings

# what --resume may be given with (dests): the run's own settings come from its checkpoint; these say how
# much longer it trains, what it keeps and shows, where its text went, and how many processes train it
RESUME_OPTIONS = ("epochs", "max_steps", "max_minutes", "keep", "data", "tensorboard", "no_progress", "json",
                  "nproc", "threads")
# the model's options (dests) -> ModelSettings' fields: with --init-from the checkpoint's
_MODEL_OPTIONS = {"cell": "cell", "layers": "num_layers", "hidden": "num_hiddens", "activation": "activation",
                  "embedding": "embedding", "embed_dim": "embed_dim", "dropout": "dropout", "init": "init",
                  "forget_bias": "forget_bias", **regularization.MODEL_OPTIONS}


def add_parser(sub) -> None:
    from ..optim import OPTIMIZERS, SCHEDULES

    resumable = ", ".join(f"--{name.replace('_', '-')}" for name in RESUME_OPTIONS)
    t = sub.add_parser(
        "train", formatter_class=HelpFormatter,
        help="train a model into a run directory (checkpoints, metrics, plot); continue one with --resume",
        description="Train the scratch RNN. Defaults are the chapter's settings on its book; with --data "
                    "the defaults suit a text of one's own (all of it, raw characters, the last 10% held "
                    "out). Writes the run directory DIR: last/ (the newest checkpoint, every "
                    "--checkpoint-every epochs or --checkpoint-every-steps steps), best/ (the best score so "
                    "far, see --best-by), ckpt-eE-sS/ (the versions they point to, named by epochs and "
                    "steps done; --keep N keeps more), metrics.jsonl (a line per epoch as it ends, and per "
                    "evaluation of --eval-every-steps) and perplexity.{png,svg}. Epochs and optimizer steps "
                    "both count: --max-steps and --max-minutes end a run inside an epoch. Ctrl-C stops "
                    "after the current batch, saves last/ and says how to continue (exit status 130); "
                    "--resume DIR continues exactly where the run stopped. The last line printed is the "
                    "chapter's: final training perplexity and tokens/s; the line before it gives the "
                    "lowest training perplexity and its epoch. In float32 on the CPU the numpy and torch "
                    "backends run the step loops of a training step compiled where the package was built "
                    "with a C compiler and the compiled loops beat the framework's own for that cell, "
                    "batch size and instruction set (scratchrnn --version says whether they are built "
                    "and on; SCRATCHRNN_NO_KERNEL=1 turns them off).")
    t.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model: numpy has a hand-written backward pass, and so "
                        "has torch's fast path inside a torch.autograd.Function; the others use their "
                        "framework's autograd")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train (cuda: torch backend with a CUDA GPU)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of parameters and activations")
    t.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="settings of a known configuration, under what the other options give: "
                        + "; ".join(f"{name}: {preset.summary}" for name, preset in PRESETS.items()))
    t.add_argument("--config", metavar="FILE", default=None,
                   help="settings from a TOML file (a JSON one if named *.json), its keys the options' names "
                        "with underscores (hidden = 256, lr_schedule = \"cosine\"; preset = \"char-lstm\" "
                        "too); unknown keys are refused; options on the command line win over it, and it "
                        "over --preset")
    data = t.add_argument_group("data")
    data.add_argument("--data", metavar="PATH", default=None,
                      help="UTF-8 text file to train on (default: the bundled Time Machine)")
    data.add_argument("--cleaning", choices=("chapter", "raw"), default=None,
                      help="chapter: non-letters become spaces, lower case (28-token vocabulary for the "
                           "book); raw: keep every character of the text (control characters other than "
                           "newline, tab and carriage return are dropped). Default: chapter for the "
                           "bundled book, raw for --data")
    data.add_argument("--max-tokens", type=max_tokens, default=None, metavar="N|all",
                      help="use the first N character tokens, or 'all'. Default: 10000 of the bundled "
                           "book (the chapter's), all of --data")
    data.add_argument("--val-fraction", type=fraction, default=None, metavar="F",
                      help="hold out the last F of the tokens and score held-out perplexity on them "
                           "(0: none). Default: 0.1 with --data; for the bundled book, the text right "
                           "after the training slice (as long as the slice), so the chapter's training "
                           "is unchanged and its memorisation shows beside held-out perplexity")
    model = t.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default=ModelSettings.cell,
                       help="rnn: the chapter's (8.5); gru, lstm: the book's gated cells (9.1, 9.2), in "
                            "every backend")
    model.add_argument("--layers", type=positive_int, default=ModelSettings.num_layers,
                       help="cells stacked, each reading the one below (the book's deep RNN, 9.3)")
    model.add_argument("--dropout", type=fraction, default=ModelSettings.dropout, metavar="P",
                       help="dropout between layers and before the output layer while training (off when "
                            "scoring held-out text and generating)")
    model.add_argument("--init", choices=INITS, default=ModelSettings.init,
                       help="the starting weights: book, N(0, 0.01) as the book draws them; scaled, N(0, "
                            "1/fan-in) and a learned embedding N(0, 1), which wide gated models with "
                            "learned embeddings start learning from much sooner")
    model.add_argument("--forget-bias", type=float, default=ModelSettings.forget_bias, metavar="B",
                       help="the LSTM's forget-gate bias at the start (char-rnn uses 1: keep the memory "
                            "until the model learns to forget)")
    model.add_argument("--hidden", type=positive_int, default=ModelSettings.num_hiddens,
                       help="hidden units (of every layer)")
    model.add_argument("--activation", choices=ACTIVATIONS, default=ModelSettings.activation,
                       help="nonlinearity of the rnn cell's hidden state (gated cells use tanh)")
    model.add_argument("--embedding", choices=EMBEDDINGS, default=ModelSettings.embedding,
                       help="onehot: the chapter's one-hot inputs; learned: a trained embedding table")
    model.add_argument("--embed-dim", type=positive_int, default=32,
                       help="width of the learned embedding (only with --embedding learned)")
    regularization.add_arguments(t)
    opt = t.add_argument_group("optimization")
    opt.add_argument("--epochs", type=positive_int, default=500, help="passes over the training tokens")
    opt.add_argument("--max-steps", type=non_negative_int, default=0, metavar="N",
                     help="end the run after N optimizer steps, inside an epoch if need be (last/ then holds "
                          "where it stands); a schedule runs its course over them; 0: --epochs alone")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                     help="update rule: sgd (the chapter's), momentum (0.9), adagrad (min-char-rnn's), "
                          "rmsprop (char-rnn's), adam, adamw (decoupled weight decay); rules and defaults "
                          "as torch.optim's")
    opt.add_argument("--lr", type=positive_float, default=1.0,
                     help="learning rate (the peak of a schedule); 1 suits the chapter's SGD, about 0.002 "
                          "Adam")
    opt.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                     help="constant; step: times --lr-decay every --lr-decay-every epochs; cosine: down to "
                          "a tenth of --lr over the run")
    opt.add_argument("--warmup", type=non_negative_int, default=0, metavar="STEPS",
                     help="optimizer steps of linear warm-up before the schedule (any schedule)")
    opt.add_argument("--lr-decay", type=decay, default=0.5, metavar="F",
                     help="factor of the step schedule")
    opt.add_argument("--lr-decay-every", type=positive_int, default=None, metavar="EPOCHS",
                     help="epochs between two decays of the step schedule (default: a third of --epochs)")
    opt.add_argument("--weight-decay", type=non_negative_float, default=0.0,
                     help="L2 penalty added to the gradients (adamw: decoupled, shrinking the weights)")
    opt.add_argument("--batch-size", type=positive_int, default=32, help="sequences per minibatch")
    opt.add_argument("--num-steps", type=positive_int, default=35,
                     help="time steps per sequence (how far back gradients flow when detached)")
    opt.add_argument("--sampling", choices=("sequential", "random"), default="sequential",
                     help="sequential: batches continue each other and the state is carried (detached); "
                          "random: shuffled subsequences, state reset for every batch")
    clip = opt.add_mutually_exclusive_group()
    clip.add_argument("--clip", type=positive_float, default=1.0, metavar="THETA",
                      help="clip gradients to global L2 norm THETA")
    clip.add_argument("--no-clip", action="store_true", help="do not clip gradients (may diverge)")
    opt.add_argument("--no-detach", action="store_true",
                     help="sequential sampling only: do not detach the state between batches, so "
                          "gradients flow back to the start of the epoch; time and memory then grow "
                          "with the number of batches in an epoch")
    opt.add_argument("--seed", type=non_negative_int, default=0,
                     help="seed of the initial weights and the batch order")
    run = t.add_argument_group("run directory and output")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", default=None,
                       help="run directory (default: runs/<backend>-<sampling>)")
    where.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the run in DIR from its last/ checkpoint, with its own settings; "
                            f"only {resumable} may be given too: --epochs and --max-steps to train longer "
                            "(never shorter), --data for a text that moved (its SHA-256 must be the "
                            "run's)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in DIR (its checkpoints, metrics and plots); "
                          "otherwise refused")
    run.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                     help="score held-out perplexity every N epochs and after the last (default: every "
                          "epochs/50, rounded down: 50 times in a run of 500 epochs, every epoch in one of "
                          "fewer than 100)")
    run.add_argument("--best-by", choices=("train", "val"), default=None,
                     help="which perplexity picks best/: val where text of --data is held out, train "
                          "otherwise (the chapter's point is to fit its 10,000 characters)")
    run.add_argument("--checkpoint-every", type=positive_int, default=1, metavar="N",
                     help="save last/ every N epochs: a kill loses at most the epochs since")
    run.add_argument("--eval-every-steps", type=non_negative_int, default=0, metavar="N",
                     help="inside epochs too, every N optimizer steps: score the held-out text, print a line "
                          "with it and the training perplexity since the last one, record both in "
                          "metrics.jsonl, and save best/ when it is the best by val; 0: at epoch ends only")
    run.add_argument("--checkpoint-every-steps", type=non_negative_int, default=0, metavar="N",
                     help="inside epochs too, save last/ every N optimizer steps (with the state carried into "
                          "the next batch): a kill loses at most N steps; 0: at epoch ends only")
    run.add_argument("--keep", type=non_negative_int, default=0, metavar="N",
                     help="keep the N newest checkpoints (ckpt-eE-sS/) besides those best/ and last/ name")
    run.add_argument("--max-minutes", type=positive_float, default=None, metavar="M",
                     help="a time budget: after M minutes of this process's training, stop after the current "
                          "batch, save last/, print the summary and exit 0; --resume continues (with a new "
                          "budget if given)")
    run.add_argument("--tensorboard", action="store_true",
                     help="write TensorBoard event files to DIR/tensorboard: perplexities, loss in nats, "
                          "learning rate and tokens/s by optimizer step (needs tensorboardX: pip install "
                          "tensorboardX, or pip install '.[tensorboard]' in a clone of scratchrnn)")
    run.add_argument("--init-from", metavar="RUN_DIR|CKPT", default=None,
                     help="start a new run from trained weights: a checkpoint directory, or a run directory's "
                          "best/; the model and the cleaning are the checkpoint's (model options that differ "
                          "are refused), the text must use only characters of its vocabulary, and the "
                          "optimizer and the counts of epochs and steps start afresh")
    run.add_argument("--predict-every", type=non_negative_int, default=10, metavar="N",
                     help="print a greedy continuation of the first prefix every N epochs (0: never)")
    run.add_argument("--prefix", action="append", default=None, metavar="TEXT",
                     help="prefixes continued during and after training (repeatable; default: "
                          "'time traveller' and 'traveller' for the bundled book, the first words of "
                          "--data otherwise)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    ranks = t.add_argument_group(
        "several processes (data parallel, torch.distributed)",
        "Every rank trains on its share of the rows of each batch (--batch-size is the whole batch, a "
        "multiple of the ranks) and the gradients are averaged before clipping: N ranks take the "
        "steps one process would. Rank 0 alone writes the run directory and prints. Backends torch "
        "(gloo on the CPU, NCCL with --device cuda, one GPU per rank) and numpy (gloo). Several "
        "machines: start `torchrun --nnodes M --node-rank I --nproc-per-node N --master-addr HOST "
        "--master-port PORT -m scratchrnn train ...` on each (docs/distributed.md).")
    ranks.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                       help="train on N processes of this machine (starts them as torchrun --standalone "
                            "does); may differ from the N a run was saved with when resuming")
    ranks.add_argument("--threads", type=thread_count, default=None, metavar="T",
                       help="threads of each rank (default: this machine's cores divided by its ranks, at "
                            "least 1; one process alone keeps what its libraries choose)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object with the results on stdout, nothing else")
    return t


def _parsers():
    """A fresh parser of the command and its train parser (presets re-parse the command line with it)."""
    parser = Parser(prog="scratchrnn")
    train = add_parser(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    return parser, train


def _run_config_from(args):
    """The RunConfig that the flags of ``scratchrnn train`` ask for; ValueError names a field that
    the flags set to a value the model cannot have."""
    from ..run_config import RunConfig
    from ..training import TrainConfig

    train = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, num_steps=args.num_steps,
                        sampling=args.sampling, clip=None if args.no_clip else args.clip,
                        detach=not args.no_detach, seed=args.seed, optimizer=args.optimizer,
                        weight_decay=args.weight_decay, lr_schedule=args.lr_schedule, warmup=args.warmup,
                        lr_decay=args.lr_decay, lr_decay_every=args.lr_decay_every or 0,
                        eval_every=args.eval_every or 0, max_steps=args.max_steps,
                        eval_every_steps=args.eval_every_steps)
    model = ModelSettings(num_hiddens=args.hidden, activation=args.activation, embedding=args.embedding,
                          embed_dim=args.embed_dim if args.embedding == "learned" else 0, cell=args.cell,
                          num_layers=args.layers, dropout=args.dropout, init=args.init,
                          forget_bias=args.forget_bias, **regularization.settings(args))
    return RunConfig(out=args.resume or args.out or f"runs/{args.backend}-{args.sampling}",
                     backend=args.backend, device=args.device, dtype=args.dtype, data=args.data,
                     cleaning=args.cleaning, max_tokens=args.max_tokens, val_fraction=args.val_fraction,
                     best_by=args.best_by, model=model, train=train, checkpoint_every=args.checkpoint_every,
                     predict_every=args.predict_every, prefixes=args.prefix,
                     checkpoint_every_steps=args.checkpoint_every_steps, keep=args.keep,
                     max_minutes=args.max_minutes, tensorboard=args.tensorboard, init_from=args.init_from)


def _check_flags(args) -> None:
    """Combinations the parser cannot refuse by itself, in flag names."""
    if args.out is not None and not args.out.strip():
        raise UserError("--out is empty: name a directory (or leave --out out for the default)")
    if args.no_detach and args.sampling == "random":
        raise UserError("--no-detach needs --sampling sequential (random batches reset the state anyway)")
    if args.forget_bias and args.cell != "lstm":
        raise UserError(f"--forget-bias is for --cell lstm, not {args.cell}")
    if args.best_by == "val" and args.val_fraction == 0:
        raise UserError("--best-by val needs held-out text: drop --val-fraction 0")
    out = args.out or f"runs/{args.backend}-{args.sampling}"
    if args.resume is None and not args.overwrite and os.path.isdir(out):
        from ..rundir import RunDirectory
        held = RunDirectory(out).holds_run()
        if held:
            raise UserError(f"{out} already holds a run ({', '.join(held)}); pass --overwrite to replace "
                            f"it, --resume {out} to continue it, or choose another --out")
    if args.resume is not None and args.init_from is not None:
        raise UserError("--init-from starts a new run; --resume continues one: give one of them")
    if args.resume is not None:
        given = sorted(f"--{name.replace('_', '-')}" for name in given_options(args._argv, _parsers)
                       if name not in (*RESUME_OPTIONS, "resume"))
        if given:
            raise UserError(f"--resume continues a run with the settings it was started with; "
                            f"{', '.join(given)} cannot change them (--epochs and --max-steps can be raised)")
    if args.init_from is not None:
        _check_init_from(args)
    if args.tensorboard:
        from ..watch import TENSORBOARD_INSTALL, TENSORBOARD_PACKAGE, check_tensorboard_writer
        try:
            check_tensorboard_writer()
        except UserError:
            raise UserError(f"--tensorboard needs the {TENSORBOARD_PACKAGE} package, which is not installed: "
                            f"{TENSORBOARD_INSTALL}") from None


def _check_init_from(args) -> None:
    """--init-from takes the checkpoint's model and cleaning: options given that differ are refused."""
    from ..checkpoint import load_checkpoint

    start = load_checkpoint(args.init_from, "best")
    model = start.model.to_dict()
    model.update(init="book", forget_bias=0.0)     # the weights are trained: nothing initialises them
    for name in sorted(given_options(args._argv, _parsers) & set(_MODEL_OPTIONS)):
        if getattr(args, name) != model[_MODEL_OPTIONS[name]]:
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{flag} {getattr(args, name)} is not the model of --init-from {args.init_from} "
                            f"({_MODEL_OPTIONS[name]} {model[_MODEL_OPTIONS[name]]}): it trains on as it "
                            f"was built; leave {flag} out")
    if args.cleaning is not None and args.cleaning != start.cleaning:
        raise UserError(f"--cleaning {args.cleaning} is not the {start.cleaning} cleaning the weights of "
                        f"--init-from {args.init_from} were trained with; leave --cleaning out")


def run(args) -> int:
    from .. import distributed

    args, args._settings = with_settings(args, _parsers)
    _check_flags(args)
    backend, device = _backend_and_device(args)
    world = distributed.world_from_env()
    if world.distributed or "LOCAL_WORLD_SIZE" in os.environ:
        if args.nproc not in (1, world.local_size):
            raise UserError(f"--nproc {args.nproc} under torchrun, which started {world.local_size} "
                            f"rank(s) here: leave --nproc out (torchrun's --nproc-per-node decides)")
    elif args.nproc > 1:
        if backend not in distributed.BACKENDS:
            raise UserError(f"--nproc needs --backend {' or '.join(distributed.BACKENDS)}; the {backend} "
                            f"backend trains in one process")
        if args.resume is None and args.batch_size % args.nproc:
            raise UserError(f"--batch-size {args.batch_size} is not a multiple of --nproc {args.nproc}: every "
                            f"process reads an equal share of each batch")
        distributed.require_torch("--nproc")
        return distributed.launch(args.nproc, args._argv, args.threads)
    try:
        # what init_world refuses (SCRATCHRNN_DIST_TIMEOUT) every rank refuses: rank 0 says it, once
        world = distributed.init_world(backend, device, args.threads)
        return _train(args, world)
    except UserError as err:
        if world.is_main or isinstance(err, distributed.PeerLost):
            raise
        return 2              # rank 0 says what went wrong, once
    except RunInterrupted:
        if world.is_main:
            raise
        return EXIT_INTERRUPTED
    finally:
        distributed.shutdown_world()


def _backend_and_device(args) -> tuple[str, str]:
    """The backend and device a run trains with: the flags', or for --resume the saved run's (read
    where the directory can be read here; on a machine without it, rank 0 checks)."""
    from ..saved_run import saved_backend_and_device

    if args.resume is None:
        return args.backend, args.device
    return saved_backend_and_device(args.resume) or (args.backend, args.device)


def _train(args, world) -> int:
    from .. import console
    from ..runner import run

    out = console.stdout()
    quiet = args.json or not world.is_main

    def say(line: str) -> None:
        # output problems never stop training: a full disk behind a redirection ends the printing only
        try:
            out.print(line, flush=True)      # out before the progress bar draws on stderr
        except OSError:
            pass
    try:
        config = _run_config_from(args)
    except ValueError as err:
        raise UserError(_in_flag_names(str(err))) from None
    mode = "resume" if args.resume else ("overwrite" if args.overwrite else "new")
    if args.resume and "epochs" not in given_options(args._argv, _parsers):
        config.train.epochs = 0           # as many as the run was started with
    if not quiet and args._settings is not None:
        say(f"note: {args._settings}")
    elif not quiet and args.data is not None and args.resume is None and args.init_from is None:
        say(f"note: no --preset: the chapter's RNN (--preset chapter) with the defaults for a text of one's "
            f"own (all of it, raw characters, its last 10% held out); --preset char-lstm trains "
            f"{PRESETS['char-lstm'].summary.split(' (')[0]}")
    try:
        outcome = run(config, mode, say=(lambda line: None) if quiet else say,
                      progress=not (args.no_progress or quiet), world=world)
    except UserError as err:
        raise UserError(_in_flag_names(str(err))) from None
    if not world.is_main:
        return EXIT_INTERRUPTED if outcome.status == "interrupted" else 0
    if outcome.status == "interrupted":
        for note in outcome.notes:
            console.stderr().print(f"scratchrnn: {note}")
        return EXIT_INTERRUPTED
    summary = _summary(outcome)
    try:
        if quiet:
            out.print(console.strict_json(summary))
        else:
            _print_summary(out, outcome, summary)
        out.flush()
    except OSError as err:
        raise UserError(f"training finished and saved in {outcome.out}, but its summary could not be "
                        f"written ({err.strerror or err})") from None
    return 0


def _summary(outcome) -> dict:
    history = outcome.history
    # the latest line of metrics.jsonl, an epoch's or an evaluation's inside one (a run that ended inside
    # an epoch, after evaluations there, ends with what they measured)
    last = outcome.records[-1] if outcome.records else (history[-1] if history else {})
    scored = [r for r in (outcome.records or history) if r.get("val_perplexity") is not None]
    best = outcome.state.best
    return {
        "run_dir": str(outcome.out), "backend": outcome.config.backend, "device": outcome.config.device,
        "epochs": len(history), "steps": outcome.state.step, "stopped_by": outcome.stopped_by,
        "perplexity": last.get("train_perplexity"), "tokens_per_sec": outcome.tokens_per_sec,
        "lowest_perplexity": min(({"epoch": r["epoch"], "perplexity": r["train_perplexity"]} for r in history),
                                 key=lambda item: item["perplexity"], default=None),
        "heldout_perplexity": scored[-1]["val_perplexity"] if scored else None,
        "best": best, "samples": outcome.samples, "plots": [str(p) for p in outcome.plots],
    }


def _print_summary(out, outcome, summary) -> None:
    best = outcome.state.best
    if outcome.stopped_by == "max_minutes":
        out.print(outcome.notes[-1])
    elif outcome.stopped_by == "max_steps":
        out.print(f"reached --max-steps {outcome.config.train.max_steps:,} in {outcome.state.where()}")
    if best is not None and outcome.samples:
        step = f", step {best['step']}" if "step" in best else ""
        out.print(f"continuations by {outcome.out}/best (epoch {best['epoch']}{step}, {best['by']} perplexity "
                  f"{best['score']:.2f}):")
    for text in outcome.samples.values():
        out.print(text)
    if summary["heldout_perplexity"] is not None:
        scored = [r for r in outcome.records if r.get("val_perplexity") is not None]
        lowest = min(scored, key=lambda r: r["val_perplexity"])
        where = f"step {lowest['step']}" if lowest.get("kind") else f"epoch {lowest['epoch']}"
        out.print(f"held-out perplexity {summary['heldout_perplexity']:.2f} at the end, lowest "
                  f"{lowest['val_perplexity']:.2f} ({where})")
    plot = f", plot {outcome.plots[0]}" if outcome.plots else ""
    out.print(f"run directory {outcome.out} (best/, last/, metrics.jsonl{plot})")
    lowest = summary["lowest_perplexity"]
    if lowest is not None:
        out.print(f"lowest perplexity {lowest['perplexity']:.2f}, at epoch {lowest['epoch']}")
    perplexity = summary["perplexity"]
    speed = summary["tokens_per_sec"]
    if perplexity is not None and math.isfinite(speed):
        out.print(f"perplexity {perplexity:.1f}, {speed:.1f} tokens/sec on {outcome.config.device} "
                  f"({outcome.config.backend})")


# field names of the core's messages, as the flags a user of the command line knows them by
_FLAG_NAMES = {"val_fraction": "--val-fraction", "batch_size": "--batch-size", "num_steps": "--num-steps",
               "num_hiddens": "--hidden", "best_by": "--best-by", "max_tokens": "--max-tokens",
               "num_layers": "--layers", "max_steps": "--max-steps", "max_minutes": "--max-minutes",
               "its new path as data": "its new path with --data NEW_PATH", "without data": "without --data",
               "tensorboard event files need": "--tensorboard needs", "embed_dim": "--embed-dim",
               "forget_bias": "--forget-bias", "checkpoint_every_steps": "--checkpoint-every-steps",
               "checkpoint_every": "--checkpoint-every", "predict_every": "--predict-every",
               "lr_decay_every": "--lr-decay-every", "eval_every_steps": "--eval-every-steps",
               "eval_every": "--eval-every", **regularization.FLAG_NAMES}
_FLAG_PATTERNS = ((re.compile(r"^epochs (\d+) is below"), r"--epochs \1 is below"),
                  # fields named by a plain word, which other messages use as a word too: renamed only
                  # where a message starts by naming one ("seed must be ...")
                  (re.compile(r"^(seed|warmup|epochs|keep) must be"), r"--\1 must be"))


def _in_flag_names(message: str) -> str:
    for field, flag in _FLAG_NAMES.items():
        message = message.replace(field, flag)
    for pattern, flag in _FLAG_PATTERNS:
        message = pattern.sub(flag, message)
    return message
