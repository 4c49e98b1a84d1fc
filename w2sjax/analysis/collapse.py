"""`w2sjax collapse DIR...`: which scaling variable puts every probe of boundary datasets on one
curve (docs/BOUNDARY.md, "The collapse command").

Theorem 3.4 says the order parameter (final hard-only test accuracy) depends on n_st, p_b and
q = ||nu||^2 / (sigma_p^2 sqrt d) through benign_snr = n_st p_b^2 q^2 alone. The general law
n_st p_b^alpha q^beta is fitted here by the spread of the probes' seed means about one
increasing curve of x = log n_st + alpha log p_b + beta log q: an isotonic regression weighted
by the seed means' standard errors, the spread its root mean square residual in those errors
(about 1 when the probes lie on one curve up to seed noise, larger when the law leaves curves
apart). The exponents' intervals come from a bootstrap over seeds, every probe's seeds
resampled and the fit repeated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from w2sjax.analysis.crossings import resample
from w2sjax.config.fields import FIELDS, ConfigError
from w2sjax.engine.theory import q_of

THEOREM = (2.0, 2.0)  # Theorem 3.4: benign_snr = n_st p_b^2 q^2
# A probe whose seeds all agree (accuracy 1.0 at every seed) has no seed error; this floor keeps
# its weight finite (a test set of 2000 samples reads accuracy to about 0.005 per seed).
SE_FLOOR = 0.005
COARSE = np.round(np.arange(0.0, 4.0001, 0.1), 10)  # the exponents' first search
NEAR = np.round(np.arange(-1.0, 1.0001, 0.1), 10)  # a bootstrap replicate's, around the fit
FINE = np.round(np.arange(-0.1, 0.1001, 0.01), 10)  # around the coarse minimum
N_BOOT = 200
TIE = 0.02  # probes this close in log n_st p_b^alpha q^beta (2%) are one point of the curve


class Probes(NamedTuple):
    """The probes of one or more datasets: one per grid point (its runs are its seeds).
    log_n, log_p_b, log_q: (probes,); values: (probes, seeds) of the metric, NaN-padded where a
    probe has fewer seeds; group: (probes,) a label of the probe's curve (its p_b and q)."""

    log_n: np.ndarray
    log_p_b: np.ndarray
    log_q: np.ndarray
    values: np.ndarray
    group: np.ndarray


class Law(NamedTuple):
    """A scaling law n_st p_b^alpha q^beta and its spread (seed errors) about one curve."""

    alpha: float
    beta: float
    spread: float


class Collapse(NamedTuple):
    """The fitted law, the theorem's law at alpha = beta = 2, the fit's bootstrap replicates
    (n_boot, 2) of (alpha, beta), and each law's spread over the same replicates (n_boot, 2),
    fitted then theorem, for intervals."""

    fitted: Law
    theorem: Law
    boots: np.ndarray
    boot_spread: np.ndarray


# Fields that may vary between the probes of one collapse: the law's variables, and those the
# boundary files scale with them by formula. Any other field differing (steps, the teacher, ...)
# would put probes of different laws on one curve.
LAW_FIELDS = {"n_st", "p_b", "p_e", "nu_norm", "sigma_p", "d", "mu_norm", "eta", "sigma_0", "n_wk"}
# Bookkeeping: the same run under another sweep name, seed count or data path is the same probe.
NOT_A_PROBE = {"seed", "name", "seeds", "base_seed", "path"}


def probes_of(runs: pd.DataFrame, metric: str) -> Probes:
    """The probes of a runs table holding `metric` (e.g. final_test_acc_hard, from
    summary.with_final): runs grouped by their config (seed and bookkeeping aside), each probe's
    finite values first in its row, probes without one left out. ConfigError (one line) when the
    table lacks the metric, has no finite value, or varies a field outside LAW_FIELDS."""
    if metric not in runs:
        raise ConfigError(f"--metric: the runs have no column {metric!r}")
    keys = [f for f in FIELDS if f in runs and f not in NOT_A_PROBE]
    text = runs[keys].astype(str)
    for field in keys:
        if field not in LAW_FIELDS and text[field].nunique() > 1:
            values = ", ".join(sorted(text[field].unique()))
            raise ConfigError(
                f"collapse: the runs differ in {field} ({values}); collapse datasets that differ "
                f"only in {', '.join(sorted(LAW_FIELDS))}"
            )
    runs = runs[np.isfinite(runs[metric].to_numpy(dtype=float))]
    if runs.empty:
        raise ConfigError(f"--metric {metric}: no run has a finite value")
    cells = runs.assign(_key=text.loc[runs.index].agg("|".join, axis=1)).groupby("_key")
    first = cells.first()
    values = np.full((len(first), int(cells.size().max())), np.nan)
    for i, (_, cell) in enumerate(cells):
        values[i, : len(cell)] = cell[metric].to_numpy(dtype=float)
    q = q_of(*(first[c].to_numpy(dtype=float) for c in ("nu_norm", "sigma_p", "d")))
    p_b = first.p_b.to_numpy(dtype=float)
    group = np.array([f"p_b {p:g}, q {v:.3g}" for p, v in zip(p_b, q, strict=True)])
    return Probes(np.log(first.n_st.to_numpy(dtype=float)), np.log(p_b), np.log(q), values, group)


