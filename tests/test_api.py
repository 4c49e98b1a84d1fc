"""The Python API (w2sjax/__init__.py): `run` from a path, TOML text or a mapping gives the
command line's tables, resumes, and refuses bad input with the command line's one line before
any compute; `load` gives one Dataset object (tables, spec, summary as the report's, xarray)."""

from __future__ import annotations

import io
import tomllib
from contextlib import redirect_stderr
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from conftest import SWEEP_TEXT, assert_same_tables

import w2sjax
from w2sjax.cli.main import main
from w2sjax.config.toml import parse_overrides
from w2sjax.tables.lock import DatasetLock


@pytest.fixture(scope="module")
def from_text(tmp_path_factory, reference):
    """SWEEP_TEXT run from Python as TOML text (the reference's chunks, so its programs)."""
    return w2sjax.run(SWEEP_TEXT, out=tmp_path_factory.mktemp("api"), quiet=True)


def test_run_from_text_and_mapping_gives_the_command_lines_tables(from_text, tmp_path, reference):
    from_mapping = w2sjax.run(tomllib.loads(SWEEP_TEXT), out=tmp_path, quiet=True)
    assert isinstance(from_text, w2sjax.Dataset)
    assert_same_tables(from_text, reference, exact=True)
    assert_same_tables(from_mapping, reference, exact=True)
    assert (from_text.path / "phase_final_gain.png").is_file()  # figures, as the CLI draws


def test_overrides_and_seeds_give_the_command_lines_sweep(sweep_file):
    from w2sjax.api.runner import load_spec
    from w2sjax.config.grid import load_sweep

    cli = load_sweep(sweep_file, parse_overrides(["p_b=0.2", "n_st=20"]), 2)
    for overrides in (["p_b=0.2", "n_st=20"], {"p_b": 0.2, "n_st": 20}):
        for spec in (sweep_file, str(sweep_file), SWEEP_TEXT, tomllib.loads(SWEEP_TEXT)):
            sweep = load_spec(spec, overrides, seeds=2)
            assert sweep.spec_hash() == cli.spec_hash()
            assert [c.point_hash for c in sweep.points] == [c.point_hash for c in cli.points]


