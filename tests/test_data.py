"""Data distribution (docs/MODEL.md section 1) and the models' patch-free evaluation against
materialised patches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import reference_patches, reference_strong_output

from w2sjax.engine.data import BOTH, EASY, HARD, labels, labels_of, sample, signal_matrix
from w2sjax.engine.models import strong_output, weak_output

CHI2_CRIT_DF1, CHI2_CRIT_DF2 = 10.828, 13.816  # chi-square quantiles at p = 0.001


def _chi2(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("easy_signal", ["orthogonal", "antipodal"])
def test_noise_is_orthogonal_to_signals(easy_signal):
    signals = signal_matrix(50, easy_signal, jnp.float32(3.0), jnp.float32(5.0))
    s = sample(jax.random.PRNGKey(1), 500, 50, easy_signal, 0.3, 0.3, jnp.float32(2.0))
    assert np.abs(np.asarray(signals @ s.xi.T)).max() == 0.0
    norms = np.linalg.norm(np.asarray(signals), axis=1)
    np.testing.assert_allclose(norms, [3.0, 3.0, 5.0, 5.0])
    gram = np.asarray(signals @ signals.T)
    expected_mu_cross = -9.0 if easy_signal == "antipodal" else 0.0
    assert gram[0, 1] == expected_mu_cross and gram[0, 2] == gram[2, 3] == gram[1, 3] == 0.0
    # Noise fills the rest of R^d: its variance per free axis is sigma_p^2.
    free_axes = 50 - (3 if easy_signal == "antipodal" else 4)
    mean_sq_norm = float((s.xi**2).sum(1).mean())
    assert abs(mean_sq_norm / (4.0 * free_axes) - 1.0) < 0.03


def test_category_and_sign_frequencies_chi_square():
    n, p_e, p_h = 20000, 0.2, 0.3
    s = sample(jax.random.PRNGKey(7), n, 8, "orthogonal", p_e, p_h, jnp.float32(1.0))
    c = np.asarray(s.c).astype(int)
    cats = np.bincount(c, minlength=3)
    assert _chi2(cats, np.array([p_e, p_h, 1 - p_e - p_h])) < CHI2_CRIT_DF2
    for signs in (s.y, s.a):
        counts = np.array([(np.asarray(signs) > 0).sum(), (np.asarray(signs) < 0).sum()])
        assert counts.sum() == n and _chi2(counts, np.array([0.5, 0.5])) < CHI2_CRIT_DF1
    # The test itself can fail: a biased category draw is caught.
    assert _chi2(cats, np.array([0.25, 0.25, 0.5])) > CHI2_CRIT_DF2


def test_zero_probability_categories_never_drawn():
    s = sample(jax.random.PRNGKey(3), 5000, 8, "orthogonal", 0.0, 1.0, jnp.float32(1.0))
    assert set(np.unique(np.asarray(s.c))) == {HARD}
    s = sample(jax.random.PRNGKey(3), 5000, 8, "orthogonal", 0.0, 0.0, jnp.float32(1.0))
    assert set(np.unique(np.asarray(s.c))) == {BOTH}
    s = sample(jax.random.PRNGKey(3), 5000, 8, "orthogonal", 1.0, 0.0, jnp.float32(1.0))
    assert set(np.unique(np.asarray(s.c))) == {EASY}


@pytest.mark.parametrize("easy_signal", ["orthogonal", "antipodal"])
def test_models_match_materialised_patches(easy_signal, rng):
    d, m, n = 40, 5, 300
    signals = signal_matrix(d, easy_signal, jnp.float32(2.0), jnp.float32(3.0))
    s = sample(jax.random.PRNGKey(11), n, d, easy_signal, 0.3, 0.3, jnp.float32(1.0))
    X = reference_patches(s, np.asarray(signals, np.float64))
    W = rng.normal(size=(2, m, d))
    w = rng.normal(size=d)
    got_st = np.asarray(strong_output(jnp.asarray(W, jnp.float32), signals, s))
    np.testing.assert_allclose(got_st, reference_strong_output(W, X), rtol=1e-5, atol=1e-5)
    got_wk = np.asarray(weak_output(jnp.asarray(w, jnp.float32), signals, s))
    np.testing.assert_allclose(got_wk, X.sum(1) @ w, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("partitionable", [True, False])
def test_labels_of_draws_each_set_its_own_numbers(partitionable):
    """labels_of's one vmapped draw cut to each set's size gives every set the numbers of its
    own draw, bit for bit, under either threefry (the control: without partitionable threefry a
    cut of the longer draw is not the shorter draw, which is why labels_of then draws apart)."""
    with jax.threefry_partitionable(partitionable):
        keys = tuple(jax.random.split(jax.random.PRNGKey(7), 4))
        sizes, p_e, p_h = (0, 37, 300, 5), jnp.float32(0.3), jnp.float32(0.4)
        merged = jax.jit(lambda ks: labels_of(ks, sizes, p_e, p_h))(keys)
        for (k, n), got in zip(zip(keys, sizes, strict=True), merged, strict=True):
            for a, b in zip(labels(k, n, p_e, p_h), got, strict=True):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        cut = labels(keys[1], 300, p_e, p_h)[0][:37]
        assert np.array_equal(cut, labels(keys[1], 37, p_e, p_h)[0]) == partitionable
        # and where it may, it draws once: the program holds one set's draws, not four
        calls = lambda f, *a: str(jax.make_jaxpr(f)(*a)).count("name=_uniform")  # noqa: E731
        one = calls(lambda k: labels(k, 300, p_e, p_h), keys[0])
        assert calls(lambda ks: labels_of(ks, sizes, p_e, p_h), keys) == (
            one if partitionable else len(sizes) * one
        )
