"""What scripts/shakespeare.py measured, written down: shakespeare.json, shakespeare.md, shakespeare.png.

Every number in the Markdown comes from the record, including the sentences that say whether each goal
was reached and, where it was not, what the measured curve says limits the best run.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path

from scratchrnn import __version__
from scratchrnn.plotting import plain_number, pyplot

# Published results to compare with (nanoGPT's README, data/shakespeare_char: the same 90/10 split of
# the same raw characters, loss in nats per character).
ANCHORS = [
    {"name": "nanoGPT shakespeare_char, GPU", "nats": 1.47,
     "model": "transformer, 6 layers x 384, context 256, about 10.7M parameters"},
    {"name": "nanoGPT shakespeare_char, its CPU configuration", "nats": 1.88,
     "model": "transformer, 4 layers x 128, context 64, 2,000 iterations"},
]
# Changes of held-out loss smaller than this (nats per character) count as flat in the diagnosis.
FLAT_NATS = 0.01


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def _threads(backend: str) -> int | None:
    if backend != "torch":
        return None
    import torch
    return torch.get_num_threads()


def goal_reached(points: list[dict], minutes: float, nats: float) -> float | None:
    """The minute at which a curve first reached ``nats`` within ``minutes``, or None."""
    for point in points:
        if point["seconds"] <= minutes * 60 and point["val_nats"] <= nats:
            return point["seconds"] / 60
    return None


def record(args, results: list[dict], samples: dict, text: dict, *, command: str, started: datetime.datetime,
           load_average: list[float], budgets: tuple[float, float], goals: tuple) -> dict:
    """Everything measured, as JSON-able values; ``results`` are the runs' records (``RunResult.to_dict``,
    or those of an earlier record), ``goals`` (minutes, nats) pairs, whose minutes shrink with
    --budget-scale as the budgets do."""
    goals = [{"minutes": minutes * args.budget_scale, "nats": nats} for minutes, nats in goals]
    runs = []
    for result in results:
        run = dict(result)
        run["goals"] = [goal_reached(run["points"], goal["minutes"], goal["nats"])
                        if run["budget_minutes"] >= goal["minutes"] - 1e-9 else "n/a" for goal in goals]
        runs.append(run)
    return {
        "command": command, "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "scratchrnn": __version__,
                    "threads": _threads(args.backend)},
        "load_average": load_average,
        "data": {"name": text["name"], "train_tokens": int(len(text["train"])),
                 "heldout_tokens": int(len(text["heldout"])), "vocab_size": len(text["vocab"])},
        "backend": args.backend, "device": args.device, "dtype": args.dtype, "seed": args.seed,
        "budget_minutes": list(budgets), "budget_scale": args.budget_scale, "evaluations": args.evaluations,
        "long_run": args.long, "goals": goals, "anchors": ANCHORS,
        "sampling": {"prompt": args.prompt, "chars": args.sample_chars, "temperature": args.temperature},
        "samples": samples, "runs": runs, "weights": _shown(args.runs),
    }


def _shown(path: Path) -> str:
    """A path as the reader of the record would type it: relative to the repository where it lies in it."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


# -- the verdicts ---------------------------------------------------------------------------------------
def _within(run: dict, minutes: float) -> list[dict]:
    return [p for p in run["points"] if p["seconds"] <= minutes * 60]


