"""The config fields: their table (FIELDS, one FieldSpec each), the choices they take, and the
check of one field's value on its own.

A config file has sections [data], [weak], [strong], [eval] and three top-level keys (name, seeds,
base_seed). Field names are flat and unique across sections; they are also the column names of every
table. Every field has a default (docs/MODEL.md section 8's parameter set), so a file names only
what it changes. Anything malformed raises ConfigError with a one-line message naming the field
and the allowed values, before any compute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

PROB_FIELDS = ("p_e", "p_h", "p_b")
# Engine choices (not config fields: they change neither a run's random numbers nor its run_id).
FORMS = ("auto", "dense", "coef")
PRECISIONS = ("highest", "tf32", "bf16")
NOISES = ("auto", "full", "reduced")
PADS = ("auto", "off", "max")
PROB_TOLERANCE = 1e-9
REST = "rest"


class ConfigError(ValueError):
    """A bad config value; str() is one line naming the field and what is allowed (line breaks
    in echoed user input, e.g. a quoted TOML key or a --set value, are escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))


@dataclass(frozen=True)
class FieldSpec:
    """How one config field is checked (kind: int | float | prob | choice | name | bool | text |
    classes) and
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
# Where samples come from (`[data] source`, config/sources.py): the synthetic distribution of
# MODEL.md section 1, or a dataset of images, built into samples by a construction (MODEL.md
# section 9): "planted" puts an image where the hard signal was, "natural" cuts each image into
# patches. Only "planted" reads the synthetic distribution's fields.
SOURCES = ("synthetic", "digits", "npz")
IMAGE_SOURCES = ("digits", "npz")
CONSTRUCTIONS = ("planted", "natural")
IMAGES = ("source", IMAGE_SOURCES)
# Two groups of class labels, "0-4/5-9" or "3/5" or "0,2,4/1,3": the first group is y = +1.
CLASSES_RE = re.compile(r"(\d+(-\d+)?)(,\d+(-\d+)?)*/(\d+(-\d+)?)(,\d+(-\d+)?)*")


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
    "source": _choice("data", "synthetic", SOURCES, static=True, silent_default=True),
    "construction": _choice(
        "data", "planted", CONSTRUCTIONS, static=True, silent_default=True, only_with=IMAGES
    ),
    "path": FieldSpec(
        "data",
        "text",
        "",
        "the path of an .npz file",
        static=True,
        silent_default=True,
        only_with=("source", ("npz",)),
    ),
    "classes": FieldSpec(
        "data",
        "classes",
        "",
        'two groups of class labels, the first y = +1, e.g. "0-4/5-9" or "3/5" or "0,2/1,3"',
        static=True,
        silent_default=True,
        only_with=IMAGES,
    ),
    "patches": _pos_int("data", 4, silent_default=True, only_with=("construction", ("natural",))),
    # Filled in from the file (sources.check_source): runs on two different files never share a
    # point_hash or run_id, and a file that changed under a dataset is refused on resume.
    "data_hash": FieldSpec(
        "data",
        "text",
        "",
        "the data's content hash (16 hex digits; filled in from the data when left out)",
        static=True,
        silent_default=True,
        only_with=IMAGES,
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
# A path or a hash: one line of printable text.
_TEXT_RE = re.compile(r"[^\x00-\x1f\x7f]{1,1000}")


def qualified(field: str) -> str:
    """A field as error messages name it: section.field (top-level keys alone)."""
    section = FIELDS[field].section
    return f"{section}.{field}" if section else field


def _fail(field: str, value: Any, spec: FieldSpec) -> ConfigError:
    return ConfigError(f"{qualified(field)}: must be {spec.allowed}, got {value!r}")


def check_field(field: str, value: Any) -> Any:
    """Validate one raw value; return it normalised (ints stay ints, numbers become float).

    "rest" passes for probabilities; the sum rule is checked across fields by `resolve_probs`.
    """
    spec = FIELDS[field]
    if spec.kind in ("text", "classes"):
        pattern = CLASSES_RE if spec.kind == "classes" else _TEXT_RE
        if not (isinstance(value, str) and (value == "" or pattern.fullmatch(value))):
            raise _fail(field, value, spec)
        return value
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


def is_numeric(field: str) -> bool:
    """Whether `field` is a numeric setting field: one a formula may read or be given for."""
    spec = FIELDS.get(field)
    return spec is not None and spec.section is not None and spec.kind in ("int", "float", "prob")


def at_silent_default(field: str, value: Any) -> bool:
    """Whether `field` is a silent-default field at its default (FieldSpec.silent_default)."""
    spec = FIELDS[field]
    return spec.silent_default and value == spec.default
