"""Which buckets share a program: runs whose Shapes differ only in their sample counts
(batch.SAMPLE_COUNTS: n_st, n_test, n_val) padded to one program's (batch.Shape.padded),
chosen by a cost model and recorded in spec.toml.

Each program costs a compile (seconds, whatever its size); padding a run to larger counts costs
its extra FLOPs (at every step for n_st; in the draws, the set-up and the logged steps for
n_test and n_val). `cheapest` splits a group's buckets, in the order of their counts (n_st
first, or n_test and n_val first, whichever split costs less), into runs of adjacent buckets,
each padded to the largest counts among them, at the least total of the two (`--pad auto`). A
dataset records the choice (PAD_RECORD lines) when it is made and a resume follows the record,
never the cost model again, so its runs keep the program they were made with; a dataset without
the record (every one written before padding existed) runs every bucket at its own sizes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax

from w2sjax.engine.batch import SAMPLE_COUNTS, Shape, can_pad, span_size
from w2sjax.sweep.buckets import Bucket, shape_id
from w2sjax.tables.layout import DatasetRefused

PAD_RECORD = "# --pad: "  # spec.toml's line for each bucket that runs padded
_RECORDED = re.compile(
    r"n_st=(\d+) runs as n_st=(\d+)((?:, n_(?:test|val)=\d+)*) \(bucket ([0-9a-f]+)\)"
)
EVAL_COUNTS = ("n_test", "n_val")  # the counts besides n_st, named in a record where they pad
NORMAL_FLOPS = 20  # a normal draw: threefry's hash and the inverse error function, about


class CostModel(NamedTuple):
    """compile_s: seconds to compile one bucket's programs; flops_per_s: the rate its runs go
    at (run_flops). Measured on 2 CPU cores (docs/notes/benchmarks.md, "2026-12-06, 2 CPU cores:
    runs that differ only in n_st share a program" and "... the random hash lowered as
    straight-line code"): about 8 s a program set, above the compile log's 5-7 s of tracing,
    lowering and XLA beside runs on the same cores (jax's cache adds about 0.15 s a set: "...
    XLA's CPU options and where a program set's compile goes"; at 5.5, 6.5 and 8 s the model
    picks the same programs for the default sweep, and for the small search), and 54-80 GFLOP/s
    for the coefficient form at n_st 737-2048; on a GPU, 8-36 s a set (docs/BENCHMARKS.md) and,
    at these skinny products, a guess of 10^13 FLOP/s."""

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


def cheapest(count: int, program_s: Callable[[int, int], float]) -> list[range]:
    """The split of `count` units in order into runs of adjacent units (ranges), each run one
    program, at the least total of program_s(start, end): the seconds of one program for units
    start to end - 1 (its compile and its runs' work, padded to its largest). Dynamic programming
    over where runs end, exact."""
    best, cut = [0.0] + [float("inf")] * count, [0] * (count + 1)
    for end in range(1, count + 1):
        for start in range(end):
            total = best[start] + program_s(start, end)
            if total < best[end]:
                best[end], cut[end] = total, start
    spans, end = [], count
    while end > 0:
        spans.append(range(cut[end], end))
        end = cut[end]
    return spans[::-1]


def pad_key(shape: Shape) -> str:
    """The id a bucket's padding is recorded under: its Shape's (buckets.shape_id) with the loop
    form and the filters output left out, which a resume may change (both forms are exact)."""
    return shape_id(dataclasses.replace(shape, form="dense", filters=False))


class Size(NamedTuple):
    """One bucket of a group: its Shape and number of runs."""

    shape: Shape
    runs: int


class Target(NamedTuple):
    """The sample counts (batch.SAMPLE_COUNTS) a padded bucket's programs run at."""

    n_st: int
    n_test: int
    n_val: int


def groups(buckets: Sequence[Bucket]) -> list[list[Size]]:
    """The unpadded buckets whose Shapes differ only in their sample counts, those that may pad
    (batch.can_pad), two or more a group."""
    found: dict[Shape, list[Size]] = {}
    for b in buckets:
        if can_pad(b.shape):
            key = dataclasses.replace(b.shape, **dict.fromkeys(SAMPLE_COUNTS, 0))
            found.setdefault(key, []).append(Size(b.shape, len(b.runs)))
    return [g for g in found.values() if len(g) > 1]


def counts_of(shape: Shape, fields: Sequence[str] = SAMPLE_COUNTS) -> tuple[int, ...]:
    """The sample counts `fields` of a Shape, in that order."""
    return tuple(getattr(shape, f) for f in fields)


def _joint(members: Sequence[Size]) -> Target | None:
    """The counts one program for `members` holds, the largest of each; None where that program
    would not be exact (batch.can_pad: one's n_st with another's n_test or n_val may pass its
    limits). Each bucket of a group is exact alone (groups)."""
    target = Target(*map(max, zip(*(counts_of(s.shape) for s in members), strict=True)))
    return target if can_pad(_padded(members[0].shape, target)) else None


def _program_s(
    units: Sequence[Size], model: CostModel, share: float, start: int, end: int
) -> float:
    """Seconds, by `model`, of one program for units[start:end]: its compile and a `share` of
    their runs padded to its counts (_joint); infinite where that program is not exact."""
    members = units[start:end]
    target = _joint(members)
    if target is None:
        return float("inf")
    padded = (dataclasses.replace(s.shape, **target._asdict()) for s in members)
    return model.compile_s + sum(
        share * s.runs * run_flops(shape) / model.flops_per_s
        for s, shape in zip(members, padded, strict=True)
    )


def _cheapest_programs(group: list[Size], model: CostModel, share: float) -> list[list[Size]]:
    """`cheapest`'s programs for a group by `model`, over its buckets in the order of (n_st,
    n_test, n_val) or of (n_test, n_val, n_st), whichever split costs less: the first joins the
    test and validation counts of one n_st, the second the n_st of one pair of them."""
    splits = []
    for order in (SAMPLE_COUNTS, (*EVAL_COUNTS, "n_st")):
        units = sorted(group, key=lambda s: counts_of(s.shape, order))
        cost = partial(_program_s, units, model, share)
        spans = cheapest(len(units), cost)
        total = sum(cost(span.start, span.stop) for span in spans)
        splits.append((total, [[units[i] for i in span] for span in spans]))
    return min(splits, key=lambda split: split[0])[1]  # the first of equals: n_st first


def _max_programs(group: list[Size]) -> list[list[Size]]:
    """--pad max's programs for a group: one, where that is exact; else one for each pair of
    test and validation counts, at its largest n_st."""
    if _joint(group):
        return [group]
    pairs: dict[tuple[int, ...], list[Size]] = {}
    for s in group:
        pairs.setdefault(counts_of(s.shape, EVAL_COUNTS), []).append(s)
    return list(pairs.values())


def choose_pad(
    buckets: Sequence[Bucket], choice: str, model: CostModel, share: float = 1.0
) -> dict[str, Target]:
    """The sample counts each bucket's programs run at, for the buckets that run padded
    (pad_key -> Target; a bucket left out runs unpadded): "off" none; "max" one program a group
    at its largest counts (_max_programs); "auto" the programs `cheapest` chooses by `model`
    (_cheapest_programs), a `share` of each bucket's runs expected to run (a boundary search
    probes part of its lattice: bisect.probed_share). Only programs that are exact pad."""
    if choice == "off":
        return {}
    pads: dict[str, Target] = {}
    for group in groups(buckets):
        if choice == "max":
            programs = _max_programs(group)
        else:
            programs = _cheapest_programs(group, model, share)
        for members in programs:
            target = _joint(members)
            if len(members) > 1 and target:
                pads |= {pad_key(s.shape): target for s in members}
    return pads


def recorded_pad(existing: str) -> dict[str, dict[str, int]]:
    """The PAD_RECORD lines of a dataset's spec.toml text: pad_key -> the sample counts it
    runs at that the line names (n_st always; n_test and n_val where they are padded)."""
    found = (
        _RECORDED.fullmatch(line.removeprefix(PAD_RECORD))
        for line in existing.splitlines()
        if line.startswith(PAD_RECORD)
    )
    return {
        m.group(4): {"n_st": int(m.group(2))}
        | {f: int(v) for f, v in re.findall(r", (n_test|n_val)=(\d+)", m.group(3))}
        for m in found
        if m is not None
    }


def _target(shape: Shape, counts: Mapping[str, int]) -> Target:
    """The Target of `counts`, a bucket's own sizes where they name none."""
    return Target(*counts_of(shape))._replace(**counts)


def assign_pad(
    buckets: Sequence[Bucket],
    choice: str,
    model: CostModel,
    existing: str | None = None,
    share: float = 1.0,
) -> dict[str, Target]:
    """choose_pad of the unpadded `buckets` for a new dataset (`existing` None); a dataset that
    exists (its spec.toml text) follows its record. DatasetRefused where an explicit `choice`
    disagrees with the record, or where the record's padding is no longer exact here
    (batch.can_pad: jax's threefry not partitionable)."""
    if existing is None:
        return choose_pad(buckets, choice, model, share)
    keyed = {pad_key(b.shape): b.shape for b in buckets}
    pads = {k: _target(keyed[k], c) for k, c in recorded_pad(existing).items() if k in keyed}
    if any(not can_pad(_padded(keyed[k], target)) for k, target in pads.items()):
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


def _described(pads: Mapping[str, Target]) -> str:
    """Words for a padding choice."""
    if not pads:
        return "a program per sample count"
    counts = sorted(set(pads.values()))
    return "programs padded to " + ", ".join(
        f"n_st {t.n_st} (n_test {t.n_test}, n_val {t.n_val})" for t in counts
    )


def _padded(shape: Shape, target: Target) -> Shape:
    """`shape` padded to `target`."""
    return dataclasses.replace(shape, padded=True, **target._asdict())


def pad_record(buckets: Sequence[Bucket], pads: Mapping[str, Target]) -> str:
    """spec.toml's lines for `pads`: one per bucket that runs padded, naming n_test and n_val
    only where they are padded, none where none does (so the text of a dataset that pads
    nothing, or only n_st, is what it was before)."""
    lines = []
    for b in sorted(buckets, key=lambda b: (b.shape.n_st, pad_key(b.shape))):
        key = pad_key(b.shape)
        if key in pads:
            target = pads[key]
            evals = "".join(
                f", {f}={getattr(target, f)}"
                for f in EVAL_COUNTS
                if getattr(target, f) != getattr(b.shape, f)
            )
            lines.append(
                f"{PAD_RECORD}n_st={b.shape.n_st} runs as n_st={target.n_st}{evals} "
                f"(bucket {key})\n"
            )
    return "".join(lines)


def pad_plan(buckets: Sequence[Bucket], pads: Mapping[str, Target]) -> list[Bucket]:
    """The unpadded `buckets` with those in `pads` padded to their Target there, the buckets
    padded to one Shape merged into one; where the merged buckets' own test or validation
    counts differ from the program's, it records over each run's own (Shape.padded_eval)."""
    merged: dict[Shape, list[Bucket]] = {}
    for b in buckets:
        key = pad_key(b.shape)
        shape = _padded(b.shape, pads[key]) if key in pads else b.shape
        merged.setdefault(shape, []).append(b)
    plan = []
    for shape, members in merged.items():
        evals = counts_of(shape, EVAL_COUNTS)
        if any(counts_of(b.shape, EVAL_COUNTS) != evals for b in members):
            shape = dataclasses.replace(shape, padded_eval=True)
        plan.append(Bucket(shape, tuple(run for b in members for run in b.runs)))
    return plan
