"""`w2sjax bench`: the engine's throughput against per-run loops and a matmul ceiling, one process.

Per bucket (n_st, d, m): run-steps per second of the batched engine (`simulate`, compile timed
apart), of a per-run jitted JAX loop and of a per-run PyTorch loop (when torch imports), and the
FLOP/s of a matmul ceiling measured in the same process at the same precision. The engine picks
its form as sweeps do (`--form auto`: coefficients when n_st < d). FLOPs are counted as what the
form does per run-step: dense, 8 m n_st d (the forward <w, xi> and the weight gradient, two
(2m x d)(d x n_st) products); coefficients, 4 m n_st^2 (one (n_st x n_st)(n_st x 2m) product).

This module picks the buckets and puts their figures side by side in one report (bench.json, a
row per bucket on the log), so a bucket reads as one comparison; timing.py times each
program, sweep.py times a whole sweep end to end, dims.py measures cost against d
under each noise sampler.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import jax

from w2sjax.bench.timing import engine, jax_per_run, matmul_ceiling, shape_ceiling, torch_per_run
from w2sjax.sweep.buckets import BYTES_F32
from w2sjax.tables.store import write_text

CEILING_BYTES = 16 * 2**30  # bytes of the same-shape ceiling's noise operand, at most
# (n_st values, d, m, runs, engine steps, per-run loop steps) by platform. runs None: fill the
# device as a sweep's chunk would (timing.fill_runs).
SIZES = {
    "gpu": ((75, 2000, 20000), 10000, 20, None, 400, 50),
    "cpu": ((75, 500, 2000), 1000, 20, 8, 200, 20),
    "none": ((), 0, 0, 0, 0, 0),  # `bench --sizes none --sweep SPEC`: the sweep timing only
}


@dataclass
class BucketResult:
    """One bench bucket; keys as in results/bench/bench.json."""

    n_st: int
    d: int
    m: int
    form: str
    noise: str
    dim: int
    runs: int
    steps: int
    compile_s: float  # its three programs into an empty persistent cache
    compile_cached_s: float  # the same loaded from it (jax's in-memory caches cleared)
    engine_s: float
    engine_run_steps_per_s: float
    baseline_run_steps_per_s: float
    torch_run_steps_per_s: float | None
    ceiling_flops: float
    shape_ceiling_flops: float
    achieved_flops: float
    # the engine with progress reports on (`w2sjax sweep` without --quiet) and the bar drawn
    engine_progress_s: float
    progress_overhead: float  # engine_progress_s / engine_s - 1


def device_sizes() -> str:
    """The SIZES key of the local device: "gpu" on a GPU, else "cpu"."""
    return "gpu" if jax.devices()[0].platform == "gpu" else "cpu"


def flops_per_run_step(n_st: int, dim: int, m: int, form: str) -> float:
    """FLOPs of one GD step of the form: dim is the run's working dimension (Shape.dim)."""
    return 4.0 * m * n_st * n_st if form == "coef" else 8.0 * m * n_st * dim


def run_bench(
    sizes: str = "auto",
    runs: int | None = None,
    steps: int | None = None,
    use_torch: bool = True,
    log=print,
    precision: str = "highest",
    noise: str = "auto",
    repeats: int = 5,
    done: Callable[[dict], None] | None = None,
) -> dict:
    """Measure every bucket of SIZES[sizes] ("auto": gpu sizes on a GPU, else cpu sizes; "none":
    no bucket), the engine and both ceilings at `precision` (the per-run loops stay float32, in
    all d coordinates). The engine samples noise as `noise` says (auto: as sweeps do); each
    bucket's time is the fastest of `repeats` calls. done: called with the report so far after
    each bucket (so a run cut short keeps the buckets it finished)."""
    platform = jax.devices()[0].platform
    key = device_sizes() if sizes == "auto" else sizes
    ceiling = matmul_ceiling(8192 if platform == "gpu" else 1024, precision=precision)
    log(f"matmul ceiling (float32, {precision}): {ceiling / 1e12:.2f} TFLOP/s")
    report = {
        "device": jax.devices()[0].device_kind,
        "platform": platform,
        "jax_version": jax.__version__,
        "precision": precision,
        "noise": noise,
        "sizes": key,
        "repeats": repeats,
        "ceiling_flops": ceiling,
        "buckets": [],
    }
    n_values, d, m, default_runs, default_steps, loop_steps = SIZES[key]
    runs, steps = runs or default_runs, steps or default_steps
    for n_st in n_values:
        timed = engine(
            n_st,
            d,
            m,
            runs,
            steps,
            precision=precision,
            noise=noise,
            repeats=repeats,
            progress=True,
        )
        form, dim, used = timed.shape.form, timed.shape.dim, timed.runs
        engine_rate = used * steps / timed.engine_s
        k = n_st if form == "coef" else dim
        ceiling_runs = min(used, max(1, CEILING_BYTES // (BYTES_F32 * k * n_st)))
        result = BucketResult(
            n_st=n_st,
            d=d,
            m=m,
            form=form,
            noise=timed.shape.noise,
            dim=dim,
            runs=used,
            steps=steps,
            compile_s=timed.compile_s,
            compile_cached_s=timed.compile_cached_s,
            engine_s=timed.engine_s,
            engine_run_steps_per_s=engine_rate,
            baseline_run_steps_per_s=jax_per_run(n_st, d, m, loop_steps),
            torch_run_steps_per_s=torch_per_run(n_st, d, m, loop_steps) if use_torch else None,
            ceiling_flops=ceiling,
            shape_ceiling_flops=shape_ceiling(n_st, k, m, ceiling_runs, precision=precision),
            achieved_flops=engine_rate * flops_per_run_step(n_st, dim, m, form),
            engine_progress_s=timed.progress_s,
            progress_overhead=timed.progress_s / timed.engine_s - 1.0,
        )
        report["buckets"].append(asdict(result))
        log(format_row(result))
        if done is not None:
            done(report)
    return report


def format_row(r: BucketResult) -> str:
    torch_ratio = (
        f"{r.engine_run_steps_per_s / r.torch_run_steps_per_s:,.0f}x torch"
        if r.torch_run_steps_per_s
        else "torch n/a"
    )
    return (
        f"n_st={r.n_st:>6} d={r.d} m={r.m} {r.form} {r.noise} (D={r.dim}) runs={r.runs} "
        f"steps={r.steps}: "
        f"{r.engine_run_steps_per_s:,.0f} run-steps/s "
        f"({r.engine_run_steps_per_s / r.baseline_run_steps_per_s:,.0f}x jax loop, "
        f"{torch_ratio}); {r.achieved_flops / 1e12:.2f} TFLOP/s = "
        f"{r.achieved_flops / r.ceiling_flops:.0%} of ceiling, "
        f"{r.achieved_flops / r.shape_ceiling_flops:.0%} of same-shape matmul; "
        f"compile {r.compile_s:.1f} s (cached {r.compile_cached_s:.2f} s); "
        f"progress bar {r.progress_overhead:+.1%}"
    )


def write(report: dict, out: str | Path) -> Path:
    """OUT/bench.json, replaced whole (a kill mid-write leaves the previous report)."""
    path = Path(out) / "bench.json"
    write_text(path, json.dumps(report, indent=2) + "\n")
    return path
