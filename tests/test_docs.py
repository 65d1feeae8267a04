"""docs/pipeline.md documents every option of every script, and nothing else.

The convention (stated at the top of docs/pipeline.md): each script has a section whose heading
names it in backticks (``## 2. `create_features.py`: ...``); in it, every table whose header's
first cell is ``option`` lists options, one per row, the first cell an inline code span: the
option strings (``-h, --help``), then its argument (``--jobs N``) or, where the parser has a fixed
list, its choices in braces (``--norm {none,global,speaker}``); a positional argument is its
metavar (``FILE ...``). The section ``## Every script`` holds the options every parser has
(``-h/--help``, ``--version``): they count as documented for every script, and each of them must
be in every parser.

Each script's parser comes from its own ``build_parser()`` (no work is run), and is compared
with its section: every option and positional of the parser must have a row, every row must be
an option of the parser, and documented choices must be the parser's choices. Failures name
the script and the option.
"""
from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "pipeline.md"
COMMON_HEADING = "Every script"
# the scripts of the pipeline: every top-level script with a build_parser()
SCRIPTS = sorted(p.stem for p in ROOT.glob("*.py")
                 if re.search(r"^def build_parser\(", p.read_text(), re.M))

_HEADING = re.compile(r"^##\s+(?!#)(.*)$")
_SCRIPT_IN_HEADING = re.compile(r"`([A-Za-z_][\w]*)\.py`")
_OPTION_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|")
_OPTION_NAMES = re.compile(r"^(-{1,2}[A-Za-z0-9][\w-]*(?:\s*,\s*-{1,2}[A-Za-z0-9][\w-]*)*)(.*)$")
_CHOICES = re.compile(r"\{([^{}]*)\}")


class Row:
    """One documented option: its names (option strings, or a positional's metavar) and its
    documented choices (None when the row lists none)."""

    def __init__(self, cell: str, line: int):
        self.cell, self.line = cell.strip(), line
        m = _OPTION_NAMES.match(self.cell)
        if m:
            self.names = [n.strip() for n in m.group(1).split(",")]
            rest = m.group(2)
        else:                                     # a positional: its metavar first
            first, _, rest = self.cell.partition(" ")
            self.names = [first]
        c = _CHOICES.search(rest)
        self.choices = None if c is None else [x.strip() for x in c.group(1).split(",")]

    def __repr__(self) -> str:
        return f"`{self.cell}` (docs/pipeline.md line {self.line})"


def parse_doc(text: str) -> dict[str, list[Row]]:
    """The documented options by section: script name (``create_features``) or
    :data:`COMMON_HEADING` -> rows of that section's option tables."""
    sections: dict[str, list[Row]] = {}
    current: str | None = None
    in_options = False
    for n, line in enumerate(text.splitlines(), 1):
        h = _HEADING.match(line)
        if h:
            title = h.group(1).strip()
            s = _SCRIPT_IN_HEADING.search(title)
            current = (s.group(1) if s else
                       COMMON_HEADING if title.startswith(COMMON_HEADING) else None)
            if current is not None:
                assert current not in sections, f"docs/pipeline.md: two sections for {current}"
                sections[current] = []
            in_options = False
            continue
        if not line.startswith("|"):
            in_options = False                    # a table ends at the first other line
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_options:
            # a table's header: an option table when its first column is "option"
            in_options = cells[0].lower() == "option"
            header = in_options
            continue
        if header:                                # the |---|---| line under the header
            header = False
            continue
        if current is None:
            continue
        m = _OPTION_CELL.match(line)
        assert m, (f"docs/pipeline.md line {n}: an option table's row must start with the "
                   f"option in backticks: {line!r}")
        sections[current].append(Row(m.group(1), n))
    return sections


def parser_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Every argument of ``parser`` by the name its doc row starts with: an option's first
    option string (``-h``), a positional's metavar (or dest)."""
    out = {}
    for a in parser._actions:
        key = a.option_strings[0] if a.option_strings else (
            a.metavar if isinstance(a.metavar, str) else a.dest)
        out[key] = a
    return out


def _names(a: argparse.Action) -> list[str]:
    return list(a.option_strings) or [a.metavar if isinstance(a.metavar, str) else a.dest]


def _label(a: argparse.Action) -> str:
    return ", ".join(_names(a))


@pytest.fixture(scope="module")
def doc() -> dict[str, list[Row]]:
    return parse_doc(DOC.read_text(encoding="utf-8"))


def _parser(script: str) -> argparse.ArgumentParser:
    return importlib.import_module(script).build_parser()


