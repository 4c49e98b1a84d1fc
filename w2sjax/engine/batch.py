"""Static shape values (select the compiled program) vs dynamic per-run values (batched arrays).

`Shape` is a frozen, hashable object: every value that sets an array shape, a loop length or a code
path. `Params` holds everything else as arrays with a leading runs axis. Runs that share a Shape
share one compiled program.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import chex
import jax
import jax.numpy as jnp

from w2sjax.config.fields import FIELDS, FORMS, NOISES, PRECISIONS, SPAN_KEEPING
from w2sjax.config.settings import (
    Config,
    check_engine,
    check_source_engine,
    check_span,
    log_steps,
    weak_set_size,
)
from w2sjax.config.sources import construction_of, natural_dim
from w2sjax.engine.data import noise_rank
from w2sjax.engine.optimizers import OPTIMIZERS

# Which config fields select the compiled program and which are batched, as fields.FIELDS
# declares them (FieldSpec.static).
SHAPE_FIELDS = tuple(f for f, spec in FIELDS.items() if spec.static)
PARAM_FIELDS = tuple(f for f, spec in FIELDS.items() if spec.section and not spec.static)
SIGNAL_AXES = 4  # the working coordinates' first axes: mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}
# Shape fields that are not settings
ENGINE_CHOICES = ("filters", "form", "precision", "noise", "padded", "padded_eval")


def working_d(config: Config) -> int:
    """The runs' dimension: d, or under the natural construction the images' patch dimension
    (config.sources.natural_dim; d is not read there)."""
    if construction_of(config.source, config.construction) == "natural":
        return natural_dim(config.source, config.path, config.patches)
    return config.d


def span_size(n_wk: int, n_st: int, m: int) -> int:
    """M, how many vectors the reduced sampler draws jointly: W0's 2m filters and both training
    sets' noise patches (noise.py; n_wk = 0 where no teacher is fitted)."""
    return 2 * m + n_wk + n_st


def reduced_is_exact(config: Config, precision: str) -> bool:
    """Whether the reduced sampler is exact for `config`: every weight stays in the span of W0,
    the training noise and the signals (gradient descent), and products keep float32 precision
    (config.check_engine), and the optimizer keeps them there (fields.SPAN_KEEPING: not Adam)."""
    return precision == "highest" and config.optimizer in SPAN_KEEPING


def choose_noise(config: Config, precision: str) -> str:
    """--noise auto: "reduced" where it is exact and smaller than the full sampler (d' > M),
    else "full" (always for an image source)."""
    M = span_size(weak_set_size(config), config.n_st, config.m)
    smaller = noise_rank(config.d, config.easy_signal) > M and config.source == "synthetic"
    return "reduced" if smaller and reduced_is_exact(config, precision) else "full"


def can_pad(shape: Shape) -> bool:
    """Whether runs of `shape` may share a program padded to larger sample counts
    (Shape.padded) with their numbers unchanged up to float round-off: the synthetic source,
    whose draws are then made at each run's own sizes (noise.normals), which needs jax's
    partitionable threefry (the default since jax 0.5); an optimizer that keeps the span (Adam's
    projection would take in the padding) and takes the full batch (a minibatch is drawn from
    the run's own n_st); and, for the reduced sampler, draws small enough that the int32 index
    into their flat form (noise.normals: the joint draw's M rows, the test and validation sets'
    rows, each of k coordinates) does not wrap."""
    opt = OPTIMIZERS[shape.optimizer]
    rows = max(span_size(shape.n_wk, shape.n_st, shape.m), shape.n_test, shape.n_val)
    joint = rows * (shape.dim - SIGNAL_AXES)
    return (
        shape.source == "synthetic"
        and opt.keeps_span
        and not opt.minibatch
        and bool(jax.config.jax_threefry_partitionable)
        and (shape.noise != "reduced" or joint < 2**31)
    )


