"""Runs made before the teacher, activation and optimizer registries (tests/golden/, commit
a45f215) come out of today's code unchanged: every column they had, under both noise samplers,
with the new fields at their defaults. Exactly under the jax version, backend and CPU vector
extension that made them (XLA's CPU code vectorises a reduction to the widest extension the host
has, so an AVX2-only host sums in another order: last-bit differences in train_loss, seen on an
AVX2 AMD EPYC); elsewhere to float32 round-off."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

import w2sjax
from w2sjax.cli.main import main
from w2sjax.config.fields import FIELDS
from w2sjax.tables.reading import ADDED_FIELDS

GOLDEN = Path(__file__).parent / "golden"
NEW_FIELDS = tuple(f for f in ADDED_FIELDS if f != "hard_labels")  # it existed already


def _has_avx512f() -> bool:
    """Whether this host's CPU has AVX-512 (read where Linux says; False elsewhere)."""
    try:
        return " avx512f " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.parametrize("noise", ["full", "reduced"])
def test_runs_made_before_the_registries_are_unchanged(noise, tmp_path):
    # a two-axis sweep with a choice axis (hard_labels): no heatmap, and no crash drawing one
    args = ["sweep", str(GOLDEN / "golden.toml"), "--noise", noise, "--quiet"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    runs, steps = w2sjax.load(tmp_path / "golden")
    made_by = json.loads((GOLDEN / "made_by.json").read_text())
    exact = (made_by["jax"], made_by["backend"], made_by["avx512f"]) == (
        jax.__version__,
        jax.default_backend(),
        _has_avx512f(),
    )
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
