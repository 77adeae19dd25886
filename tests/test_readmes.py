"""The documentation tells the command line the parser defines, in both languages, and every link and
file it names is there.

The command line is documented in docs/usage.md (``## The command line``) and docs/usage.zh-CN.md
(``## 命令行``): each section starts with a code block of usage lines, ``scratchrnn SUBCOMMAND [--option
...]`` with continuation lines indented below. Both pages must list the same subcommands with the same
options, and those must be exactly the options ``scratchrnn.cli.build_parser`` defines: an option added
to the parser and not to both pages (or one removed from the parser and still documented) fails here.
The READMEs, the front door, must name the same make targets, link every page of docs/, and every
relative link and file path in the documentation must lead somewhere; every recorded benchmark result
is cited by a page, and every result a page cites exists.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from scratchrnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
READMES = {"en": ROOT / "README.md", "zh": ROOT / "README.zh-CN.md"}
USAGE = {"en": (ROOT / "docs" / "usage.md", "The command line"),
         "zh": (ROOT / "docs" / "usage.zh-CN.md", "命令行")}
RESULTS = ROOT / "benchmarks" / "results"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
MAKE_TARGET = re.compile(r"\bmake ([\w./-]*\w)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# a repository path in a code span: a name with a directory and a file extension, nothing to expand
NAMED_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)+\.(?:py|md|json|txt|c|h|png|svg|ipynb|toml)")
RESULT_FILE = re.compile(r"[\w.-]+\.(?:json|txt|md)")


def _pages() -> list[Path]:
    """Every page of documentation: the READMEs, docs/ (results and experiments included), the
    benchmarks' README and its Markdown results, data/README.md."""
    pages = [*READMES.values(), ROOT / "benchmarks" / "README.md", ROOT / "data" / "README.md"]
    pages += sorted((ROOT / "docs").rglob("*.md")) + sorted(RESULTS.glob("*.md"))
    return [page for page in pages if page.exists()]


def _prose(text: str) -> str:
    """A page without its fenced code blocks (usage lines, commands and code are not links)."""
    return FENCE.sub("", text)


def _section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def documented_command_line(language: str) -> dict[str, set[str]]:
    """Subcommand -> the options its usage lines list, from the usage page's command-line code block."""
    path, heading = USAGE[language]
    # the section's first code block is the usage; later ones are examples
    block = re.search(r"^```[^\n]*\n(.*?)^```", _section(path.read_text(encoding="utf-8"), heading),
                      re.M | re.S)
    assert block, f"{path.name}: no code block under '## {heading}'"
    usage: dict[str, set[str]] = {}
    current = None
    for line in block.group(1).splitlines():
        start = re.match(r"scratchrnn (\w+)", line)
        if start:
            current = usage.setdefault(start.group(1), set())
        elif not line.startswith((" ", "\t")):
            current = None          # something else: a comment, another command
        if current is not None:
            current.update(OPTION.findall(line))
    return usage


