"""The package's shape: the import contract of pyproject.toml ([tool.importlinter]: a stage
imports only earlier stages, config is jax-free) holds and breaks on a planted back-import, and
`import w2sjax` and the command line's input checks load no jax."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root` (found first on the path), with no cache left
    behind in the work tree."""
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )


def test_every_stage_imports_only_earlier_stages():
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, planted, broken",
    [
        ("config/grid.py", "from w2sjax.engine import theory", "a stage imports only earlier"),
        ("engine/train.py", "from w2sjax.tables import layout", "a stage imports only earlier"),
        ("tables/layout.py", "import w2sjax.sweep.buckets", "a stage imports only earlier"),
        ("analysis/regimes.py", "import w2sjax.cli.errors", "a stage imports only earlier"),
        ("config/toml.py", "import jax.numpy", "config is jax-free"),
    ],
)
def test_a_planted_back_import_breaks_the_contract(tmp_path, module, planted, broken):
    shutil.copytree(REPO / "w2sjax", tmp_path / "w2sjax")
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    path = tmp_path / "w2sjax" / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_import_and_input_checks_load_no_jax(tmp_path):
    """Nor does the synthetic source load scikit-learn, which only the digits source reads."""
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[strong]\nn_st = -1\n')
    code = (
        "import sys, w2sjax\n"
        "from w2sjax.cli.main import main\n"
        f"status = [main(['sweep', {str(bad)!r}]), main(['run', {str(bad)!r}]),\n"
        f"          main(['sweep', {str(bad)!r}, '--set', 'bad_field=1']),\n"
        f"          main(['sweep', {str(bad)!r}, '--set', 'n_st=5', '--set', 'source=\"npz\"'])]\n"
        "w2sjax.config.build({})\n"
        "loaded = ('jax', 'jaxlib', 'sklearn')\n"
        "print(status, sorted(m for m in sys.modules if m.split('.')[0] in loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "[2, 2, 2, 2] []", result.stdout + result.stderr
    assert result.stderr.count("w2sjax: error: ") == 4
    assert 'data.path: data.source = "npz" needs the path' in result.stderr
