"""The dense loop form (docs/MODEL.md section 3): W itself stepped, 8 m n_st D FLOPs a step.

It takes every optimizer and needs no precomputation, so it is the form for large n_st and for
optimizers that leave the span, and the reference the coefficient form (engine/loops/coef.py) is
tested against."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from w2sjax.engine.activations import Act
from w2sjax.engine.data import Sample
from w2sjax.engine.loops.state import Loop, LoopInputs, Strong, Views, out_sign, trained
from w2sjax.engine.models import logistic_loss, mm, strong_output_of, strong_preacts
from w2sjax.engine.optimizers import Opt
from w2sjax.engine.projection import Projection, projected_coefs, projection


def strong_init(W0: chex.Array, n_st: int, opt: Opt, v0: chex.Array | None = None) -> Strong:
    """The dense loop's state at step 0: W = W0 (2, m, D), rho = 0 (2, m, n_st), v = v0 (None:
    a fixed second layer), and the optimizer's state for what it updates (rho only where it
    keeps the span)."""
    state = Strong(
        W=W0, rho=jnp.zeros((2, W0.shape[1], n_st)), opt_state=None, t=jnp.int32(0), v=v0
    )
    carried = trained(state, W=W0, rho=state.rho) if opt.keeps_span else trained(state, W=W0)
    return state.replace(opt_state=opt.transform.init(carried))


def weighted_mean(x: chex.Array, weights: chex.Array | None) -> chex.Array:
    """Mean of x (n,), each sample weighted (None: the plain mean; a minibatch's weights are
    n / batch_size on its samples, so they average to 1)."""
    return (x if weights is None else x * weights).mean()


def strong_loss(
    W: chex.Array,
    signals: chex.Array,
    data: Sample,
    yhat: chex.Array,
    act: Act,
    precision: str = "highest",
    weights: chex.Array | None = None,
    second: chex.Array | None = None,
) -> tuple:
    """L_S(W) on pseudo-labels (over `weights`' minibatch; `second`: a trained second layer's v
    (2, m), None for the fixed one), with aux (noise pre-activations (2, m, n), margins (n,))."""
    pre = strong_preacts(W, signals, data, precision)
    margin = yhat * strong_output_of(pre, act, second)
    return weighted_mean(logistic_loss(margin), weights), (pre.noise, margin)


def rho_increment(
    eta: chex.Array,
    act: Act,
    noise_pre: chex.Array,
    margin: chex.Array,
    yhat: chex.Array,
    xi_sq: chex.Array,
    weights: chex.Array | None,
    second: chex.Array | None = None,
) -> chex.Array:
    """(2, m, n) GD's increment of rho (MODEL.md section 4):
    -(eta / (n m)) l'_i sigma'(<w_{j,r}, xi_i>) ||xi_i||^2 j yhat_i, times sample i's weight, with
    a trained second layer's v_{j,r} (2, m) in place of j."""
    _, m, n = noise_pre.shape
    l_prime = -jax.nn.sigmoid(-margin)
    if weights is not None:
        l_prime = l_prime * weights
    return -(eta / (n * m)) * act.grad(noise_pre) * (l_prime * xi_sq * yhat) * out_sign(second)


def strong_step(
    state: Strong,
    opt: Opt,
    eta: chex.Array,
    signals: chex.Array,
    data: Sample,
    yhat: chex.Array,
    xi_sq: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Strong:
    """One step on L_S: the increment -eta grad L_S of W (and of a trained second layer's v) and,
    where the optimizer keeps the span, of rho (the exact recursion of MODEL.md section 4, all at
    W^(t)), all through the optimizer. xi_sq (n,) is ||xi_i||^2, passed in so the loop does not
    recompute it."""
    weights = opt.weights(state.t)

    def loss(params: dict) -> tuple:
        return strong_loss(
            params["W"], signals, data, yhat, act, precision, weights, params.get("v")
        )

    (_, (noise_pre, margin)), grads = jax.value_and_grad(loss, has_aux=True)(
        trained(state, W=state.W)
    )
    increments = {k: -eta * g for k, g in grads.items()}
    if opt.keeps_span:
        increments["rho"] = rho_increment(
            eta, act, noise_pre, margin, yhat, xi_sq, weights, state.v
        )
    updates, opt_state = opt.transform.update(increments, state.opt_state)
    return Strong(
        W=state.W + updates["W"],
        rho=state.rho + updates["rho"] if opt.keeps_span else state.rho,
        opt_state=opt_state,
        t=state.t + 1,
        v=None if state.v is None else state.v + updates["v"],
    )


def signal_coefs(W: chex.Array, init_proj: chex.Array, signals: chex.Array) -> chex.Array:
    """(2, m, 4) <w_{j,r}^(t) - w_{j,r}^(0), s> for s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}:
    gmu is [..., :2], gnu is [..., 2:]."""
    return mm("jrd,sd->jrs", W, signals) - init_proj


class DensePre(NamedTuple):
    """What the dense form computes once per run (dense_setup): xi_sq (n_st,) ||xi_i||^2, the
    initial projections init_proj (2, m, 4) on the four reference signals, and the projection
    onto span{signals, training noise} (None where the optimizer keeps the span: rho is then
    carried)."""

    xi_sq: chex.Array
    init_proj: chex.Array
    proj: Projection | None


def dense_setup(inputs: LoopInputs) -> DensePre:
    """DensePre of one run's inputs."""
    W0, signals, train, _, _, _, opt, _, _, reference = inputs
    reference = signals if reference is None else reference
    xi_sq = (train.xi * train.xi).sum(-1)
    proj = None if opt.keeps_span else projection(W0, signals, train.xi, xi_sq)
    return DensePre(xi_sq, mm("jrd,sd->jrs", W0, reference), proj)


def dense_loop(inputs: LoopInputs, yhat: chex.Array, pre: DensePre | None = None) -> Loop:
    """The dense form (state W) trained on labels yhat (n_st,), viewed also on the evaluation
    samples, from its setup `pre` (None: dense_setup(inputs) here). rho is carried where the
    optimizer keeps the span, else projected at each view."""
    pre = dense_setup(inputs) if pre is None else pre
    W0, signals, train, evaluation, eta, act, opt, precision, v0, reference = inputs
    reference = signals if reference is None else reference
    step = partial(
        strong_step,
        opt=opt,
        eta=eta,
        signals=signals,
        data=train,
        yhat=yhat,
        xi_sq=pre.xi_sq,
        act=act,
        precision=precision,
    )

    def views(st: Strong) -> Views:
        on_train = strong_preacts(st.W, signals, train, precision)
        if pre.proj is None:
            rho, residual = st.rho, jnp.float32(jnp.nan)
        else:
            rho, residual = projected_coefs(st.W, W0, pre.proj)
        on_eval = strong_preacts(st.W, signals, evaluation, precision)
        coefs = signal_coefs(st.W, pre.init_proj, reference)
        return Views(on_train, on_eval, coefs, rho, residual, st.v)

    return Loop(strong_init(W0, train.y.shape[0], opt, v0), step, views)
