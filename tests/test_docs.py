"""The docs tell the truth: every relative link and repository path named in README.md and docs/
exists, every output under results/reference/ is listed in its README, and every Python block of
README.md, docs/API.md and docs/DATASETS.md runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SWEEP_TEXT

import w2sjax

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path: a top-level folder of the repository (results/ only under reference/, the
# rest of it being what commands write) followed by a path, or a top-level file. A path after
# "<commit>:" names a file in git's history, not in the tree.
PATH = re.compile(
    r"(?<![\w./:-])((?:w2sjax|sweeps|results/reference|docs|tests|scripts|examples|\.ci)"
    r"(?:/[\w.-]+)*/?|Makefile|pyproject\.toml|CHANGELOG\.md)"
)
PLACEHOLDER = re.compile(r"[<{*$]")
RUNNABLE = ["README.md", "docs/API.md", "docs/DATASETS.md"]


def _links(page: Path) -> list[str]:
    targets = [t for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:|#", t)]
    return [t.split("#")[0] for t in targets if t.split("#")[0]]


def _paths(page: Path) -> list[str]:
    text = page.read_text()
    found = []
    for match in PATH.finditer(text):
        path = match.group(1).rstrip(".")
        after = text[match.end() : match.end() + 1]
        if PLACEHOLDER.search(after) or PLACEHOLDER.search(path):
            continue  # a pattern such as sweeps/boundary/<name>.toml or results/reference/*.json
        found.append(path)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_and_path_exists(page):
    missing = [t for t in _links(page) if not (page.parent / t).exists()]
    missing += [p for p in _paths(page) if not (REPO / p).exists()]
    assert not missing, f"{page.relative_to(REPO)} names what does not exist: {missing}"


def test_the_path_check_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "[gone](nowhere.md) and `sweeps/paper/gone.toml`, `docs/MODEL.md`, "
        "`git show e847e4a:results/reference/old.json`, `sweeps/boundary/<name>.toml`\n"
    )
    assert _links(page) == ["nowhere.md"]
    assert _paths(page) == ["sweeps/paper/gone.toml", "docs/MODEL.md"]


def test_every_reference_output_is_listed():
    root = REPO / "results" / "reference"
    index = (root / "README.md").read_text()
    entries = [
        f"{group.name}/{entry.name}"
        for group in sorted(root.iterdir())
        if group.is_dir()
        for entry in sorted(group.iterdir())
    ]
    named = lambda entry: re.search(rf"{re.escape(entry)}(?![\w.-])", index)
    assert entries and not [e for e in entries if not named(e)]


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / page).read_text(), re.S)


@pytest.fixture(scope="module")
def after_make_sweep(tmp_path_factory, reference):
    """A folder as a fresh clone's is after `make sweep`: `results/default` here holds a small
    stand-in (SWEEP_TEXT named default: the same axes, n_st and p_b, as sweeps/default.toml)."""
    root = tmp_path_factory.mktemp("clone")
    text = SWEEP_TEXT.replace('name = "sw"', 'name = "default"')
    w2sjax.run(text, out=root / "results", quiet=True)
    (root / "sweeps").symlink_to(REPO / "sweeps")
    return root


@pytest.mark.parametrize("page", RUNNABLE)
def test_every_python_block_runs_as_written(page, after_make_sweep):
    blocks = _python_blocks(page)
    assert blocks
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    for block in blocks:  # in order: a later block may read what an earlier one wrote
        result = subprocess.run(
            [sys.executable, "-c", block],
            cwd=after_make_sweep,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, f"{page}:\n{block}\n{result.stderr[-3000:]}"
