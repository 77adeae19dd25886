"""``scratchrnn experiment``: answer one of the chapter's exercises by measurement, into a report."""
from __future__ import annotations

import sys
import textwrap

from ..backends import BACKENDS
from .common import EXIT_INTERRUPTED, HelpFormatter, non_negative_int, positive_int


def add_parser(sub) -> None:
    from ..experiments import EXPERIMENTS, FULL, QUICK, describe_experiments
    e = sub.add_parser(
        "experiment", formatter_class=HelpFormatter,
        help="run one of the chapter's exercises and write a Markdown report with plots",
        description=textwrap.fill(
            "Answer one of the chapter's six exercises by measurement: train the models it needs "
            "(sequential batches, SGD, the chapter's Time Machine unless --data), then write "
            "DIR/report.md (tables, PNG plots beside it) and DIR/results.json. A run that diverges is "
            "recorded in the report ('diverged at epoch N'), it does not stop the experiment. "
            "--quick trains tiny models for a few epochs instead of the full runs.", width=88),
        epilog="experiments:\n" + describe_experiments())
    e.add_argument("name", metavar="NAME", choices=tuple(EXPERIMENTS),
                   help="which experiment: " + ", ".join(EXPERIMENTS))
    e.add_argument("--out", metavar="DIR", default=None,
                   help="where the report goes (default: runs/experiments/NAME); created if missing, "
                        "files of an earlier report there are replaced")
    e.add_argument("--quick", action="store_true",
                   help=f"tiny runs ({QUICK.hidden} hidden units, {QUICK.max_tokens} tokens, "
                        f"{QUICK.epochs} epochs): checks that the experiment runs; the numbers mean "
                        f"little")
    e.add_argument("--backend", choices=BACKENDS, default="numpy", help="framework that trains the models")
    e.add_argument("--data", metavar="PATH", default=None,
                   help="UTF-8 text to train on instead of the Time Machine; required by other-text, "
                        "where it is the text compared with the Time Machine")
    e.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs of every run (default: the experiment's own length, "
                        f"{QUICK.epochs} with --quick)")
    e.add_argument("--hidden", type=positive_int, default=None,
                   help=f"hidden units of the runs (default: {FULL.hidden}, {QUICK.hidden} with --quick); "
                        f"the hyperparams sweep uses half and twice this too")
    e.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the weights, batches and sampling")


def run(args) -> int:
    from ..experiments import run_experiment

    try:
        report = run_experiment(args.name, args.out, quick=args.quick, backend=args.backend,
                                data=args.data, seed=args.seed, epochs=args.epochs, hidden=args.hidden)
    except KeyboardInterrupt:
        print("scratchrnn: experiment interrupted, no report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"report: {report}")
    return 0
