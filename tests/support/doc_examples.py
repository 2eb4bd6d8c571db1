"""The fenced code blocks of README.md and docs/*.md, the marker before each, and their links.

Every fenced block is preceded (blank lines aside) by one HTML comment, invisible once
rendered:
- `<!-- example: NAME -->`: a runnable example; tests/e2e/test_doc_examples.py runs it
  against a real API and worker and checks what the text says; or a configuration example
  (CONFIGURATION_EXAMPLES) that a test fixture starts its program with;
- `<!-- not run: REASON -->`: an output sample, a fragment or a configuration excerpt.

Runnable examples are written for `make run`: they reach the API at `DOC_BASE_URL` and the
command line at `.venv/bin/`; `runnable_code()` points both at the test's own server and
interpreter, which is the only change made to the text before it runs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOC_BASE_URL = "http://127.0.0.1:8081"
DOC_VENV_BIN = ".venv/bin/"

# Configuration examples are not run as they stand: the fixture named here starts the program
# they configure from the block itself (addresses filled in), so the tests run what the page
# shows. Each module names its block in DOC_EXAMPLE.
CONFIGURATION_EXAMPLES = {"pgbouncer-ini": "tests.support.pgbouncer"}
RUNNABLE_LANGUAGES = ("bash", "python")

_EXAMPLE = re.compile(r"^<!-- example: ([a-z0-9][a-z0-9-]*) -->$")
_NOT_RUN = re.compile(r"^<!-- not run: (\S.*) -->$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")


@dataclass(frozen=True)
class DocBlock:
    """One fenced block: where it is, its language, its text and its marker."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    example: str | None  # the name, when the block is a runnable example
    not_run: str | None  # the reason, when it is not

    @property
    def where(self) -> str:
        """`docs/api.md:42`, for messages."""
        return f"{self.path.relative_to(PROJECT_ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every page under docs/."""
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]


def _split(path: Path) -> tuple[list[DocBlock], list[tuple[int, str]]]:
    """The file's fenced blocks, and its other lines (number, text) outside any block."""
    blocks: list[DocBlock] = []
    prose: list[tuple[int, str]] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            prose.append((index + 1, lines[index]))
            index += 1
            continue
        fence, language = opening.groups()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        # The nearest non-blank line above: a marker, or whatever stands there instead.
        marker = next((text.strip() for text in reversed(lines[:index]) if text.strip()), "")
        example = _EXAMPLE.match(marker)
        not_run = _NOT_RUN.match(marker)
        blocks.append(
            DocBlock(
                path=path,
                line=index + 1,
                language=language,
                code="\n".join(lines[index + 1 : end]) + "\n",
                example=example.group(1) if example else None,
                not_run=not_run.group(1) if not_run else None,
            )
        )
        index = end + 1
    return blocks, prose


def doc_blocks(path: Path) -> list[DocBlock]:
    """Every fenced block of one file, in order."""
    return _split(path)[0]


def all_blocks() -> list[DocBlock]:
    """Every fenced block of README.md and docs/*.md."""
    return [block for path in doc_files() for block in doc_blocks(path)]


def examples() -> list[DocBlock]:
    """Every example, runnable or configuration, in document order."""
    return [block for block in all_blocks() if block.example]


def runnable_examples() -> list[DocBlock]:
    """The examples tests/e2e/test_doc_examples.py runs (configuration examples aside)."""
    return [block for block in examples() if block.example not in CONFIGURATION_EXAMPLES]


def example_block(name: str) -> DocBlock:
    """The example called `name`."""
    found = [block for block in examples() if block.example == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} examples are called {name!r} in README.md and docs/")
    return found[0]


def runnable_code(block: DocBlock, base_url: str) -> str:
    """The example's text aimed at the server at `base_url` and this interpreter's scripts."""
    bin_dir = f"{Path(sys.executable).parent}/"
    return block.code.replace(DOC_BASE_URL, base_url.rstrip("/")).replace(DOC_VENV_BIN, bin_dir)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a markdown file (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    for _, text in _split(path)[1]:
        heading = _HEADING.match(text)
        if not heading:
            continue
        anchor = github_anchor(heading.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        if count:
            seen[f"{anchor}-{count}"] = 1
    return set(seen)


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link to another file of the repository, outside code."""
    found = []
    for number, text in _split(path)[1]:
        for target in _LINK.findall(_INLINE_CODE.sub("", text)):
            if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                found.append((number, target))
    return found
