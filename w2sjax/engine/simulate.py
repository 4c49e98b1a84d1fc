"""The batched entry point: a Shape's runs stepped together, vmapped over a leading runs axis,
as three compiled programs per Shape (engine/train.py's begin, advance and look) that the host
calls in turn: begin once, then for each logged step advance up to it (in stretches of at most
`tick` steps where progress is reported) and look. No program carries a host callback (but dense
Adam's `begin` on the CPU, engine/projection.py), so each is kept in jax's persistent compilation
cache (sweep/cache.py), and in the `w2sjax` program the three are kept together in the store
(executables.py), which a later process loads without tracing them."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import cache, partial
from typing import NamedTuple

import jax
import numpy as np

from w2sjax.engine import executables
from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.images import Pool, pool_of
from w2sjax.engine.train import Fixed, Moving, advance, begin, look, segments

# How many times `simulate` was traced per Shape: a bucket run in many chunks should trace once.
TRACES: Counter[Shape] = Counter()


def _begin(shape: Shape, params: Params, pool: Pool | None) -> tuple[dict, Fixed, Moving]:
    TRACES[shape] += 1  # runs at trace time only
    return jax.vmap(lambda p: begin(shape, p, pool))(params)


def _advance(
    shape: Shape, params: Params, fixed: Fixed, moving: Moving, start: jax.Array, length: jax.Array
) -> Moving:
    return jax.vmap(lambda p, f, m: advance(shape, p, f, m, start, length))(params, fixed, moving)


def _look(shape: Shape, params: Params, fixed: Fixed, moving: Moving) -> dict:
    return jax.vmap(lambda p, f, m: look(shape, p, f, m))(params, fixed, moving)


class Programs(NamedTuple):
    """`simulate`'s three programs (jitted; Shape static)."""

    begin: Callable
    advance: Callable
    look: Callable


@cache
def programs(placement: jax.sharding.Sharding | None) -> Programs:
    """The three programs with every output placed by `placement`, the runs' params' own (None:
    as XLA likes). Placed alike, advance's outputs are its next call's inputs as begin left them:
    XLA's own choice differs for outputs made from constants (the step counts), and advance and
    look would compile twice, once for each. The state moves in place: advance is handed its
    old buffers (donated)."""
    placed = {} if placement is None else {"out_shardings": placement}
    return Programs(
        jax.jit(_begin, static_argnums=0, **placed),
        jax.jit(_advance, static_argnums=0, donate_argnums=3, **placed),
        jax.jit(_look, static_argnums=0, **placed),
    )


def _placement(params: Params) -> jax.sharding.Sharding | None:
    """Where params' runs axis lives (None: not a jax array)."""
    return getattr(jax.tree_util.tree_leaves(params)[0], "sharding", None)


class ProgramSet(NamedTuple):
    """A Shape's three programs compiled for one batch's input types: begin(params, pool),
    advance(params, fixed, moving, start, length), look(params, fixed, moving)."""

    begin: jax.stages.Compiled
    advance: jax.stages.Compiled
    look: jax.stages.Compiled


# This process's compiled sets, by executables.inputs_key (as jax's own caches, a set once made
# is not made again for a function replaced later; `forget` drops them): a bucket's later chunks
# and a search's later rounds call the set its first call loaded or compiled. One thread at a
# time gets a missing set, so that a set compiled ahead (sweep/execution.py) is not compiled
# twice at once; other sets meanwhile are got beside it (a lock per key).
_SETS: dict[str, ProgramSet] = {}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKING = threading.Lock()


def _lock(here: str) -> threading.Lock:
    """The lock the set keyed `here` is got under."""
    with _LOCKING:
        return _LOCKS.setdefault(here, threading.Lock())


def forget() -> None:
    """Drop this process's compiled sets (with jax.clear_caches(), a new process's state)."""
    _SETS.clear()


