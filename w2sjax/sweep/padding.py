"""Which buckets share a program: runs whose Shapes differ only in n_st padded to one n_st
(batch.Shape.padded), chosen by a cost model and recorded in spec.toml.

Each program costs a compile (seconds, whatever its size); padding a run to a larger n_st costs
its extra FLOPs at every step. `cheapest` splits a group's sizes into runs of adjacent sizes,
each padded to its largest, at the least total of the two (`--pad auto`). A dataset records the
choice (PAD_RECORD lines) when it is made and a resume follows the record, never the cost
model again, so its runs keep the program they were made with; a dataset without the record
(every one written before padding existed) runs every bucket at its own n_st.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax

from w2sjax.engine.batch import Shape, can_pad, span_size
from w2sjax.sweep.buckets import Bucket, Run, shape_id
from w2sjax.tables.layout import DatasetRefused

PAD_RECORD = "# --pad: "  # spec.toml's line for each bucket that runs padded
_RECORDED = re.compile(r"n_st=(\d+) runs as n_st=(\d+) \(bucket ([0-9a-f]+)\)")
NORMAL_FLOPS = 20  # a normal draw: threefry's hash and the inverse error function, about


class CostModel(NamedTuple):
    """compile_s: seconds to compile one bucket's programs; flops_per_s: the rate its runs go
    at (run_flops). Measured on 2 CPU cores (docs/notes/benchmarks.md, "2026-12-06, 2 CPU cores:
    runs that differ only in n_st share a program" and "... the random hash lowered as
    straight-line code"): about 8 s a program set (6-6.6 s of tracing, lowering and XLA, and
    about 1.5 s writing it to the cache) and 54-80 GFLOP/s for the coefficient form at n_st
    737-2048; on a GPU, 8-36 s a set (docs/BENCHMARKS.md) and, at these skinny products, a guess
    of 10^13 FLOP/s."""

    compile_s: float
    flops_per_s: float


def cost_model(platform: str) -> CostModel:
    """The CostModel of a jax platform ("cpu", "gpu", ...), a CPU's by the cores this process
    may use."""
    if platform == "cpu":
        usable = getattr(os, "sched_getaffinity", None)  # Linux only
        cores = len(usable(0)) if usable else (os.cpu_count() or 1)
        return CostModel(compile_s=8.0, flops_per_s=4e10 * cores)
    return CostModel(compile_s=15.0, flops_per_s=1e13)


def platform_model() -> CostModel:
    """The CostModel of jax's default platform."""
    return cost_model(jax.default_backend())


def run_flops(shape: Shape) -> float:
    """FLOPs of one run of `shape`: its draws, the loop form's setup, its steps and its looks
    at the logged steps (docs/ENGINE.md's per-step counts), with `[eval] ceiling` twice the
    training."""
    n, m, D = shape.n_st, shape.m, shape.dim
    n_eval = shape.n_test + shape.n_val
    draws = NORMAL_FLOPS * (span_size(shape.n_wk, n, m) + n_eval) * D
    if shape.form == "coef":
        setup, step, look = 2 * n * (n + n_eval) * D, 4 * m * n * n, 4 * m * n * (n + n_eval)
    else:
        setup, step, look = 0, 8 * m * n * D, 4 * m * (n + n_eval) * D
    trained = shape.steps * step + len(shape.log_steps()) * look
    return draws + setup + (1 + shape.ceiling) * trained


def cheapest(
    sizes: Sequence[int], seconds: Callable[[int, int], float], compile_s: float
) -> list[int]:
    """For ascending `sizes`, the size each is padded to: adjacent sizes padded to the largest
    of their run, the runs chosen to minimise compile_s per run of sizes plus the sum of
    seconds(n, target) (size n's runs padded to size target). Dynamic programming over where runs
    end, exact."""
    best, cut = [0.0] + [float("inf")] * len(sizes), [0] * (len(sizes) + 1)
    for end in range(1, len(sizes) + 1):
        for start in range(end):
            total = (
                best[start] + compile_s + sum(seconds(n, sizes[end - 1]) for n in sizes[start:end])
            )
            if total < best[end]:
                best[end], cut[end] = total, start
    targets, end = list(sizes), len(sizes)
    while end > 0:
        start = cut[end]
        targets[start:end] = [sizes[end - 1]] * (end - start)
        end = start
    return targets


def pad_key(shape: Shape) -> str:
    """The id a bucket's padding is recorded under: its Shape's (buckets.shape_id) with the loop
    form and the filters output left out, which a resume may change (both forms are exact)."""
    return shape_id(dataclasses.replace(shape, form="dense", filters=False))


class Size(NamedTuple):
    """One n_st of a group: its bucket's Shape and number of runs."""

    shape: Shape
    runs: int


