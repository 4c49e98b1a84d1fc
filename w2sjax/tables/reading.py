"""Reading a sweep's tables back: pandas DataFrames with plain dtypes, committed chunks only.

Every reader (the report, the plots, boundary searches, scripts) goes through here, so a damaged
part, a chunk that was never committed or a run written by an earlier version never reaches a
summary as numbers: it raises, is left out, or is read in today's columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from w2sjax.config.fields import FIELDS
from w2sjax.tables.damage import DamagedDataset, require_intact, unreadable_line
from w2sjax.tables.layout import parts

PARTITIONING = ds.partitioning(pa.schema([("bucket", pa.string())]), flavor="hive")
# Parts carry page checksums (store.write_parquet): a damaged page fails the read, never reads
# as numbers.
PARQUET = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """One table ("runs", "steps" or "filters") of the sweep folder `path`, with `bucket` as a
    plain string column (not pandas' categorical default for partition columns). A damaged
    dataset raises damage.DamagedDataset, one line naming the file and the repair command."""
    require_intact(path)
    return _read(Path(path) / table)


def _read(folder: Path) -> pd.DataFrame:
    """A table folder as pandas; a part that fails to read past its footer (a damaged data page,
    which integrity's cheap check cannot see) raises DamagedDataset naming it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such table (has the sweep run?)")
    if not parts(folder.parent, folder.name):  # e.g. a first chunk killed before its commit
        raise FileNotFoundError(f"{folder}: no table parts (has the sweep run?)")
    try:
        dataset = ds.dataset(folder, format=PARQUET, partitioning=PARTITIONING)
        schemas = [f.physical_schema for f in dataset.get_fragments()]
        if any(not schema.equals(schemas[0]) for schema in schemas):
            # Parts written before a column existed (e.g. runs' `noise`) lack it: read the union
            # of the parts' columns, not only the first part's.
            union = pa.unify_schemas([*schemas, PARTITIONING.schema])
            dataset = ds.dataset(folder, format=PARQUET, partitioning=PARTITIONING, schema=union)
        df = dataset.to_table().to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise DamagedDataset(unreadable_line(folder, err)) from None
    if folder.name == "runs":
        df = _runs_as_today(df)
    return df[[c for c in df.columns if c != "bucket"] + ["bucket"]]


# Setting fields added after datasets existed, which runs written before them lack; each run
# made before its field existed ran at its default.
ADDED_FIELDS = (
    "signal_patches",
    "source",
    "construction",
    "path",
    "classes",
    "patches",
    "data_hash",
    "hard_labels",
    "teacher",
    "flip_p",
    "activation",
    "activation_param",
    "optimizer",
    "batch_size",
    "momentum",
    "second_layer",
    "ceiling",
)


def _runs_as_today(df: pd.DataFrame) -> pd.DataFrame:
    """Runs written by earlier versions, in today's columns. Before the sampler choice they all
    used the full sampler, before the coin control their teacher's labels, before the teacher
    and activation choices the linear teacher and ReLU (flip_p and activation_param at their
    unread defaults), before the optimizer choice GD (batch_size and momentum unread), before
    the second-layer choice a fixed one, before the ceiling none. Before
    the validation set, their best_* columns were the test set's argmax, which today's tables
    call oracle_*; they have no early-stopping step (best_* NaN)."""
    df["noise"] = df["noise"].fillna("full") if "noise" in df else "full"
    for field in ADDED_FIELDS:
        default = FIELDS[field].default
        df[field] = df[field].fillna(default) if field in df else default
    for column in ("best_val_acc", "oracle_test_acc", "oracle_step"):
        if column not in df:
            df[column] = np.nan
    old = df.oracle_test_acc.isna().to_numpy()
    if old.any():
        for column in ("best_step", "oracle_step"):
            df[column] = df[column].astype("Int64")
        df.loc[old, "oracle_test_acc"] = df.loc[old, "best_test_acc"]
        df.loc[old, "oracle_step"] = df.loc[old, "best_step"]
        df.loc[old, "best_test_acc"] = np.nan
        df.loc[old, "best_step"] = pd.NA
    return df


def load(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, steps) of a sweep folder such as results/default, sorted by run_id (and step).

    Steps of chunks that were never committed (a crash between writing a chunk's steps and its
    runs part) are left out, so both tables describe the same runs. A damaged dataset (a part
    that does not read, a committed chunk missing rows, a stray file in a table) raises
    damage.DamagedDataset naming the file and `w2sjax check --repair`.
    """
    require_intact(path)
    runs = _read(Path(path) / "runs").sort_values("run_id", ignore_index=True)
    steps = _read(Path(path) / "steps")
    steps = steps[steps.run_id.isin(runs.run_id)].sort_values(["run_id", "step"], ignore_index=True)
    return runs, steps


def provenance(path: str | Path) -> dict[str, str]:
    """The w2sjax.* schema metadata (spec, versions, device kind, ...) of a sweep's tables."""
    found = parts(Path(path), "runs")
    if not found:
        raise FileNotFoundError(f"{path}/runs: no table parts (has the sweep run?)")
    meta = pq.read_schema(found[0]).metadata or {}
    return {
        k.decode().removeprefix("w2sjax."): v.decode()
        for k, v in meta.items()
        if k.startswith(b"w2sjax.")
    }
