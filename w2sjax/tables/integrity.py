"""A dataset's integrity: which committed chunks are whole and which files are damaged, stray or
left uncommitted (jax-free). It only reads, so `w2sjax check` can run it beside a live writer and a
sweep, a repair or a reader can each decide what to do about what it finds (damage.py).

The check is cheap: each part's parquet footer, and of each runs part the five columns that say how
many rows its steps (runs x logged steps) and filters (x 2 x m) parts must hold. A chunk is whole
when its runs part reads and holds runs, its steps part (and its filters part, where the dataset
has a filters table) has exactly those rows, every part was made by the dataset's spec, and none
of its runs is in another chunk. Data pages are not read (except by `inspect(..., deep=True)`,
which `w2sjax check` uses), so a part with a sound footer and a damaged page passes the cheap
check and fails when it is read, naming the file: parts carry page checksums (store.write_parquet),
verified on every read.

Steps or filters parts without a runs part, and temporary files, belong to a chunk not yet
committed (in flight, or left by a killed writer, which the next sweep removes): never damage.
Other names starting with "." or "_" (.DS_Store, an NFS .nfs file) are ignored, as pyarrow ignores
them when reading.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import sweep_from
from w2sjax.config.settings import log_steps
from w2sjax.tables.layout import (
    OWN_TOP_LEVEL,
    SPEC_FILE,
    TABLES,
    chunk_of,
    existing_spec,
    is_temporary,
)

_COUNT_COLUMNS = ["run_id", "steps", "log", "log_points", "m"]


@dataclass(frozen=True)
class Fault:
    """A damaged chunk (its first fault) or a stray file, by path relative to the dataset. kind:
    "unreadable", "rows", "missing", "spec" (made by another spec), "repeat" or "stray"."""

    path: Path
    reason: str
    kind: str


@dataclass(frozen=True)
class Inspection:
    """What `inspect` found in one dataset folder (paths relative to it)."""

    root: Path
    chunks: int  # whole committed chunks
    runs: int  # runs in whole chunks
    step_rows_expected: int  # over committed chunks whose runs part reads
    step_rows_found: int
    damaged: tuple[Fault, ...]  # one per damaged chunk
    stray: tuple[Fault, ...]  # files or folders inside the tables that no chunk owns
    to_quarantine: tuple[Path, ...]  # every part of each damaged chunk, and the stray entries
    uncommitted: tuple[Path, ...]  # parts of chunks not committed, temporary files
    other: tuple[Path, ...]  # top-level entries w2sjax does not write (left alone)
    spec_runs: int | None  # runs the spec describes (None when it does not read as a sweep)
    spec_problem: str | None  # spec.toml missing or damaged
    parts_spec: str | None  # the spec text every readable runs part records, if they agree

    @property
    def clean(self) -> bool:
        return not (self.damaged or self.stray or self.spec_problem)


def reason(err: Exception) -> str:
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
        return None, f"not a readable parquet file ({reason(err)})"


def _spec_of(part: pq.ParquetFile) -> str | None:
    value = (part.metadata.metadata or {}).get(b"w2sjax.spec")
    return value.decode(errors="replace") if value is not None else None


def _ignored(path: Path) -> bool:
    return path.name.startswith((".", "_")) and not is_temporary(path)


def walk(root: Path) -> tuple[dict, list[Fault], list[Path]]:
    """Entries of the table folders: {(table, bucket, chunk): part path}, strays (files or whole
    folders, moved as they are), temporary files. Paths relative to root."""
    found: dict[tuple[str, str, str], Path] = {}
    stray: list[Fault] = []
    temporary: list[Path] = []

    def is_folder(path: Path) -> bool:
        return path.is_dir() and not path.is_symlink()

    for table in TABLES:
        folder = root / table
        if not is_folder(folder):
            if folder.exists() or folder.is_symlink():
                stray.append(Fault(Path(table), "not a folder", "stray"))
            continue
        for bucket in sorted(folder.iterdir()):
            if _ignored(bucket):
                continue
            if not (is_folder(bucket) and bucket.name.startswith("bucket=")):
                stray.append(Fault(bucket.relative_to(root), "not a bucket folder", "stray"))
                continue
            for path in sorted(bucket.iterdir()):
                rel = path.relative_to(root)
                if is_temporary(path):
                    temporary.append(rel)
                elif _ignored(path):
                    continue
                elif (
                    path.name.startswith("part-")
                    and path.name.endswith(".parquet")
                    and path.is_file()
                    and not path.is_symlink()
                ):
                    found[(table, bucket.name.removeprefix("bucket="), chunk_of(path))] = rel
                else:
                    stray.append(Fault(rel, "not a part file", "stray"))
    return found, stray, temporary


def uncommitted(found: dict, temporary: list[Path]) -> tuple[Path, ...]:
    """Temporary files, and steps or filters parts whose chunk has no runs part."""
    parts = [rel for (t, b, c), rel in found.items() if t != "runs" and ("runs", b, c) not in found]
    return tuple(sorted(temporary + parts))


def read_spec(text: str | None) -> tuple[int | None, str | None]:
    """(runs the spec text describes, None) or (None, what is wrong with it)."""
    if text is None:
        return None, f"{SPEC_FILE} is missing"
    try:
        sweep = sweep_from(tomllib.loads(text), "", read_data=False)
    except (tomllib.TOMLDecodeError, ConfigError) as err:
        return None, f"{SPEC_FILE} is damaged: it does not read as a sweep ({reason(err)})"
    return sum(p.seeds for p in sweep.points), None


def inspect(
    root: str | Path,
    spec_text: str | None = None,
    deep: bool = False,
    filters: bool | None = None,
) -> Inspection:
    """Check every committed chunk of the dataset at `root` against `spec_text` (default: its
    spec.toml; no spec comparison when that does not read as a sweep): footers and row counts (see
    the module docstring), and with `deep` every page. filters: whether every chunk must have a
    filters part (None: where the dataset has any)."""
    root = Path(root)
    spec = spec_text if spec_text is not None else existing_spec(root)
    spec_runs, spec_problem = read_spec(spec)
    found, stray, temporary = walk(root)
    if filters is None:
        filters = any(t == "filters" for t, _, _ in found)
    damaged: list[Fault] = []
    quarantine: list[Path] = [f.path for f in stray]
    seen: dict[str, Path] = {}  # run_id -> runs part of a whole chunk that holds it
    part_specs: set[str | None] = set()
    chunks = runs = expected = rows = 0
    for bucket, chunk in [(b, c) for t, b, c in found if t == "runs"]:
        check = _Chunk(root, found, bucket, chunk, None if spec_problem else spec, deep, filters)
        fault = check.run(seen)
        expected, rows = expected + check.expected, rows + check.rows
        part_specs |= check.specs
        if fault is None:
            chunks, runs = chunks + 1, runs + check.n_runs
        else:
            damaged.append(fault)
            quarantine += [found[(t, bucket, chunk)] for t in TABLES if (t, bucket, chunk) in found]
    other = sorted(
        p.relative_to(root)
        for p in (root.iterdir() if root.is_dir() else ())
        if p.name not in OWN_TOP_LEVEL and not is_temporary(p) and not _ignored(p)
    )
    agreed = part_specs.pop() if len(part_specs) == 1 else None
    return Inspection(
        root=root,
        chunks=chunks,
        runs=runs,
        step_rows_expected=expected,
        step_rows_found=rows,
        damaged=tuple(damaged),
        stray=tuple(stray),
        to_quarantine=tuple(quarantine),
        uncommitted=uncommitted(found, temporary),
        other=tuple(other),
        spec_runs=spec_runs,
        spec_problem=spec_problem,
        parts_spec=agreed,
    )


class _Chunk:
    """The check of one committed chunk: run(seen) gives its first fault or None, and leaves its
    runs, expected and found step rows and the specs its parts record."""

    def __init__(
        self,
        root: Path,
        found: dict,
        bucket: str,
        chunk: str,
        spec: str | None,
        deep: bool,
        filters: bool,
    ) -> None:
        self.root, self.found, self.key = root, found, (bucket, chunk)
        self.spec, self.deep, self.filters = spec, deep, filters
        self.n_runs = self.expected = self.rows = 0
        self.specs: set[str | None] = set()

    def _part(self, table: str) -> Path:
        return self.found.get(
            (table, *self.key), Path(table, f"bucket={self.key[0]}", f"part-{self.key[1]}.parquet")
        )

    def _check(self, table: str, want: int) -> tuple[Fault | None, int]:
        """(fault, rows) of the chunk's part in `table`, which should hold `want` rows."""
        rel = self._part(table)
        if (table, *self.key) not in self.found:
            why = {
                "steps": "missing, though its chunk's runs part is committed",
                "filters": "missing, though the dataset has a filters table (a sweep with "
                "--filters recomputes it)",
            }[table]
            return Fault(rel, why, "missing"), 0
        part, problem = _open(self.root / rel, self.deep)
        if part is None:
            return Fault(rel, problem, "unreadable"), 0
        got = part.metadata.num_rows
        if got != want:
            return Fault(rel, f"has {got} rows, its chunk needs {want}", "rows"), got
        if self.spec is not None and _spec_of(part) != self.spec:
            return Fault(rel, f"was made by another spec than {SPEC_FILE}", "spec"), got
        return None, got

    def run(self, seen: dict[str, Path]) -> Fault | None:
        rel = self._part("runs")
        part, problem = _open(self.root / rel, self.deep)
        if part is None:
            return Fault(rel, problem, "unreadable")
        try:
            cols = part.read(columns=_COUNT_COLUMNS).to_pydict()
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            return Fault(rel, f"its columns do not read ({reason(err)})", "unreadable")
        self.specs.add(_spec_of(part))
        per_run = [
            len(log_steps(*run))
            for run in zip(cols["steps"], cols["log"], cols["log_points"], strict=True)
        ]
        self.n_runs, self.expected = len(per_run), sum(per_run)
        faults: list[Fault | None] = []
        if not per_run:
            faults.append(Fault(rel, "holds no runs", "rows"))
        if self.spec is not None and _spec_of(part) != self.spec:
            faults.append(Fault(rel, f"was made by another spec than {SPEC_FILE}", "spec"))
        fault, self.rows = self._check("steps", self.expected)
        faults.append(fault)
        if self.filters:
            want = sum(k * 2 * m for k, m in zip(per_run, cols["m"], strict=True))
            faults.append(self._check("filters", want)[0])
        repeated = next((r for r in cols["run_id"] if r in seen), None)
        if repeated is not None:
            faults.append(Fault(rel, f"repeats run {repeated} of {seen[repeated]}", "repeat"))
        first = next((f for f in faults if f is not None), None)
        if first is None:
            seen.update(dict.fromkeys(cols["run_id"], rel))
        return first
