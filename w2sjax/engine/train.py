"""One run (docs/MODEL.md sections 1 to 5): its draws, the teacher's pseudo-labels, the
student's GD loop (loops/) stepped through the logged steps, and what it records (metrics.py).

Everything here is a pure function of one run's scalars; `simulate` vmaps it over runs.
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
from w2sjax.engine.progress import report_step
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


class Prepared(NamedTuple):
    """One run ready to train: the teacher's per-run metrics and the labels (n_st,) of each pass
    (the student's pseudo-labels yhat first; with `[eval] ceiling` then the true labels).
    loop(labels) builds the loop form's Loop on those labels (its step-0 state, step and
    views); rec(labels) records a logged state's Views."""

    per_run: dict
    passes: tuple[chex.Array, ...]
    loop: Callable[[chex.Array], Any]
    rec: Callable[[chex.Array], Callable[[Views], dict]]


def prepare_run(shape: Shape, p: Params, pool: Pool | None = None) -> Prepared:
    """draw_run, the teacher's pseudo-labels and what the loops need, for scalar Params (and
    the images of an image source: images.pool_of)."""
    made = CONSTRUCTIONS[construction(shape)]
    run = made.draw(shape, p, pool)
    taught = TEACHERS[shape.teacher].labels(run, p, shape)
    if made.categories_from_teacher:
        test = run.test.replace(c=jnp.where(taught.test == run.test.y, EASY, HARD))
        run = run._replace(test=test)
    signals, _, train, test, val, W0, coins, key, reference = run
    reference = signals if reference is None else reference
    yhat = HARD_LABELS[shape.hard_labels](taught.train, train, coins)
    per_run = teacher_metrics(taught.test, test, yhat, train.y)
    if shape.filters:
        # <w^(0), s>: which side of each signal a filter starts on decides, by the ReLU argument,
        # which sign of nu it learns (the report's filter_sign_agreement)
        per_run["filter_init"] = mm("jrd,sd->jrs", W0, reference)

    evaluation = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), test, val)
    act = ACTIVATIONS[shape.activation].at(p.activation_param)
    opt = OPTIMIZERS[shape.optimizer].at(p.eta, p.momentum, key, shape.n_st, shape.batch_size)
    v0 = SECOND_LAYERS[shape.second_layer].init(shape.m)

    inputs = LoopInputs(
        W0, signals, train, evaluation, p.eta, act, opt, shape.precision, v0, reference
    )

    def loop(labels: chex.Array) -> Any:
        return LOOPS[shape.form](inputs, labels)

    def rec(labels: chex.Array) -> Callable[[Views], dict]:
        recorded = partial(record_views, labels, run, shape, act)
        if made.synthetic_noise:
            return recorded
        # no noise patch: nothing is memorised, and no coefficient of one is recorded
        return lambda views: recorded(views) | {k: jnp.float32(jnp.nan) for k in NOISE_METRICS}

    # The ceiling: the same student on the true labels, same data, initialisation and keys.
    passes = (yhat, train.y) if shape.ceiling else (yhat,)
    return Prepared(per_run, passes, loop, rec)


def simulate_run(
    shape: Shape, p: Params, tick: chex.Array | None = None, pool: Pool | None = None
) -> tuple[dict, dict]:
    """One run of MODEL.md sections 1 to 5 for scalar Params.

    Returns (per_run, per_step): per_run maps RUN_METRICS to scalars and "diverged_step" to the
    first step whose state is not finite (-1: none), and with shape.filters "filter_init" to the
    initial projections (2, m, 4); per_step maps STEP_METRICS to (K,) arrays over the K logged
    steps of `shape.log_steps()` (and "filters" to (K, 2, m, 4)), NaN from the divergence on;
    with shape.ceiling also CEILING_STEP_METRICS, those of the same student trained on the true
    labels (`[eval] ceiling`). The test and validation sets are evaluated together, one product
    per step. tick: report the step to progress.py every `tick` steps (None: never). pool: the
    images of an image source (images.pool_of).
    """
    prepared = prepare_run(shape, p, pool)
    per_run = prepared.per_run
    # The passes are independent loops, and XLA may run them side by side (progress.py counts
    # each).
    curves = [
        curve(shape, *prepared.loop(labels), prepared.rec(labels), tick, index)
        for index, labels in enumerate(prepared.passes)
    ]
    (per_step, per_run["diverged_step"]), *ceiling = curves
    for other, _ in ceiling:
        per_step.update({f"ceiling_{k}": other[k] for k in CEILING_STEP_METRICS})
    return per_run, per_step


def record_views(
    yhat: chex.Array, run: RunData, shape: Shape, act: Act, views: Views
) -> dict[str, chex.Array]:
    """metrics.record of one logged state's Views, the student trained on labels yhat (n_st,)."""
    return record(views, run.train, yhat, run.test, run.val, filters=shape.filters, act=act)


def curve(
    shape: Shape,
    state: Any,
    step: Callable[[Any], Any],
    views: Callable[[Any], Views],
    rec: Callable[[Views], dict],
    tick: chex.Array | None = None,
    pass_index: int = 0,
) -> tuple[dict, chex.Array]:
    """Step a loop from `state` through shape.log_steps(), recording rec(views(state)) at each
    logged step: (per_step, each value (K,) over the K logged steps, NaN from the divergence on;
    diverged_at, the first step whose state is not finite, -1 for none). With `tick`, the steps
    run in blocks that end at each multiple of tick (and at each logged step), and each block
    reports its last step to progress.py as pass `pass_index`: no branch inside the step loop,
    so the steps themselves run as they do without reports."""

    def run(carry: tuple, start: chex.Array, length: chex.Array) -> tuple:
        def body(i: chex.Array, c: tuple) -> tuple:
            st, diverged_at = c
            st = step(st)
            finite = jnp.all(
                jnp.stack([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(st)])
            )
            return st, jnp.where((diverged_at < 0) & ~finite, start + i + 1, diverged_at)

        return jax.lax.fori_loop(0, length, body, carry)

    def run_reporting(carry: tuple, start: chex.Array, length: chex.Array) -> tuple:
        end = start + length

        def block(c: tuple) -> tuple:
            t, inner = c
            n = jnp.minimum(tick - t % tick, end - t)
            inner = run(inner, t, n)
            report_step(pass_index, t + n)
            return t + n, inner

        return jax.lax.while_loop(lambda c: c[0] < end, block, (start, carry))[1]

    def segment(carry: tuple, xs: tuple) -> tuple[tuple, dict]:
        start, length = xs
        state, diverged_at = (run if tick is None else run_reporting)(carry, start, length)
        out = rec(views(state))
        return (state, diverged_at), jax.tree_util.tree_map(
            lambda v: jnp.where(diverged_at >= 0, jnp.nan, v), out
        )

    # Segment lengths are the same for every run, so under vmap the inner loop stays a real loop
    # and only logged steps are stacked. The first segment has length 0: step 0 is recorded from
    # the loop's carry, never from constants XLA would fold at compile time.
    log_steps = np.asarray(shape.log_steps())
    lengths = np.diff(log_steps, prepend=0)
    xs = (jnp.asarray(log_steps - lengths, jnp.int32), jnp.asarray(lengths, jnp.int32))
    (_, diverged_at), per_step = jax.lax.scan(segment, (state, jnp.int32(-1)), xs)
    return per_step, diverged_at
