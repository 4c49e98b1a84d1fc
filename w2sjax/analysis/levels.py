"""Where each curve of boundary probes (one p_b and q, along n_st) crosses several levels of the
order parameter, and the exponents of those crossings (docs/BOUNDARY.md, "Which law"): if an
exponent moves with the level, the boundary is not one scaling law there. `w2sjax collapse`
writes both beside the collapse (crossings.csv, exponents.csv).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from w2sjax.analysis.collapse import N_BOOT, Probes, means
from w2sjax.analysis.crossings import censored_crossing, crossing, interval, resample, slopes

LEVELS = (0.75, 0.85, 0.95)  # the order parameter's levels whose crossings are compared


def _curves(probes: Probes) -> list[np.ndarray]:
    """The probes of each curve (one p_b and q), each sorted by n_st: (curves,) index arrays."""
    keys = np.round(np.c_[probes.log_p_b, probes.log_q], 9)
    members = (np.flatnonzero((keys == k).all(1)) for k in np.unique(keys, axis=0))
    return [at[np.argsort(probes.log_n[at])] for at in members]


class Crossings(NamedTuple):
    """Where each curve's seed mean crosses each level along n_st: table (one row per curve and
    level: p_b, q, level, n_crit and its 95% interval) and the bootstrap replicates (n_boot,
    rows) behind the intervals and the exponents' (censored ones at +-inf, as in crossings.py)."""

    table: pd.DataFrame
    boots: np.ndarray


def crossings(
    probes: Probes, levels: tuple[float, ...], n_boot: int = N_BOOT, seed: int = 0
) -> Crossings:
    """n_crit of every curve at every level, interpolated in log n_st between the probes (the
    first crossing of the seed means), with every probe's seeds resampled n_boot times."""
    curves = _curves(probes)
    rng = np.random.default_rng(seed)
    rows, boots = [], np.full((n_boot, len(curves) * len(levels)), np.nan)
    resampled = [means(resample(probes.values, rng))[0] for _ in range(n_boot)]
    mean = means(probes.values)[0]
    for c, at in enumerate(curves):
        n = np.round(np.exp(probes.log_n[at]), 6)  # the n_st written, not its log's round-off
        for k, level in enumerate(levels):
            col = c * len(levels) + k
            boots[:, col] = [censored_crossing(n, m[at], level) for m in resampled]
            lo, hi = interval(boots[:, col])
            rows.append(
                {
                    "p_b": float(np.exp(probes.log_p_b[at[0]])),
                    "q": float(np.exp(probes.log_q[at[0]])),
                    "level": level,
                    "n_crit": crossing(n, mean[at], level),
                    "n_crit_lo": lo,
                    "n_crit_hi": hi,
                    "n_lo": n[0],
                    "n_hi": n[-1],
                }
            )
    return Crossings(pd.DataFrame(rows), boots)


def _fits(table: pd.DataFrame) -> list[tuple[str, np.ndarray, list[str]]]:
    """The exponent fits of one level's crossings (the curves that cross): (name, rows, axes):
    p_b and q jointly over every curve, p_b at each q with two or more p_b, and q at each p_b
    over every three successive q (the local exponent, to see whether it drifts along q), each
    named by the curves it fits."""
    fits = [("all curves", table.index.to_numpy(), ["p_b", "q"])]
    for q, rows in table.groupby("q"):
        if rows.p_b.nunique() > 1:
            fits.append((f"q = {q:.3g}", rows.index.to_numpy(), ["p_b"]))
    for p_b, rows in table.groupby("p_b"):
        qs = np.sort(rows.q.unique())
        for i in range(len(qs) - 2):
            window = rows[rows.q.between(qs[i], qs[i + 2])]
            name = f"p_b = {p_b:g}, q {qs[i]:.3g}-{qs[i + 2]:.3g}"
            fits.append((name, window.index.to_numpy(), ["q"]))
    return fits


def exponents(found: Crossings) -> pd.DataFrame:
    """exponents.csv: d log n_crit / d log axis (p_b, q) per level and fit (`_fits`) over the
    curves whose seed means cross the level, with 95% bootstrap intervals and Theorem 3.4's -2.
    `curves`: the curves fitted; `not_crossing`: the level's curves left out because their seed
    means do not cross inside their probes (a bound the fit does not see); `censored`: the
    fraction of the fitted curves' replicates that did not cross and enter their fit at the
    curve's probed end, so that an interval with many is partly a bound."""
    table = found.table
    ends = table[["n_lo", "n_hi"]].to_numpy()
    clipped = np.clip(found.boots, ends[:, 0], ends[:, 1])
    crossed = np.isfinite(table.n_crit.to_numpy(dtype=float))
    rows = []
    for level, at_level in table.groupby("level"):
        left_out = int((~crossed[at_level.index]).sum())
        if not crossed[at_level.index].any():
            continue
        for name, idx, axes in _fits(at_level[crossed[at_level.index]]):
            logs = {a: table.loc[idx, a].to_numpy(dtype=float) for a in axes}
            fit = slopes(logs, table.loc[idx, "n_crit"].to_numpy(dtype=float))
            per_boot = [slopes(logs, b[idx]) for b in clipped]
            censored = float(np.isinf(found.boots[:, idx]).mean())
            for a in axes:
                lo, hi = interval(np.array([s[a] for s in per_boot]))
                rows.append(
                    {
                        "level": level,
                        "fit": name,
                        "axis": a,
                        "slope": fit[a],
                        "lo": lo,
                        "hi": hi,
                        "theory": -2.0,
                        "curves": len(idx),
                        "not_crossing": left_out,
                        "censored": censored,
                    }  # fmt: skip
                )
    columns = ["level", "fit", "axis", "slope", "lo", "hi", "theory", "curves", "not_crossing"]
    return pd.DataFrame(rows, columns=[*columns, "censored"])
