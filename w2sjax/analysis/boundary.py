"""`w2sjax boundary SPEC --axis FIELD --metric M --level L`: bisect.bisect run on real sweeps.

The probes of every round are grid points of one ordinary sweep dataset, <out>/<name>/: the
file's other axes times bisect.lattice of FIELD, run with `execute(probing=...)` while this
process holds the dataset's lock for the whole search; a rerun reuses every probe written.
Outputs beside the tables: boundary.csv, slopes.csv and boundary.png.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from w2sjax.analysis.bisect import (
    THEORY_SLOPES,
    Found,
    bisect,
    lattice,
    n_crit,
    probed_share,
    replicates,
)
from w2sjax.analysis.crossings import interval, slopes
from w2sjax.analysis.summary import with_final
from w2sjax.config.fields import FIELDS, ConfigError, is_numeric
from w2sjax.config.grid import Sweep, expand
from w2sjax.config.options import EngineOptions
from w2sjax.config.settings import Config
from w2sjax.engine.batch import run_id
from w2sjax.engine.metrics import STEP_METRICS
from w2sjax.engine.theory import abundance, benign_snr
from w2sjax.tables.reading import load

# Metrics that are fractions: a level outside [0, 1] can never be crossed.
FRACTIONS = {m for m in STEP_METRICS if "acc" in m or m in ("flip_corrected", "flipped_grad_share")}
N_BOOT = 1000


class Request(NamedTuple):
    """A validated search: the axis searched, the metric and level, the lattice ratio."""

    axis: str
    metric: str
    level: float
    ratio: float


def check_request(sweep: Sweep, axis: str, metric: str, level: float, ratio: float) -> Request:
    """ConfigError (one line) unless the request can run: `axis` a numeric [grid] axis of the
    file with at least two positive values (its bracket), `metric` a steps column, `level`
    inside the metric's range, `ratio` > 1."""
    if axis not in sweep.grid or not is_numeric(axis):
        numeric = ", ".join(a for a in sweep.grid if is_numeric(a)) or "none"
        raise ConfigError(f"--axis {axis}: must be a numeric [grid] axis of the file ({numeric})")
    values = sweep.grid[axis]
    if len(set(values)) < 2 or any(not isinstance(v, (int, float)) or v <= 0 for v in values):
        raise ConfigError(
            f"grid.{axis}: the bracket needs at least two positive numbers, got {values!r}"
        )
    if metric not in STEP_METRICS:
        raise ConfigError(f"--metric {metric}: must be a steps column: {', '.join(STEP_METRICS)}")
    if not math.isfinite(level) or (metric in FRACTIONS and not 0 < level < 1):
        raise ConfigError(f"--level {level:g}: {metric} lies in [0, 1]; choose a level inside")
    if not ratio > 1:
        raise ConfigError(f"--ratio {ratio:g}: must be > 1")
    return Request(axis, metric, float(level), float(ratio))


def probe_sweep(sweep: Sweep, req: Request) -> tuple[Sweep, list[float]]:
    """The file's sweep with its axis replaced by the lattice over the file's bracket."""
    bracket = sweep.grid[req.axis]
    values = lattice(min(bracket), max(bracket), req.ratio, FIELDS[req.axis].kind == "int")
    grid = {**sweep.grid, req.axis: values}
    return dataclasses.replace(sweep, grid=grid, points=expand(sweep.base, grid, sweep.zip)), values


class Result(NamedTuple):
    """A finished search: boundary.csv's table (one row per point of the other axes), the
    bootstrap replicates of n_crit (n_boot, points) behind its intervals and the slopes',
    every probe run (the runs table with final_<metric>, final_test_acc_easy and _both), and
    the lattice's two ends."""

    table: pd.DataFrame
    boots: np.ndarray
    probes: pd.DataFrame
    ends: tuple[float, float]


def _other(config: Config, others: list[str]) -> tuple:
    return tuple(getattr(config, a) for a in others)


def search(sweep: Sweep, req: Request, out: Path, run: Callable[[Sweep, set[str]], None]) -> Result:
    """Bisect every point of the other axes; `run(probe_sweep, point_hashes)` writes those
    probes' runs (all seeds) into the dataset."""
    probes, values = probe_sweep(sweep, req)
    others = [a for a in probes.axes() if a != req.axis]
    index = {v: k for k, v in enumerate(values)}
    configs = {(_other(c, others), index[getattr(c, req.axis)]): c for c in probes.points}
    points = sorted({p for p, _ in configs})
    root = out / sweep.name

    def evaluate(todo: list) -> dict:
        run(probes, {configs[probe].point_hash for probe in todo})
        runs, steps = load(root)
        final = with_final(runs, steps, [req.metric]).set_index("run_id")[f"final_{req.metric}"]
        return {
            probe: final.loc[[run_id(configs[probe], s) for s in range(sweep.seeds)]].to_numpy()
            for probe in todo
        }

    found = bisect(points, len(values), req.level, evaluate)
    runs, steps = load(root)
    # the metric itself may be one of the categories reported beside it
    columns = list(dict.fromkeys([req.metric, "test_acc_easy", "test_acc_both"]))
    probe_runs = with_final(runs, steps, columns)
    final = probe_runs.set_index("run_id")
    boots = replicates(found, values, req.level, N_BOOT)
    rows = []
    for j, (p, f) in enumerate(found.items()):
        crit = n_crit(f, values, req.level)
        row = dict(zip(others, p, strict=True))
        lo, hi = interval(boots[:, j])
        row |= {"n_crit": crit, "n_crit_lo": lo, "n_crit_hi": hi}
        row |= _at_crossing(f, configs, p, req, crit, final, sweep.seeds, values)
        rows.append(row)
    return Result(pd.DataFrame(rows), boots, probe_runs, (values[0], values[-1]))


