"""On top, bench: `w2sjax bench`, the engine timed against per-run loops and ceilings.

- timing.py: the stopwatch every bench part shares; the per-run JAX and PyTorch loops.
- suite.py: per bucket, run-steps per second against the per-run loops and a matmul ceiling.
- sweep.py: a whole sweep timed end to end (`--sweep SPEC`).
- profile.py: where one bucket's time goes, phase by phase (`--profile`).
- dims.py: what a bucket costs as d grows, under each noise sampler (`--over-d`).
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {"run_bench": "suite", "sweep_bench": "sweep", "over_d": "dims"},
)
