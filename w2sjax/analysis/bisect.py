"""`w2sjax boundary`: where a metric's seed mean at the last step crosses a level along one axis
(usually n_st), found by bisection instead of a grid (docs/MODEL.md section 7: Theorem 3.4's
boundary n_crit and its slopes).

The search is `bisect`, a pure function of an `evaluate` callback, so it is tested on synthetic
metrics; `run_boundary` gives it a callback that runs the probes as one ordinary sweep dataset
(the file's other axes times a fixed geometric lattice of the searched axis), under the dataset's
lock for the whole search, so a rerun reuses every probe already written.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable
from typing import NamedTuple

import numpy as np

from w2sjax.analysis.crossings import censored_crossing, crossing

# Probe = (point of the other axes, lattice index); evaluate returns each probe's seed values.
Probe = tuple[Hashable, int]
Evaluate = Callable[[list[Probe]], dict[Probe, np.ndarray]]


def lattice(lo: float, hi: float, ratio: float, integer: bool) -> list[float]:
    """The fixed geometric lattice lo, lo r, lo r^2, ... up to hi (hi included), each step at most
    `ratio`; integers rounded and deduplicated for an integer field. The same bracket and ratio
    always give the same values, so probes are reused across reruns."""
    steps = max(1, math.ceil(math.log(hi / lo) / math.log(ratio) - 1e-9))
    values = [lo * (hi / lo) ** (k / steps) for k in range(steps + 1)]
    if integer:
        values = sorted({int(round(v)) for v in values})
    return values


def probed_share(size: int) -> float:
    """About the share of a lattice of `size` values that `bisect` evaluates for a point: both
    ends, then one value a round until the bracket is adjacent."""
    return min(1.0, (2 + math.ceil(math.log2(max(size - 1, 1)))) / size)


class Found(NamedTuple):
    """One point's search: the lattice indices evaluated and their seed values, and the final
    bracket (lo, hi) of adjacent indices whose means straddle the level (None where the file's
    bracket does not straddle it)."""

    values: dict[int, np.ndarray]
    bracket: tuple[int, int] | None


def bisect(points: list[Hashable], size: int, level: float, evaluate: Evaluate) -> dict:
    """For each point, bisect lattice indices 0..size-1 until the seed mean of the metric crosses
    `level` between adjacent indices (rising or falling). Every round evaluates all open probes
    in one call. Returns {point: Found}."""
    seen: dict[Hashable, dict[int, np.ndarray]] = {p: {} for p in points}

    def run(probes: list[Probe]) -> None:
        todo = [(p, k) for p, k in probes if k not in seen[p]]
        for (p, k), v in evaluate(todo).items() if todo else ():
            seen[p][k] = np.asarray(v, dtype=float)

    run([(p, k) for p in points for k in (0, size - 1)])
    brackets: dict[Hashable, tuple[int, int] | None] = {}
    for p in points:
        lo, hi = (np.nanmean(seen[p][k]) - level for k in (0, size - 1))
        brackets[p] = (0, size - 1) if lo * hi <= 0 and lo != hi else None
    while True:
        open_ = {p: b for p, b in brackets.items() if b is not None and b[1] - b[0] > 1}
        if not open_:
            break
        run([(p, (a + b) // 2) for p, (a, b) in open_.items()])
        for p, (a, b) in open_.items():
            mid = (a + b) // 2
            below = (np.nanmean(seen[p][mid]) - level) * (np.nanmean(seen[p][a]) - level) > 0
            brackets[p] = (mid, b) if below else (a, mid)
    return {p: Found(seen[p], brackets[p]) for p in points}


def _rising(found: Found, a: int, b: int) -> float:
    """+1 where the seed mean rises from probe a to probe b, -1 where it falls."""
    return 1.0 if np.nanmean(found.values[b]) >= np.nanmean(found.values[a]) else -1.0


def n_crit(found: Found, values: list[float], level: float) -> float:
    """The crossing of `level` by the seed mean along the evaluated lattice values of the final
    bracket, interpolated in log value; NaN without a bracket."""
    if found.bracket is None:
        return float("nan")
    ends = found.bracket
    sign = _rising(found, *ends)
    means = np.array([np.nanmean(found.values[k]) for k in ends])
    return crossing(np.array([values[k] for k in ends], float), sign * means, sign * level)


def _replicate(found: Found, values: list[float], level: float, rng: np.random.Generator) -> float:
    """One bootstrap replicate of n_crit: every evaluated probe's seeds resampled (its own runs,
    independent of the other probes'), then the first crossing along all evaluated values, not
    only the final bracket's two, so a replicate may land anywhere the probes reach. Beyond them
    it is censored: +inf (-inf) where its means stay below (past) the level at every probe."""
    ks = sorted(found.values)
    sign = _rising(found, ks[0], ks[-1])  # the lattice's ends: every search evaluates both
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only NaN seeds
        means = np.array(
            [np.nanmean(v[rng.integers(0, len(v), len(v))]) for v in (found.values[k] for k in ks)]
        )
    x = np.array([values[k] for k in ks], float)
    return censored_crossing(x, sign * means, sign * level)  # all-NaN probes left out


def replicates(
    found: dict, values: list[float], level: float, n_boot: int, seed: int = 0
) -> np.ndarray:
    """(n_boot, points) bootstrap replicates of n_crit (`_replicate`; NaN for a point without a
    bracket), points in the order of `found`, for intervals on n_crit and, fitted per replicate,
    on the slopes."""
    rng = np.random.default_rng(seed)
    out = np.full((n_boot, len(found)), np.nan)
    for j, f in enumerate(found.values()):
        if f.bracket is not None:
            out[:, j] = [_replicate(f, values, level, rng) for _ in range(n_boot)]
    return out


THEORY_SLOPES = {"p_b": -2.0, "nu_norm": -4.0, "sigma_p": 4.0, "d": 1.0}  # Theorem 3.4 for n_st
