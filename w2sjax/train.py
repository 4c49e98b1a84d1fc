"""Training and recording for one run (docs/MODEL.md sections 2 to 5): weak fit, pseudo-labels, the
strong GD loop with its exact noise coefficients, and the per-step metrics.

Everything here is a pure function of one run's scalars; `simulate` vmaps it over runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from w2sjax.batch import Params, Shape
from w2sjax.data import (
    BOTH,
    EASY,
    HARD,
    MU_NEG,
    MU_POS,
    NU_NEG,
    NU_POS,
    Sample,
    labels,
    patch_coefs,
    signal_matrix,
)
from w2sjax.models import (
    J_SIGN,
    Preacts,
    logistic_loss,
    mm,
    sign,
    strong_output_of,
    strong_preacts,
    weak_output,
)
from w2sjax.noise import SAMPLERS, NoiseKeys

RUN_METRICS = ("weak_test_acc", "weak_test_acc_hard", "pseudo_label_error")
STEP_METRICS = (
    "train_loss",
    "train_acc_pseudo",
    "train_acc_true",
    "flip_corrected",
    "test_acc",
    "test_acc_easy",
    "test_acc_hard",
    "test_acc_both",
    "gmu_own",
    "gnu_pos",
    "gnu_neg",
    "rho_bar_max",
    "rho_bar_mean_clean",
    "rho_bar_mean_flipped",
    "rho_under_min",
)


def masked_mean(x: chex.Array, mask: chex.Array) -> chex.Array:
    """Mean of x over mask; NaN when the mask is empty (e.g. no flipped samples)."""
    count = mask.sum()
    return jnp.where(count > 0, jnp.where(mask, x, 0.0).sum() / jnp.maximum(count, 1), jnp.nan)


def fit_weak(signals: chex.Array, data: Sample, eta_wk: chex.Array, steps_wk: int) -> chex.Array:
    """(d,) weak weights: full-batch GD from w = 0 on the logistic loss with TRUE labels."""
    opt = optax.sgd(eta_wk)
    loss = lambda w: logistic_loss(data.y * weak_output(w, signals, data)).mean()  # noqa: E731

    def step(_: Any, carry: tuple) -> tuple:
        w, opt_state = carry
        updates, opt_state = opt.update(jax.grad(loss)(w), opt_state)
        return optax.apply_updates(w, updates), opt_state

    w0 = jnp.zeros(signals.shape[1], jnp.float32)
    return jax.lax.fori_loop(0, steps_wk, step, (w0, opt.init(w0)))[0]


@chex.dataclass(frozen=True)
class Strong:
    """What the strong GD loop carries: W (2, m, d), rho (2, m, n_st), the optimizer state."""

    W: chex.Array
    rho: chex.Array
    opt_state: Any


def strong_loss(
    W: chex.Array, signals: chex.Array, data: Sample, yhat: chex.Array, precision: str = "highest"
) -> tuple:
    """L_S(W) on pseudo-labels, with aux (noise pre-activations (2, m, n), margins (n,))."""
    pre = strong_preacts(W, signals, data, precision)
    margin = yhat * strong_output_of(pre)
    return logistic_loss(margin).mean(), (pre.noise, margin)


def strong_step(
    state: Strong,
    opt: optax.GradientTransformation,
    eta: chex.Array,
    signals: chex.Array,
    data: Sample,
    yhat: chex.Array,
    xi_sq: chex.Array,
    precision: str = "highest",
) -> Strong:
    """One full-batch GD step on L_S, and the exact rho recursion of MODEL.md section 4:
    rho += -(eta / (n m)) l'_i ReLU'(<w_{j,r}, xi_i>) ||xi_i||^2 j yhat_i, all at W^(t).
    xi_sq (n,) is ||xi_i||^2, passed in so the loop does not recompute it."""
    grad_fn = jax.value_and_grad(partial(strong_loss, precision=precision), has_aux=True)
    (_, (noise_pre, margin)), grad = grad_fn(state.W, signals, data, yhat)
    updates, opt_state = opt.update(grad, state.opt_state, state.W)
    _, m, n = noise_pre.shape
    l_prime = -jax.nn.sigmoid(-margin)
    drho = -(eta / (n * m)) * (noise_pre > 0) * (l_prime * xi_sq * yhat) * J_SIGN[:, None, None]
    return Strong(
        W=optax.apply_updates(state.W, updates), rho=state.rho + drho, opt_state=opt_state
    )


def signal_coefs(W: chex.Array, init_proj: chex.Array, signals: chex.Array) -> chex.Array:
    """(2, m, 4) <w_{j,r}^(t) - w_{j,r}^(0), s> for s = mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}:
    gmu is [..., :2], gnu is [..., 2:]."""
    return mm("jrd,sd->jrs", W, signals) - init_proj


def coef_summaries(
    coefs: chex.Array, rho: chex.Array, yhat: chex.Array, flipped: chex.Array
) -> dict[str, chex.Array]:
    """MODEL.md section 5 coefficient summaries from coefs (2, m, 4) and rho (2, m, n)."""
    own_mu = jnp.stack([coefs[0, :, MU_POS], coefs[1, :, MU_NEG]])  # (2, m): gmu_{j,r,j}
    own_nu = jnp.stack([coefs[0, :, NU_POS], coefs[1, :, NU_NEG]])  # (2, m): gnu_{j,r,j}
    is_bar = (J_SIGN[:, None] == yhat[None, :])[:, None, :]  # (2, 1, n): j = yhat_i
    rho_own_max = jnp.where(yhat > 0, rho[0], rho[1]).max(0)  # (n,) max_r rho_{yhat_i, r, i}
    return {
        "gmu_own": own_mu.max(1).mean(),
        "gnu_pos": own_nu.max(1).mean(),
        "gnu_neg": (-own_nu).max(1).mean(),
        "rho_bar_max": jnp.where(is_bar, rho, -jnp.inf).max(),
        "rho_bar_mean_clean": masked_mean(rho_own_max, ~flipped),
        "rho_bar_mean_flipped": masked_mean(rho_own_max, flipped),
        "rho_under_min": jnp.where(is_bar, jnp.inf, rho).min(),
    }


def record(
    train_pre: Preacts,
    test_pre: Preacts,
    coefs: chex.Array,
    rho: chex.Array,
    train: Sample,
    yhat: chex.Array,
    test: Sample,
    filters: bool,
) -> dict[str, chex.Array]:
    """Every MODEL.md section 5 metric (scalars) from the current pre-activations on the training
    and test sets, the signal coefficients (2, m, 4) and rho (2, m, n); plus `filters` if asked."""
    f_train = strong_output_of(train_pre)
    pred_train = sign(f_train)
    pred_test = sign(strong_output_of(test_pre))
    flipped = yhat != train.y
    test_right = pred_test == test.y
    out = {
        "train_loss": logistic_loss(yhat * f_train).mean(),
        "train_acc_pseudo": (pred_train == yhat).mean(),
        "train_acc_true": (pred_train == train.y).mean(),
        "flip_corrected": masked_mean(pred_train == train.y, flipped),
        "test_acc": test_right.mean(),
        "test_acc_easy": masked_mean(test_right, test.c == EASY),
        "test_acc_hard": masked_mean(test_right, test.c == HARD),
        "test_acc_both": masked_mean(test_right, test.c == BOTH),
        **coef_summaries(coefs, rho, yhat, flipped),
    }
    if filters:
        out["filters"] = coefs
    return out


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
    precision: str = "highest",
) -> Coef:
    """One GD step on L_S in coefficient space, equal to `strong_step` in exact arithmetic:
    rho by MODEL.md section 4's recursion, and gamma_s += <Delta W, s> with Delta W = -eta grad L_S,
    whose signal-patch part is sum_p ReLU'(<w, x^(p)>) <x^(p), s> (signal_gram (4, 4) = S S^T)."""
    pre = coef_preacts(state, data, precision)
    margin = yhat * strong_output_of(pre)
    _, m, n = pre.noise.shape
    weight = -jax.nn.sigmoid(-margin) * yhat  # l'_i yhat_i
    scale = -(eta / (n * m)) * J_SIGN[:, None, None]
    drho = scale * (pre.noise > 0) * (weight * xi_sq)
    active = (pre.signal > 0).astype(jnp.float32)
    dgamma = scale * mm("jrpn,n,pns,st->jrt", active, weight, data.coefs, signal_gram)
    return Coef(gamma=state.gamma + dgamma, rho=state.rho + drho)


