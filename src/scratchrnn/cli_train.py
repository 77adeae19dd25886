"""``scratchrnn train``: the command behind the parser that cli.py builds.

Flags become a ``runner.RunConfig`` and one call of ``runner.run``; this module only translates (and
speaks in flag names) and prints what the run did.
"""
from __future__ import annotations

import json
import math
import os

from .errors import RunInterrupted, UserError

EXIT_INTERRUPTED = 130
# what --resume may be given with: the run's own settings come from its checkpoint
_RESUME_FLAGS = {"resume", "epochs", "no_progress", "json", "command", "nproc", "threads"}


def run_config_from(args):
    """The RunConfig that the flags of ``scratchrnn train`` ask for."""
    from .runner import RunConfig
    from .training import TrainConfig

    train = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, num_steps=args.num_steps,
                        sampling=args.sampling, clip=None if args.no_clip else args.clip,
                        detach=not args.no_detach, seed=args.seed, optimizer=args.optimizer,
                        weight_decay=args.weight_decay, lr_schedule=args.lr_schedule, warmup=args.warmup,
                        lr_decay=args.lr_decay, lr_decay_every=args.lr_decay_every or 0,
                        eval_every=args.eval_every or 0)
    model = {"num_hiddens": args.hidden, "activation": args.activation, "embedding": args.embedding,
             "embed_dim": args.embed_dim if args.embedding == "learned" else 0, "cell": args.cell,
             "num_layers": args.layers, "dropout": args.dropout}
    return RunConfig(out=args.resume or args.out or f"runs/{args.backend}-{args.sampling}",
                     backend=args.backend, device=args.device, dtype=args.dtype, data=args.data,
                     cleaning=args.cleaning, max_tokens=args.max_tokens, val_fraction=args.val_fraction,
                     best_by=args.best_by, model=model, init=args.init, forget_bias=args.forget_bias,
                     train=train, checkpoint_every=args.checkpoint_every,
                     predict_every=args.predict_every, prefixes=args.prefix)


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
        from .rundir import RunDirectory
        held = RunDirectory(out).holds_run()
        if held:
            raise UserError(f"{out} already holds a run ({', '.join(held)}); pass --overwrite to replace "
                            f"it, --resume {out} to continue it, or choose another --out")
    if args.resume is not None:
        given = [flag for flag in _given_flags(args) if flag.lstrip("-").replace("-", "_") not in _RESUME_FLAGS]
        if given:
            raise UserError(f"--resume continues a run with the settings it was started with; "
                            f"{', '.join(given)} cannot change them (only --epochs can be raised)")


def _given_flags(args) -> list[str]:
    """The flags whose values differ from the defaults (so: given on the command line)."""
    from .cli import build_parser

    defaults = vars(build_parser().parse_args(["train"]))
    return sorted(f"--{name.replace('_', '-')}" for name, value in vars(args).items()
                  if not name.startswith("_") and value != defaults.get(name))


def cmd_train(args) -> int:
    from . import distributed

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
        _check_torch()
        return distributed.launch(args.nproc, args._argv, args.threads)
    world = distributed.init_world(backend, device, args.threads)
    try:
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
    if args.resume is None:
        return args.backend, args.device
    try:
        with open(os.path.join(args.resume, "last", "config.json"), encoding="utf-8") as f:
            saved = json.load(f)["train_state"]["run"]
        return str(saved["backend"]), str(saved["device"])
    except (OSError, ValueError, KeyError, TypeError):
        return args.backend, args.device


def _check_torch() -> None:
    try:
        import torch.distributed as dist
    except ImportError:
        raise UserError("--nproc needs PyTorch: pip install 'scratchrnn[torch]'") from None
    if not dist.is_available():
        raise UserError("--nproc needs a PyTorch built with torch.distributed")


def _train(args, world) -> int:
    from . import console
    from .runner import run

    out = console.stdout()
    quiet = args.json or not world.is_main

    def say(line: str) -> None:
        # output problems never stop training: a full disk behind a redirection ends the printing only
        try:
            out.print(line)
        except OSError:
            pass
    config = run_config_from(args)
    mode = "resume" if args.resume else ("overwrite" if args.overwrite else "new")
    if args.resume and "--epochs" not in _given_flags(args):
        config.train.epochs = 0           # as many as the run was started with
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
            out.print(json.dumps(summary, ensure_ascii=False))
        else:
            _print_summary(out, outcome, summary)
        out.flush()
    except OSError as err:
        raise UserError(f"training finished and saved in {outcome.out}, but its summary could not be "
                        f"written ({err.strerror or err})") from None
    return 0


def _summary(outcome) -> dict:
    history = outcome.history
    last = history[-1] if history else {}
    scored = [r for r in history if r.get("val_perplexity") is not None]
    best = outcome.state.best
    return {
        "run_dir": str(outcome.out), "backend": outcome.config.backend, "device": outcome.config.device,
        "epochs": len(history), "perplexity": last.get("train_perplexity"),
        "tokens_per_sec": outcome.tokens_per_sec,
        "lowest_perplexity": min(({"epoch": r["epoch"], "perplexity": r["train_perplexity"]} for r in history),
                                 key=lambda item: item["perplexity"], default=None),
        "heldout_perplexity": scored[-1]["val_perplexity"] if scored else None,
        "best": best, "samples": outcome.samples, "plots": [str(p) for p in outcome.plots],
    }


def _print_summary(out, outcome, summary) -> None:
    best = outcome.state.best
    if best is not None and outcome.samples:
        out.print(f"continuations by {outcome.out}/best (epoch {best['epoch']}, {best['by']} perplexity "
                  f"{best['score']:.2f}):")
    for text in outcome.samples.values():
        out.print(text)
    if summary["heldout_perplexity"] is not None:
        scored = [r for r in outcome.history if r.get("val_perplexity") is not None]
        lowest = min(scored, key=lambda r: r["val_perplexity"])
        out.print(f"held-out perplexity {scored[-1]['val_perplexity']:.2f} at the last epoch, lowest "
                  f"{lowest['val_perplexity']:.2f} (epoch {lowest['epoch']})")
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
               "num_layers": "--layers"}


def _in_flag_names(message: str) -> str:
    for field, flag in _FLAG_NAMES.items():
        message = message.replace(field, flag)
    return message
