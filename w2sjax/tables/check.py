"""`w2sjax check DIR [--repair]`: a dataset's integrity in a few lines (integrity.py does the
checking), and the repair that moves damaged chunks and stray files into DIR/quarantine/, so the
next `w2sjax sweep` recomputes exactly the damaged chunks' runs, and restores a damaged spec.toml
from the spec its parts record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from w2sjax.tables.damage import quarantine, remove_uncommitted
from w2sjax.tables.integrity import Inspection, inspect, read_spec
from w2sjax.tables.layout import QUARANTINE, SPEC_FILE, TABLES, DatasetRefused, existing_spec
from w2sjax.tables.lock import DatasetLock, LockHeld

SHOWN = 10  # damaged or stray entries listed one per line; the rest are counted


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
    if ins.spec_problem is None:
        lines.append(f"{SPEC_FILE}: reads as a sweep")
    else:
        restorable = " (every part records the same spec: --repair restores it)"
        lines.append(ins.spec_problem + (restorable if _restorable(ins) else ""))
    faults = [("damaged", f) for f in ins.damaged] + [("stray", f) for f in ins.stray]
    lines += [f"{kind}: {f.path}: {f.reason}" for kind, f in faults[:SHOWN]]
    if len(faults) > SHOWN:
        lines.append(f"... and {len(faults) - SHOWN} more damaged or stray")
    if ins.other:
        names = ", ".join(str(p) for p in ins.other)
        lines.append(f"not written by w2sjax (left alone): {names}")
    return lines


def _restorable(ins: Inspection) -> bool:
    """A damaged spec.toml that the parts' common record can replace."""
    return ins.spec_problem is not None and read_spec(ins.parts_spec)[1] is None


def _verdict(ins: Inspection) -> str:
    if ins.clean:
        return "clean"
    if ins.damaged or ins.stray:
        return (
            f"not clean: `w2sjax check {ins.root} --repair` moves {len(ins.to_quarantine)} "
            f"entries to {ins.root / QUARANTINE}/; then the sweep's command recomputes the "
            f"damaged chunks' runs"
        )
    if _restorable(ins):
        return f"not clean: `w2sjax check {ins.root} --repair` restores {SPEC_FILE}"
    return f"not clean: rerun the sweep's command, which writes {SPEC_FILE}"


def _repair(root: Path) -> CheckResult:
    from w2sjax.tables.store import write_text  # store brings jax: only a repair writes

    with DatasetLock(root):
        remove_uncommitted(root)
        before = inspect(root, deep=True)
        moved = quarantine(root, before.to_quarantine)
        restored = _restorable(before)
        if restored:
            write_text(root / SPEC_FILE, before.parts_spec)
        after = inspect(root, deep=True)
    lines = describe(before)
    if moved is not None:
        lines.append(
            f"repaired: {len(before.to_quarantine)} entries moved to {moved}; the sweep's "
            f"command recomputes the damaged chunks' runs"
        )
    if restored:
        lines.append(f"repaired: {SPEC_FILE} restored from the spec its parts record")
    return CheckResult([*lines, _verdict(after)], after.clean)


def check(root: str | Path, repair: bool = False) -> CheckResult:
    """Inspect the dataset at `root`, every page of every part (integrity.inspect, deep). Says
    whether a writer holds the lock now (its uncommitted parts are then in flight; committed
    chunks are whole whatever it does, so the verdict holds either way). With `repair` it takes
    the lock (LockHeld while another process writes), removes uncommitted parts, quarantines
    damaged chunks and stray entries and restores a damaged spec.toml from its parts.
    DatasetRefused when `root` is no dataset folder."""
    root = Path(root).resolve()  # "." or a link: the same lock as the writer's spelling
    if not root.is_dir() or not (
        existing_spec(root) is not None or any((root / t).is_dir() for t in TABLES)
    ):
        raise DatasetRefused(f"{root}: not a w2sjax dataset folder (no spec.toml, no tables)")
    if repair:
        return _repair(root)
    writer = None
    try:
        with DatasetLock(root, shared=True, wait_s=0.0):
            pass  # a probe: holding it through a long read would turn writers away
    except LockHeld as held:
        writer = str(held.holder) if held.holder else "another process"
    except OSError:
        pass  # no usable lock file here (a read-only copy, a link in its place): no writer
    ins = inspect(root, deep=True)
    return CheckResult([*describe(ins, writer), _verdict(ins)], ins.clean)
