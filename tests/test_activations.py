"""`[strong] activation`: every entry of ACTIVATIONS against its contract (its derivative is its
function's, a GD step matches the patch-materialising reference, the signal-noise decomposition
stays exact, the coefficient form equals the dense one, batching changes no run), and
Proposition 2.2: a linear student cannot learn the hard signal, a ReLU one can."""

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
    reference_strong_output,
    small_config,
    strong_setup,
    with_optimizer,
)

from w2sjax.config.fields import ACTIVATION_PARAM, FIELDS, ConfigError
from w2sjax.config.settings import build
from w2sjax.engine.activations import ACTIVATIONS
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.loops.dense import signal_coefs
from w2sjax.engine.models import logistic_loss
from w2sjax.engine.simulate import simulate
from w2sjax.engine.train import draw_run

PARAM, REFERENCE = ACTIVATION_PARAMS, REFERENCE_ACTIVATIONS


def _act(name: str):
    return ACTIVATIONS[name].at(jnp.float32(PARAM.get(name, 1.0)))


def test_the_registry_the_config_and_the_reference_name_the_same_activations():
    assert tuple(ACTIVATIONS) == FIELDS["activation"].choices == tuple(REFERENCE)
    assert set(PARAM) == set(ACTIVATION_PARAM)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_is_its_reference_and_its_derivative_is_its_functions(name):
    act, param = _act(name), PARAM.get(name, 1.0)
    x = jnp.concatenate([jnp.linspace(-3.0, -1e-3, 300), jnp.linspace(1e-3, 3.0, 300)])
    np.testing.assert_allclose(act.fn(x), REFERENCE[name](x, param), rtol=1e-6, atol=1e-6)
    autodiff = jax.vmap(jax.grad(act.fn))(x)
    np.testing.assert_allclose(act.grad(x), autodiff, rtol=1e-5, atol=1e-6)
    # at the kink, the written-out derivative is the one autodiff takes (ReLU'(0) = 0)
    np.testing.assert_allclose(act.grad(jnp.zeros(1)), jax.grad(act.fn)(0.0), atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_takes_the_reference_gd_step_in_both_forms(name):
    """Five GD steps equal W - eta grad L_S of the patch-materialising reference; after 20,
    W - W0 is the signal coefficients' and rho's reconstruction (MODEL.md section 4) with the
    activation's derivative in the rho recursion, and the coefficient form's 20 steps reach the
    same coefficients."""
    state, signals, data, yhat, eta, opt = strong_setup(0)
    if name == "relu_pow":  # cubic: pre-activations ~ 7 diverge at the setup's eta = 0.7
        eta = jnp.float32(0.01)
        _, opt = with_optimizer(state.W, data.y.shape[0], eta, jax.random.PRNGKey(0))
    act, param = _act(name), PARAM.get(name, 1.0)
    X = jnp.asarray(reference_patches(data, np.asarray(signals)), jnp.float32)

    def reference_loss(W):
        out = reference_strong_output(W, X, lambda x: REFERENCE[name](x, param))
        return logistic_loss(yhat * out).mean()

    step = jitted_step(signals, data, yhat, eta, opt, act)
    W0 = state.W
    state = gd_steps_match(step, state, eta, reference_loss, checked=5, total=20)
    init_proj = jnp.einsum("jrd,sd->jrs", W0, signals, precision="highest")
    coefs = np.asarray(signal_coefs(state.W, init_proj, signals), np.float64)
    xi = np.asarray(data.xi, np.float64)
    to_span = (
        np.asarray(signals, np.float64) / (np.asarray(signals, np.float64) ** 2).sum(1)[:, None]
    )
    recon = coefs @ to_span + np.einsum(
        "jrn,nd->jrd", np.asarray(state.rho, np.float64), xi / (xi**2).sum(1, keepdims=True)
    )
    delta = np.asarray(state.W - W0, np.float64)
    assert np.linalg.norm(recon - delta) <= 1e-4 * np.linalg.norm(delta)
    assert np.abs(np.asarray(state.rho)).max() > 0
    # the coefficient form's 20 steps, with the written-out derivative in gamma's update too
    assert_coef_form_reaches(W0, signals, data, yhat, eta, opt, act, 20, coefs, state.rho)


def _config(name: str, **fields):
    extra = {"activation_param": PARAM[name]} if name in PARAM else {}
    return small_config(activation=name, **extra, **fields)


# Whole runs, under `slow`: the forms agree step for step above, and ReLU's whole runs are
# test_train's (coefficient form over 1000 steps, batching).
@pytest.mark.slow
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_coef_equals_dense_and_batching_changes_no_run(name):
    """200 steps: the coefficient form records the dense form's curves (coefficients to
    float32 round-off, accuracies exactly), and a run alone records what it records in a batch."""
    config = _config(name, d=100, n_st=40, steps=200, log_points=6, eta=0.3)
    runs = stack_params([(config, s) for s in range(3)])
    dense, coef = (simulate(Shape.of(config, form=f), runs)[1] for f in ("dense", "coef"))
    alone = simulate(Shape.of(config, form="dense"), stack_params([(config, 1)]))[1]
    for metric in dense:
        a, b = np.asarray(dense[metric]), np.asarray(coef[metric])
        scale = np.nanmax(np.abs(a)) if np.isfinite(a).any() else 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale + 1e-7, err_msg=metric)
        if metric.startswith(("test_acc", "train_acc")):
            np.testing.assert_array_equal(a, b, err_msg=metric)
        # a batch's size may change XLA's reduction order: round-off, which relu_pow's cube
        # grows past test_train's 1e-5 over these steps; the coefficient comparison's bound
        np.testing.assert_allclose(
            np.asarray(alone[metric])[0], a[1], rtol=0, atol=1e-4 * scale + 1e-7, err_msg=metric
        )
    assert not np.allclose(np.asarray(dense["test_acc"])[0], np.asarray(dense["test_acc"])[1])


