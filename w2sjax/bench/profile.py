"""Where a bucket's time goes (`w2sjax bench --sweep SPEC --profile`): one chunk of the bucket
timed as nested programs, each a prefix of `simulate`'s, so each phase is the difference of two
wall times. Phases: `simulate`'s compile (once per bucket); drawing the data and noise; the
teacher (the weak fit and the pseudo-labels); `begin`'s set-up and each pass's first step (the
coefficient form's Gram products, the evaluation samples' included, live here); the remaining
training steps; the logged views and metrics (`simulate` itself, less the steps); writing the
chunk's parquet parts. The nested programs' own compile times are left out."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jax

from w2sjax.bench.timing import timed
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.simulate import compile_programs, simulate
from w2sjax.engine.train import draw_run, prepare_run
from w2sjax.sweep.buckets import Run, chunk_id
from w2sjax.tables.store import chunk_tables, write_chunk


@dataclass(frozen=True)
class Phases:
    """Seconds of one chunk of a bucket, by phase (differences of nested programs' wall times,
    each the fastest of `repeats` calls; a difference below timing noise can come out slightly
    negative). compile: `simulate`'s, once per bucket. total: compile, `simulate` and the write,
    a bucket's first chunk as a sweep runs it."""

    compile: float
    sample: float
    teacher: float
    setup: float
    steps: float
    views: float
    write: float
    total: float


def _stages(shape: Shape) -> list:
    """The nested programs, each vmapped over runs: draw; + teacher; + begin's set-up (all it
    keeps, Prepared.fixed) and each pass's first step; + every step (no views); the last stage
    is `simulate` itself."""

    def sample(p):
        return draw_run(shape, p)

    def teacher(p):
        prepared = prepare_run(shape, p)
        return prepared.fixed.passes[0], prepared.per_run

    def first_step(p):
        prepared = prepare_run(shape, p)
        steps = [(lambda lp: lp.step(lp.init))(prepared.loop(y)) for y in prepared.fixed.passes]
        return steps, prepared.fixed

    def every_step(p):
        prepared = prepare_run(shape, p)
        out = []
        for labels in prepared.fixed.passes:
            init, step, _ = prepared.loop(labels)
            out.append(jax.lax.fori_loop(0, shape.steps, lambda _, s, step=step: step(s), init))
        return out, prepared.fixed

    return [jax.jit(jax.vmap(f)) for f in (sample, teacher, first_step, every_step)]


def _fastest(fn, args: tuple, repeats: int) -> tuple[float, float]:
    """(compile seconds, the fastest of `repeats` calls' seconds)."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    return compile_s, min(timed(compiled, *args) for _ in range(repeats))


def profile_chunk(shape: Shape, runs: list[Run], repeats: int = 2) -> Phases:
    """Phases of simulating `runs` (one chunk of a bucket of `shape`) and writing them."""
    params = stack_params(runs)
    cumulative = [_fastest(stage, (params,), repeats)[1] for stage in _stages(shape)]
    compile_s = compile_programs(shape, params)
    full = min(timed(simulate, shape, params) for _ in range(repeats))
    per_run, per_step = simulate(shape, params)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        tables = chunk_tables(shape, runs, per_run, per_step)
        write_chunk(Path(scratch), "profile", chunk_id(runs), tables, {})
        write = time.perf_counter() - start
    sample, teacher, first, steps = cumulative
    return Phases(
        compile=compile_s,
        sample=sample,
        teacher=teacher - sample,
        setup=first - teacher,
        steps=steps - first,
        views=full - steps,
        write=write,
        total=compile_s + full + write,
    )
