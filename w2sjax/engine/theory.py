"""Theory quantities of docs/MODEL.md section 6, as functions of config values, and the
performance gap recovered of section 5 (scalars or arrays)."""

from __future__ import annotations

from typing import Any

import numpy as np


def benign_snr(n_st: Any, p_b: Any, nu_norm: Any, sigma_p: Any, d: Any) -> Any:
    """n_st p_b^2 ||nu||^4 / (sigma_p^4 d): Theorem 3.4's benign (>= C) vs harmful (<= C') axis."""
    return n_st * p_b**2 * nu_norm**4 / (sigma_p**4 * d)


def q_of(nu_norm: Any, sigma_p: Any, d: Any) -> Any:
    """q = ||nu||^2 / (sigma_p^2 sqrt d): benign_snr = n_st p_b^2 q^2 (docs/BOUNDARY.md)."""
    return nu_norm**2 / (sigma_p**2 * np.sqrt(d))


def abundance(n_st: Any, p_b: Any, nu_norm: Any, sigma_p: Any, d: Any) -> Any:
    """n_st p_b ||nu||^2 / (sigma_p^2 d): data-scarce (<< 1) vs data-abundant (>> 1) heuristic."""
    return n_st * p_b * nu_norm**2 / (sigma_p**2 * d)


# Below this gap between the ceiling's and the teacher's accuracy a PGR is noise over noise.
PGR_MIN_GAP = 0.01


def pgr(student: Any, weak: Any, ceiling: Any) -> Any:
    """The performance gap recovered, (student - weak) / (ceiling - weak), of test accuracies:
    0 where the student only matches its teacher, 1 where it matches the same student trained on
    true labels (the weak-to-strong literature's measure); NaN where |ceiling - weak| <
    PGR_MIN_GAP."""
    gap = ceiling - weak
    small = np.abs(gap) < PGR_MIN_GAP
    return np.where(small, np.nan, (student - weak) / np.where(small, 1.0, gap))
