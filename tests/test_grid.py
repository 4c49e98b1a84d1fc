"""Sweep files: grid, zip and "rest" expansion, bad axes, buckets, one trace per bucket."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions
from w2sjax.engine.simulate import TRACES
from w2sjax.sweep.buckets import bytes_per_run, chunk_size, plan
from w2sjax.sweep.execution import execute


def _write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_grid_zip_and_rest_expansion(tmp_path):
    path = _write(
        tmp_path,
        """
        [data]
        p_e = "rest"
        p_h = 0.3
        [grid]
        p_b = [0.1, 0.5]
        n_st = [10, 20, 40]
        [zip]
        sigma_p = [0.5, 1.0]
        strong.eta = [0.1, 0.2]
    """,
    )
    sweep = load_sweep(path, seeds=2)
    assert sweep.axes() == ["p_b", "n_st", "sigma_p", "eta"]
    assert len(sweep.points) == 2 * 3 * 2 and sweep.seeds == 2 and sweep.name == "s"
    first = sweep.points[:2]
    assert [(p.p_b, p.n_st, p.sigma_p, p.eta) for p in first] == [
        (0.1, 10, 0.5, 0.1),
        (0.1, 10, 1.0, 0.2),
    ]
    for p in sweep.points:
        assert p.p_e == pytest.approx(0.7 - p.p_b) and p.p_h == 0.3
    assert {(p.sigma_p, p.eta) for p in sweep.points} == {(0.5, 0.1), (1.0, 0.2)}


def test_spec_text_round_trips(tmp_path):
    path = _write(tmp_path, '[data]\np_e = "rest"\n[grid]\np_b = [0.1, 0.3]\n')
    sweep = load_sweep(path)
    again = load_sweep(_write(tmp_path, sweep.to_toml()))
    assert again.points == sweep.points and again.spec_hash() == sweep.spec_hash()


def test_override_replaces_an_axis(tmp_path):
    path = _write(tmp_path, '[data]\np_e = "rest"\n[grid]\np_b = [0.1, 0.3]\nn_st = [5, 6]\n')
    sweep = load_sweep(path, {"p_b": 0.2})
    assert sweep.axes() == ["n_st"] and {p.p_b for p in sweep.points} == {0.2}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[grid]\nbogus = [1]\n", "grid.bogus: unknown field"),
        ("[grid]\nweak.n_st = [1]\n", "grid.weak.n_st: unknown field"),
        ("[grid]\nn_st = []\n", "grid.n_st: must be a non-empty list"),
        ("[grid]\nn_st = 5\n", "grid.n_st: must be a non-empty list"),
        ("[grid]\nseeds = [1, 2]\n", "grid.seeds: not a sweep axis"),
        ("[zip]\nn_st = [1, 2]\np_b = [0.1]\n", "zip: fields must have equal-length lists"),
        ("[grid]\nn_st = [1]\n[zip]\nn_st = [2]\n", "zip.n_st: field is also a [grid] axis"),
        ("[grid]\nn_st = [10, -3]\n", "grid point n_st=-3: strong.n_st: must be"),
        ("[grid]\nn_st = [20, 30, 20]\n", "grid point n_st=20: the same setting as grid point"),
        (
            '[data]\np_e = "rest"\np_h = 0.5\n[grid]\np_b = [0.2, 0.7]\n',
            "grid point p_b=0.7: data.p_e",
        ),
        ("grid = 3\n", "[grid]: must be a table"),
    ],
)
def test_bad_axes_one_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_sweep(_write(tmp_path, text))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_buckets_group_runs_by_shape(sweep_file):
    sweep = load_sweep(sweep_file)
    buckets = plan(sweep)
    assert [b.shape.n_st for b in buckets] == [20, 30]
    assert all(len(b.runs) == 2 * 3 for b in buckets)
    assert {c.p_b for b in buckets for c, _ in b.runs} == {0.2, 0.4}
    assert len({b.id for b in buckets}) == 2
    # a dynamic-only axis never splits a bucket
    assert len(plan(load_sweep(sweep_file, {"n_st": 20}))) == 1


def test_chunk_size_rules(sweep_file):
    shape = plan(load_sweep(sweep_file))[0].shape
    one = bytes_per_run(shape)
    assert chunk_size(shape, 100, 1, 10 * one) == 10
    assert chunk_size(shape, 100, 4, 10 * one) == 40  # budget is per device
    assert chunk_size(shape, 100, 4, 10 * one, max_chunk=6) == 8  # whole devices
    assert chunk_size(shape, 5, 1, 10**6 * one) == 5  # never more than the bucket
    assert chunk_size(shape, 5, 1, 1) == 1  # never below one run


def test_one_trace_per_bucket_however_many_chunks(sweep_file, tmp_path):
    sweep = load_sweep(sweep_file, {"steps": 17})  # a shape no other test compiles
    shapes = [b.shape for b in plan(sweep)]
    before = {s: TRACES[s] for s in shapes}
    summary = execute(sweep, tmp_path / "out", EngineOptions(max_chunk=2, pad="off"), quiet=True)
    assert summary.chunks == 6 and summary.ran == 12
    assert all(TRACES[s] - before[s] == 1 for s in shapes)


# The image files the npz sweeps are prepared for (never committed), as stand-ins of their
# layout: image shape, training and held-out images (fewer than the real files hold).
STAND_INS = {"mnist": ((28, 28), 10000, 2000), "cifar10": ((32, 32, 3), 10000, 2000)}


def test_shipped_sweep_files_are_valid(tmp_path):
    sweeps = sorted((Path(__file__).resolve().parents[1] / "sweeps").rglob("*.toml"))
    assert any(p.name == "default.toml" for p in sweeps)
    assert len({p.stem for p in sweeps}) == len(sweeps)  # a file's stem names its dataset
    for path in sweeps:
        overrides = {}
        if 'source = "npz"' in path.read_text():
            image, train, test = STAND_INS[path.stem.split("_")[0]]
            stand_in = tmp_path / f"{path.stem}.npz"
            x = np.random.default_rng(0).integers(1, 255, (train + test, *image), np.uint8)
            y = np.arange(train + test) % 10
            np.savez(
                stand_in, x_train=x[:train], y_train=y[:train], x_test=x[train:], y_test=y[train:]
            )
            overrides = {"path": str(stand_in)}
        sweep = load_sweep(path, overrides)
        assert sweep.name == path.stem and len(sweep.points) >= 1
