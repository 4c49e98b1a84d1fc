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


@pytest.mark.parametrize("n_st", [[20, 30], [20, 20]])  # a zip may repeat a field's value
def test_to_xarray_makes_a_zip_one_dimension(from_text, n_st):
    """The zip sweep of (n_st, p_b) rows (20 or 30 with 0.2, then 20 with 0.4) makes the grid
    run's runs at those points (the same settings, so the same run_ids): its dataset is built
    from them, no run computed."""
    pytest.importorskip("xarray")
    from w2sjax.api.runner import load_spec

    text = SWEEP_TEXT.replace("[grid]\nn_st = [20, 30]", f"[zip]\nn_st = {n_st}")
    zipped = load_spec(text)
    assert list(zipped.zip) == ["n_st", "p_b"]
    ids = {run_id for c in zipped.points for run_id in _run_ids(c)}
    data = w2sjax.Dataset.__new__(w2sjax.Dataset)
    data.path = from_text.path
    data.runs = from_text.runs[from_text.runs.run_id.isin(ids)].reset_index(drop=True)
    data.steps = from_text.steps[from_text.steps.run_id.isin(ids)].reset_index(drop=True)
    data.sweep = zipped
    array = data.to_xarray()
    assert len(data.runs) == 6 and dict(array.sizes) == {"zip": 2, "seed": 3, "step": 6}
    assert list(array.n_st.values) == n_st and list(array.p_b.values) == [0.2, 0.4]
    run = data.runs[(data.runs.p_b == 0.4) & (data.runs.seed == 1)].iloc[0]
    assert (
        run.n_st == n_st[1] and float(array.sel(zip=1, seed=1).final_test_acc) == run.final_test_acc
    )


def _run_ids(config) -> list[str]:
    from w2sjax.engine.batch import run_id

    return [run_id(config, seed) for seed in range(config.seeds)]


def test_specs_and_overrides_that_say_nothing_or_too_much_are_refused(tmp_path):
    from w2sjax.api.runner import load_spec

    for spec, line in (
        ("", "spec: empty"),
        ("   ", "spec: empty"),
        ("sweeps/nope", "sweeps/nope: cannot read config file"),  # a path, though not .toml
        ("name = 'x'\n[strong]\nn_st = -1", "strong.n_st"),  # TOML text
    ):
        with pytest.raises(w2sjax.ConfigError, match=line):
            load_spec(spec)
    with pytest.raises(w2sjax.ConfigError, match="^seeds: "):
        load_spec(SWEEP_TEXT, seeds=0)
    with pytest.raises(w2sjax.ConfigError, match="^overrides: strong.etaa: unknown field"):
        load_spec(SWEEP_TEXT, {"strong.etaa": 0.1})
    one = load_spec(SWEEP_TEXT, "eta=0.1")  # one override as one string
    assert one.points[0].eta == load_spec(SWEEP_TEXT, {"strong.eta": 0.1}).points[0].eta == 0.1


def test_the_command_line_checks_the_file_before_its_options(sweep_file):
    sweep_file.write_text(sweep_file.read_text().replace("steps = 25", "steps = -25"))
    line = _cli_line(["sweep", str(sweep_file), "--noise", "reduced", "--precision", "bf16"])
    assert "steps" in line and "--noise" not in line


def test_engine_options_refuse_what_is_not_theirs():
    for bad, option in (
        (dict(filters="no"), "--filters"),
        (dict(distributed=True), "distributed"),
        (dict(distributed=w2sjax.Distributed(coordinator="h:1")), None),  # fine
    ):
        if option is None:
            w2sjax.EngineOptions(**bad)
            continue
        with pytest.raises(w2sjax.ConfigError, match=f"^{option}: "):
            w2sjax.EngineOptions(**bad)
    for bad, option in (
        (dict(num_processes=0), "--num-processes"),
        (dict(process_id=-1), "--process-id"),
    ):
        with pytest.raises(w2sjax.ConfigError, match=f"^{option}: must be an integer"):
            w2sjax.Distributed(**bad)


def test_jax_distributed_is_initialised_once_per_process(monkeypatch):
    """A second sweep of the same process (a resume from a notebook) must not initialise
    jax.distributed again, which jax refuses."""
    import jax

    from w2sjax.sweep.dataset import processes

    def again(**kwargs):
        raise RuntimeError("distributed.initialize should only be called once.")

    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(jax.distributed, "initialize", again)
    procs = processes(w2sjax.Distributed())
    assert (procs.index, procs.count) == (jax.process_index(), jax.process_count())


def test_a_dataset_without_a_committed_chunk_says_so(tmp_path):
    (tmp_path / "ds" / "runs" / "bucket=x").mkdir(parents=True)  # its first commit never came
    (tmp_path / "ds" / "spec.toml").write_text('name = "ds"\n')
    with pytest.raises(FileNotFoundError, match="ds/runs: no table parts"):
        w2sjax.load(tmp_path / "ds")