def teacher_metrics(
    test_pred: chex.Array, test: Sample, yhat: chex.Array, train_y: chex.Array
) -> dict[str, chex.Array]:
    """RUN_METRICS from the teacher's test predictions (n_test,) and its pseudo-labels yhat
    (n_st,) of training samples with true labels train_y: its test accuracy, overall and on
    hard-only samples, and the fraction of pseudo-labels that are wrong."""
    right = test_pred == test.y
    return {
        "weak_test_acc": right.mean(),
        "weak_test_acc_hard": masked_mean(right, test.c == HARD),
        "pseudo_label_error": (yhat != train_y).mean(),
    }


class RunData(NamedTuple):
    """A run's draws in its working coordinates (D = Shape.dim): the signals (4, D), the weak,
    training and test samples, and W0 (2, m, D)."""

    signals: chex.Array
    weak: Sample
    train: Sample
    test: Sample
    W0: chex.Array


def draw_run(shape: Shape, p: Params) -> RunData:
    """Every random draw of one run, from its key fold_in(fold_in(key(base_seed), point), seed):
    split in four (weak data, strong data, test data, init), each set's labels from its key, and
    the noise from the sampler Shape.noise names (noise.py)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(p.base_seed), p.point), p.seed)
    k_wk, k_st, k_test, k_init = jax.random.split(key, 4)
    sets = [
        labels(k, n, p.p_e, p.p_h)
        for k, n in ((k_wk, shape.n_wk), (k_st, shape.n_st), (k_test, shape.n_test))
    ]
    keys = NoiseKeys(key, *(k_xi for *_, k_xi in sets), k_init)
    noise = SAMPLERS[shape.noise].draw(shape, p, keys)
    weak, train, test = (
        Sample(y=y, c=c, a=a, xi=xi)
        for (y, c, a, _), xi in zip(sets, (noise.weak, noise.train, noise.test), strict=True)
    )
    signals = signal_matrix(shape.dim, shape.easy_signal, p.mu_norm, p.nu_norm)
    return RunData(signals, weak, train, test, noise.W0)


def dense_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    test: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    precision: str = "highest",
) -> tuple[Strong, Callable, Callable]:
    """The dense form's (initial state, step, views): views(state) gives `record`'s first four
    arguments (train and test pre-activations, signal coefficients, rho). `precision` (see
    models.mm) applies to the products with the noise patches, forward and gradient."""
    opt = optax.sgd(eta)
    step = partial(
        strong_step,
        opt=opt,
        eta=eta,
        signals=signals,
        data=train,
        yhat=yhat,
        xi_sq=(train.xi * train.xi).sum(-1),
        precision=precision,
    )
    init_proj = mm("jrd,sd->jrs", W0, signals)

    def views(st: Strong) -> tuple:
        return (
            strong_preacts(st.W, signals, train, precision),
            strong_preacts(st.W, signals, test, precision),
            signal_coefs(st.W, init_proj, signals),
            st.rho,
        )

    n_st = train.y.shape[0]
    return Strong(W=W0, rho=jnp.zeros((2, W0.shape[1], n_st)), opt_state=opt.init(W0)), step, views


def coef_loop(
    W0: chex.Array,
    signals: chex.Array,
    train: Sample,
    test: Sample,
    yhat: chex.Array,
    eta: chex.Array,
    precision: str = "highest",
) -> tuple[Coef, Callable, Callable]:
    """The coefficient form's (initial state, step, views), as `dense_loop`'s."""
    xi_sq = (train.xi * train.xi).sum(-1)
    on_train, on_test = (coef_data(W0, signals, train, s, xi_sq) for s in (train, test))
    step = partial(
        coef_step,
        eta=eta,
        data=on_train,
        yhat=yhat,
        xi_sq=xi_sq,
        signal_gram=mm("sd,td->st", signals, signals),
        precision=precision,
    )

    def views(st: Coef) -> tuple:
        pre = (coef_preacts(st, on_train, precision), coef_preacts(st, on_test, precision))
        return *pre, st.gamma, st.rho

    m, n_st = W0.shape[1], train.y.shape[0]
    return Coef(gamma=jnp.zeros((2, m, 4)), rho=jnp.zeros((2, m, n_st))), step, views


def simulate_run(shape: Shape, p: Params) -> tuple[dict, dict]:
    """One run of MODEL.md sections 1 to 5 for scalar Params.

    Returns (per_run, per_step): per_run maps RUN_METRICS to scalars and "diverged_step" to the
    first step whose state is not finite (-1: none); per_step maps STEP_METRICS to (K,) arrays
    over the K logged steps of `shape.log_steps()` (and "filters" to (K, 2, m, 4)), NaN from the
    divergence on.
    """
    signals, weak_data, train, test, W0 = draw_run(shape, p)

    w = fit_weak(signals, weak_data, p.eta_wk, shape.steps_wk)
    yhat = sign(weak_output(w, signals, train))
    per_run = teacher_metrics(sign(weak_output(w, signals, test)), test, yhat, train.y)

    loop = coef_loop if shape.form == "coef" else dense_loop
    state, step, views = loop(W0, signals, train, test, yhat, p.eta, shape.precision)

    def rec(st: Strong | Coef, diverged: chex.Array) -> dict:
        out = record(*views(st), train=train, yhat=yhat, test=test, filters=shape.filters)
        return jax.tree_util.tree_map(lambda v: jnp.where(diverged, jnp.nan, v), out)

    def segment(carry: tuple, xs: tuple) -> tuple[tuple, dict]:
        start, length = xs

        def body(i: chex.Array, c: tuple) -> tuple:
            st, diverged_at = c
            st = step(st)
            finite = jnp.all(
                jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(st)])
            )
            return st, jnp.where((diverged_at < 0) & ~finite, start + i + 1, diverged_at)

        state, diverged_at = jax.lax.fori_loop(0, length, body, carry)
        return (state, diverged_at), rec(state, diverged_at >= 0)

    # Segment lengths are the same for every run, so under vmap the inner loop stays a real loop
    # and only logged steps are stacked. The first segment has length 0: step 0 is recorded from
    # the loop's carry, never from constants XLA would fold at compile time. diverged_at is the
    # first step whose state is not finite (-1: none); every logged row from it on is NaN.
    log_steps = np.asarray(shape.log_steps())
    lengths = np.diff(log_steps, prepend=0)
    xs = (jnp.asarray(log_steps - lengths, jnp.int32), jnp.asarray(lengths, jnp.int32))
    (_, diverged_at), per_step = jax.lax.scan(segment, (state, jnp.int32(-1)), xs)
    per_run["diverged_step"] = diverged_at
    return per_run, per_step
