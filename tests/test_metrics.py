"""Every recorded metric against a value worked out by hand (docs/MODEL.md section 5), on small
cases built so that the right definition and the likely wrong ones give different numbers (each
wrong value is written beside the right one)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from w2sjax.config.settings import build
from w2sjax.engine.batch import Shape
from w2sjax.engine.data import BOTH, EASY, HARD, Sample
from w2sjax.engine.loops.state import Views
from w2sjax.engine.metrics import STEP_METRICS, record, teacher_metrics
from w2sjax.engine.models import Preacts
from w2sjax.tables.store import runs_table

E, H, B = EASY, HARD, BOTH


def _sample(y, c) -> Sample:
    y, c = jnp.asarray(y, jnp.float32), jnp.asarray(c, jnp.float32)
    return Sample(y=y, c=c, a=jnp.ones_like(y), xi=jnp.zeros((len(y), 1)))


def _preacts(f) -> Preacts:
    """Pre-activations of m = 1 filter per class whose outputs f_st are exactly f."""
    f = jnp.asarray(f, jnp.float32)
    noise = jnp.stack([jnp.maximum(f, 0.0), jnp.maximum(-f, 0.0)])[:, None, :]  # (2, 1, n)
    return Preacts(signal=jnp.zeros((2, 1, 2, len(f))), noise=noise)


# Training set: 6 samples, the teacher wrong on samples 1 and 3 (flipped).
TRAIN_Y = [1, 1, -1, -1, 1, -1]
YHAT = [1, -1, -1, 1, 1, -1]
F_TRAIN = [2.0, 0.5, -1.0, -0.5, 1.0, 3.0]  # predictions + + - - + +
# Test set: categories easy, hard, both, hard, both, easy, hard, hard.
TEST_Y = [1, -1, 1, 1, -1, 1, -1, 1]
TEST_C = [E, H, B, H, B, E, H, H]
F_TEST = [1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]  # right on 0, 2, 3, 4, 6
# Validation set: 3 samples, evaluated after the test set in the same pre-activations.
VAL_Y = [1, 1, -1]
F_VAL = [1.0, -1.0, -1.0]  # right on 0 and 2


def _record(rho=None, coefs=None) -> dict:
    rho = jnp.zeros((2, 1, 6)) if rho is None else jnp.asarray(rho, jnp.float32)
    coefs = jnp.zeros((2, 1, 4)) if coefs is None else jnp.asarray(coefs, jnp.float32)
    out = record(
        Views(_preacts(F_TRAIN), _preacts(F_TEST + F_VAL), coefs, rho, jnp.float32(0.25)),
        train=_sample(TRAIN_Y, [E] * 6),
        yhat=jnp.asarray(YHAT, jnp.float32),
        test=_sample(TEST_Y, TEST_C),
        val=_sample(VAL_Y, [E, H, B]),
        filters=False,
    )
    return {k: float(v) for k, v in out.items()}


def test_accuracies_and_loss():
    got = _record()
    # pred vs yhat: + + - - + + against + - - + + -: right on 0, 2, 4 (wrong: vs y, 4 of 6).
    assert got["train_acc_pseudo"] == pytest.approx(3 / 6)
    # pred vs y: + + - - + + against + + - - + -: right on 0-4 (wrong: vs yhat, 3 of 6).
    assert got["train_acc_true"] == pytest.approx(5 / 6)
    # flipped samples 1, 3: pred + and -, true labels + and -: both corrected (wrong: vs yhat, 0).
    assert got["flip_corrected"] == pytest.approx(2 / 2)
    assert got["test_acc"] == pytest.approx(5 / 8)
    # per category: easy {0: right, 5: wrong}; hard {1: wrong, 3: right, 6: right, 7: wrong};
    # both {2: right, 4: right}. (Wrong: hard over the both-signal samples, 1.0.)
    assert got["test_acc_easy"] == pytest.approx(1 / 2)
    assert got["test_acc_hard"] == pytest.approx(2 / 4)
    assert got["test_acc_both"] == pytest.approx(2 / 2)
    assert got["val_acc"] == pytest.approx(2 / 3)  # the 3 samples after the test set's 8
    margins = np.asarray(YHAT) * np.asarray(F_TRAIN)  # 2, -0.5, 1, -0.5, 1, -3
    assert got["train_loss"] == pytest.approx(np.log1p(np.exp(-margins)).mean(), rel=1e-6)
    # |l'_i| = sigmoid(-margin_i): 0.119, 0.622, 0.269, 0.622, 0.269, 0.953 (sum 2.855); the
    # flipped samples 1 and 3 (both margin -0.5) weigh 1.245 of it. (Wrong: the samples the
    # student gets wrong against yhat, 1, 3 and 5, 0.770; the flipped samples' count share, 1/3.)
    weights = 1 / (1 + np.exp(margins))
    assert got["flipped_grad_share"] == pytest.approx(weights[[1, 3]].sum() / weights.sum())
    assert got["flipped_grad_share"] == pytest.approx(0.4361, abs=1e-4)
    assert got["coef_residual"] == 0.25  # the loop's residual, passed through
    assert set(got) == set(STEP_METRICS)


def test_flip_corrected_is_nan_without_flipped_samples_and_val_is_its_own_set():
    got = record(
        Views(
            _preacts([1.0, -1.0]),
            _preacts([1.0, -1.0, -1.0]),  # test: one sample, right; validation: two, both wrong
            jnp.zeros((2, 1, 4)),
            jnp.zeros((2, 1, 2)),
            jnp.float32(jnp.nan),
        ),
        train=_sample([1, -1], [E, E]),
        yhat=jnp.asarray([1.0, -1.0]),
        test=_sample([1], [E]),
        val=_sample([1, 1], [E, E]),
        filters=False,
    )
    assert np.isnan(float(got["flip_corrected"])) and np.isnan(float(got["test_acc_hard"]))
    assert float(got["test_acc"]) == 1.0 and float(got["val_acc"]) == 0.0


def test_noise_coefficient_summaries():
    # rho (2 classes j = +1, -1; m = 2 filters; 6 samples). rho-bar: j = yhat_i, i.e. class
    # index 0 for samples 0, 3, 4 (yhat +1) and index 1 for samples 1, 2, 5 (yhat -1).
    rho = np.array(
        [
            [[1.0, -9.0, -2.0, 7.0, 3.0, -1.0], [4.0, -3.0, -8.0, 2.0, 0.5, -4.0]],  # j = +1
            [[-5.0, 6.0, 2.0, -6.0, -7.0, 1.5], [-1.0, 1.0, 9.0, -2.0, -0.5, 0.5]],  # j = -1
        ]
    )
    got = _record(rho=rho)
    # max_r rho_{yhat_i, r, i}: sample 0: 4; 1: 6; 2: 9; 3: 7; 4: 3; 5: 1.5.
    assert got["rho_bar_max"] == pytest.approx(9.0)
    # clean: 0, 2, 4, 5 -> (4 + 9 + 3 + 1.5) / 4; flipped: 1, 3 -> (6 + 7) / 2.
    # (Wrong: clean over the flipped samples, 6.5.)
    assert got["rho_bar_mean_clean"] == pytest.approx(17.5 / 4)
    assert got["rho_bar_mean_flipped"] == pytest.approx(6.5)
    # rho-underline (j != yhat_i): class index 1 at samples 0, 3, 4, index 0 at 1, 2, 5: -9.
    assert got["rho_under_min"] == pytest.approx(-9.0)


def test_rho_under_min_reads_only_rho_underline():
    rho = np.zeros((2, 1, 6))
    rho[0, 0, 0] = -5.0  # rho-bar (yhat_0 = +1, class index 0): must not count
    rho[1, 0, 0] = -2.0  # rho-underline
    got = _record(rho=rho)
    assert got["rho_under_min"] == pytest.approx(-2.0)  # (wrong: over rho-bar, -5)
    assert got["rho_bar_max"] == pytest.approx(0.0)


def test_signal_coefficient_summaries():
    # coefs (2, m = 2, 4 signals mu+, mu-, nu+, nu-); class j's own signals: mu_j, nu_j.
    coefs = np.array(
        [
            [[3.0, 9.0, 2.0, -7.0], [1.0, 8.0, -4.0, 6.0]],  # j = +1: own mu+ (col 0), nu+ (col 2)
            [[9.0, 5.0, 8.0, 1.0], [7.0, 2.0, 6.0, -3.0]],  # j = -1: own mu- (col 1), nu- (col 3)
        ]
    )
    got = _record(coefs=coefs)
    # gmu_own: mean(max(3, 1), max(5, 2)) = 4 (wrong: the other class's mu, mean(9, 9) = 9).
    assert got["gmu_own"] == pytest.approx(4.0)
    # gnu_pos: mean(max(2, -4), max(1, -3)) = 1.5; gnu_neg: mean(max(-2, 4), max(-1, 3)) = 3.5.
    assert got["gnu_pos"] == pytest.approx(1.5)
    assert got["gnu_neg"] == pytest.approx(3.5)


def test_a_padded_set_records_only_its_own_samples():
    """Samples past a set's own (Sample.real False, as in a padded program) weigh in no metric:
    with two extra training, test and validation samples, each one predicted wrong and with a
    rho past every own sample's, the record is the one without them; the control, the same
    extras taken as the run's own, moves it."""

    def padded(y, c, extra: int, mask: bool) -> Sample:
        s = _sample(list(y) + [1] * extra, list(c) + [H] * extra)
        return s.replace(real=jnp.arange(len(y) + extra) < len(y) if mask else None)

    def padded_record(mask: bool) -> dict:
        rho = jnp.concatenate([jnp.zeros((2, 1, 6)), jnp.full((2, 1, 2), 9.0)], axis=-1)
        out = record(
            Views(
                _preacts(F_TRAIN + [-1.0, -1.0]),
                _preacts(F_TEST + [-1.0, -1.0] + F_VAL + [-1.0, -1.0]),
                jnp.zeros((2, 1, 4)),
                rho,
                jnp.float32(0.25),
            ),
            train=padded(TRAIN_Y, [E] * 6, 2, mask),
            yhat=jnp.asarray(YHAT + [-1, -1], jnp.float32),
            test=padded(TEST_Y, TEST_C, 2, mask),
            val=padded(VAL_Y, [E, H, B], 2, mask),
            filters=False,
        )
        return {k: float(v) for k, v in out.items()}

    plain, masked, unmasked = _record(), padded_record(True), padded_record(False)
    assert masked == pytest.approx(plain, nan_ok=True)
    moved = {k for k in plain if unmasked[k] != pytest.approx(plain[k], nan_ok=True)}
    assert {"train_loss", "test_acc", "test_acc_hard", "val_acc", "rho_bar_max"} <= moved


