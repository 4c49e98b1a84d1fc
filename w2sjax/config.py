"""Typed, validated run configuration: TOML in and out, `--set` overrides, hashing.

A config file has sections [data], [weak], [strong], [eval] and three top-level keys (name, seeds,
base_seed). Field names are flat and unique across sections; they are also the column names of every
table. Every field has a default (docs/MODEL.md section 8's parameter set), so a file names only
what it changes. Anything malformed raises ConfigError with a one-line message naming the field
and the allowed values, before any compute.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2sjax.formulas import Formula, FormulaError, parse

PROB_FIELDS = ("p_e", "p_h", "p_b")
# Engine choices (not config fields: they change neither a run's random numbers nor its run_id).
FORMS = ("auto", "dense", "coef")
PRECISIONS = ("highest", "tf32", "bf16")
NOISES = ("auto", "full", "reduced")
PROB_TOLERANCE = 1e-9
REST = "rest"


class ConfigError(ValueError):
    """A bad config value; str() is one line naming the field and what is allowed (line breaks
    in echoed user input, e.g. a quoted TOML key or a --set value, are escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


@dataclass(frozen=True)
class FieldSpec:
    """How one config field is checked (kind: int | float | prob | choice | name | bool) and
    what it is to the engine. `static`: it sets an array shape, a loop length or a code path, so
    runs that differ in it need different compiled programs (batch.Shape); every other field of
    a section is a number batched over runs (batch.Params). `silent_default`: a field added
    after datasets existed; at its default it is left out of point_hash and of the stored spec
    text, so those datasets resume and their runs keep their ids. `paired`: a switch whose
    settings share every random draw with its default's (left out of Config.key_hash, kept in
    point_hash and run_id), so a control differs from the run it controls only by what it
    switches."""

    section: str | None
    kind: str
    default: Any
    allowed: str
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()
    static: bool = False
    silent_default: bool = False
    paired: bool = False
    only_with: tuple[str, tuple[str, ...]] | None = None


def _pos_int(
    section: str | None,
    default: int,
    low: int = 1,
    silent_default: bool = False,
    paired: bool = False,
    only_with: tuple[str, tuple[str, ...]] | None = None,
) -> FieldSpec:
    """A count: static (it sizes arrays or loops) unless it is a top-level field."""
    return FieldSpec(
        section,
        "int",
        default,
        f"an integer >= {low}",
        low=low,
        static=section is not None,
        silent_default=silent_default,
        paired=paired,
        only_with=only_with,
    )


def _pos_float(
    section: str,
    default: float,
    allow_zero: bool = False,
    only_with: tuple[str, tuple[str, ...]] | None = None,
) -> FieldSpec:
    allowed = "a finite number >= 0" if allow_zero else "a finite number > 0"
    return FieldSpec(
        section, "float", default, allowed, low=0.0, low_inclusive=allow_zero, only_with=only_with
    )


# The teachers (`[weak] teacher`, teachers.TEACHERS): only "linear" is fitted, on a weak training
# set of its own, so only it reads n_wk, eta_wk and steps_wk; only "flip" reads flip_p.
TEACHERS = ("linear", "flip", "clean")
FITTED = ("teacher", ("linear",))
# The student's activations (activations.ACTIVATIONS) and what `activation_param` means to each
# that reads it, with its allowed values.
ACTIVATIONS = ("relu", "linear", "leaky_relu", "relu_pow", "softplus")
ACTIVATION_PARAM = {
    "leaky_relu": ("the slope alpha below 0, in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "relu_pow": ("the power q, >= 1", lambda v: v >= 1.0),
    "softplus": ("the sharpness beta, > 0", lambda v: v > 0.0),
}


# The student's optimizers (optimizers.OPTIMIZERS). SPAN_KEEPING: those whose update is a fixed
# linear combination of past gradients, so the weights stay in span{W0, signals, training noise}:
# the coefficient form and the reduced sampler are exact only for them (Adam acts coordinate by
# coordinate). Only "sgd" reads batch_size, only "momentum" reads momentum.
OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
# The student's second layer (models.SECOND_LAYERS): fixed at +1/-1 (the paper) or trained.
SECOND_LAYERS = ("fixed", "trained")
SPAN_KEEPING = ("gd", "sgd", "momentum")


def _choice(section: str, default: str, choices: tuple[str, ...], **flags: bool) -> FieldSpec:
    """A choice among `choices`, its allowed text written from them ('"a", "b" or "c"')."""
    quoted = [f'"{c}"' for c in choices]
    allowed = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return FieldSpec(section, "choice", default, allowed, choices=choices, **flags)


def _prob(default: float) -> FieldSpec:
    return FieldSpec("data", "prob", default, 'a number in [0, 1] or "rest"', low=0.0, high=1.0)


# Order here is column order in tables and key order when a config is written back.
FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec(
        None,
        "name",
        "w2s",
        "a folder name of 1-200 letters, digits, '_', '-', '.', not starting with '.' or '-'",
    ),
    "seeds": _pos_int(None, 8),
    "base_seed": FieldSpec(None, "int", 0, "an integer in [0, 2147483647]", low=0, high=2**31 - 1),
    "d": _pos_int("data", 10000, low=5),
    "p_e": _prob(0.35),
    "p_h": _prob(0.3),
    "p_b": _prob(REST),
    "sigma_p": _pos_float("data", 1.0),
    "mu_norm": _pos_float("data", 4.0),
    "nu_norm": _pos_float("data", 4.0),
    "easy_signal": _choice("data", "orthogonal", ("orthogonal", "antipodal"), static=True),
    "signal_patches": FieldSpec(
        "data", "int", 2, "1 or 2", low=1, high=2, static=True, silent_default=True
    ),
    "n_wk": _pos_int("weak", 200, only_with=FITTED),
    "eta_wk": _pos_float("weak", 0.01, only_with=FITTED),
    "steps_wk": _pos_int("weak", 200, only_with=FITTED),
    "hard_labels": _choice(
        "weak", "teacher", ("teacher", "coin"), static=True, silent_default=True, paired=True
    ),
    "teacher": _choice("weak", "linear", TEACHERS, static=True, silent_default=True),
    "flip_p": FieldSpec(
        "weak",
        "float",
        0.1,
        "a number in [0, 1]",
        low=0.0,
        high=1.0,
        silent_default=True,
        only_with=("teacher", ("flip",)),
    ),
    "n_st": _pos_int("strong", 2000),
    "m": _pos_int("strong", 20),
    "sigma_0": _pos_float("strong", 0.01, allow_zero=True),
    "eta": _pos_float("strong", 0.05),
    "steps": _pos_int("strong", 4000),
    "activation": _choice("strong", "relu", ACTIVATIONS, static=True, silent_default=True),
    "activation_param": FieldSpec(
        "strong",
        "float",
        1.0,
        "a finite number",
        silent_default=True,
        only_with=("activation", tuple(ACTIVATION_PARAM)),
    ),
    # The optimizer and the second layer are paired switches: a run shares its draws with the same
    # run under GD and a fixed layer, so a comparison between them is run for run.
    "optimizer": _choice("strong", "gd", OPTIMIZERS, static=True, silent_default=True, paired=True),
    "batch_size": _pos_int(
        "strong", 32, silent_default=True, paired=True, only_with=("optimizer", ("sgd",))
    ),
    "momentum": FieldSpec(
        "strong",
        "float",
        0.9,
        "a number in [0, 1)",
        low=0.0,
        high=1.0,
        high_inclusive=False,
        silent_default=True,
        paired=True,
        only_with=("optimizer", ("momentum",)),
    ),
    "second_layer": _choice(
        "strong", "fixed", SECOND_LAYERS, static=True, silent_default=True, paired=True
    ),
    "n_test": _pos_int("eval", 2000),
    "log": _choice("eval", "geometric", ("geometric", "linear"), static=True),
    "log_points": _pos_int("eval", 60, low=2),
    "n_val": _pos_int("eval", 1000, silent_default=True),
    # Paired: a run with its ceiling shares every draw with the same run without it, so the
    # student's own numbers do not change.
    "ceiling": FieldSpec(
        "eval", "bool", False, "true or false", static=True, silent_default=True, paired=True
    ),
}
SECTIONS = ("data", "weak", "strong", "eval")
# One path component that is never ".", ".." or hidden: the name becomes a folder under --out, and
# the dataset's lock and a --fresh deletion in progress use hidden names beside it.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def _qualified(field: str) -> str:
    section = FIELDS[field].section
    return f"{section}.{field}" if section else field


def _fail(field: str, value: Any, spec: FieldSpec) -> ConfigError:
    return ConfigError(f"{_qualified(field)}: must be {spec.allowed}, got {value!r}")


def check_field(field: str, value: Any) -> Any:
    """Validate one raw value; return it normalised (ints stay ints, numbers become float).

    "rest" passes for probabilities; the sum rule is checked across fields by `resolve_probs`.
    """
    spec = FIELDS[field]
    if spec.kind in ("choice", "name"):
        ok = isinstance(value, str) and (
            value in spec.choices if spec.kind == "choice" else bool(_NAME_RE.fullmatch(value))
        )
        if not ok:
            raise _fail(field, value, spec)
        return value
    if spec.kind == "prob" and value == REST:
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(field, value, spec)
        return value
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec.kind == "int" and not (is_number and isinstance(value, int)):
        raise _fail(field, value, spec)
    if not is_number or not math.isfinite(value):
        raise _fail(field, value, spec)
    low_ok = spec.low is None or (value >= spec.low if spec.low_inclusive else value > spec.low)
    high = spec.high
    high_ok = high is None or (value <= high if spec.high_inclusive else value < high)
    if not (low_ok and high_ok):
        raise _fail(field, value, spec)
    return value if spec.kind == "int" else float(value)


def resolve_probs(values: Mapping[str, Any]) -> dict[str, float]:
    """(p_e, p_h, p_b) as floats summing to 1; at most one may be "rest" (1 minus the others)."""
    rest = [f for f in PROB_FIELDS if values[f] == REST]
    if len(rest) > 1:
        raise ConfigError(
            f'data.{rest[1]}: at most one of p_e, p_h, p_b may be "rest", got {", ".join(rest)}'
        )
    probs = {f: values[f] for f in PROB_FIELDS if f not in rest}
    if rest:
        remainder = 1.0 - sum(probs.values())
        if not -PROB_TOLERANCE <= remainder <= 1.0 + PROB_TOLERANCE:
            raise ConfigError(
                f'data.{rest[0]}: "rest" must come out in [0, 1], got '
                f"{remainder:.6g} (the others sum to {1.0 - remainder:.6g})"
            )
        probs[rest[0]] = min(max(remainder, 0.0), 1.0)
    total = sum(probs.values())
    if abs(total - 1.0) > PROB_TOLERANCE:
        raise ConfigError(
            f"data.p_e, data.p_h, data.p_b: must sum to 1 (tolerance 1e-9), got "
            f"{probs['p_e']:.6g} + {probs['p_h']:.6g} + {probs['p_b']:.6g} = "
            f"{total:.12g}"
        )
    return {f: probs[f] for f in PROB_FIELDS}


@dataclass(frozen=True)
class Config:
    """One validated configuration; probabilities resolved to floats. Field names as in
    docs/MODEL.md."""

    name: str
    seeds: int
    base_seed: int
    d: int
    p_e: float
    p_h: float
    p_b: float
    sigma_p: float
    mu_norm: float
    nu_norm: float
    easy_signal: str
    signal_patches: int
    n_wk: int
    eta_wk: float
    steps_wk: int
    hard_labels: str
    teacher: str
    flip_p: float
    n_st: int
    m: int
    sigma_0: float
    eta: float
    steps: int
    activation: str
    activation_param: float
    optimizer: str
    batch_size: int
    momentum: float
    second_layer: str
    n_test: int
    log: str
    log_points: int
    n_val: int
    ceiling: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def point_fields(self) -> dict[str, Any]:
        """The fields that define one simulated setting: all but name, seeds and base_seed, and
        but a silent-default field at its default (FieldSpec.silent_default)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in ("name", "seeds", "base_seed") and not at_silent_default(k, v)
        }

    @functools.cached_property
    def point_hash(self) -> str:
        """Hex digest of the setting, independent of name, seed count and base seed; computed
        once per Config (run_id and every table row use it)."""
        return _digest(self.point_fields())

    @functools.cached_property
    def key_hash(self) -> str:
        """The digest the run's random key folds in: point_hash's fields less the paired ones
        (FieldSpec.paired). Equal to point_hash wherever every paired field is at its default."""
        return _digest({k: v for k, v in self.point_fields().items() if not FIELDS[k].paired})


def _digest(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


assert tuple(f.name for f in dataclasses.fields(Config)) == tuple(FIELDS)


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


def is_numeric(field: str) -> bool:
    """Whether `field` is a numeric setting field: one a formula may read or be given for."""
    spec = FIELDS.get(field)
    return spec is not None and spec.section is not None and spec.kind in ("int", "float", "prob")


def _is_formula(field: str, value: Any) -> bool:
    return is_numeric(field) and isinstance(value, str) and value != REST


def _formula(field: str, text: str) -> Formula:
    try:
        return parse(text, is_numeric)
    except FormulaError as err:
        raise ConfigError(f"{_qualified(field)}: formula {text!r}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{_qualified(field)}: formula {text!r}: nested too deeply") from None


def _settle(value: float, kind: str) -> float | int:
    """A formula's value as the field stores it: 15 significant digits (so a last-bit difference
    in pow between machines cannot change point_hash), an int field's rounded half up."""
    if not math.isfinite(value):
        return value  # check_field refuses it
    value = float(f"{value:.15g}")
    return math.floor(value + 0.5) if kind == "int" else value


