"""The student's training loop in its two exact forms (docs/MODEL.md sections 3 and 4), by
name (`LOOPS`, chosen by Shape.form): "dense" carries W (2, m, D) and costs 8 m n_st D FLOPs a
step; "coef" carries the coefficients (gamma, rho) and costs 4 m n_st^2 a step from a Gram matrix
computed once. Both give the same curves to float32 round-off (a test runs 1000 steps of each).
Each step is GD's increment -eta grad L_S mapped to an update by the run's optimizer
(optimizers.py); the coefficient form takes only optimizers that keep the span."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from w2sjax.activations import Act
from w2sjax.data import Sample, patch_coefs
from w2sjax.models import (
    J_SIGN,
    Preacts,
    filter_sums,
    logistic_loss,
    mm,
    strong_output_of,
    strong_preacts,
)
from w2sjax.optimizers import Opt
from w2sjax.projection import projected_coefs, projection


class Views(NamedTuple):
    """What metrics.record reads from a loop's state: the pre-activations on the training set and
    on the evaluation samples, the signal coefficients (2, m, 4), rho (2, m, n_st), the
    relative norm of the part of W - W0 outside span{signals, training noise} (NaN where the
    coefficients are carried, so exact by construction), and a trained second layer's weights
    v (2, m) (None where it is fixed)."""

    train: Preacts
    evaluation: Preacts
    coefs: chex.Array
    rho: chex.Array
    residual: chex.Array
    second: chex.Array | None = None


class Loop(NamedTuple):
    """A loop form set up for one run: the initial state, step(state) -> state, and
    views(state) -> Views."""

    init: Any
    step: Callable[[Any], Any]
    views: Callable[[Any], Views]


@chex.dataclass(frozen=True)
class Strong:
    """What the dense loop carries: W (2, m, d), rho (2, m, n_st) (zero where the optimizer does
    not keep the span), the optimizer's state, the step count t, and a trained second layer's
    weights v (2, m) (None: fixed)."""

    W: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array
    v: chex.Array | None = None


def trained(state: Strong | Coef, **parts: chex.Array) -> dict[str, chex.Array]:
    """`parts` (what a loop form updates) and, where the second layer is trained, its v: the
    dict of arrays the optimizer steps."""
    return parts if state.v is None else {**parts, "v": state.v}


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
    return -(eta / (n * m)) * act.grad(noise_pre) * (l_prime * xi_sq * yhat) * _out_sign(second)


def _out_sign(second: chex.Array | None) -> chex.Array:
    """(2, m or 1, 1): each filter's output weight, j for the fixed second layer."""
    return J_SIGN[:, None, None] if second is None else second[:, :, None]


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


@chex.dataclass(frozen=True)
class Coef:
    """The coefficient-space state (exact for optimizers that keep the span): gamma (2, m, 4) =
    <w_{j,r} - w_{j,r}^(0), s> for the four signals, rho (2, m, n_st), the optimizer's state, the
    step count t, and a trained second layer's weights v (2, m) (None: fixed)."""

    gamma: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array
    v: chex.Array | None = None


@chex.dataclass(frozen=True)
class CoefData:
    """What the coefficient form precomputes once per run. For a sample set X: init (2, m, 4)
    <w^(0), s>, q0 (2, m, n) <w^(0), xi_j>, K (n_st, n) <xi_i, xi_j> / ||xi_i||^2 (xi_i from the
    training set), coefs (2, n, 4) its signal-patch coefficients."""

    init: chex.Array
    q0: chex.Array
    K: chex.Array
    coefs: chex.Array


def coef_data(
    W0: chex.Array, signals: chex.Array, train: Sample, s: Sample, xi_sq: chex.Array
) -> CoefData:
    """Precompute CoefData of the sample set `s` against the training noise (cost 2 n_st n d)."""
    return CoefData(
        init=mm("jrd,sd->jrs", W0, signals),
        q0=mm("jrd,nd->jrn", W0, s.xi),
        K=mm("id,nd->in", train.xi, s.xi) / xi_sq[:, None],
        coefs=patch_coefs(s),
    )


def coef_preacts(state: Coef, data: CoefData, precision: str = "highest") -> Preacts:
    """Pre-activations from coefficients: <w, s> = init + gamma (noise is orthogonal to signals),
    <w, xi_j> = q0_j + sum_i rho_i <xi_i, xi_j> / ||xi_i||^2. One (2m x n_st)(n_st x n) product."""
    return Preacts(
        signal=mm("jrs,pns->jrpn", data.init + state.gamma, data.coefs),
        noise=data.q0 + mm("jri,in->jrn", state.rho, data.K, precision=precision),
    )