def means(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seed means and their standard errors (floored at SE_FLOOR) of (probes, seeds) values."""
    count = np.isfinite(values).sum(-1)
    mean = np.nanmean(values, -1)
    sd = np.sqrt(np.nansum((values - mean[:, None]) ** 2, -1) / np.maximum(count - 1, 1))
    return mean, np.maximum(sd / np.sqrt(np.maximum(count, 1)), SE_FLOOR)


def spread(x: np.ndarray, mean: np.ndarray, se: np.ndarray) -> float:
    """Root mean square of (mean - f(x)) / se over the (probes,) arrays, f the increasing function
    closest to the means in weighted least squares (weights 1 / se^2): 1 where the probes lie on
    one curve up to seed noise (a little less, the curve being fitted to them). Probes within
    TIE of each other in x share one value of f: an increasing f may jump between any two
    distinct x, so without this the spread would drop wherever a law merely orders nearly equal
    probes the way their noise suits (p_b 0.3 against 0.6 under alpha = 2 is a factor 4 in n_st,
    whole steps of the lattice 16 x 2^(k/2), so such near-ties sit at the theorem's law)."""
    order = np.argsort(x, kind="stable")
    block = np.empty(len(x), int)
    block[order] = np.concatenate([[0], np.cumsum(np.diff(x[order]) >= TIE)])
    w = se**-2
    weight = np.bincount(block, w)
    fit = isotonic_regression(np.bincount(block, w * mean) / weight, weights=weight).x
    return float(np.sqrt(np.mean(((mean - fit[block]) / se) ** 2)))


def _free(probes: Probes) -> tuple[bool, bool]:
    """Whether the probes vary p_b, and q: an exponent is fitted only along an axis that varies."""
    return tuple(np.ptp(v) > 1e-9 for v in (probes.log_p_b, probes.log_q))


def _best(
    probes: Probes, mean: np.ndarray, se: np.ndarray, alphas: np.ndarray, betas: np.ndarray
) -> Law:
    """The law of least spread over the grid alphas x betas (the first one found at a tie)."""
    best = Law(math.nan, math.nan, math.inf)
    for a in alphas:
        for b in betas:
            s = spread(probes.log_n + a * probes.log_p_b + b * probes.log_q, mean, se)
            if s < best.spread:
                best = Law(float(a), float(b), s)
    return best


def fit_law(probes: Probes, mean: np.ndarray, se: np.ndarray, near: Law | None = None) -> Law:
    """The law of least spread: (alpha, beta) on a grid of step 0.1 over [0, 4] (or, `near` a
    law, over its exponents +- 1: a bootstrap replicate's search), then of step 0.01 around its
    best; an exponent whose axis does not vary stays NaN."""
    free = _free(probes)
    centres = (0.0, 0.0) if near is None else (near.alpha, near.beta)
    grid = [
        (COARSE if near is None else c + NEAR) if f else np.zeros(1)
        for f, c in zip(free, centres, strict=True)
    ]
    law = _best(probes, mean, se, *grid)
    fine = [law.alpha + FINE if free[0] else [0.0], law.beta + FINE if free[1] else [0.0]]
    law = _best(probes, mean, se, *fine)
    return Law(*(v if f else math.nan for v, f in zip(law[:2], free, strict=True)), law.spread)


def law_spread(probes: Probes, alpha: float, beta: float) -> Law:
    """A given law's spread over the probes' seed means."""
    mean, se = means(probes.values)
    x = probes.log_n + alpha * probes.log_p_b + beta * probes.log_q
    return Law(alpha, beta, spread(x, mean, se))


def collapse(probes: Probes, n_boot: int = N_BOOT, seed: int = 0) -> Collapse:
    """The fitted law, the theorem's, and n_boot replicates of the fit with every probe's seeds
    resampled with replacement. ConfigError where neither p_b nor q varies, or under 3 probes."""
    if len(probes.log_n) < 3 or not any(_free(probes)):
        raise ConfigError(
            "the probes must vary p_b or q (nu_norm, sigma_p, d), at least 3 of them, to fit a law"
        )
    fitted = fit_law(probes, *means(probes.values))
    near = fitted._replace(**{k: 0.0 for k in ("alpha", "beta") if math.isnan(getattr(fitted, k))})
    rng = np.random.default_rng(seed)
    boots, boot_spread = np.full((n_boot, 2), np.nan), np.full((n_boot, 2), np.nan)
    theorem_x = probes.log_n + THEOREM[0] * probes.log_p_b + THEOREM[1] * probes.log_q
    for b in range(n_boot):
        mean, se = means(resample(probes.values, rng))
        law = fit_law(probes, mean, se, near)
        boots[b], boot_spread[b] = law[:2], (law.spread, spread(theorem_x, mean, se))
    return Collapse(fitted, law_spread(probes, *THEOREM), boots, boot_spread)


def collapse_table(result: Collapse) -> pd.DataFrame:
    """collapse.csv: one row per law (fitted, theorem) with alpha, beta and the fitted law's 95%
    bootstrap intervals, the spread in seed errors with its interval, and `edge`: the fraction
    of the fit's replicates whose search stopped at its window's edge (its interval is then a
    bound on that side)."""
    from w2sjax.analysis.crossings import interval

    near = np.array([result.fitted.alpha, result.fitted.beta])
    edge = float((np.abs(result.boots - near) > NEAR[-1] + 1e-9).any(1).mean())
    rows = []
    for k, (name, law) in enumerate((("fitted", result.fitted), ("theorem", result.theorem))):
        row = {"law": name, "alpha": law.alpha, "beta": law.beta, "spread": law.spread}
        for j, axis in enumerate(("alpha", "beta")):
            lo, hi = interval(result.boots[:, j]) if name == "fitted" else (math.nan, math.nan)
            row |= {f"{axis}_lo": lo, f"{axis}_hi": hi}
        lo, hi = interval(result.boot_spread[:, k])
        row |= {"spread_lo": lo, "spread_hi": hi, "edge": edge if name == "fitted" else math.nan}
        rows.append(row)
    columns = ["law", "alpha", "alpha_lo", "alpha_hi", "beta", "beta_lo", "beta_hi", "spread"]
    return pd.DataFrame(rows)[[*columns, "spread_lo", "spread_hi", "edge"]]


def run_collapse(
    dirs: list[str],
    metric: str,
    out: str | Path,
    n_boot: int = N_BOOT,
    levels: tuple[float, ...] | None = None,
    q_range: tuple[float, float] = (0.0, math.inf),
) -> tuple[pd.DataFrame, list[Path]]:
    """The collapse of every probe of the datasets `dirs` (final value of the steps column
    `metric`) whose q lies in `q_range` (ends included), and each curve's crossings of `levels`
    (levels.LEVELS by default) with their exponents: collapse.csv, collapse.png, crossings.csv
    and exponents.csv under `out`, made first. Raises ConfigError for a metric that is not a
    steps column or probes that cannot be collapsed, FileNotFoundError / DatasetRefused for a
    folder that is not a dataset, OSError for an `out` that cannot be made."""
    from w2sjax.analysis.levels import LEVELS, crossings, exponents
    from w2sjax.analysis.plots import collapse_figure
    from w2sjax.analysis.summary import with_final
    from w2sjax.engine.metrics import STEP_METRICS
    from w2sjax.tables.reading import load

    if metric not in STEP_METRICS:
        raise ConfigError(f"--metric {metric}: must be a steps column: {', '.join(STEP_METRICS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # an unusable --out fails before any compute
    runs = pd.concat([with_final(*load(d), [metric]) for d in dirs], ignore_index=True)
    runs = runs.drop_duplicates("run_id")  # a probe two datasets share counts once
    q = q_of(runs.nu_norm, runs.sigma_p, runs.d)
    runs = runs[(q >= q_range[0]) & (q <= q_range[1])]
    if runs.empty:
        raise ConfigError(f"--q-min/--q-max: no probe has q in [{q_range[0]:g}, {q_range[1]:g}]")
    probes = probes_of(runs, f"final_{metric}")
    result = collapse(probes, n_boot)
    table = collapse_table(result)
    table.to_csv(out / "collapse.csv", index=False)
    figure = collapse_figure(probes, result, metric, out / "collapse.png")
    found = crossings(probes, LEVELS if levels is None else levels, n_boot)
    found.table.to_csv(out / "crossings.csv", index=False)
    exponents(found).to_csv(out / "exponents.csv", index=False)
    return table, [out / "collapse.csv", figure, out / "crossings.csv", out / "exponents.csv"]
