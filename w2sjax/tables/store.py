"""Tables of a chunk of runs (pandas) and writing them into the sweep's dataset on disk.

The tables (layout.py has where they live): runs (one row per run), steps (one row per run and
logged step) and, opt-in, filters (one row per run, logged step, class j and filter r).

A chunk is committed when its runs part exists: its steps and filters parts are written first, each
under a temporary name, flushed to disk, renamed into place and its folder flushed, so a crash or
a power cut leaves at most the uncommitted parts of the chunk in flight, which
`damage.remove_uncommitted` deletes and readers ignore. Every change to the folder is made by
the one process holding the dataset's lock (lock.py).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from w2sjax import __version__
from w2sjax.config.fields import FIELDS
from w2sjax.config.settings import Config
from w2sjax.engine.batch import Shape, run_id
from w2sjax.engine.images import CONSTRUCTIONS, construction
from w2sjax.engine.metrics import (
    CEILING_STEP_METRICS,
    RUN_METRICS,
    SECOND_LAYER_STEP_METRICS,
    STEP_METRICS,
)
from w2sjax.engine.theory import abundance, benign_snr, pgr
from w2sjax.tables.durable import replace_atomically
from w2sjax.tables.integrity import read_spec
from w2sjax.tables.layout import (
    SPEC_FILE,
    DatasetRefused,
    deleting_leftovers,
    deleting_path,
    existing_spec,
    is_dataset,
    part_path,
    parts,
)

FILTER_COLUMNS = ("gmu_plus1", "gmu_minus1", "gnu_plus1", "gnu_minus1")
INIT_COLUMNS = ("w0_mu_plus1", "w0_mu_minus1", "w0_nu_plus1", "w0_nu_minus1")


def first_best(acc: np.ndarray) -> np.ndarray:
    """(runs,) index of each run's first logged step of highest accuracy in acc (runs, K); NaN
    rows (after a divergence) never win."""
    return np.argmax(np.nan_to_num(acc, nan=-1.0), axis=1)


def runs_table(
    runs: Sequence[tuple[Config, int]], per_run: dict, per_step: dict, shape: Shape
) -> pd.DataFrame:
    """One row per run: run_id, every config field, seed, the per-run metrics, benign_snr,
    abundance (NaN for the natural construction of an image source), diverged (bool) with
    diverged_step (the first non-finite step, else null), the final test accuracy, the noise
    sampler, and two readings of "best": the early-stopping step (best_step: the first logged
    step of the highest validation accuracy; best_test_acc and best_val_acc there) and the test
    set's own argmax (oracle_step, oracle_test_acc), which chooses the step by the very accuracy
    it reports. With shape.ceiling (`[eval] ceiling`): the ceiling run's test accuracy at its
    last step (ceiling_test_acc) and at its own early-stopping step (ceiling_best_test_acc), and
    the performance gap recovered at the last (pgr_final) and at the early-stopping steps
    (pgr_best; theory.pgr)."""
    df = pd.DataFrame([{**c.to_dict(), "seed": s} for c, s in runs], columns=[*FIELDS, "seed"])
    df.insert(0, "run_id", [run_id(c, s) for c, s in runs])
    for name in RUN_METRICS:
        df[name] = np.asarray(per_run[name])
    args = (df.n_st, df.p_b, df.nu_norm, df.sigma_p, df.d)
    df["benign_snr"], df["abundance"] = benign_snr(*args), abundance(*args)
    if not CONSTRUCTIONS[construction(shape)].synthetic_noise:  # no hard signal or noise to weigh
        df[["benign_snr", "abundance"]] = np.nan
    diverged_step = np.asarray(per_run["diverged_step"])
    df["diverged"] = diverged_step >= 0
    df["diverged_step"] = pd.array([int(t) if t >= 0 else None for t in diverged_step], "Int64")
    test_acc, val_acc = (np.asarray(per_step[k]) for k in ("test_acc", "val_acc"))
    logged, rows = np.asarray(shape.log_steps()), np.arange(len(df))
    best, oracle = first_best(val_acc), first_best(test_acc)
    df["final_test_acc"] = test_acc[:, -1]
    df["best_test_acc"] = test_acc[rows, best]
    df["best_step"] = logged[best]
    df["noise"] = shape.noise
    df["best_val_acc"] = val_acc[rows, best]
    df["oracle_test_acc"] = test_acc[rows, oracle]
    df["oracle_step"] = logged[oracle]
    if shape.ceiling:
        ceiling_test, ceiling_val = (
            np.asarray(per_step[f"ceiling_{k}"]) for k in ("test_acc", "val_acc")
        )
        df["ceiling_test_acc"] = ceiling_test[:, -1]
        df["ceiling_best_test_acc"] = ceiling_test[rows, first_best(ceiling_val)]
        df["pgr_final"] = pgr(df.final_test_acc, df.weak_test_acc, df.ceiling_test_acc)
        df["pgr_best"] = pgr(df.best_test_acc, df.weak_test_acc, df.ceiling_best_test_acc)
    return df


def steps_table(runs: Sequence[tuple[Config, int]], per_step: dict, shape: Shape) -> pd.DataFrame:
    """One row per run and logged step: run_id, step, every STEP_METRICS column, with
    shape.ceiling the ceiling run's CEILING_STEP_METRICS as ceiling_<name>, and with a trained
    second layer SECOND_LAYER_STEP_METRICS."""
    steps = np.asarray(shape.log_steps())
    ids = [run_id(c, s) for c, s in runs]
    cols = {"run_id": np.repeat(ids, len(steps)), "step": np.tile(steps, len(ids))}
    names = [
        *STEP_METRICS,
        *(f"ceiling_{k}" for k in CEILING_STEP_METRICS if shape.ceiling),
        *(k for k in SECOND_LAYER_STEP_METRICS if k in per_step),
    ]
    cols.update({name: np.asarray(per_step[name]).ravel() for name in names})
    return pd.DataFrame(cols)


def filters_table(
    runs: Sequence[tuple[Config, int]], per_run: dict, per_step: dict, shape: Shape
) -> pd.DataFrame:
    """One row per run, logged step, class j (+1, -1) and filter r: <w_{j,r} - w_{j,r}^(0), s>
    (FILTER_COLUMNS) and the initial projection <w_{j,r}^(0), s> (INIT_COLUMNS) for
    s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}."""
    coefs = np.asarray(per_step["filters"])  # (runs, K, 2, m, 4)
    init = np.broadcast_to(np.asarray(per_run["filter_init"])[:, None], coefs.shape)
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
    cols.update({name: init[..., k].ravel() for k, name in enumerate(INIT_COLUMNS)})
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
        tables["filters"] = filters_table(runs, per_run, per_step, shape)
    return tables


def git_commit() -> str:
    """The package's git commit (with "+dirty" for local changes to the package), or ""
    outside a checkout."""
    here = Path(__file__).resolve().parents[1]  # the w2sjax package, not just this stage
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


def write_parquet(df: pd.DataFrame, path: Path, metadata: dict[str, str]) -> None:
    """df as one parquet file at path, `metadata` added to its schema, written atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    # Page checksums let a reader tell a damaged page from data (integrity.py, reading.load).
    replace_atomically(path, lambda tmp: pq.write_table(table, tmp, write_page_checksum=True))


