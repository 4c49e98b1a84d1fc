"""Noise samplers: how a run draws its noise vectors, by name (`SAMPLERS`, chosen by Shape.noise).

Every quantity a run computes is an inner product among M = 2m + n_wk + n_st vectors (n_wk = 0
without a fitted teacher): the noise
parts of W0's 2m filters and the weak and strong training noise patches (gradient descent keeps
every weight in the span of W0, the training noise and the signals), plus each evaluation (test)
patch's inner products with them. They are independent isotropic Gaussians in the noise subspace
of dimension d' (data.noise_rank).

- "full" draws each of them in all d coordinates (noise masked off the signal axes).
- "reduced" draws their coordinates in an orthonormal basis of their span, k = min(M, d') of them:
  the law of the transposed R factor of a Gaussian QR (the Bartlett decomposition; see
  `bartlett`), each row then scaled by its standard deviation (sigma_0 for W0, sigma_p for noise
  patches). An evaluation patch is independent of all of them, so its coordinates in that basis
  are iid N(0, sigma_p^2) (its part outside the span never meets a weight vector). A run in these
  coordinates is equal in distribution to the d-dimensional run, and once d' >= M its cost does
  not depend on d. Exact only while the weights stay in the span (gradient descent at float32
  precision: batch.reduced_is_exact).

Working coordinates (Shape.dim = D): axes 0-3 are the signal axes (data.signal_matrix). "reduced"
puts its k coordinates on axes 4 to 3 + k (with antipodal signals axis 1 stays empty) and draws
W0's components on the signal axes separately, iid N(0, sigma_0^2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.engine.batch import SIGNAL_AXES, Params, Shape, span_size
from w2sjax.engine.data import noise_mask, noise_rank

# The reduced sampler's key is fold_in(run key, REDUCED_SALT): a draw of its own, never one of the
# run's four split keys (with partitionable threefry those hash counters 0-3, without it counter
# pairs (i, i + 4); fold_in hashes (0, salt)), so no other draw of a run changes.
REDUCED_SALT = 0x4E4F4953


class RunNoise(NamedTuple):
    """A run's noise in its working coordinates (D = Shape.dim): W0 (2, m, D) and the noise
    patches of the weak (n_wk, D) and training (n_st, D) sets."""

    W0: chex.Array
    weak: chex.Array
    train: chex.Array


class NoiseKeys(NamedTuple):
    """The keys a sampler's draw may use: the run's own key, each training set's noise key,
    W0's key."""

    run: chex.PRNGKey
    weak: chex.PRNGKey
    train: chex.PRNGKey
    init: chex.PRNGKey


@dataclass(frozen=True)
class NoiseSampler:
    """draw(shape, p, keys) -> RunNoise; evaluation(shape, p, keys, counts) -> (sum(counts), D)
    the patches of evaluation sets (independent of the weights: the test and validation sets),
    set i's counts[i] rows from keys[i], one set after another."""

    draw: Callable[[Shape, Params, NoiseKeys], RunNoise]
    evaluation: Callable[[Shape, Params, Sequence[chex.PRNGKey], Sequence[int]], chex.Array]


def written(blocks: Sequence[chex.Array], col: int) -> chex.Array:
    """(n_1 + n_2 + ..., col + k) from blocks (n_i, k): their rows one after another from
    column `col` on, zeros before it, each block written in place into one buffer. XLA's CPU
    backend fuses a pad, a slice or a concatenation of a draw into a loop it does not vectorise,
    about 6x slower than the draw alone (docs/notes/benchmarks.md, "draws written in place")."""
    out = jnp.zeros((sum(b.shape[0] for b in blocks), col + blocks[0].shape[1]), blocks[0].dtype)
    start = 0
    for b in blocks:
        out = jax.lax.dynamic_update_slice(out, b, (start, col))
        start += b.shape[0]
    return out


def _full_patches(shape: Shape, p: Params, key: chex.PRNGKey, n: int) -> chex.Array:
    mask = noise_mask(shape.d, shape.easy_signal)
    return p.sigma_p * jax.random.normal(key, (n, shape.d)) * mask


def _full(shape: Shape, p: Params, keys: NoiseKeys) -> RunNoise:
    """Every vector in all d coordinates, as every run before the reduced sampler existed."""
    return RunNoise(
        W0=p.sigma_0 * jax.random.normal(keys.init, (2, shape.m, shape.d)),
        weak=_full_patches(shape, p, keys.weak, shape.n_wk),
        train=_full_patches(shape, p, keys.train, shape.n_st),
    )


def _full_evaluation(
    shape: Shape, p: Params, keys: Sequence[chex.PRNGKey], counts: Sequence[int]
) -> chex.Array:
    """Evaluation patches (sum(counts), d), set i's counts[i] rows from keys[i]."""
    return written([_full_patches(shape, p, k, n) for k, n in zip(keys, counts, strict=True)], 0)


