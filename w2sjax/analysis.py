"""Reading a sweep's tables back: pandas DataFrames with plain dtypes, committed chunks only."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from w2sjax.damage import DamagedDataset, require_intact, unreadable_line
from w2sjax.fields import FIELDS
from w2sjax.regimes import regime

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


# name: (where it is read, column). "runs": the runs table; "last": each run's last logged step;
# "best": each run's early-stopping step (best_step: its first step of highest validation
# accuracy). Every metric is then a mean over the point's seeds.
SUMMARY_METRICS = {
    "weak_test_acc": ("runs", "weak_test_acc"),
    "pseudo_label_error": ("runs", "pseudo_label_error"),
    "final_test_acc": ("last", "test_acc"),
    "best_test_acc": ("best", "test_acc"),
    "oracle_test_acc": ("runs", "oracle_test_acc"),
    "train_acc_pseudo_final": ("last", "train_acc_pseudo"),
    "train_acc_pseudo_best": ("best", "train_acc_pseudo"),
    "train_acc_true_final": ("last", "train_acc_true"),
    "train_acc_true_best": ("best", "train_acc_true"),
    "flip_corrected_best": ("best", "flip_corrected"),
    **{
        f"{when}_test_acc_{category}": (at, f"test_acc_{category}")
        for when, at in (("final", "last"), ("best", "best"))
        for category in ("easy", "hard", "both")
    },
    # with `[eval] ceiling` only: the ceiling run and the performance gap recovered
    **{name: ("runs", name) for name in ("ceiling_test_acc", "pgr_final", "pgr_best")},
    # with --filters only (filter_sign_agreement, joined to the runs by the report)
    "filter_sign_agreement": ("runs", "filter_sign_agreement"),
}


def last_rows(steps: pd.DataFrame) -> pd.DataFrame:
    """The rows of each run's last logged step."""
    return steps[steps.step == steps.groupby("run_id").step.transform("max")]


