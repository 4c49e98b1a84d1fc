"""Typed, validated run configuration: flat {field: value} (formulas evaluated) built into a
Config, checked across fields, and hashed; and the checks of engine choices.

One field's table entry and check are in fields.py; TOML and `--set` text in config/toml.py.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from w2sjax.config.fields import (
    ACTIVATION_PARAM,
    FIELDS,
    FITTED,
    PROB_FIELDS,
    PROB_TOLERANCE,
    REST,
    SPAN_KEEPING,
    ConfigError,
    at_silent_default,
    check_field,
    is_numeric,
    qualified,
)
from w2sjax.config.formulas import Formula, FormulaError, parse
from w2sjax.config.sources import check_source


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
    source: str
    construction: str
    path: str
    classes: str
    patches: int
    data_hash: str
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
        """The fields that define one simulated setting: all but name, seeds and base_seed,
        path (where the data lies; data_hash says what it is, so moving a file changes no run),
        and a silent-default field at its default (FieldSpec.silent_default)."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if k not in ("name", "seeds", "base_seed", "path") and not at_silent_default(k, v)
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


def _is_formula(field: str, value: Any) -> bool:
    return is_numeric(field) and isinstance(value, str) and value != REST


def _formula(field: str, text: str) -> Formula:
    try:
        return parse(text, is_numeric)
    except FormulaError as err:
        raise ConfigError(f"{qualified(field)}: formula {text!r}: {err}") from None
    except RecursionError:
        raise ConfigError(f"{qualified(field)}: formula {text!r}: nested too deeply") from None


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
            cycle = ", ".join(qualified(f) for f in pending)
            raise ConfigError(
                f'{cycle}: formulas that wait on each other (a cycle, perhaps through "rest")'
            )
        for f in ready:
            formula = pending.pop(f)
            where = f"{qualified(f)}: formula {formula.text!r}"
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


def build(flat: Mapping[str, Any], read_data: bool = True) -> Config:
    """Flat {field: raw value} (missing fields take defaults) -> validated Config. A numeric
    field may be a formula of other numeric fields (formulas.py): the Config holds its value.
    read_data: check an image source against its data (sources.check_source); False for a
    dataset's own spec, which records what the data decided."""
    unknown = [k for k in flat if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field; allowed: {', '.join(FIELDS)}")
    raw = {f: flat.get(f, spec.default) for f, spec in FIELDS.items()}
    formulas = {f: _formula(f, v) for f, v in raw.items() if _is_formula(f, v)}
    values = {f: check_field(f, v) for f, v in raw.items() if f not in formulas}
    values = check_applies(_evaluate(values, formulas))
    values = check_source(values, fitted=values[FITTED[0]] in FITTED[1], read_data=read_data)
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
                f"{qualified(field)}: is read only with {qualified(switch)} = {wanted}; with "
                f"{qualified(switch)} = {json.dumps(values[switch])} leave it at its default "
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


# The engine choices that carry only span{W0, signals, training noise} (the four signals'
# coefficients), each with the flag that sets it and the choice to use instead.
SPAN_ONLY = (("form", "coef", "dense"), ("noise", "reduced", "full"))


def span_only_choice(form: str, noise: str) -> tuple[str, str, str] | None:
    """(flag, value, the alternative) of the first of `form`, `noise` that carries only the span
    (SPAN_ONLY); None where neither does."""
    chosen = {"form": form, "noise": noise}
    return next(((f, v, alt) for f, v, alt in SPAN_ONLY if chosen[f] == v), None)


def check_source_engine(source: str, form: str, noise: str) -> None:
    """ConfigError where an engine choice needs the synthetic distribution: the coefficient form
    and the reduced sampler carry the four signals' coefficients only (an image source's patches
    have many more, docs/IMAGES.md)."""
    found = span_only_choice(form, noise)
    if source != "synthetic" and found is not None:
        flag, value, other = found
        raise ConfigError(
            f'--{flag} {value}: serves only data.source = "synthetic", got "{source}"; use '
            f"--{flag} auto or {other}"
        )


def check_span(optimizer: str, form: str, noise: str) -> None:
    """ConfigError where an engine choice needs the weights to stay in span{W0, signals, training
    noise} and `optimizer` does not keep them there (SPAN_KEEPING): the coefficient form carries
    only that span, and the reduced sampler draws only it."""
    found = span_only_choice(form, noise)
    if optimizer not in SPAN_KEEPING and found is not None:
        flag, value, other = found
        keeping = ", ".join(f'"{o}"' for o in SPAN_KEEPING)
        raise ConfigError(
            f"--{flag} {value}: is exact only for strong.optimizer {keeping}, got "
            f'"{optimizer}" (which leaves the span of the initial weights, signals and '
            f"training noise); use --{flag} auto or {other}"
        )
