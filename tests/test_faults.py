"""Fault injection at scale (slow; `make test-slow`): a sweep of 200 runs is killed with SIGKILL
at 5 random moments and resumed each time; it must end with exactly the rows of an uninterrupted
run of the same command."""

from __future__ import annotations

import random
import signal
import time

import pytest
from conftest import SWEEP_TEXT, assert_same_tables
from test_sweep import _cli, _finish

import w2sjax

BIG = (
    SWEEP_TEXT.replace("seeds = 3", "seeds = 20")
    .replace("p_b = [0.2, 0.4]", "p_b = [0.1, 0.2, 0.3, 0.4, 0.5]")
    .replace("steps = 25", "steps = 2000")
)  # 2 x 5 points x 20 seeds = 200 runs, 100 chunks


@pytest.mark.slow
def test_five_sigkills_at_random_moments_lose_nothing(tmp_path):
    spec = tmp_path / "sw.toml"
    spec.write_text(BIG)

    def args(out: str) -> list[str]:
        return ["sweep", str(spec), "--out", str(tmp_path / out), "--quiet", "--max-chunk", "2"]

    _finish(_cli(*args("clean")))
    parts = lambda: len(list((tmp_path / "killed" / "sw" / "runs").glob("*/*.parquet")))  # noqa: E731
    rng = random.Random(20261128)
    kills = 0
    for _ in range(5):
        before = parts()
        proc = _cli(*args("killed"))
        deadline = time.monotonic() + 120
        while parts() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment inside the run, mid-chunk or not
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 5 and 0 < parts() < 100
    _finish(_cli(*args("killed")))
    clean, killed = (w2sjax.load(tmp_path / out / "sw") for out in ("clean", "killed"))
    assert len(clean[0]) == 200
    assert_same_tables(killed, clean, exact=True)
    assert not list((tmp_path / "killed").rglob(".*tmp*"))
