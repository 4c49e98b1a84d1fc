"""A dataset's integrity: which committed chunks are whole, which files are damaged or stray, and
moving those into <dataset>/quarantine/ so a resumed sweep recomputes exactly their runs (jax-free).

The check is cheap: each part's parquet footer, and of each runs part the five columns that say how
many rows its steps (runs x logged steps) and filters (x 2 x m) parts must hold. A chunk is whole
when its runs part reads, its steps part (and filters part, if any) has exactly those rows, every
part was made by the dataset's spec, and none of its runs is in another chunk. Data pages are not
read (except by `inspect(..., deep=True)`, which `w2sjax check` uses), so a part with a sound
footer and a damaged page passes the cheap check and fails when it is read, naming the file: parts
carry page checksums (store.write_parquet), verified on every read.
Steps or filters parts without a runs part, and temporary files, belong to a chunk not yet
committed (in flight, or left by a killed writer, which the next sweep removes): never damage.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from w2sjax.config import ConfigError, log_steps
from w2sjax.grid import sweep_from
from w2sjax.layout import (
    OWN_TOP_LEVEL,
    QUARANTINE,
    SPEC_FILE,
    TABLES,
    DatasetRefused,
    chunk_of,
    existing_spec,
    is_temporary,
)

_COUNT_COLUMNS = ["run_id", "steps", "log", "log_points", "m"]


class DamagedDataset(DatasetRefused):
    """A dataset with damaged or stray files; str() names the first and the repair command."""


@dataclass(frozen=True)
class Fault:
    """A damaged chunk (its first fault) or a stray file, by path relative to the dataset."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Inspection:
    """What `inspect` found in one dataset folder (paths relative to it)."""

    root: Path
    chunks: int  # whole committed chunks
    runs: int  # runs in whole chunks
    step_rows_expected: int  # over committed chunks whose runs part reads
    step_rows_found: int
    damaged: tuple[Fault, ...]  # one per damaged chunk
    stray: tuple[Fault, ...]  # files inside the tables that no chunk owns
    to_quarantine: tuple[Path, ...]  # every part of each damaged chunk, and the stray files
    uncommitted: tuple[Path, ...]  # parts of chunks not committed, temporary files
    other: tuple[Path, ...]  # top-level entries w2sjax does not write (left alone)
    spec_runs: int | None  # runs the spec.toml describes (None without a readable spec.toml)
    spec_problem: str | None  # spec.toml missing or unreadable

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.stray or self.spec_problem)


def _reason(err: Exception) -> str:
    """The error's first sentence, at most 100 characters."""
    text = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
    text = text or type(err).__name__
    return text if len(text) <= 100 else text[:97] + "..."


def _open(path: Path, deep: bool) -> tuple[pq.ParquetFile | None, str | None]:
    """The part opened (its footer read; with `deep`, every page too), or why it cannot be."""
    try:
        part = pq.ParquetFile(path, page_checksum_verification=True)
        if deep:
            part.read()
        return part, None
    except (pa.ArrowException, OSError, ValueError) as err:
        return None, f"not a readable parquet file ({_reason(err)})"


def _spec_of(part: pq.ParquetFile) -> str | None:
    meta = part.metadata.metadata or {}
    value = meta.get(b"w2sjax.spec")
    return value.decode() if value is not None else None


def _walk(root: Path) -> tuple[dict, list[Fault], list[Path]]:
    """Files under the table folders: {(table, bucket, chunk): path}, strays, temporaries."""
    found: dict[tuple[str, str, str], Path] = {}
    stray: list[Fault] = []
    temporary: list[Path] = []
    for table in TABLES:
        folder = root / table
        if not folder.is_dir():
            if folder.exists():
                stray.append(Fault(Path(table), "a file where a table folder belongs"))
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            rel = path.relative_to(root)
            parts = rel.parts
            if is_temporary(path):
                temporary.append(rel)
            elif (
                len(parts) == 3
                and parts[1].startswith("bucket=")
                and parts[2].startswith("part-")
                and parts[2].endswith(".parquet")
                and path.is_file()
            ):
                found[(table, parts[1].removeprefix("bucket="), chunk_of(path))] = rel
            else:
                stray.append(Fault(rel, "not a part file of this table"))
    return found, stray, temporary


def _uncommitted(found: dict, temporary: list[Path]) -> tuple[Path, ...]:
    """Temporary files, and steps or filters parts whose chunk has no runs part."""
    parts = [rel for (t, b, c), rel in found.items() if t != "runs" and ("runs", b, c) not in found]
    return tuple(sorted(temporary + parts))


def _count_spec_runs(spec: str) -> int:
    """Runs of the sweep a spec.toml text describes; ConfigError when it describes none."""
    try:
        raw = tomllib.loads(spec)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML ({err})") from None
    return sum(p.seeds for p in sweep_from(raw, "").points)