def write_text(path: Path, text: str) -> None:
    """text at path, written atomically."""
    replace_atomically(path, lambda tmp: tmp.write_text(text))


def done_run_ids(root: Path) -> set[str]:
    """run_ids of every committed chunk."""
    ids: set[str] = set()
    for path in parts(root, "runs"):
        ids.update(pq.read_table(path, columns=["run_id"]).column("run_id").to_pylist())
    return ids


def write_chunk(
    root: Path, bucket: str, chunk: str, tables: dict[str, pd.DataFrame], metadata: dict[str, str]
) -> None:
    """Write a chunk's tables; the runs part last, as its commit."""
    for name in sorted(tables, key=lambda t: t == "runs"):
        write_parquet(tables[name], part_path(root, name, bucket, chunk), metadata)


class SpecMismatch(DatasetRefused):
    """An existing dataset was made by a different spec."""


def _data_hash(spec_text: str) -> str:
    """The data_hash a spec text records ("" for the synthetic source)."""
    return tomllib.loads(spec_text).get("data", {}).get("data_hash", "")


def check_spec(root: Path, spec_text: str) -> str | None:
    """Refuse to mix two different specs in one dataset folder; the text of its spec.toml (None:
    there is none). A spec.toml that does not read as a sweep (damage) is left to the caller,
    since the parts' own records can still tell whether they belong to `spec_text`."""
    old = existing_spec(root)
    if old is not None and old != spec_text and read_spec(old)[1] is None:
        was, now = (_data_hash(text) for text in (old, spec_text))
        if was and now and was != now:
            raise SpecMismatch(
                f"{root}: was written from data of content hash {was}, and the data now hashes "
                f"to {now} (the file changed); restore it, or rerun with --fresh to start again"
            )
        raise SpecMismatch(
            f"{root}: holds results of a different spec (see {root / SPEC_FILE}); "
            f"rerun with --fresh to replace them, or choose another name or --out"
        )
    return old


def discard(root: Path) -> None:
    """--fresh: delete the dataset folder `root`, which must be a folder strictly inside its
    parent (the --out folder) holding a w2sjax spec.toml, or be empty or missing; DatasetRefused
    otherwise. The folder is renamed aside first, so a kill during the deletion leaves the old
    files under a hidden name (removed by `discard_leftovers`), never inside the new dataset."""
    if not root.exists() and not root.is_symlink():
        return
    inside = root.resolve().parent == root.parent.resolve()
    if root.is_symlink() or not root.is_dir() or not inside:
        raise DatasetRefused(
            f"--fresh: {root} is not a folder inside {root.parent}; delete it yourself or "
            f"choose another name or --out"
        )
    if any(root.iterdir()) and not is_dataset(root):
        raise DatasetRefused(
            f"--fresh: {root} holds no w2sjax {SPEC_FILE} for a sweep named {root.name!r}, so "
            f"it is not deleted; delete it yourself or choose another name or --out"
        )
    aside = deleting_path(root, os.getpid())
    os.rename(root, aside)
    shutil.rmtree(aside)


def discard_leftovers(root: Path) -> None:
    """Finish the deletions of killed --fresh runs of this dataset (see `discard`)."""
    for old in deleting_leftovers(root):
        print(f"w2sjax: removing {old}, left by an interrupted --fresh", file=sys.stderr)
        shutil.rmtree(old)
