"""The sweep engine end to end: chunking, devices, processes, kills and resumes change no row."""

from __future__ import annotations

import os
import signal
import socket
import time

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import assert_same_tables, cli, finish

import w2sjax
from w2sjax.analysis.report import PAPER_COLUMNS
from w2sjax.cli.main import main
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions
from w2sjax.sweep.execution import execute
from w2sjax.tables.layout import part_path
from w2sjax.tables.lock import DatasetLock
from w2sjax.tables.store import SpecMismatch


@pytest.mark.parametrize("max_chunk", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_chunk_size_changes_nothing(sweep_file, tmp_path, reference, max_chunk):
    summary = execute(
        load_sweep(sweep_file), tmp_path, EngineOptions(max_chunk=max_chunk), quiet=True
    )
    assert summary.chunks == 2 * -(-6 // max_chunk)
    assert_same_tables(w2sjax.load(tmp_path / "sw"), reference)


def test_four_devices_change_nothing(sweep_file, tmp_path, reference):
    """The runs sharded over 4 devices give the same tables, and the sweep's one bucket (n_st 20
    and 30 padded to one program) compiles its step loop and its records once for its two
    chunks: advance's outputs are placed as begin's, so its next call takes them as they are
    (simulate.programs)."""
    env = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "JAX_LOG_COMPILES": "1",
    }
    args = ("sweep", str(sweep_file), "--out", str(tmp_path), "--quiet", "--cache", "off")
    proc = cli(*args, env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "on 4 cpu device(s)" in out
    for program in ("_begin", "_advance", "_look"):
        assert err.count(f"Finished XLA compilation of jit({program})") == 1, program
    assert_same_tables(w2sjax.load(tmp_path / "sw"), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_the_same_union(sweep_file, tmp_path, reference):
    def both() -> list:
        port = _free_port()
        return [
            cli(
                "sweep",
                str(sweep_file),
                "--out",
                str(tmp_path),
                "--quiet",
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
                env={"JAX_PLATFORMS": "cpu"},
            )
            for i in range(2)
        ]

    # While another writer holds the dataset, process 0 is refused and process 1 learns it:
    # both exit 2 instead of waiting at a barrier for each other.
    with DatasetLock(tmp_path / "sw"):
        refused = both()
        errs = [p.communicate(timeout=120)[1] for p in refused]
    assert [p.returncode for p in refused] == [2, 2], errs
    assert f"being written by pid {os.getpid()}" in errs[0]
    assert "process 0 could not set up" in errs[1]
    assert not (tmp_path / "sw" / "runs").exists()
    outs = [finish(p) for p in both()]
    assert all("6 runs simulated" in out for out in outs)  # each process did its half
    assert_same_tables(w2sjax.load(tmp_path / "sw"), reference)


def test_sigkill_then_resume(sweep_file, tmp_path):
    """Kill the sweep after its second chunk, resume, and compare with an uninterrupted run of the
    same chunk size: the same program, so the same bits. (tests/test_faults.py kills five times
    at random moments, under `slow`.)"""
    args = [
        "sweep",
        str(sweep_file),
        "--out",
        str(tmp_path / "killed"),
        "--quiet",
        "--max-chunk",
        "1",
    ]
    runs_dir = tmp_path / "killed" / "sw" / "runs"
    parts = lambda: len(list(runs_dir.glob("*/*.parquet")))  # noqa: E731
    proc = cli(*args)
    deadline = time.monotonic() + 120
    while parts() < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < parts() < 12
    out = finish(cli(*args))
    assert "already written" in out and parts() == 12
    finish(
        cli(
            "sweep",
            str(sweep_file),
            "--out",
            str(tmp_path / "clean"),
            "--quiet",
            "--max-chunk",
            "1",
        )
    )
    assert_same_tables(
        w2sjax.load(tmp_path / "killed" / "sw"), w2sjax.load(tmp_path / "clean" / "sw"), exact=True
    )
    assert not list((tmp_path / "killed").rglob(".*tmp*"))


def test_rerun_skips_written_runs_and_cleans_uncommitted(sweep_file, tmp_path):
    sweep = load_sweep(sweep_file)
    execute(sweep, tmp_path, EngineOptions(max_chunk=6), quiet=True)
    root = tmp_path / "sw"
    # Simulate a crash between a chunk's steps part and its runs part: drop one runs part.
    victim = sorted(root.glob("runs/*/*.parquet"))[0]
    bucket, chunk = victim.parent.name.removeprefix("bucket="), victim.stem.removeprefix("part-")
    victim.unlink()
    assert part_path(root, "steps", bucket, chunk).exists()
    runs, steps = w2sjax.load(root)
    assert len(runs) == 6 and set(steps.run_id) == set(runs.run_id)  # load hides the orphan
    summary = execute(sweep, tmp_path, EngineOptions(max_chunk=6), quiet=True)
    assert summary.ran == 6 and summary.skipped == 6
    assert len(list(root.glob("steps/*/*.parquet"))) == 2  # the orphan was replaced, not kept
    summary = execute(sweep, tmp_path, quiet=True)
    assert summary.ran == 0 and summary.skipped == 12


def test_changed_spec_is_refused_unless_fresh(sweep_file, tmp_path, capsys):
    execute(load_sweep(sweep_file), tmp_path, quiet=True)
    changed = load_sweep(sweep_file, {"eta": 0.1})
    with pytest.raises(SpecMismatch, match="--fresh"):
        execute(changed, tmp_path, quiet=True)
    with pytest.raises(SpecMismatch):  # another precision must not be mixed in by a resume
        execute(load_sweep(sweep_file), tmp_path, EngineOptions(precision="bf16"), quiet=True)
    assert (
        execute(load_sweep(sweep_file), tmp_path, EngineOptions(form="dense"), quiet=True).ran == 0
    )
    assert (
        main(["sweep", str(sweep_file), "--out", str(tmp_path), "--set", "eta=0.1", "--quiet"]) == 2
    )
    assert "--fresh" in capsys.readouterr().err
    summary = execute(changed, tmp_path, quiet=True, fresh=True)
    assert summary.ran == 12
    runs, _ = w2sjax.load(tmp_path / "sw")
    assert (runs.eta == 0.1).all() and len(runs) == 12


def test_load_dtypes_and_figure(sweep_file, tmp_path, capsys):
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path), "--quiet"]) == 0
    assert "figures:" in capsys.readouterr().out
    for name in ("phase_final_gain.png", "phase_final_hard.png"):
        assert (tmp_path / "sw" / name).stat().st_size > 1000, name
    runs, steps = w2sjax.load(tmp_path / "sw")
    assert pd.api.types.is_string_dtype(runs.bucket) and not any(
        isinstance(t, pd.CategoricalDtype) for t in [*runs.dtypes, *steps.dtypes]
    )
    assert runs.n_st.dtype == np.int64 and runs.p_b.dtype == np.float64
    assert steps.step.dtype == np.int64 and steps.test_acc.dtype == np.float32
    assert runs.run_id.is_monotonic_increasing and len(runs) == 12


