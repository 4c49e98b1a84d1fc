"""What a run records (docs/MODEL.md section 5): the per-step metrics from pre-activations and
coefficients, and the teacher's per-run metrics. Pure functions of one run's arrays."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from w2sjax.engine.activations import RELU, Act
from w2sjax.engine.data import BOTH, EASY, HARD, MU_NEG, MU_POS, NU_NEG, NU_POS, Sample
from w2sjax.engine.loops.state import Views
from w2sjax.engine.models import J_SIGN, Preacts, logistic_loss, sign, strong_output_of

RUN_METRICS = ("weak_test_acc", "weak_test_acc_hard", "pseudo_label_error")
STEP_METRICS = (
    "train_loss",
    "train_acc_pseudo",
    "train_acc_true",
    "flip_corrected",
    "flipped_grad_share",
    "test_acc",
    "test_acc_easy",
    "test_acc_hard",
    "test_acc_both",
    "val_acc",
    "gmu_own",
    "gnu_pos",
    "gnu_neg",
    "rho_bar_max",
    "rho_bar_mean_clean",
    "rho_bar_mean_flipped",
    "rho_under_min",
    "coef_residual",
)
# What reads the noise patch: NaN where samples have none (the natural construction).
NOISE_METRICS = (
    "rho_bar_max",
    "rho_bar_mean_clean",
    "rho_bar_mean_flipped",
    "rho_under_min",
    "coef_residual",
)
# With `[eval] ceiling`: the STEP_METRICS of the ceiling run (the same student trained on the
# true labels) that the steps table keeps, as ceiling_<name>.
CEILING_STEP_METRICS = ("test_acc", "val_acc")
# With `[strong] second_layer = "trained"`: the mean and the smallest of j v_{j,r}, each filter's
# output weight signed by its class (1 at the start; below 0, a filter that changed sides).
SECOND_LAYER_STEP_METRICS = ("v_own_mean", "v_own_min")


def masked_mean(x: chex.Array, mask: chex.Array) -> chex.Array:
    """Mean of x over mask; NaN when the mask is empty (e.g. no flipped samples)."""
    count = mask.sum()
    return jnp.where(count > 0, jnp.where(mask, x, 0.0).sum() / jnp.maximum(count, 1), jnp.nan)


def mean_over(x: chex.Array, real: chex.Array | None) -> chex.Array:
    """Mean of x (n,) over the run's own samples `real` (n,) bool (None: all of them)."""
    return x.mean() if real is None else masked_mean(x, real)


def within(mask: chex.Array, real: chex.Array | None) -> chex.Array:
    """mask (n,) bool within the run's own samples `real` (None: all of them)."""
    return mask if real is None else mask & real


def coef_summaries(
    coefs: chex.Array,
    rho: chex.Array,
    yhat: chex.Array,
    flipped: chex.Array,
    real: chex.Array | None = None,
) -> dict[str, chex.Array]:
    """MODEL.md section 5 coefficient summaries from coefs (2, m, 4) and rho (2, m, n), over the
    run's own samples `real` (n,) bool (None: all; `flipped` already within them)."""
    own_mu = jnp.stack([coefs[0, :, MU_POS], coefs[1, :, MU_NEG]])  # (2, m): gmu_{j,r,j}
    own_nu = jnp.stack([coefs[0, :, NU_POS], coefs[1, :, NU_NEG]])  # (2, m): gnu_{j,r,j}
    is_bar = (J_SIGN[:, None] == yhat[None, :])[:, None, :]  # (2, 1, n): j = yhat_i
    rho_own_max = jnp.where(yhat > 0, rho[0], rho[1]).max(0)  # (n,) max_r rho_{yhat_i, r, i}
    clean, bar, under = (within(mask, real) for mask in (~flipped, is_bar, ~is_bar))
    return {
        "gmu_own": own_mu.max(1).mean(),
        "gnu_pos": own_nu.max(1).mean(),
        "gnu_neg": (-own_nu).max(1).mean(),
        "rho_bar_max": jnp.where(bar, rho, -jnp.inf).max(),
        "rho_bar_mean_clean": masked_mean(rho_own_max, clean),
        "rho_bar_mean_flipped": masked_mean(rho_own_max, flipped),
        "rho_under_min": jnp.where(under, rho, jnp.inf).min(),
    }


