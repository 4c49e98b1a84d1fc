"""Running a sweep from Python with the command line's guarantees: the same checks before any
compute (bad input raises ConfigError whose message is the line `w2sjax sweep` prints), the same
lock, resume and integrity check (sweep.execute), the same figures. `w2sjax sweep` and
`w2sjax run` are this module behind a parser (cli/sweep.py)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2sjax.config.fields import FIELDS, ConfigError, check_field
from w2sjax.config.grid import Sweep, heatmap_axes, load_sweep, sweep_from
from w2sjax.config.options import EngineOptions
from w2sjax.config.toml import overrides_from, parse_overrides

if TYPE_CHECKING:
    from w2sjax.api.dataset import Dataset

# What a sweep file is given as: a path, TOML text, or the mapping TOML text parses to.
Spec = str | Path | Mapping[str, Any]


def _is_path(spec: str | Path) -> bool:
    """A Path, or a one-line str that ends in .toml or holds no `=`; any other str is TOML text
    (which needs a `key = value` to say anything)."""
    if isinstance(spec, Path):
        return True
    return "\n" not in spec and (spec.endswith(".toml") or "=" not in spec)


def load_spec(
    spec: Spec,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    seeds: int | None = None,
    one_config: bool = False,
) -> Sweep:
    """The sweep `spec` describes, every point checked, with `overrides` ({field: value}, or
    "field=value" strings as after --set; keys may be section.field) and `seeds` applied;
    jax-free. ConfigError (one line) for anything the sweep would refuse, and for axes where
    `one_config` (`w2sjax run`) asks for one config. The engine options are checked against it
    apart (EngineOptions.check), after the file, as the command line always did."""
    if isinstance(spec, str) and not spec.strip():
        raise ConfigError("spec: empty; give a sweep file's path, TOML text or a mapping")
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        overrides = overrides_from(overrides)
    elif overrides is not None:
        overrides = parse_overrides(list(overrides))
    if seeds is not None:
        check_field("seeds", seeds)
    if isinstance(spec, Mapping):
        sweep = sweep_from(spec, FIELDS["name"].default, overrides, seeds)
    elif _is_path(spec):
        sweep = load_sweep(spec, overrides, seeds)
    else:
        try:
            raw = tomllib.loads(spec)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"spec: not valid TOML ({err})") from None
        sweep = sweep_from(raw, FIELDS["name"].default, overrides, seeds)
    if one_config and sweep.axes():
        where = spec if isinstance(spec, (str, Path)) and _is_path(spec) else "spec"
        raise ConfigError(
            f"{where}: has [grid]/[zip] axes ({', '.join(sweep.axes())}); use `w2sjax sweep`"
        )
    return sweep


def figures(sweep: Sweep, root: Path, tables: Iterable | None = None) -> list[Path]:
    """The phase heatmaps beside the tables when the sweep has exactly two numeric axes: the
    final gain over the teacher, and the final hard-only test accuracy (Theorem 3.4's order
    parameter) with the benign_snr = C line fitted to it where there are hard-only samples.
    tables: the dataset's (runs, steps) where the caller has read them (a Dataset), else they
    are read here, and only when there is a figure to draw."""
    axes = sweep.axes()
    if not heatmap_axes(axes):
        return []
    from w2sjax.analysis.plots import hard_heatmap, phase_heatmap
    from w2sjax.tables.layout import FIGURES
    from w2sjax.tables.reading import load

    runs, steps = tables if tables is not None else load(root)
    gain = phase_heatmap(runs, *axes, root / FIGURES["gain"])
    hard = hard_heatmap(runs, steps, *axes, root / FIGURES["hard"])[0]
    return [gain] if hard is None else [gain, hard]


def run(
    spec: Spec,
    *,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    out: str | Path = "results",
    seeds: int | None = None,
    fresh: bool = False,
    quiet: bool = False,
    options: EngineOptions = EngineOptions(),
) -> Dataset:
    """Run the sweep `spec` (a path, TOML text or a mapping) into <out>/<name>/, resuming what
    is written there, and return its Dataset (figures drawn as `w2sjax sweep` draws them).

    Raises ConfigError (bad input, before any compute), DatasetRefused (another writer holds the
    dataset, or it holds another spec: `fresh=True` replaces it), OSError (the file system) and
    sweep.OutOfMemory, each with the command line's one-line message. A Ctrl-C (a notebook's
    interrupt) commits the chunk in flight and raises KeyboardInterrupt; a second one returns at
    once while the chunk in flight finishes in the background, discarded. Rerunning resumes."""
    sweep = load_spec(spec, overrides, seeds)
    options.check(sweep)
    from w2sjax.api.dataset import Dataset
    from w2sjax.sweep.execution import execute

    summary = execute(sweep, out, options, fresh=fresh, quiet=quiet)
    if summary.interrupted:
        raise KeyboardInterrupt(
            f"interrupted after {summary.chunks} chunks ({summary.ran} runs) were written; "
            f"run it again to resume"
        )
    data = Dataset(summary.root)
    if summary.process == 0:
        figures(sweep, summary.root, data)
    return data