def _ready(shape: Shape, params: Params, pool: Pool | None) -> tuple[ProgramSet, Pool | None]:
    """The compiled set for `params`' batch, and the images it takes (pool None: the shape's
    own, images.pool_of): this process's, else the store's (executables.py: neither traced nor
    lowered), else compiled and kept there."""
    pool = pool_of(shape) if pool is None else pool
    here = executables.inputs_key(shape, (params, pool))
    got = _SETS.get(here)
    if got is None:  # the lock is for a missing set only: a held one never waits on it
        with _lock(here):
            got = _SETS.get(here)
            if got is None:
                got = _SETS[here] = _fetched(shape, params, pool, here)
    return got, pool


def _fetched(shape: Shape, params: Params, pool: Pool | None, here: str) -> ProgramSet:
    """The set from the store, else compiled (and kept there where the store is on:
    executables.folder); `here` is its executables.inputs_key."""
    where = executables.folder()
    name = None if where is None else executables.key(here)
    got = None if name is None else executables.load(where, name)
    if got is None:
        got = [lowered.compile() for lowered in lowered_programs(shape, params, pool)]
        if name is not None:
            executables.save(where, name, got)
    return ProgramSet(*got)


def simulate(
    shape: Shape,
    params: Params,
    tick: int | None = None,
    reached: Callable[[int], None] | None = None,
    pool: Pool | None = None,
) -> tuple[dict, dict]:
    """Simulate a batch of runs that share `shape`.

    params: Params with leading axis (runs,). Returns (per_run, per_step) as numpy arrays, with
    per_run values of shape (runs,) ("filter_init": (runs, 2, m, 4) when shape.filters) and
    per_step values (runs, K) over the K steps of `shape.log_steps()` ("filters":
    (runs, K, 2, m, 4)). A run's results depend only on its own Params row: its random numbers
    come from its own key. tick: step at most `tick` steps a call and call reached(step) after
    each call, once its steps are done (progress.py); None: a call per logged step, no reports.
    pool: an image source's images (default images.pool_of(shape)), one argument shared by
    every run.
    """
    run, pool = _ready(shape, params, pool)
    per_run, fixed, moving = run.begin(params, pool)
    records = []
    for start, length in zip(*segments(shape), strict=True):
        done, end = int(start), int(start + length)
        while done < end:  # up to a logged step, in calls of at most `tick` steps
            stretch = end - done if tick is None else min(tick, end - done)
            moving = run.advance(params, fixed, moving, np.int32(done), np.int32(stretch))
            done += stretch
            if reached is not None:
                jax.block_until_ready(moving)
                reached(done)
        records.append(run.look(params, fixed, moving))
    per_run = dict(per_run, diverged_step=moving.diverged[0])
    per_run, records = jax.device_get((per_run, records))
    per_step = {k: np.stack([r[k] for r in records], axis=1) for k in records[0]}
    return per_run, per_step


def lowered_programs(
    shape: Shape, params: Params, pool: Pool | None = None
) -> tuple[jax.stages.Lowered, jax.stages.Lowered, jax.stages.Lowered]:
    """`simulate`'s three programs (begin, advance, look) lowered for `params`' batch, to be
    compiled (_ready, or under other compiler options: scripts/compile_options.py)."""
    placement = _placement(params)
    run = programs(placement)
    pool = pool_of(shape) if pool is None else pool
    _, fixed, moving = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=placement, weak_type=a.weak_type),
        jax.eval_shape(partial(run.begin, shape), params, pool),
    )
    step = jax.ShapeDtypeStruct((), np.int32)
    return (
        run.begin.lower(shape, params, pool),
        run.advance.lower(shape, params, fixed, moving, step, step),
        run.look.lower(shape, params, fixed, moving),
    )


def compile_programs(shape: Shape, params: Params, pool: Pool | None = None) -> float:
    """Compile (or load from the store, or from jax's persistent cache) `simulate`'s three
    programs for `params`' batch without running them: seconds taken. A later `simulate` of the
    same batch compiles nothing."""
    start = time.perf_counter()
    _ready(shape, params, pool)
    return time.perf_counter() - start
