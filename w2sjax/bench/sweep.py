"""`w2sjax bench --sweep SPEC`: a whole sweep timed end to end (compile, sampling, the weak fit,
evaluation and parquet writing included) against what the per-run loops (timing.py) would
take for the same runs."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import jax

from w2sjax.bench import timing as bench_timing
from w2sjax.bench.profile import Phases, profile_chunk
from w2sjax.bench.suite import SIZES, device_sizes
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import Sweep
from w2sjax.config.options import EngineOptions
from w2sjax.engine.batch import Shape
from w2sjax.sweep.buckets import assign_noise, chunk_size, memory_budget, plan
from w2sjax.sweep.cache import OFF
from w2sjax.sweep.execution import execute
from w2sjax.tables.durable import SyncTime


def writable_folder(folder: str | Path, option: str) -> Path:
    """`folder`, or a ConfigError naming `option` unless it is a writable folder or could be made
    one (its nearest existing ancestor a writable folder). Creates nothing: bad input leaves no
    trace, and the writers create what they write into."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option}: cannot create {folder} ({existing} is not a folder)")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{option}: {folder} is not writable")
    return folder


def prepare_keep(keep: str | Path, sweep: Sweep) -> None:
    """ConfigError unless `keep` is (or could be made) a writable folder that holds no results
    of `sweep` yet (a resumed sweep would skip runs and time nothing)."""
    if (Path(keep) / sweep.name).exists():
        raise ConfigError(f"--keep: {Path(keep) / sweep.name} exists; timing needs a new folder")
    writable_folder(keep, "--keep")


def sweep_bench(
    sweep: Sweep,
    use_torch: bool = True,
    precision: str = "highest",
    loop_steps: int | None = None,
    keep: str | Path | None = None,
    log=print,
    noise: str = "auto",
    profile: bool = False,
) -> dict:
    """Wall time of running every run of `sweep` (into a temporary folder, or into `keep`, which
    must not hold this sweep yet), from the call to the last parquet part (compile included),
    against the per-run loops' time for the same runs, and the part of it spent flushing the
    parts to disk (fsync_s: the durability of each commit). The loops' time is estimated per bucket
    as runs x steps / (their run-steps/s measured here at the bucket's n_st, d, m over
    `loop_steps` steps) and counts their training steps only, not sampling, the weak fit or
    evaluation: the speedups err against the engine. A bucket whose loops would not fit in
    memory (loop_rates) has no loop time, and then neither has the sweep (None). Raises
    KeyboardInterrupt when the sweep was stopped by Ctrl-C (its committed chunks stay in
    `keep`). profile: also time each bucket's first chunk by phase (profile.py) into the
    bucket's "phases", with "chunk_runs" runs."""
    if keep:
        prepare_keep(keep, sweep)
    loop_steps = loop_steps or SIZES[device_sizes()][5]
    with tempfile.TemporaryDirectory() as scratch:
        start, synced = time.perf_counter(), SyncTime.seconds
        # compiled cold, as the per-run loops it is compared with are; a program per n_st, so
        # the workload is the one measured before padding existed (sweep/padding.py) and its
        # buckets are those the loops and --profile time
        options = EngineOptions(precision=precision, noise=noise, cache=OFF, pad="off")
        summary = execute(sweep, keep or scratch, options, quiet=True)
        engine_s = time.perf_counter() - start
        fsync_s = SyncTime.seconds - synced
    if summary.interrupted:  # a partial sweep's time says nothing
        raise KeyboardInterrupt
    rates: dict[tuple[int, int, int], tuple[float | None, float | None]] = {}
    buckets = []
    assigned = assign_noise(sweep, noise, precision)
    budget = memory_budget(jax.local_devices()[0])
    for bucket in plan(sweep, precision=precision, noise=assigned):
        shape, runs = bucket.shape, len(bucket.runs)
        dims = (shape.n_st, shape.d, shape.m)
        if dims not in rates:
            rates[dims] = loop_rates(dims, loop_steps, use_torch, budget, log)
        jax_rate, torch_rate = rates[dims]
        buckets.append(
            {
                "n_st": shape.n_st,
                "d": shape.d,
                "m": shape.m,
                "form": shape.form,
                "noise": shape.noise,
                "runs": runs,
                "steps": shape.steps,
                "baseline_s": runs * shape.steps / jax_rate if jax_rate else None,
                "torch_s": runs * shape.steps / torch_rate if torch_rate else None,
            }
        )
        if profile:
            size = chunk_size(shape, runs, len(jax.local_devices()), budget)
            phases = profile_chunk(shape, list(bucket.runs[:size]), repeats=1)
            buckets[-1].update(chunk_runs=size, phases=asdict(phases))
            log(_phase_line(shape, size, phases))
    baseline_s, torch_s = (
        sum(b[key] for b in buckets) if all(b[key] for b in buckets) else None
        for key in ("baseline_s", "torch_s")
    )
    result = {
        "name": sweep.name,
        "runs": summary.ran,
        "devices": summary.devices,
        "diverged": summary.diverged,
        "engine_s": engine_s,
        "fsync_s": fsync_s,
        "baseline_s": baseline_s,
        "torch_s": torch_s,
        "speedup_over_baseline": baseline_s / engine_s if baseline_s else None,
        "speedup_over_torch": torch_s / engine_s if torch_s else None,
        "buckets": buckets,
    }
    loops = [
        f"{name} loop {seconds:,.1f} s ({_times(seconds / engine_s)})"
        for name, seconds in (("JAX", baseline_s), ("PyTorch", torch_s))
        if seconds
    ]
    log(
        f"sweep {sweep.name}: {summary.ran} runs on {summary.devices} in {engine_s:,.1f} s "
        f"end to end ({fsync_s:.2f} s, {fsync_s / engine_s:.2%}, flushing parts to disk); "
        f"per-run loops for the same runs: {', '.join(loops) or 'not run (memory)'}"
    )
    return result


def loop_rates(
    dims: tuple[int, int, int], steps: int, use_torch: bool, budget: int, log=print
) -> tuple[float | None, float | None]:
    """The per-run loops' run-steps/s at dims = (n_st, d, m) over `steps` steps: the JAX loop's
    and the PyTorch loop's (None without use_torch or torch). Both None, said in `log`, where
    they would hold more than `budget` bytes: they keep every noise coordinate (at d = 10^6,
    n_st = 2048 about 50 GB), which the engine's reduced sampler never draws."""
    needed = bench_timing.loop_bytes(*dims)
    if needed > budget:
        log(
            f"  n_st={dims[0]} d={dims[1]}: per-run loops not run, they would hold "
            f"{needed / 1e9:,.1f} GB (memory budget {budget / 1e9:,.1f} GB)"
        )
        return None, None
    return (
        bench_timing.jax_per_run(*dims, steps),
        bench_timing.torch_per_run(*dims, steps) if use_torch else None,
    )


def _times(ratio: float) -> str:
    """A speedup for the log: 1,234x, 56x, 1.3x, 0.0042x."""
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def _phase_line(shape: Shape, runs: int, phases: Phases) -> str:
    """One log line of a bucket's phases, in seconds and shares of the chunk's total."""
    parts = ", ".join(
        f"{name} {seconds:.2f} s ({seconds / phases.total:.0%})"
        for name, seconds in asdict(phases).items()
        if name != "total"
    )
    return (
        f"  n_st={shape.n_st} d={shape.d} {shape.form} {shape.noise}, one chunk of {runs} runs "
        f"x {shape.steps} steps: {phases.total:.2f} s = {parts}"
    )
