"""Tables of a chunk of runs (pandas) and the sweep's parquet dataset on disk.

Layout under <out>/<name>/: spec.toml, and the tables runs/ (one row per run), steps/ (one row per
run and logged step) and, opt-in, filters/ (one row per run, logged step, class j and filter r),
each hive-partitioned as <table>/bucket=<bucket id>/part-<chunk id>.parquet.

A chunk is committed when its runs part exists: its steps and filters parts are written first, each
under a temporary name renamed into place, so a crash leaves at most uncommitted parts, which
`remove_uncommitted` deletes and readers ignore.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from w2sjax import __version__
from w2sjax.batch import Shape, run_id
from w2sjax.config import FIELDS, Config
from w2sjax.theory import abundance, benign_snr
from w2sjax.train import RUN_METRICS, STEP_METRICS

FILTER_COLUMNS = ("gmu_plus1", "gmu_minus1", "gnu_plus1", "gnu_minus1")


def runs_table(
    runs: Sequence[tuple[Config, int]], per_run: dict, per_step: dict, shape: Shape
) -> pd.DataFrame:
    """One row per run: run_id, every config field, seed, the per-run metrics, benign_snr,
    abundance, diverged (bool) with diverged_step (the first non-finite step, else null), and
    final / best (over logged steps) test accuracy with the best step."""
    df = pd.DataFrame([{**c.to_dict(), "seed": s} for c, s in runs], columns=[*FIELDS, "seed"])
    df.insert(0, "run_id", [run_id(c, s) for c, s in runs])
    for name in RUN_METRICS:
        df[name] = np.asarray(per_run[name])
    args = (df.n_st, df.p_b, df.nu_norm, df.sigma_p, df.d)
    df["benign_snr"], df["abundance"] = benign_snr(*args), abundance(*args)
    diverged_step = np.asarray(per_run["diverged_step"])
    df["diverged"] = diverged_step >= 0
    df["diverged_step"] = pd.array([int(t) if t >= 0 else None for t in diverged_step], "Int64")
    test_acc = np.asarray(per_step["test_acc"])
    best = np.argmax(np.nan_to_num(test_acc, nan=-1.0), axis=1)  # NaN rows: after a divergence
    df["final_test_acc"] = test_acc[:, -1]
    df["best_test_acc"] = test_acc[np.arange(len(df)), best]
    df["best_step"] = np.asarray(shape.log_steps())[best]
    return df


def steps_table(runs: Sequence[tuple[Config, int]], per_step: dict, shape: Shape) -> pd.DataFrame:
    """One row per run and logged step: run_id, step, and every STEP_METRICS column."""
    steps = np.asarray(shape.log_steps())
    ids = [run_id(c, s) for c, s in runs]
    cols = {"run_id": np.repeat(ids, len(steps)), "step": np.tile(steps, len(ids))}
    cols.update({name: np.asarray(per_step[name]).ravel() for name in STEP_METRICS})
    return pd.DataFrame(cols)


def filters_table(runs: Sequence[tuple[Config, int]], per_step: dict, shape: Shape) -> pd.DataFrame:
    """One row per run, logged step, class j (+1, -1) and filter r: <w_{j,r} - w_{j,r}^(0), s>
    for s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}."""
    coefs = np.asarray(per_step["filters"])  # (runs, K, 2, m, 4)
    R, K, _, m, _ = coefs.shape
    idx = np.indices((R, K, 2, m)).reshape(4, -1)
    ids = np.asarray([run_id(c, s) for c, s in runs])
    cols = {
        "run_id": ids[idx[0]],
        "step": np.asarray(shape.log_steps())[idx[1]],
        "j": np.where(idx[2] == 0, 1, -1),
        "r": idx[3],
    }
    cols.update({name: coefs[..., k].ravel() for k, name in enumerate(FILTER_COLUMNS)})
    return pd.DataFrame(cols)


def chunk_tables(
    shape: Shape, runs: Sequence[tuple[Config, int]], per_run: dict, per_step: dict
) -> dict[str, pd.DataFrame]:
    """The tables of one chunk of runs: runs and steps, and filters when shape.filters."""
    tables = {
        "runs": runs_table(runs, per_run, per_step, shape),
        "steps": steps_table(runs, per_step, shape),
    }
    if shape.filters:
        tables["filters"] = filters_table(runs, per_step, shape)
    return tables


def git_commit() -> str:
    """The package's git commit (with "+dirty" for local changes), or "" outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("+dirty" if dirty else "")


