"""Command line: ``scratchrnn train`` and ``scratchrnn generate``.

Every mistake a user can make (a bad option value, a missing file, a corpus too short, a damaged
checkpoint, a framework not installed) ends with one line on stderr and exit status 2, before
anything on disk is touched.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import textwrap

from . import __version__, kernels
from .backends import BACKENDS
from .model import CELLS
from .cli_generate import DEFAULT_PREFIX, cmd_generate
from .cli_train import cmd_train
from .errors import RunInterrupted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130      # as a shell reports a program ended by SIGINT


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
_non_negative_float = _checked(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
_decay = _checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _max_tokens(text: str) -> int | str:
    if text.lower() == "all":
        return "all"
    return _positive_int(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line and exit status 2 like every other user error."""

    def error(self, message):
        # the usage block would bury the one line that matters; --help is one command away
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _PrintVersion(argparse.Action):
    """``--version``: one line, whatever the terminal's width (argparse's own action wraps it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"scratchrnn {__version__} (compiled kernels: {kernels.status()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scratchrnn",
        description="Character-level RNN language models from scratch (Dive into Deep Learning, 8.5).",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action=_PrintVersion,
                        help="show the version, and whether the compiled kernels (greedy generation, the "
                             "recurrences of a training step) are built and on, then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_train_parser(sub)
    _add_generate_parser(sub)

    from .experiments import EXPERIMENTS, FULL, QUICK, describe_experiments
    e = sub.add_parser(
        "experiment", formatter_class=_HelpFormatter,
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
    e.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seed of the weights, batches and sampling")
    return parser


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The help of every command: "(default: X)" after an option's text where X says something, and
    descriptions laid out as written where they hold line breaks (the list of experiments)."""

    def _get_help_string(self, action):
        # "not given" (None, a flag's False) explains itself, and a text that names its default in
        # its own words would otherwise say it twice
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


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


