"""The progress reports' cost by report interval (docs/notes/benchmarks.md, "2026-11-29, 2 CPU
cores: the progress bar's cost"):
one bench bucket (w2sjax/bench/timing.py's `engine`: d = 1000, m = 20, 8 runs, 200 steps) without
reports and with them, their calls interleaved (5 each, the fastest kept), at tick 10^6 (the
blocks but no report inside a segment), 50 and 7 steps.

Usage: python scripts/progress_cost.py N_ST
"""

from __future__ import annotations

import sys

from w2sjax.bench.timing import engine


def main(n_st: int) -> None:
    for tick in (10**6, 50, 7):
        t = engine(n_st, 1000, 20, 8, 200, repeats=5, progress=True, tick=tick)
        print(
            f"n_st={n_st} tick={tick}: plain {t.engine_s:.3f} s, reporting {t.progress_s:.3f} s, "
            f"{t.progress_s / t.engine_s - 1:+.1%}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]))
