"""XLA compile seconds of a sweep's program sets under compiler options (docs/notes/benchmarks.md,
"2026-12-07, 2 CPU cores: XLA's CPU options and where a program set's compile goes").

The sweep's buckets as `w2sjax sweep` plans them at its defaults (sweep.dataset.planned; with
--search AXIS:RATIO, those of `w2sjax boundary --ratio RATIO` on AXIS, at the share of the lattice
it expects to probe), each bucket's `begin`, `advance` and `look` lowered once for RUNS runs, then
compiled under every option set in turn, REPEATS rounds, `jax.clear_caches()` between compiles and
no persistent cache (a first compile in a process is slower, so one compile of each program comes
first, untimed). An option set is NAME=JSON, a jax `compiler_options` dict; an option this XLA does
not know stops the script with XLA's error.

Usage: python scripts/compile_options.py SPEC [--seeds N] [--runs 4] [--repeats 3]
       [--search n_st:1.3] NAME=JSON ...
e.g.   python scripts/compile_options.py /tmp/bsearch.toml --seeds 2 --search n_st:1.3 \
         base='{}' legacy='{"xla_cpu_use_fusion_emitters": false}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from w2sjax.analysis.bisect import probed_share
from w2sjax.analysis.boundary import Request, probe_sweep
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions
from w2sjax.engine.simulate import lowered_programs
from w2sjax.sweep.dataset import planned
from w2sjax.sweep.execution import batched, runs_sharding

PROGRAMS = ("begin", "advance", "look")


def lowered_sets(spec: str, seeds: int | None, search: str | None, runs: int) -> list[dict]:
    """Per program set (bucket), its three programs lowered for `runs` of its runs (the last
    repeated where it has fewer): name -> Lowered."""
    sweep, share = load_sweep(spec, seeds=seeds), 1.0
    if search:
        axis, ratio = search.split(":")
        sweep, lattice = probe_sweep(sweep, Request(axis, "", 0.0, float(ratio)))
        share = probed_share(len(lattice))
    _, buckets = planned(sweep, EngineOptions(), share=share)
    placement = runs_sharding(jax.devices())
    sets = []
    for bucket in buckets:
        params = batched(list(bucket.runs[:runs]), runs, placement)
        sets.append(dict(zip(PROGRAMS, lowered_programs(bucket.shape, params), strict=True)))
        print(f"program set n_st={bucket.shape.n_st} ({len(bucket.runs)} runs in the sweep)")
    return sets


def compiled_s(sets: list[dict], options: dict) -> dict[str, float]:
    """Seconds to compile each program, summed over the sets, under `options`."""
    seconds = dict.fromkeys(PROGRAMS, 0.0)
    for lowered in sets:
        for name in PROGRAMS:
            jax.clear_caches()
            start = time.perf_counter()
            lowered[name].compile(options)
            seconds[name] += time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("variants", nargs="+", metavar="NAME=JSON")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--search", metavar="AXIS:RATIO")
    args = parser.parse_args()
    if any("=" not in item for item in args.variants):
        parser.error("variants: each is NAME=JSON, e.g. base='{}'")
    variants = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.variants)}
    jax.config.update("jax_enable_compilation_cache", False)
    sets = lowered_sets(args.spec, args.seeds, args.search, args.runs)
    compiled_s(sets, {})  # untimed: a process's first compiles are slower
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, options in variants.items():
            rounds[name].append(compiled_s(sets, options))
    for name, got in rounds.items():
        medians = {p: statistics.median(r[p] for r in got) for p in PROGRAMS}
        totals = " ".join(f"{sum(r.values()):.2f}" for r in got)
        parts = ", ".join(f"{p} {s:.2f}" for p, s in medians.items())
        print(f"{name}: medians {parts} s; all three, each round: {totals} s")


if __name__ == "__main__":
    main()
