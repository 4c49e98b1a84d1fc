"""The sweep engine: grid points -> buckets (one compiled program each) -> memory-sized chunks,
sharded over every local device -> parquet parts, resumable.

A bucket holds the runs that share a Shape. Its runs go through `simulate` in chunks of one fixed
size (the last padded by repeating a run), so a bucket traces and compiles once. The runs axis of a
chunk is sharded over a mesh of the local devices. With several processes (--distributed) each
process takes every process_count-th run of each bucket and writes its own parts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from w2sjax.batch import Shape, run_id, stack_params
from w2sjax.config import Config
from w2sjax.grid import Sweep
from w2sjax.simulate import simulate
from w2sjax.store import (
    SPEC_FILE,
    check_spec,
    chunk_tables,
    done_run_ids,
    remove_uncommitted,
    table_metadata,
    write_chunk,
    write_text,
)
from w2sjax.train import STEP_METRICS

Run = tuple[Config, int]
BYTES_F32 = 4
# Fraction of a device's memory a chunk may plan to use: XLA needs room for its own buffers.
GPU_MEMORY_FRACTION = 0.6
CPU_MEMORY_FRACTION = 0.25


@dataclass(frozen=True)
class Bucket:
    """Runs that share one Shape, in grid order then seed order."""

    shape: Shape
    runs: tuple[Run, ...]

    @property
    def id(self) -> str:
        return hashlib.sha256(repr(self.shape).encode()).hexdigest()[:10]


def plan(
    sweep: Sweep, filters: bool = False, form: str = "auto", precision: str = "highest"
) -> list[Bucket]:
    """Group the sweep's runs (every point x seed) into buckets by Shape, in first-seen order."""
    groups: dict[Shape, list[Run]] = {}
    for config in sweep.points:
        shape = Shape.of(config, filters=filters, form=form, precision=precision)
        groups.setdefault(shape, []).extend((config, seed) for seed in range(config.seeds))
    return [Bucket(shape, tuple(runs)) for shape, runs in groups.items()]


def bytes_per_run(shape: Shape) -> int:
    """Planning estimate of device memory for one run of `shape` (inputs, state, temporaries)."""
    n_all = shape.n_wk + shape.n_st + shape.n_test
    filters = 2 * shape.m * shape.d
    floats = (
        n_all * shape.d  # the three noise matrices
        + 6 * filters  # W, W0, gradient, update and temporaries
        + 8 * shape.m * shape.n_st  # noise and signal pre-activations, masks, rho, its update
        + 6 * shape.m * shape.n_test  # test pre-activations
        + len(shape.log_steps()) * (len(STEP_METRICS) + (8 * shape.m if shape.filters else 0))
        + (shape.n_st * (shape.n_st + shape.n_test) if shape.form == "coef" else 0)  # the K's
    )
    return int(1.5 * BYTES_F32 * floats)


def memory_budget(device: jax.Device) -> int:
    """Bytes a chunk may use per device: a fixed fraction of the device's total memory (not of
    what is free now, so a rerun plans the same chunks). CPU devices share the host's memory."""
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(GPU_MEMORY_FRACTION * stats["bytes_limit"])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(CPU_MEMORY_FRACTION * total) // len(jax.local_devices())


def chunk_size(
    shape: Shape, n_runs: int, n_devices: int, budget_per_device: int, max_chunk: int | None = None
) -> int:
    """Runs per chunk: as many as fit the memory budget on every device, at most n_runs and
    max_chunk, rounded up to a multiple of n_devices (so the runs axis shards evenly)."""
    fit = max(1, budget_per_device // bytes_per_run(shape)) * n_devices
    size = max(1, min(fit, n_runs, max_chunk or n_runs))
    return -(-size // n_devices) * n_devices


def chunk_id(runs: list[Run]) -> str:
    """Content hash of a chunk: its sorted run_ids."""
    ids = sorted(run_id(c, s) for c, s in runs)
    return hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]


def split(runs: list[Run], size: int) -> list[list[Run]]:
    return [runs[i : i + size] for i in range(0, len(runs), size)]


class _Interrupt:
    """While active, the first SIGINT (Ctrl-C) only sets `requested`, so the sweep finishes and
    commits the chunk in flight and stops; a second one raises KeyboardInterrupt at once (the
    chunk in flight is then lost, never half-written). Only in the main thread."""

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


@dataclass(frozen=True)
class Processes:
    """Which share of the work this process does: runs index % count == index."""

    index: int = 0
    count: int = 1


class DeviceOOM(RuntimeError):
    """XLA reported RESOURCE_EXHAUSTED for a chunk: retry it in smaller chunks."""


class OutOfMemory(RuntimeError):
    """Even the smallest chunk did not fit on the device; str() is one line for the user."""


def run_chunk(
    shape: Shape, runs: list[Run], size: int, sharding: NamedSharding
) -> tuple[dict, dict]:
    """Simulate `runs` padded to `size` (repeating the last run); outputs trimmed to len(runs).
    Raises DeviceOOM when the device runs out of memory."""
    padded = runs + [runs[-1]] * (size - len(runs))
    try:
        params = jax.device_put(stack_params(padded), sharding)
        out = jax.device_get(simulate(shape, params))
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" in str(err):
            raise DeviceOOM(str(err).splitlines()[0]) from err
        raise
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[: len(runs)], out)