def diagnosis(run: dict, minutes: float) -> str:
    """What the curve of ``run`` up to ``minutes`` says stopped it going lower, from its own numbers."""
    points = _within(run, minutes)
    best = min(points, key=lambda p: p["val_nats"])
    last = points[-1]
    late = [p for p in points if p["seconds"] >= 0.75 * last["seconds"]]
    late_drop = late[0]["val_nats"] - min(p["val_nats"] for p in late)
    if best is last or (best in late and late_drop >= FLAT_NATS):
        when = ("at its last evaluation" if best is last
                else f"at minute {best['seconds'] / 60:.1f}, in that last quarter")
        return (f"it was still improving when its time ran out: its held-out loss fell by {late_drop:.3f} "
                f"nats over the last quarter of its run and was lowest {when}. At "
                f"{run['tokens_per_sec']:,.0f} tokens/s it read {last['epochs']:.1f} passes of the training "
                f"text; speed (tokens per second) is what limits it.")
    rise = last["val_nats"] - best["val_nats"]
    if rise >= FLAT_NATS:
        return (f"it overfits: its held-out loss was lowest at minute {best['seconds'] / 60:.1f} and rose by "
                f"{rise:.3f} by minute {last['seconds'] / 60:.1f}, while its training loss went from "
                f"{best['train_nats']:.3f} to {last['train_nats']:.3f}. Regularisation (dropout) or more "
                f"text per parameter, not more time, is what limits it.")
    return (f"it has flattened: its held-out loss moved by less than {FLAT_NATS} over the last quarter of its "
            f"run (training loss {last['train_nats']:.3f}, held-out {last['val_nats']:.3f} at the end). "
            f"At this size and with these settings more time buys little; capacity is what limits it.")


def verdicts(rec: dict) -> list[str]:
    """A sentence per goal: who reached it and when, or the best reached and what limits it."""
    lines = []
    for index, goal in enumerate(rec["goals"]):
        minutes, nats = goal["minutes"], goal["nats"]
        head = f"**Goal {index + 1}, validation loss <= {nats:.2f} within {minutes:g} minutes:**"
        reached = [(run["goals"][index], run) for run in rec["runs"] if isinstance(run["goals"][index], float)]
        tried = [run for run in rec["runs"] if run["goals"][index] != "n/a"]
        candidates = [run for run in tried if _within(run, minutes)]
        if reached:
            minute, run = min(reached, key=lambda item: item[0])
            lines.append(f"{head} reached, by {run['name']} at minute {minute:.1f} (its best: "
                         f"{run['best']['val_nats']:.3f} at minute {run['best']['seconds'] / 60:.1f}).")
        elif not tried:
            lines.append(f"{head} not tried: no run had a budget of {minutes:g} minutes.")
        elif not candidates:
            lines.append(f"{head} not reached: no run finished an evaluation within {minutes:g} minutes.")
        else:
            run = min(candidates, key=lambda r: min(p["val_nats"] for p in _within(r, minutes)))
            best = min(_within(run, minutes), key=lambda p: p["val_nats"])
            lines.append(f"{head} not reached. The best within {minutes:g} minutes: {run['name']}, "
                         f"{best['val_nats']:.3f} at minute {best['seconds'] / 60:.1f}, "
                         f"{best['val_nats'] - nats:.3f} above the goal. "
                         f"**What limits it (from the measured curve):** {diagnosis(run, minutes)}")
    return lines


# -- the files ---------------------------------------------------------------------------------------------
REGULARIZATION_PAGE = Path(__file__).resolve().parents[1] / "docs" / "regularization.md"
DEFAULT_GUIDE_LINK = "../regularization.md"      # what markdown() writes: right for --out docs/results


def write(rec: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "shakespeare.json", out / "shakespeare.md", out / "shakespeare.png"]
    paths[0].write_text(json.dumps(rec, indent=1) + "\n")
    # the page links docs/regularization.md relative to wherever --out puts it
    guide = Path(os.path.relpath(REGULARIZATION_PAGE, out.resolve())).as_posix()
    paths[1].write_text(markdown(rec).replace(f"]({DEFAULT_GUIDE_LINK})", f"]({guide})"))
    plot(rec, paths[2])
    return paths


def _goal_cell(value) -> str:
    if value == "n/a":
        return "n/a (shorter run)"
    return f"yes, minute {value:.1f}" if value is not None else "no"


