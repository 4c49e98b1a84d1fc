"""Grid points -> buckets (one compiled program each) -> memory-sized chunks of runs.

A bucket holds the runs that share a Shape. Its runs go through `simulate` in chunks of one fixed
size (the last padded by repeating a run), so a bucket traces and compiles once; the size comes from
a per-run memory estimate against the device's budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jax

from w2sjax.config.fields import FIELDS, SPAN_KEEPING, at_silent_default
from w2sjax.config.grid import Sweep
from w2sjax.config.settings import Config
from w2sjax.engine.batch import Shape, choose_noise, run_id, span_size
from w2sjax.engine.metrics import STEP_METRICS
from w2sjax.engine.optimizers import OPTIMIZERS
from w2sjax.tables.layout import DatasetRefused

Run = tuple[Config, int]
BYTES_F32 = 4
# Fraction of a device's memory a chunk may plan to use: XLA needs room for its own buffers.
GPU_MEMORY_FRACTION = 0.6
CPU_MEMORY_FRACTION = 0.25


@dataclass(frozen=True)
class Bucket:
    """Runs that share one Shape, in grid order then seed order. call_runs: runs per call where
    calls ask for fewer than the bucket holds (a boundary search's rounds: execution.py), so
    they run the same programs (None: plan from the runs asked for)."""

    shape: Shape
    runs: tuple[Run, ...]
    call_runs: int | None = None

    @property
    def id(self) -> str:
        """shape_id of its Shape."""
        return shape_id(self.shape)


def shape_id(shape: Shape) -> str:
    """10 hex of the Shape's text. The full sampler, the padding flags when off and
    silent-default fields at their default stay out of the text, so buckets of datasets
    written before those existed keep their ids."""
    fields = {
        k: v
        for k, v in dataclasses.asdict(shape).items()
        if not (k == "noise" and v == "full")
        and not (k in ("padded", "padded_eval") and not v)
        and not (k in FIELDS and at_silent_default(k, v))
    }
    text = f"Shape({', '.join(f'{k}={v!r}' for k, v in fields.items())})"
    return hashlib.sha256(text.encode()).hexdigest()[:10]


NOISE_RECORD = "# --noise reduced: "  # spec.toml's line for each noise key sampled reduced


def noise_key(config: Config) -> str:
    """The values the noise sampler's choice depends on, as spec.toml records them: with an
    optimizer that leaves the span (which only the full sampler serves), the optimizer too, and
    with an image source the source, so their points never share a key with points the reduced
    sampler may take. Keys of every other point are those written before the choice existed."""
    key = (
        f"d={config.d}, n_wk={config.n_wk}, n_st={config.n_st}, m={config.m}, "
        f"easy_signal={config.easy_signal}"
    )
    if config.source != "synthetic":  # only the full sampler serves an image source
        key = f"{key}, source={config.source}"
    return key if config.optimizer in SPAN_KEEPING else f"{key}, optimizer={config.optimizer}"


def assign_noise(
    sweep: Sweep, choice: str, precision: str, existing: str | None = None
) -> dict[str, str]:
    """The sampler ("full" or "reduced") of each noise key of the sweep. A new dataset takes
    `choice` (auto: batch.choose_noise). A dataset that exists (`existing`: its spec.toml text)
    keeps what it recorded, so a resume never mixes samplers; keys it does not record ran
    "full", as in every dataset written before the choice existed. An explicit `choice` that
    disagrees with the record raises DatasetRefused."""
    configs = {noise_key(c): c for c in sweep.points}
    if existing is None:
        return {
            key: choose_noise(c, precision) if choice == "auto" else choice
            for key, c in configs.items()
        }
    reduced = {
        line.removeprefix(NOISE_RECORD)
        for line in existing.splitlines()
        if line.startswith(NOISE_RECORD)
    }
    assigned = {key: "reduced" if key in reduced else "full" for key in configs}
    clash = next((key for key, used in assigned.items() if choice not in ("auto", used)), None)
    if clash is not None:
        raise DatasetRefused(
            f"--noise {choice}: this dataset was written with the {assigned[clash]} sampler at "
            f"{clash}; leave --noise at auto to resume it, or use --fresh"
        )
    return assigned


def noise_record(assigned: Mapping[str, str]) -> str:
    """spec.toml's lines for `assigned`: one per key sampled reduced, none when all are full (so
    the text of a dataset written before the choice existed is unchanged)."""
    return "".join(
        f"{NOISE_RECORD}{key}\n" for key in sorted(assigned) if assigned[key] == "reduced"
    )


def plan(
    sweep: Sweep,
    filters: bool = False,
    form: str = "auto",
    precision: str = "highest",
    noise: Mapping[str, str] | None = None,
) -> list[Bucket]:
    """Group the sweep's runs (every point x seed) into buckets by Shape, in first-seen order.
    noise: the sampler per noise key (assign_noise); None: all "full". Each n_st is a bucket
    of its own; padding.pad_plan merges those that share a padded program."""
    groups: dict[Shape, list[Run]] = {}
    for config in sweep.points:
        sampler = noise[noise_key(config)] if noise is not None else "full"
        shape = Shape.of(config, filters=filters, form=form, precision=precision, noise=sampler)
        groups.setdefault(shape, []).extend((config, seed) for seed in range(config.seeds))
    return [Bucket(shape, tuple(runs)) for shape, runs in groups.items()]


def bytes_per_run(shape: Shape) -> int:
    """Planning estimate of device memory for one run of `shape` (inputs, state, temporaries)."""
    n_eval = shape.n_test + shape.n_val  # the test and validation sets
    n_all = shape.n_wk + shape.n_st + n_eval
    D = shape.dim
    filters = 2 * shape.m * D
    # what each trained student holds: the run's own and, with `[eval] ceiling`, its ceiling's
    student = (
        6 * filters  # W, W0, gradient, update and temporaries
        + 8 * shape.m * shape.n_st  # noise and signal pre-activations, masks, rho, its update
        + 6 * shape.m * n_eval  # evaluation pre-activations
        + OPTIMIZERS[shape.optimizer].state_copies * filters  # its state, W-sized (dense form)
    )
    floats = (
        n_all * D  # the noise matrices
        # the full sampler's draws (jax.random.normal holds about 4x its output at its peak)
        # and the evaluation sets' joined copy: measured peaks were 4.8x the noise matrices
        # at d = 2 x 10^4, against the 1.7x counted before this term (the chunk OOM-killed)
        + (3 * n_all * D if shape.noise == "full" else 0)
        + (1 + shape.ceiling) * student
        # the reduced sampler's joint draw: normals, mask and scaled copy of (M, D); padded,
        # also its flat draw, the index into it and the run's own read (noise.normals), and the
        # same for the evaluation sets' draws
        + (
            (3 + 3 * shape.padded) * span_size(shape.n_wk, shape.n_st, shape.m) * D
            + 3 * shape.padded * n_eval * D
            if shape.noise == "reduced"
            else 0
        )
        + len(shape.log_steps()) * (len(STEP_METRICS) + (8 * shape.m if shape.filters else 0))
        + (shape.n_st * (shape.n_st + n_eval) if shape.form == "coef" else 0)  # the K's
        # a projected decomposition's float32 copy of the training noise (kept from begin to
        # the views: the loop's own may be bfloat16), xi_i / ||xi_i||^2, Gram matrix, inverse
        + ((2 * shape.n_st * D + 2 * shape.n_st**2) if shape.optimizer not in SPAN_KEEPING else 0)
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
            wanted = len(mine) if bucket.call_runs is None else -(-bucket.call_runs // count)
            size = chunk_size(bucket.shape, wanted, n_devices, budget, max_chunk)
            work += [Work(bucket, size, chunk) for chunk in split(todo, size)]
    return work, skipped
