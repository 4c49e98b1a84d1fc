"""examples/quickstart.py, the notebook a researcher opens first, runs end to end as a script
(as Jupyter would run its cells in order): a sweep from Python, the phase diagram, a found
boundary and learning curves by category. About a minute of three compiles and 27 runs, so it is
a `slow` test (`make test-slow`): the fast suite's Python blocks of docs/API.md run the same API."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_the_quickstart_notebook_runs_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "27 runs" in result.stdout and (tmp_path / "results" / "quickstart").is_dir()
    slope = re.search(r"n_crit ~ p_b\^(-?[\d.]+)", result.stdout)
    assert slope and float(slope.group(1)) < 0  # n_crit falls as p_b grows
