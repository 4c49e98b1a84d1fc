"""The regime rule (w2sjax/analysis/regimes.py) on hand-made summary rows and on synthetic tables
read through summary_table, where the early-stopping step and the test set's argmax disagree."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from w2sjax.analysis.regimes import THRESHOLDS, regime
from w2sjax.analysis.summary import filter_sign_agreement, summary_table

NAN = float("nan")
# A benign row: every pseudo-label fitted, every category learned, no label correction.
BENIGN = dict(
    flip_corrected_best=0.3,
    best_test_acc=0.97,
    train_acc_pseudo_final=1.0,
    final_test_acc_easy=0.99,
    final_test_acc_hard=0.97,
    final_test_acc_both=0.99,
    best_test_acc_hard=0.97,
)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({}, "benign"),
        ({"final_test_acc_hard": 0.95}, "benign"),  # the benign line is inclusive
        ({"final_test_acc_hard": NAN}, "benign"),  # p_h = 0: no hard-only sample to fail
        ({"final_test_acc_hard": 0.88}, "harmful"),  # test error 0.12 p_h exactly
        ({"final_test_acc_hard": 0.6}, "harmful"),
        ({"final_test_acc_hard": 0.6, "final_test_acc_easy": NAN}, "harmful"),  # p_e = 0
        ({"final_test_acc_hard": 0.9}, "outside: hard-only between harmful and benign"),
        (
            {"final_test_acc_hard": 0.6, "final_test_acc_easy": 0.9},
            "outside: easy signal not learned",
        ),
        (
            {"final_test_acc_hard": 0.6, "final_test_acc_both": 0.94},
            "outside: both-signal samples not learned",
        ),
        ({"train_acc_pseudo_final": 0.985}, "outside: pseudo-labels not fitted"),
        ({"train_acc_pseudo_final": NAN}, "outside: pseudo-labels not fitted"),
        (
            {
                "train_acc_pseudo_final": 0.9,
                "final_test_acc_easy": 0.9,
                "final_test_acc_both": 0.9,
                "final_test_acc_hard": 0.9,
            },
            "outside: pseudo-labels not fitted, easy signal not learned, both-signal samples not "
            "learned, hard-only between harmful and benign",
        ),
        # label correction is checked first, at the early-stopping step
        ({"flip_corrected_best": 0.8, "best_test_acc": 0.95}, "label_correction_no_forgetting"),
        (
            {"flip_corrected_best": 0.9, "best_test_acc_hard": 0.97, "final_test_acc_hard": 0.72},
            "label_correction_then_forgetting",
        ),
        (
            {"flip_corrected_best": 0.9, "best_test_acc_hard": 0.97, "final_test_acc_hard": 0.82},
            "label_correction_no_forgetting",
        ),
        (  # a fall of 0.2 up to round-off (0.97 - 0.77 = 0.19999999999999996) is forgetting
            {"flip_corrected_best": 0.9, "best_test_acc_hard": 0.97, "final_test_acc_hard": 0.77},
            "label_correction_then_forgetting",
        ),
        ({"flip_corrected_best": 0.79}, "benign"),
        ({"flip_corrected_best": 0.9, "best_test_acc": 0.94}, "benign"),
        ({"flip_corrected_best": NAN}, "benign"),  # no flipped pseudo-label at all
    ],
)
def test_regime_rule(change, expected):
    assert regime(SimpleNamespace(**{**BENIGN, **change})) == expected


@pytest.mark.parametrize(
    "overall, hard, expected",
    [
        ((0.97, 0.72), (0.97, 0.92), "label_correction_no_forgetting"),
        ((0.97, 0.92), (0.97, 0.72), "label_correction_then_forgetting"),
    ],
)
def test_forgetting_is_the_fall_of_hard_only_accuracy_not_of_overall(overall, hard, expected):
    """Rows that carry overall accuracy as well, falling by more than the threshold where hard-only
    accuracy does not and the other way round: only the hard-only fall is forgetting (hard-only
    samples are a fraction p_h of the test set, so overall accuracy hides most of their fall)."""
    row = {**BENIGN, "flip_corrected_best": 0.9, "best_test_acc": overall[0]}
    row |= {"final_test_acc": overall[1], "best_test_acc_hard": hard[0]}
    row |= {"final_test_acc_hard": hard[1]}
    assert regime(SimpleNamespace(**row)) == expected


def _tables(points: dict[int, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and steps of three seeds per n_st, logged at steps 0, 10 and 100. points[n_st] maps a
    step to that step's metrics (the same for every seed) and "best_step" to the seeds' own
    early-stopping steps."""
    runs, rows = [], []
    for n_st, point in points.items():
        for seed, best in enumerate(point["best_step"]):
            run = f"{n_st}-{seed}"
            runs.append(
                {"run_id": run, "n_st": n_st, "best_step": best, "weak_test_acc": 0.85}
                | {"pseudo_label_error": 0.15, "oracle_test_acc": 0.99}
            )
            rows += [{"run_id": run, "step": s, **point[s]} for s in (0, 10, 100)]
    return pd.DataFrame(runs), pd.DataFrame(rows)


