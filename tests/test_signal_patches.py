"""`[data] signal_patches = 1`: samples of one signal patch and the noise patch (the engine's zero
second patch) against a reference that materialises only those two patches, for both models, a
GD step in both loop forms and every activation; and the refusal of both-signal samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    ACTIVATION_PARAMS,
    REFERENCE_ACTIVATIONS,
    SMALL,
    assert_coef_form_reaches,
    gd_steps_match,
    jitted_step,
    reference_patches,
    with_optimizer,
)

from w2sjax.config.fields import ConfigError
from w2sjax.config.settings import build
from w2sjax.engine.activations import ACTIVATIONS
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.data import BOTH, EASY, HARD
from w2sjax.engine.loops.dense import signal_coefs
from w2sjax.engine.models import logistic_loss, strong_output, weak_output
from w2sjax.engine.simulate import simulate
from w2sjax.engine.train import draw_run

PARAM = ACTIVATION_PARAMS
ONE = dict(SMALL, d=48, n_st=30, m=3, sigma_0=0.3, p_e=0.5, p_h=0.5, p_b=0.0, signal_patches=1)


def _run(seed: int = 0, **fields):
    config = build({**ONE, "mu_norm": 3.0, "nu_norm": 2.5, **fields})
    p = jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, seed)]))
    return config, draw_run(Shape.of(config), p)


def _one_patch(s, signals) -> jnp.ndarray:
    """(n, 2, d): the sample's one signal patch (mu_y if easy, a nu_y if hard) and its noise."""
    both = reference_patches(s, np.asarray(signals))
    return jnp.asarray(both[:, [0, 2]], jnp.float32)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_one_patch_samples_are_the_reference_for_both_models(name):
    """f_st on one-patch samples is the reference's on the two materialised patches (softplus's
    sigma(0) != 0 included: the zero patch adds it to both classes alike), f_wk likewise, and no
    sample is both-signal."""
    _, run = _run()
    act = ACTIVATIONS[name].at(jnp.float32(PARAM.get(name, 1.0)))
    for s in (run.train, run.test):
        assert set(np.unique(np.asarray(s.c))) == {EASY, HARD}
        X = _one_patch(s, run.signals)
        pre = jnp.einsum("jrd,npd->jrnp", run.W0, X, precision="highest")
        expected = act.fn(pre).sum(-1).mean(1)
        np.testing.assert_allclose(
            strong_output(run.W0, run.signals, s, act), expected[0] - expected[1], rtol=1e-5,
            atol=1e-5,
        )  # fmt: skip
        w = run.W0[0, 0]
        np.testing.assert_allclose(
            weak_output(w, run.signals, s), jnp.einsum("npd,d->n", X, w), rtol=1e-5, atol=1e-5
        )
    assert not (np.asarray(run.train.c) == BOTH).any()


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_one_patch_gd_steps_are_the_reference_in_both_forms(name):
    """Five GD steps equal those of the reference on the two materialised patches, for every
    activation (the zero patch's sigma'(0) != 0 for leaky ReLU and softplus multiplies a zero
    patch); the coefficient form reaches the dense form's coefficients after 20."""
    _, run = _run()
    data, signals = run.train, run.signals
    param = PARAM.get(name, 1.0)
    act = ACTIVATIONS[name].at(jnp.float32(param))
    yhat, eta = data.y, jnp.float32(0.01 if name == "relu_pow" else 0.7)  # the cube diverges
    state, opt = with_optimizer(run.W0, data.y.shape[0], eta, run.key)
    X = _one_patch(data, signals)

    def reference_loss(W):
        pre = jnp.einsum("jrd,npd->jrnp", W, X, precision="highest")
        F = REFERENCE_ACTIVATIONS[name](pre, param).sum(-1).mean(1)
        return logistic_loss(yhat * (F[0] - F[1])).mean()

    step = jitted_step(signals, data, yhat, eta, opt, act)
    state = gd_steps_match(step, state, eta, reference_loss, checked=5, total=20)
    coefs = signal_coefs(state.W, run.W0 @ signals.T, signals)
    assert_coef_form_reaches(run.W0, signals, data, yhat, eta, opt, act, 20, coefs, state.rho)


def test_one_patch_runs_learn():
    """Whole runs with the fitted teacher (its weak model on one-patch samples too): finite, the
    student's loss falls, and no test sample is both-signal (test_acc_both NaN)."""
    config = build({**ONE, "steps": 40})
    steps = simulate(Shape.of(config), stack_params([(config, s) for s in range(2)]))[1]
    loss = np.asarray(steps["train_loss"])
    assert np.isfinite(loss).all() and (loss[:, -1] < loss[:, 0]).all()
    assert np.isnan(np.asarray(steps["test_acc_both"])).all()


@pytest.mark.parametrize(
    ("fields", "start"),
    [
        ({"signal_patches": 1}, "data.p_b: must be 0 with data.signal_patches = 1"),
        ({"signal_patches": 3}, "data.signal_patches: must be 1 or 2, got 3"),
    ],
)
def test_a_bad_signal_patch_setting_is_a_one_line_error(fields, start):
    with pytest.raises(ConfigError) as info:
        build(fields)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


def test_the_second_patch_switch_stays_out_of_two_patch_runs():
    """At its default the field changes no hash (old datasets resume) and its Sample field is
    absent (the two-patch code path is the one the golden runs pin)."""
    config, run = _run(signal_patches=2, p_e=0.35, p_h=0.3, p_b=0.35)
    assert "signal_patches" not in config.point_fields()
    assert run.train.second is None
    _, run = _run()
    assert np.asarray(run.train.second).sum() == 0