def compare(script: str, parser: argparse.ArgumentParser, rows: list[Row],
            common: list[Row]) -> list[str]:
    """The differences between ``script``'s parser and its documented rows (plus the common
    ones), one line each naming the script and the option."""
    problems = []
    actions = parser._actions
    documented: dict[str, Row] = {}
    for r in rows:
        for name in r.names:
            if name in documented:
                problems.append(f"{script}.py: {name} is documented twice: {documented[name]} "
                                f"and {r}")
            documented[name] = r
    common_names = {name: r for r in common for name in r.names}
    for a in actions:
        names = _names(a)
        here = [n for n in names if n in documented]
        row = documented.get(here[0]) if here else next(
            (common_names[n] for n in names if n in common_names), None)
        if row is None:
            problems.append(f"{script}.py: option {_label(a)} is not documented in "
                            f"docs/pipeline.md (add a row to its section's option table)")
            continue
        if set(row.names) != set(names):
            problems.append(f"{script}.py: option {_label(a)} is documented as {row}: "
                            f"its option strings are {_label(a)}")
        want = None if a.choices is None else [str(c) for c in a.choices]
        if want is None and row.choices is not None:
            problems.append(f"{script}.py: option {_label(a)} has no fixed choices, but "
                            f"{row} lists {{{','.join(row.choices)}}}")
        elif want is not None and row.choices is None:
            problems.append(f"{script}.py: option {_label(a)} has the choices "
                            f"{{{','.join(want)}}}, not documented in {row}")
        elif want is not None and set(want) != set(row.choices):
            missing = [c for c in want if c not in row.choices]
            extra = [c for c in row.choices if c not in want]
            problems.append(f"{script}.py: option {_label(a)}: documented choices differ "
                            f"from the parser's in {row}: "
                            + "; ".join(s for s in (
                                f"not documented: {', '.join(missing)}" if missing else "",
                                f"no such choice: {', '.join(extra)}" if extra else "") if s))
    known = {n for a in actions for n in _names(a)}
    for r in rows:
        gone = [n for n in r.names if n not in known]
        if gone:
            problems.append(f"{script}.py has no option {', '.join(gone)}, but docs/pipeline.md "
                            f"documents it: {r}")
    for r in common:
        gone = [n for n in r.names if n not in known]
        if gone:
            problems.append(f"{script}.py has no option {', '.join(gone)}, documented for every "
                            f"script under '## {COMMON_HEADING}': {r}")
    return problems


def test_every_script_found():
    assert {"download_data", "tess_pipeline", "create_features", "neural_network",
            "live_predictions", "plot_model"} <= set(SCRIPTS), SCRIPTS


def test_every_script_has_a_section(doc):
    missing = [s for s in SCRIPTS if s not in doc]
    assert not missing, ("docs/pipeline.md has no section (a '## ' heading naming `SCRIPT.py`) "
                         f"for: {', '.join(f'{s}.py' for s in missing)}")
    empty = [s for s in SCRIPTS if not doc[s]]
    assert not empty, ("docs/pipeline.md: no option table (header '| option | ...') in the "
                       f"section of: {', '.join(f'{s}.py' for s in empty)}")
    stale = [s for s in doc if s != COMMON_HEADING and s not in SCRIPTS]
    assert not stale, f"docs/pipeline.md documents scripts that do not exist: {stale}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_documented_options_match_the_parser(doc, script):
    rows = doc.get(script)
    if rows is None:
        pytest.fail(f"docs/pipeline.md has no section for {script}.py")
    problems = compare(script, _parser(script), rows, doc.get(COMMON_HEADING, []))
    assert not problems, "\n".join(problems)


# ---- the check itself: it must catch what it is for -----------------------------------------
def _toy_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--mode", choices=("a", "b"), default="a")
    p.add_argument("--jobs", type=int, default=1)
    return p


TOY_DOC = """
## Every script

| option | default | what it does |
|---|---|---|
| `-h, --help` | | help |

## 9. `toy.py`: a toy

| set | values |
|---|---|
| `--not-an-option-table` | 1 |

| option | default | what it does |
|---|---|---|
| `FILE ...` | | inputs |
| `--mode {a,b}` | `a` | a mode |
| `--jobs N` | 1 | workers |
"""


def _toy_problems(text: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
    d = parse_doc(text)
    return compare("toy", parser or _toy_parser(), d["toy"], d[COMMON_HEADING])


def test_the_check_passes_a_complete_doc():
    assert _toy_problems(TOY_DOC) == []


def test_the_check_names_an_undocumented_option():
    problems = _toy_problems(TOY_DOC.replace("| `--jobs N` | 1 | workers |\n", ""))
    assert problems == ["toy.py: option --jobs is not documented in docs/pipeline.md (add a "
                        "row to its section's option table)"]


def test_the_check_names_a_documented_option_that_does_not_exist():
    p = _toy_parser()
    p._actions = [a for a in p._actions if a.dest != "jobs"]
    problems = _toy_problems(TOY_DOC, p)
    assert len(problems) == 1 and problems[0].startswith("toy.py has no option --jobs"), problems


def test_the_check_names_wrong_choices():
    problems = _toy_problems(TOY_DOC.replace("`--mode {a,b}`", "`--mode {a,c}`"))
    assert len(problems) == 1, problems
    assert "toy.py: option --mode" in problems[0], problems
    assert "not documented: b" in problems[0] and "no such choice: c" in problems[0], problems
    problems = _toy_problems(TOY_DOC.replace("`--mode {a,b}`", "`--mode M`"))
    assert problems and "has the choices {a,b}" in problems[0], problems


def test_the_check_names_a_positional_and_a_common_option():
    problems = _toy_problems(TOY_DOC.replace("| `FILE ...` | | inputs |\n", ""))
    assert problems == ["toy.py: option FILE is not documented in docs/pipeline.md (add a "
                        "row to its section's option table)"]
    with_version = TOY_DOC.replace("| `-h, --help` | | help |",
                                   "| `-h, --help` | | help |\n| `--version` | | version |")
    problems = _toy_problems(with_version)
    assert len(problems) == 1 and problems[0].startswith("toy.py has no option --version"), \
        problems
