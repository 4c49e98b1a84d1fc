"""The coefficient loop form (docs/MODEL.md section 4): W - W0 carried as its coefficients
(gamma, rho) on the signals and the training noise, 4 m n_st^2 a step from a Gram matrix
computed once.

It exists because a step then costs nothing in d, which wins when n_st is below the number of
noise coordinates (Shape.of's "auto"); it is exact only for optimizers that keep the span."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from w2sjax.engine.activations import Act
from w2sjax.engine.data import Sample, patch_coefs
from w2sjax.engine.loops.state import Coef, Loop, LoopInputs, Views, out_sign, trained
from w2sjax.engine.models import Preacts, filter_sums, mm, strong_output_of
from w2sjax.engine.optimizers import Opt


@chex.dataclass(frozen=True)
class CoefData:
    """What the coefficient form precomputes once per run. For a sample set X: init (2, m, 4)
    <w^(0), s>, q0 (2, m, n) <w^(0), xi_j>, K (n, n_st) <xi_j, xi_i> / ||xi_i||^2 (xi_i from the
    training set; bfloat16 at precision "bf16"), coefs (2, n, 4) its signal-patch
    coefficients."""

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
        K=mm("nd,id->ni", s.xi, train.xi) / xi_sq,
        coefs=patch_coefs(s),
    )


def rho_times_K(rho: chex.Array, K: chex.Array, precision: str = "highest") -> chex.Array:
    """sum_i rho_i K[j, i] (2, m, n), from rho (2, m, n_st) and CoefData.K (n, n_st): <w - w^(0),
    xi_j>, the step's one large product, (n x n_st)(n_st x 2m)."""
    # K and rho are both contracted along their last axis and the (n, 2, m) result is moved
    # after: with K too large for the CPU's caches, XLA runs this product 1.8x (n_st = 2048) to
    # 2.1x (4096) faster than rho (2m x n_st) times K (n_st x n) (docs/notes/benchmarks.md,
    # "2026-12-07, 2 CPU cores: the coefficient form's product").
    return mm("ni,jri->njr", K, rho, precision=precision).transpose(1, 2, 0)


def coef_preacts(state: Coef, data: CoefData, precision: str = "highest") -> Preacts:
    """Pre-activations from coefficients: <w, s> = init + gamma (noise is orthogonal to signals),
    <w, xi_j> = q0_j + sum_i rho_i <xi_i, xi_j> / ||xi_i||^2 (rho_times_K)."""
    return Preacts(
        signal=mm("jrs,pns->jrpn", data.init + state.gamma, data.coefs),
        noise=data.q0 + rho_times_K(state.rho, data.K, precision),
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
    scale = -(eta / (n * m)) * out_sign(state.v)
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


class CoefPre(NamedTuple):
    """What the coefficient form computes once per run (coef_setup): xi_sq (n_st,), the CoefData
    of the training set and of the evaluation samples, and signal_gram (4, 4) S S^T."""

    xi_sq: chex.Array
    on_train: CoefData
    on_eval: CoefData
    signal_gram: chex.Array


def coef_setup(inputs: LoopInputs) -> CoefPre:
    """CoefPre of one run's inputs (cost 2 n_st (n_st + n_eval) d)."""
    # the synthetic source's only (batch.Shape refuses it for images): its signals are the four
    # the coefficients are read against, so `reference` is theirs
    W0, signals, train, evaluation = inputs[:4]
    xi_sq = (train.xi * train.xi).sum(-1)
    on_train, on_eval = (coef_data(W0, signals, train, s, xi_sq) for s in (train, evaluation))
    if inputs.precision == "bf16":  # K is the steps' bf16 operand: rounded once, here
        on_train, on_eval = (d.replace(K=d.K.astype(jnp.bfloat16)) for d in (on_train, on_eval))
    return CoefPre(xi_sq, on_train, on_eval, mm("sd,td->st", signals, signals))


def coef_loop(inputs: LoopInputs, yhat: chex.Array, pre: CoefPre | None = None) -> Loop:
    """The coefficient form (state gamma, rho), as `dense_loop` (pre None: coef_setup(inputs)
    here), for an optimizer that keeps the span (Shape.of refuses the others)."""
    pre = coef_setup(inputs) if pre is None else pre
    W0, _, train, _, eta, act, opt, precision, v0, _ = inputs
    step = partial(
        coef_step,
        opt=opt,
        eta=eta,
        data=pre.on_train,
        yhat=yhat,
        xi_sq=pre.xi_sq,
        signal_gram=pre.signal_gram,
        act=act,
        precision=precision,
    )

    def views(st: Coef) -> Views:
        on = (coef_preacts(st, pre.on_train, precision), coef_preacts(st, pre.on_eval, precision))
        return Views(*on, st.gamma, st.rho, jnp.float32(jnp.nan), st.v)

    return Loop(coef_init(W0.shape[1], train.y.shape[0], opt, v0), step, views)
