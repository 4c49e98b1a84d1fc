"""The sweep engine: the chunks of each bucket (buckets.py) simulated, sharded over every local
device, and committed as parquet parts, in a dataset folder that dataset.py has taken and set up;
resumable, and a Ctrl-C stops it only between chunks, so no chunk is ever half-written.

The runs axis of a chunk is sharded over a mesh of the local devices. With several processes
(--distributed) each process takes every process_count-th run of each bucket and writes its own
parts; process 0 alone holds the lock and changes the folder before the others start.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, wait
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from w2sjax.config.grid import Sweep
from w2sjax.config.options import EngineOptions
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.progress import Progress
from w2sjax.engine.simulate import compile_programs, simulate
from w2sjax.sweep.buckets import (
    Bucket,
    Run,
    Work,
    check_disk,
    chunk_id,
    memory_budget,
    schedule,
    split,
)
from w2sjax.sweep.cache import cache_folder, enable
from w2sjax.sweep.dataset import prepare, processes
from w2sjax.tables.store import chunk_tables, done_run_ids, table_metadata, write_chunk

# How often the main thread wakes while a chunk computes, to run a Ctrl-C's handler.
POLL_S = 0.05
_CHUNKS: list[Future] = []  # chunks started in the background and not yet seen finished


def computing() -> bool:
    """Whether a chunk still computes in the background (one a second Ctrl-C abandoned)."""
    return not all(chunk.done() for chunk in _CHUNKS)


class _Interrupt:
    """While active, the first SIGINT (Ctrl-C) only sets `requested`, so the sweep finishes and
    commits the chunk in flight and stops; a second one raises KeyboardInterrupt at once (the
    chunk in flight is then lost, never half-written). Only in the main thread, which
    `_in_background` keeps awake while a chunk computes."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nw2sjax: stopping after the chunk in flight (Ctrl-C again to stop now)",
            file=sys.stderr,
        )

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class DeviceOOM(RuntimeError):
    """XLA reported RESOURCE_EXHAUSTED for a chunk: retry it in smaller chunks."""


class OutOfMemory(RuntimeError):
    """Even the smallest chunk did not fit on the device; str() is one line for the user."""


def _started(fn: Callable[[], Any]) -> Future:
    """fn() started in a daemon thread, its result or exception in the Future returned, which
    `computing` counts until it is done."""
    work: Future = Future()
    _CHUNKS[:] = [c for c in _CHUNKS if not c.done()] + [work]

    def target() -> None:
        try:
            work.set_result(fn())
        except BaseException as err:  # handed to whoever waits
            work.set_exception(err)

    threading.Thread(target=target, daemon=True).start()
    return work


def _waited(work: Future) -> Future:
    """work, once done, the main thread awake every POLL_S meanwhile. The wait is a Future's,
    not Thread.join's: a join interrupted by KeyboardInterrupt can mark a running thread
    stopped (CPython 3.11)."""
    while not wait([work], timeout=POLL_S).done:
        pass
    return work


def _in_background(fn: Callable[[], Any]) -> Any:
    """fn() computed in a daemon thread while the main thread wakes every POLL_S: a main thread
    blocked waiting on a program runs no signal handler until it ends (a second Ctrl-C would
    wait for the chunk). Exceptions in fn are raised here."""
    return _waited(_started(fn)).result()


def runs_sharding(devices: list) -> NamedSharding:
    """A chunk's runs axis split over `devices`."""
    return NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))


def batched(runs: list[Run], size: int, sharding: NamedSharding) -> Any:
    """The Params of `runs` padded to `size` (repeating the last run), placed by `sharding`."""
    return jax.device_put(stack_params(runs + [runs[-1]] * (size - len(runs))), sharding)


def compile_ahead(item: Work, size: int, sharding: NamedSharding) -> Future:
    """The programs of `item`'s chunks of `size` runs compiled in a daemon thread, while the
    chunk in flight computes: its first call then finds them compiled. A failure is left in the
    Future, for that call to meet again and report."""
    return _started(
        lambda: compile_programs(
            item.bucket.shape, batched(list(split(item.runs, size)[0]), size, sharding)
        )
    )


def run_chunk(
    shape: Shape,
    runs: list[Run],
    size: int,
    sharding: NamedSharding,
    progress: Progress | None = None,
) -> tuple[dict, dict]:
    """Simulate `runs` padded to `size` (repeating the last run); outputs trimmed to len(runs).
    progress: where the loop reports its steps (None: nowhere). Raises DeviceOOM when the
    device runs out of memory."""
    tick = None if progress is None else progress.tick(shape.steps)
    reached = None if tick is None else progress.reached
    try:
        params = batched(runs, size, sharding)
        out = _in_background(lambda: simulate(shape, params, tick, reached))
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" in str(err):
            raise DeviceOOM(str(err).splitlines()[0]) from err
        raise
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[: len(runs)], out)


@dataclass(frozen=True)
class Summary:
    """What `execute` did: runs simulated now (`ran`) and already written (`skipped`), chunks
    written, runs whose state became non-finite, whether Ctrl-C stopped it after committing the
    chunk in flight, the devices, the wall seconds from the first chunk and this process's
    index (0 alone draws figures)."""

    root: Path
    ran: int
    skipped: int
    chunks: int
    diverged: int
    interrupted: bool
    devices: str
    seconds: float
    process: int = 0


class Done(NamedTuple):
    """What `run_work` committed (runs, chunks, runs that diverged); whether Ctrl-C stopped it."""

    ran: int
    chunks: int
    diverged: int
    interrupted: bool