def table_metadata(spec_text: str, spec_hash: str) -> dict[str, str]:
    """Provenance stored in every parquet file's schema metadata."""
    return {
        "w2sjax.spec": spec_text,
        "w2sjax.spec_hash": spec_hash,
        "w2sjax.version": __version__,
        "w2sjax.jax_version": jax.__version__,
        "w2sjax.git_commit": git_commit(),
        "w2sjax.device_kind": jax.devices()[0].device_kind,
        "w2sjax.python": platform.python_version(),
    }


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary name beside path, then rename it into place: a reader (or a
    resumed sweep) never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_parquet(df: pd.DataFrame, path: Path, metadata: dict[str, str]) -> None:
    """df as one parquet file at path, `metadata` added to its schema, written atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    replace_atomically(path, lambda tmp: pq.write_table(table, tmp))


def write_text(path: Path, text: str) -> None:
    """text at path, written atomically."""
    replace_atomically(path, lambda tmp: tmp.write_text(text))


TABLES = ("runs", "steps", "filters")
SPEC_FILE = "spec.toml"


def part_path(root: Path, table: str, bucket: str, chunk: str) -> Path:
    """<root>/<table>/bucket=<bucket>/part-<chunk>.parquet"""
    return root / table / f"bucket={bucket}" / f"part-{chunk}.parquet"


def _parts(root: Path, table: str) -> list[Path]:
    return sorted((root / table).glob("bucket=*/part-*.parquet"))


def committed_chunks(root: Path) -> set[str]:
    """Chunk ids whose runs part exists."""
    return {p.stem.removeprefix("part-") for p in _parts(root, "runs")}


def done_run_ids(root: Path) -> set[str]:
    """run_ids of every committed chunk."""
    ids: set[str] = set()
    for path in _parts(root, "runs"):
        ids.update(pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist())
    return ids


def remove_uncommitted(root: Path) -> None:
    """Delete steps/filters parts of chunks with no runs part, and temporary files a killed
    process left behind. Single writer only."""
    committed = committed_chunks(root)
    stale = [
        p
        for t in TABLES[1:]
        for p in _parts(root, t)
        if p.stem.removeprefix("part-") not in committed
    ]
    stale += [p for t in TABLES if (root / t).exists() for p in (root / t).rglob(".*.tmp-*")]
    for path in stale:
        path.unlink(missing_ok=True)


def write_chunk(
    root: Path, bucket: str, chunk: str, tables: dict[str, pd.DataFrame], metadata: dict[str, str]
) -> None:
    """Write a chunk's tables; the runs part last, as its commit."""
    for name in sorted(tables, key=lambda t: t == "runs"):
        write_parquet(tables[name], part_path(root, name, bucket, chunk), metadata)


class SpecMismatch(ValueError):
    """An existing dataset was made by a different spec."""


def existing_spec(root: Path) -> str | None:
    path = root / SPEC_FILE
    return path.read_text() if path.exists() else None


def check_spec(root: Path, spec_text: str) -> None:
    """Refuse to mix two different specs in one dataset folder."""
    old = existing_spec(root)
    if old is not None and old != spec_text:
        raise SpecMismatch(
            f"{root}: holds results of a different spec (see {root / SPEC_FILE}); "
            f"rerun with --fresh to replace them, or choose another name or --out"
        )
