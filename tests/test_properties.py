"""Property tests over hostile sweep files and --set values: each either validates or is rejected
with a ConfigError of one line that names what is wrong; no other exception reaches the user."""

from __future__ import annotations

import io
import json
import math
import tempfile
from contextlib import redirect_stderr
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2sjax.cli.main import main
from w2sjax.config.fields import FIELDS, SECTIONS, ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.toml import parse_overrides

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
    if draw(st.integers(0, 2)) == 0:  # a third are valid by construction, with valid axes
        base["p_e"] = "rest"
        axes = {
            "n_st": draw(st.lists(st.integers(1, 50), min_size=1, max_size=3)),
            "p_b": draw(st.lists(st.sampled_from([0.0, 0.2, 0.5]), min_size=1, max_size=2)),
        }
        lines = [f"{k} = {_toml(v)}" for k, v in base.items() if FIELDS[k].section is None]
        for section in SECTIONS:
            lines += [f"[{section}]"] + [
                f"{k} = {_toml(v)}" for k, v in base.items() if FIELDS[k].section == section
            ]
        return (
            "\n".join(lines)
            + "\n[grid]\n"
            + "".join(f"{k} = {_toml(v)}\n" for k, v in axes.items())
        )
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


class _WouldRun(Exception):
    """Raised by the stubbed engine: the input passed every check and compute would start."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sweep_texts(),
    st.lists(
        st.sampled_from(
            ["n_st=5", "p_b=rest", "eta=-1", "bogus=1", "log=cubic", "seeds=0", "d=4.5"]
        ),
        max_size=2,
    ),
)
def test_the_cli_runs_or_exits_2_with_one_line(text, overrides):
    """Through `w2sjax sweep` itself: a valid file reaches the engine (stubbed here), anything
    else exits with status 2 and one line on stderr, no traceback."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(text)
        argv = ["sweep", str(path), "--out", str(Path(tmp) / "out"), "--quiet"]
        argv += [word for item in overrides for word in ("--set", item)]
        err = io.StringIO()
        would_run = mock.patch("w2sjax.sweep.execution.execute", side_effect=_WouldRun)
        with would_run, redirect_stderr(err):
            try:
                code = main(argv)
            except _WouldRun:
                return
        lines = err.getvalue().strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err.getvalue(), lines