def test_a_second_run_resumes_and_writes_nothing(from_text):
    parts = sorted(from_text.path.glob("*/bucket=*/part-*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    again = w2sjax.run(SWEEP_TEXT, out=from_text.path.parent, quiet=True)
    assert sorted(from_text.path.glob("*/bucket=*/part-*.parquet")) == parts
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    assert len(again.runs) == 12


def _cli_line(args: list[str]) -> str:
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(args) == 2
    return err.getvalue().strip().removeprefix("w2sjax: error: ")


@pytest.mark.parametrize(
    "overrides, cli_args",
    [
        ({"n_st": -1}, ["--set", "n_st=-1"]),
        (["p_h=oops"], ["--set", "p_h=oops"]),
        ({"optimizer": "adam"}, ["--set", "optimizer=adam", "--form", "coef"]),
    ],
)
def test_bad_input_raises_the_command_lines_line_before_any_compute(
    tmp_path, sweep_file, overrides, cli_args
):
    options = w2sjax.EngineOptions(form="coef" if "--form" in cli_args else "auto")
    with mock.patch("w2sjax.sweep.execution.execute") as execute:
        with pytest.raises(w2sjax.ConfigError) as err:
            w2sjax.run(sweep_file, overrides=overrides, out=tmp_path, options=options)
        execute.assert_not_called()
    assert str(err.value) == _cli_line(["sweep", str(sweep_file), *cli_args])
    assert not (tmp_path / "sw").exists()


def test_engine_options_refuse_bad_values_in_one_line(sweep_file):
    line = _cli_line(["sweep", str(sweep_file), "--noise", "reduced", "--precision", "bf16"])
    with pytest.raises(w2sjax.ConfigError, match="^--noise reduced: needs") as err:
        w2sjax.EngineOptions(noise="reduced", precision="bf16")
    assert str(err.value) == line
    for bad in (dict(form="sparse"), dict(max_chunk=0), dict(memory_budget=True)):
        with pytest.raises(w2sjax.ConfigError, match=f"--{next(iter(bad)).replace('_', '-')}"):
            w2sjax.EngineOptions(**bad)


def test_a_held_dataset_is_refused(tmp_path):
    with (
        DatasetLock(tmp_path / "sw"),
        pytest.raises(w2sjax.DatasetRefused, match="being written by pid"),
    ):
        w2sjax.run(SWEEP_TEXT, out=tmp_path, quiet=True)


def test_an_interrupted_run_raises_keyboard_interrupt(tmp_path, sweep_file):
    from w2sjax.sweep.execution import Summary

    cut = Summary(tmp_path / "sw", 3, 0, 1, 0, True, "1 cpu device(s)", 0.1)
    with mock.patch("w2sjax.sweep.execution.execute", return_value=cut):
        with pytest.raises(KeyboardInterrupt, match="after 1 chunks .* to resume"):
            w2sjax.run(sweep_file, out=tmp_path)


def test_a_dataset_holds_tables_spec_and_the_reports_summary(from_text, reference):
    data = w2sjax.load(from_text.path)
    runs, steps = data  # unpacks as load's pair always did
    assert_same_tables((runs, steps), reference, exact=True)
    assert data.axes == ["n_st", "p_b"] and data.filters is None
    assert data.spec == (data.path / "spec.toml").read_text()
    assert data.provenance["spec_hash"] == data.sweep.spec_hash()
    assert "12 runs" in repr(data)
    written = pd.read_csv(data.report().parent / "summary.csv")
    summary = data.summary()
    assert list(written.columns) == list(summary.columns) and len(summary) == 4
    pd.testing.assert_frame_equal(written, summary, check_dtype=False, atol=1e-12)


def test_to_xarray_indexes_the_grid_seed_and_step(from_text, reference):
    pytest.importorskip("xarray")
    data = from_text.to_xarray()
    assert dict(data.sizes) == {"n_st": 2, "p_b": 2, "seed": 3, "step": 6}
    runs, steps = reference
    run = runs[(runs.n_st == 30) & (runs.p_b == 0.4) & (runs.seed == 2)].iloc[0]
    curve = steps[steps.run_id == run.run_id]
    at = data.sel(n_st=30, p_b=0.4, seed=2)
    np.testing.assert_array_equal(at.test_acc_hard.values, curve.test_acc_hard.to_numpy())
    assert float(at.final_test_acc) == run.final_test_acc
    assert 'name = "sw"' in data.attrs["spec"]


def test_to_xarray_makes_a_zip_one_dimension(from_text):
    """The zip sweep of (20, 0.2) and (30, 0.4) makes the grid run's runs at those points (the
    same settings, so the same run_ids): its dataset is built from them, no run computed."""
    pytest.importorskip("xarray")
    from w2sjax.api.runner import load_spec

    zipped = load_spec(SWEEP_TEXT.replace("[grid]", "[zip]"))
    ids = {run_id for c in zipped.points for run_id in _run_ids(c)}
    data = w2sjax.Dataset.__new__(w2sjax.Dataset)
    data.path = from_text.path
    data.runs = from_text.runs[from_text.runs.run_id.isin(ids)].reset_index(drop=True)
    data.steps = from_text.steps[from_text.steps.run_id.isin(ids)].reset_index(drop=True)
    data.sweep = zipped
    array = data.to_xarray()
    assert len(data.runs) == 6 and dict(array.sizes) == {"n_st": 2, "seed": 3, "step": 6}
    assert list(array.p_b.values) == [0.2, 0.4]  # the zip's other field, along n_st
    at = array.sel(n_st=30, seed=1)
    run = data.runs[(data.runs.n_st == 30) & (data.runs.seed == 1)].iloc[0]
    assert run.p_b == 0.4 and float(at.final_test_acc) == run.final_test_acc


def _run_ids(config) -> list[str]:
    from w2sjax.engine.batch import run_id

    return [run_id(config, seed) for seed in range(config.seeds)]
