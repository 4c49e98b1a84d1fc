"""A dataset folder made ready before any compute, so a sweep writes only into a folder that holds
this spec's whole chunks: nothing a killed writer or a killed --fresh left half done, no damaged
chunk, no results of another spec, precision or sampler. A resume then adds exactly the missing
runs, with the samplers the folder already records. execution.py computes the chunks afterwards.

Process 0 alone takes the lock and changes the folder; with several processes (--distributed) the
others wait to learn whether that worked, so none waits for a process 0 that was refused, and then
read the spec it wrote. That is where the processes first meet, so `Processes`, how they share the
work and meet, is defined here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from w2sjax.config.grid import Sweep
from w2sjax.config.options import Distributed, EngineOptions
from w2sjax.sweep.buckets import Bucket, assign_noise, noise_record, plan
from w2sjax.sweep.padding import assign_pad, pad_plan, pad_record, platform_model
from w2sjax.tables.damage import quarantine, remove_uncommitted
from w2sjax.tables.durable import make_folder
from w2sjax.tables.integrity import inspect, read_spec
from w2sjax.tables.layout import SPEC_FILE, DatasetRefused, existing_spec
from w2sjax.tables.lock import DatasetLock
from w2sjax.tables.store import (
    SpecMismatch,
    check_spec,
    discard,
    discard_leftovers,
    write_text,
)


def _alone(name: str) -> None:
    """The barrier of a single process."""


def _own(ok: bool) -> bool:
    """`agree` of a single process: its own value."""
    return ok


@dataclass(frozen=True)
class Processes:
    """Which share of the work this process does (runs index % count == index) and how the
    processes meet: `barrier(name)` returns once all reach it; `agree(ok)` returns process 0's
    `ok` to every process (a barrier too)."""

    index: int = 0
    count: int = 1
    barrier: Callable[[str], None] = _alone
    agree: Callable[[bool], bool] = _own


def processes(distributed: Distributed | None) -> Processes:
    """This process's share and how the processes meet: one process where `distributed` is
    None, else jax.distributed initialised from it unless it already is (jax reads SLURM or Open
    MPI settings for what it leaves None)."""
    if distributed is None:
        return Processes()
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    # Once per process: a second sweep of the same process (a resume from Python) meets the
    # processes jax already knows.
    if not getattr(jax.distributed, "is_initialized", lambda: False)():
        jax.distributed.initialize(
            coordinator_address=distributed.coordinator,
            num_processes=distributed.num_processes,
            process_id=distributed.process_id,
        )
    return Processes(
        jax.process_index(),
        jax.process_count(),
        barrier=multihost_utils.sync_global_devices,
        agree=lambda ok: bool(multihost_utils.broadcast_one_to_all(np.int32(ok))),
    )


def stored_spec(sweep: Sweep, precision: str, noise: Mapping[str, str], pad_lines: str = "") -> str:
    """What spec.toml holds: the sweep's canonical text, a non-default precision, the noise
    keys sampled reduced (buckets.noise_record) and the buckets that run padded (`pad_lines`,
    padding.pad_record's). A resume must not mix in results at another precision or from
    another sampler, and follows the padding recorded; the form may differ, both forms are
    exact."""
    text = sweep.to_toml()
    if precision != "highest":
        text += f"\n# --precision {precision}\n"
    record = noise_record(noise) + pad_lines
    return text + ("\n" + record if record else "")


def set_up(root: Path, spec_text: str, fresh: bool, filters: bool) -> None:
    """Make `root` ready for the sweep whose spec.toml is `spec_text`; only under its lock. Finish
    a killed --fresh's deletion; apply --fresh (store.discard) or refuse another spec; remove what
    a killed writer left uncommitted; move damaged chunks and stray files to quarantine/, so
    their runs are recomputed; write spec.toml if it changed. A damaged spec.toml is rewritten
    when every part records this sweep's spec, and refused otherwise."""
    try:
        discard_leftovers(root)
        if fresh:
            discard(root)
        old = check_spec(root, spec_text)
        if old is not None and old != spec_text:
            found = inspect(root, spec_text, filters=filters)
            if any(f.kind == "spec" for f in found.damaged):
                raise SpecMismatch(
                    f"{root}: its {SPEC_FILE} is damaged and its parts were made by another "
                    f"spec; rerun with --fresh to replace them, or choose another name or --out"
                )
            print(
                f"w2sjax: {root / SPEC_FILE} was damaged; every part was made by this sweep, so "
                f"it is written anew",
                file=sys.stderr,
            )
        make_folder(root)
        remove_uncommitted(root)
        found = inspect(root, spec_text, filters=filters)
        moved = quarantine(root, found.to_quarantine)
        if moved is not None:
            print(
                f"w2sjax: {len(found.damaged)} damaged chunk(s) and {len(found.stray)} stray "
                f"file(s) moved to {moved}; the damaged chunks' runs are recomputed",
                file=sys.stderr,
            )
        if old != spec_text:  # rewritten only when it changes: each write is a window for damage
            write_text(root / SPEC_FILE, spec_text)
    except OSError as err:
        raise OSError(f"--out: cannot write {root} ({err.strerror or err})") from None


def recorded_spec(root: Path) -> str | None:
    """The spec text whose noise record a resume follows: the dataset's spec.toml, or, where that
    is missing or damaged, the spec every part records (the samplers the parts were made with);
    None for a new dataset."""
    text = existing_spec(root)
    if read_spec(text)[1] is None:
        return text
    parts = inspect(root).parts_spec
    return parts if read_spec(parts)[1] is None else text


def _take_lock(root: Path, hold: ExitStack) -> None:
    try:
        hold.enter_context(DatasetLock(root))
    except OSError as err:
        raise OSError(f"--out: cannot write {root.parent} ({err.strerror or err})") from None


def planned(
    sweep: Sweep, options: EngineOptions, existing: str | None = None, share: float = 1.0
) -> tuple[str, list[Bucket]]:
    """The spec.toml text and the buckets `options` run `sweep` in: a new dataset's (`existing`
    None), or one that exists (its spec.toml text), which keeps its samplers and padding
    (buckets.assign_noise, padding.assign_pad, with `share` of the runs expected to run)."""
    precision = options.precision
    assigned = assign_noise(sweep, options.noise, precision, existing)
    plain = plan(sweep, options.filters, options.form, precision, assigned)
    pads = assign_pad(plain, options.pad, platform_model(), existing, share)
    spec = stored_spec(sweep, precision, assigned, pad_record(plain, pads))
    return spec, pad_plan(plain, pads)


def prepare(
    root: Path,
    sweep: Sweep,
    options: EngineOptions,
    fresh: bool,
    procs: Processes,
    hold: ExitStack,
    locked: bool = False,
    share: float = 1.0,
) -> tuple[str, list[Bucket]]:
    """Before any compute: process 0 takes the dataset's lock (kept in `hold` until the sweep
    ends) and sets the folder up; every process learns whether that worked, so none waits for a
    process 0 that was refused. Returns the spec.toml text and the sweep's buckets (a dataset
    that exists keeps its samplers and padding: buckets.assign_noise, padding.assign_pad, with
    `share` of the runs expected to run). Raises DatasetRefused or OSError (one line) when it
    did not work."""
    failure: Exception | None = None
    if procs.index == 0:
        try:
            if not locked:  # else the caller holds it (a boundary search, for its whole search)
                _take_lock(root, hold)
            spec, buckets = planned(sweep, options, None if fresh else recorded_spec(root), share)
            set_up(root, spec, fresh, options.filters)
        except Exception as err:  # whatever stops process 0 must stop every process
            failure = err
    ok = procs.agree(failure is None)
    if failure is not None:
        raise failure
    if not ok:
        raise DatasetRefused(f"{root}: process 0 could not set up the dataset (see its error)")
    if procs.index != 0:
        spec, buckets = planned(sweep, options, recorded_spec(root), share)
        check_spec(root, spec)
    return spec, buckets
