"""Shared helpers: small configs and an independent reference of the SPEC.md models that
materialises every patch (the engine never does)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from w2sjax.config import Config, build
from w2sjax.data import EASY, HARD, Sample

SMALL = dict(
    d=64,
    n_wk=60,
    steps_wk=50,
    n_st=40,
    m=4,
    steps=30,
    n_test=80,
    log_points=8,
    seeds=2,
    sigma_0=0.1,
    eta=0.5,
)


def small_config(**fields) -> Config:
    """A CPU-tiny config: SMALL with `fields` on top."""
    return build({**SMALL, **fields})


def reference_patches(s: Sample, signals: np.ndarray) -> np.ndarray:
    """(n, 3, d) patches written out from SPEC section 1: easy (mu_y, mu_y, xi), hard
    (a nu_y, a nu_y, xi), both (mu_y, a nu_y, xi).
    signals rows: mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}."""
    y, c, a, xi = (np.asarray(v) for v in (s.y, s.c, s.a, s.xi))
    mu_y = np.where(y[:, None] > 0, signals[0], signals[1])
    a_nu_y = a[:, None] * np.where(y[:, None] > 0, signals[2], signals[3])
    cat = c[:, None]
    first = np.where(cat == HARD, a_nu_y, mu_y)
    second = np.where(cat == EASY, mu_y, a_nu_y)
    return np.stack([first, second, xi], axis=1)


def reference_strong_output(W, X):
    """f_st(W, X) from materialised patches X (n, 3, d), W (2, m, d); numpy or jax arrays."""
    xp = jnp if isinstance(W, jax.Array) else np
    pre = xp.einsum("jrd,npd->jrnp", W, X)
    F = xp.maximum(pre, 0).sum(-1).mean(1)
    return F[0] - F[1]


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(20261128)
