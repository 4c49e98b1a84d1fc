"""The student's full-batch GD loop in its two exact forms (docs/MODEL.md sections 3 and 4), by
name (`LOOPS`, chosen by Shape.form): "dense" carries W (2, m, D) and costs 8 m n_st D FLOPs a
step; "coef" carries the coefficients (gamma, rho) and costs 4 m n_st^2 a step from a Gram matrix
computed once. Both give the same curves to float32 round-off (a test runs 1000 steps of each)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from w2sjax.activations import Act
from w2sjax.data import Sample, patch_coefs
from w2sjax.models import J_SIGN, Preacts, logistic_loss, mm, strong_output_of, strong_preacts


class Loop(NamedTuple):
    """A loop form set up for one run: the initial state, step(state) -> state, and
    views(state) -> (training pre-activations, evaluation pre-activations, signal coefficients
    (2, m, 4), rho (2, m, n_st)), what metrics.record reads."""

    init: Any
    step: Callable[[Any], Any]
    views: Callable[[Any], tuple]


@chex.dataclass(frozen=True)
class Strong:
    """What the strong GD loop carries: W (2, m, d), rho (2, m, n_st), the optimizer state."""

    W: chex.Array
    rho: chex.Array
    opt_state: Any


def strong_loss(
    W: chex.Array,
    signals: chex.Array,
    data: Sample,
    yhat: chex.Array,
    act: Act,
    precision: str = "highest",
) -> tuple:
    """L_S(W) on pseudo-labels, with aux (noise pre-activations (2, m, n), margins (n,))."""
    pre = strong_preacts(W, signals, data, precision)
    margin = yhat * strong_output_of(pre, act)
    return logistic_loss(margin).mean(), (pre.noise, margin)


def strong_step(
    state: Strong,
    opt: optax.GradientTransformation,
    eta: chex.Array,
    signals: chex.Array,
    data: Sample,
    yhat: chex.Array,
    xi_sq: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Strong:
    """One full-batch GD step on L_S, and the exact rho recursion of MODEL.md section 4:
    rho += -(eta / (n m)) l'_i sigma'(<w_{j,r}, xi_i>) ||xi_i||^2 j yhat_i, all at W^(t).
    xi_sq (n,) is ||xi_i||^2, passed in so the loop does not recompute it."""
    grad_fn = jax.value_and_grad(partial(strong_loss, act=act, precision=precision), has_aux=True)
    (_, (noise_pre, margin)), grad = grad_fn(state.W, signals, data, yhat)
    updates, opt_state = opt.update(grad, state.opt_state, state.W)
    _, m, n = noise_pre.shape
    l_prime = -jax.nn.sigmoid(-margin)
    drho = -(eta / (n * m)) * act.grad(noise_pre) * (l_prime * xi_sq * yhat) * J_SIGN[:, None, None]
    return Strong(
        W=optax.apply_updates(state.W, updates), rho=state.rho + drho, opt_state=opt_state
    )


def signal_coefs(W: chex.Array, init_proj: chex.Array, signals: chex.Array) -> chex.Array:
    """(2, m, 4) <w_{j,r}^(t) - w_{j,r}^(0), s> for s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}:
    gmu is [..., :2], gnu is [..., 2:]."""
    return mm("jrd,sd->jrs", W, signals) - init_proj


@chex.dataclass(frozen=True)
class Coef:
    """The coefficient-space state (exact when updates stay in span{signals, xi_i}, i.e. GD):
    gamma (2, m, 4) = <w_{j,r} - w_{j,r}^(0), s> for the four signals, rho (2, m, n_st)."""

    gamma: chex.Array
    rho: chex.Array


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
    eta: chex.Array,
    data: CoefData,
    yhat: chex.Array,
    xi_sq: chex.Array,
    signal_gram: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Coef:
    """One GD step on L_S in coefficient space, equal to `strong_step` in exact arithmetic:
    rho by MODEL.md section 4's recursion, and gamma_s += <Delta W, s> with Delta W = -eta grad L_S,
    whose signal-patch part is sum_p sigma'(<w, x^(p)>) <x^(p), s> (signal_gram (4, 4) = S S^T)."""
    pre = coef_preacts(state, data, precision)
    margin = yhat * strong_output_of(pre, act)
    _, m, n = pre.noise.shape
    weight = -jax.nn.sigmoid(-margin) * yhat  # l'_i yhat_i
    scale = -(eta / (n * m)) * J_SIGN[:, None, None]
    drho = scale * act.grad(pre.noise) * (weight * xi_sq)
    active = act.grad(pre.signal)
    dgamma = scale * mm("jrpn,n,pns,st->jrt", active, weight, data.coefs, signal_gram)
    return Coef(gamma=state.gamma + dgamma, rho=state.rho + drho)


def dense_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    evaluation: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Loop:
    """The dense form (state W) on the training set, viewed also on the `evaluation` samples.
    `precision` (see models.mm) applies to the products with the noise patches, forward and
    gradient."""
    opt = optax.sgd(eta)
    step = partial(
        strong_step,
        opt=opt,
        eta=eta,
        signals=signals,
        data=train,
        yhat=yhat,
        xi_sq=(train.xi * train.xi).sum(-1),
        act=act,
        precision=precision,
    )
    init_proj = mm("jrd,sd->jrs", W0, signals)

    def views(st: Strong) -> tuple:
        return (
            strong_preacts(st.W, signals, train, precision),
            strong_preacts(st.W, signals, evaluation, precision),
            signal_coefs(st.W, init_proj, signals),
            st.rho,
        )

    n_st = train.y.shape[0]
    init = Strong(W=W0, rho=jnp.zeros((2, W0.shape[1], n_st)), opt_state=opt.init(W0))
    return Loop(init, step, views)


def coef_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    evaluation: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    act: Act,
    precision: str = "highest",
) -> Loop:
    """The coefficient form (state gamma, rho), as `dense_loop`."""
    xi_sq = (train.xi * train.xi).sum(-1)
    on_train, on_eval = (coef_data(W0, signals, train, s, xi_sq) for s in (train, evaluation))
    step = partial(
        coef_step,
        eta=eta,
        data=on_train,
        yhat=yhat,
        xi_sq=xi_sq,
        signal_gram=mm("sd,td->st", signals, signals),
        act=act,
        precision=precision,
    )

    def views(st: Coef) -> tuple:
        pre = (coef_preacts(st, on_train, precision), coef_preacts(st, on_eval, precision))
        return *pre, st.gamma, st.rho

    m, n_st = W0.shape[1], train.y.shape[0]
    return Loop(Coef(gamma=jnp.zeros((2, m, 4)), rho=jnp.zeros((2, m, n_st))), step, views)


LOOPS: dict[str, Callable[..., Loop]] = {"dense": dense_loop, "coef": coef_loop}