# -- train (the command itself is in cli_train.py) -----------------------------------------------------
def _add_train_parser(sub) -> None:
    from .optim import OPTIMIZERS, SCHEDULES

    t = sub.add_parser(
        "train", formatter_class=_HelpFormatter,
        help="train a model into a run directory (checkpoints, metrics, plot); continue one with --resume",
        description="Train the scratch RNN. Defaults are the chapter's settings on its book; with --data "
                    "the defaults suit a text of one's own (all of it, raw characters, the last 10% held "
                    "out). Writes the run directory DIR: last/ (the newest checkpoint, every "
                    "--checkpoint-every epochs), best/ (the best epoch so far, see --best-by), "
                    "metrics.jsonl (a line per epoch as it ends) and perplexity.{png,svg}. Ctrl-C stops "
                    "after the current batch, saves last/ and says how to continue (exit status 130); "
                    "--resume DIR continues exactly where the run stopped. The last line printed is the "
                    "chapter's: final training perplexity and tokens/s; the line before it gives the "
                    "lowest training perplexity and its epoch. In float32 on the CPU the numpy and torch "
                    "backends run the step loops of each training step compiled, where the package was "
                    "built with a C compiler (scratchrnn --version says; SCRATCHRNN_NO_KERNEL=1 turns "
                    "it off).")
    t.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model: numpy has a hand-written backward pass, and so "
                        "has torch's fast path inside a torch.autograd.Function; the others use their "
                        "framework's autograd")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where to train (cuda: torch backend with a CUDA GPU)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of parameters and activations")
    data = t.add_argument_group("data")
    data.add_argument("--data", metavar="PATH", default=None,
                      help="UTF-8 text file to train on (default: the bundled Time Machine)")
    data.add_argument("--cleaning", choices=("chapter", "raw"), default=None,
                      help="chapter: non-letters become spaces, lower case (28-token vocabulary for the "
                           "book); raw: keep every character of the text (control characters other than "
                           "newline, tab and carriage return are dropped). Default: chapter for the "
                           "bundled book, raw for --data")
    data.add_argument("--max-tokens", type=_max_tokens, default=None, metavar="N|all",
                      help="use the first N character tokens, or 'all'. Default: 10000 of the bundled "
                           "book (the chapter's), all of --data")
    data.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                      help="hold out the last F of the tokens and score held-out perplexity on them "
                           "(0: none). Default: 0.1 with --data; for the bundled book, the text right "
                           "after the training slice (as long as the slice), so the chapter's training "
                           "is unchanged and its memorisation shows beside held-out perplexity")
    model = t.add_argument_group("model")
    model.add_argument("--cell", choices=CELLS, default="rnn",
                       help="rnn: the chapter's (8.5); gru, lstm: the book's gated cells (9.1, 9.2). The "
                            "numpy and torch backends build every cell; the others the rnn")
    model.add_argument("--layers", type=_positive_int, default=1,
                       help="cells stacked, each reading the one below (the book's deep RNN, 9.3)")
    model.add_argument("--dropout", type=_fraction, default=0.0, metavar="P",
                       help="dropout between layers and before the output layer while training (off when "
                            "scoring held-out text and generating)")
    model.add_argument("--init", choices=("book", "scaled"), default="book",
                       help="the starting weights: book, N(0, 0.01) as the book draws them; scaled, N(0, "
                            "1/fan-in) and a learned embedding N(0, 1), which wide gated models with "
                            "learned embeddings start learning from much sooner")
    model.add_argument("--forget-bias", type=float, default=0.0, metavar="B",
                       help="the LSTM's forget-gate bias at the start (char-rnn uses 1: keep the memory "
                            "until the model learns to forget)")
    model.add_argument("--hidden", type=_positive_int, default=512, help="hidden units (of every layer)")
    model.add_argument("--activation", choices=("tanh", "relu"), default="tanh",
                       help="nonlinearity of the rnn cell's hidden state (gated cells use tanh)")
    model.add_argument("--embedding", choices=("onehot", "learned"), default="onehot",
                       help="onehot: the chapter's one-hot inputs; learned: a trained embedding table")
    model.add_argument("--embed-dim", type=_positive_int, default=32,
                       help="width of the learned embedding (only with --embedding learned)")
    opt = t.add_argument_group("optimization")
    opt.add_argument("--epochs", type=_positive_int, default=500, help="passes over the training tokens")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                     help="update rule: sgd (the chapter's), momentum (0.9), adagrad (min-char-rnn's), "
                          "rmsprop (char-rnn's), adam, adamw (decoupled weight decay); rules and defaults "
                          "as torch.optim's")
    opt.add_argument("--lr", type=_positive_float, default=1.0,
                     help="learning rate (the peak of a schedule); 1 suits the chapter's SGD, about 0.002 "
                          "Adam")
    opt.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                     help="constant; step: times --lr-decay every --lr-decay-every epochs; cosine: down to "
                          "a tenth of --lr over the run")
    opt.add_argument("--warmup", type=_non_negative_int, default=0, metavar="STEPS",
                     help="optimizer steps of linear warm-up before the schedule (any schedule)")
    opt.add_argument("--lr-decay", type=_decay, default=0.5, metavar="F",
                     help="factor of the step schedule")
    opt.add_argument("--lr-decay-every", type=_positive_int, default=None, metavar="EPOCHS",
                     help="epochs between two decays of the step schedule (default: a third of --epochs)")
    opt.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                     help="L2 penalty added to the gradients (adamw: decoupled, shrinking the weights)")
    opt.add_argument("--batch-size", type=_positive_int, default=32, help="sequences per minibatch")
    opt.add_argument("--num-steps", type=_positive_int, default=35,
                     help="time steps per sequence (how far back gradients flow when detached)")
    opt.add_argument("--sampling", choices=("sequential", "random"), default="sequential",
                     help="sequential: batches continue each other and the state is carried (detached); "
                          "random: shuffled subsequences, state reset for every batch")
    clip = opt.add_mutually_exclusive_group()
    clip.add_argument("--clip", type=_positive_float, default=1.0, metavar="THETA",
                      help="clip gradients to global L2 norm THETA")
    clip.add_argument("--no-clip", action="store_true", help="do not clip gradients (may diverge)")
    opt.add_argument("--no-detach", action="store_true",
                     help="sequential sampling only: do not detach the state between batches, so "
                          "gradients flow back to the start of the epoch; time and memory then grow "
                          "with the number of batches in an epoch")
    opt.add_argument("--seed", type=_non_negative_int, default=0,
                     help="seed of the initial weights and the batch order")
    run = t.add_argument_group("run directory and output")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", default=None,
                       help="run directory (default: runs/<backend>-<sampling>)")
    where.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the run in DIR from its last/ checkpoint, with its own settings; "
                            "only --epochs (to train longer), --no-progress and --json may be given too")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in DIR (its checkpoints, metrics and plots); "
                          "otherwise refused")
    run.add_argument("--eval-every", type=_positive_int, default=None, metavar="N",
                     help="score held-out perplexity every N epochs and after the last (default: about "
                          "50 times in a run, every epoch for runs of up to 50)")
    run.add_argument("--best-by", choices=("train", "val"), default=None,
                     help="which perplexity picks best/: val where text of --data is held out, train "
                          "otherwise (the chapter's point is to fit its 10,000 characters)")
    run.add_argument("--checkpoint-every", type=_positive_int, default=1, metavar="N",
                     help="save last/ every N epochs: a kill loses at most the epochs since")
    run.add_argument("--predict-every", type=_non_negative_int, default=10, metavar="N",
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
        "--master-port PORT -m scratchrnn train ...` on each (README: Several processes).")
    ranks.add_argument("--nproc", type=_positive_int, default=1, metavar="N",
                       help="train on N processes of this machine (starts them as torchrun --standalone "
                            "does); may differ from the N a run was saved with when resuming")
    ranks.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                       help="threads of each rank (default: this machine's cores divided by its ranks, at "
                            "least 1; one process alone keeps what its libraries choose)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object with the results on stdout, nothing else")


