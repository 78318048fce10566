"""docs/*.md stay true to the code.

* Every ```python block of every page runs, each on its own in a fresh namespace (a block is
  self-contained, as a reader copies it), under the suite's strict configuration (tests/conftest.py:
  strict dtype promotion, rank promotion raises, warnings are errors). Tracebacks point at the
  Markdown file and line.
* Every ``file.py:LINE`` reference of docs/article-to-code.md, written
  `` `name` [path.py:LINE](../path.py#LLINE) ``, points at the line that defines `name` (``def
  name``/``class name``), or, for a name that is not an identifier, at a line containing it.
* Every test named there (`` `tests/test_x.py::test_y` ``) exists, and Eq 1 to 22 are all mapped.

After code has moved, ``python tests/test_docs.py --fix`` rewrites the line numbers (each name
must be defined once in its file).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MAP = DOCS / "article-to-code.md"

REF = re.compile(
    r"`(?P<name>[^`]+)` \[(?P<file>[\w./-]+\.py):(?P<line>\d+)\]"
    r"\(\.\./(?P<target>[\w./-]+\.py)#L(?P<anchor>\d+)\)"
)
ANY_LINE_REF = re.compile(r"[\w./-]+\.py:\d+")
TEST_REF = re.compile(r"`(?P<file>tests/test_\w+\.py)::(?P<test>test_\w+)`")
BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def python_blocks() -> list[tuple[Path, int, str]]:
    """``(page, line of the first code line, code)`` of every ```python block."""
    blocks = []
    for page in pages():
        text = page.read_text()
        for m in BLOCK.finditer(text):
            blocks.append((page, text.count("\n", 0, m.start("code")) + 1, m.group("code")))
    return blocks


BLOCKS = python_blocks()


@pytest.mark.parametrize(("page", "line", "code"), BLOCKS,
                         ids=[f"{p.name}:{n}" for p, n, _ in BLOCKS])
def test_python_block_runs(page, line, code):
    # Blank lines in front, so that a traceback's line numbers are the Markdown file's.
    compiled = compile("\n" * (line - 1) + code, str(page), "exec")
    exec(compiled, {"__name__": f"docs.{page.stem}"})  # noqa: S102


def test_pages_exist_and_examples_assert():
    names = {p.name for p in pages()}
    assert {"article-to-code.md", "readers-questions.md"} <= names
    readers = [b for b in BLOCKS if b[0].name == "readers-questions.md"]
    assert len(readers) >= 7
    for page, line, code in readers:
        assert "assert " in code, f"{page.name}:{line}: an example states its facts with assert"


# ------------------------------------------------------------------------- line references
def defines(source_line: str, name: str) -> bool:
    """The line defines `name` (an identifier) or contains `name` (any other text)."""
    if name.isidentifier():
        return re.match(rf"\s*(async\s+)?(def|class)\s+{re.escape(name)}\b", source_line) is not None
    return name in source_line


def where(path: Path, name: str) -> list[int]:
    """1-based lines of `path` that define `name`."""
    return [i for i, s in enumerate(path.read_text().splitlines(), 1) if defines(s, name)]


def reference_errors(text: str) -> list[str]:
    errors = []
    for m in REF.finditer(text):
        name, file, line = m["name"], m["file"], int(m["line"])
        ref = f"`{name}` at {file}:{line}"
        if m["target"] != file or int(m["anchor"]) != line:
            errors.append(f"{ref}: the link goes to {m['target']}#L{m['anchor']}")
            continue
        path = ROOT / file
        if not path.is_file():
            errors.append(f"{ref}: no file {file}")
            continue
        lines = path.read_text().splitlines()
        if not (1 <= line <= len(lines)) or not defines(lines[line - 1], name):
            found = where(path, name)
            errors.append(f"{ref}: not on that line; found at {found or 'no line'} "
                          "(python tests/test_docs.py --fix)")
    return errors


def test_line_references_point_at_what_they_name():
    text = MAP.read_text()
    assert len(REF.findall(text)) >= 40
    errors = reference_errors(text)
    assert not errors, "\n".join(errors)


def test_no_line_reference_escapes_the_check():
    for page in pages():
        text = page.read_text()
        checked = [m.span() for m in REF.finditer(text)]
        for m in ANY_LINE_REF.finditer(text):
            assert any(a <= m.start() < b for a, b in checked), (
                f"{page.name}: {m.group()} is not written as `name` [file.py:LINE](../file.py#LLINE)"
            )


def test_named_tests_exist():
    text = MAP.read_text()
    named = list(TEST_REF.finditer(text))
    assert len(named) >= 30
    for m in named:
        path = ROOT / m["file"]
        assert path.is_file(), f"{m['file']} does not exist"
        assert re.search(rf"^def {m['test']}\(", path.read_text(), re.MULTILINE), (
            f"{m['file']} has no test {m['test']}"
        )


def test_every_equation_is_mapped():
    covered: set[int] = set()
    for m in re.finditer(r"^\| (\d+)(?:-(\d+))? \|", MAP.read_text(), re.MULTILINE):
        first = int(m[1])
        covered.update(range(first, int(m[2] or first) + 1))
    assert covered == set(range(1, 23)), f"equations not mapped: {sorted(set(range(1, 23)) - covered)}"
    text = MAP.read_text()
    for pooling in ("max_pool", "avg_pool", "_max_pool_bwd", "_avg_pool_bwd"):
        assert f"`{pooling}` [" in text


# ------------------------------------------------------------------------------- --fix
def fix(path: Path = MAP) -> list[str]:
    """Rewrite every stale reference to the one line that defines its name; returns the changes."""
    changes: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, file = m["name"], m["file"]
        source = ROOT / file
        lines = source.read_text().splitlines() if source.is_file() else []
        line = int(m["line"])
        if 1 <= line <= len(lines) and defines(lines[line - 1], name) and int(m["anchor"]) == line:
            return m.group()
        found = where(source, name) if lines else []
        if len(found) != 1:
            raise SystemExit(f"`{name}` is defined on lines {found} of {file}: fix it by hand")
        changes.append(f"`{name}` {file}:{line} -> {found[0]}")
        return f"`{name}` [{file}:{found[0]}](../{file}#L{found[0]})"

    text = REF.sub(repl, path.read_text())
    path.write_text(text)
    return changes


if __name__ == "__main__":
    if sys.argv[1:] != ["--fix"]:
        raise SystemExit("usage: python tests/test_docs.py --fix")
    for change in fix():
        print(change)
