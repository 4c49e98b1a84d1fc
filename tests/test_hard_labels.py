"""`[weak] hard_labels`: the student's labels from the teacher's, every entry of HARD_LABELS
against its contract, and the "coin" control inside whole runs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from w2sjax.engine.batch import Shape, run_id, stack_params
from w2sjax.engine.data import HARD
from w2sjax.engine.models import sign, weak_output
from w2sjax.engine.simulate import simulate
from w2sjax.engine.teachers import fit_weak
from w2sjax.engine.train import HARD_LABELS, draw_run


def _one(params, i: int):
    return jax.tree_util.tree_map(lambda a: a[i], params)


@pytest.mark.parametrize("name", HARD_LABELS)
def test_every_hard_label_rule_keeps_the_contract(name):
    """Labels in {+1, -1}, one per training sample, the teacher's wherever the sample is not
    hard-only; on hard-only samples either the teacher's or the run's coins."""
    config = small_config(n_st=300, p_e=0.3, p_h=0.4, p_b="rest")
    run = draw_run(Shape.of(config), _one(stack_params([(config, 0)]), 0))
    yhat = jnp.where(jnp.arange(300) % 3 == 0, 1.0, -1.0)
    got = np.asarray(HARD_LABELS[name](yhat, run.train, run.coins))
    hard = np.asarray(run.train.c) == HARD
    assert got.shape == (300,) and set(np.unique(got)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(got[~hard], np.asarray(yhat)[~hard])
    source = {"teacher": yhat, "coin": run.coins}[name]
    np.testing.assert_array_equal(got[hard], np.asarray(source)[hard])


def test_coin_labels_hard_only_samples_by_fair_coins_and_leaves_the_rest():
    """A coin setting is its own setting (point_hash, run_id, bucket) with its teacher setting's
    draws (paired): its runs' teacher is the teacher setting's, run for run (its test accuracy
    recomputed from the teacher setting's draws); its pseudo-label error is recomputed from those
    draws and the coins; on hard-only samples the coins agree with the truth, and with the
    teacher's own labels, about half the time (binomial, 4 sd)."""
    fields = dict(n_st=400, n_wk=200, steps_wk=100, p_e=0.3, p_h=0.4, p_b="rest")
    teacher, coin = small_config(**fields), small_config(**fields, hard_labels="coin")
    assert coin.point_hash != teacher.point_hash and coin.key_hash == teacher.key_hash
    assert run_id(coin, 0) != run_id(teacher, 0)
    assert Shape.of(coin) == dataclasses.replace(Shape.of(teacher), hard_labels="coin")
    params = {c.hard_labels: stack_params([(c, s) for s in range(4)]) for c in (teacher, coin)}
    np.testing.assert_array_equal(params["coin"].point, params["teacher"].point)
    by_coin = simulate(Shape.of(coin), params["coin"])[0]
    agree_y, agree_teacher, count = 0.0, 0.0, 0
    for i in range(4):
        run = draw_run(Shape.of(teacher), _one(params["teacher"], i))
        w = fit_weak(run.signals, run.weak, teacher.eta_wk, teacher.steps_wk)
        yhat = np.asarray(sign(weak_output(w, run.signals, run.train)))
        on_test = np.asarray(sign(weak_output(w, run.signals, run.test)) == run.test.y).mean()
        assert by_coin["weak_test_acc"][i] == pytest.approx(on_test)
        y, coins = np.asarray(run.train.y), np.asarray(run.coins)
        hard = np.asarray(run.train.c) == HARD
        labelled = np.where(hard, coins, yhat)
        assert by_coin["pseudo_label_error"][i] == pytest.approx((labelled != y).mean())
        assert (labelled != y).mean() != pytest.approx((yhat != y).mean())  # the coins matter
        agree_y += (coins[hard] == y[hard]).sum()
        agree_teacher += (coins[hard] == yhat[hard]).sum()
        count += hard.sum()
    for agree in (agree_y, agree_teacher):
        assert abs(agree / count - 0.5) <= 4 * np.sqrt(0.25 / count), agree / count
