"""SGD against Adam on tinyshakespeare: held-out loss per epoch and wall time, side by side.

Each optimizer trains the chapter's RNN (512 hidden units, one-hot inputs, clipping at 1, batches of
32 x 35, sequential partitioning) on tinyshakespeare's raw characters with its last 10% held out --
what ``scratchrnn train --data tinyshakespeare.txt`` does by default -- in a run directory of its own,
one after the other. Writes docs/results/optimizers.{md,json,png}.

    .venv/bin/python scripts/compare_optimizers.py [--epochs 10] [--backend torch]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

from scratchrnn import __version__
from scratchrnn.model import ModelSettings
from scratchrnn.plotting import plain_number, pyplot
from scratchrnn.run_config import RunConfig
from scratchrnn.runner import run
from scratchrnn.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "tinyshakespeare.txt"      # shipped with the repository (data/README.md)
RUNS = {"sgd": 1.0, "adam": 0.002}     # the chapter's SGD learning rate; Adam's usual one for RNNs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "optimizers"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"))
    args = parser.parse_args()

    results = {}
    load_before = os.getloadavg()[0]
    for name, lr in RUNS.items():
        config = RunConfig(out=f"{args.runs}/{name}", backend=args.backend, data=args.data,
                           model=ModelSettings(num_hiddens=512), predict_every=0, num_chars=200,
                           train=TrainConfig(epochs=args.epochs, lr=lr, optimizer=name, eval_every=1))
        started = time.perf_counter()
        outcome = run(config, "overwrite", progress=False)
        wall = time.perf_counter() - started
        elapsed, epochs = 0.0, []
        for record in outcome.history:
            elapsed += record["seconds"]
            epochs.append({"epoch": record["epoch"], "train_nats": math.log(record["train_perplexity"]),
                           "val_nats": math.log(record["val_perplexity"]), "seconds": elapsed})
        results[name] = {"lr": lr, "epochs": epochs, "wall_seconds": wall,
                         "tokens_per_sec": outcome.tokens_per_sec, "best": outcome.state.best,
                         "sample": next(iter(outcome.samples.values()), "")}
        print(f"{name}: held-out {epochs[-1]['val_nats']:.3f} nats/char after {args.epochs} epochs, {wall:.0f} s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = f".venv/bin/python scripts/compare_optimizers.py --epochs {args.epochs} --backend {args.backend}"
    record = {"command": command, "backend": args.backend, "data": Path(args.data).name,
              "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", "scratchrnn": __version__,
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "results": results}
    (out / "optimizers.json").write_text(json.dumps(record, indent=1) + "\n")
    _plot(results, out / "optimizers.png")
    _table(record, out / "optimizers.md")


def _plot(results: dict, path: Path) -> None:
    plt = pyplot()
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for name, result in results.items():
        epochs = result["epochs"]
        for axis, xs in ((by_epoch, [e["epoch"] for e in epochs]), (by_time, [e["seconds"] for e in epochs])):
            axis.plot(xs, [e["val_nats"] for e in epochs], "o-", label=f"{name} (lr {result['lr']:g}), held-out")
            axis.plot(xs, [e["train_nats"] for e in epochs], ":", label=f"{name}, training")
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training seconds")
    for axis in (by_epoch, by_time):
        axis.set_ylabel("loss (nats per character)")
        axis.yaxis.set_major_formatter(plain_number)
        axis.grid(alpha=0.3)
    by_epoch.legend(fontsize="small")
    fig.suptitle("RNN, 512 hidden, on tinyshakespeare (last 10% held out): SGD and Adam")
    fig.tight_layout()
    fig.savefig(path)


def _table(record: dict, path: Path) -> None:
    results = record["results"]
    names = list(results)
    lines = [
        "# SGD and Adam on tinyshakespeare",
        "",
        f"The chapter's RNN (512 hidden, one-hot inputs, clipping at 1, batches of 32 x 35, sequential) "
        f"trained on tinyshakespeare's raw characters with the last 10% held out, on the "
        f"{record['backend']} backend, once with the chapter's SGD and once with Adam. Loss in nats per "
        f"character (the log of perplexity). Rerun with:",
        "",
        f"    {record['command']}",
        "",
        f"The machine's load average was {record['load_average'][0]} when the runs started and "
        f"{record['load_average'][1]} when they ended (2 cores): the seconds grow with it, the losses do not.",
        "",
        "| epoch | " + " | ".join(f"{n} held-out | {n} training | {n} seconds" for n in names) + " |",
        "|---:|" + "---:|---:|---:|" * len(names),
    ]
    for i in range(len(results[names[0]]["epochs"])):
        cells = []
        for name in names:
            e = results[name]["epochs"][i]
            cells += [f"{e['val_nats']:.3f}", f"{e['train_nats']:.3f}", f"{e['seconds']:.0f}"]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines += ["", "| optimizer | lr | best held-out (epoch) | tokens/s | wall time |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        best = r["best"]
        lines.append(f"| {name} | {r['lr']:g} | {math.log(best['score']):.3f} ({best['epoch']}) | "
                     f"{r['tokens_per_sec']:,.0f} | {r['wall_seconds']:.0f} s |")
    lines += ["", "Continuations of the text's first words by each best/ checkpoint:", ""]
    for name, r in results.items():
        lines += [f"**{name}**:", "", "```", r["sample"], "```", ""]
    lines += ["![held-out loss per epoch and per second](optimizers.png)", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
