"""One run (docs/MODEL.md sections 1 to 5): its draws, the teacher's pseudo-labels, the
student's GD loop (loops/) stepped through the logged steps, and what it records (metrics.py).

A run is three pure functions of its scalars, each vmapped over runs by engine/simulate.py into
a program of its own: `begin` (draws, teacher, the loop form's setup and step-0 state), `advance`
(a number of steps) and `look` (what a logged step records). Apart, so the host steps the loop
and reports progress between programs that carry no host callback, which jax then keeps in its
persistent compilation cache (sweep/cache.py); `simulate_run` is the three in one program.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.engine.activations import ACTIVATIONS, Act
from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.data import EASY, HARD, RunData, Sample
from w2sjax.engine.images import CONSTRUCTIONS, Pool, construction, pool_of
from w2sjax.engine.loops import LOOPS
from w2sjax.engine.loops.state import LoopInputs, Views
from w2sjax.engine.metrics import CEILING_STEP_METRICS, NOISE_METRICS, record, teacher_metrics
from w2sjax.engine.models import SECOND_LAYERS, mm
from w2sjax.engine.optimizers import OPTIMIZERS
from w2sjax.engine.teachers import TEACHERS


def _teacher_labels(yhat: chex.Array, train: Sample, coins: chex.Array) -> chex.Array:
    return yhat


def _coin_labels(yhat: chex.Array, train: Sample, coins: chex.Array) -> chex.Array:
    return jnp.where(train.c == HARD, coins, yhat)


# `[weak] hard_labels`: the student's labels (n_st,) from the teacher's yhat (n_st,), the training
# set and n_st fair coins in {+1, -1}. "teacher": yhat itself. "coin": on hard-only samples a fair
# coin instead, Proposition 2.1's "random guessing" taken literally: the fitted teacher's labels
# there are at chance against y but follow its own rule, which the student can learn.
HARD_LABELS: dict[str, Callable[[chex.Array, Sample, chex.Array], chex.Array]] = {
    "teacher": _teacher_labels,
    "coin": _coin_labels,
}


def draw_run(shape: Shape, p: Params, pool: Pool | None = None) -> RunData:
    """Every random draw of one run, by the construction of its source (images.CONSTRUCTIONS:
    the synthetic distribution, or images from `pool`, by default images.pool_of(shape))."""
    if pool is None:
        pool = pool_of(shape)
    return CONSTRUCTIONS[construction(shape)].draw(shape, p, pool)


class Fixed(NamedTuple):
    """What a run's training reads and never changes: its draws (without the weak set, which
    only the teacher reads, and with only the labels of the test and validation sets), the
    evaluation samples (test then validation), the labels of each pass (the student's
    pseudo-labels yhat first; with `[eval] ceiling` then the true labels) and the loop form's
    setup (loops.Form)."""

    run: RunData
    evaluation: Sample
    passes: tuple[chex.Array, ...]
    pre: Any


class Moving(NamedTuple):
    """What a run's training changes, per pass: the loop's state and the first step whose state
    is not finite (-1: none yet)."""

    states: tuple
    diverged: tuple[chex.Array, ...]


def _without_noise(s: Sample) -> Sample:
    """s with its noise patches (n, D) replaced by an (n, 0) array: what is not read later need
    not stay on the device."""
    return s.replace(xi=jnp.zeros((s.y.shape[0], 0)))


def _noise_as(s: Sample, precision: str) -> Sample:
    """s with its noise patches rounded once to bfloat16 where the products take them so
    (precision "bf16": models.mm rounds nothing twice, and a step reads half the bytes)."""
    return s.replace(xi=s.xi.astype(jnp.bfloat16)) if precision == "bf16" else s


def _inputs(shape: Shape, p: Params, run: RunData, evaluation: Sample) -> LoopInputs:
    """The loop forms' inputs: the activation and optimizer at this run's values. Where the
    program is padded (Sample.real), every step's loss weighs the run's own samples n_st / n
    each and the padding 0 (optimizers.Opt.weights' minibatch convention): the loss, gradient
    and rho's increments are the run's own."""
    act = ACTIVATIONS[shape.activation].at(p.activation_param)
    opt = OPTIMIZERS[shape.optimizer].at(p.eta, p.momentum, run.key, shape.n_st, shape.batch_size)
    if run.train.real is not None:  # batch.can_pad: the full batch, no minibatch's weights
        own = run.train.real * (shape.n_st / p.n_st)
        opt = opt._replace(weights=lambda t: own)
    v0 = SECOND_LAYERS[shape.second_layer].init(shape.m)
    return LoopInputs(
        run.W0, run.signals, run.train, evaluation, p.eta, act, opt, shape.precision, v0,
        run.reference,
    )  # fmt: skip


def begin(shape: Shape, p: Params, pool: Pool | None = None) -> tuple[dict, Fixed, Moving]:
    """A run up to its step 0, for scalar Params (and the images of an image source:
    images.pool_of): (per_run, the teacher's metrics and with shape.filters "filter_init"; Fixed;
    Moving at step 0)."""
    made = CONSTRUCTIONS[construction(shape)]
    run = made.draw(shape, p, pool)
    taught = TEACHERS[shape.teacher].labels(run, p, shape)
    if made.categories_from_teacher:
        test = run.test.replace(c=jnp.where(taught.test == run.test.y, EASY, HARD))
        run = run._replace(test=test)
    yhat = HARD_LABELS[shape.hard_labels](taught.train, run.train, run.coins)
    per_run = teacher_metrics(taught.test, run.test, yhat, run.train)
    reference = run.signals if run.reference is None else run.reference
    if shape.filters:
        # <w^(0), s>: which side of each signal a filter starts on decides, by the ReLU argument,
        # which sign of nu it learns (the report's filter_sign_agreement)
        per_run["filter_init"] = mm("jrd,sd->jrs", run.W0, reference)
    evaluation = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), run.test, run.val)
    inputs = _inputs(shape, p, run, evaluation)
    form = LOOPS[shape.form]
    pre = form.setup(inputs)
    # The ceiling: the same student on the true labels, same data, initialisation and keys.
    passes = (yhat, run.train.y) if shape.ceiling else (yhat,)
    states = tuple(form.loop(inputs, labels, pre).init for labels in passes)
    # metrics.record reads only the labels of the test and validation sets (their samples are
    # in `evaluation`), and the coefficient form reads no noise patch after its setup
    test, val = (_without_noise(s).replace(coefs=None) for s in (run.test, run.val))
    train, evaluation = (
        _noise_as(s, shape.precision) if form.reads_noise else _without_noise(s)
        for s in (run.train, evaluation)
    )
    kept = run._replace(weak=None, train=train, test=test, val=val)
    moving = Moving(states, tuple(jnp.int32(-1) for _ in passes))
    return per_run, Fixed(kept, evaluation, passes, pre), moving


def _loop(shape: Shape, inputs: LoopInputs, fixed: Fixed, labels: chex.Array) -> Any:
    """The loop form's Loop on the run's inputs (_inputs) and its setup, trained on `labels`
    (n_st,)."""
    return LOOPS[shape.form].loop(inputs, labels, fixed.pre)


def _loops(shape: Shape, inputs: LoopInputs, fixed: Fixed) -> list:
    """Each pass's Loop (_loop)."""
    return [_loop(shape, inputs, fixed, labels) for labels in fixed.passes]


def advance(
    shape: Shape, p: Params, fixed: Fixed, moving: Moving, start: chex.Array, length: chex.Array
) -> Moving:
    """Moving `length` steps on from step `start` (both int32 scalars, the same for every run
    of a batch, so that under vmap the loop stays a loop), each pass's divergence step noted."""

    def steps(loop: Any, state: Any, diverged_at: chex.Array) -> tuple:
        def body(i: chex.Array, c: tuple) -> tuple:
            st, at = c
            st = loop.step(st)
            finite = jnp.all(
                jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(st)])
            )
            return st, jnp.where((at < 0) & ~finite, start + i + 1, at)

        return jax.lax.fori_loop(0, length, body, (state, diverged_at))

    # The passes are independent loops, which XLA may run side by side.
    loops = _loops(shape, _inputs(shape, p, fixed.run, fixed.evaluation), fixed)
    moved = [steps(loop, state, at) for loop, state, at in zip(loops, *moving, strict=True)]
    return Moving(tuple(s for s, _ in moved), tuple(at for _, at in moved))


