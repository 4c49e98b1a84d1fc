"""Numeric fields given as formulas of other fields (w2sjax/config/formulas.py, config.build):
values, precedence, dependency order, integers, probabilities, grid points, and one-line errors."""

from __future__ import annotations

import pytest

from w2sjax.config.fields import ConfigError
from w2sjax.config.formulas import parse
from w2sjax.config.grid import sweep_from
from w2sjax.config.settings import build


@pytest.mark.parametrize(
    "text, value",
    [
        ("2 + 3 * 4", 14.0),
        ("(2 + 3) * 4", 20.0),
        ("8 / 4 / 2", 1.0),  # left associative
        ("2 ^ 3 ^ 2", 512.0),  # right associative
        ("-2 ^ 2", -4.0),  # the power binds tighter than a leading minus
        ("2 * -3", -6.0),
        ("1e-2 * 10 + .5 - 1.", -0.4),
        ("d ^ 0.5 / m", 5.0),
    ],
)
def test_arithmetic(text, value):
    formula = parse(text, lambda name: name in ("d", "m"))
    assert formula.evaluate({"d": 100.0, "m": 2.0}) == pytest.approx(value)


def test_scaling_rules_are_evaluated_at_the_point():
    config = build(
        {
            "d": 10000,
            "n_st": 500,
            "m": 20,
            "sigma_p": 2.0,
            "eta": "0.2 * n_st * m / (sigma_p^2 * d)",
            "sigma_0": "0.1 / (sigma_p * d^0.5)",
            "steps": "n_wk * 5 / 3",  # an integer field takes the nearest integer: 333.33 -> 333
            "n_wk": "d / 50",  # a formula other formulas read
        }
    )
    assert config.eta == pytest.approx(0.2 * 500 * 20 / (4 * 10000))
    assert config.sigma_0 == pytest.approx(0.1 / (2 * 100))
    assert (config.n_wk, config.steps) == (200, 333)
    assert isinstance(config.steps, int)
    # The Config holds numbers: the same setting written with literals is the same run.
    literal = build({**config.to_dict(), "name": "w2s"})
    assert literal.point_hash == config.point_hash


def test_probabilities_and_rest():
    config = build({"p_e": "rest", "p_h": 0.3, "p_b": "p_h / 2"})
    assert (config.p_b, config.p_e) == (pytest.approx(0.15), pytest.approx(0.55))
    config = build({"p_e": 0.4, "p_h": "rest", "p_b": "0.5 * p_e"})
    assert config.p_h == pytest.approx(0.4)


def test_a_grid_evaluates_the_formula_at_every_point_and_keeps_its_text():
    raw = {
        "strong": {"eta": "0.2 * n_st * m / d"},
        "data": {"d": 1000},
        "grid": {"n_st": [50, 200]},
    }
    sweep = sweep_from(raw, "f")
    assert [p.eta for p in sweep.points] == [pytest.approx(0.2 * n * 20 / 1000) for n in (50, 200)]
    assert 'eta = "0.2 * n_st * m / d"' in sweep.to_toml()
    assert sweep_from(raw, "f").spec_hash() == sweep.spec_hash()


@pytest.mark.parametrize(
    "fields, start, fragment",
    [
        ({"eta": "n_st *"}, "strong.eta: formula", "ends too early"),
        ({"eta": "(1 + 2"}, "strong.eta: formula", "ends too early"),
        ({"eta": "1 ) + 2"}, "strong.eta: formula", "unexpected ')'"),
        ({"eta": "__import__('os')"}, "strong.eta: formula", "unexpected"),
        ({"eta": "__import__"}, "strong.eta: formula", "not a numeric setting field"),
        ({"eta": "n_st ** 2"}, "strong.eta: formula", "unexpected '*'"),
        ({"eta": "2 ; 3"}, "strong.eta: formula", "unexpected ';'"),
        ({"eta": "easy_signal * 2"}, "strong.eta: formula", "not a numeric setting field"),
        ({"n_st": "seeds * 10"}, "strong.n_st: formula", "not a numeric setting field"),
        ({"eta": ""}, "strong.eta: formula", "is empty"),
        ({"eta": "m / (d - d)"}, "strong.eta: formula", "cannot be evaluated"),
        ({"eta": "(0 - 1) ^ 0.5"}, "strong.eta: formula", "cannot be evaluated"),
        ({"eta": "1 - 2"}, "strong.eta: formula '1 - 2' gives -1", "must be a finite number > 0"),
        ({"eta": "eta * 2"}, "strong.eta:", "a cycle"),
        ({"eta": "n_st / 1000", "n_st": "eta * 1000"}, "strong.n_st, strong.eta:", "a cycle"),
        ({"p_e": "rest", "p_b": "p_e / 2"}, "data.p_b:", "a cycle"),
    ],
)
def test_bad_formulas_fail_in_one_line_naming_the_field(fields, start, fragment):
    with pytest.raises(ConfigError) as info:
        build(fields)
    message = str(info.value)
    assert message.startswith(start) and fragment in message and "\n" not in message
