"""`[strong] second_layer`: every entry of SECOND_LAYERS against its contract (GD steps of W and
of the second layer equal the patch-materialising reference's, the coefficients stay exact, the
coefficient form equals the dense one, the recorded metrics read the trained layer, batching
changes no run)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_coef_form_reaches, reference_patches, small_config, strong_setup

from w2sjax.config.fields import FIELDS, ConfigError
from w2sjax.config.settings import build
from w2sjax.engine.activations import RELU
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.loops.dense import dense_loop, signal_coefs
from w2sjax.engine.loops.state import LoopInputs
from w2sjax.engine.metrics import record
from w2sjax.engine.models import J_SIGN, SECOND_LAYERS, logistic_loss
from w2sjax.engine.simulate import simulate

STEPS = 8


def _reference_output(W, v, X):
    """f_st = (1/m) sum_{j,r} v_{j,r} sum_p relu(<w_{j,r}, x^(p)>) from materialised patches X
    (n, 3, d), W (2, m, d), v (2, m)."""
    pre = jnp.einsum("jrd,npd->jrnp", W, X, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("jr,jrn->n", v, jnp.maximum(pre, 0.0).sum(-1)) / W.shape[1]


def test_the_registry_and_the_config_name_the_same_second_layers():
    assert tuple(SECOND_LAYERS) == FIELDS["second_layer"].choices


@pytest.mark.parametrize("name", SECOND_LAYERS)
def test_every_second_layer_takes_the_reference_gd_step_in_both_forms(name):
    """Eight GD steps equal the reference's on (W, v) (v held at +1/-1 where it is fixed); W - W0
    is then the reconstruction from the signal coefficients and rho (the recursion with v in
    j's place stays exact); the coefficient form reaches the same gamma, rho and v; and the
    recorded train loss and test accuracy are the reference's at the final (W, v)."""
    state, signals, data, yhat, eta, opt = strong_setup(0)
    W0, m = state.W, state.W.shape[1]
    v0 = SECOND_LAYERS[name].init(m)
    twice = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), data)  # test, validation
    loop = dense_loop(LoopInputs(W0, signals, data, twice, eta, RELU, opt, v0=v0), yhat)
    step = jax.jit(loop.step)
    X = jnp.asarray(reference_patches(data, np.asarray(signals)), jnp.float32)
    fixed = jnp.repeat(jnp.asarray(J_SIGN)[:, None], m, 1)

    def loss(W, v):
        return logistic_loss(yhat * _reference_output(W, v, X)).mean()

    W, v = W0, fixed if v0 is None else v0
    state = loop.init
    for _ in range(STEPS):
        gW, gv = jax.grad(loss, argnums=(0, 1))(W, v)
        W, v = W - eta * gW, v - eta * gv if v0 is not None else v
        state = step(state)
        np.testing.assert_allclose(state.W, W, rtol=1e-5, atol=1e-6)
        if v0 is None:
            assert state.v is None
        else:
            np.testing.assert_allclose(state.v, v, rtol=1e-5, atol=1e-6)
    if v0 is not None:
        assert not np.allclose(v, fixed)  # the layer did move: the comparison is not vacuous

    delta = np.asarray(state.W - W0, np.float64)
    coefs = np.asarray(signal_coefs(state.W, W0 @ signals.T, signals), np.float64)
    to_span = np.asarray(signals, np.float64) / np.asarray(signals**2, np.float64).sum(1)[:, None]
    xi = np.asarray(data.xi, np.float64)
    basis = xi / (xi**2).sum(1, keepdims=True)
    recon = coefs @ to_span + np.einsum("jrn,nd->jrd", np.asarray(state.rho, np.float64), basis)
    assert np.linalg.norm(recon - delta) / np.linalg.norm(delta) <= 1e-4

    c = assert_coef_form_reaches(
        W0, signals, data, yhat, eta, opt, RELU, STEPS, coefs, state.rho, v0
    )
    if v0 is not None:
        np.testing.assert_allclose(c.v, state.v, rtol=1e-5, atol=1e-6)

    # the recorded metrics, with the training set as the test and validation sets (labels y)
    got = record(loop.views(state), data, yhat, data, data, filters=False)
    f = _reference_output(state.W, v, X)
    assert float(got["train_loss"]) == pytest.approx(float(loss(state.W, v)), rel=1e-5)
    assert float(got["test_acc"]) == pytest.approx(float((jnp.sign(f) == data.y).mean()))
    assert ("v_own_min" in got) == (v0 is not None)


def test_the_trained_layer_changes_predictions_the_fixed_one_would_make():
    """Control: on the same trained state, reading f_st with the fixed +1/-1 in place of the
    trained v gives another train loss (record must read the trained layer)."""
    state, signals, data, yhat, eta, opt = strong_setup(1)
    m = state.W.shape[1]
    twice = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), data)
    v0 = SECOND_LAYERS["trained"].init(m)
    loop = dense_loop(LoopInputs(state.W, signals, data, twice, eta, RELU, opt, v0=v0), yhat)
    st = loop.init
    for _ in range(STEPS):
        st = loop.step(st)
    trained = record(loop.views(st), data, yhat, data, data, filters=False)
    as_fixed = record(loop.views(st)._replace(second=None), data, yhat, data, data, filters=False)
    assert float(trained["train_loss"]) != pytest.approx(float(as_fixed["train_loss"]), rel=1e-4)


def test_a_trained_second_layer_run_records_the_same_in_any_batch():
    """Batching invariance (the forms agree: the contract test above): seed 1 records the same
    in a batch with seeds 0 and 2 as in one with seeds 5 and 6, at another position (one
    program for both); and v's summaries: j v_{j,r} starts at 1 (mean and minimum at step 0)
    and moves."""
    config = small_config(second_layer="trained", steps=40)
    shape = Shape.of(config, form="coef")
    batch, other = (
        simulate(shape, stack_params([(config, s) for s in seeds]))[1]
        for seeds in ((0, 1, 2), (5, 6, 1))
    )
    for name, value in batch.items():
        np.testing.assert_allclose(other[name][2], value[1], rtol=2e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(batch["v_own_mean"][:, 0], 1.0)
    np.testing.assert_allclose(batch["v_own_min"][:, 0], 1.0)
    assert np.all(batch["v_own_mean"][:, -1] != 1.0)


def test_a_bad_second_layer_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r'^strong\.second_layer: must be "fixed" or "trained"'):
        build({"second_layer": "learned"})