def markdown(rec: dict) -> str:
    data, machine = rec["data"], rec["machine"]
    short, long = rec["budget_minutes"]
    goal_heads = [f"<= {g['nats']:.2f} within {g['minutes']:g} min?" for g in rec["goals"]]
    lines = [
        "# tinyshakespeare within a wall-time budget",
        "",
        f"Issue 26's quality goals (issue 12's before them): on tinyshakespeare's raw characters with the last "
        f"10% held out "
        f"({data['train_tokens']:,} characters to train on, {data['heldout_tokens']:,} held out, a "
        f"vocabulary of {data['vocab_size']}), trained from scratch with scratchrnn's own cells, optimizers "
        f"and training loop -- the book's cells, and the regularisers and layer normalisation of "
        f"[docs/regularization.md](../regularization.md) -- validation loss in nats per character (the log of "
        f"the perplexity) against the wall time on this machine. Every configuration trains for {short:g} minutes; "
        + ("the one that went lowest then trains again from its first step" if rec["long_run"] == "best"
           else f"{rec['long_run']} trains again" if rec["long_run"] != "none" else "no configuration trains")
        + f" for {long:g} minutes. A run's clock counts training and evaluation (the whole held-out text, "
        f"{rec['evaluations']} times a run); it stops when one more evaluation would not end within the "
        f"budget. Backend {rec['backend']} ({rec['dtype']}, {rec['device']}).",
        "",
        *[line for verdict in verdicts(rec) for line in (verdict, "")],
        "| configuration | settings | budget | parameters | tokens/s | best validation loss | at minute | "
        + " | ".join(goal_heads) + " |",
        "|---|---|---:|---:|---:|---:|---:|" + "---|" * len(goal_heads),
    ]
    for run in [run for run in rec["runs"] if not run.get("ablation")]:
        best = run["best"]
        loss = f"{best['val_nats']:.3f}" if best else f"diverged ({run['diverged']})"
        at = f"{best['seconds'] / 60:.1f}" if best else ""
        lines.append(f"| {run['configuration']} | {run['describe']} | {run['budget_minutes']:g} min | "
                     f"{run['parameters']:,} | {run['tokens_per_sec']:,.0f} | {loss} | {at} | "
                     + " | ".join(_goal_cell(value) for value in run["goals"]) + " |")
    for anchor in rec["anchors"]:
        lines.append(f"| {anchor['name']} (published) | {anchor['model']} | | | | {anchor['nats']:.2f} | | "
                     + " | ".join("" for _ in goal_heads) + " |")
    lines += ["", "![validation loss against wall time](shakespeare.png)", "", *ablation_table(rec), *best_command(rec)]
    sampling = rec["sampling"]
    for name, sample in rec["samples"].items():
        lines += [f"{sampling['chars']} characters sampled by the best weights of **{name}** (temperature "
                  f"{sampling['temperature']:g}, prompt `{sampling['prompt']}`):", "", "```text", sample,
                  "```", ""]
    scored = [run for run in rec["runs"] if run["best"]]
    if scored:
        best = min(scored, key=lambda run: run["best"]["val_nats"])
        lines += [f"Each run's best weights are a checkpoint directory in `{rec['weights']}/`, named after its "
                  f"configuration and budget: `scratchrnn generate {rec['weights']}/"
                  f"{best['configuration']}-{best['budget_minutes']:g}min --temperature 0.8 --num-chars 500` "
                  f"continues the best one.", ""]
    threads = f", {machine['threads']} threads" if machine["threads"] else ""
    lines += [
        "Rerun with (`make shakespeare` runs the same):" if rec["command"].endswith("scripts/shakespeare.py")
        else "Rerun with:",
        "",
        f"    {rec['command']}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores{threads}, {machine['platform']}, Python "
        f"{machine['python']}, scratchrnn {machine['scratchrnn']}. Ran from {rec['started']} to "
        f"{rec['finished']}; the load average (1 minute) was {rec['load_average'][0]} before and "
        f"{rec['load_average'][1]} after: on a busy machine every run reads fewer characters in its "
        f"budget.",
        "",
    ]
    return "\n".join(lines)


def _best_within(run: dict, minutes: float) -> float | None:
    points = _within(run, minutes)
    return min(p["val_nats"] for p in points) if points else None