def normals(
    key: chex.PRNGKey, rows: int, cols: int, own_cols: chex.Array | None = None
) -> chex.Array:
    """(rows, cols) N(0, 1) draws; with `own_cols` (traced, <= cols) the (rows, own_cols) draw of
    `key` in the first own_cols columns, zeros after. Exact: under jax's partitionable threefry
    (batch.can_pad) element (i, j) of a (rows, own_cols) draw is counter i * own_cols + j of a
    flat one, so a program whose shapes are padded draws a run's numbers at its own sizes."""
    if own_cols is None:
        return jax.random.normal(key, (rows, cols))
    row, col = jnp.arange(rows)[:, None], jnp.arange(cols)[None, :]
    flat = jax.random.normal(key, (rows * cols,))
    return jnp.where(col < own_cols, flat[row * own_cols + col], 0.0)


def bartlett(
    key: chex.PRNGKey, rows: int, d_noise: int, own_rows: chex.Array | None = None
) -> chex.Array:
    """(rows, k), k = min(rows, d_noise): the coordinates of `rows` iid N(0, I_{d_noise}) vectors
    in an orthonormal basis of their span (the transposed R of their QR). Row i has N(0, 1)
    entries before column min(i, k), sqrt(chi-square(d_noise - i)) at column i when i < k, zeros
    after; rows i >= k are N(0, 1) k-vectors. own_rows: a padded run's own row count (traced):
    its first own_rows rows are then the (own_rows, min(own_rows, d_noise)) draw's, the rest
    pad."""
    k = min(rows, d_noise)
    k_normal, k_chi = jax.random.split(key)
    row, col = jnp.arange(rows)[:, None], jnp.arange(k)[None, :]
    below = jnp.where(col < row, normals(k_normal, rows, k, _own_k(own_rows, k)), 0.0)
    df = jnp.asarray(d_noise - np.arange(k), jnp.float32)  # numpy: d' may pass int32's range
    chi = jnp.sqrt(2.0 * jax.random.gamma(k_chi, df / 2.0))
    return below + jnp.where(col == row, chi[None, :], 0.0)


def _own_k(own_rows: chex.Array | None, k: int) -> chex.Array | None:
    """A padded run's own k = min(own M, d') (traced) given the program's k = min(M, d') >= it;
    None unpadded. k = min(M, d') is taken in Python beforehand: d' may pass int32's range, k
    does not."""
    return None if own_rows is None else jnp.minimum(own_rows, k)


def _embed(*blocks: chex.Array) -> chex.Array:
    """(n_i, k) noise coordinates -> (n_1 + n_2 + ..., 4 + k), the blocks' rows one after
    another, zero on the signal axes (`written`)."""
    return written(blocks, SIGNAL_AXES)


def own_rows(shape: Shape, p: Params) -> chex.Array | None:
    """The reduced sampler's joint draw's row count M of a padded run at its own n_st (traced);
    None where the Shape is not padded (its n_st is every run's)."""
    return span_size(shape.n_wk, p.n_st, shape.m) if shape.padded else None


def _reduced_evaluation(
    shape: Shape, p: Params, keys: Sequence[chex.PRNGKey], counts: Sequence[int]
) -> chex.Array:
    """Evaluation patches (sum(counts), D): iid N(0, sigma_p^2) coordinates in the k of the
    run's span, a padded run's in its own k = min(M, d') (the program's k is the padded M's),
    zeros after."""
    k = shape.dim - SIGNAL_AXES
    own_k = _own_k(own_rows(shape, p), k)
    blocks = (normals(key, n, k, own_k) for key, n in zip(keys, counts, strict=True))
    return _embed(*(p.sigma_p * b for b in blocks))


def _reduced(shape: Shape, p: Params, keys: NoiseKeys) -> RunNoise:
    """W0 and both training sets jointly in k coordinates (one Bartlett draw)."""
    m2 = 2 * shape.m
    rows = m2 + shape.n_wk + shape.n_st
    scale = jnp.concatenate(
        [jnp.full((m2,), p.sigma_0), jnp.full((shape.n_wk + shape.n_st,), p.sigma_p)]
    )
    coords = scale[:, None] * bartlett(
        jax.random.fold_in(keys.run, REDUCED_SALT),
        rows,
        noise_rank(shape.d, shape.easy_signal),
        own_rows(shape, p),
    )
    # each part embedded after its slice, not sliced from the embedded draw (`written`)
    W0_noise, weak, train = (
        _embed(coords[a:b]) for a, b in ((0, m2), (m2, m2 + shape.n_wk), (m2 + shape.n_wk, rows))
    )
    on_signal_axes = 1.0 - noise_mask(SIGNAL_AXES, shape.easy_signal)  # antipodal: axis 1 is noise
    W0_signal = p.sigma_0 * jax.random.normal(keys.init, (2, shape.m, SIGNAL_AXES)) * on_signal_axes
    W0 = W0_noise.reshape(2, shape.m, -1).at[..., :SIGNAL_AXES].set(W0_signal)
    return RunNoise(W0=W0, weak=weak, train=train)


SAMPLERS: dict[str, NoiseSampler] = {
    "full": NoiseSampler(draw=_full, evaluation=_full_evaluation),
    "reduced": NoiseSampler(draw=_reduced, evaluation=_reduced_evaluation),
}