def test_teacher_metrics():
    test = _sample(TEST_Y, TEST_C)
    pred = jnp.asarray([1, 1, -1, 1, -1, -1, -1, -1], jnp.float32)  # right on 0, 3, 4, 6
    got = teacher_metrics(pred, test, jnp.asarray(YHAT, jnp.float32), _sample(TRAIN_Y, [E] * 6))
    assert float(got["weak_test_acc"]) == pytest.approx(4 / 8)
    # hard-only: 1 wrong, 3 right, 6 right, 7 wrong (easy-only and both-signal read 1/2 here
    # too, so a second case below separates them).
    assert float(got["weak_test_acc_hard"]) == pytest.approx(2 / 4)
    assert float(got["pseudo_label_error"]) == pytest.approx(2 / 6)
    pred = jnp.asarray([1, 1, 1, -1, -1, 1, 1, -1], jnp.float32)  # hard-only all wrong, rest right
    got = teacher_metrics(pred, test, jnp.asarray(YHAT, jnp.float32), _sample(TRAIN_Y, [E] * 6))
    assert float(got["weak_test_acc_hard"]) == 0.0  # (wrong: over easy-only, 1.0)


def test_final_and_best_columns_of_the_runs_table():
    config = build({"d": 40, "steps": 4, "log": "linear", "log_points": 5, "n_st": 6})
    shape = Shape.of(config)
    assert shape.log_steps() == (0, 1, 2, 3, 4)
    curves = np.array([[0.5, 0.9, 0.7, 0.9, 0.6], [0.4, 0.5, np.nan, np.nan, np.nan]])
    val = np.array([[0.5, 0.6, 0.8, 0.8, 0.7], [0.6, 0.5, np.nan, np.nan, np.nan]])
    per_step = {"test_acc": curves, "val_acc": val}
    per_run = {
        "weak_test_acc": np.array([0.8, 0.7]),
        "weak_test_acc_hard": np.array([0.5, 0.5]),
        "pseudo_label_error": np.array([0.1, 0.2]),
        "diverged_step": np.array([-1, 2]),
    }
    df = runs_table([(config, 0), (config, 1)], per_run, per_step, shape)
    # Run 0: validation peaks first at step 2 (0.8; not step 3), where test reads 0.7; the test
    # set's own argmax (the oracle) is step 1 (0.9, first reached; not 3); final 0.6. Run 1
    # diverged at step 2: its NaN rows never win (validation peaks at step 0), its final is NaN.
    assert list(df.best_step) == [2, 0] and list(df.best_test_acc) == [0.7, 0.4]
    assert list(df.best_val_acc) == [0.8, 0.6]
    assert list(df.oracle_step) == [1, 1] and list(df.oracle_test_acc) == [0.9, 0.5]
    assert df.final_test_acc[0] == 0.6 and np.isnan(df.final_test_acc[1])
    assert list(df.diverged) == [False, True]
    assert df.diverged_step[1] == 2 and pd.isna(df.diverged_step[0])