def look(shape: Shape, p: Params, fixed: Fixed, moving: Moving) -> dict:
    """What the current step records (shape.log_steps(): STEP_METRICS, "filters" (2, m, 4) with
    shape.filters, with shape.ceiling CEILING_STEP_METRICS as ceiling_*), NaN for a pass that
    has diverged."""
    inputs = _inputs(shape, p, fixed.run, fixed.evaluation)
    out: dict = {}
    passes = zip(_loops(shape, inputs, fixed), fixed.passes, *moving, strict=True)
    for index, (loop, labels, state, at) in enumerate(passes):
        seen = record_views(labels, fixed.run, shape, inputs.act, loop.views(state))
        seen = {k: jnp.where(at >= 0, jnp.nan, v) for k, v in seen.items()}
        if index == 0:
            out |= seen
        else:
            out |= {f"ceiling_{k}": seen[k] for k in CEILING_STEP_METRICS}
    return out


def simulate_run(shape: Shape, p: Params, pool: Pool | None = None) -> tuple[dict, dict]:
    """One run of MODEL.md sections 1 to 5 for scalar Params, in one program (begin, then
    advance and look at each logged step; engine/simulate.py runs the same three as programs of
    their own).

    Returns (per_run, per_step): per_run maps RUN_METRICS to scalars and "diverged_step" to the
    first step whose state is not finite (-1: none), and with shape.filters "filter_init" to the
    initial projections (2, m, 4); per_step maps STEP_METRICS to (K,) arrays over the K logged
    steps of `shape.log_steps()` (and "filters" to (K, 2, m, 4)), NaN from the divergence on;
    with shape.ceiling also CEILING_STEP_METRICS, those of the same student trained on the true
    labels (`[eval] ceiling`). The test and validation sets are evaluated together, one product
    per step. pool: the images of an image source (images.pool_of).
    """
    per_run, fixed, moving = begin(shape, p, pool)

    def segment(moving: Moving, xs: tuple) -> tuple[Moving, dict]:
        moving = advance(shape, p, fixed, moving, *xs)
        return moving, look(shape, p, fixed, moving)

    # The first segment has length 0: step 0 is recorded from the loop's carry, never from
    # constants XLA would fold at compile time.
    starts, lengths = segments(shape)
    moving, per_step = jax.lax.scan(segment, moving, (jnp.asarray(starts), jnp.asarray(lengths)))
    per_run["diverged_step"] = moving.diverged[0]
    return per_run, per_step


