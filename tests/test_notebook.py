"""The chapter notebooks (Chinese and English) run top to bottom, and what their saved outputs claim
is still what the code prints: `make notebooks` regenerates them when it is not."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
if importlib.util.find_spec("ipykernel") is None:
    pytest.skip("the notebooks need a Jupyter kernel (ipykernel)", allow_module_level=True)
pytest.importorskip("matplotlib")
if importlib.util.find_spec("torch") is None:     # looked up, not imported: the kernel imports it
    pytest.skip("the notebooks train the model on PyTorch too", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"zh": ROOT / "notebooks" / "rnn_scratch.ipynb", "en": ROOT / "notebooks" / "rnn_scratch_en.ipynb"}

_spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def test_both_languages_run_the_same_code():
    # only the prose is translated: the same cells print the same claims in both notebooks
    assert _code(_read(NOTEBOOKS["zh"])) == _code(_read(NOTEBOOKS["en"]))


@pytest.mark.parametrize("language", sorted(NOTEBOOKS))
def test_saved_with_outputs(language):
    notebook = _read(NOTEBOOKS[language])
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs)
    text = "\n".join(text for _, text in run_notebooks.claims(notebook))
    for claim in ("time traveller", "largest difference between the two backends' weights",
                  "def train_epoch", "finite difference"):
        assert claim in text
    assert any(run_notebooks.is_volatile(cell) for cell in notebook.cells)


def test_comparison_tolerates_float_noise_and_catches_changed_claims():
    same = run_notebooks.text_difference
    assert same("perplexity 9.4412, weights differ by 2.2e-16", "perplexity 9.4418, weights differ by 7e-15") is None
    assert same("perplexity 9.44", "perplexity 9.56") is not None
    assert same("'time traveller the time'", "'time traveller of the'") is not None
    assert same("a\nb 1.0\n", "a\nb 1.0\nc\n") is not None


def test_a_stream_flushed_in_pieces_reads_as_one_text():
    whole = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", text="a 1\nb 2\n")])
    pieces = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", text="a 1\nb"),
                                                nbformat.v4.new_output("stream", text=" 2\n")])
    assert run_notebooks.cell_text(whole) == run_notebooks.cell_text(pieces) == "a 1\nb 2\n"


@pytest.mark.parametrize("language", sorted(NOTEBOOKS))
def test_saved_outputs_are_current(language):
    """Run the notebook afresh (in a scratch folder) and compare what it prints with what is saved."""
    path = NOTEBOOKS[language]
    fresh = run_notebooks.execute(path)     # raises CellExecutionError, naming the cell, if one fails
    problems = run_notebooks.stale_outputs(_read(path), fresh)
    assert not problems, (f"{path.name}: the saved outputs are stale; run `{run_notebooks.REGENERATE}`:\n  "
                          + "\n  ".join(problems))
