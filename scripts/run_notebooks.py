"""Execute the notebooks and save them with their outputs (``make notebooks``), or check that the
outputs saved in them are still what the code prints.

    python scripts/run_notebooks.py                 # run notebooks/*.ipynb top to bottom, save in place
    python scripts/run_notebooks.py --check         # run them in memory, compare with what is saved
    python scripts/run_notebooks.py notebooks/rnn_scratch_en.ipynb    # just one

What a notebook claims is the text its code cells print or display: perplexities, agreement
figures, continuations, tables, and the source listings it reads from the package. The check runs
the notebook afresh and compares that text cell by cell with the saved outputs: the words exactly,
the numbers to a relative 1e-3 (an absolute 1e-6 for figures at the level of float noise, such as
the difference between two backends' weights). Cells tagged ``volatile`` (timings, tokens/s) run but
are not compared; images are not compared either (they draw numbers that cells also print).

The kernel imports scratchrnn from this checkout's ``src/`` (PYTHONPATH), whatever is installed, and
runs in a scratch folder, so nothing a notebook might write lands in the repository.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
VOLATILE_TAG = "volatile"
REL_TOL, ABS_TOL = 1e-3, 1e-6
TIMEOUT_S = 1200        # per cell: generous, for a machine shared with other work
REGENERATE = "make notebooks"

# a number as Python prints one: 12, -3.5, .5, 1e-06, 2.4e+01
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def kernel_env() -> dict[str, str]:
    """The environment of the notebook's kernel: this checkout's src/ first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def execute(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``, run top to bottom in a fresh kernel (raises on the first failing cell)."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="scratchrnn-notebook-") as scratch:
        client = NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": scratch}})
        client.execute(env=kernel_env())
    return notebook


def save(notebook: nbformat.NotebookNode, path: Path) -> None:
    # the Python version the kernel reported changes with the machine, not with what the notebook says
    notebook.metadata.get("language_info", {}).pop("version", None)
    nbformat.write(notebook, path)


def is_volatile(cell) -> bool:
    return VOLATILE_TAG in cell.get("metadata", {}).get("tags", [])


def output_text(output) -> str:
    """The text one output shows: a stream's stdout, a result's Markdown or plain text, an error."""
    kind = output.get("output_type")
    if kind == "stream":
        # stderr carries warnings from the libraries, with paths and versions: not a claim
        return output.get("text", "") if output.get("name") == "stdout" else ""
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        return data.get("text/markdown") or data.get("text/plain", "")
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}"
    return ""


def cell_text(cell) -> str:
    """All a cell printed and displayed, in order. A stream may come in several pieces, cut anywhere
    (where the kernel happened to flush), so pieces join as they are; a displayed result is a line
    (or lines) of its own."""
    parts = []
    for output in cell.get("outputs", []):
        text = output_text(output)
        if output.get("output_type") != "stream" and text:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            text += "\n"
        parts.append(text)
    return "".join(parts)


def claims(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(cell number, text it printed or displayed) for every code cell not tagged volatile."""
    return [(number, cell_text(cell)) for number, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and not is_volatile(cell)]


def _numbers_close(a: float, b: float) -> bool:
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def _number_difference(saved: str, fresh: str) -> str | None:
    """Where two texts that read the same but for their numbers part; '' if they differ in words."""
    if NUMBER.split(saved) != NUMBER.split(fresh):
        return ""
    for a, b in zip(NUMBER.findall(saved), NUMBER.findall(fresh)):
        if not _numbers_close(float(a), float(b)):
            return f"saved {a}, now {b}"
    return None


def text_difference(saved: str, fresh: str) -> str | None:
    """None when the texts say the same (numbers within tolerance), else where they first part."""
    difference = _number_difference(saved, fresh)
    if difference is None or difference:
        return difference
    saved_lines, fresh_lines = saved.splitlines(), fresh.splitlines()
    for line_number, (a, b) in enumerate(zip(saved_lines, fresh_lines), 1):
        if _number_difference(a, b) is not None:
            return f"line {line_number}: saved {a.strip()!r}, now {b.strip()!r}"
    return f"saved {len(saved_lines)} lines, now {len(fresh_lines)}"


def stale_outputs(saved: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
    """What the saved notebook claims that a fresh run no longer prints (empty: up to date)."""
    problems = []
    code_cells = [cell for cell in saved.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code_cells]
    if counts != list(range(1, len(code_cells) + 1)):
        problems.append("the saved notebook was not run top to bottom in one kernel")
    saved_claims, fresh_claims = claims(saved), claims(fresh)
    if [n for n, _ in saved_claims] != [n for n, _ in fresh_claims]:
        return problems + ["its cells changed since it was run"]
    for (number, saved_text), (_, fresh_text) in zip(saved_claims, fresh_claims):
        difference = text_difference(saved_text, fresh_text)
        if difference is not None:
            first_line = saved.cells[number].source.strip().splitlines()[0][:60]
            problems.append(f"cell {number} ({first_line}): {difference}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true",
                        help="do not save: run each notebook and report saved outputs that are stale")
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks or NOTEBOOKS:
        fresh = execute(path)
        if not args.check:
            save(fresh, path)
            print(f"{path}: run and saved")
            continue
        problems = stale_outputs(nbformat.read(path, as_version=4), fresh)
        if problems:
            status = 1
            print(f"{path}: saved outputs are stale (run `{REGENERATE}`):", *problems, sep="\n  ")
        else:
            print(f"{path}: saved outputs are current")
    return status


if __name__ == "__main__":
    sys.exit(main())
