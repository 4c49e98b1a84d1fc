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


# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30; 1.96 beyond.
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def mean_interval(values: pd.Series) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds with its 95% t-interval (NaNs dropped; lo = hi = mean
    for a single value)."""
    x = values.dropna().to_numpy(dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, mean, mean
    t = _T975[len(x) - 2] if len(x) - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / len(x) ** 0.5
    return mean, mean - half, mean + half


def row_table(runs: pd.DataFrame, steps: pd.DataFrame, by: str = "n_st") -> pd.DataFrame:
    """One row per value of `by` (the paper's table layout), over seeds.

    The best step of a row is the argmax of its seed-mean test accuracy curve (one step for all
    seeds, so no per-seed selection bias); train accuracy vs pseudo-labels and flip_corrected are
    read there and at the last step. Accuracies come with _lo/_hi 95% intervals over seeds.
    """
    curves = steps.merge(runs[["run_id", by]], on="run_id")
    rows = []
    for value, group in curves.groupby(by, sort=True):
        mean_curve = group.groupby("step").test_acc.mean()
        best_step = int(mean_curve.idxmax())
        last_step = int(mean_curve.index.max())
        at_best = group[group.step == best_step]
        at_last = group[group.step == last_step]
        row = {by: value, "seeds": int(at_last.run_id.nunique())}
        columns = {
            "weak_test_acc": runs.loc[runs[by] == value, "weak_test_acc"],
            "final_test_acc": at_last.test_acc,
            "best_test_acc": at_best.test_acc,
            "train_acc_pseudo_final": at_last.train_acc_pseudo,
            "train_acc_pseudo_best": at_best.train_acc_pseudo,
            "flip_corrected_best": at_best.flip_corrected,
        }
        for name, values in columns.items():
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_interval(values)
        row["best_step"] = best_step
        rows.append(row)
    return pd.DataFrame(rows)
