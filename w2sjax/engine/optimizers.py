"""The student's optimizers (`[strong] optimizer`, docs/MODEL.md section 4), by name
(`OPTIMIZERS`). Each is an optax transformation of GD increments (-eta grad L_S) into updates,
applied leaf by leaf to what the loop carries: W in the dense form, and the coefficients
(gamma, rho) wherever the optimizer keeps the span (fields.SPAN_KEEPING): a fixed linear map of
past increments transforms an increment's coefficients as it transforms the increment, so the
carried coefficients stay exact. Adam acts coordinate by coordinate, so its weights leave the
span; its coefficients are a projection (projection.projected_coefs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from w2sjax.config.fields import OPTIMIZERS as OPTIMIZER_NAMES
from w2sjax.config.fields import SPAN_KEEPING

# Minibatch t of a run is drawn from fold_in(fold_in(run key, SGD_SALT), t): draws of their own
# (noise.REDUCED_SALT's reasoning), so no other draw of a run changes.
SGD_SALT = 0x53474431

Weights = Callable[[chex.Array], "chex.Array | None"]


class Opt(NamedTuple):
    """An optimizer bound to one run: `transform` maps increments to updates; `keeps_span` says
    whether the coefficients go through it too (else they are projected); `weights(t)` gives
    step t's per-sample loss weights (n_st,), or None for the full batch (every weight 1)."""

    transform: optax.GradientTransformation
    keeps_span: bool
    weights: Weights


@dataclass(frozen=True)
class Optimizer:
    """transform(eta, momentum) -> optax transformation of increments; keeps_span: it is a fixed
    linear map of past increments (fields.SPAN_KEEPING); minibatch: each step's loss is over
    `batch_size` training samples drawn without replacement (weight n_st / batch_size each, so
    the step is an unbiased estimate of GD's); state_copies: how many arrays of the carried
    state's size its transformation keeps (memory planning, buckets.bytes_per_run)."""

    transform: Callable[[chex.Array, chex.Array], optax.GradientTransformation]
    keeps_span: bool = True
    minibatch: bool = False
    state_copies: int = 0

    def at(
        self, eta: chex.Array, momentum: chex.Array, key: chex.PRNGKey, n_st: int, batch_size: int
    ) -> Opt:
        """This optimizer for one run: learning rate eta, momentum, the run's key."""
        weights: Weights = lambda t: None  # noqa: E731
        if self.minibatch:
            weights = lambda t: minibatch_weights(key, t, n_st, batch_size)  # noqa: E731
        return Opt(self.transform(eta, momentum), self.keeps_span, weights)


def minibatch_weights(key: chex.PRNGKey, t: chex.Array, n: int, batch_size: int) -> chex.Array:
    """(n,) loss weights of step t's minibatch: n / batch_size on batch_size samples drawn
    without replacement from fold_in(fold_in(key, SGD_SALT), t), 0 elsewhere."""
    k = jax.random.fold_in(jax.random.fold_in(key, SGD_SALT), t)
    chosen = jax.random.permutation(k, n)[:batch_size]
    return jnp.zeros(n, jnp.float32).at[chosen].set(n / batch_size)


def _adam(eta: chex.Array, momentum: chex.Array) -> optax.GradientTransformation:
    # the increment divided by -eta is the gradient, which optax.adam (its defaults: b1 0.9,
    # b2 0.999, eps 1e-8) takes with learning rate eta
    return optax.chain(optax.scale(-1.0 / eta), optax.adam(eta))


OPTIMIZERS: dict[str, Optimizer] = {
    # full-batch GD, the paper's: the update is the increment
    "gd": Optimizer(transform=lambda eta, beta: optax.identity()),
    # minibatch SGD: GD's update on each step's minibatch
    "sgd": Optimizer(transform=lambda eta, beta: optax.identity(), minibatch=True),
    # heavy ball: v <- momentum v + increment, W <- W + v (optax.sgd(eta, momentum)'s update)
    "momentum": Optimizer(transform=lambda eta, beta: optax.trace(decay=beta), state_copies=1),
    "adam": Optimizer(transform=_adam, keeps_span=False, state_copies=2),
}
# fields.py validates the names, and config/settings.py refuses engine choices by SPAN_KEEPING,
# without jax
assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES
assert tuple(n for n, o in OPTIMIZERS.items() if o.keeps_span) == SPAN_KEEPING
