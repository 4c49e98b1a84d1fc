"""Where a dataset's files live, and which names belong to w2sjax (jax-free).

Under <out>/<name>/: spec.toml, the tables runs/, steps/ and (opt-in) filters/, each
hive-partitioned as <table>/bucket=<bucket id>/part-<chunk id>.parquet, and the project's own
folders report/ and quarantine/. Beside it in <out>: the dataset's lock file `.<name>.lock`, and
while a `--fresh` deletion runs, the old folder renamed to `.<name>.deleting-<pid>`. Names never
start with "." (config's name rule), so these hidden names cannot meet another dataset's.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

TABLES = ("runs", "steps", "filters")
SPEC_FILE = "spec.toml"
QUARANTINE = "quarantine"
REPORT = "report"
# Files and folders of a dataset's top level that w2sjax writes (the figures: `w2sjax sweep`).
FIGURES = {"gain": "phase_final_gain.png", "hard": "phase_final_hard.png"}
# What `w2sjax boundary` writes beside its probes' tables.
BOUNDARY_FILES = ("boundary.csv", "slopes.csv", "boundary.png")
OWN_TOP_LEVEL = (*TABLES, SPEC_FILE, QUARANTINE, REPORT, *FIGURES.values(), *BOUNDARY_FILES)


class DatasetRefused(ValueError):
    """The dataset folder cannot be used as asked (held by another writer, a different spec, an
    unsafe --fresh, damage); str() is one line for the user."""


def part_path(root: Path, table: str, bucket: str, chunk: str) -> Path:
    """<root>/<table>/bucket=<bucket>/part-<chunk>.parquet"""
    return root / table / f"bucket={bucket}" / f"part-{chunk}.parquet"


def parts(root: Path, table: str) -> list[Path]:
    """The table's part files, sorted."""
    return sorted((root / table).glob("bucket=*/part-*.parquet"))


def chunk_of(part: Path) -> str:
    """The chunk id in a part's file name."""
    return part.stem.removeprefix("part-")


def is_temporary(path: Path) -> bool:
    """A file being written (or left by a killed writer) under durable.replace_atomically's name."""
    return path.name.startswith(".") and ".tmp-" in path.name


def lock_path(root: Path) -> Path:
    """The dataset's lock file, beside its folder so --fresh never deletes it."""
    return root.parent / f".{root.name}.lock"


def deleting_path(root: Path, pid: int) -> Path:
    """Where --fresh renames the old folder before deleting it."""
    return root.parent / f".{root.name}.deleting-{pid}"


def deleting_leftovers(root: Path) -> list[Path]:
    """Old folders a killed --fresh renamed aside but did not finish deleting: exactly
    `.<name>.deleting-<pid>` folders (not, say, the lock file of a dataset named
    "<name>.deleting-x")."""
    pattern = re.compile(rf"\.{re.escape(root.name)}\.deleting-[0-9]+")
    return sorted(
        p
        for p in root.parent.glob(f".{root.name}.deleting-*")
        if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink()
    )


def existing_spec(root: Path) -> str | None:
    """The text of root's spec.toml, or None. Bytes that are not UTF-8 (damage) are replaced, so
    a damaged file reads as a text no sweep has."""
    path = root / SPEC_FILE
    return path.read_bytes().decode(errors="replace") if path.is_file() else None


def is_dataset(root: Path) -> bool:
    """True when root holds a spec.toml that w2sjax wrote for a sweep of this folder's name, or,
    when that file is damaged, a table part that w2sjax wrote (each carries its spec)."""
    try:
        spec = tomllib.loads(existing_spec(root) or "")
        if spec.get("name") == root.name and isinstance(spec.get("strong"), dict):
            return True
    except (OSError, tomllib.TOMLDecodeError):
        pass
    for part in (p for t in TABLES for p in parts(root, t)):
        try:
            if b"w2sjax.spec" in (pq.read_schema(part).metadata or {}):
                return True
        except (pa.ArrowException, OSError):
            continue
    return False