def test_run_refuses_axes(sweep_file, capsys):
    assert main(["run", str(sweep_file)]) == 2
    assert "use `w2sjax sweep`" in capsys.readouterr().err


def test_report_writes_summary_and_figures(sweep_file, tmp_path, capsys):
    """The report of a two-axis sweep, then of one over n_st alone (the paper's table layout).
    (A ceiling sweep's report: test_progress.)"""
    execute(load_sweep(sweep_file), tmp_path, quiet=True)
    assert main(["report", str(tmp_path / "sw"), "--format", "pdf"]) == 0
    report = tmp_path / "sw" / "report"
    text = (report / "summary.md").read_text()
    assert "PGR" not in text
    rows = [line for line in text.splitlines() if line.startswith("| 2") or line.startswith("| 3")]
    assert len(rows) == 4  # one per (n_st, p_b) grid point
    assert "Regime rule:" in text and "Phase boundary: n_crit(p_b)" in text
    curves = ("learning_curves", "coefficient_curves")
    for name in (
        *curves,
        *(f"phase_{n}" for n in ("final_gain", "best_gain", "final_test", "final_hard")),
    ):
        assert (report / f"{name}.pdf").stat().st_size > 1000, name
    summary = pd.read_csv(report / "summary.csv")
    regimes = {"harmful", "benign", *(f"label_correction_{w}_forgetting" for w in ("then", "no"))}
    assert len(summary) == 4
    assert all(r in regimes or r.startswith("outside: ") for r in summary.regime)
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err
    # A sweep over n_st alone also gets the paper's table layout.
    execute(load_sweep(sweep_file, {"p_b": 0.2}), tmp_path / "one", quiet=True)
    assert main(["report", str(tmp_path / "one" / "sw")]) == 0
    paper = pd.read_csv(tmp_path / "one" / "sw" / "report" / "paper_table.csv")
    assert list(paper.columns) == PAPER_COLUMNS and list(paper.n_st) == [20, 30]
    assert (paper.final_test_acc_lo <= paper.final_test_acc).all() and (paper.seeds == 3).all()


