"""The bench's stopwatch: every program the bench compares, timed one way in this process, so the
bucket bench (suite.py), the sweep timing (sweep.py), the cost against d (dims.py), the
profile (profile.py) and the scripts under scripts/ agree on what a time is: results
waited for, compile timed apart, and where calls repeat, the fastest.

The programs: a large matmul and the engine's dominant product alone (the ceilings, at the
engine's precision); the engine (`simulate`, with or without its progress reports, and its
compile, cold and cached); and the per-run loops it is measured against, a jitted JAX loop
(the same `strong_step`, one run, one Python call per step) and a PyTorch loop (patches
materialised, Conv1d, autograd; when torch imports).
"""

from __future__ import annotations

import io
import tempfile
import time
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp

from w2sjax.config.settings import build
from w2sjax.engine.activations import RELU
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.data import sample, signal_matrix
from w2sjax.engine.loops.dense import strong_init, strong_step
from w2sjax.engine.models import mm as einsum
from w2sjax.engine.optimizers import OPTIMIZERS
from w2sjax.engine.progress import TICKS_PER_S, Progress
from w2sjax.engine.simulate import compile_programs, forget, simulate
from w2sjax.sweep.buckets import chunk_size, memory_budget
from w2sjax.sweep.cache import kept_in

# Runs of a bucket that fills the device as a sweep's chunk would (fill_runs): MIN_RUNS to
# FILL_RUNS, the throughput a sweep with that many runs per bucket gets. The floor is the issue's
# 64 runs; the planner's estimate is cautious (it plans 52 at n_st = 20000, d = 10000 on an H200,
# where 64 ran).
MIN_RUNS, FILL_RUNS = 64, 4096


def timed(fn, *args) -> float:
    """Seconds of one call fn(*args), its results waited for."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def fastest(fn, *args, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls fn(*args), after one call that warms it."""
    timed(fn, *args)
    return min(timed(fn, *args) for _ in range(repeats))


def matmul_ceiling(n: int = 8192, repeats: int = 10, precision: str = "highest") -> float:
    """FLOP/s of a large square float32 matmul at `precision` (the device's peak for it)."""
    a, b = (jax.random.normal(jax.random.PRNGKey(i), (n, n)) for i in (1, 2))
    mm = jax.jit(lambda x, y: einsum("ik,kj->ij", x, y, precision=precision))
    return 2.0 * n**3 / fastest(mm, a, b, repeats=repeats)


def shape_ceiling(
    n_st: int, k: int, m: int, runs: int, repeats: int = 5, precision: str = "highest"
) -> float:
    """FLOP/s of the engine's dominant product alone, (runs, 2m, k) x (runs, k, n_st) at
    `precision`, the faster of its two result layouts, (2m, n_st) as the dense form's forward
    and (n_st, 2m) as the coefficient form's: k = d for the dense form, k = n_st for the
    coefficient form."""
    W = jax.random.normal(jax.random.PRNGKey(3), (runs, 2 * m, k))
    xi = jax.random.normal(jax.random.PRNGKey(4), (runs, n_st, k))
    layouts = (
        jax.jit(lambda w, x: einsum("brd,bnd->brn", w, x, precision=precision)),
        jax.jit(lambda w, x: einsum("bnd,brd->bnr", x, w, precision=precision)),
    )
    seconds = min(fastest(mm, W, xi, repeats=repeats) for mm in layouts)
    return 2.0 * runs * 2 * m * k * n_st / seconds


def fill_runs(shape: Shape, budget: int) -> int:
    """Runs per bench bucket that fill a device with `budget` bytes as a sweep's chunk would,
    clipped to [MIN_RUNS, FILL_RUNS]."""
    return min(FILL_RUNS, max(MIN_RUNS, chunk_size(shape, FILL_RUNS, 1, budget)))


class EngineTiming(NamedTuple):
    """One timed bucket of `simulate`: its Shape (form and noise sampler resolved), runs,
    compile seconds (cold: an empty persistent cache; cached: its programs loaded from it in
    a process that had not compiled them), run seconds, and with `progress` the run seconds
    with the reports on."""

    shape: Shape
    runs: int
    compile_s: float
    engine_s: float
    progress_s: float | None = None
    compile_cached_s: float | None = None


def compile_cold_and_cached(shape: Shape, params) -> tuple[float, float]:
    """(cold, cached) seconds of compile_programs: into an empty persistent cache, then, with
    jax's in-memory caches and this process's sets dropped as in a new process, from the store
    it wrote (engine/executables.py)."""
    with tempfile.TemporaryDirectory() as folder, kept_in(Path(folder)):
        forget()  # a set this process already holds would not be compiled
        cold = compile_programs(shape, params)
        jax.clear_caches()
        forget()
        return cold, compile_programs(shape, params)


