"""`w2sjax check DIR [--repair]`: a dataset's integrity in a few lines (integrity.py does the
checking), and the repair that moves damaged chunks and stray files into DIR/quarantine/ so the
next `w2sjax sweep` recomputes exactly their runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from w2sjax.integrity import Inspection, inspect, quarantine, remove_uncommitted
from w2sjax.layout import QUARANTINE, TABLES, DatasetRefused, existing_spec
from w2sjax.lock import DatasetLock, LockHeld

SHOWN = 10  # damaged or stray files listed one per line; the rest are counted


@dataclass(frozen=True)
class CheckResult:
    """The lines `w2sjax check` prints and whether the dataset is clean (exit status 0 or 1)."""

    lines: list[str]
    clean: bool


def describe(ins: Inspection, writer: str | None = None) -> list[str]:
    """The check's report of one inspection; `writer` names a process writing the dataset now."""
    of_spec = f" of the {ins.spec_runs} in spec.toml" if ins.spec_runs is not None else ""
    lines = [
        f"{ins.root}: {ins.chunks} whole chunk(s) with {ins.runs} run(s){of_spec}; step rows: "
        f"{ins.step_rows_found} found, {ins.step_rows_expected} expected"
    ]
    if writer is not None:
        lines.append(
            f"being written by {writer}: {len(ins.uncommitted)} file(s) of chunks in flight "
            f"are not checked"
        )
    elif ins.uncommitted:
        lines.append(
            f"{len(ins.uncommitted)} file(s) of chunks never committed (not read; the next sweep "
            f"or --repair removes them)"
        )
    lines.append(f"spec.toml: {ins.spec_problem or 'reads as a sweep'}")
    faults = [("damaged", f) for f in ins.damaged] + [("stray", f) for f in ins.stray]
    lines += [f"{kind}: {f.path}: {f.reason}" for kind, f in faults[:SHOWN]]
    if len(faults) > SHOWN:
        lines.append(f"... and {len(faults) - SHOWN} more damaged or stray")
    if ins.other:
        names = ", ".join(str(p) for p in ins.other)
        lines.append(f"not written by w2sjax (left alone): {names}")
    return lines


def _verdict(ins: Inspection) -> str:
    if ins.clean:
        return "clean"
    if ins.damaged or ins.stray:
        return (
            f"not clean: `w2sjax check {ins.root} --repair` moves {len(ins.to_quarantine)} "
            f"file(s) to {ins.root / QUARANTINE}/, then the sweep's command recomputes their runs"
        )
    return "not clean: rerun the sweep's command to write spec.toml"


def check(root: str | Path, repair: bool = False) -> CheckResult:
    """Inspect the dataset at `root`, every page of every part (integrity.inspect, deep).
    Without `repair` it holds the lock
    shared, so no writer starts mid-way; while a writer holds it, uncommitted parts count as in
    flight. With `repair` it takes the lock (LockHeld while another process writes), removes
    uncommitted parts, and quarantines damaged chunks and stray files. DatasetRefused when
    `root` is no dataset folder."""
    root = Path(root)
    if not root.is_dir() or not (
        existing_spec(root) is not None or any((root / t).is_dir() for t in TABLES)
    ):
        raise DatasetRefused(f"{root}: not a w2sjax dataset folder (no spec.toml, no tables)")
    if repair:
        with DatasetLock(root):
            remove_uncommitted(root)
            before = inspect(root, deep=True)
            moved = quarantine(root, before.to_quarantine)
            after = inspect(root, deep=True)
        lines = describe(before)
        if moved is not None:
            lines.append(
                f"repaired: {len(before.to_quarantine)} file(s) moved to {moved}; the sweep's "
                f"command recomputes their runs"
            )
        return CheckResult(lines + [_verdict(after)], after.clean)
    writer = None
    try:
        with DatasetLock(root, shared=True, wait_s=0.0):
            ins = inspect(root, deep=True)
    except LockHeld as held:
        # Committed chunks are whole whatever a writer does; its uncommitted parts are in flight.
        writer = str(held.holder) if held.holder else "another process"
        ins = inspect(root, deep=True)
    return CheckResult([*describe(ins, writer), _verdict(ins)], ins.clean)
