"""The coefficients of an update that leaves span{signals, training noise} (Adam's: docs/MODEL.md
section 4): rho as the least-squares projection of W - W0 onto the training noise, and the
relative norm of what it leaves."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.engine.models import mm

# The smallest eigenvalue, relative to the diagonal, of the training noise's Gram matrix at which
# a projection onto the training noise still resolves rho in float32; below it rho is NaN.
GRAM_FLOOR = 1e-3


class Projection(NamedTuple):
    """What projecting W - W0 onto span{signals, training noise} needs, computed once: the
    training noise xi (n_st, D), K_inv (n_st, n_st) the inverse of K_ik = <xi_i, xi_k> /
    ||xi_i||^2, off_signals (D,) 1 off the signal axes, unit (n_st, D) xi_i / ||xi_i||^2, and
    whether the training noise is independent enough to resolve rho (GRAM_FLOOR)."""

    xi: chex.Array
    K_inv: chex.Array
    off_signals: chex.Array
    unit: chex.Array
    resolved: chex.Array


def projection(
    W0: chex.Array, signals: chex.Array, xi: chex.Array, xi_sq: chex.Array
) -> Projection:
    """Projection's parts for W0 (2, m, D), signals (S, D) and training noise xi (n_st, D)
    (cost 2 n_st^2 D + n_st^3, once)."""
    gram = mm("id,kd->ik", xi, xi)
    norm = jnp.sqrt(xi_sq)
    smallest, K_inv = gram_solve(gram / (norm[:, None] * norm[None, :]), gram / xi_sq[:, None])
    return Projection(
        xi=xi,
        K_inv=K_inv,
        off_signals=(jnp.abs(signals).sum(0) == 0).astype(W0.dtype),
        unit=xi / xi_sq[:, None],
        resolved=smallest > GRAM_FLOOR,
    )


def _host_gram_solve(correlation: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    smallest = np.linalg.eigvalsh(correlation)[..., 0].astype(correlation.dtype)
    K_inv = np.full(K.shape, np.nan, K.dtype)
    for run in np.ndindex(K.shape[:-2]):
        try:
            K_inv[run] = np.linalg.inv(K[run])
        except np.linalg.LinAlgError:
            pass  # exactly singular: NaN, and `resolved` is False for it anyway
    return smallest, K_inv


def _device_gram_solve(correlation: chex.Array, K: chex.Array) -> tuple[chex.Array, chex.Array]:
    return jnp.linalg.eigvalsh(correlation)[0], jnp.linalg.inv(K)


def _cpu_gram_solve(correlation: chex.Array, K: chex.Array) -> tuple[chex.Array, chex.Array]:
    n = K.shape[-1]
    shapes = (
        jax.ShapeDtypeStruct((), correlation.dtype),
        jax.ShapeDtypeStruct((n, n), K.dtype),
    )
    return jax.pure_callback(_host_gram_solve, shapes, correlation, K, vmap_method="expand_dims")


def gram_solve(correlation: chex.Array, K: chex.Array) -> tuple[chex.Array, chex.Array]:
    """(the smallest eigenvalue of `correlation` (n, n), K^-1 (n, n)), once per run. On the CPU
    by numpy on the host: there jaxlib 0.10's batched LAPACK kernels (sgetrf, ssyevd under vmap)
    wedged XLA's thread pool in about one chunk in three of Adam runs with the ceiling, and
    numpy's stacked linalg loops over a batch without that pool. Elsewhere by jnp.linalg on the
    device (no copy of every run's Gram matrix to the host)."""
    return jax.lax.platform_dependent(
        correlation, K, cpu=_cpu_gram_solve, default=_device_gram_solve
    )


def projected_coefs(
    W: chex.Array, W0: chex.Array, proj: Projection
) -> tuple[chex.Array, chex.Array]:
    """(rho (2, m, n_st), residual) for an update that leaves the span: rho solves
    <W - W0, xi_k> = sum_i rho_i K_ik (that product at full float32 precision whatever the loop's:
    early in training W - W0 is small, and <W, xi> - <W0, xi> at a lower one would cancel), the
    least-squares coefficients of W - W0's part off the signal axes on the xi_i / ||xi_i||^2;
    residual is the relative norm of what they leave,
    ||W - W0 - P_S(W - W0) - sum_i rho_i xi_i / ||xi_i||^2|| / ||W - W0||. Both NaN where the
    training noise is not `resolved`."""
    delta = W - W0
    rho = mm("jrk,ki->jri", mm("jrd,kd->jrk", delta, proj.xi), proj.K_inv)
    left = delta * proj.off_signals - mm("jri,id->jrd", rho, proj.unit)
    residual = jnp.sqrt((left * left).sum() / (delta * delta).sum())
    return (
        jnp.where(proj.resolved, rho, jnp.nan),
        jnp.where(proj.resolved, residual, jnp.nan),
    )
