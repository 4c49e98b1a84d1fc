"""The weak teachers (`[weak] teacher`, docs/MODEL.md section 2), by name (`TEACHERS`): what
labels the student's training set before `[weak] hard_labels`, and what the teacher predicts on
the test set (weak_test_acc). Each is a pure function of one run's draws and scalars."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from w2sjax.config.fields import TEACHERS as TEACHER_NAMES
from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.data import RunData, Sample
from w2sjax.engine.models import logistic_loss, sign, weak_output

# A flip teacher's flips come from fold_in(run key, FLIP_SALT): a key of their own
# (noise.REDUCED_SALT's reasoning), never one another draw of the run uses.
FLIP_SALT = 0x464C4950


class TeacherLabels(NamedTuple):
    """The teacher's labels in {+1, -1}: on the training set (n_st,), on the test set (n_test,)."""

    train: chex.Array
    test: chex.Array


@dataclass(frozen=True)
class Teacher:
    """labels(run, p, shape) -> TeacherLabels for one run's draws and scalars."""

    labels: Callable[[RunData, Params, Shape], TeacherLabels]


def fit_weak(signals: chex.Array, data: Sample, eta_wk: chex.Array, steps_wk: int) -> chex.Array:
    """(D,) weak weights: full-batch GD from w = 0 on the logistic loss with TRUE labels."""
    opt = optax.sgd(eta_wk)
    loss = lambda w: logistic_loss(data.y * weak_output(w, signals, data)).mean()  # noqa: E731

    def step(_: Any, carry: tuple) -> tuple:
        w, opt_state = carry
        updates, opt_state = opt.update(jax.grad(loss)(w), opt_state)
        return optax.apply_updates(w, updates), opt_state

    w0 = jnp.zeros(signals.shape[1], jnp.float32)
    return jax.lax.fori_loop(0, steps_wk, step, (w0, opt.init(w0)))[0]


def _linear(run: RunData, p: Params, shape: Shape) -> TeacherLabels:
    """The paper's teacher: a linear CNN fitted to the true labels of its own n_wk samples."""
    w = fit_weak(run.signals, run.weak, p.eta_wk, shape.steps_wk)
    return TeacherLabels(*(sign(weak_output(w, run.signals, s)) for s in (run.train, run.test)))


def _flip(run: RunData, p: Params, shape: Shape) -> TeacherLabels:
    """True labels, each flipped independently with probability flip_p (the label-noise setting
    of the benign-overfitting literature); the test set's flips are the teacher's errors there.
    One draw over the training then the test samples, the test set's read from the run's own
    n_st on where its program is padded (Shape.padded)."""
    n_st, n_test = run.train.y.shape[0], run.test.y.shape[0]
    u = jax.random.uniform(jax.random.fold_in(run.key, FLIP_SALT), (n_st + n_test,))
    own = p.n_st if shape.padded else n_st
    train, test = u[:n_st], jax.lax.dynamic_slice(u, (own,), (n_test,))
    return TeacherLabels(
        jnp.where(train < p.flip_p, -run.train.y, run.train.y),
        jnp.where(test < p.flip_p, -run.test.y, run.test.y),
    )


def _clean(run: RunData, p: Params, shape: Shape) -> TeacherLabels:
    """True labels: with hard_labels = "coin", the teacher of Proposition 2.1's reading exactly
    (right on every sample with the easy signal, a fair coin on hard-only ones)."""
    return TeacherLabels(run.train.y, run.test.y)


TEACHERS: dict[str, Teacher] = {
    "linear": Teacher(labels=_linear),
    "flip": Teacher(labels=_flip),
    "clean": Teacher(labels=_clean),
}
assert tuple(TEACHERS) == TEACHER_NAMES  # fields.py validates the names without importing jax
