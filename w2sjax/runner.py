"""Run one config's seeds as one batch and write its tables (config -> simulate -> store)."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from w2sjax.batch import Shape, stack_params
from w2sjax.config import Config, to_toml
from w2sjax.simulate import simulate
from w2sjax.store import (
    filters_table,
    runs_table,
    steps_table,
    table_metadata,
    write_parquet,
    write_text,
)


def check_writable(out_dir: Path) -> None:
    """Fail before any compute if the output folder cannot be created or written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise OSError(f"--out {out_dir}: cannot write there ({err.strerror})") from None


def run(config: Config, out: str | Path = "results", filters: bool = False) -> Path:
    """Simulate config.seeds runs of one config as one batch and write <out>/<name>/ tables.

    Returns the folder holding runs/, steps/ (and filters/ when asked) and spec.toml.
    """
    out_dir = Path(out) / config.name
    check_writable(out_dir)
    runs = [(config, seed) for seed in range(config.seeds)]
    shape = Shape.of(config, filters=filters)
    per_run, per_step = jax.device_get(simulate(shape, stack_params(runs)))
    spec_text = to_toml(config)
    meta = table_metadata(spec_text)
    write_parquet(
        runs_table(runs, per_run, per_step, shape), out_dir / "runs" / "part-0.parquet", meta
    )
    write_parquet(steps_table(runs, per_step, shape), out_dir / "steps" / "part-0.parquet", meta)
    if filters:
        write_parquet(
            filters_table(runs, per_step, shape), out_dir / "filters" / "part-0.parquet", meta
        )
    write_text(out_dir / "spec.toml", spec_text)
    return out_dir
