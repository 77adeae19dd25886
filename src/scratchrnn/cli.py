"""Command line: ``scratchrnn train`` and ``scratchrnn generate``.

Every mistake a user can make (a bad option value, a missing file, a corpus too short, a damaged
checkpoint, a framework not installed) ends with one line on stderr and exit status 2, before
anything on disk is touched.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np

from . import __version__, kernels
from .backends import BACKENDS
from .errors import TrainingDiverged, UserError

EXIT_USER_ERROR = 2


# -- argument types ------------------------------------------------------------------------------------
def _checked(convert, accept, expected: str):
    """An argparse type: ``convert`` the text, then refuse values ``accept`` rejects, naming ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return value
    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _checked(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_fraction = _checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _max_tokens(text: str) -> int | None:
    if text.lower() == "all":
        return None
    return _positive_int(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line and exit status 2 like every other user error."""

    def error(self, message):
        # the usage block would bury the one line that matters; --help is one command away
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scratchrnn",
        description="Character-level RNN language models from scratch (Dive into Deep Learning, 8.5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"scratchrnn {__version__} (compiled kernels: {kernels.status()})",
                        help="show the version, and whether the compiled kernels (greedy generation, the "
                             "recurrences of a training step) are built and on, then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="train a model and save a checkpoint, plots and metrics",
        description="Train the scratch RNN. Defaults are the chapter's settings. Writes DIR/checkpoint/ "
                    "(weights.npz + config.json), DIR/metrics.json and DIR/perplexity.{png,svg}. The "
                    "line before the last gives the lowest perplexity and its epoch; the last line, "
                    "the final training perplexity and tokens/s. In float32 on the CPU the numpy and "
                    "torch backends run the step-by-step loops of each training step compiled, where "
                    "the package was built with a C compiler (scratchrnn --version says; "
                    "SCRATCHRNN_NO_KERNEL=1 turns it off).")
    t.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model: numpy has a hand-written backward pass, and so "
                        "has torch's fast path inside a torch.autograd.Function; the others use their "
                        "framework's autograd")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train (cuda: torch backend with a CUDA GPU)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of parameters and activations")
    t.add_argument("--data", metavar="PATH", default=None,
                   help="UTF-8 text file to train on (default: the bundled Time Machine)")
    t.add_argument("--cleaning", choices=("chapter", "raw"), default="chapter",
                   help="chapter: non-letters become spaces, lower case (28-token vocabulary for the "
                        "book); raw: keep every character of the text")
    t.add_argument("--max-tokens", type=_max_tokens, default=10000, metavar="N|all",
                   help="train on the first N character tokens (the chapter uses 10000), or 'all'")
    t.add_argument("--val-fraction", type=_fraction, default=0.0, metavar="F",
                   help="hold out the last F of the tokens and report validation perplexity on them")
    t.add_argument("--epochs", type=_positive_int, default=500, help="passes over the training tokens")
    t.add_argument("--lr", type=_positive_float, default=1.0, help="SGD learning rate")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="sequences per minibatch")
    t.add_argument("--num-steps", type=_positive_int, default=35,
                   help="time steps per sequence (how far back gradients flow when detached)")
    t.add_argument("--hidden", type=_positive_int, default=512, help="hidden units")
    t.add_argument("--sampling", choices=("sequential", "random"), default="sequential",
                   help="sequential: batches continue each other and the state is carried (detached); "
                        "random: shuffled subsequences, state reset for every batch")
    t.add_argument("--activation", choices=("tanh", "relu"), default="tanh",
                   help="nonlinearity of the hidden state")
    t.add_argument("--embedding", choices=("onehot", "learned"), default="onehot",
                   help="onehot: the chapter's one-hot inputs; learned: a trained embedding table")
    t.add_argument("--embed-dim", type=_positive_int, default=32,
                   help="width of the learned embedding (only with --embedding learned)")
    clip = t.add_mutually_exclusive_group()
    clip.add_argument("--clip", type=_positive_float, default=1.0, metavar="THETA",
                      help="clip gradients to global L2 norm THETA")
    clip.add_argument("--no-clip", action="store_true", help="do not clip gradients (may diverge)")
    t.add_argument("--no-detach", action="store_true",
                   help="sequential sampling only: do not detach the state between batches, so "
                        "gradients flow back to the start of the epoch; time and memory then grow "
                        "with the number of batches in an epoch")
    t.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the batch order")
    t.add_argument("--out", metavar="DIR", default=None,
                   help="run directory (default: runs/<backend>-<sampling>)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint already in DIR (otherwise refused)")
    t.add_argument("--checkpoint-every", type=_positive_int, default=50, metavar="N",
                   help="also save the checkpoint every N epochs, so a diverged or interrupted run "
                        "keeps its last good weights")
    t.add_argument("--predict-every", type=_non_negative_int, default=10, metavar="N",
                   help="print a greedy continuation of 'time traveller' every N epochs (0: never)")
    t.add_argument("--prefix", action="append", default=None, metavar="TEXT",
                   help="prefixes continued after training (repeatable; default: 'time traveller' "
                        "and 'traveller')")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true",
                   help="print one JSON object with the results on stdout, nothing else")

    g = sub.add_parser(
        "generate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="continue a prefix with a trained model",
        description="Load a checkpoint (written by any backend) and continue one or more prefixes. "
                    "Greedy decoding in float32 of up to 512 prefixes runs on a small compiled decoder "
                    "when the package was built with a C compiler (scratchrnn --version says; "
                    "SCRATCHRNN_NO_KERNEL=1 turns it off); otherwise in the backend's own loop. Both "
                    "compute the same sums in a different order, so their texts part only where two "
                    "characters tie to within float32 rounding.")
    g.add_argument("checkpoint", metavar="CHECKPOINT_DIR",
                   help="a checkpoint directory, or a run directory that holds checkpoint/")
    g.add_argument("--prefix", action="append", default=None, metavar="TEXT",
                   help="text to continue; repeat to continue several at once as one batch "
                        "(default: 'time traveller'). It is cleaned like the training text")
    g.add_argument("--num-chars", type=_non_negative_int, default=50, help="characters to generate")
    g.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model (any backend reads any checkpoint)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    g.add_argument("--strategy", choices=("greedy", "sample"), default="greedy",
                   help="greedy: most likely character (the chapter); sample: draw from the model")
    temp = g.add_mutually_exclusive_group()
    temp.add_argument("--temperature", type=_positive_float, default=1.0,
                      help="sample from softmax(logits / T): below 1 sharper, above 1 flatter")
    temp.add_argument("--alpha", type=_positive_float, default=None,
                      help="the chapter's exercise form q ~ P^alpha, i.e. temperature 1/alpha")
    g.add_argument("--top-k", type=_positive_int, default=None, help="sample only among the K likeliest")
    g.add_argument("--top-p", type=float, default=None,
                   help="sample only among the likeliest characters whose mass reaches P")
    g.add_argument("--seed", type=int, default=None, help="seed for sampling (same seed, same text)")
    g.add_argument("--stream", action="store_true",
                   help="print characters as they are generated (one prefix only)")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    from .experiments import EXPERIMENTS, FULL, QUICK, describe_experiments
    e = sub.add_parser(
        "experiment", formatter_class=_ExperimentHelpFormatter,
        help="run one of the chapter's exercises and write a Markdown report with plots",
        description=textwrap.fill(
            "Answer one of the chapter's six exercises by measurement: train the models it needs "
            "(sequential batches, SGD, the chapter's Time Machine unless --data), then write "
            "DIR/report.md (tables, PNG plots beside it) and DIR/results.json. A run that diverges is "
            "recorded in the report ('diverged at epoch N'), it does not stop the experiment. Full "
            "runs take minutes each; --quick takes seconds.", width=88),
        epilog="experiments:\n" + describe_experiments())
    e.add_argument("name", metavar="NAME", choices=tuple(EXPERIMENTS),
                   help="which experiment: " + ", ".join(EXPERIMENTS))
    e.add_argument("--out", metavar="DIR", default=None,
                   help="where the report goes (default: runs/experiments/NAME); created if missing, "
                        "files of an earlier report there are replaced")
    e.add_argument("--quick", action="store_true",
                   help=f"tiny runs ({QUICK.hidden} hidden units, {QUICK.max_tokens} tokens, "
                        f"{QUICK.epochs} epochs): checks that the experiment runs, in seconds; the "
                        f"numbers mean little")
    e.add_argument("--backend", choices=BACKENDS, default="numpy", help="framework that trains the models")
    e.add_argument("--data", metavar="PATH", default=None,
                   help="UTF-8 text to train on instead of the Time Machine; required by other-text, "
                        "where it is the text compared with the Time Machine")
    e.add_argument("--epochs", type=_positive_int, default=None,
                   help=f"epochs of every run (default: the experiment's own length, "
                        f"{QUICK.epochs} with --quick)")
    e.add_argument("--hidden", type=_positive_int, default=None,
                   help=f"hidden units of the runs (default: {FULL.hidden}, {QUICK.hidden} with --quick); "
                        f"the hyperparams sweep uses half and twice this too")
    e.add_argument("--seed", type=int, default=0, help="seed of the weights, batches and sampling")
    return parser


class _ExperimentHelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                               argparse.RawDescriptionHelpFormatter):
    """Option defaults in the help, and the list of experiments kept one per line."""

    def _get_help_string(self, action):
        # an option whose default is "not given" explains its default in its own words
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def cmd_experiment(args) -> int:
    from .experiments import run_experiment

    try:
        report = run_experiment(args.name, args.out, quick=args.quick, backend=args.backend,
                                data=args.data, seed=args.seed, epochs=args.epochs, hidden=args.hidden)
    except KeyboardInterrupt:
        print("scratchrnn: experiment interrupted, no report written", file=sys.stderr)
        return 130
    print(f"report: {report}")
    return 0


# -- train -------------------------------------------------------------------------------------------
def _progress(total: int, disable: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit="epoch", disable=True if disable else None, file=sys.stderr,
                dynamic_ncols=True)


def _training_prefixes(asked, corpus, vocab, cleaning) -> list[str]:
    """Prefixes to continue during and after training, checked before training starts.

    The chapter's defaults may not fit another text's vocabulary; then the text's own first
    characters stand in for them instead of failing after hours of training.
    """
    from .generation import encode_prefix

    if asked:
        for prefix in asked:
            encode_prefix(prefix, vocab, cleaning)
        return asked
    defaults = ["time traveller", "traveller"]
    try:
        for prefix in defaults:
            encode_prefix(prefix, vocab, cleaning)
        return defaults
    except UserError:
        return ["".join(vocab.idx_to_token[i] for i in corpus[:10])]


def cmd_train(args) -> int:
    from . import backends
    from .checkpoint import CHECKPOINT_SUBDIR, Checkpoint, save_checkpoint
    from .data import SeqDataLoader, check_corpus_fits, load_corpus
    from .generation import predict
    from .model import ModelConfig, init_params
    from .plotting import plot_perplexity
    from .training import TrainConfig, train

    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         num_steps=args.num_steps, sampling=args.sampling,
                         clip=None if args.no_clip else args.clip, detach=not args.no_detach,
                         seed=args.seed)
    config.validate()
    if args.no_detach and args.sampling == "random":
        raise UserError("--no-detach needs --sampling sequential (random batches reset the state anyway)")
    out = Path(args.out or f"runs/{args.backend}-{args.sampling}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    ckpt_dir = out / CHECKPOINT_SUBDIR
    if ckpt_dir.exists() and not args.overwrite:
        raise UserError(f"{ckpt_dir} already holds a checkpoint; pass --overwrite to replace it or "
                        f"choose another --out")

    corpus, vocab = load_corpus(args.data, args.max_tokens, cleaning=args.cleaning)
    validation = None
    if args.val_fraction > 0:
        split = int(len(corpus) * (1 - args.val_fraction))
        corpus, validation = corpus[:split], np.asarray(corpus[split:])
    check_corpus_fits(len(corpus), config.batch_size, config.num_steps, config.sampling)
    model = ModelConfig(len(vocab), args.hidden, args.activation, args.embedding,
                        args.embed_dim if args.embedding == "learned" else 0)
    backend = backends.create(args.backend, init_params(model, args.seed), model,
                              device=args.device, dtype=args.dtype)
    loader = SeqDataLoader(corpus, config.batch_size, config.num_steps, config.sampling, seed=args.seed)

    quiet = args.json
    say = (lambda *a: None) if quiet else print
    prefixes = _training_prefixes(args.prefix, corpus, vocab, args.cleaning)
    watch_prefix = prefixes[0]
    say(f"training {backend!r} on {len(corpus)} tokens, vocabulary {len(vocab)}; "
        f"{config.epochs} epochs of {config.sampling} batches {config.batch_size} x {config.num_steps}")

    saved = {"epoch": None}

    def checkpoint_now(epoch, info):
        save_checkpoint(ckpt_dir, Checkpoint(backend.get_params(), vocab, model, args.cleaning, "char",
                                             info={"backend": args.backend, "epoch": epoch,
                                                   "train": config.to_dict(), **info}))
        saved["epoch"] = epoch

    bar = _progress(config.epochs, disable=args.no_progress or quiet)

    def on_epoch(stats):
        bar.update(1)
        bar.set_postfix(ppl=f"{stats.perplexity:.2f}", tok_s=f"{stats.tokens_per_sec:,.0f}")
        if args.predict_every and stats.epoch % args.predict_every == 0 and not quiet:
            text = predict(backend, vocab, watch_prefix, 50, cleaning=args.cleaning)
            bar.write(f"epoch {stats.epoch:4d}  perplexity {stats.perplexity:7.2f}  {text}", file=sys.stdout)
        if stats.epoch % args.checkpoint_every == 0 and stats.epoch < config.epochs:
            checkpoint_now(stats.epoch, {"perplexity": stats.perplexity})

    out.mkdir(parents=True, exist_ok=True)
    try:
        result = train(backend, loader, config, on_epoch=on_epoch, validation=validation)
    except TrainingDiverged as err:
        bar.close()
        kept = (f"the last good checkpoint (epoch {saved['epoch']}) is in {ckpt_dir}"
                if saved["epoch"] else "no checkpoint of this run was saved")
        raise UserError(f"{err}; training stopped, {kept}. Try a smaller --lr or clipping (--clip).")
    except KeyboardInterrupt:
        bar.close()
        kept = f"last checkpoint: epoch {saved['epoch']} in {ckpt_dir}" if saved["epoch"] else "nothing saved"
        print(f"scratchrnn: interrupted ({kept})", file=sys.stderr)
        return 130
    bar.close()

    checkpoint_now(config.epochs, {"perplexity": result.perplexity, "tokens_per_sec": result.tokens_per_sec})
    title = f"{args.backend}, {config.sampling}, {model.num_hiddens} hidden, lr {config.lr}"
    plots = plot_perplexity(result.history, out / "perplexity", title, validation=result.validation)
    samples = {p: predict(backend, vocab, p, 50, cleaning=args.cleaning) for p in prefixes}
    metrics = {
        "backend": args.backend, "device": args.device, "dtype": args.dtype,
        "data": args.data or "bundled:timemachine.txt", "tokens": len(corpus),
        "vocab_size": len(vocab), "model": model.to_dict(), "train": config.to_dict(),
        "perplexity": result.perplexity, "tokens_per_sec": result.tokens_per_sec,
        "seconds": sum(e.seconds for e in result.epochs),
        "perplexity_history": result.history,
        "lowest_perplexity": {"epoch": result.lowest.epoch, "perplexity": result.lowest.perplexity},
        "validation_perplexity": [{"epoch": e, "perplexity": p} for e, p in result.validation],
        "samples": samples, "checkpoint": str(ckpt_dir), "plots": [str(p) for p in plots],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
        return 0
    for text in samples.values():
        print(text)
    if result.validation:
        print(f"validation perplexity {result.validation[-1][1]:.2f}")
    print(f"checkpoint {ckpt_dir}, plot {plots[0]}")
    print(f"lowest perplexity {result.lowest.perplexity:.2f}, at epoch {result.lowest.epoch}")
    print(f"perplexity {result.perplexity:.1f}, {result.tokens_per_sec:.1f} tokens/sec on {args.device} "
          f"({args.backend})")
    return 0


# -- generate ----------------------------------------------------------------------------------------
def cmd_generate(args) -> int:
    from . import backends
    from .checkpoint import load_checkpoint
    from .generation import Decoding, predict, predict_many

    decoding = Decoding(args.strategy, 1 / args.alpha if args.alpha else args.temperature,
                        args.top_k, args.top_p, args.seed)
    prefixes = args.prefix or ["time traveller"]
    if args.stream and (len(prefixes) > 1 or args.json):
        raise UserError("--stream prints one continuation as it is made: give one --prefix, no --json")
    ckpt = load_checkpoint(args.checkpoint)
    backend = backends.create(args.backend, ckpt.params, ckpt.model, device=args.device)
    if args.stream:
        predict(backend, ckpt.vocab, prefixes[0], args.num_chars, cleaning=ckpt.cleaning,
                decoding=decoding, stream=sys.stdout)
        return 0
    texts = predict_many(backend, ckpt.vocab, prefixes, args.num_chars, cleaning=ckpt.cleaning,
                         decoding=decoding)
    if args.json:
        print(json.dumps({"checkpoint": str(ckpt.path), "backend": args.backend,
                          "strategy": decoding.strategy, "temperature": decoding.temperature,
                          "seed": decoding.seed,
                          "results": [{"prefix": p, "text": t} for p, t in zip(prefixes, texts)]},
                         ensure_ascii=False))
    else:
        for text in texts:
            print(text)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "experiment":
            return cmd_experiment(args)
        return cmd_generate(args)
    except UserError as err:
        print(f"scratchrnn: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
