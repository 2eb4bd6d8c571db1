"""README.md and docs/*.md: every code block is marked, and every relative link resolves."""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path

import pytest

from tests.support.doc_examples import (
    CONFIGURATION_EXAMPLES,
    PROJECT_ROOT,
    RUNNABLE_LANGUAGES,
    all_blocks,
    anchors,
    doc_files,
    example_block,
    examples,
    github_anchor,
    relative_links,
    runnable_examples,
)


def test_doc_blocks_are_each_marked_runnable_or_not() -> None:
    unmarked = [block.where for block in all_blocks() if not (block.example or block.not_run)]

    assert not unmarked, (
        "fenced blocks need `<!-- example: NAME -->` or `<!-- not run: REASON -->` right"
        f" above them: {unmarked}"
    )


def test_doc_blocks_example_names_are_unique() -> None:
    names = Counter(block.example for block in examples())

    assert [name for name, count in names.items() if count > 1] == []


def test_doc_blocks_examples_are_shell_or_python() -> None:
    assert {block.language for block in runnable_examples()} <= set(RUNNABLE_LANGUAGES)


@pytest.mark.parametrize("name", sorted(CONFIGURATION_EXAMPLES))
def test_doc_blocks_configuration_examples_are_read_by_their_fixture(name: str) -> None:
    module = importlib.import_module(CONFIGURATION_EXAMPLES[name])

    assert name == module.DOC_EXAMPLE
    assert example_block(name).code.strip()


def test_doc_blocks_the_readme_stays_short() -> None:
    assert len((PROJECT_ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("path", doc_files(), ids=lambda path: path.name)
def test_doc_links_point_at_existing_files_and_headings(path: Path) -> None:
    broken = []
    for line, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{line}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{line}: {target} (no such heading)")
    assert broken == []


def test_github_anchor_drops_punctuation_and_code() -> None:
    assert github_anchor("`http.callback`: send an HTTP request") == (
        "httpcallback-send-an-http-request"
    )
    assert github_anchor("When the database goes away") == "when-the-database-goes-away"
