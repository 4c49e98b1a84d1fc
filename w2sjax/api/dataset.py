"""A dataset as one object: its tables (pandas), its spec, its summary over seeds and its report,
and with xarray installed the whole of it as an array over the grid's axes, seed and step."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from w2sjax.analysis.summary import summary_of
from w2sjax.config.fields import FIELDS
from w2sjax.config.grid import Sweep, load_sweep
from w2sjax.tables.layout import SPEC_FILE
from w2sjax.tables.reading import load as load_tables
from w2sjax.tables.reading import provenance, read_table

if TYPE_CHECKING:
    import xarray

# Columns that name a run or its chunk rather than measure it.
_NOT_MEASURES = ("run_id", "bucket", "seed", "step")


class Dataset:
    """The dataset <out>/<name>/ of a sweep, read once: `runs` (one row per run) and `steps` (one
    row per run and logged step), sorted by run_id (and step), committed chunks only; a damaged
    dataset raises DamagedDataset naming the file and `w2sjax check --repair`. `runs, steps =
    w2sjax.load(path)` unpacks it. docs/DATASETS.md lists every column."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.runs, self.steps = load_tables(self.path)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.runs, self.steps))

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.path)!r}: {len(self.runs)} runs, "
            f"{self.steps.step.nunique()} logged steps, axes {self.axes})"
        )

    @cached_property
    def filters(self) -> pd.DataFrame | None:
        """The per-filter table (a sweep run with filters on), else None."""
        return read_table(self.path, "filters") if (self.path / "filters").is_dir() else None

    @cached_property
    def spec(self) -> str:
        """spec.toml's text: the sweep in canonical form, with its engine record."""
        return (self.path / SPEC_FILE).read_text()

    @cached_property
    def sweep(self) -> Sweep:
        """The sweep spec.toml describes (its base config, axes and grid points)."""
        return load_sweep(self.path / SPEC_FILE, read_data=False)

    @property
    def axes(self) -> list[str]:
        """The grid's axes, in file order ([grid] then [zip])."""
        return self.sweep.axes()

    @cached_property
    def provenance(self) -> dict[str, str]:
        """What made the tables: spec hash, w2sjax, jax and python versions, device, commit."""
        return provenance(self.path)

    def summary(self) -> pd.DataFrame:
        """One row per grid point: each metric's mean over seeds with its 95% interval and the
        regime, as `w2sjax report` writes to summary.csv."""
        return summary_of(self.runs, self.steps, self.filters, self.axes)

    def report(self, fmt: str = "png") -> Path:
        """Write <path>/report/ (summary.md, summary.csv, figures in png or pdf) as `w2sjax
        report` does; returns summary.md's path."""
        from w2sjax.analysis.report import write_report

        return write_report(self.path, fmt)

    def to_xarray(self) -> xarray.Dataset:
        """An xarray.Dataset over the grid's axes, `seed` and (for the steps' metrics) `step`:
        every numeric measure of the runs and steps tables as a variable (a runs column that the
        steps table also has, such as ceiling_test_acc, is the steps', whose last step it is).
        A [zip] block is one dimension `zip` (its rows by position: a zip may repeat a value in
        one field), each of its fields a coordinate along it; the spec text is in attrs. Needs
        xarray (`pip install w2sjax[xarray]`)."""
        try:
            import xarray as xr
        except ImportError:
            raise ImportError(
                "Dataset.to_xarray needs xarray: pip install 'w2sjax[xarray]'"
            ) from None
        sweep = self.sweep
        runs = self.runs
        if sweep.zip:
            runs = runs.assign(zip=runs.run_id.map(_zip_rows(sweep)))
        index = [*sweep.grid, *(["zip"] if sweep.zip else []), "seed"]
        steps = self.steps.merge(runs[["run_id", *index]], on="run_id")
        step_vars = _measures(steps, exclude=index)
        run_vars = _measures(runs, exclude=[*index, *step_vars])
        data = xr.merge(
            [
                runs.set_index(index)[run_vars].astype(float).to_xarray(),
                steps.set_index([*index, "step"])[step_vars].astype(float).to_xarray(),
            ]
        )
        for name in sweep.zip:
            along = runs.drop_duplicates("zip").set_index("zip")[name]
            data = data.assign_coords({name: ("zip", along.loc[data["zip"].values].to_numpy())})
        data.attrs.update(spec=self.spec, path=str(self.path))
        return data


def _zip_rows(sweep: Sweep) -> dict[str, int]:
    """run_id -> the position of its [zip] row. Grid points run over the grid's axes first and
    the zip's rows fastest (config.grid.expand), so point i is zip row i % rows."""
    from w2sjax.engine.batch import run_id

    rows = len(next(iter(sweep.zip.values())))
    return {
        run_id(point, seed): i % rows
        for i, point in enumerate(sweep.points)
        for seed in range(point.seeds)
    }


def _measures(table: pd.DataFrame, exclude: list[str]) -> list[str]:
    """The numeric or boolean columns of `table` that measure a run: not a setting field, not an
    identifier, not in `exclude`."""
    return [
        c
        for c in table.columns
        if c not in FIELDS
        and c not in _NOT_MEASURES
        and c not in exclude
        and (pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]))
    ]


def load(path: str | Path) -> Dataset:
    """The dataset at `path` (a sweep's <out>/<name>/, e.g. results/default)."""
    return Dataset(path)
