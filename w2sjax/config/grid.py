"""Sweep files: a config plus [grid] (cartesian product) and [zip] (fields varied together),
expanded into validated grid points before any compute.

Any setting field can be an axis; "rest" for one probability keeps p_e + p_h + p_b = 1 along a
probability axis. Bad axes (unknown field, empty list, unequal zip lengths, a value that fails
validation) raise ConfigError with one line naming the axis.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2sjax.config.fields import FIELDS, ConfigError, check_field, is_numeric
from w2sjax.config.settings import Config, build
from w2sjax.config.toml import flatten, read_toml, to_toml

AXIS_SECTIONS = ("grid", "zip")
NOT_AXES = ("name", "seeds", "base_seed")
# One data source per sweep: its content hash is recorded once, in the spec's base.
DATA_FIELDS = ("source", "path", "data_hash")


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the base config's raw fields, the axes, and its grid points in order."""

    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    points: tuple[Config, ...] = ()

    @property
    def name(self) -> str:
        return self.points[0].name

    @property
    def seeds(self) -> int:
        return self.points[0].seeds

    def axes(self) -> list[str]:
        """Varied fields in expansion order: grid axes, then zip fields."""
        return [*self.grid, *self.zip]

    def to_toml(self) -> str:
        """Canonical text: the base fields (defaults filled in), then [grid] and [zip]. Loading it
        gives an equal sweep, and its hash identifies the sweep's content."""
        text = to_toml(self.base)
        for section, axes in (("grid", self.grid), ("zip", self.zip)):
            if axes:
                text += f"\n[{section}]\n"
                text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in axes.items())
        return text

    def spec_hash(self) -> str:
        return hashlib.sha256(self.to_toml().encode()).hexdigest()[:16]


def _axis_field(section: str, key: str) -> str:
    """'n_st' or 'strong.n_st' -> 'n_st'; reject names that are not sweepable setting fields."""
    name = key.rpartition(".")[2]
    prefix = key.rpartition(".")[0]
    if name in NOT_AXES:
        raise ConfigError(
            f"{section}.{key}: not a sweep axis; set it at the top level (or --seeds for seeds)"
        )
    if name in DATA_FIELDS:
        raise ConfigError(
            f"{section}.{key}: not a sweep axis; a sweep reads one data source (one file per "
            f"sweep file)"
        )
    if name not in FIELDS or (prefix and prefix != FIELDS[name].section):
        axes = ", ".join(f for f in FIELDS if f not in NOT_AXES)
        raise ConfigError(f"{section}.{key}: unknown field; axes may be {axes}")
    return name


def _axes(section: str, raw: Any) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}]: must be a table of field = [values], got {raw!r}")
    # TOML reads a dotted key (strong.eta = [...]) as a nested table: flatten it back.
    items: list[tuple[str, Any]] = []
    for key, value in raw.items():
        if isinstance(value, dict):
            items += [(f"{key}.{inner}", v) for inner, v in value.items()]
        else:
            items.append((key, value))
    axes: dict[str, list[Any]] = {}
    for key, values in items:
        name = _axis_field(section, key)
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{section}.{key}: must be a non-empty list of values, got {values!r}"
            )
        if name in axes:
            raise ConfigError(f"{section}.{key}: field given twice")
        axes[name] = values
    return axes


def _point_label(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def expand(
    base: Mapping[str, Any],
    grid: Mapping[str, list],
    zipped: Mapping[str, list],
    read_data: bool = True,
) -> tuple[Config, ...]:
    """Grid points: the product of grid axes (file order) with the zip rows, each validated
    (read_data: settings.build)."""
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k} ({n} values)" for k, n in lengths.items())
        raise ConfigError(f"zip: fields must have equal-length lists, got {described}")
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError(f"zip.{sorted(both)[0]}: field is also a [grid] axis; use one")
    rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)]
    points = []
    labels: dict[str, str] = {}  # point_hash -> the first grid point with that setting
    for combo in itertools.product(*grid.values(), rows or [{}]):
        values = {**dict(zip(grid, combo[:-1], strict=True)), **combo[-1]}
        try:
            point = build({**base, **values}, read_data)
        except ConfigError as err:
            raise ConfigError(f"grid point {_point_label(values)}: {err}") from None
        label = _point_label(values)
        if point.point_hash in labels:  # its runs would be the same runs, twice
            raise ConfigError(
                f"grid point {label}: the same setting as grid point {labels[point.point_hash]}; "
                f"each setting runs once (raise seeds for more runs)"
            )
        labels[point.point_hash] = label
        points.append(point)
    return tuple(points)


def load_sweep(
    path: str | Path,
    overrides: Mapping[str, Any] | None = None,
    seeds: int | None = None,
    read_data: bool = True,
) -> Sweep:
    """Read a sweep (or plain config) file, apply `--set` overrides and `--seeds`, validate every
    point. An override of an axis field replaces that axis with the single value. read_data
    False: a dataset's spec.toml, read without its image data (settings.build)."""
    return sweep_from(read_toml(path), Path(path).stem, overrides, seeds, read_data)


def sweep_from(
    raw: Mapping[str, Any],
    default_name: str,
    overrides: Mapping[str, Any] | None = None,
    seeds: int | None = None,
    read_data: bool = True,
) -> Sweep:
    """A sweep from parsed TOML (as `load_sweep`); `default_name` when it names none."""
    raw = dict(raw)
    grid = _axes("grid", raw.pop("grid", {}))
    zipped = _axes("zip", raw.pop("zip", {}))
    base = flatten(raw)
    base.setdefault("name", default_name)
    for name, value in (overrides or {}).items():
        grid.pop(name, None)
        zipped.pop(name, None)
        base[name] = value
    if seeds is not None:
        base["seeds"] = seeds
    base["name"] = check_field("name", base["name"])  # before any point: it names a folder
    points = expand(base, grid, zipped, read_data)
    if points[0].data_hash:
        # the data's content hash enters the stored spec: a resume on a changed file is refused,
        # and the dataset reads without its data
        base["data_hash"] = points[0].data_hash
    return Sweep(base=base, grid=grid, zip=zipped, points=points)


def heatmap_axes(axes: list[str]) -> bool:
    """Whether a sweep's axes make a phase heatmap: exactly two, both numeric (a choice axis
    such as teacher or activation has no position on a plot axis)."""
    return len(axes) == 2 and all(is_numeric(a) for a in axes)
