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
from w2sjax.models import J_SIGN, Preacts, logistic_loss, mm, strong_output_of, strong_preacts
from w2sjax.optimizers import Opt

# The smallest eigenvalue, relative to the diagonal, of the training noise's Gram matrix at which
# a projection onto the training noise still resolves rho in float32; below it rho is NaN.
GRAM_FLOOR = 1e-3


class Views(NamedTuple):
    """What metrics.record reads from a loop's state: the pre-activations on the training set and
    on the evaluation samples, the signal coefficients (2, m, 4), rho (2, m, n_st), and the
    relative norm of the part of W - W0 outside span{signals, training noise} (NaN where the
    coefficients are carried, so exact by construction)."""

    train: Preacts
    evaluation: Preacts
    coefs: chex.Array
    rho: chex.Array
    residual: chex.Array


class Loop(NamedTuple):
    """A loop form set up for one run: the initial state, step(state) -> state, and
    views(state) -> Views."""

    init: Any
    step: Callable[[Any], Any]
    views: Callable[[Any], Views]


@chex.dataclass(frozen=True)
class Strong:
    """What the dense loop carries: W (2, m, d), rho (2, m, n_st) (zero where the optimizer does
    not keep the span), the optimizer's state, the step count t."""

    W: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array


def strong_init(W0: chex.Array, n_st: int, opt: Opt) -> Strong:
    """The dense loop's state at step 0: W = W0 (2, m, D), rho = 0 (2, m, n_st), and the
    optimizer's state for what it carries (rho only where it keeps the span)."""
    rho = jnp.zeros((2, W0.shape[1], n_st))
    carried = {"W": W0, "rho": rho} if opt.keeps_span else {"W": W0}
    return Strong(W=W0, rho=rho, opt_state=opt.transform.init(carried), t=jnp.int32(0))


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
) -> tuple:
    """L_S(W) on pseudo-labels (over `weights`' minibatch), with aux (noise pre-activations
    (2, m, n), margins (n,))."""
    pre = strong_preacts(W, signals, data, precision)
    margin = yhat * strong_output_of(pre, act)
    return weighted_mean(logistic_loss(margin), weights), (pre.noise, margin)


def rho_increment(
    eta: chex.Array,
    act: Act,
    noise_pre: chex.Array,
    margin: chex.Array,
    yhat: chex.Array,
    xi_sq: chex.Array,
    weights: chex.Array | None,
) -> chex.Array:
    """(2, m, n) GD's increment of rho (MODEL.md section 4):
    -(eta / (n m)) l'_i sigma'(<w_{j,r}, xi_i>) ||xi_i||^2 j yhat_i, times sample i's weight."""
    _, m, n = noise_pre.shape
    l_prime = -jax.nn.sigmoid(-margin)
    if weights is not None:
        l_prime = l_prime * weights
    return -(eta / (n * m)) * act.grad(noise_pre) * (l_prime * xi_sq * yhat) * J_SIGN[:, None, None]


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
    """One step on L_S: the increment -eta grad L_S of W and, where the optimizer keeps the span,
    of rho (the exact recursion of MODEL.md section 4, all at W^(t)), both through the optimizer.
    xi_sq (n,) is ||xi_i||^2, passed in so the loop does not recompute it."""
    weights = opt.weights(state.t)
    loss = partial(strong_loss, act=act, precision=precision, weights=weights)
    (_, (noise_pre, margin)), grad = jax.value_and_grad(loss, has_aux=True)(
        state.W, signals, data, yhat
    )
    increments = {"W": -eta * grad}
    if opt.keeps_span:
        increments["rho"] = rho_increment(eta, act, noise_pre, margin, yhat, xi_sq, weights)
    updates, opt_state = opt.transform.update(increments, state.opt_state)
    return Strong(
        W=state.W + updates["W"],
        rho=state.rho + updates["rho"] if opt.keeps_span else state.rho,
        opt_state=opt_state,
        t=state.t + 1,
    )


def signal_coefs(W: chex.Array, init_proj: chex.Array, signals: chex.Array) -> chex.Array:
    """(2, m, 4) <w_{j,r}^(t) - w_{j,r}^(0), s> for s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}:
    gmu is [..., :2], gnu is [..., 2:]."""
    return mm("jrd,sd->jrs", W, signals) - init_proj