def _at_crossing(
    f: Found,
    configs: dict[tuple, Config],
    p: tuple,
    req: Request,
    crit: float,
    final: pd.DataFrame,
    seeds: int,
    values: list[float],
) -> dict:
    """boundary.csv's columns beside n_crit: whether the bracket straddled (else the metric at
    both ends), benign_snr and abundance with the axis at n_crit, and easy-only and both-signal
    final accuracy over the final bracket's two probes."""
    at_ends = {
        f"{req.metric}_at_{end}": np.nanmean(f.values[k])
        for end, k in (("lo", 0), ("hi", len(values) - 1))
    }
    if f.bracket is None:
        return {"status": "does not straddle the level", **at_ends}
    config = dataclasses.replace(configs[(p, f.bracket[0])], **{req.axis: crit})
    args = (config.n_st, config.p_b, config.nu_norm, config.sigma_p, config.d)
    ids = [run_id(configs[(p, k)], s) for k in f.bracket for s in range(seeds)]
    return {
        "status": "found",
        **at_ends,
        "benign_snr": benign_snr(*args),
        "abundance": abundance(*args),
        "final_test_acc_easy": float(final.loc[ids, "final_test_acc_easy"].mean()),
        "final_test_acc_both": float(final.loc[ids, "final_test_acc_both"].mean()),
    }


def slope_table(result: Result, req: Request, others: list[str]) -> pd.DataFrame:
    """slopes.csv: for each numeric other axis, d log n_crit / d log axis (a joint fit in logs
    over all of them), its 95% bootstrap interval and Theorem 3.4's value where the searched
    axis is n_st. A replicate censored beyond the probes enters its fit at the lattice's end it
    passed, a bound on its n_crit, so such replicates' slopes are bounds too and the interval
    written is not to be trusted where many are censored (boundary.csv's infinite ends say so)."""
    numeric = [a for a in others if is_numeric(a)]
    axes = {a: result.table[a].to_numpy(dtype=float) for a in numeric}
    fit = slopes(axes, result.table.n_crit.to_numpy(dtype=float))
    per_boot = [slopes(axes, np.clip(b, *result.ends)) for b in result.boots]
    rows = []
    for a in numeric:
        lo, hi = interval(np.array([s[a] for s in per_boot]))
        theory = THEORY_SLOPES.get(a, float("nan")) if req.axis == "n_st" else float("nan")
        rows.append({"axis": a, "slope": fit[a], "lo": lo, "hi": hi, "theory": theory})
    return pd.DataFrame(rows, columns=["axis", "slope", "lo", "hi", "theory"])


def write_outputs(result: Result, req: Request, others: list[str], root: Path) -> list[Path]:
    """boundary.csv, slopes.csv and boundary.png under the dataset folder `root`."""
    from w2sjax.analysis.plots import boundary_figure
    from w2sjax.tables.layout import BOUNDARY_FILES

    paths = [root / name for name in BOUNDARY_FILES]
    result.table.to_csv(paths[0], index=False)
    slope_table(result, req, others).to_csv(paths[1], index=False)
    metric = f"final_{req.metric}"
    boundary_figure(result.probes, result.table, req.axis, others, metric, req.level, paths[2])
    return paths


def run_boundary(
    sweep: Sweep,
    req: Request,
    out: str | Path,
    quiet: bool = False,
    options: EngineOptions = EngineOptions(),
) -> list[Path]:
    """The whole search under the dataset's lock (so no other writer meets it between rounds),
    then its outputs. Raises what `execute` raises (DatasetRefused, OSError, OutOfMemory)."""
    from w2sjax.sweep.execution import Probing, execute
    from w2sjax.tables.lock import DatasetLock

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / sweep.name

    grid, lattice = probe_sweep(sweep, req)
    lines = len(grid.points) // len(lattice)  # the points of the other axes
    share, calls = probed_share(len(lattice)), lines * sweep.seeds

    def run(probes: Sweep, hashes: set[str]) -> None:
        probing = Probing(points=hashes, share=share, calls=calls)
        done = execute(probes, out, options, quiet=quiet, locked=True, probing=probing)
        if done.interrupted:
            raise KeyboardInterrupt  # Ctrl-C: the probes written so far are kept

    with DatasetLock(root):
        result = search(sweep, req, out, run)
        others = [a for a in sweep.axes() if a != req.axis]
        return write_outputs(result, req, others, root)
