"""Reading a sweep's tables back: pandas DataFrames with plain dtypes, committed chunks only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

PARTITIONING = ds.partitioning(pa.schema([("bucket", pa.string())]), flavor="hive")


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """One table ("runs", "steps" or "filters") of the sweep folder `path`, with `bucket` as a
    plain string column (not pandas' categorical default for partition columns)."""
    folder = Path(path) / table
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such table (has the sweep run?)")
    return ds.dataset(folder, format="parquet", partitioning=PARTITIONING).to_table().to_pandas()


def load(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, steps) of a sweep folder such as results/default, sorted by run_id (and step).

    Steps of chunks that were never committed (a crash between writing a chunk's steps and its
    runs part) are left out, so both tables describe the same runs.
    """
    runs = read_table(path, "runs").sort_values("run_id", ignore_index=True)
    steps = read_table(path, "steps")
    steps = steps[steps.run_id.isin(runs.run_id)].sort_values(["run_id", "step"], ignore_index=True)
    return runs, steps