@dataclass(frozen=True)
class Shape:
    """Shape-setting values of a bucket of runs (see SHAPE_FIELDS), and five engine choices:
    `filters` adds the per-filter coefficient output (2 x m x 4 per logged step); `form` picks
    the state the GD loop carries, `precision` its products' precision and `noise` the noise
    sampler (noise.py; `dim` is its working dimension); `padded`: n_st is the length of the
    program's training axis, and each run trains on its own Params.n_st samples of it, the rest
    weighing nothing (can_pad), so runs that differ only in their sample counts (SAMPLE_COUNTS)
    share a program; `padded_eval` (with `padded`): the same for n_test and n_val, each run
    recording over its own Params.n_test and n_val (apart, so that a program padded only in
    n_st computes its test metrics as before, to the last bit). None of them
    changes a run's setting, key or run_id. n_wk is the weak training set's size as drawn: 0
    where the teacher is not fitted (config.weak_set_size); d the runs' dimension
    (working_d)."""

    d: int
    signal_patches: int
    source: str
    construction: str
    path: str
    classes: str
    patches: int
    data_hash: str
    n_wk: int
    steps_wk: int
    n_st: int
    m: int
    steps: int
    activation: str
    optimizer: str
    batch_size: int
    second_layer: str
    n_test: int
    log: str
    log_points: int
    easy_signal: str
    n_val: int
    hard_labels: str
    teacher: str
    ceiling: bool
    filters: bool = False
    form: str = "dense"
    precision: str = "highest"
    noise: str = "full"
    padded: bool = False
    padded_eval: bool = False

    @classmethod
    def of(
        cls,
        config: Config,
        filters: bool = False,
        form: str = "auto",
        precision: str = "highest",
        noise: str = "full",
    ) -> Shape:
        """The Shape of `config`. form: "dense" (state W, 8 m n_st D FLOPs a step), "coef" (state
        gamma, rho: 4 m n_st^2 a step, exact for the span-keeping optimizers) or "auto" (coef
        when n_st is below the number of noise coordinates and the optimizer keeps the span).
        precision of the noise products: see models.mm. noise: "full", "reduced" or "auto"
        (choose_noise)."""
        if form not in FORMS:
            raise ValueError(f"form: must be one of {', '.join(FORMS)}, got {form!r}")
        if precision not in PRECISIONS:
            raise ValueError(
                f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if noise not in NOISES:
            raise ValueError(f"noise: must be one of {', '.join(NOISES)}, got {noise!r}")
        check_engine(noise, precision)
        check_span(config.optimizer, form, noise)
        check_source_engine(config.source, form, noise)
        if noise == "auto":
            noise = choose_noise(config, precision)
        shape = cls(
            **{f: getattr(config, f) for f in SHAPE_FIELDS}
            | {"n_wk": weak_set_size(config), "d": working_d(config)},
            filters=filters,
            form=form,
            precision=precision,
            noise=noise,
        )
        if form == "auto":
            coords = shape.dim - SIGNAL_AXES if noise == "reduced" else config.d
            coef = config.n_st < coords and config.optimizer in SPAN_KEEPING
            coef = coef and config.source == "synthetic"
            shape = dataclasses.replace(shape, form="coef" if coef else "dense")
        return shape

    @property
    def dim(self) -> int:
        """D, the length of the run's vectors: d under the full sampler; under the reduced one
        the signal axes and k = min(M, d') noise coordinates."""
        if self.noise == "full":
            return self.d
        k = min(span_size(self.n_wk, self.n_st, self.m), noise_rank(self.d, self.easy_signal))
        return SIGNAL_AXES + k

    def log_steps(self) -> tuple[int, ...]:
        """Logged steps, 0 and `steps` included (config.log_steps)."""
        return log_steps(self.steps, self.log, self.log_points)


@chex.dataclass(frozen=True)
class Params:
    """Per-run dynamic values, each of shape (runs,): the PARAM_FIELDS as float32, the
    integers that make a run's key: base_seed, point (31-bit hash of the setting) and seed, and
    the run's own n_st, n_test and n_val (int32; read only where the Shape is padded)."""

    p_e: chex.Array
    p_h: chex.Array
    p_b: chex.Array
    sigma_p: chex.Array
    mu_norm: chex.Array
    nu_norm: chex.Array
    sigma_0: chex.Array
    eta: chex.Array
    activation_param: chex.Array
    momentum: chex.Array
    eta_wk: chex.Array
    flip_p: chex.Array
    base_seed: chex.Array
    point: chex.Array
    seed: chex.Array
    n_st: chex.Array
    n_test: chex.Array
    n_val: chex.Array


# The dataclasses hold exactly the fields FIELDS (fields.py) declares static or batched.
assert {f.name for f in dataclasses.fields(Shape)} == {*SHAPE_FIELDS, *ENGINE_CHOICES}
SAMPLE_COUNTS = ("n_st", "n_test", "n_val")  # what a padded program's runs may differ in
PARAM_INTS = ("base_seed", "point", "seed", *SAMPLE_COUNTS)
assert {f.name for f in dataclasses.fields(Params)} == {*PARAM_FIELDS, *PARAM_INTS}


def point_index(config: Config) -> int:
    """31 bits of the setting's key hash (Config.key_hash): folded into the key so a run's numbers
    depend only on its own setting and seed, never on what else is in the batch or grid."""
    return int(config.key_hash[:8], 16) & 0x7FFFFFFF


def stack_params(runs: Sequence[tuple[Config, int]]) -> Params:
    """(config, seed) pairs of one bucket -> Params with leading axis len(runs)."""
    floats = {f: jnp.asarray([getattr(c, f) for c, _ in runs], jnp.float32) for f in PARAM_FIELDS}
    ints = {
        "base_seed": jnp.asarray([c.base_seed for c, _ in runs], jnp.uint32),
        "point": jnp.asarray([point_index(c) for c, _ in runs], jnp.uint32),
        "seed": jnp.asarray([s for _, s in runs], jnp.uint32),
        **{f: jnp.asarray([getattr(c, f) for c, _ in runs], jnp.int32) for f in SAMPLE_COUNTS},
    }
    return Params(**floats, **ints)


def run_id(config: Config, seed: int) -> str:
    """Deterministic 16-hex id from the setting, base seed and seed: the same run in two sweeps
    has the same id, so tables join row by row."""
    text = f"{config.point_hash}:{config.base_seed}:{seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
