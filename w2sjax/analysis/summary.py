"""Statistics over seeds of a sweep's tables (reading.py): each metric read at one stated step
(the last logged one, or each run's own early-stopping step) with its 95% interval.

One place decides where a metric is read and how its interval is made, so the report, the plots,
the boundary fits and scripts agree on what a number means."""

from __future__ import annotations

import numpy as np
import pandas as pd

from w2sjax.analysis.regimes import regime

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


def mean_interval(
    values: pd.Series, bounds: tuple[float, float] | None = None
) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds with its 95% t-interval (NaNs dropped; lo = hi = mean
    for a single value), cut to `bounds`, the range the metric lives in (an accuracy's [0, 1]).
    The mean lies in that range, so cutting the interval to it loses no coverage."""
    x = values.dropna().to_numpy(dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, mean, mean
    t = _T975[len(x) - 2] if len(x) - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / len(x) ** 0.5
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


# name: (where it is read, column). "runs": the runs table; "last": each run's last logged step;
# "best": each run's early-stopping step (best_step: its first step of highest validation
# accuracy). Every metric is then a mean over the point's seeds, with an interval inside [0, 1]
# except for UNBOUNDED ones (PGR is below 0 where the student falls under its teacher).
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


UNBOUNDED = ("pgr_final", "pgr_best")


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
    metric comes with _lo/_hi, its 95% t-interval over seeds, cut to [0, 1] for every metric but
    PGR (NaN where no run of the point has
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
            bounds = None if name in UNBOUNDED else (0.0, 1.0)
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = mean_interval(values, bounds)
        steps_at = point.best_step.dropna()
        row["best_step"] = float(steps_at.median()) if len(steps_at) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    table["regime"] = [regime(r) for r in table.itertuples()]
    return table


def summary_of(
    runs: pd.DataFrame, steps: pd.DataFrame, filters: pd.DataFrame | None, by: list[str]
) -> pd.DataFrame:
    """The report's summary table (summary.csv): summary_table over `by`, with the filters'
    sign agreement where the dataset has a filters table."""
    if filters is not None:
        agreement = filter_sign_agreement(filters).rename("filter_sign_agreement")
        runs = runs.join(agreement, on="run_id")
    return summary_table(runs, steps, by)
