"""What the two loop forms (the registry in loops/__init__.py) and their callers share: the
states the forms carry, the Views metrics.record reads and the Loop a form is set up as.

It sits below both forms, so each form, train.py and metrics.py depend on it and not on each
other; with it are the two helpers both forms' steps use (trained, out_sign)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex

from w2sjax.engine.activations import Act
from w2sjax.engine.data import Sample
from w2sjax.engine.models import J_SIGN, Preacts
from w2sjax.engine.optimizers import Opt


class Views(NamedTuple):
    """What metrics.record reads from a loop's state: the pre-activations on the training set and
    on the evaluation samples, the signal coefficients (2, m, 4), rho (2, m, n_st), the
    relative norm of the part of W - W0 outside span{signals, training noise} (NaN where the
    coefficients are carried, so exact by construction), and a trained second layer's weights
    v (2, m) (None where it is fixed)."""

    train: Preacts
    evaluation: Preacts
    coefs: chex.Array
    rho: chex.Array
    residual: chex.Array
    second: chex.Array | None = None


class LoopInputs(NamedTuple):
    """What a loop form is set up from, besides the labels it trains on: W0 (2, m, D), the
    signals (S, D) the samples' signal patches combine (data.RunData), the training samples
    and the evaluation samples (test then validation) they are viewed on, the step size eta,
    the activation, the optimizer, the precision of the products with the noise patches
    (models.mm, forward and gradient), a trained second layer's initial weights v0 (2, m)
    (None for the fixed one), and the four signals (4, D) the coefficients gmu and gnu are read
    against (None: `signals`, which then are those four)."""

    W0: chex.Array
    signals: chex.Array
    train: Sample
    evaluation: Sample
    eta: chex.Array
    act: Act
    opt: Opt
    precision: str = "highest"
    v0: chex.Array | None = None
    reference: chex.Array | None = None


class Loop(NamedTuple):
    """A loop form set up for one run: the initial state, step(state) -> state, and
    views(state) -> Views."""

    init: Any
    step: Callable[[Any], Any]
    views: Callable[[Any], Views]


class Form(NamedTuple):
    """A loop form: setup(inputs) computes what it needs once per run (a pytree of arrays,
    whatever the labels), loop(inputs, yhat, pre) the Loop on labels yhat (n_st,) from it. Apart,
    so a run's setup is computed once and its steps run in later programs (engine/simulate.py).
    reads_noise: whether loop reads the samples' noise patches (xi) besides `pre`; where not,
    they are not kept on the device after the setup."""

    setup: Callable[[LoopInputs], Any]
    loop: Callable[[LoopInputs, chex.Array, Any], Loop]
    reads_noise: bool = True


@chex.dataclass(frozen=True)
class Strong:
    """What the dense loop carries: W (2, m, d), rho (2, m, n_st) (zero where the optimizer does
    not keep the span), the optimizer's state, the step count t, and a trained second layer's
    weights v (2, m) (None: fixed)."""

    W: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array
    v: chex.Array | None = None


@chex.dataclass(frozen=True)
class Coef:
    """The coefficient-space state (exact for optimizers that keep the span): gamma (2, m, 4) =
    <w_{j,r} - w_{j,r}^(0), s> for the four signals, rho (2, m, n_st), the optimizer's state, the
    step count t, and a trained second layer's weights v (2, m) (None: fixed)."""

    gamma: chex.Array
    rho: chex.Array
    opt_state: Any
    t: chex.Array
    v: chex.Array | None = None


def trained(state: Strong | Coef, **parts: chex.Array) -> dict[str, chex.Array]:
    """`parts` (what a loop form updates) and, where the second layer is trained, its v: the
    dict of arrays the optimizer steps."""
    return parts if state.v is None else {**parts, "v": state.v}


def out_sign(second: chex.Array | None) -> chex.Array:
    """(2, m or 1, 1): each filter's output weight, j for the fixed second layer."""
    return J_SIGN[:, None, None] if second is None else second[:, :, None]