@chex.dataclass(frozen=True)
class Coef:
    """The coefficient-space state (exact for optimizers that keep the span): gamma (2, m, 4) =
    <w_{j,r} - w_{j,r}^(0), s> for the four signals, rho (2, m, n_st), the optimizer's state, the
    step count t."""

    gamma: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array


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
    (signal_gram (4, 4) = S S^T), through the optimizer (a linear map: optimizers.py)."""
    weights = opt.weights(state.t)
    pre = coef_preacts(state, data, precision)
    margin = yhat * strong_output_of(pre, act)
    _, m, n = pre.noise.shape
    l_prime = -jax.nn.sigmoid(-margin)
    weight = (l_prime if weights is None else l_prime * weights) * yhat  # l'_i yhat_i
    scale = -(eta / (n * m)) * J_SIGN[:, None, None]
    drho = scale * act.grad(pre.noise) * (weight * xi_sq)
    active = act.grad(pre.signal)
    dgamma = scale * mm("jrpn,n,pns,st->jrt", active, weight, data.coefs, signal_gram)
    updates, opt_state = opt.transform.update({"gamma": dgamma, "rho": drho}, state.opt_state)
    return Coef(
        gamma=state.gamma + updates["gamma"],
        rho=state.rho + updates["rho"],
        opt_state=opt_state,
        t=state.t + 1,
    )


def coef_init(m: int, n_st: int, opt: Opt) -> Coef:
    """The coefficient form's state at step 0: gamma = 0 (2, m, 4), rho = 0 (2, m, n_st), and
    the optimizer's state for them."""
    coefs = {"gamma": jnp.zeros((2, m, 4)), "rho": jnp.zeros((2, m, n_st))}
    return Coef(**coefs, opt_state=opt.transform.init(coefs), t=jnp.int32(0))


class Projection(NamedTuple):
    """What projecting W - W0 onto span{signals, training noise} needs, computed once: the
    training noise xi (n_st, D), K_inv (n_st, n_st) the inverse of K_ik = <xi_i, xi_k> /
    ||xi_i||^2, off_signals (D,) 1 off the signal axes, unit (n_st, D) xi_i / ||xi_i||^2, and
    whether the training noise is independent enough to resolve rho (GRAM_FLOOR)."""

    xi: chex.Array
    K_inv: chex.Array
    off_signals: chex.Array
    unit: chex.Array
    resolved: chex.Array


def projection(
    W0: chex.Array, signals: chex.Array, xi: chex.Array, xi_sq: chex.Array
) -> Projection:
    """Projection's parts for W0 (2, m, D), signals (4, D) and training noise xi (n_st, D)
    (cost 2 n_st^2 D + n_st^3, once)."""
    gram = mm("id,kd->ik", xi, xi)
    norm = jnp.sqrt(xi_sq)
    smallest = jnp.linalg.eigvalsh(gram / (norm[:, None] * norm[None, :]))[0]
    return Projection(
        xi=xi,
        K_inv=jnp.linalg.inv(gram / xi_sq[:, None]),
        off_signals=(jnp.abs(signals).sum(0) == 0).astype(W0.dtype),
        unit=xi / xi_sq[:, None],
        resolved=smallest > GRAM_FLOOR,
    )


def projected_coefs(
    W: chex.Array, W0: chex.Array, proj: Projection
) -> tuple[chex.Array, chex.Array]:
    """(rho (2, m, n_st), residual) for an update that leaves the span: rho solves
    <W - W0, xi_k> = sum_i rho_i K_ik (that product at full float32 precision whatever the loop's:
    early in training W - W0 is small, and <W, xi> - <W0, xi> at a lower one would cancel), the
    least-squares coefficients of W - W0's part off the signal axes on the xi_i / ||xi_i||^2;
    residual is the relative norm of what they leave,
    ||W - W0 - P_S(W - W0) - sum_i rho_i xi_i / ||xi_i||^2|| / ||W - W0||. Both NaN where the
    training noise is not `resolved`."""
    delta = W - W0
    rho = mm("jrk,ki->jri", mm("jrd,kd->jrk", delta, proj.xi), proj.K_inv)
    left = delta * proj.off_signals - mm("jri,id->jrd", rho, proj.unit)
    residual = jnp.sqrt((left * left).sum() / (delta * delta).sum())
    return (
        jnp.where(proj.resolved, rho, jnp.nan),
        jnp.where(proj.resolved, residual, jnp.nan),
    )


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
) -> Loop:
    """The dense form (state W) on the training set, viewed also on the `evaluation` samples.
    `precision` (see models.mm) applies to the products with the noise patches, forward and
    gradient. rho is carried where the optimizer keeps the span, else projected at each view."""
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
        return Views(on_train, on_eval, signal_coefs(st.W, init_proj, signals), rho, residual)

    return Loop(strong_init(W0, train.y.shape[0], opt), step, views)


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
        return Views(*pre, st.gamma, st.rho, jnp.float32(jnp.nan))

    return Loop(coef_init(W0.shape[1], train.y.shape[0], opt), step, views)


LOOPS: dict[str, Callable[..., Loop]] = {"dense": dense_loop, "coef": coef_loop}