def run_work(
    work: list[Work],
    root: Path,
    meta: dict[str, str],
    devices: list,
    quiet: bool,
    ahead: bool = False,
) -> Done:
    """Simulate and commit every chunk of `work`; ahead: compile each bucket's programs while
    the one before it computes (compile_ahead).
    A chunk that runs out of device memory is retried in halves (the bucket's later chunks too),
    down to one run per device; below that OutOfMemory is raised."""
    sharding = runs_sharding(devices)
    ran = diverged = chunks = 0
    caps: dict[str, int] = {}  # per bucket: the chunk size after out-of-memory halvings
    interrupted = _Interrupt()
    progress = Progress(sum(len(item.runs) * item.bucket.shape.steps for item in work), quiet)
    with interrupted, closing(progress):
        compiling: Future | None = None  # this bucket's programs, compiled ahead
        for index, item in enumerate(work):
            bucket = item.bucket
            size = min(item.size, caps.get(bucket.id, item.size))
            if compiling is not None:  # not compiled twice at once, nor two buckets ahead
                _waited(compiling)
            following = work[index + 1] if ahead and index + 1 < len(work) else None
            compiling = following and compile_ahead(following, following.size, sharding)
            queue = split(item.runs, size)
            while queue and not interrupted.requested:
                runs = queue.pop(0)
                progress.chunk(len(runs), bucket.shape.steps)
                try:
                    per_run, per_step = run_chunk(bucket.shape, runs, size, sharding, progress)
                except DeviceOOM as err:
                    if size <= len(devices):
                        raise OutOfMemory(
                            f"out of device memory with {size} run(s) per call at n_st="
                            f"{bucket.shape.n_st}, d={bucket.shape.d}, n_test="
                            f"{bucket.shape.n_test} ({bucket.shape.noise} noise, "
                            f"{bucket.shape.dim} coordinates; {err}); lower them or use a "
                            f"larger device"
                        ) from None
                    size = caps[bucket.id] = max(
                        len(devices), -(-size // 2 // len(devices)) * len(devices)
                    )
                    queue = split([r for part in (runs, *queue) for r in part], size)
                    continue
                write_chunk(
                    root,
                    bucket.id,
                    chunk_id(runs),
                    chunk_tables(bucket.shape, runs, per_run, per_step),
                    meta,
                )
                ran, chunks = ran + len(runs), chunks + 1
                diverged += int((per_run["diverged_step"] >= 0).sum())
                progress.done()
            if interrupted.requested:
                break
    return Done(ran, chunks, diverged, interrupted.requested)


class Probing(NamedTuple):
    """One round of a boundary search, which runs its dataset a round of probes at a time:
    `points`, the point_hashes of the grid points it probes; `share`, the part of the
    dataset's runs the whole search is expected to run (the padding's cost model,
    sweep/padding.py); `calls`, the most runs a round asks of one bucket (one probe a line of
    the other axes, all seeds)."""

    points: Collection[str]
    share: float
    calls: int


def _among(bucket: Bucket, probing: Probing) -> Bucket:
    """`bucket`'s runs of the points `probing` names; a padded bucket's called with
    `probing.calls` runs a chunk, so every round runs the programs the first compiled."""
    runs = tuple((c, s) for c, s in bucket.runs if c.point_hash in probing.points)
    calls = probing.calls if bucket.shape.padded else None
    return dataclasses.replace(bucket, runs=runs, call_runs=calls)


def execute(
    sweep: Sweep,
    out: str | Path = "results",
    options: EngineOptions = EngineOptions(),
    *,
    fresh: bool = False,
    quiet: bool = False,
    locked: bool = False,
    probing: Probing | None = None,
) -> Summary:
    """Run every not-yet-written run of `sweep` (this process's share) and write its parts under
    <out>/<name>/, computed as `options` say. Process 0 holds the dataset's lock from before it
    touches the folder until every process is done, so a second writer gets LockHeld (a
    DatasetRefused), one line, before anything is written (`locked`: the caller holds it
    already). `probing`: run just a boundary search's round of probes; the dataset is still the
    whole sweep's. Out of device memory at one run per device: OutOfMemory."""
    enable(cache_folder(options.cache))
    root = Path(out) / sweep.name
    procs = processes(options.distributed)
    with ExitStack() as hold:
        share = 1.0 if probing is None else probing.share
        spec, buckets = prepare(root, sweep, options, fresh, procs, hold, locked, share)
        devices = jax.local_devices()
        if probing is not None:
            buckets = [b for b in (_among(b, probing) for b in buckets) if b.runs]
        if procs.index == 0:
            check_disk(root, buckets)
        budget = options.memory_budget or memory_budget(devices[0])
        work, skipped = schedule(
            buckets,
            done_run_ids(root),
            procs.index,
            procs.count,
            len(devices),
            budget,
            options.max_chunk,
        )
        start = time.perf_counter()
        meta = table_metadata(spec, sweep.spec_hash())
        done = run_work(work, root, meta, devices, quiet, options.compile_ahead)
        seconds = time.perf_counter() - start
        if not done.interrupted:
            procs.barrier("w2sjax-finished")
    return Summary(
        root=root,
        ran=done.ran,
        skipped=skipped,
        chunks=done.chunks,
        diverged=done.diverged,
        interrupted=done.interrupted,
        devices=f"{len(devices)} {devices[0].platform} device(s)",
        seconds=seconds,
        process=procs.index,
    )