def test_diverged_runs_are_counted_and_flagged(sweep_file, tmp_path, capsys):
    assert (
        main(
            [
                "sweep",
                str(sweep_file),
                "--out",
                str(tmp_path),
                "--quiet",
                "--set",
                "eta=1e38",
                "--set",
                "sigma_p=10.0",
                "--set",
                "n_st=20",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "6 runs diverged" in out
    runs, steps = w2sjax.load(tmp_path / "sw")
    assert runs.diverged.all() and str(runs.diverged_step.dtype) == "Int64"
    assert (runs.diverged_step >= 1).all() and runs.final_test_acc.isna().all()
    assert steps[steps.step == 0].test_acc.notna().all()  # rows before the divergence stay
    assert main(["report", str(tmp_path / "sw")]) == 0


def test_out_of_memory_halves_the_chunk_and_changes_nothing(
    sweep_file, tmp_path, reference, monkeypatch
):
    """XLA's RESOURCE_EXHAUSTED (injected for calls of more than 2 runs) makes the sweep retry
    in halves, for the rest of the bucket too; the tables equal the reference's."""
    import w2sjax.sweep.execution as engine

    real, sizes = engine.simulate, []

    def tight_device(shape, params, tick=None, reached=None):
        sizes.append(params.seed.shape[0])
        if params.seed.shape[0] > 2:
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")
        return real(shape, params, tick, reached)

    monkeypatch.setattr(engine, "simulate", tight_device)
    # one bucket of 12 runs (n_st 20 and 30 share a padded program), planned in one chunk
    summary = execute(load_sweep(sweep_file), tmp_path, quiet=True)
    assert summary.ran == 12 and summary.chunks == 6
    assert sizes == [12, 6, 3, 2, 2, 2, 2, 2, 2]  # three failed halvings, then 2s to the end
    assert_same_tables(w2sjax.load(tmp_path / "sw"), reference)


def test_out_of_memory_at_one_run_is_a_clear_error(sweep_file, tmp_path, monkeypatch, capsys):
    import w2sjax.sweep.execution as engine

    def no_memory(shape, params, tick=None, reached=None):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")

    monkeypatch.setattr(engine, "simulate", no_memory)
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of device memory with 1 run(s)" in err[0]


def test_full_disk_fails_before_compute(sweep_file, tmp_path, monkeypatch, capsys):
    import shutil as shutil_module

    import w2sjax.sweep.buckets as buckets
    import w2sjax.sweep.execution as engine

    monkeypatch.setattr(
        buckets.shutil,
        "disk_usage",
        lambda path: shutil_module._ntuple_diskusage(10**9, 10**9, 1000),
    )
    monkeypatch.setattr(engine, "simulate", lambda *a: pytest.fail("computed anyway"))
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "MB free" in err and "--out" in err


def test_ctrl_c_commits_the_chunk_in_flight_and_resumes(sweep_file, tmp_path, reference):
    args = ["sweep", str(sweep_file), "--out", str(tmp_path), "--quiet", "--max-chunk", "1"]
    runs_dir = tmp_path / "sw" / "runs"
    proc = cli(*args)
    deadline = time.monotonic() + 120
    while not list(runs_dir.glob("*/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    written = len(list(runs_dir.glob("*/*.parquet")))
    assert 0 < written < 12 and not list((tmp_path / "sw").rglob(".*tmp*"))
    out = finish(cli(*args))
    assert f"{written} already written" in out
    assert_same_tables(w2sjax.load(tmp_path / "sw"), reference)


@pytest.mark.slow  # 30 s; the first Ctrl-C's test stays in the fast suite
def test_a_second_ctrl_c_stops_inside_a_chunk(tmp_path):
    """The second Ctrl-C ends the sweep while a chunk computes, not after it: the chunk runs in
    a background thread and the main thread stays awake for the signal (a program with progress
    reports runs synchronously on the CPU). What was committed stays; the dataset is clean."""
    spec = tmp_path / "long.toml"
    spec.write_text(  # dense chunks of several seconds: n_st > d, many steps, one run each
        'name = "long"\nseeds = 3\n[data]\nd = 200\n[weak]\nn_wk = 20\n[strong]\nm = 10\n'
        "n_st = 600\nsteps = 40000\n[eval]\nn_test = 50\nn_val = 20\n"
    )
    runs_dir = tmp_path / "long" / "runs"
    proc = cli("sweep", str(spec), "--out", str(tmp_path), "--max-chunk", "1")
    deadline = time.monotonic() + 300
    while not list(runs_dir.glob("*/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # inside the second chunk
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "the chunk in flight was discarded" in err and "Traceback" not in err
    assert len(list(runs_dir.glob("*/*.parquet"))) == 1
    assert main(["check", str(tmp_path / "long")]) == 0