def _step(test: float, easy: float, hard: float, both: float, flip: float, train: float) -> dict:
    return {
        "test_acc": test,
        "test_acc_easy": easy,
        "test_acc_hard": hard,
        "test_acc_both": both,
        "flip_corrected": flip,
        "train_acc_pseudo": train,
        "train_acc_true": 0.9,
    }


def test_summary_rows_get_their_regime_at_the_early_stopping_step():
    start = _step(0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
    peak = _step(0.98, 0.99, 0.97, 0.99, 0.9, 0.86)  # label correction at step 10
    forgot = _step(0.88, 1.0, 0.6, 1.0, 0.0, 1.0)  # every pseudo-label fitted, hard-only lost
    points = {
        75: {0: start, 10: forgot, 100: forgot, "best_step": [100, 100, 100]},
        # Its seeds stop at step 10: corrected labels, then hard-only falls by 0.37.
        2000: {0: start, 10: peak, 100: forgot, "best_step": [10, 10, 10]},
        # The same curves, but validation picks the last step: the test set's argmax (step 10)
        # would call it label correction; the rule, read at the early-stopping step, does not.
        20000: {0: start, 10: peak, 100: forgot, "best_step": [100, 100, 100]},
        500: {0: start, 10: peak, 100: _step(0.99, 1, 0.97, 1, 0, 1), "best_step": [100, 0, 100]},
    }
    table = summary_table(*_tables(points), by=["n_st"]).set_index("n_st")
    assert table.regime.to_dict() == {
        75: "harmful",
        500: "benign",
        2000: "label_correction_then_forgetting",
        20000: "harmful",
    }


def test_model_md_states_every_threshold_in_its_rule():
    """Each numbered rule of MODEL.md section 8 states the thresholds the code uses for it."""
    text = (REPO / "docs" / "MODEL.md").read_text()
    section = text[text.index("## 8.") :]
    rules = re.split(r"\n\d\. ", section[section.index("\n1. ") :])[1:4]
    t = THRESHOLDS
    wanted = [
        (t.corrected, t.peak, t.forgetting),
        (t.fitted, t.learned),
        (t.fitted, t.learned, t.harmful_hard),
    ]
    for rule, numbers in zip(rules, wanted, strict=True):
        assert {f"{v:g}" for v in numbers} <= set(re.findall(r"\d+\.\d+", rule)), rule


def test_filter_sign_agreement_reads_own_class_filters_at_the_last_step():
    # Run "a", m = 2, at step 10 (its last): own-class coefficients (gnu_plus1 for j = +1,
    # gnu_minus1 for j = -1) against the initial projections on the same nu: agree, disagree
    # (j = +1); agree, still 0 (j = -1): 2/4. The other class's coefficient always agrees with
    # its projection, so the other class's columns would give 4/4, gnu_plus1 for every filter
    # 3/4, and step 0 (every coefficient 0) 0/4.
    # Run "b": a part written before the projections were recorded (NaN): NaN, not 0.
    rows = []
    own_cases = ((1, 0, 0.5, 0.2), (1, 1, 0.3, -0.1), (-1, 0, -0.4, -0.2), (-1, 1, 0.0, 0.3))
    for step, scale in ((0, 0.0), (10, 1.0)):
        for j, r, own, w0 in own_cases:
            mine, other = ("plus1", "minus1") if j > 0 else ("minus1", "plus1")
            rows.append(
                {"run_id": "a", "step": step, "j": j, "r": r}
                | {f"gnu_{mine}": scale * own, f"w0_nu_{mine}": w0}
                | {f"gnu_{other}": scale * 1.0, f"w0_nu_{other}": 1.0}
            )
            rows.append(rows[-1] | {"run_id": "b", "w0_nu_plus1": NAN, "w0_nu_minus1": NAN})
    agreement = filter_sign_agreement(pd.DataFrame(rows))
    assert agreement["a"] == pytest.approx(2 / 4)
    assert np.isnan(agreement["b"])
    old = pd.DataFrame(rows).drop(columns=["w0_nu_plus1", "w0_nu_minus1"])
    without = filter_sign_agreement(old)
    assert without.isna().all() and set(without.index) == {"a", "b"}


def test_filter_sign_agreement_of_unlearned_diverged_and_empty_runs():
    """A start of exactly 0 with nothing learned (sigma_0 = 0) does not agree; a diverged run (NaN
    coefficients) and an empty table give NaN, not a number."""
    rows = [
        {"run_id": run, "step": 5, "j": j, "r": 0, "gnu_plus1": g, "gnu_minus1": g}
        | {"w0_nu_plus1": 0.0, "w0_nu_minus1": 0.0}
        for run, g in (("zero", 0.0), ("diverged", NAN))
        for j in (1, -1)
    ]
    agreement = filter_sign_agreement(pd.DataFrame(rows))
    assert agreement["zero"] == 0.0 and np.isnan(agreement["diverged"])
    empty = pd.DataFrame(columns=["run_id", "step", "j", "r", "gnu_plus1", "w0_nu_plus1"])
    assert filter_sign_agreement(empty).empty