def test_activation_param_reaches_the_run():
    """Two leaky_relu slopes in one batch (the parameter is batched, not static): the first
    step's training loss of each is the reference model's at its own alpha (differs between
    them, so a run that ignored its alpha fails)."""
    small = {k: v for k, v in SMALL.items() if k not in ("n_wk", "steps_wk")}
    configs = [
        build({**small, "teacher": "clean", "activation": "leaky_relu", "activation_param": a})
        for a in (0.0, 0.9)
    ]  # the clean teacher: the loss is on the true labels
    shape = Shape.of(configs[0])
    assert Shape.of(configs[1]) == shape
    params = stack_params([(c, 0) for c in configs])
    losses = np.asarray(simulate(shape, params)[1]["train_loss"])[:, 0]  # step 0: W = W0
    for i, alpha in enumerate((0.0, 0.9)):
        run = draw_run(shape, jax.tree_util.tree_map(lambda a, i=i: a[i], params))
        X = jnp.asarray(reference_patches(run.train, np.asarray(run.signals)), jnp.float32)
        out = reference_strong_output(run.W0, X, lambda x, a=alpha: REFERENCE["leaky_relu"](x, a))
        assert losses[i] == pytest.approx(float(logistic_loss(run.train.y * out).mean()), rel=1e-5)
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_proposition_2_2_a_linear_student_cannot_learn_the_hard_signal():
    """Trained on the TRUE labels (teacher "clean"), both students fit every training label
    (d > n_st) and the easy signal; on hard-only test data the ReLU student is right and the
    linear one at chance (binomial, 4 sd over 4 seeds): its output's sign on a nu_y is set by the
    fair a, not by y."""
    fields = dict(
        d=200, n_st=200, m=10, p_e=0.2, p_h=0.3, p_b="rest", mu_norm=4.0, nu_norm=4.0,
        eta=1.0, steps=300, sigma_0=0.1, n_test=1000, n_val=50, log_points=4,
    )  # fmt: skip
    hard = {}
    for name in ("relu", "linear"):
        config = build({"teacher": "clean", "activation": name, **fields})
        steps = jax.device_get(
            simulate(Shape.of(config), stack_params([(config, s) for s in range(4)]))[1]
        )
        assert (np.asarray(steps["train_acc_pseudo"])[:, -1] == 1.0).all()
        assert (np.asarray(steps["test_acc_both"])[:, -1] >= 0.95).all()
        hard[name] = np.asarray(steps["test_acc_hard"])[:, -1]
    assert hard["relu"].min() >= 0.95
    n_hard = 4 * 1000 * 0.3
    assert abs(hard["linear"].mean() - 0.5) <= 4 * np.sqrt(0.25 / n_hard), hard["linear"]


@pytest.mark.parametrize("name", list(ACTIVATION_PARAM))
def test_an_activation_param_outside_its_range_is_a_one_line_error(name):
    bad = {"leaky_relu": 1.0, "relu_pow": 0.5, "softplus": 0.0}[name]
    with pytest.raises(ConfigError) as info:
        build({"activation": name, "activation_param": bad})
    message = str(info.value)
    assert message.startswith("strong.activation_param: ") and f'"{name}"' in message
    assert "\n" not in message and repr(bad) in message