# -- generate (the command itself is in cli_generate.py) --------------------------------------------
_probability = _checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _add_generate_parser(sub) -> None:
    g = sub.add_parser(
        "generate", formatter_class=_HelpFormatter,
        help="continue a prefix with a trained model",
        description="Load a checkpoint (written by any backend) and continue one or more prefixes. "
                    "Greedy decoding in float32 of up to 512 prefixes runs on a small compiled decoder "
                    "when the package was built with a C compiler (scratchrnn --version says; "
                    "SCRATCHRNN_NO_KERNEL=1 turns it off); otherwise in the backend's own loop. Both "
                    "compute the same sums in a different order, so their texts part only where two "
                    "characters tie to within float32 rounding. One continuation is printed as it is "
                    "made, so its length is not bounded by memory; several are printed one per line "
                    "when all are done, and a request too big for the memory is refused with an "
                    "estimate.")
    g.add_argument("checkpoint", metavar="CHECKPOINT_DIR",
                   help="a checkpoint directory, or a run directory (its best/ or last/, see --which)")
    g.add_argument("--which", choices=("best", "last"), default="best",
                   help="in a run directory: the best epoch's weights or the newest")
    g.add_argument("--prefix", action="append", default=None, metavar="TEXT",
                   help=f"text to continue; repeat to continue several at once as one batch (default, "
                        f"when neither --prefix nor --prefix-file is given: the prompt training used, the "
                        f"text's first words, or '{DEFAULT_PREFIX}'). It is cleaned like the training "
                        f"text; a character the model's vocabulary lacks is refused, naming it (the "
                        f"book's predict_ch8 would read it as <unk>, which the model never learned to "
                        f"read; predict_ch8 here refuses it too)")
    g.add_argument("--prefix-file", metavar="PATH", default=None,
                   help="UTF-8 text file with one prefix per line (empty lines are skipped), continued "
                        "after those of --prefix")
    g.add_argument("--num-chars", type=_non_negative_int, default=50, metavar="N",
                   help="characters to generate after each prefix")
    g.add_argument("--num-samples", type=_positive_int, default=1, metavar="N",
                   help="continuations of each prefix, one per line; more than 1 implies --strategy sample")
    g.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model (any backend reads any checkpoint)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    g.add_argument("--strategy", choices=("greedy", "sample"), default=None,
                   help="greedy: the most likely character (the chapter's predict_ch8); sample: draw from "
                        "the model's distribution. By default greedy, or sample as soon as any of "
                        "--temperature, --alpha, --top-k, --top-p, --seed or --num-samples above 1 is "
                        "given; with an explicit --strategy greedy those options are refused")
    temp = g.add_mutually_exclusive_group()
    temp.add_argument("--temperature", type=_positive_float, default=None, metavar="T",
                      help="sample from softmax(logits / T): below 1 sharper, above 1 flatter (default: 1)")
    temp.add_argument("--alpha", type=_positive_float, default=None, metavar="A",
                      help="the chapter's exercise form q ~ P^alpha, i.e. temperature 1/alpha")
    g.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                   help="sample only among the K likeliest characters (default: all)")
    g.add_argument("--top-p", type=_probability, default=None, metavar="P",
                   help="sample only among the likeliest characters whose mass reaches P (default: all)")
    g.add_argument("--seed", type=_non_negative_int, default=None, metavar="S",
                   help="seed of the sampling: the same seed gives the same text (default: a new text "
                        "every run)")
    g.add_argument("--stream", action="store_true",
                   help="flush every character as it is generated (one prefix and one sample, no --json)")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def main(argv=None) -> int:
    # Ctrl-C raises KeyboardInterrupt again from here on (see the package's start-up handler), so that
    # each command can say what it kept
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    # the command's own words, for ``train --nproc`` to start its ranks with
    args._argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "experiment":
            return cmd_experiment(args)
        return cmd_generate(args)
    except UserError as err:
        print(f"scratchrnn: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RunInterrupted as err:
        print(f"scratchrnn: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # Ctrl-C outside training (start-up, loading, generation): nothing half-written is left
        print("scratchrnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