def split_preacts(pre: Preacts, n: int) -> tuple[Preacts, Preacts]:
    """Pre-activations on samples [:n] and [n:] (the sample axis is the last)."""
    head = Preacts(signal=pre.signal[..., :n], noise=pre.noise[..., :n])
    tail = Preacts(signal=pre.signal[..., n:], noise=pre.noise[..., n:])
    return head, tail


def record(
    views: Views,
    train: Sample,
    yhat: chex.Array,
    test: Sample,
    val: Sample,
    filters: bool,
    act: Act = RELU,
) -> dict[str, chex.Array]:
    """Every MODEL.md section 5 metric (scalars) from a loop's views: the current pre-activations
    on the training set and on the evaluation samples (the test set, then the validation set),
    the signal coefficients (2, m, 4), rho (2, m, n) and the decomposition's residual, with a
    trained second layer its weights (SECOND_LAYER_STEP_METRICS); plus `filters` if asked. Each
    set's metrics are over the run's own samples of it (Sample.real)."""
    train_pre, coefs = views.train, views.coefs
    test_pre, val_pre = split_preacts(views.evaluation, test.y.shape[0])
    f_train = strong_output_of(train_pre, act, views.second)
    pred_train = sign(f_train)
    pred_test = sign(strong_output_of(test_pre, act, views.second))
    real = train.real
    flipped = within(yhat != train.y, real)
    test_right = pred_test == test.y
    # log |l'_i|, sample i's weight in the gradient; in logs, so margins past ~88 (where float32
    # sigmoid(-margin) underflows to 0) still give a share.
    log_weight = jax.nn.log_sigmoid(-yhat * f_train)
    out = {
        "train_loss": mean_over(logistic_loss(yhat * f_train), real),
        "train_acc_pseudo": mean_over(pred_train == yhat, real),
        "train_acc_true": mean_over(pred_train == train.y, real),
        "flip_corrected": masked_mean(pred_train == train.y, flipped),
        # Theorem 3.6's driver of forgetting: the wrongly pseudo-labelled samples' share of it.
        "flipped_grad_share": jnp.exp(
            logsumexp(log_weight, b=flipped) - logsumexp(log_weight, b=real)
        ),
        "test_acc": mean_over(test_right, test.real),
        "test_acc_easy": masked_mean(test_right, within(test.c == EASY, test.real)),
        "test_acc_hard": masked_mean(test_right, within(test.c == HARD, test.real)),
        "test_acc_both": masked_mean(test_right, within(test.c == BOTH, test.real)),
        "val_acc": mean_over(sign(strong_output_of(val_pre, act, views.second)) == val.y, val.real),
        **coef_summaries(coefs, views.rho, yhat, flipped, real),
        "coef_residual": views.residual,
    }
    if views.second is not None:
        own = views.second * J_SIGN[:, None]  # j v_{j,r}: 1 at the start
        out |= {"v_own_mean": own.mean(), "v_own_min": own.min()}
    if filters:
        out["filters"] = coefs
    return out


def teacher_metrics(
    test_pred: chex.Array, test: Sample, yhat: chex.Array, train: Sample
) -> dict[str, chex.Array]:
    """RUN_METRICS from the teacher's test predictions (n_test,) and its pseudo-labels yhat
    (n_st,) of the training samples: its test accuracy, overall and on hard-only samples, and
    the fraction of training samples whose pseudo-label is wrong, each over the run's own
    samples (Sample.real)."""
    right = test_pred == test.y
    return {
        "weak_test_acc": mean_over(right, test.real),
        "weak_test_acc_hard": masked_mean(right, within(test.c == HARD, test.real)),
        "pseudo_label_error": mean_over(yhat != train.y, train.real),
    }