def engine(
    n_st: int,
    d: int,
    m: int,
    runs: int | None,
    steps: int,
    form: str = "auto",
    precision: str = "highest",
    noise: str = "auto",
    repeats: int = 1,
    progress: bool = False,
    tick: int | None = None,
) -> EngineTiming:
    """`simulate` timed on `runs` seeds of one bucket (the fastest of `repeats` calls); runs None:
    as many as a sweep's chunk would hold on this device (`fill_runs`). progress: also with
    progress reports at the interval a sweep would ask for at this speed (about TICKS_PER_S a
    second), drawn as a sweep's bar would be (into a buffer); its calls alternate with the plain
    ones, so slow drifts of a shared machine fall on both alike. tick: that report interval in
    steps instead."""
    config = build({"d": d, "n_st": n_st, "m": m, "steps": steps, "n_test": 500, "log_points": 3})
    shape = Shape.of(config, form=form, precision=precision, noise=noise)
    if runs is None:
        runs = fill_runs(shape, memory_budget(jax.devices()[0]))
    params = stack_params([(config, s) for s in range(runs)])
    compile_s, cached_s = compile_cold_and_cached(shape, params)
    engine_s = timed(simulate, shape, params)
    if not progress:
        engine_s = min([engine_s] + [timed(simulate, shape, params) for _ in range(repeats - 1)])
        return EngineTiming(shape, runs, compile_s, engine_s, None, cached_s)
    every = tick or max(1, int(steps / engine_s / TICKS_PER_S))
    bar = Progress(runs * steps * repeats, quiet=False, stream=io.StringIO(), plain=False)
    bar.chunk(runs, steps)
    engine_s = progress_s = float("inf")
    with closing(bar):
        for _ in range(repeats):
            progress_s = min(progress_s, timed(simulate, shape, params, every, bar.reached))
            engine_s = min(engine_s, timed(simulate, shape, params))
    return EngineTiming(shape, runs, compile_s, engine_s, progress_s, cached_s)


def patch_bytes(n_st: int, d: int) -> int:
    """Bytes of the PyTorch loop's materialised patches (n_st, d, 3), float32, and their copy in
    the convolution."""
    return 2 * 4 * 3 * n_st * d


def loop_bytes(n_st: int, d: int, m: int) -> int:
    """Bytes the per-run loops may hold at once at (n_st, d, m): they materialise every noise
    coordinate, the PyTorch loop its patches (patch_bytes) and the JAX loop its noise with the
    copy jit captures, fewer, so about six float32 (n_st, d) arrays and the 2m filters."""
    return patch_bytes(n_st, d) + 4 * 2 * m * d


def jax_per_run(n_st: int, d: int, m: int, steps: int) -> float:
    """Run-steps/s of one run stepped from Python through the jitted `strong_step`."""
    signals = signal_matrix(d, "orthogonal", jnp.float32(4.0), jnp.float32(4.0))
    data = sample(jax.random.PRNGKey(0), n_st, d, "orthogonal", 0.35, 0.3, jnp.float32(1.0))
    W0 = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (2, m, d))
    opt = OPTIMIZERS["gd"].at(jnp.float32(0.05), jnp.float32(0.0), jax.random.PRNGKey(2), n_st, 1)
    step = jax.jit(
        partial(
            strong_step,
            opt=opt,
            eta=jnp.float32(0.05),
            signals=signals,
            data=data,
            yhat=data.y,
            xi_sq=(data.xi**2).sum(-1),
            act=RELU,
        )
    )
    state = step(strong_init(W0, n_st, opt))
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state = step(state)
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - start)


def torch_per_run(n_st: int, d: int, m: int, steps: int) -> float | None:
    """Run-steps/s of the per-run PyTorch loop researchers write: materialised
    patches (n, d, 3), Conv1d with kernel 1 as the 2m filters, autograd, SGD, float32 without
    TF32. None when torch is not importable."""
    try:
        import torch
    except ImportError:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gen = torch.Generator(device="cpu").manual_seed(0)
    X = torch.randn(n_st, d, 3, generator=gen).to(device)
    yhat = (torch.randint(0, 2, (n_st,), generator=gen) * 2 - 1).float().to(device)
    conv = torch.nn.Conv1d(d, 2 * m, kernel_size=1, bias=False).to(device)
    opt = torch.optim.SGD(conv.parameters(), lr=0.05)

    def step() -> None:
        F = torch.relu(conv(X)).sum(-1).view(n_st, 2, m).mean(-1)
        loss = torch.nn.functional.softplus(-yhat * (F[:, 0] - F[:, 1])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - start)
