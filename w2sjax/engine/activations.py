"""The student's activations (`[strong] activation`, docs/MODEL.md section 3), by name
(`ACTIVATIONS`): each a function and its derivative, of the pre-activation and one scalar
parameter (`[strong] activation_param`). The loop's gradient comes from differentiating the
function; the rho recursion and the coefficient form use the derivative written out, so the two
must agree (a contract test checks every entry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import chex
import jax
import jax.numpy as jnp

from w2sjax.config.fields import ACTIVATIONS as ACTIVATION_NAMES

Elementwise = Callable[[chex.Array, chex.Array], chex.Array]


@dataclass(frozen=True)
class Act:
    """An activation at its parameter: fn(x) and its derivative grad(x), elementwise."""

    fn: Callable[[chex.Array], chex.Array]
    grad: Callable[[chex.Array], chex.Array]


@dataclass(frozen=True)
class Activation:
    """fn(x, param) and grad(x, param) = d fn / dx; `at(param)` binds the parameter."""

    fn: Elementwise
    grad: Elementwise

    def at(self, param: chex.Array) -> Act:
        return Act(fn=lambda x: self.fn(x, param), grad=lambda x: self.grad(x, param))


def _step(x: chex.Array) -> chex.Array:
    return (x > 0).astype(x.dtype)


ACTIVATIONS: dict[str, Activation] = {
    # ReLU'(0) = 0, as jax.nn.relu's derivative and MODEL.md section 3 have it
    "relu": Activation(fn=lambda x, _: jax.nn.relu(x), grad=lambda x, _: _step(x)),
    # Proposition 2.2's linear student
    "linear": Activation(fn=lambda x, _: x, grad=lambda x, _: jnp.ones_like(x)),
    "leaky_relu": Activation(
        fn=lambda x, a: jnp.where(x > 0, x, a * x), grad=lambda x, a: jnp.where(x > 0, 1.0, a)
    ),
    # ReLU^q of the benign-overfitting analyses (q >= 1; q = 1 is ReLU)
    "relu_pow": Activation(
        fn=lambda x, q: jax.nn.relu(x) ** q,
        grad=lambda x, q: jnp.where(x > 0, q * jax.nn.relu(x) ** (q - 1), 0.0),
    ),
    # a smooth ReLU: log(1 + e^{beta x}) / beta
    "softplus": Activation(
        fn=lambda x, b: jax.nn.softplus(b * x) / b, grad=lambda x, b: jax.nn.sigmoid(b * x)
    ),
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES  # fields.py validates the names without jax
RELU = ACTIVATIONS["relu"].at(0.0)
