"""The progress reports' cost by report interval (docs/BENCHMARKS.md, "The progress bar's cost"):
one bench bucket (d = 1000, m = 20, 8 runs, 200 steps) compiled without reports and with them,
their calls interleaved (5 each, the fastest kept), at tick 10^6 (the blocks but no report
inside a segment), 50 and 7 steps.

Usage: python scripts/progress_cost.py N_ST
"""

from __future__ import annotations

import io
import sys
import time
from contextlib import closing

import jax
import jax.numpy as jnp

from w2sjax.batch import Shape, stack_params
from w2sjax.config import build
from w2sjax.progress import Progress
from w2sjax.simulate import simulate

RUNS, STEPS, REPEATS = 8, 200, 5


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def main(n_st: int) -> None:
    config = build({"d": 1000, "n_st": n_st, "m": 20, "steps": STEPS, "n_test": 500,
                    "log_points": 3})  # fmt: skip
    shape = Shape.of(config, noise="auto")
    params = stack_params([(config, seed) for seed in range(RUNS)])
    plain = simulate.lower(shape, params).compile()
    reporting = simulate.lower(shape, params, jnp.int32(1)).compile()
    bar = Progress(10**9, quiet=False, stream=io.StringIO(), plain=False)
    bar.chunk(RUNS, STEPS, 1)
    with closing(bar):
        for tick in (10**6, 50, 7):
            tk = jnp.int32(tick)
            seconds(reporting, params, tk)
            seconds(plain, params)
            best_plain = best_reporting = float("inf")
            for _ in range(REPEATS):
                best_reporting = min(best_reporting, seconds(reporting, params, tk))
                best_plain = min(best_plain, seconds(plain, params))
            print(
                f"n_st={n_st} tick={tick}: plain {best_plain:.3f} s, reporting "
                f"{best_reporting:.3f} s, {best_reporting / best_plain - 1:+.1%}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]))