def ablation_table(rec: dict) -> list[str]:
    """The ablation's lines: each change to its base, the best held-out loss within the short budget,
    and the difference it made (positive: worse)."""
    changed = [run for run in rec["runs"] if run.get("ablation")]
    if not changed:
        return []
    short = rec["budget_minutes"][0]
    lines = []
    for base_name in dict.fromkeys(run["ablation"]["base"] for run in changed):
        base = next((run for run in rec["runs"] if run["configuration"] == base_name and not run.get("ablation")
                     and abs(run["budget_minutes"] - short) < 1e-9 and run["best"]), None)
        if base is None:
            continue
        reference = _best_within(base, short)
        lines += [f"## What each technique buys: the ablation around {base_name}", "",
                  f"Each row trains {base_name} ({base['describe']}) for {short:g} minutes with one technique of "
                  f"[docs/regularization.md](../regularization.md) taken away or added, everything else "
                  f"unchanged; the difference is in held-out nats per character (positive: worse than "
                  f"{base_name}).", "",
                  f"| change to {base_name} | best held-out loss within {short:g} min | difference | tokens/s |",
                  "|---|---:|---:|---:|",
                  f"| none | {reference:.3f} | | {base['tokens_per_sec']:,.0f} |"]
        for run in changed:
            if run["ablation"]["base"] != base_name:
                continue
            loss = _best_within(run, short)
            if loss is None:
                lines.append(f"| {run['ablation']['change']} | {run['diverged'] or 'no evaluation'} | | |")
            else:
                lines.append(f"| {run['ablation']['change']} | {loss:.3f} | {loss - reference:+.3f} | "
                             f"{run['tokens_per_sec']:,.0f} |")
        lines.append("")
    return lines


def best_command(rec: dict) -> list[str]:
    """The lowest run's configuration as a ``scratchrnn train`` command line."""
    scored = [run for run in rec["runs"] if run["best"] and run.get("train_flags")]
    if not scored:
        return []
    best = min(scored, key=lambda run: run["best"]["val_nats"])
    epochs = max(1, math.ceil(best["points"][-1]["epochs"]))
    flags = " ".join(best["train_flags"])
    return [f"The configuration of the lowest run, {best['name']}, as a command (`scratchrnn train` runs its "
            f"cosine over its epochs, here the {epochs} passes the run began, where this script follows the "
            f"clock):", "", f"    scratchrnn train --data data/tinyshakespeare.txt {flags} --epochs {epochs}", ""]


def plot(rec: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    values = []
    for run in [run for run in rec["runs"] if not run.get("ablation")]:      # the ablation has its table
        points = run["points"]
        if points:
            minutes = [p["seconds"] / 60 for p in points]
            losses = [p["val_nats"] for p in points]
            values += losses
            ax.plot(minutes, losses, "o-", markersize=3, label=run["name"])
    # the goals and the anchors are told apart in the legend (labels on lines 0.03 apart would collide)
    for goal, colour in zip(rec["goals"], ("tab:red", "darkred")):
        ax.axhline(goal["nats"], color=colour, linestyle="--", linewidth=1,
                   label=f"goal: {goal['nats']:.2f} within {goal['minutes']:g} min")
        ax.axvline(goal["minutes"], color=colour, linestyle=":", linewidth=1)
    for anchor, style in zip(rec["anchors"], ("-.", ":")):
        ax.axhline(anchor["nats"], color="dimgrey", linestyle=style, linewidth=1,
                   label=f"{anchor['name']}: {anchor['nats']:.2f}")
    # the first minutes of a run start far above the range the goals are about: keep that range readable
    lines = [g["nats"] for g in rec["goals"]] + [a["nats"] for a in rec["anchors"]]
    bottom = min(values + lines) - 0.05
    finals = [run["points"][-1]["val_nats"] for run in rec["runs"] if run["points"]]
    top = max(min(max(values + lines), max(lines) + 0.6), max(finals, default=0) + 0.05, bottom + 0.3)
    ax.set_ylim(bottom, top)
    ax.set_xlim(left=0)
    ax.set_xlabel("wall time (minutes): training and evaluation")
    ax.set_ylabel("validation loss (nats per character)")
    ax.yaxis.set_major_formatter(plain_number)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"tinyshakespeare, last 10% held out: {rec['backend']} backend, {rec['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