def _evaluate(literal: dict[str, Any], formulas: dict[str, Formula]) -> dict[str, Any]:
    """The literal values with every formula evaluated (in dependency order: a formula waits for
    the fields it reads, and "rest" for the probabilities), settled (`_settle`) and validated like
    a literal value. A formula that waits on itself, through others or directly, is a
    ConfigError."""
    values, pending = dict(literal), dict(formulas)
    probs_done = False
    while True:
        if not probs_done and not set(PROB_FIELDS) & set(pending):
            values.update(resolve_probs(values))
            probs_done = True
        if not pending:
            return values
        ready = [
            f
            for f, formula in pending.items()
            if all(n not in pending and values[n] != REST for n in formula.names)
        ]
        if not ready:
            cycle = ", ".join(_qualified(f) for f in pending)
            raise ConfigError(
                f'{cycle}: formulas that wait on each other (a cycle, perhaps through "rest")'
            )
        for f in ready:
            formula = pending.pop(f)
            where = f"{_qualified(f)}: formula {formula.text!r}"
            try:
                value = _settle(formula.evaluate(values), FIELDS[f].kind)
            except FormulaError as err:
                raise ConfigError(f"{where}: {err}") from None
            except RecursionError:
                raise ConfigError(f"{where}: nested too deeply") from None
            try:
                values[f] = check_field(f, value)
            except ConfigError:
                raise ConfigError(f"{where} gives {value:g}; must be {FIELDS[f].allowed}") from None


