"""Theorem 3.4's and 3.6's regimes read by their mechanism (docs/MODEL.md section 8): which
category of test sample the student gets right, at its early-stopping step and at the end.

One rule, applied to a summary row (seed means) by `regime`; its thresholds are stated once, in
THRESHOLDS, and REGIME_RULE spells the rule out for reports. A category the test set does not
hold (its accuracy NaN, e.g. easy-only at p_e = 0) is not asked to be learned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CATEGORIES = ("easy", "hard", "both")


@dataclass(frozen=True)
class Thresholds:
    """The rule's numbers. corrected, peak: flip_corrected and test accuracy at the
    early-stopping step for label correction; forgetting: the fall of hard-only test accuracy from
    there to the last step that counts as forgetting; fitted: train accuracy against the
    pseudo-labels for "every pseudo-label fitted"; learned: a category's test accuracy counted as
    learned; harmful_hard: hard-only test accuracy at most this is harmful (test error >= 0.12 p_h,
    since hard-only samples are a fraction p_h of the test set)."""

    corrected: float = 0.8
    peak: float = 0.95
    forgetting: float = 0.2
    fitted: float = 0.99
    learned: float = 0.95
    harmful_hard: float = 0.88


THRESHOLDS = Thresholds()

# Why a row is outside every regime, in the order they are listed after "outside: ".
NOT_FITTED = "pseudo-labels not fitted"
NOT_LEARNED = {"easy": "easy signal not learned", "both": "both-signal samples not learned"}
HARD_BETWEEN = "hard-only between harmful and benign"

REGIME_RULE = (
    f"label_correction_then_forgetting / _no_forgetting if at the early-stopping step "
    f"flip_corrected >= {THRESHOLDS.corrected} and test >= {THRESHOLDS.peak} (forgetting: "
    f"hard-only test falls by >= {THRESHOLDS.forgetting} from there to the last step); else "
    f"benign if at the last step train vs pseudo >= {THRESHOLDS.fitted} and easy-only, hard-only "
    f"and both-signal test >= {THRESHOLDS.learned}; else harmful if train vs pseudo >= "
    f"{THRESHOLDS.fitted}, easy-only and both-signal >= {THRESHOLDS.learned} and hard-only <= "
    f"{THRESHOLDS.harmful_hard} at the last step; else 'outside: ' and what failed (seed means; "
    f"a category absent from the test set is not required)"
)


# Seed means land on a threshold only up to float round-off (0.97 - 0.77 < 0.2): the rule's
# lines are inclusive within this.
EPS = 1e-9


def _at_least(value: float, level: float) -> bool:
    """value >= level, vacuously true for a category the test set does not hold (NaN)."""
    return math.isnan(value) or value >= level - EPS


def regime(row, t: Thresholds = THRESHOLDS) -> str:
    """The regime of one summary row (attributes as in summary.summary_table: flip_corrected_best,
    best_test_acc, train_acc_pseudo_final, final_/best_test_acc_{easy,hard,both}), by REGIME_RULE:
    "label_correction_then_forgetting", "label_correction_no_forgetting", "benign", "harmful" or
    "outside: <what failed>"."""
    if row.flip_corrected_best >= t.corrected - EPS and row.best_test_acc >= t.peak - EPS:
        fall = row.best_test_acc_hard - row.final_test_acc_hard
        return f"label_correction_{'then' if fall >= t.forgetting - EPS else 'no'}_forgetting"
    final = {c: float(getattr(row, f"final_test_acc_{c}")) for c in CATEGORIES}
    failed = [NOT_FITTED] if not row.train_acc_pseudo_final >= t.fitted - EPS else []
    failed += [NOT_LEARNED[c] for c in ("easy", "both") if not _at_least(final[c], t.learned)]
    if not failed and _at_least(final["hard"], t.learned):
        return "benign"
    if not failed and final["hard"] <= t.harmful_hard + EPS:
        return "harmful"
    if t.harmful_hard + EPS < final["hard"] < t.learned - EPS:
        failed.append(HARD_BETWEEN)
    return "outside: " + ", ".join(failed)
