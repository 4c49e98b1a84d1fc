"""Where a W2S gain crosses a level along n, and how that crossing moves along another axis
(Theorem 3.4's boundary n_crit and its slopes, docs/MODEL.md section 7).

Both boundary estimates use these: the fit over a grid here (boundary_fit, for the report) and
the bisection search (bisect.py), so a bootstrap replicate that does not cross is censored the
same way and both give the same kind of interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from w2sjax.analysis.summary import w2s_gain


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


def resample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(..., seeds) values with each cell's seeds drawn with replacement from its own finite
    ones (the NaN padding of a cell with fewer seeds is never drawn): one bootstrap replicate."""
    count = np.isfinite(values).sum(-1)
    picks = (rng.random(values.shape) * count[..., None]).astype(int)
    return np.take_along_axis(values, picks, -1)


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
        resampled = resample(values, rng).mean(-1)
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