def build(flat: Mapping[str, Any]) -> Config:
    """Flat {field: raw value} (missing fields take defaults) -> validated Config. A numeric
    field may be a formula of other numeric fields (formulas.py): the Config holds its value."""
    unknown = [k for k in flat if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field; allowed: {', '.join(FIELDS)}")
    raw = {f: flat.get(f, spec.default) for f, spec in FIELDS.items()}
    formulas = {f: _formula(f, v) for f, v in raw.items() if _is_formula(f, v)}
    values = {f: check_field(f, v) for f, v in raw.items() if f not in formulas}
    values = check_applies(_evaluate(values, formulas))
    return Config(**check_signal_patches(check_batch_size(check_activation_param(values))))


def check_applies(values: dict[str, Any]) -> dict[str, Any]:
    """`values` unchanged, or a ConfigError for a field set away from its default where its
    switch makes it unread (FieldSpec.only_with): a setting that would silently do nothing."""
    for field, spec in FIELDS.items():
        if spec.only_with is None or values[field] == spec.default:
            continue
        switch, allowed = spec.only_with
        if values[switch] not in allowed:
            wanted = " or ".join(json.dumps(v) for v in allowed)
            raise ConfigError(
                f"{_qualified(field)}: is read only with {_qualified(switch)} = {wanted}; with "
                f"{_qualified(switch)} = {json.dumps(values[switch])} leave it at its default "
                f"{spec.default!r}, got {values[field]!r}"
            )
    return values


def check_activation_param(values: dict[str, Any]) -> dict[str, Any]:
    """`values` unchanged, or a ConfigError where activation_param is outside what the chosen
    activation allows (ACTIVATION_PARAM; the default 1 is leaky_relu's linear case, refused)."""
    activation, param = values["activation"], values["activation_param"]
    if activation in ACTIVATION_PARAM:
        meaning, ok = ACTIVATION_PARAM[activation]
        if not ok(param):
            raise ConfigError(
                f'strong.activation_param: with strong.activation = "{activation}" must be '
                f"{meaning}, got {param!r}"
            )
    return values


def check_batch_size(values: dict[str, Any]) -> dict[str, Any]:
    """`values` unchanged, or a ConfigError where a minibatch would be larger than the training
    set it is drawn from (without replacement)."""
    if values["optimizer"] == "sgd" and values["batch_size"] > values["n_st"]:
        raise ConfigError(
            f"strong.batch_size: must be an integer in [1, n_st = {values['n_st']}] (a minibatch "
            f"is drawn from the training set without replacement), got {values['batch_size']!r}"
        )
    return values


def check_signal_patches(values: dict[str, Any]) -> dict[str, Any]:
    """`values` unchanged, or a ConfigError where samples have one signal patch but both-signal
    samples are asked for: a both-signal sample needs two."""
    if values["signal_patches"] == 1 and values["p_b"] != 0:
        raise ConfigError(
            f"data.p_b: must be 0 with data.signal_patches = 1 (a both-signal sample needs two "
            f"signal patches), got {values['p_b']:.6g}"
        )
    return values


def weak_set_size(config: Config) -> int:
    """n_wk where the teacher is fitted on a weak training set, else 0: no weak set is drawn
    (and none enters the reduced sampler's joint draw)."""
    switch, fitted = FITTED
    return config.n_wk if getattr(config, switch) in fitted else 0


def parse_value(text: str) -> Any:
    """A `--set` value: TOML syntax (2000, 0.5, "rest"), else the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """["n_st=2000", "strong.eta=0.1"] -> {"n_st": 2000, "eta": 0.1}; unknown fields rejected."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        field = key.rpartition(".")[2]
        if (
            not sep
            or field not in FIELDS
            or ("." in key and key.rpartition(".")[0] != (FIELDS[field].section or ""))
        ):
            raise ConfigError(
                f"--set {item}: must be FIELD=VALUE with FIELD one of {', '.join(FIELDS)}"
            )
        out[field] = parse_value(text.strip())
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


def at_silent_default(field: str, value: Any) -> bool:
    """Whether `field` is a silent-default field at its default (FieldSpec.silent_default)."""
    spec = FIELDS[field]
    return spec.silent_default and value == spec.default


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


def log_steps(steps: int, log: str, log_points: int) -> tuple[int, ...]:
    """Logged steps of a run, 0 and `steps` included: geometric (log-spaced from 1) or linear.
    Jax-free, so a dataset's integrity check can count the step rows a run must have."""
    if log == "geometric":
        grid = np.geomspace(1, steps, log_points - 1)
    else:
        grid = np.linspace(0, steps, log_points)
    return tuple(sorted({0, steps, *np.rint(grid).astype(int).tolist()}))


def check_engine(noise: str, precision: str) -> None:
    """ConfigError unless the engine choices go together: the reduced sampler keeps all of a
    noise vector's length in one coordinate (about sqrt(d) sigma), which a low-precision product
    rounds by more than the vector's natural spread at large d."""
    if noise == "reduced" and precision != "highest":
        raise ConfigError(
            f"--noise reduced: needs --precision highest, got {precision} (or use --noise auto, "
            f"which takes the full sampler at lower precision)"
        )


def check_span(optimizer: str, form: str, noise: str) -> None:
    """ConfigError where an engine choice needs the weights to stay in span{W0, signals, training
    noise} and `optimizer` does not keep them there (SPAN_KEEPING): the coefficient form carries
    only that span, and the reduced sampler draws only it."""
    if optimizer in SPAN_KEEPING:
        return
    for flag, value, needs in (("form", form, "coef"), ("noise", noise, "reduced")):
        if value == needs:
            keeping = ", ".join(f'"{o}"' for o in SPAN_KEEPING)
            raise ConfigError(
                f"--{flag} {value}: is exact only for strong.optimizer {keeping}, got "
                f'"{optimizer}" (which leaves the span of the initial weights, signals and '
                f"training noise); use --{flag} auto or {'dense' if flag == 'form' else 'full'}"
            )
