"""`[weak] teacher`: every entry of TEACHERS against its contract, and the teachers inside whole
runs (weak_test_acc, pseudo-label error, the coin control applied after any teacher)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import SMALL, small_config

from w2sjax.config.settings import build
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.data import HARD
from w2sjax.engine.models import sign, weak_output
from w2sjax.engine.simulate import simulate
from w2sjax.engine.teachers import TEACHERS, fit_weak
from w2sjax.engine.train import draw_run

FLIP_P = 0.3


def _config(teacher: str, **fields):
    """SMALL with `teacher`; the weak set's fields only where the teacher reads them."""
    if teacher == "linear":
        return small_config(teacher=teacher, **fields)
    weak = {"flip_p": FLIP_P} if teacher == "flip" else {}
    small = {k: v for k, v in SMALL.items() if k not in ("n_wk", "steps_wk")}
    return build({**small, "teacher": teacher, **weak, **fields})


def _one_run(config, seed: int = 0):
    p = jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, seed)]))
    return draw_run(Shape.of(config), p), p


@pytest.mark.parametrize("name", TEACHERS)
def test_every_teacher_keeps_the_contract(name):
    """Labels in {+1, -1}, one per training and per test sample: the linear teacher's are the
    signs of the fitted weak model, the clean teacher's the truth, the flip teacher's the truth
    with a flip_p fraction flipped (binomial, 4 sd) on both sets."""
    config = _config(name, n_st=400, n_test=400)
    run, p = _one_run(config)
    got = TEACHERS[name].labels(run, p, Shape.of(config))
    for labels, sample in ((got.train, run.train), (got.test, run.test)):
        labels, y = np.asarray(labels), np.asarray(sample.y)
        assert labels.shape == y.shape and set(np.unique(labels)) <= {-1.0, 1.0}
        if name == "linear":
            w = fit_weak(run.signals, run.weak, p.eta_wk, config.steps_wk)
            np.testing.assert_array_equal(labels, sign(weak_output(w, run.signals, sample)))
        elif name == "clean":
            np.testing.assert_array_equal(labels, y)
        else:
            flipped = (labels != y).mean()
            assert abs(flipped - FLIP_P) <= 4 * np.sqrt(FLIP_P * (1 - FLIP_P) / len(y)), flipped


def _within(fraction: float, p: float, n: int) -> bool:
    return abs(fraction - p) <= 4 * np.sqrt(p * (1 - p) / n)


def test_the_flip_teacher_flips_every_category_and_both_sets_alike():
    """Over 8 seeds the flipped fraction is flip_p (binomial, 4 sd) on hard-only samples and on
    the rest of the training set, and on the test set; the runs' pseudo_label_error and
    weak_test_acc are those fractions exactly. A teacher that flipped by category, or only the
    training set, fails."""
    config = _config("flip", n_st=300, n_test=300, seeds=8)
    by_run = jax.device_get(
        simulate(Shape.of(config), stack_params([(config, s) for s in range(8)]))[0]
    )
    hard_flips, rest_flips, test_flips = [], [], []
    for seed in range(8):
        run, p = _one_run(config, seed)
        got = TEACHERS["flip"].labels(run, p, Shape.of(config))
        wrong = np.asarray(got.train) != np.asarray(run.train.y)
        hard = np.asarray(run.train.c) == HARD
        hard_flips += list(wrong[hard])
        rest_flips += list(wrong[~hard])
        test_flips += list(np.asarray(got.test) != np.asarray(run.test.y))
        assert by_run["pseudo_label_error"][seed] == pytest.approx(wrong.mean())
        assert by_run["weak_test_acc"][seed] == pytest.approx(1 - np.mean(test_flips[-300:]))
    for flips in (hard_flips, rest_flips, test_flips):
        assert _within(np.mean(flips), FLIP_P, len(flips)), np.mean(flips)


@pytest.mark.parametrize("hard_labels", ["teacher", "coin"])
def test_the_clean_teacher_is_the_truth_and_the_coins_apply_after_it(hard_labels):
    """teacher = "clean": weak_test_acc 1; with hard_labels "teacher" no pseudo-label is wrong,
    with "coin" exactly the hard-only samples whose coin differs from the truth (about half of
    them), Proposition 2.1's teacher without a fitted model."""
    config = _config("clean", n_st=300, p_e=0.3, p_h=0.4, p_b="rest", hard_labels=hard_labels)
    by_run = jax.device_get(
        simulate(Shape.of(config), stack_params([(config, s) for s in range(2)]))[0]
    )
    np.testing.assert_array_equal(by_run["weak_test_acc"], 1.0)
    for seed in range(2):
        run, _ = _one_run(config, seed)
        hard = np.asarray(run.train.c) == HARD
        coin_wrong = np.asarray(run.coins) != np.asarray(run.train.y)
        expected = (hard & coin_wrong).mean() if hard_labels == "coin" else 0.0
        assert by_run["pseudo_label_error"][seed] == pytest.approx(expected)
    if hard_labels == "coin":
        assert by_run["pseudo_label_error"].min() > 0.1