def inspect(root: str | Path, spec_text: str | None = None, deep: bool = False) -> Inspection:
    """Check every committed chunk of the dataset at `root` against `spec_text` (default: its
    spec.toml): footers and row counts (see the module docstring), and with `deep` every page."""
    root = Path(root)
    spec = spec_text if spec_text is not None else existing_spec(root)
    found, stray, temporary = _walk(root)
    damaged: list[Fault] = []
    quarantine: list[Path] = [f.path for f in stray]
    seen: dict[str, Path] = {}  # run_id -> runs part that holds it
    chunks = runs = expected = rows = 0
    for bucket, chunk in [(b, c) for t, b, c in found if t == "runs"]:
        members = [found[(t, bucket, chunk)] for t in TABLES if (t, bucket, chunk) in found]
        fault, n_runs, n_expected, n_rows = _check_chunk(
            root, found, bucket, chunk, spec, seen, deep
        )
        expected, rows = expected + n_expected, rows + n_rows
        if fault is None:
            chunks, runs = chunks + 1, runs + n_runs
        else:
            damaged.append(fault)
            quarantine += members
    other = sorted(
        p.relative_to(root)
        for p in (root.iterdir() if root.is_dir() else ())
        if p.name not in OWN_TOP_LEVEL and not is_temporary(p)
    )
    spec_runs, spec_problem = None, None
    if spec is None:
        spec_problem = f"{SPEC_FILE} is missing"
    else:
        try:
            spec_runs = _count_spec_runs(spec)
        except ConfigError as err:
            spec_problem = f"{SPEC_FILE} does not read as a sweep ({err})"
    return Inspection(
        root=root,
        chunks=chunks,
        runs=runs,
        step_rows_expected=expected,
        step_rows_found=rows,
        damaged=tuple(damaged),
        stray=tuple(stray),
        to_quarantine=tuple(quarantine),
        uncommitted=_uncommitted(found, temporary),
        other=tuple(other),
        spec_runs=spec_runs,
        spec_problem=spec_problem,
    )


def _check_chunk(
    root: Path,
    found: dict,
    bucket: str,
    chunk: str,
    spec: str | None,
    seen: dict[str, Path],
    deep: bool,
) -> tuple[Fault | None, int, int, int]:
    """(first fault or None, runs, expected step rows, found step rows) of one committed chunk;
    a whole chunk's run_ids go into `seen` (run_id -> its runs part)."""
    runs_rel = found[("runs", bucket, chunk)]
    part, problem = _open(root / runs_rel, deep)
    if part is None:
        return Fault(runs_rel, problem), 0, 0, 0
    try:
        table = part.read(columns=_COUNT_COLUMNS)
    except (pa.ArrowException, OSError, ValueError, KeyError) as err:
        return Fault(runs_rel, f"its columns do not read ({_reason(err)})"), 0, 0, 0
    cols = table.to_pydict()
    per_run = [
        len(log_steps(*run))
        for run in zip(cols["steps"], cols["log"], cols["log_points"], strict=True)
    ]
    n_runs, n_expected = len(per_run), sum(per_run)
    fault = None
    if n_runs == 0:
        fault = Fault(runs_rel, "holds no runs")
    elif spec is not None and _spec_of(part) != spec:
        fault = Fault(runs_rel, f"was made by another spec than {SPEC_FILE}")
    n_rows = 0
    filter_rows = sum(k * 2 * m for k, m in zip(per_run, cols["m"], strict=True))
    wants = {"steps": n_expected, "filters": filter_rows}
    for table_name, want in wants.items():
        rel = found.get((table_name, bucket, chunk))
        if rel is None:
            if table_name == "steps" and fault is None:
                missing = Path("steps", *runs_rel.parts[1:])
                fault = Fault(missing, "missing, though its chunk's runs part is committed")
            continue
        other, problem = _open(root / rel, deep)
        got = other.metadata.num_rows if other is not None else 0
        if table_name == "steps":
            n_rows = got
        if fault is not None:
            continue
        if other is None:
            fault = Fault(rel, problem)
        elif got != want:
            fault = Fault(rel, f"has {got} rows, its chunk needs {want}")
        elif spec is not None and _spec_of(other) != spec:
            fault = Fault(rel, f"was made by another spec than {SPEC_FILE}")
    repeated = next((r for r in cols["run_id"] if r in seen), None)
    if fault is None and repeated is not None:
        fault = Fault(runs_rel, f"repeats run {repeated} of {seen[repeated]}")
    if fault is None:
        seen.update(dict.fromkeys(cols["run_id"], runs_rel))
    return fault, n_runs, n_expected, n_rows


def remove_uncommitted(root: Path) -> None:
    """Delete the parts of chunks that were never committed and temporary files: what a killed
    writer left. Only under the dataset's lock (a live writer's chunk in flight looks the same)."""
    found, _, temporary = _walk(root)
    for rel in _uncommitted(found, temporary):
        (root / rel).unlink(missing_ok=True)


def quarantine(root: str | Path, files: Iterable[Path]) -> Path | None:
    """Move `files` (relative to root) into root/quarantine/<UTC time>-<pid>/, keeping their
    relative paths; the folder, or None when there was nothing to move."""
    root, files = Path(root), list(files)
    if not files:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = root / QUARANTINE / f"{stamp}-{os.getpid()}"
    for rel in files:
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
    does not read in full, and the deep check that finds and repairs it."""
    for path in sorted(folder.glob("bucket=*/part-*.parquet")):
        try:
            pq.ParquetFile(path, page_checksum_verification=True).read()
        except (pa.ArrowException, OSError) as bad:
            err, folder = bad, path
            break
    return (
        f"{folder}: does not read ({_reason(err)}); run `w2sjax check {folder.parents[2]} "
        f"--repair`, then rerun the sweep to recompute those runs"
    )


def require_intact(root: str | Path) -> None:
    """Raise DamagedDataset (one line) unless every committed chunk of root is whole and no
    stray file sits in its tables."""
    ins = inspect(root)
    if ins.damaged or ins.stray:
        raise DamagedDataset(damage_line(ins))
