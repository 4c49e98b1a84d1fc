"""`[strong] optimizer`: every entry of OPTIMIZERS against its contract (steps equal the
patch-materialising reference's update written out independently, the coefficients stay exact
where the optimizer keeps the span and are a projection with a measured residual where it does
not, the coefficient form equals the dense one, batching changes no run), the identities that tie
the entries to GD, and the refusals of engine choices that would not be exact."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    assert_coef_form_reaches,
    reference_patches,
    reference_strong_output,
    small_config,
    strong_setup,
    with_optimizer,
)

from w2sjax.cli.main import main
from w2sjax.config.fields import FIELDS, SPAN_KEEPING, ConfigError
from w2sjax.config.settings import build
from w2sjax.engine.activations import RELU
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.loops.dense import dense_loop, signal_coefs, strong_step
from w2sjax.engine.loops.state import LoopInputs
from w2sjax.engine.models import logistic_loss
from w2sjax.engine.optimizers import OPTIMIZERS
from w2sjax.engine.simulate import simulate

BETA, BATCH = 0.8, 8
ADAM = dict(b1=0.9, b2=0.999, eps=1e-8)  # optax.adam's defaults, which the registry takes


def _problem(name: str, seed: int = 0):
    """strong_setup's problem with optimizer `name` (a smaller eta for Adam, whose steps have
    size eta per coordinate), its reference patches and its jitted dense step."""
    state, signals, data, yhat, eta, _ = strong_setup(seed)
    if name == "adam":
        eta = jnp.float32(0.01)
    state, opt = with_optimizer(state.W, data.y.shape[0], eta, jax.random.PRNGKey(seed), name,
                                BETA, BATCH)  # fmt: skip
    step = partial(strong_step, opt=opt, eta=eta, signals=signals, data=data, yhat=yhat)
    step = jax.jit(partial(step, xi_sq=(data.xi**2).sum(-1), act=RELU))
    X = jnp.asarray(reference_patches(data, np.asarray(signals)), jnp.float32)
    return state, signals, data, yhat, eta, opt, step, X


class _Reference:
    """The optimizers written out on the reference gradient, independently of optax."""

    def __init__(self, name: str, eta: float):
        self.name, self.eta, self.t = name, eta, 0
        self.v = self.m = self.s = 0.0

    def update(self, g):
        self.t += 1
        if self.name in ("gd", "sgd"):
            return -self.eta * g
        if self.name == "momentum":
            self.v = BETA * self.v - self.eta * g
            return self.v
        b1, b2, eps = ADAM["b1"], ADAM["b2"], ADAM["eps"]
        self.m = b1 * self.m + (1 - b1) * g
        self.s = b2 * self.s + (1 - b2) * g * g
        m_hat, s_hat = self.m / (1 - b1**self.t), self.s / (1 - b2**self.t)
        return -self.eta * m_hat / (np.sqrt(s_hat) + eps)


def test_the_registry_and_the_config_name_the_same_optimizers():
    assert tuple(OPTIMIZERS) == FIELDS["optimizer"].choices
    assert tuple(n for n, o in OPTIMIZERS.items() if o.keeps_span) == SPAN_KEEPING


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_declares_the_state_memory_planning_counts(name):
    """state_copies (buckets.bytes_per_run's term) is the number of W-sized arrays its optax
    state holds."""
    W = jnp.zeros((2, 3, 50))
    state = OPTIMIZERS[name].at(jnp.float32(0.1), jnp.float32(BETA), jax.random.PRNGKey(0), 5, 2)
    leaves = jax.tree_util.tree_leaves(state.transform.init({"W": W}))
    assert sum(leaf.shape == W.shape for leaf in leaves) == OPTIMIZERS[name].state_copies


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_takes_the_reference_step(name):
    """Eight steps equal the reference optimizer's update of the reference gradient of L_S on
    the step's samples (SGD: exactly batch_size of them, weighted n / batch_size, changing from
    step to step); then W - W0 is the signal coefficients' and rho's reconstruction where the
    optimizer keeps the span, and for Adam the projection leaves a residual (its updates leave
    the span) that the recorded one measures."""
    state, signals, data, yhat, eta, opt, step, X = _problem(name)
    n = data.y.shape[0]
    reference = _Reference(name, float(eta))
    W, W0, batches = np.asarray(state.W, np.float64), state.W, []
    for t in range(8):
        weights = opt.weights(jnp.int32(t))
        if weights is None:
            weights = jnp.ones(n)
        else:
            chosen = np.flatnonzero(np.asarray(weights))
            assert len(chosen) == BATCH
            np.testing.assert_allclose(np.asarray(weights)[chosen], n / BATCH)
            batches.append(tuple(chosen))

        def loss(W, weights=weights):
            margin = yhat * reference_strong_output(W, X)
            return (weights * logistic_loss(margin)).mean()

        W = W + np.asarray(reference.update(np.asarray(jax.grad(loss)(state.W), np.float64)))
        state = step(state)
        np.testing.assert_allclose(state.W, W, rtol=2e-5, atol=2e-6)
    if name == "sgd":
        assert len(set(batches)) == 8
    delta = np.asarray(state.W - W0, np.float64)
    coefs = np.asarray(signal_coefs(state.W, W0 @ signals.T, signals), np.float64)
    to_span = np.asarray(signals, np.float64) / np.asarray(signals**2, np.float64).sum(1)[:, None]
    xi = np.asarray(data.xi, np.float64)
    if opt.keeps_span:
        rho = np.asarray(state.rho, np.float64)
    else:
        views = dense_loop(LoopInputs(W0, signals, data, data, eta, RELU, opt), yhat).views(state)
        rho = np.asarray(views.rho, np.float64)
        # rho: least squares of W - W0's part off the signal axes on the xi_i / ||xi_i||^2
        off = delta.copy()
        off[..., :4] = 0.0
        basis = xi / (xi**2).sum(1, keepdims=True)
        lstsq = np.linalg.lstsq(basis.T, off.reshape(-1, off.shape[-1]).T, rcond=None)[0]
        np.testing.assert_allclose(
            rho, lstsq.T.reshape(rho.shape), rtol=1e-3, atol=1e-3 * abs(rho).max()
        )
    recon = coefs @ to_span + np.einsum("jrn,nd->jrd", rho, xi / (xi**2).sum(1, keepdims=True))
    left = np.linalg.norm(recon - delta) / np.linalg.norm(delta)
    if opt.keeps_span:
        assert left <= 1e-4
    else:
        assert left > 0.05  # Adam's weights leave the span
        assert float(views.residual) == pytest.approx(left, rel=1e-3)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if OPTIMIZERS[n].keeps_span])
def test_the_coefficient_form_takes_the_dense_forms_steps(name):
    """20 steps of coef_step (the same minibatches and momentum) reach the dense form's
    coefficients."""
    state, signals, data, yhat, eta, opt, step, _ = _problem(name)
    W0 = state.W
    for _ in range(20):
        state = step(state)
    coefs = signal_coefs(state.W, W0 @ signals.T, signals)
    assert_coef_form_reaches(W0, signals, data, yhat, eta, opt, RELU, 20, coefs, state.rho)


@pytest.mark.parametrize(("name", "fields"), [("sgd", {"batch_size": 30}), ("momentum", {})])
def test_sgd_on_the_whole_set_and_momentum_zero_are_gd(name, fields):
    """Identities: a minibatch of all n_st samples is the full batch; momentum 0 is GD. Ten
    steps from the same state agree with GD's to float32 round-off (and differ from GD's at
    momentum 0.8 and batch 8, so the comparison can fail)."""
    state, signals, data, yhat, eta, _, gd, _ = _problem("gd")
    n, key = data.y.shape[0], jax.random.PRNGKey(0)
    momentum = 0.0 if name == "momentum" else BETA
    results = {}
    for label, size in (("same", fields.get("batch_size", BATCH)), ("other", BATCH)):
        beta = momentum if label == "same" else BETA
        st, opt = with_optimizer(state.W, n, eta, key, name, beta, size)
        step = jax.jit(partial(strong_step, opt=opt, eta=eta, signals=signals, data=data,
                               yhat=yhat, xi_sq=(data.xi**2).sum(-1), act=RELU))  # fmt: skip
        for _ in range(10):
            st = step(st)
        results[label] = st
    ref = state
    for _ in range(10):
        ref = gd(ref)
    np.testing.assert_allclose(results["same"].W, ref.W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["same"].rho, ref.rho, rtol=1e-5, atol=1e-6)
    assert not np.allclose(results["other"].W, ref.W, rtol=1e-3, atol=1e-4)


def _config(name: str, **fields):
    extra = {"batch_size": BATCH} if name == "sgd" else {}
    extra |= {"momentum": BETA} if name == "momentum" else {}
    return small_config(optimizer=name, **extra, **fields)


# GD's and momentum's whole runs batch as test_train's GD runs do (their steps draw nothing);
# SGD's minibatches and Adam's projection are what could depend on the batch.
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_whole_runs_do_not_depend_on_their_batch(name):
    """Seed 1 records the same in a batch with seeds 0 and 2 as in one with seeds 5 and 6 (at
    another position; its minibatches come from its own key), the decomposition's residual is
    recorded where it is a projection (Adam) and NaN where the coefficients are carried, and two
    seeds differ."""
    config = _config(name, steps=12, log_points=4, eta=0.01 if name == "adam" else 0.5)
    shape = Shape.of(config)
    assert shape.form == ("dense" if name == "adam" else "coef") and shape.noise == "full"
    batch, other = (
        simulate(shape, stack_params([(config, s) for s in seeds]))[1]
        for seeds in ((0, 1, 2), (5, 6, 1))
    )
    for metric, values in batch.items():
        np.testing.assert_allclose(
            np.asarray(other[metric])[2], np.asarray(values)[1], rtol=1e-5, atol=1e-6,
            err_msg=metric,
        )  # fmt: skip
    residual = np.asarray(batch["coef_residual"])[:, 1:]
    assert (residual > 0).all() if name == "adam" else np.isnan(residual).all()
    assert not np.allclose(np.asarray(batch["train_loss"])[0], np.asarray(batch["train_loss"])[1])


def test_adam_refuses_the_engine_choices_that_assume_the_span(tmp_path):
    """--form coef and --noise reduced with Adam: a one-line error naming the flag, exit 2,
    before any compute; auto takes the dense form and the full sampler."""
    config = _config("adam", d=2000)
    assert (Shape.of(config).form, Shape.of(config).noise) == ("dense", "full")
    assert Shape.of(config, noise="auto").noise == "full"
    for flag, value in (("form", "coef"), ("noise", "reduced")):
        with pytest.raises(ConfigError, match=f"^--{flag} {value}: is exact only for"):
            Shape.of(config, **{flag: value})
    spec = tmp_path / "adam.toml"
    spec.write_text('name = "adam"\nseeds = 1\n[strong]\noptimizer = "adam"\nsteps = 3\n')
    assert main(["sweep", str(spec), "--form", "coef", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o" / "adam" / "runs").exists()


@pytest.mark.parametrize(
    ("fields", "start"),
    [
        ({"momentum": 0.5}, "strong.momentum: is read only with strong.optimizer = \"momentum\""),
        ({"batch_size": 4}, "strong.batch_size: is read only with strong.optimizer = \"sgd\""),
        ({"optimizer": "momentum", "momentum": 1.0}, "strong.momentum: must be a number in [0, 1)"),
        ({"optimizer": "sgd", "batch_size": 41, "n_st": 40}, "strong.batch_size: must be an "
         "integer in [1, n_st = 40]"),
        ({"optimizer": "rmsprop"}, 'strong.optimizer: must be "gd", "sgd", "momentum" or "adam"'),
    ],
)  # fmt: skip
def test_a_bad_optimizer_field_is_a_one_line_error(fields, start):
    with pytest.raises(ConfigError) as info:
        build(fields)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


def test_a_grid_mixing_optimizers_gives_adam_the_full_sampler(tmp_path, capsys):
    """At d >> M, --noise auto takes the reduced sampler for GD's points and the full one for
    Adam's, whichever comes first in the grid (their noise keys differ, so neither decides for
    the other); `w2sjax boundary --noise reduced` refuses Adam in one line before writing."""
    from w2sjax.config.grid import load_sweep
    from w2sjax.sweep.buckets import assign_noise, plan

    for order in (["adam", "gd"], ["gd", "adam"]):
        spec = tmp_path / "mixed.toml"
        spec.write_text(
            'name = "mixed"\nseeds = 1\n[data]\nd = 5000\n[weak]\nn_wk = 20\n[strong]\n'
            f"n_st = 40\nm = 4\n[grid]\noptimizer = {order!r}\n".replace("'", '"')
        )
        sweep = load_sweep(spec)
        buckets = plan(sweep, noise=assign_noise(sweep, "auto", "highest"))
        assert {b.shape.optimizer: b.shape.noise for b in buckets} == {
            "gd": "reduced",
            "adam": "full",
        }
    spec.write_text(
        'name = "adam_boundary"\nseeds = 1\n[data]\nd = 5000\n[weak]\nn_wk = 20\n[strong]\n'
        'm = 4\noptimizer = "adam"\n[grid]\nn_st = [20, 40]\n'
    )
    args = ["boundary", str(spec), "--metric", "test_acc", "--level", "0.8", "--noise", "reduced"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 2
    assert "--noise reduced: is exact only for" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_adams_projection_is_nan_where_the_training_noise_is_dependent():
    """The Gram solve behind Adam's rho (projection.gram_solve, on the host on a CPU): under vmap
    each run's K^-1 and resolved flag match its own unbatched solve's, and numpy's; a run whose
    training noise holds a repeated patch (a dependent Gram) gets NaN rho and residual, its
    neighbour in the batch does not."""
    from w2sjax.engine.projection import gram_solve, projected_coefs, projection

    state, signals, data, *_ = strong_setup(0)
    xi = data.xi
    dependent = xi.at[1].set(xi[0])
    stacked = jnp.stack([xi, dependent])
    sq = (stacked**2).sum(-1)
    W0 = jnp.stack([state.W, state.W])

    def parts(W0, xi, xi_sq):
        return projection(W0, signals, xi, xi_sq)

    batched = jax.jit(jax.vmap(parts))(W0, stacked, sq)
    alone = [projection(state.W, signals, stacked[i], sq[i]) for i in range(2)]
    assert [bool(a.resolved) for a in alone] == batched.resolved.tolist()
    np.testing.assert_allclose(batched.K_inv[0], alone[0].K_inv, rtol=1e-4, atol=1e-5)
    # numpy's reference in float64: `xi @ xi.T` in jax runs at the device's default precision,
    # TF32 on a GPU, whose 1e-3 errors in K broke the comparison on the H200
    x = np.asarray(xi, np.float64)
    gram = x @ x.T
    K = gram / np.diag(gram)[:, None]
    np.testing.assert_allclose(batched.K_inv[0], np.linalg.inv(K), rtol=1e-3, atol=1e-4)
    corr = gram / np.sqrt(np.outer(np.diag(gram), np.diag(gram)))
    smallest, _ = gram_solve(jnp.asarray(corr, jnp.float32), jnp.asarray(K, jnp.float32))
    assert float(smallest) == pytest.approx(np.linalg.eigvalsh(corr)[0], rel=1e-3)
    assert batched.resolved.tolist() == [True, False]

    W = state.W + 0.01 * jax.random.normal(jax.random.PRNGKey(1), state.W.shape)
    rho, residual = jax.vmap(projected_coefs)(jnp.stack([W, W]), W0, batched)
    assert np.isfinite(rho[0]).all() and np.isfinite(residual[0])
    assert np.isnan(rho[1]).all() and np.isnan(residual[1])
