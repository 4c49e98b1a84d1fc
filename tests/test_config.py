"""Config validation: each bad-input class gets a one-line error naming the field."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from w2sjax.config.fields import FIELDS, ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.settings import build, weak_set_size
from w2sjax.config.toml import flatten, parse_overrides, to_toml
from w2sjax.engine.batch import Shape


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build(flatten(raw))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"bogus": 1}, "bogus"),
        ({"strong": {"n_stt": 10}}, "strong.n_stt"),
        ({"data": {"n_st": 10}}, "data.n_st"),  # a real field in the wrong section
        ({"extra": {"x": 1}}, "extra"),
        ({"data": 3}, "[data]"),
    ],
)
def test_unknown_keys(raw, field):
    assert field in _error(raw)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"strong": {"n_st": 10.5}}, "strong.n_st"),
        ({"strong": {"m": True}}, "strong.m"),
        ({"data": {"sigma_p": [1]}}, "data.sigma_p"),
        ({"eval": {"log": 3}}, "eval.log"),
        ({"weak": {"hard_labels": "coins"}}, "weak.hard_labels"),
        ({"eval": {"ceiling": 1}}, "eval.ceiling"),
        ({"eval": {"ceiling": "true"}}, "eval.ceiling"),
        ({"seeds": [1, 2]}, "seeds"),
        ({"name": "has space"}, "name"),
        # A name is one folder under --out: never ".", "..", hidden, a path or too long.
        ({"name": "."}, "name"),
        ({"name": ".."}, "name"),
        ({"name": ".x"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "sw\n"}, "name"),
        ({"name": "-x"}, "name"),
    ],
)
def test_wrong_types(raw, field):
    message = _error(raw)
    assert message.startswith(field) and "must be" in message


@pytest.mark.parametrize("field, value", [("p_e", 1.5), ("p_h", -0.1), ("p_b", math.nan)])
def test_probability_out_of_range(field, value):
    message = _error({"data": {"p_e": 0.3, "p_h": 0.3, "p_b": 0.4} | {field: value}})
    assert message.startswith(f"data.{field}") and "[0, 1]" in message


def test_probabilities_must_sum_to_one():
    message = _error({"data": {"p_e": 0.3, "p_h": 0.3, "p_b": 0.3}})
    assert "p_e, data.p_h, data.p_b" in message and "sum to 1" in message


def test_probability_tolerance_is_1e_9():
    build({"p_e": 0.3, "p_h": 0.3, "p_b": 0.4 + 5e-10})
    with pytest.raises(ConfigError):
        build({"p_e": 0.3, "p_h": 0.3, "p_b": 0.4 + 5e-9})


def test_rest():
    assert build({"p_e": 0.5, "p_h": "rest", "p_b": 0.2}).p_h == pytest.approx(0.3)
    assert "at most one" in _error({"data": {"p_e": "rest", "p_h": "rest", "p_b": 0.2}})
    assert "rest" in _error({"data": {"p_e": 0.7, "p_h": 0.6, "p_b": "rest"}})


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"strong": {"n_st": 0}}, "strong.n_st"),
        ({"strong": {"m": -3}}, "strong.m"),
        ({"data": {"d": 4}}, "data.d"),  # 4 signal axes leave no room for noise
        ({"weak": {"n_wk": -1}}, "weak.n_wk"),
        ({"eval": {"n_test": 0}}, "eval.n_test"),
        ({"eval": {"log_points": 1}}, "eval.log_points"),
        ({"seeds": 0}, "seeds"),
        ({"base_seed": -1}, "base_seed"),
        ({"strong": {"eta": 0.0}}, "strong.eta"),
        ({"strong": {"sigma_0": -0.1}}, "strong.sigma_0"),
        ({"data": {"sigma_p": math.inf}}, "data.sigma_p"),
        ({"data": {"mu_norm": math.nan}}, "data.mu_norm"),
    ],
)
def test_non_positive_and_non_finite(raw, field):
    message = _error(raw)
    assert message.startswith(field) and "must be" in message


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"eval": {"log": "cubic"}}, "eval.log"),
        ({"data": {"easy_signal": "parallel"}}, "data.easy_signal"),
    ],
)
def test_choices_name_allowed_values(raw, field):
    message = _error(raw)
    assert message.startswith(field) and '"' in message


def test_overrides():
    assert parse_overrides(["n_st=2000", "strong.eta=0.1", 'p_b="rest"', "log=linear"]) == {
        "n_st": 2000,
        "eta": 0.1,
        "p_b": "rest",
        "log": "linear",
    }
    for bad in ["n_st", "nst=3", "weak.n_st=3"]:
        with pytest.raises(ConfigError, match="--set"):
            parse_overrides([bad])


def test_toml_round_trip(tmp_path):
    config = build(
        {"p_e": 0.2, "p_h": "rest", "p_b": 0.5, "easy_signal": "antipodal", "eta": 1e-5}
        | {"ceiling": True}  # a bool, which TOML writes in lower case
    )
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config.to_dict()))
    assert load_sweep(path).points == (config,)
    assert load_sweep(path, {"n_st": 7}).points[0].n_st == 7


def test_defaults_and_name_from_file(tmp_path):
    path = tmp_path / "my_run.toml"
    path.write_text("[strong]\nn_st = 75\n")
    (config,) = load_sweep(path).points
    assert config.name == "my_run" and config.n_st == 75
    assert config.d == FIELDS["d"].default


def test_bad_toml_and_missing_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[strong\nn_st = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_sweep(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "text, args, field",
    [
        ("[strong]\nn_st = -5\n", [], "strong.n_st"),
        ("[data]\np_e = 0.5\np_h = 0.5\np_b = 0.5\n", [], "sum to 1"),
        ("[strong]\nbogus = 1\n", [], "strong.bogus"),
        ("[strong\n", [], "not valid TOML"),
        ("", ["--set", "sigma_p=-1"], "data.sigma_p"),
        ("", ["--set", "unknown=1"], "--set unknown=1"),
        ('[strong]\neta = "0.1 * n_st * bogus"\n', [], "strong.eta: formula"),
        ("", ["--set", "n_st=2*m+", "--set", "m=n_st"], "strong.n_st: formula"),
    ],
)
def test_cli_exits_2_with_one_line(tmp_path, text, args, field):
    path = tmp_path / "c.toml"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "w2sjax", "run", str(path), *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_echoed_line_breaks_stay_on_one_line():
    with pytest.raises(ConfigError) as info:
        parse_overrides(["\n"])
    assert "\n" not in str(info.value) and "\\n" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build(flatten({"strong": {"a\nb": 1}}))
    assert "\n" not in str(info.value)


def _builds(fields: dict) -> bool:
    try:
        build(fields)
    except ConfigError:
        return False
    return True


# The image source's fields (docs/IMAGES.md): a value away from the default, and the fields
# under which it is read. "{npz}" stands for the path of a small npz file of ten classes.
NATURAL = {"source": "digits", "construction": "natural", "n_st": 100, "n_val": 100, "n_test": 500}
IMAGE_FIELDS = {
    "construction": ("natural", {**NATURAL, "construction": "planted"}),
    "path": ("{npz}", {"source": "npz"}),
    "classes": ("1/2", {"source": "digits"}),
    "patches": (16, NATURAL),
    "data_hash": ("{hash}", {"source": "digits"}),
}


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "ten.npz"
    x, y = np.random.default_rng(0).uniform(0.1, 1, (40, 4, 4)), np.arange(40) % 10
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    return str(path)


def _image_field(field: str, npz: str) -> tuple[object, dict]:
    other, reads = IMAGE_FIELDS[field]
    digits_hash = build({"source": "digits"}).data_hash
    return {"{npz}": npz, "{hash}": digits_hash}.get(other, other), reads


@pytest.mark.parametrize("field", [f for f, spec in FIELDS.items() if spec.silent_default])
def test_a_silent_field_at_its_default_changes_no_hash_and_no_text(field, npz):
    """A field added after datasets existed (n_val, hard_labels): at its default the setting's
    hash and the written config are those of a config that never named it; any other value
    changes both."""
    spec = FIELDS[field]
    if field in IMAGE_FIELDS:  # read only with an image source, which changes the hash itself
        other, reads = _image_field(field, npz)
        assert build({field: spec.default}).point_hash == build({}).point_hash
        assert f"\n{field} = " not in to_toml(build({field: spec.default}).to_dict())
        changed = build(reads | {field: other})
        assert changed.point_hash != build({}).point_hash
        assert f"\n{field} = " in to_toml(changed.to_dict())
        return
    if spec.choices:
        other = next(c for c in spec.choices if c != spec.default)
    elif spec.kind == "bool":
        other = not spec.default
    elif spec.kind == "int" and spec.high is not None:
        other = spec.low  # signal_patches: 1, which needs p_b = 0
    else:
        other = spec.default / 2 if spec.high is not None else spec.default + 1
    # a field read only under some switch value is compared under one that takes its default
    # (build refuses it elsewhere, and leaky_relu refuses activation_param's default)
    base = {"p_e": 0.5, "p_h": 0.5} if field == "signal_patches" else {}
    if spec.only_with:
        switch, values = spec.only_with
        base |= next({switch: v} for v in values if _builds({switch: v, field: other}))
    plain, named = build(base), build(base | {field: spec.default})
    changed = build(base | {field: other})
    line = f"\n{field} = "  # not the word alone: "momentum" is also an optimizer's name
    assert named.point_hash == plain.point_hash and line not in to_toml(named.to_dict())
    assert changed.point_hash != plain.point_hash and line in to_toml(changed.to_dict())


@pytest.mark.parametrize("field", [f for f, spec in FIELDS.items() if spec.only_with])
def test_a_field_its_switch_leaves_unread_must_stay_at_its_default(field, npz):
    """n_wk, eta_wk, steps_wk are read only by the fitted teacher, flip_p only by "flip": set away
    from its default under any other value of its switch, a field is a one-line error naming it,
    its switch and both values; at its default it passes, and under its own switch any value."""
    spec = FIELDS[field]
    switch, reads = spec.only_with
    if field in IMAGE_FIELDS:
        other, where = _image_field(field, npz)
    else:
        other = spec.default / 2 if spec.kind == "float" else spec.default + 1
        where = {switch: reads[0]}
    elsewhere = next(c for c in FIELDS[switch].choices if c not in reads)
    assert getattr(build({switch: elsewhere, field: spec.default}), field) == spec.default
    assert getattr(build(where | {field: other}), field) == other
    with pytest.raises(ConfigError) as info:
        build({switch: elsewhere, field: other})
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{spec.section}.{field}: ")
    assert f'{FIELDS[switch].section}.{switch} = "{elsewhere}"' in message
    assert repr(other) in message


def test_only_the_fitted_teacher_draws_a_weak_set():
    """Shape.n_wk is the weak set as drawn: n_wk for the linear teacher, 0 for the others, so
    the reduced sampler's joint draw holds 2m + n_st vectors without a fitted teacher."""
    for teacher, drawn in (("linear", FIELDS["n_wk"].default), ("flip", 0), ("clean", 0)):
        config = build({"teacher": teacher, "d": 5000, "n_st": 40, "m": 4})
        shape = Shape.of(config, noise="reduced")
        assert weak_set_size(config) == shape.n_wk == drawn
        assert shape.dim == 4 + 2 * 4 + drawn + 40


def _switched(field: str) -> dict:
    """The fields that set `field` away from its default (with the switch that makes it read)."""
    spec = FIELDS[field]
    if spec.kind == "bool":
        return {field: not spec.default}
    if spec.choices:
        return {field: next(c for c in spec.choices if c != spec.default)}
    switch, values = spec.only_with
    return {switch: values[0], field: spec.low + 1 if spec.kind == "int" else spec.default / 2}


@pytest.mark.parametrize("field", [f for f, spec in FIELDS.items() if spec.paired])
def test_a_paired_switch_keeps_its_runs_random_key(field):
    """A paired field's settings (hard_labels, ceiling, the optimizer and its fields, the second
    layer) are settings of their own (point_hash, so run_id) that draw what the default draws
    (key_hash), so a comparison is run for run. Control: an unpaired switch (the activation)
    changes the key."""
    plain, switched = build({}), build(_switched(field))
    assert switched.point_hash != plain.point_hash and switched.key_hash == plain.key_hash
    other = build({"activation": "softplus"})
    assert other.key_hash != plain.key_hash
