"""`[eval] ceiling`: every run paired with the same student trained on true labels, and the
performance gap recovered (PGR) in the runs table (end to end, the summary and the report's
PGR heatmap: test_progress's sweep)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL, small_config

from w2sjax.config.settings import build
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.simulate import simulate
from w2sjax.engine.theory import pgr
from w2sjax.tables.store import runs_table

FIELDS = dict(n_st=60, p_e=0.3, p_h=0.4, p_b="rest", steps=30, hard_labels="coin")


def test_the_ceiling_is_the_clean_teacher_run_and_changes_no_student_number():
    """With the ceiling on, every number of the student is bit for bit what it is without (same
    keys: the switch is paired), and the ceiling's curves are those of a run with the clean
    teacher and the teacher's hard labels (hard_labels ignored) on the same draws. Control: the
    ceiling's curve is not the student's (it learned from other labels)."""
    student, paired = small_config(**FIELDS), small_config(**FIELDS, ceiling=True)
    unfitted = {k: v for k, v in SMALL.items() if k not in ("n_wk", "steps_wk")}
    clean = build(unfitted | FIELDS | {"teacher": "clean", "hard_labels": "teacher"})
    assert paired.key_hash == student.key_hash and paired.point_hash != student.point_hash
    params = stack_params([(student, s) for s in range(3)])
    np.testing.assert_array_equal(stack_params([(paired, s) for s in range(3)]).point, params.point)
    alone = simulate(Shape.of(student, form="coef"), params)
    with_ceiling = simulate(Shape.of(paired, form="coef"), params)
    for table_alone, table_with in zip(alone, with_ceiling, strict=True):
        assert set(table_with) - set(table_alone) <= {"ceiling_test_acc", "ceiling_val_acc"}
        for name, value in table_alone.items():
            np.testing.assert_array_equal(table_with[name], value, err_msg=name)
    _, on_truth = simulate(Shape.of(clean, form="coef"), params)
    for name in ("test_acc", "val_acc"):
        np.testing.assert_array_equal(with_ceiling[1][f"ceiling_{name}"], on_truth[name])
    assert not np.array_equal(with_ceiling[1]["ceiling_test_acc"], alone[1]["test_acc"])


def test_pgr_by_hand():
    """(student - weak) / (ceiling - weak): 0 at the teacher, 1 at the ceiling, negative below
    the teacher, above 1 past the ceiling; NaN where the ceiling is within 0.01 of the teacher
    (either side) or is NaN."""
    student = np.array([0.8, 1.0, 0.9, 0.7, 0.95, 0.9, 0.9, 0.9])
    weak = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8])
    ceiling = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.805, 0.795, np.nan])
    np.testing.assert_allclose(
        pgr(student, weak, ceiling), [0.0, 1.0, 0.5, -0.5, 1.5, np.nan, np.nan, np.nan]
    )


def test_runs_table_reads_the_ceiling_at_its_own_early_stopping_step():
    """ceiling_test_acc is the ceiling's last logged test accuracy; ceiling_best_test_acc its test
    accuracy at its own first step of highest validation accuracy (not the student's, nor its
    own test argmax); pgr_final and pgr_best pair them with the student's final and best."""
    config = small_config(ceiling=True)
    shape = Shape.of(config)
    K = len(shape.log_steps())
    runs = [(config, 0)]
    curve = lambda *v: np.array([[*v, *[v[-1]] * (K - len(v))]])  # noqa: E731
    per_step = {
        # the student: validation best at index 1 (test 0.9 there), final 0.85
        "test_acc": curve(0.7, 0.9, 0.85),
        "val_acc": curve(0.6, 0.95, 0.8),
        # the ceiling: validation best at index 2 (test 0.96), its test argmax at index 1
        "ceiling_test_acc": curve(0.7, 0.99, 0.96, 0.98),
        "ceiling_val_acc": curve(0.7, 0.9, 0.97, 0.9),
    }
    per_run = {
        "weak_test_acc": np.array([0.8]),
        "weak_test_acc_hard": np.array([0.5]),
        "pseudo_label_error": np.array([0.2]),
        "diverged_step": np.array([-1]),
    }
    row = runs_table(runs, per_run, per_step, shape).iloc[0]
    assert row.ceiling_test_acc == pytest.approx(0.98)
    assert row.ceiling_best_test_acc == pytest.approx(0.96)
    assert row.pgr_final == pytest.approx((0.85 - 0.8) / (0.98 - 0.8))
    assert row.pgr_best == pytest.approx((0.9 - 0.8) / (0.96 - 0.8))


def test_runs_without_the_ceiling_have_no_ceiling_columns():
    config = small_config()
    shape = Shape.of(config)
    K = len(shape.log_steps())
    per_step = {k: np.full((1, K), 0.5) for k in ("test_acc", "val_acc")}
    per_run = {k: np.array([0.5]) for k in ("weak_test_acc", "weak_test_acc_hard")}
    per_run |= {"pseudo_label_error": np.array([0.1]), "diverged_step": np.array([-1])}
    table = runs_table([(config, 0)], per_run, per_step, shape)
    assert not {"ceiling_test_acc", "pgr_final", "pgr_best"} & set(table.columns)
