"""Runs made before the teacher, activation and optimizer registries (tests/golden/, commit
a45f215) come out of today's code unchanged: every column they had, under both noise samplers,
with the new fields at their defaults. Exactly under the jax version and backend that made them;
elsewhere XLA may order a reduction differently, so to float32 round-off."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import w2sjax
from w2sjax.cli import main
from w2sjax.config.fields import FIELDS
from w2sjax.reading import ADDED_FIELDS

GOLDEN = Path(__file__).parent / "golden"
NEW_FIELDS = tuple(f for f in ADDED_FIELDS if f != "hard_labels")  # it existed already


@pytest.mark.parametrize("noise", ["full", "reduced"])
def test_runs_made_before_the_registries_are_unchanged(noise, tmp_path):
    # a two-axis sweep with a choice axis (hard_labels): no heatmap, and no crash drawing one
    args = ["sweep", str(GOLDEN / "golden.toml"), "--noise", noise, "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    runs, steps = w2sjax.load(tmp_path / "golden")
    made_by = json.loads((GOLDEN / "made_by.json").read_text())
    exact = (made_by["jax"], made_by["backend"]) == (jax.__version__, jax.default_backend())
    for table, name in ((runs, "runs"), (steps, "steps")):
        golden = pd.read_parquet(GOLDEN / f"{noise}_{name}.parquet")
        got = table[golden.columns].reset_index(drop=True)
        for column in golden.columns:
            a, b = got[column].to_numpy(), golden[column].to_numpy()
            if exact or a.dtype.kind not in "fc":
                np.testing.assert_array_equal(a, b, err_msg=f"{name}.{column}")
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{column}")
    for field in NEW_FIELDS:
        assert (runs[field] == FIELDS[field].default).all(), field
    assert not list((tmp_path / "golden").glob("phase_*"))
