"""``scratchrnn explain``: one self-contained HTML file, and every way the command can be refused (exit 2,
one line, nothing written). The page itself is drawn in a browser by test_explorer_browser.py."""
import json
import re

import pytest
from serve_helpers import run_cli, train_run

from scratchrnn import cli, explorer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {"lstm": train_run(tmp_path_factory),
            "rnn": train_run(tmp_path_factory, "rnn", ["--cleaning", "chapter", "--embedding", "learned",
                                                       "--embed-dim", "4"])}


def _embedded(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="embedded-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_explain_writes_one_file_holding_its_data_and_scripts(runs, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text('"Hello," she said.\nHe looked (briefly) at it.\n' * 30, encoding="utf-8")
    out = tmp_path / "out.html"
    proc = run_cli("explain", runs["lstm"], "--text", text, "--html", out, "--max-chars", 120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"scratchrnn: wrote {out} (120 characters explained)"
    html = out.read_text(encoding="utf-8")
    # nothing is fetched: no script or stylesheet from elsewhere, no link to a server
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(?!data:)', html)
    assert "fetch(\"/api" not in html.split("<script>")[0]
    data = _embedded(html)
    assert data["model"]["cell"] == "lstm" and data["model"]["id"] == "lstm"
    analysis = data["analysis"]
    assert len(analysis["text"]) == 120 and len(analysis["surprise"]) == 119
    assert analysis["gradients"]["positions"] == list(range(120))        # every position answers a click
    assert {f["name"] for f in analysis["features"]} >= {"inside quotes", "after a newline", "position in line"}
    assert len(data["curves"]["epoch"]) == 4


def test_explain_on_the_chapters_cleaning_and_a_gateless_cell(runs, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("The Time Traveller (briefly) smiled at the machine", encoding="utf-8")
    out = tmp_path / "out.html"
    assert run_cli("explain", runs["rnn"], "--text", text, "--html", out).returncode == 0
    data = _embedded(out.read_text(encoding="utf-8"))
    assert data["analysis"]["text"] == "the time traveller briefly smiled at the machine"     # cleaned as trained
    assert data["model"]["sigmoid_gates"] == [] and data["analysis"]["saturation"] == [{}]
    assert {f["name"] for f in data["analysis"]["features"]} == {"inside a word", "position in word"}


def test_explain_refuses_in_one_line_and_writes_nothing(runs, tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("The time", encoding="utf-8")
    strange = tmp_path / "strange.txt"
    strange.write_text("The \u2603 time", encoding="utf-8")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    existing = tmp_path / "existing.html"
    existing.write_text("keep me")
    cases = [
        (["--text", strange, "--html", tmp_path / "a.html"], "'\u2603'"),
        (["--text", binary, "--html", tmp_path / "b.html"], "not UTF-8"),
        (["--text", tmp_path / "missing.txt", "--html", tmp_path / "c.html"], "not found"),
        (["--text", good, "--html", existing], "--overwrite"),
        (["--text", good, "--html", tmp_path / "no-dir" / "d.html"], "does not exist"),
        (["--text", good, "--html", tmp_path / "e.html", "--max-chars", "0"], "--max-chars"),
    ]
    for k, (args, fragment) in enumerate(cases):
        if k == 0:          # as a user runs it: a process of its own
            status, err = (lambda p: (p.returncode, p.stderr))(run_cli("explain", runs["lstm"], *args))
        else:               # the others in this process, which is quicker: the same main, the same stderr
            try:
                status = cli.main(["explain", str(runs["lstm"]), *map(str, args)])
            except SystemExit as exit:          # argparse's refusals
                status = exit.code
            err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.txt", "existing.html", "good.txt", "strange.txt"]
    assert existing.read_text() == "keep me"
    assert run_cli("explain", runs["lstm"], "--text", good, "--html", existing, "--overwrite").returncode == 0


def test_no_text_can_end_the_pages_script_elements():
    html = explorer.page({"analysis": {"text": "</script><script>alert(1)</script><!--"}})
    assert html.count("</script>") == html.count("<script") == 3      # the data and the two scripts
    assert _embedded(html)["analysis"]["text"] == "</script><script>alert(1)</script><!--"
