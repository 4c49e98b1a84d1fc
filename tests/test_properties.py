"""Property tests over hostile sweep files and --set values: each either validates or is rejected
with a ConfigError of one line that names what is wrong; no other exception reaches the user."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2sjax.config import FIELDS, SECTIONS, ConfigError, parse_overrides
from w2sjax.grid import load_sweep

NAMES = sorted(FIELDS) + ["bogus", "n_stt", "grid", "zip", "Data"]
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["rest", "orthogonal", "antipodal", "geometric", "linear", "", "x y", "1e3"]),
    st.booleans(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@st.composite
def sweep_texts(draw) -> str:
    """A sweep file: a valid small base, then random edits (wrong types, wrong sections, unknown
    keys, removals), random [grid]/[zip] axes, and sometimes a truncation (bad TOML)."""
    base = {"d": 40, "n_st": 20, "m": 3, "steps": 5, "n_test": 10, "n_wk": 10, "seeds": 1}
    for _ in range(draw(st.integers(0, 3))):
        base[draw(st.sampled_from(NAMES))] = draw(VALUES)
    for name in draw(st.lists(st.sampled_from(sorted(base)), max_size=2)):
        base.pop(name, None)
    top, sections = [], {s: [] for s in (*SECTIONS, "grid", "zip", "extra")}
    for name, value in base.items():
        section = FIELDS[name].section if name in FIELDS else None
        if draw(st.integers(0, 9)) == 0:  # sometimes the wrong section
            section = draw(st.sampled_from([*SECTIONS, "extra"]))
        line = f"{name} = {_toml(value)}"
        (sections[section] if section else top).append(line)
    for axes in ("grid", "zip"):
        for _ in range(draw(st.integers(0, 2))):
            sections[axes].append(f"{draw(st.sampled_from(NAMES))} = {_toml(draw(VALUES))}")
    text = (
        "\n".join(top)
        + "\n"
        + "".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items() if lines)
    )
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(["[", "=", '"']))
    return text


def _names_something(message: str) -> bool:
    words = [*FIELDS, *SECTIONS, "grid", "zip", "extra", "bogus", "n_stt", "Data", ".toml"]
    return any(w in message for w in words)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sweep_texts())
def test_any_sweep_file_validates_or_fails_in_one_line(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(text)
        try:
            sweep = load_sweep(path)
        except ConfigError as err:
            message = str(err)
            assert message and "\n" not in message and _names_something(message), message
            return
    for config in sweep.points:  # what validates is really valid
        assert abs(config.p_e + config.p_h + config.p_b - 1) <= 1e-9
        assert config.n_st >= 1 and config.d >= 5 and math.isfinite(config.sigma_p)
        assert all(0 <= p <= 1 for p in (config.p_e, config.p_h, config.p_b))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=3))
def test_any_set_value_parses_or_fails_in_one_line(items):
    try:
        parse_overrides(items)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith("--set")