def with_final(runs: pd.DataFrame, steps: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """runs with final_<column> for each steps column: its value at the run's last logged step
    (e.g. final_test_acc_hard, the order parameter of Theorem 3.4's phase diagram). A final_
    column runs already has (the runs table's final_test_acc) is read again from the steps."""
    last = last_rows(steps).set_index("run_id")[columns].add_prefix("final_")
    return runs.drop(columns=[c for c in last.columns if c in runs]).join(last, on="run_id")


def filter_sign_agreement(filters: pd.DataFrame) -> pd.Series:
    """Per run_id, at its last logged step: the fraction of own-class filters (j, r) whose learned
    hard-signal coefficient gnu_{j,r,j} = <w_{j,r} - w_{j,r}^(0), nu_j> has the sign of the
    filter's initial projection <w_{j,r}^(0), nu_j> (the paper's ReLU argument: a filter starting
    on the +nu_j side fires on a = +1 samples and learns +nu_j, one on the -nu_j side learns
    -nu_j, so a class covers both signs). A coefficient still exactly 0 does not agree, whatever
    the start (sigma_0 = 0: nothing agrees). NaN for a run whose part predates the projections or
    whose coefficients are not finite (diverged), and for an empty table."""
    if filters.empty or "w0_nu_plus1" not in filters:
        runs = filters.run_id.unique() if "run_id" in filters else []
        return pd.Series(float("nan"), index=pd.Index(runs, name="run_id"), dtype=float)
    last = last_rows(filters)
    own = last.j.to_numpy() > 0
    learned = np.where(own, last.gnu_plus1, last.gnu_minus1)
    start = np.where(own, last.w0_nu_plus1, last.w0_nu_minus1)
    agree = (np.sign(learned) == np.sign(start)) & (learned != 0)
    agree = np.where(np.isnan(start) | np.isnan(learned), np.nan, agree)  # old part; diverged
    agree = pd.Series(agree, index=last.run_id.to_numpy())
    return agree.groupby(level=0).mean().rename_axis("run_id")


def w2s_gain(runs: pd.DataFrame, metric: str = "final_test_acc") -> pd.Series:
    """Per run: `metric` minus the teacher's test accuracy (the W2S gain)."""
    return runs[metric] - runs.weak_test_acc


def summary_table(runs: pd.DataFrame, steps: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per grid point (the distinct values of the `by` columns), over its seeds.

    Each run is read at its last logged step and at its own early-stopping step (best_step, the
    first logged step of its highest validation accuracy: chosen without the test set), and
    best_step is the median of those steps. oracle_test_acc is the mean of each run's highest
    test accuracy (the test set choosing its own step: an upper bound, not a result). Every
    metric comes with _lo/_hi, its 95% t-interval over seeds (NaN where no run of the point has
    the metric, e.g. best_* of runs written before the validation set). With by = [] the whole
    table is one point.
    """
    keys = list(by)
    curves = steps.merge(runs[["run_id", "best_step"]], on="run_id")
    last = last_rows(curves)
    best = curves[curves.step.eq(curves.best_step).fillna(False).astype(bool)]
    groups = runs.groupby(keys, sort=True) if keys else [((), runs)]
    rows = []
    for value, point in groups:
        at = {
            "best": best[best.run_id.isin(point.run_id)],
            "last": last[last.run_id.isin(point.run_id)],
            "runs": point,
        }
        row = dict(zip(keys, value if isinstance(value, tuple) else (value,), strict=True))
        row["seeds"] = len(point)
        for name, (where, column) in SUMMARY_METRICS.items():
            values = at[where].get(column, pd.Series(dtype=float))  # absent: NaN
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_interval(values)
        steps_at = point.best_step.dropna()
        row["best_step"] = float(steps_at.median()) if len(steps_at) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["regime"] = [regime(r) for r in table.itertuples()]
    return table


def crossing(n_values: np.ndarray, gains: np.ndarray, level: float) -> float:
    """The first n where `gains` (ordered by increasing n) rises through `level`, interpolated
    linearly in log n; NaN if it never does inside the grid."""
    for i in range(len(n_values) - 1):
        g0, g1 = gains[i], gains[i + 1]
        if g0 < level <= g1:
            frac = (level - g0) / (g1 - g0)
            return float(np.exp(np.log(n_values[i]) + frac * np.log(n_values[i + 1] / n_values[i])))
    return float("nan")


def censored_crossing(n_values: np.ndarray, gains: np.ndarray, level: float) -> float:
    """`crossing` over the finite values, or where there is none inside the grid, where it lies:
    +inf when every value is below `level` (the crossing needs a larger n), -inf otherwise (the
    values start at or above it); NaN without a finite value. A bootstrap replicate that does not
    cross is a bound, not a missing value: dropping it narrows the interval to what happened to
    cross. A non-finite value (a cell or probe whose resampled seeds all diverged) says nothing;
    kept, it would read as not reaching the level."""
    ok = np.isfinite(gains)
    if not ok.any():
        return float("nan")
    n_values, gains = np.asarray(n_values, float)[ok], gains[ok]
    crit = crossing(n_values, gains, level)
    if np.isnan(crit):
        return math.inf if (gains < level).all() else -math.inf
    return crit


def interval(samples: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the samples that are not NaN (NaN, NaN without any), as
    order statistics, so censored (infinite) replicates give an infinite end rather than a
    bound that looks measured."""
    kept = samples[~np.isnan(samples)]
    if not len(kept):
        return float("nan"), float("nan")
    lo, hi = np.percentile(kept, [2.5, 97.5], method="inverted_cdf")
    return float(lo), float(hi)


def slopes(axes: dict[str, np.ndarray], n: np.ndarray) -> dict[str, float]:
    """Least-squares slopes of log n against the logs of every axis jointly (one axis: the
    log-log slope); NaN where fewer finite points than unknowns."""
    ok = np.isfinite(n) & (n > 0)
    X = np.column_stack([np.ones(ok.sum()), *(np.log(v[ok]) for v in axes.values())])
    if ok.sum() <= X.shape[1] - 1 or np.linalg.matrix_rank(X) < X.shape[1]:
        return {a: float("nan") for a in axes}
    coef = np.linalg.lstsq(X, np.log(n[ok]), rcond=None)[0]
    return {a: float(c) for a, c in zip(axes, coef[1:], strict=True)}


def boundary_fit(
    runs: pd.DataFrame,
    other: str,
    n_axis: str = "n_st",
    metric: str = "final_test_acc",
    n_boot: int = 1000,
    seed: int = 0,
    level: float | None = None,
) -> dict:
    """Phase boundary of a (n_axis x other) sweep: n_crit(other), the n where the seed-mean W2S gain
    (metric - weak_test_acc) crosses half its range over the whole diagram (or a fixed `level`,
    e.g. 0.05 for the benign regime's line), and the slope of log n_crit against log other
    (Theorem 3.4: -2 for p_b, +4 for sigma_p). 95% intervals come from a bootstrap over seeds
    (each cell's seeds resampled with replacement): a replicate that does not cross inside the
    grid is censored (`censored_crossing`), so an interval may end at inf; its slope is fitted
    with such values clipped to the grid's ends (bounds). A row without a crossing of the seed
    means has no n_crit, and its replicates stay out of the slope fits.

    Returns {"level", "slope", "slope_lo", "slope_hi", "n_crit": DataFrame(other, n_crit,
    n_crit_lo, n_crit_hi)}.
    """
    gain = runs.assign(gain=w2s_gain(runs, metric))
    n_values = np.sort(gain[n_axis].unique()).astype(float)
    others = np.sort(gain[other].unique()).astype(float)
    cells = [
        [gain.loc[(gain[other] == o) & (gain[n_axis] == n), "gain"].to_numpy() for n in n_values]
        for o in others
    ]
    seeds = max(len(c) for row in cells for c in row)
    values = np.full((len(others), len(n_values), seeds), np.nan)
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            values[i, j, : len(cell)] = cell
    counts = np.isfinite(values).sum(-1)

    def level_of(means: np.ndarray) -> float:
        return (np.nanmin(means) + np.nanmax(means)) / 2 if level is None else level

    means = np.nanmean(values, -1)
    crossed = level_of(means)
    n_crit = np.array([crossing(n_values, m, crossed) for m in means])
    slope = slopes({other: others}, n_crit)[other]
    found = np.isfinite(n_crit)
    rng = np.random.default_rng(seed)
    boot_n = np.full((n_boot, len(others)), np.nan)
    for b in range(n_boot):
        picks = (rng.random(values.shape) * counts[..., None]).astype(int)
        resampled = np.take_along_axis(values, picks, -1).mean(-1)
        at = level_of(resampled)
        boot_n[b, found] = [censored_crossing(n_values, m, at) for m in resampled[found]]
    ends = (n_values[0], n_values[-1])
    boot_slope = np.array([slopes({other: others}, np.clip(n, *ends))[other] for n in boot_n])
    n_lo, n_hi = np.array([interval(boot_n[:, i]) for i in range(len(others))]).T
    s_lo, s_hi = interval(boot_slope)
    table = pd.DataFrame({other: others, "n_crit": n_crit, "n_crit_lo": n_lo, "n_crit_hi": n_hi})
    return {
        "level": float(crossed),
        "slope": slope,
        "slope_lo": float(s_lo),
        "slope_hi": float(s_hi),
        "n_crit": table,
    }


def snr_threshold(runs: pd.DataFrame, metric: str = "final_test_acc", gain: bool = True) -> float:
    """C such that "benign_snr >= C" best matches "seed-mean value >= half its range" over the
    grid points, the value being the gain of `metric` over the teacher (or `metric` itself when
    not `gain`): fewest mismatches, C the geometric mean of the two benign_snr values it falls
    between. NaN with fewer than two distinct benign_snr values with a value, or when all those
    values are equal."""
    value = w2s_gain(runs, metric) if gain else runs[metric]
    cells = runs.assign(value=value).groupby("benign_snr").value.mean().sort_index().dropna()
    if len(cells) < 2 or cells.min() == cells.max():  # no cells, or nothing to separate
        return float("nan")
    high = (cells >= (cells.min() + cells.max()) / 2).to_numpy()
    snr = cells.index.to_numpy(dtype=float)
    # split after position k: points below are called harmful, points from k on benign
    errors = [int(high[:k].sum() + (~high[k:]).sum()) for k in range(1, len(snr))]
    k = 1 + int(np.argmin(errors))
    return float(np.sqrt(snr[k - 1] * snr[k]))


def provenance(path: str | Path) -> dict[str, str]:
    """The w2sjax.* schema metadata (spec, versions, device kind, ...) of a sweep's tables."""
    part = next((Path(path) / "runs").glob("bucket=*/part-*.parquet"), None)
    if part is None:
        raise FileNotFoundError(f"{path}/runs: no table parts (has the sweep run?)")
    meta = pq.read_schema(part).metadata or {}
    return {
        k.decode().removeprefix("w2sjax."): v.decode()
        for k, v in meta.items()
        if k.startswith(b"w2sjax.")
    }
