"""Config text in and out: a TOML file read and flattened to {field: value}, `--set` overrides
parsed, and {field: value} written back as sectioned TOML."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from w2sjax.config.fields import FIELDS, SECTIONS, ConfigError, at_silent_default


def flatten(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Sectioned TOML mapping -> flat {field: value}, rejecting unknown sections and keys."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}]: must be a table of fields, got {value!r}")
            for field, inner in value.items():
                if field not in FIELDS or FIELDS[field].section != key:
                    allowed = ", ".join(f for f, s in FIELDS.items() if s.section == key)
                    raise ConfigError(f"{key}.{field}: unknown field; [{key}] allows {allowed}")
                flat[field] = inner
        elif key in FIELDS and FIELDS[key].section is None:
            flat[key] = value
        else:
            top = ", ".join(f for f, s in FIELDS.items() if s.section is None)
            raise ConfigError(
                f"{key}: unknown key; the top level allows {top} and the sections "
                f"[{'], ['.join(SECTIONS)}]"
            )
    return flat


def parse_value(text: str) -> Any:
    """A `--set` value: TOML syntax (2000, 0.5, "rest"), else the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def override_field(key: str) -> str | None:
    """The field an override's key names ("n_st", or "strong.eta" with its section); None when
    it names none."""
    key = key.strip()
    field = key.rpartition(".")[2]
    if field not in FIELDS or (
        "." in key and key.rpartition(".")[0] != (FIELDS[field].section or "")
    ):
        return None
    return field


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["n_st=2000", "strong.eta=0.1"] -> {"n_st": 2000, "eta": 0.1}; unknown fields rejected."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        field = override_field(key) if sep else None
        if field is None:
            raise ConfigError(
                f"--set {item}: must be FIELD=VALUE with FIELD one of {', '.join(FIELDS)}"
            )
        out[field] = parse_value(text.strip())
    return out


def overrides_from(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"n_st": 2000, "strong.eta": 0.1} -> {"n_st": 2000, "eta": 0.1}, keys as `--set` takes
    them; unknown fields rejected."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        field = override_field(str(key))
        if field is None:
            raise ConfigError(f"overrides: {key}: unknown field; one of {', '.join(FIELDS)}")
        out[field] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a mapping; unreadable files and bad syntax become ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, (str, bool)):
        return json.dumps(value)
    return repr(value)


def to_toml(values: Mapping[str, Any]) -> str:
    """Flat {field: value} (missing fields take defaults; "rest" kept as written) as sectioned
    TOML text that `flatten(tomllib.loads(...))` reads back to the same values. Silent-default
    fields at their default are left out (FieldSpec.silent_default)."""
    full = {
        f: values.get(f, spec.default)
        for f, spec in FIELDS.items()
        if not at_silent_default(f, values.get(f, spec.default))
    }
    lines = [f"{f} = {_toml_value(v)}" for f, v in full.items() if FIELDS[f].section is None]
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        lines += [
            f"{f} = {_toml_value(v)}" for f, v in full.items() if FIELDS[f].section == section
        ]
    return "\n".join(lines) + "\n"
