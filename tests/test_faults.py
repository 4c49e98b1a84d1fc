"""Fault injection at scale (slow; `make test-slow`): a 200-run sweep killed with SIGKILL at 5
random moments, a --fresh killed inside its deletion, random damage to a 200-run dataset; each must
end with exactly the rows of an uninterrupted run of the same command."""

from __future__ import annotations

import random
import shutil
import signal
import time

import pyarrow.parquet as pq
import pytest
from conftest import SWEEP_TEXT, assert_same_tables, cli, finish

import w2sjax
from w2sjax.tables.layout import parts

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

    finish(cli(*args("clean")))
    parts = lambda: len(list((tmp_path / "killed" / "sw" / "runs").glob("*/*.parquet")))  # noqa: E731
    rng = random.Random(20261128)
    kills = 0
    for _ in range(5):
        before = parts()
        proc = cli(*args("killed"))
        deadline = time.monotonic() + 120
        while parts() == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))  # a random moment inside the run, mid-chunk or not
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 5 and 0 < parts() < 100
    finish(cli(*args("killed")))
    clean, killed = (w2sjax.load(tmp_path / out / "sw") for out in ("clean", "killed"))
    assert len(clean.runs) == 200
    assert_same_tables(killed, clean, exact=True)
    assert not list((tmp_path / "killed").rglob(".*tmp*"))


@pytest.mark.slow
def test_sigkill_during_a_fresh_deletion_never_mixes_old_parts_in(tmp_path):
    """An old dataset of another spec, padded with 20000 files so its deletion takes a while, is
    replaced with --fresh; the process is killed inside the deletion five times. Each time no old
    file may sit in the dataset folder; the final rerun ends with exactly a clean run's rows."""
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT)
    old = tmp_path / "template"
    finish(cli("sweep", str(spec), "--out", str(old), "--quiet", "--set", "eta=0.7"))
    padding = old / "sw" / "report" / "padding"
    padding.mkdir(parents=True)
    for i in range(20000):
        (padding / f"f{i}").write_text("old")
    out = tmp_path / "out"
    args = ["sweep", str(spec), "--out", str(out), "--quiet", "--fresh"]
    rng = random.Random(20261129)
    caught = 0  # kills that left the old folder renamed aside, mid-deletion
    for _ in range(5):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old, out)
        proc = cli(*args)
        deadline = time.monotonic() + 120
        while not list(out.glob(".sw.deleting-*")) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        caught += bool(list(out.glob(".sw.deleting-*")))
        root = out / "sw"
        assert not (root / "report").exists()  # the old folder is aside or gone, never inside
        for part in parts(root, "runs"):
            assert pq.read_table(part, columns=["eta"]).column("eta").to_pylist() == [0.5] * 6
    assert caught >= 3
    finish(cli(*args))
    assert not list(out.glob(".sw.deleting-*"))
    clean = tmp_path / "clean"
    finish(cli("sweep", str(spec), "--out", str(clean), "--quiet"))
    assert_same_tables(w2sjax.load(out / "sw"), w2sjax.load(clean / "sw"), exact=True)


@pytest.mark.slow
def test_random_damage_to_a_200_run_dataset_is_recomputed_exactly(tmp_path):
    """Twelve random parts of a 100-chunk dataset truncated, overwritten, deleted or joined by
    stray files; one resume gives back exactly the clean rows."""
    spec = tmp_path / "sw.toml"
    spec.write_text(BIG)
    args = lambda out: [
        "sweep",
        str(spec),
        "--out",
        str(tmp_path / out),
        "--quiet",  # noqa: E731
        "--max-chunk",
        "2",
    ]
    finish(cli(*args("clean")))
    shutil.copytree(tmp_path / "clean", tmp_path / "damaged")
    root = tmp_path / "damaged" / "sw"
    rng = random.Random(20261129)
    victims = rng.sample([p for t in ("runs", "steps") for p in parts(root, t)], 12)
    for i, path in enumerate(victims):
        kind = i % 4
        if kind == 0:
            path.write_bytes(path.read_bytes()[: rng.randrange(1, path.stat().st_size)])
        elif kind == 1:
            path.write_text("garbage")
        elif kind == 2:
            path.unlink()
        else:
            (path.parent / f"stray-{i}.txt").write_text("stray")
    out = finish(cli(*args("damaged")))
    assert "already written" in out
    assert_same_tables(w2sjax.load(root), w2sjax.load(tmp_path / "clean" / "sw"), exact=True)