def expected_output_bytes(buckets: list[Bucket]) -> int:
    """A generous estimate of the parquet bytes a sweep writes (uncompressed float columns)."""
    per_step_row = 8 * (len(STEP_METRICS) + 4)
    return sum(
        len(b.runs)
        * (
            2048
            + len(b.shape.log_steps())
            * per_step_row
            * (1 + (2 * b.shape.m if b.shape.filters else 0))
        )
        for b in buckets
    )


def check_disk(root: Path, buckets: list[Bucket]) -> None:
    """Fail before compute when the output folder's disk cannot hold the sweep's tables."""
    need, free = expected_output_bytes(buckets), shutil.disk_usage(root).free
    if need > free:
        raise OSError(
            f"--out: {root} has {free / 1e6:,.0f} MB free, the sweep needs about "
            f"{need / 1e6:,.0f} MB; free space or choose another --out"
        )


def stored_spec(sweep: Sweep, precision: str) -> str:
    """What spec.toml holds: the sweep's canonical text, and a non-default precision (a resume
    must not mix in results at another precision; the form may differ, both forms are exact)."""
    text = sweep.to_toml()
    return text if precision == "highest" else text + f"\n# --precision {precision}\n"


def prepare(
    root: Path, spec_text: str, fresh: bool, procs: Processes, barrier: Callable[[str], None]
) -> None:
    """Check and set up the dataset folder before any compute. Every process checks the spec;
    only process 0 changes files, then all meet at a barrier."""
    if not fresh:
        check_spec(root, spec_text)
    if procs.index == 0:
        try:
            if fresh and root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True, exist_ok=True)
            remove_uncommitted(root)
            write_text(root / SPEC_FILE, spec_text)
        except OSError as err:
            raise OSError(f"--out: cannot write {root} ({err.strerror or err})") from None
    barrier("w2sjax-prepared")


def execute(
    sweep: Sweep,
    out: str | Path = "results",
    *,
    fresh: bool = False,
    quiet: bool = False,
    filters: bool = False,
    max_chunk: int | None = None,
    memory_budget_bytes: int | None = None,
    form: str = "auto",
    precision: str = "highest",
    procs: Processes = Processes(),
    barrier: Callable[[str], None] = lambda name: None,
) -> dict:
    """Run every not-yet-written run of `sweep` (this process's share) and write its parts under
    <out>/<name>/. Returns a summary: root, ran (runs simulated now), skipped (already written),
    chunks, interrupted (stopped by Ctrl-C after committing the chunk in flight), diverged (runs
    simulated now whose state became non-finite), seconds, devices. A chunk that runs out of
    device memory is retried in halves (the bucket's later chunks too), down to one run per
    device; below that OutOfMemory is raised."""
    root = Path(out) / sweep.name
    spec = stored_spec(sweep, precision)
    prepare(root, spec, fresh, procs, barrier)
    done = done_run_ids(root)
    devices = jax.local_devices()
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    budget = memory_budget_bytes or memory_budget(devices[0])
    meta = table_metadata(spec, sweep.spec_hash())

    buckets = plan(sweep, filters, form, precision)
    if procs.index == 0:
        check_disk(root, buckets)
    work, skipped = [], 0
    for bucket in buckets:
        mine = list(bucket.runs[procs.index :: procs.count])
        todo = [r for r in mine if run_id(*r) not in done]
        skipped += len(mine) - len(todo)
        if todo:
            size = chunk_size(bucket.shape, len(mine), len(devices), budget, max_chunk)
            work += [(bucket, size, chunk) for chunk in split(todo, size)]

    start = time.perf_counter()
    ran = run_steps = diverged = chunks = 0
    caps: dict[str, int] = {}  # per bucket: the chunk size after out-of-memory halvings
    interrupted = _Interrupt()
    bar = tqdm(total=len(work), unit="chunk", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    with interrupted:
        for bucket, size, planned in work:
            size = min(size, caps.get(bucket.id, size))
            queue = split(planned, size)
            while queue and not interrupted.requested:
                runs = queue.pop(0)
                try:
                    per_run, per_step = run_chunk(bucket.shape, runs, size, sharding)
                except DeviceOOM as err:
                    if size <= len(devices):
                        raise OutOfMemory(
                            f"out of device memory with {size} run(s) per call at n_st="
                            f"{bucket.shape.n_st}, d={bucket.shape.d}, n_test="
                            f"{bucket.shape.n_test} ({err}); lower them or use a larger device"
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
                run_steps += len(runs) * bucket.shape.steps
                diverged += int((per_run["diverged_step"] >= 0).sum())
                bar.set_postfix_str(f"{run_steps / (time.perf_counter() - start):,.0f} run-steps/s")
            bar.update()
            if interrupted.requested:
                break
    bar.close()
    if not interrupted.requested:
        barrier("w2sjax-finished")
    return {
        "root": root,
        "ran": ran,
        "skipped": skipped,
        "chunks": chunks,
        "interrupted": interrupted.requested,
        "diverged": diverged,
        "devices": f"{len(devices)} {devices[0].platform} device(s)",
        "seconds": time.perf_counter() - start,
    }