def coef_step(
    state: Coef,
    opt: Opt,
    eta: chex.Array,
    data: CoefData,
    yhat: chex.Array,
    xi_sq: chex.Array,
    signal_gram: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Coef:
    """One step on L_S in coefficient space, equal to `strong_step` in exact arithmetic: GD's
    increments of rho (MODEL.md section 4's recursion) and of gamma_s = <Delta W, s>, with
    Delta W = -eta grad L_S, whose signal-patch part is sum_p sigma'(<w, x^(p)>) <x^(p), s>
    (signal_gram (4, 4) = S S^T), through the optimizer (a linear map: optimizers.py); a trained
    second layer's v_{j,r} takes j's place and steps by -eta dL_S/dv_{j,r} =
    -(eta / (n m)) sum_i l'_i yhat_i sum_p sigma(<w_{j,r}, x_i^(p)>)."""
    weights = opt.weights(state.t)
    pre = coef_preacts(state, data, precision)
    margin = yhat * strong_output_of(pre, act, state.v)
    _, m, n = pre.noise.shape
    l_prime = -jax.nn.sigmoid(-margin)
    weight = (l_prime if weights is None else l_prime * weights) * yhat  # l'_i yhat_i
    scale = -(eta / (n * m)) * _out_sign(state.v)
    drho = scale * act.grad(pre.noise) * (weight * xi_sq)
    active = act.grad(pre.signal)
    dgamma = scale * mm("jrpn,n,pns,st->jrt", active, weight, data.coefs, signal_gram)
    increments = trained(state, gamma=dgamma, rho=drho)
    if state.v is not None:
        increments["v"] = -(eta / (n * m)) * mm("jrn,n->jr", filter_sums(pre, act), weight)
    updates, opt_state = opt.transform.update(increments, state.opt_state)
    return Coef(
        gamma=state.gamma + updates["gamma"],
        rho=state.rho + updates["rho"],
        opt_state=opt_state,
        t=state.t + 1,
        v=None if state.v is None else state.v + updates["v"],
    )


def coef_init(m: int, n_st: int, opt: Opt, v0: chex.Array | None = None) -> Coef:
    """The coefficient form's state at step 0: gamma = 0 (2, m, 4), rho = 0 (2, m, n_st), v = v0
    (None: a fixed second layer), and the optimizer's state for what it updates."""
    state = Coef(
        gamma=jnp.zeros((2, m, 4)),
        rho=jnp.zeros((2, m, n_st)),
        opt_state=None,
        t=jnp.int32(0),
        v=v0,
    )
    carried = trained(state, gamma=state.gamma, rho=state.rho)
    return state.replace(opt_state=opt.transform.init(carried))


def dense_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    evaluation: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    act: Act,
    opt: Opt,
    precision: str = "highest",
    v0: chex.Array | None = None,
) -> Loop:
    """The dense form (state W) on the training set, viewed also on the `evaluation` samples.
    `precision` (see models.mm) applies to the products with the noise patches, forward and
    gradient. rho is carried where the optimizer keeps the span, else projected at each view.
    v0: a trained second layer's initial weights (2, m), None for the fixed one."""
    xi_sq = (train.xi * train.xi).sum(-1)
    step = partial(
        strong_step,
        opt=opt,
        eta=eta,
        signals=signals,
        data=train,
        yhat=yhat,
        xi_sq=xi_sq,
        act=act,
        precision=precision,
    )
    init_proj = mm("jrd,sd->jrs", W0, signals)
    proj = None if opt.keeps_span else projection(W0, signals, train.xi, xi_sq)

    def views(st: Strong) -> Views:
        on_train = strong_preacts(st.W, signals, train, precision)
        if proj is None:
            rho, residual = st.rho, jnp.float32(jnp.nan)
        else:
            rho, residual = projected_coefs(st.W, W0, proj)
        on_eval = strong_preacts(st.W, signals, evaluation, precision)
        coefs = signal_coefs(st.W, init_proj, signals)
        return Views(on_train, on_eval, coefs, rho, residual, st.v)

    return Loop(strong_init(W0, train.y.shape[0], opt, v0), step, views)


def coef_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    evaluation: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    act: Act,
    opt: Opt,
    precision: str = "highest",
    v0: chex.Array | None = None,
) -> Loop:
    """The coefficient form (state gamma, rho), as `dense_loop`, for an optimizer that keeps the
    span (Shape.of refuses the others)."""
    xi_sq = (train.xi * train.xi).sum(-1)
    on_train, on_eval = (coef_data(W0, signals, train, s, xi_sq) for s in (train, evaluation))
    step = partial(
        coef_step,
        opt=opt,
        eta=eta,
        data=on_train,
        yhat=yhat,
        xi_sq=xi_sq,
        signal_gram=mm("sd,td->st", signals, signals),
        act=act,
        precision=precision,
    )

    def views(st: Coef) -> Views:
        pre = (coef_preacts(st, on_train, precision), coef_preacts(st, on_eval, precision))
        return Views(*pre, st.gamma, st.rho, jnp.float32(jnp.nan), st.v)

    return Loop(coef_init(W0.shape[1], train.y.shape[0], opt, v0), step, views)


LOOPS: dict[str, Callable[..., Loop]] = {"dense": dense_loop, "coef": coef_loop}
