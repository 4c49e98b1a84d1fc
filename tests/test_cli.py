"""`w2sjax run`: the tables' columns, overrides, provenance, output errors."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import small_config

import w2sjax
from w2sjax.cli.main import main
from w2sjax.config.fields import FIELDS
from w2sjax.config.grid import load_sweep
from w2sjax.config.toml import to_toml
from w2sjax.engine.batch import Shape, run_id, stack_params
from w2sjax.engine.metrics import RUN_METRICS, STEP_METRICS
from w2sjax.engine.train import draw_run
from w2sjax.tables.reading import read_table
from w2sjax.tables.store import FILTER_COLUMNS, INIT_COLUMNS

RUN_COLUMNS = [
    "run_id",
    *FIELDS,
    "seed",
    *RUN_METRICS,
    "benign_snr",
    "abundance",
    "diverged",
    "diverged_step",
    "final_test_acc",
    "best_test_acc",
    "best_step",
    "noise",  # the sampler
    "best_val_acc",
    "oracle_test_acc",
    "oracle_step",
    "bucket",  # the hive partition, added on reading
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config_path = tmp / "cfg.toml"
    config_path.write_text(to_toml(small_config(name="demo", seeds=3).to_dict()))
    code = main(
        [
            "run",
            str(config_path),
            "--out",
            str(tmp / "out"),
            "--set",
            "n_st=24",
            "--set",
            "strong.eta=0.25",
            "--filters",
        ]
    )
    assert code == 0
    return tmp / "out" / "demo"


def test_tables_have_spec_columns(written):
    runs, steps = w2sjax.load(written)
    assert list(runs.columns) == RUN_COLUMNS
    assert list(steps.columns) == ["run_id", "step", *STEP_METRICS, "bucket"]
    (config,) = load_sweep(written / "spec.toml").points
    K = len(Shape.of(config).log_steps())
    assert len(runs) == 3 and len(steps) == 3 * K and runs.run_id.is_unique
    assert (runs.n_st == 24).all() and (runs.eta == 0.25).all() and sorted(runs.seed) == [0, 1, 2]
    assert config.n_st == 24 and config.name == "demo"


def test_run_summaries_agree_with_steps(written):
    runs, steps = w2sjax.load(written)
    for run in runs.itertuples():
        curve = steps[steps.run_id == run.run_id].sort_values("step")
        assert run.final_test_acc == curve.test_acc.iloc[-1]
        assert run.oracle_test_acc == curve.test_acc.max()
        assert run.oracle_step == curve.step.iloc[int(np.argmax(curve.test_acc.to_numpy()))]
        stop = int(np.argmax(curve.val_acc.to_numpy()))  # the first step of highest validation
        assert run.best_step == curve.step.iloc[stop]
        assert run.best_test_acc == curve.test_acc.iloc[stop]
        assert run.best_val_acc == curve.val_acc.iloc[stop]
    expected_snr = runs.n_st * runs.p_b**2 * runs.nu_norm**4 / (runs.sigma_p**4 * runs.d)
    np.testing.assert_allclose(runs.benign_snr, expected_snr)


def test_filters_table_matches_summaries(written):
    _, steps = w2sjax.load(written)
    filters = read_table(written, "filters")
    columns = ["run_id", "step", "j", "r", *FILTER_COLUMNS, *INIT_COLUMNS, "bucket"]
    assert list(filters.columns) == columns
    own_mu = np.where(filters.j == 1, filters.gmu_plus1, filters.gmu_minus1)
    gmu_own = (
        filters.assign(own=own_mu)
        .groupby(["run_id", "step", "j"])
        .own.max()
        .groupby(["run_id", "step"])
        .mean()
    )
    merged = steps.set_index(["run_id", "step"]).gmu_own
    np.testing.assert_allclose(gmu_own.loc[merged.index], merged, rtol=1e-6)


def test_provenance_metadata(written):
    meta = pq.read_schema(next((written / "runs").glob("*/*.parquet"))).metadata
    assert meta[b"w2sjax.spec"].decode() == (written / "spec.toml").read_text()
    assert meta[b"w2sjax.spec_hash"].decode() == load_sweep(written / "spec.toml").spec_hash()
    assert b"w2sjax.jax_version" in meta and b"w2sjax.device_kind" in meta
    assert not list(written.rglob(".*tmp*"))  # no temporary files left behind


def test_unwritable_out_fails_before_compute(tmp_path, capsys):
    config_path = tmp_path / "cfg.toml"
    config_path.write_text(to_toml(small_config().to_dict()))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", str(config_path), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0]


def test_report_gives_the_filters_sign_agreement(written):
    assert main(["report", str(written)]) == 0
    summary = pd.read_csv(written / "report" / "summary.csv")
    assert summary.filter_sign_agreement.between(0, 1).all()
    assert "filter sign agreement" in (written / "report" / "summary.md").read_text()


def test_filters_table_holds_each_filters_initial_projections(written):
    """w0_* is <w^(0)_{j,r}, s> of the run's own W0, at every logged step: redrawn here from the
    run's key (the draws of `w2sjax run` above: n_st = 24, eta = 0.25, seed 1)."""
    runs, _ = w2sjax.load(written)
    filters = read_table(written, "filters")
    config = small_config(name="demo", seeds=3, n_st=24, eta=0.25)
    run = runs.set_index("run_id").loc[run_id(config, 1)]
    shape = Shape.of(config, filters=True, noise=run.noise)
    draws = draw_run(shape, jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, 1)])))
    want = np.einsum("jrd,sd->jrs", np.asarray(draws.W0), np.asarray(draws.signals))  # (2, m, 4)
    mine = filters[filters.run_id == run.name]
    assert mine.step.nunique() > 1
    for step, rows in mine.groupby("step"):
        rows = rows.sort_values(["j", "r"], ascending=[False, True])  # j = +1 first, as in W0
        got = rows[list(INIT_COLUMNS)].to_numpy().reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=str(step))
