"""The batched entry point: one compiled program per Shape, vmapped over a leading runs axis."""

from __future__ import annotations

from collections import Counter
from functools import partial

import jax

from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.images import Pool, pool_of
from w2sjax.engine.train import simulate_run

# How many times `simulate` was traced per Shape: a bucket run in many chunks should trace once.
TRACES: Counter[Shape] = Counter()


def simulate(shape: Shape, params: Params, tick: jax.Array | None = None) -> tuple[dict, dict]:
    """Simulate a batch of runs that share `shape`.

    params: Params with leading axis (runs,). Returns (per_run, per_step) with per_run values of
    shape (runs,) ("filter_init": (runs, 2, m, 4) when shape.filters) and per_step values
    (runs, K) over the K steps of `shape.log_steps()` ("filters": (runs, K, 2, m, 4)). A run's
    results depend only on its own Params row: its random numbers come from its own key.
    tick (an int32 scalar, not batched, so changing it does not recompile): report progress
    every `tick` steps (progress.py); None: no reports. An image source's images
    (images.pool_of) go in as one argument shared by every run.
    """
    return compiled(shape, params, tick, pool_of(shape))


@partial(jax.jit, static_argnums=0)
def compiled(
    shape: Shape, params: Params, tick: jax.Array | None = None, pool: Pool | None = None
) -> tuple[dict, dict]:
    """`simulate`'s program, its images `pool` passed in (None: the synthetic source)."""
    TRACES[shape] += 1  # runs at trace time only
    return jax.vmap(lambda p: simulate_run(shape, p, tick, pool))(params)