def segments(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) int32 (K,) of the loop's stretches ending at each of the K logged steps:
    the first has length 0 (step 0)."""
    log_steps = np.asarray(shape.log_steps(), np.int32)
    lengths = np.diff(log_steps, prepend=0).astype(np.int32)
    return log_steps - lengths, lengths


class Prepared(NamedTuple):
    """One run ready to train (for bench --profile and tests, which time or check the stages
    one by one): the teacher's per-run metrics, loop(labels) the loop form's Loop on labels of
    a pass, rec(labels) what a logged state's Views record, and `begin`'s Fixed (each pass's
    labels are fixed.passes; a stage that returns it keeps all of begin's set-up, the
    evaluation samples' Gram products included, which XLA would otherwise drop)."""

    per_run: dict
    loop: Callable[[chex.Array], Any]
    rec: Callable[[chex.Array], Callable[[Views], dict]]
    fixed: Fixed


def prepare_run(shape: Shape, p: Params, pool: Pool | None = None) -> Prepared:
    """`begin`'s run as a Prepared, for scalar Params."""
    per_run, fixed, _ = begin(shape, p, pool)
    inputs = _inputs(shape, p, fixed.run, fixed.evaluation)

    def rec(labels: chex.Array) -> Callable[[Views], dict]:
        return partial(record_views, labels, fixed.run, shape, inputs.act)

    return Prepared(per_run, partial(_loop, shape, inputs, fixed), rec, fixed)


def record_views(
    yhat: chex.Array, run: RunData, shape: Shape, act: Act, views: Views
) -> dict[str, chex.Array]:
    """metrics.record of one logged state's Views, the student trained on labels yhat (n_st,);
    an image source without a noise patch memorises nothing, and records no coefficient of one
    (NaN)."""
    seen = record(views, run.train, yhat, run.test, run.val, filters=shape.filters, act=act)
    if not CONSTRUCTIONS[construction(shape)].synthetic_noise:
        seen |= {k: jnp.float32(jnp.nan) for k in NOISE_METRICS}
    return seen