def groups(buckets: Sequence[Bucket]) -> list[dict[int, Size]]:
    """The unpadded buckets whose Shapes differ only in n_st, those that may pad
    (batch.can_pad), as n_st -> Size, two or more a group."""
    found: dict[Shape, dict[int, Size]] = {}
    for b in buckets:
        if can_pad(b.shape):
            key = dataclasses.replace(b.shape, n_st=0)
            found.setdefault(key, {})[b.shape.n_st] = Size(b.shape, len(b.runs))
    return [g for g in found.values() if len(g) > 1]


def choose_pad(
    buckets: Sequence[Bucket], choice: str, model: CostModel, share: float = 1.0
) -> dict[str, int]:
    """The n_st each bucket's programs run at, for the buckets that run padded (pad_key ->
    n_st; a bucket left out runs unpadded): "off" none; "max" every group at its largest n_st,
    one program a group; "auto" `cheapest` by `model`, a `share` of each bucket's runs
    expected to run (a boundary search probes part of its lattice: bisect.probed_share)."""
    if choice == "off":
        return {}

    def seconds(group: dict[int, Size], n: int, target: int) -> float:
        """Seconds of group[n]'s runs padded to `target`, by `model`."""
        flops = run_flops(dataclasses.replace(group[n].shape, n_st=target))
        return share * group[n].runs * flops / model.flops_per_s

    pads: dict[str, int] = {}
    for group in groups(buckets):
        sizes = sorted(group)
        if choice == "max":
            targets = [sizes[-1]] * len(sizes)
        else:
            targets = cheapest(sizes, partial(seconds, group), model.compile_s)
        shared = {t for t in targets if targets.count(t) > 1}
        pads |= {
            pad_key(group[n].shape): t for n, t in zip(sizes, targets, strict=True) if t in shared
        }
    return pads


def recorded_pad(existing: str) -> dict[str, int]:
    """The PAD_RECORD lines of a dataset's spec.toml text: pad_key -> the n_st it runs at."""
    found = (
        _RECORDED.fullmatch(line.removeprefix(PAD_RECORD))
        for line in existing.splitlines()
        if line.startswith(PAD_RECORD)
    )
    return {m.group(3): int(m.group(2)) for m in found if m is not None}


def assign_pad(
    buckets: Sequence[Bucket],
    choice: str,
    model: CostModel,
    existing: str | None = None,
    share: float = 1.0,
) -> dict[str, int]:
    """choose_pad of the unpadded `buckets` for a new dataset (`existing` None); a dataset that
    exists (its spec.toml text) follows its record. DatasetRefused where an explicit `choice`
    disagrees with the record, or where the record's padding is no longer exact here
    (batch.can_pad: jax's threefry not partitionable)."""
    if existing is None:
        return choose_pad(buckets, choice, model, share)
    keyed = {pad_key(b.shape): b.shape for b in buckets}
    pads = {key: n for key, n in recorded_pad(existing).items() if key in keyed}
    if any(not can_pad(dataclasses.replace(keyed[key], n_st=n)) for key, n in pads.items()):
        raise DatasetRefused(
            "--pad: this dataset was written with padded programs, which are not exact here "
            "(batch.can_pad: jax's threefry must be partitionable, jax_threefry_partitionable, "
            "the default since jax 0.5); resume it where they are, or use --fresh"
        )
    wanted = choose_pad(buckets, choice, model, share)
    if choice != "auto" and pads != wanted:
        raise DatasetRefused(
            f"--pad {choice}: this dataset was written with {_described(pads)}, not "
            f"{_described(wanted)}; leave --pad at auto to resume it, or use --fresh"
        )
    return pads


def _described(pads: Mapping[str, int]) -> str:
    """Words for a padding choice."""
    if not pads:
        return "a program per n_st"
    return f"programs padded to n_st {', '.join(map(str, sorted(set(pads.values()))))}"


def pad_record(buckets: Sequence[Bucket], pads: Mapping[str, int]) -> str:
    """spec.toml's lines for `pads`: one per bucket that runs padded, none where none does (so
    the text of a dataset that pads nothing is what it was before padding existed)."""
    keyed = sorted((b.shape.n_st, pad_key(b.shape)) for b in buckets)
    return "".join(
        f"{PAD_RECORD}n_st={n} runs as n_st={pads[key]} (bucket {key})\n"
        for n, key in keyed
        if key in pads
    )


def pad_plan(buckets: Sequence[Bucket], pads: Mapping[str, int]) -> list[Bucket]:
    """The unpadded `buckets` with those in `pads` padded to their n_st there, the buckets padded
    to one Shape merged into one."""
    merged: dict[Shape, list[Run]] = {}
    for b in buckets:
        key = pad_key(b.shape)
        shape = b.shape
        if key in pads:
            shape = dataclasses.replace(b.shape, n_st=pads[key], padded=True)
        merged.setdefault(shape, []).extend(b.runs)
    return [Bucket(shape, tuple(runs)) for shape, runs in merged.items()]