def parser_command_line() -> dict[str, set[str]]:
    """Subcommand -> the long options scratchrnn's parser defines for it (--help aside)."""
    parser = build_parser()
    subcommands = next(action for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction)).choices
    return {name: {option for action in sub._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help"}
            for name, sub in subcommands.items()}


def test_both_usage_pages_list_the_same_commands_and_options():
    english, chinese = documented_command_line("en"), documented_command_line("zh")
    assert {"train", "generate"} <= set(english)
    assert sorted(english) == sorted(chinese)
    for command in english:
        assert english[command] == chinese[command], (
            f"scratchrnn {command}: only in docs/usage.md: {sorted(english[command] - chinese[command])}; "
            f"only in docs/usage.zh-CN.md: {sorted(chinese[command] - english[command])}")


def test_usage_lists_every_option_the_parser_defines():
    documented, defined = documented_command_line("en"), parser_command_line()
    assert sorted(documented) == sorted(defined), "docs/usage.md's usage lines and the parser's subcommands"
    for command in defined:
        missing, stale = defined[command] - documented[command], documented[command] - defined[command]
        assert not missing and not stale, (
            f"scratchrnn {command}: options the parser has and docs/usage.md's usage lines lack: {sorted(missing)}; "
            f"listed there but not in the parser: {sorted(stale)} (update docs/usage.md and docs/usage.zh-CN.md)")


def test_both_readmes_name_the_same_make_targets():
    english, chinese = (set(MAKE_TARGET.findall(path.read_text(encoding="utf-8"))) for path in READMES.values())
    assert {"demo", "test"} <= english
    assert english == chinese, (f"only in README.md: {sorted(english - chinese)}; "
                                f"only in README.zh-CN.md: {sorted(chinese - english)}")
    makefile = (ROOT / "Makefile").read_text()
    rule_heads = {name for head in re.findall(r"^([\w .%-]+?)\s*:(?!=)", makefile, re.M) for name in head.split()}
    plain = {target for target in english if re.fullmatch(r"[\w-]+", target)}
    assert plain <= rule_heads, f"make targets the READMEs name that the Makefile lacks: {sorted(plain - rule_heads)}"


def test_the_readmes_link_every_page_of_docs():
    """The front door leads to every page: README.md to each English page of docs/, README.zh-CN.md to
    each page's Chinese version where it has one, else to the English page."""
    english_pages = [page for page in sorted((ROOT / "docs").glob("*.md")) if not page.name.endswith(".zh-CN.md")]
    for language, readme in READMES.items():
        linked = {(readme.parent / target.partition("#")[0]).resolve() for target in _links(readme)}
        for page in english_pages:
            chinese = page.with_name(page.name[:-len(".md")] + ".zh-CN.md")
            wanted = chinese if language == "zh" and chinese.exists() else page
            assert wanted.resolve() in linked, f"{readme.name} links no {wanted.relative_to(ROOT)}"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens,
    a repeated one numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _prose(page.read_text(encoding="utf-8")), re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page.read_text(encoding="utf-8")))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]          # http:, https:, mailto: are not ours


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    for target in _links(page):
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        assert destination.exists(), f"{page.relative_to(ROOT)}: the link to {target} leads nowhere"
        assert ROOT in destination.parents or destination == ROOT, f"{page.relative_to(ROOT)}: {target} leaves the repository"
        if anchor and destination.suffix == ".md":
            assert anchor in _anchors(destination), (
                f"{page.relative_to(ROOT)}: {destination.relative_to(ROOT)} has no heading #{anchor}")


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_file_a_page_names_exists(page):
    """A path in a code span (``src/scratchrnn/optim.py``, ``results/x.json``, ``backends/base.py``)
    that points into a folder of the repository (from its root, the page's folder, the package or
    benchmarks/) names a file that is there. Paths into folders the repository lacks (``DIR/report.md``,
    another project's files) are not its own."""
    bases = [ROOT, page.parent, ROOT / "src" / "scratchrnn", ROOT / "benchmarks"]
    for span in CODE_SPAN.findall(_prose(page.read_text(encoding="utf-8"))):
        for name in NAMED_PATH.findall(span):
            if not re.search(r"(?<![\w.-])" + re.escape(name) + r"(?![\w/.-])", span):
                continue                                  # part of something longer (a URL, a pattern)
            folders = [base for base in bases if (base / name).parent.is_dir()]
            assert not folders or any((base / name).exists() for base in folders), (
                f"{page.relative_to(ROOT)} names {name}, which is not in the repository")


def test_the_benchmark_results_and_the_pages_that_cite_them_agree():
    """benchmarks/results holds what the pages cite, and nothing else: a file no page names is history
    (git keeps it), and a results file benchmarks/README.md names by itself must be there."""
    texts = {page: page.read_text(encoding="utf-8") for page in _pages()}
    everything = "\n".join(texts.values())
    uncited = sorted(path.name for path in RESULTS.iterdir()
                     if not re.search(r"(?<![\w.-])" + re.escape(path.name) + r"(?![\w.-])", everything))
    assert not uncited, f"benchmarks/results files no page cites: {uncited}"
    named = {span for span in CODE_SPAN.findall(texts[ROOT / "benchmarks" / "README.md"])
             if RESULT_FILE.fullmatch(span)}
    missing = sorted(name for name in named if not (RESULTS / name).exists())
    assert not missing, f"benchmarks/README.md cites results files that are not there: {missing}"


def test_the_link_checks_can_fail(tmp_path):
    """The checks above find what they look for: a link to a missing file or heading, a missing path."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A heading, with `code`\n\n[x](missing.md) [y](#a-heading-with-code)"
                    " [z](#nowhere) `src/scratchrnn/no_such_module.py`\n\n```\n[not a link](nowhere.md)\n```\n",
                    encoding="utf-8")
    assert _links(page) == ["missing.md", "#a-heading-with-code", "#nowhere"]
    assert _anchors(page) == {"title", "a-heading-with-code"}
    names = [name for span in CODE_SPAN.findall(_prose(page.read_text())) for name in NAMED_PATH.findall(span)]
    assert names == ["src/scratchrnn/no_such_module.py"] and not (ROOT / names[0]).exists()
