"""Summaries over seeds (the paper-table layout) and the bench report's keys."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from w2sjax.analysis import mean_interval, row_table
from w2sjax.bench import run_bench, write


def test_mean_interval_is_the_t_interval():
    x = pd.Series([0.80, 0.84, 0.86, 0.90])
    mean, lo, hi = mean_interval(x)
    half = 3.182 * np.std(x, ddof=1) / 2  # t_{0.975, 3} * s / sqrt(4)
    assert mean == pytest.approx(0.85) and lo == pytest.approx(0.85 - half)
    assert hi == pytest.approx(0.85 + half)
    assert mean_interval(pd.Series([0.5, np.nan])) == (0.5, 0.5, 0.5)


def _synthetic():
    """Two n_st rows x 3 seeds; test accuracy peaks at step 10 for n_st = 200 only."""
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(6)],
            "n_st": [75] * 3 + [200] * 3,
            "weak_test_acc": [0.84, 0.85, 0.86] * 2,
        }
    )
    rows = []
    for i, run in runs.iterrows():
        for step in (0, 10, 100):
            peak = run.n_st == 200 and step == 10
            rows.append(
                {
                    "run_id": run.run_id,
                    "step": step,
                    "test_acc": (0.97 if peak else 0.85) + 0.01 * (i % 3),
                    "train_acc_pseudo": 0.88 if peak else 1.0,
                    "flip_corrected": 0.9 if peak else 0.1,
                }
            )
    return runs, pd.DataFrame(rows)


def test_row_table_reads_the_best_step_of_the_mean_curve():
    table = row_table(*_synthetic()).set_index("n_st")
    assert list(table.seeds) == [3, 3]
    assert table.loc[200, "best_step"] == 10 and table.loc[200, "best_test_acc"] == pytest.approx(
        0.98
    )
    assert table.loc[200, "train_acc_pseudo_best"] == pytest.approx(0.88)
    assert table.loc[200, "flip_corrected_best"] == pytest.approx(0.9)
    assert table.loc[200, "final_test_acc"] == pytest.approx(0.86)
    assert table.loc[75, "best_step"] == 0  # flat curve: the first maximum
    assert table.loc[75, "weak_test_acc"] == pytest.approx(0.85)
    assert table.loc[75, "weak_test_acc_lo"] < 0.85 < table.loc[75, "weak_test_acc_hi"]


def test_bench_report_has_the_documented_keys(tmp_path):
    report = run_bench("cpu", runs=2, steps=3, use_torch=False, log=lambda *_: None)
    saved = json.loads(write(report, tmp_path).read_text())
    assert {"device", "jax_version"} <= set(saved)
    keys = {
        "n_st",
        "d",
        "m",
        "runs",
        "steps",
        "engine_run_steps_per_s",
        "baseline_run_steps_per_s",
        "torch_run_steps_per_s",
        "ceiling_flops",
        "achieved_flops",
        "compile_s",
    }
    assert [b["n_st"] for b in saved["buckets"]] == [75, 500, 2000]
    for bucket in saved["buckets"]:
        assert keys <= set(bucket) and bucket["torch_run_steps_per_s"] is None
        assert bucket["engine_run_steps_per_s"] > 0 and bucket["ceiling_flops"] > 0
        expected = bucket["engine_run_steps_per_s"] * 8 * bucket["m"] * bucket["n_st"] * bucket["d"]
        assert bucket["achieved_flops"] == pytest.approx(expected)
