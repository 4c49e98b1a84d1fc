"""Theory quantities of docs/MODEL.md section 6, as functions of config values (scalars or
arrays)."""

from __future__ import annotations

from typing import Any


def benign_snr(n_st: Any, p_b: Any, nu_norm: Any, sigma_p: Any, d: Any) -> Any:
    """n_st p_b^2 ||nu||^4 / (sigma_p^4 d): Theorem 3.4's benign (>= C) vs harmful (<= C') axis."""
    return n_st * p_b**2 * nu_norm**4 / (sigma_p**4 * d)


def abundance(n_st: Any, p_b: Any, nu_norm: Any, sigma_p: Any, d: Any) -> Any:
    """n_st p_b ||nu||^2 / (sigma_p^2 d): data-scarce (<< 1) vs data-abundant (>> 1) heuristic."""
    return n_st * p_b * nu_norm**2 / (sigma_p**2 * d)
