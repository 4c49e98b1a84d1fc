"""What is done about the damage integrity.py finds (jax-free). A writer, under the dataset's
lock, deletes what a killed writer left uncommitted and moves damaged chunks and stray files into
<dataset>/quarantine/ (kept, not deleted, so nothing is lost to a wrong verdict), so a resumed
sweep recomputes exactly their runs. A reader refuses a damaged dataset with one line that names
the file and the repair to run, rather than analysing a dataset with runs silently missing or
failing with a pyarrow traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from w2sjax.tables.integrity import Inspection, inspect, reason, uncommitted, walk
from w2sjax.tables.layout import QUARANTINE, DatasetRefused


class DamagedDataset(DatasetRefused):
    """A dataset with damaged or stray files; str() names the first and the repair command."""


def remove_uncommitted(root: Path) -> None:
    """Delete the parts of chunks that were never committed and temporary files: what a killed
    writer left. Only under the dataset's lock (a live writer's chunk in flight looks the same)."""
    found, _, temporary = walk(root)
    for rel in uncommitted(found, temporary):
        (root / rel).unlink(missing_ok=True)


def quarantine(root: str | Path, entries: Iterable[Path]) -> Path | None:
    """Move `entries` (files or folders, relative to root) into
    root/quarantine/<UTC time>-<pid>/, keeping their relative paths; the folder, or None when
    there was nothing to move."""
    root, entries = Path(root), list(entries)
    if not entries:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = root / QUARANTINE / f"{stamp}-{os.getpid()}"
    for rel in entries:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / rel, target)
    return folder


def damage_line(ins: Inspection) -> str:
    """One line: the first damaged or stray file and what to run."""
    faults = [*ins.damaged, *ins.stray]
    first = faults[0]
    more = f" (and {len(faults) - 1} more damaged or stray)" if len(faults) > 1 else ""
    return (
        f"{ins.root / first.path}: {first.reason}{more}; run `w2sjax check {ins.root} --repair`, "
        f"then rerun the sweep to recompute those runs"
    )


def unreadable_line(folder: Path, err: Exception) -> str:
    """One line for a table folder that failed to read past the cheap check: the first part that
    does not read in full (or the error), and the deep check that finds and repairs it."""
    root, culprit = folder.parent, folder
    for path in sorted(folder.glob("bucket=*/part-*.parquet")):
        try:
            pq.ParquetFile(path, page_checksum_verification=True).read()
        except (pa.ArrowException, OSError) as bad:
            err, culprit = bad, path
            break
    return (
        f"{culprit}: does not read ({reason(err)}); run `w2sjax check {root} --repair`, then "
        f"rerun the sweep to recompute those runs"
    )


def require_intact(root: str | Path) -> None:
    """Raise DamagedDataset (one line) unless every committed chunk of root is whole and no
    stray entry sits in its tables."""
    ins = inspect(root)
    if ins.damaged or ins.stray:
        raise DamagedDataset(damage_line(ins))
