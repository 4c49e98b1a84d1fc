"""The synthetic source's draws (docs/MODEL.md section 1): one run's data, initialisation and
coins from its key, the noise from the sampler its Shape names (noise.py)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.data import RunData, Sample, labels_of, signal_matrix
from w2sjax.engine.noise import SAMPLERS, NoiseKeys
from w2sjax.engine.threefry import drawn_once

# The validation set's key is fold_in(run key, VAL_SALT), the hard_labels = "coin" control's
# coins fold_in(run key, COIN_SALT): draws of their own, so adding them changed no other draw of a
# run (noise.REDUCED_SALT's reasoning).
VAL_SALT = 0x56414C31
COIN_SALT = 0x434F494E


def run_key(p: Params) -> chex.PRNGKey:
    """A run's key, fold_in(fold_in(key(base_seed), point), seed): its numbers depend only on its
    own setting and seed. Made once (threefry.drawn_once): every key of the run derives from it."""

    def key(ids: chex.Array) -> chex.PRNGKey:
        return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(ids[0]), ids[1]), ids[2])

    return drawn_once(key, jnp.stack([p.base_seed, p.point, p.seed]))


def draw_synthetic(shape: Shape, p: Params, pool: None = None) -> RunData:
    """Every random draw of one run, from its key (run_key):
    split in four (weak data, strong data, test data, init), each set's labels from its key, and
    the noise from the sampler Shape.noise names (noise.py): the training sets' with W0, the
    test set's and the validation set's (true labels, for early stopping without the test set)
    as its evaluation sets, the validation set's from fold_in(run key, VAL_SALT)."""
    key = run_key(p)
    k_wk, k_st, k_test, k_init = jax.random.split(key, 4)
    counts = (shape.n_wk, shape.n_st, shape.n_test, shape.n_val)
    sets = labels_of((k_wk, k_st, k_test, jax.random.fold_in(key, VAL_SALT)), counts, p.p_e, p.p_h)
    xi_keys = [k_xi for *_, k_xi in sets]
    sampler = SAMPLERS[shape.noise]
    noise = sampler.draw(shape, p, NoiseKeys(key, *xi_keys[:2], k_init))
    evaluation = sampler.evaluation(shape, p, xi_keys[2:], counts[2:])  # test, then validation

    def second(n: int) -> chex.Array | None:
        return None if shape.signal_patches == 2 else jnp.zeros(n, jnp.float32)

    def own(n: int, count: chex.Array, padded: bool) -> chex.Array | None:
        """Which of a padded program's n samples of a set are the run's own `count`."""
        return jnp.arange(n) < count if padded else None

    xis = (noise.weak, noise.train, evaluation[: shape.n_test], evaluation[shape.n_test :])
    reals = (  # the weak set's n_wk is never padded
        None,
        own(shape.n_st, p.n_st, shape.padded),
        own(shape.n_test, p.n_test, shape.padded_eval),
        own(shape.n_val, p.n_val, shape.padded_eval),
    )
    weak, train, test, val = (
        Sample(y=y, c=c, a=a, xi=xi, second=second(len(y)), real=real)
        for (y, c, a, _), xi, real in zip(sets, xis, reals, strict=True)
    )
    signals = signal_matrix(shape.dim, shape.easy_signal, p.mu_norm, p.nu_norm)
    coin = drawn_once(
        lambda k: jax.random.bernoulli(k, 0.5, (shape.n_st,)), jax.random.fold_in(key, COIN_SALT)
    )
    coins = jnp.where(coin, 1.0, -1.0).astype(jnp.float32)
    return RunData(signals, weak, train, test, val, noise.W0, coins, key)
