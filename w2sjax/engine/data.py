"""Data distribution D(p_e, p_h, p_b, sigma_p, ||mu||, ||nu||, d) of docs/MODEL.md section 1.

Signal patches are never materialised: a sample is its label y, category c, hard-signal sign a and
noise patch xi. Its two signal patches are coefficient vectors over the four signals
(mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}), so a filter's response to them needs only its four inner
products with the signals. With `[data] signal_patches = 1` the second is the zero vector, which
adds sigma(0) to both classes' outputs alike and nothing to any gradient: exactly a sample of
one signal patch and the noise patch.

An image source (docs/IMAGES.md) keeps this shape: a sample may carry its patches' coefficients
over the run's basis itself (`Sample.coefs`), the planted construction's image in place of the
hard signal, or the natural construction's image patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from w2sjax.engine import threefry

# Every module that draws imports this one: from here on jax's random hash compiles as
# straight-line code on the CPU (threefry.py: same numbers, faster compiles).
threefry.register()

EASY, HARD, BOTH = 0, 1, 2
CATEGORIES = {"easy": EASY, "hard": HARD, "both": BOTH}
# Row order of the signal matrix: mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}.
MU_POS, MU_NEG, NU_POS, NU_NEG = 0, 1, 2, 3


@chex.dataclass(frozen=True)
class Sample:
    """n samples: y (n,) in {+1,-1}; c (n,) in {EASY, HARD, BOTH}; a (n,) hard-signal sign in
    {+1,-1}; xi (n, d) noise patch; second (n,) the second signal patch's scale: None where every
    sample has two signal patches (the paper's), zeros where it has one; coefs (n, P, S) the
    coefficients of each sample's P patches over the run's S basis rows where the sample carries
    them (an image source), None where they follow from y, c and a (`patch_coefs`). Float arrays
    so they enter arithmetic directly. real (n,) bool: which samples are the run's own, where a
    padded program's sample axis (batch.Shape.padded) is longer than the run's count of them
    (None: every one)."""

    y: chex.Array
    c: chex.Array
    a: chex.Array
    xi: chex.Array
    second: chex.Array | None = None
    coefs: chex.Array | None = None
    real: chex.Array | None = None


class RunData(NamedTuple):
    """A run's draws in its working coordinates (D = Shape.dim): the signals (S, D), the rows its
    samples' signal patches are combinations of (the four signals, for the synthetic source), the
    weak, training, test and validation samples, W0 (2, m, D), n_st fair coins (n_st,) in
    {+1, -1} (read only by hard_labels = "coin"), the run's key, from which a later draw of a
    run's own takes fold_in(key, salt), the four signals mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}
    (4, D) the coefficients gmu and gnu are read against (None: `signals` themselves). Which
    samples of a set are the run's own: its Sample.real."""

    signals: chex.Array
    weak: Sample
    train: Sample
    test: Sample
    val: Sample
    W0: chex.Array
    coins: chex.Array
    key: chex.PRNGKey
    reference: chex.Array | None = None


def signal_matrix(
    d: int, easy_signal: str, mu_norm: chex.Array, nu_norm: chex.Array, hard_axes: int = 2
) -> chex.Array:
    """(2 + hard_axes, d) rows mu_{+1}, mu_{-1}, then ||nu|| times the unit axes 2, ...,
    1 + hard_axes: at hard_axes = 2 the four signals mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1} as
    scaled unit axes; more hard axes hold the planted construction's images (docs/IMAGES.md).

    "orthogonal": mu_{-1} on axis 1. "antipodal": mu_{-1} = -mu_{+1}, axis 1 unused by
    signals (so it carries noise).
    """
    mu_neg_axis, mu_neg_sign = (1, 1.0) if easy_signal == "orthogonal" else (0, -1.0)
    axes = jnp.array([0, mu_neg_axis, *range(2, 2 + hard_axes)])
    norms = jnp.concatenate(
        [jnp.stack([mu_norm, mu_neg_sign * mu_norm]), jnp.full(hard_axes, nu_norm)]
    ).astype(jnp.float32)
    return jax.nn.one_hot(axes, d, dtype=jnp.float32) * norms[:, None]


def noise_mask(d: int, easy_signal: str) -> chex.Array:
    """(d,) 1 on the orthogonal complement of the signal span, 0 on the signal axes: noise
    N(0, sigma_p^2 (I - P_S)) is a standard normal times sigma_p times this mask."""
    signal_axes = [0, 1, 2, 3] if easy_signal == "orthogonal" else [0, 2, 3]
    return jnp.ones(d, jnp.float32).at[jnp.array(signal_axes)].set(0.0)


def noise_rank(d: int, easy_signal: str) -> int:
    """d', the dimension of the noise subspace: d less the axes the signals use."""
    return d - (4 if easy_signal == "orthogonal" else 3)


def labels(
    key: chex.PRNGKey, n: int, p_e: chex.Array, p_h: chex.Array
) -> tuple[chex.Array, chex.Array, chex.Array, chex.PRNGKey]:
    """(y, c, a) of n i.i.d. samples, each (n,), and the key of their noise patches. Category from
    one uniform: easy if u < p_e, hard if u < p_e + p_h, else both (p_b = 1 - p_e - p_h)."""
    k_y, k_c, k_a, k_xi = jax.random.split(key, 4)
    sign = lambda k: jnp.where(jax.random.bernoulli(k, 0.5, (n,)), 1.0, -1.0)  # noqa: E731
    u = jax.random.uniform(k_c, (n,))
    c = (u >= p_e).astype(jnp.float32) + (u >= p_e + p_h).astype(jnp.float32)
    return sign(k_y), c, sign(k_a), k_xi


def labels_of(
    keys: Sequence[chex.PRNGKey], sizes: Sequence[int], p_e: chex.Array, p_h: chex.Array
) -> list[tuple[chex.Array, chex.Array, chex.Array, chex.PRNGKey]]:
    """`labels` of each (key, n). Under jax's partitionable threefry a 1-d draw's first n numbers
    are the n-draw's, so the sets are drawn as one draw vmapped over their keys at the largest n
    and cut to their own: the same numbers, from one compiled draw of each kind instead of one a
    set (a bucket's first program compiles faster)."""
    if not jax.config.jax_threefry_partitionable:
        return [labels(k, n, p_e, p_h) for k, n in zip(keys, sizes, strict=True)]
    # drawn once (threefry.drawn_once): each set's y, c and a read slices of the one draw
    draw = jax.vmap(lambda k: labels(k, max(sizes), p_e, p_h))
    y, c, a, k_xi = threefry.drawn_once(draw, jnp.stack(keys))
    return [(y[i, :n], c[i, :n], a[i, :n], k_xi[i]) for i, n in enumerate(sizes)]


def sample(
    key: chex.PRNGKey,
    n: int,
    d: int,
    easy_signal: str,
    p_e: chex.Array,
    p_h: chex.Array,
    sigma_p: chex.Array,
) -> Sample:
    """n i.i.d. samples with their noise patches drawn in all d coordinates (see `labels`)."""
    y, c, a, k_xi = labels(key, n, p_e, p_h)
    xi = sigma_p * jax.random.normal(k_xi, (n, d)) * noise_mask(d, easy_signal)
    return Sample(y=y, c=c, a=a, xi=xi)


def patch_coefs(s: Sample) -> chex.Array:
    """(P, n, S) coefficients of each sample's signal patches over the run's signal rows: the
    sample's own `coefs` where it carries them, else two patches over the four signals,
    easy (mu_y, mu_y), hard (a nu_y, a nu_y), both (mu_y, a nu_y), the second times s.second
    where the samples have one signal patch."""
    if s.coefs is not None:
        return jnp.moveaxis(s.coefs, 1, 0)
    return signal_coefs_of(s, jax.nn.one_hot(jnp.where(s.y > 0, 0, 1), 2))


def signal_coefs_of(s: Sample, hard: chex.Array) -> chex.Array:
    """(2, n, 2 + H) the two signal patches' coefficients over the rows of `signal_matrix` with
    H hard axes, the hard signal of sample i being ||nu|| times hard[i] (n, H), a unit vector
    (one-hot over nu_{+1}, nu_{-1} for the synthetic source; an image for the planted
    construction)."""
    mu_y = jax.nn.one_hot(jnp.where(s.y > 0, MU_POS, MU_NEG), 2)
    mu_y = jnp.pad(mu_y, ((0, 0), (0, hard.shape[1])))
    a_nu_y = jnp.pad(hard * s.a[:, None], ((0, 0), (2, 0)))
    easy, is_hard = (s.c == EASY)[:, None], (s.c == HARD)[:, None]
    first = jnp.where(is_hard, a_nu_y, mu_y)
    second = jnp.where(easy, mu_y, a_nu_y)
    if s.second is not None:
        second = second * s.second[:, None]
    return jnp.stack([first, second])
