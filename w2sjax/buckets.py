"""Grid points -> buckets (one compiled program each) -> memory-sized chunks of runs.

A bucket holds the runs that share a Shape. Its runs go through `simulate` in chunks of one fixed
size (the last padded by repeating a run), so a bucket traces and compiles once; the size comes from
a per-run memory estimate against the device's budget.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import jax

from w2sjax.batch import Shape, run_id
from w2sjax.config import Config
from w2sjax.grid import Sweep
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


@dataclass(frozen=True)
class Work:
    """One chunk to simulate: its bucket, its runs and the compiled batch size it pads to."""

    bucket: Bucket
    size: int
    runs: list[Run]


def schedule(
    buckets: list[Bucket],
    done: set[str],
    index: int,
    count: int,
    n_devices: int,
    budget: int,
    max_chunk: int | None,
) -> tuple[list[Work], int]:
    """Process `index` of `count`'s share of each bucket (every count-th run), less the runs in
    `done`, in chunks; and how many of its runs were skipped as done."""
    work, skipped = [], 0
    for bucket in buckets:
        mine = list(bucket.runs[index::count])
        todo = [r for r in mine if run_id(*r) not in done]
        skipped += len(mine) - len(todo)
        if todo:
            size = chunk_size(bucket.shape, len(mine), n_devices, budget, max_chunk)
            work += [Work(bucket, size, chunk) for chunk in split(todo, size)]
    return work, skipped
