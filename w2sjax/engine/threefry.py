"""jax's random hash, Threefry-2x32 (Salmon et al. 2011, 20 rounds), lowered for the CPU as
straight-line code, as jax lowers it for other devices.

jax lowers it for the CPU as a five-iteration loop, inlined at every draw. A run's program draws
a dozen times (labels, coins, noise, the gamma sampler's rejections), and XLA compiles each such
loop on its own: on 2 CPU cores the straight-line form cut the compile of a bucket's first
program by about 40% (docs/notes/benchmarks.md, "2026-12-06, 2 CPU cores: the random hash
lowered as straight-line code"), and its steps run as fast. It is the same integer arithmetic,
so every drawn number is unchanged (tests/test_threefry.py checks the hash against the published
test vectors).

`drawn_once` is the other half of the same cost: XLA copies a draw's hash, cheap integer
arithmetic to its fusion model, into every consumer of the draw, and each copy compiles on its
own (docs/notes/benchmarks.md, "what the random hash's copies cost `begin`'s compile").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.interpreters import mlir

_T = TypeVar("_T")

try:
    from jax.extend.random import threefry2x32_p
except ImportError:  # a jax without jax.extend's primitive: keep its own lowering
    threefry2x32_p = None

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # by round group, alternating
PARITY = np.uint32(0x1BD11BDA)  # the key schedule's third word: k1 ^ k2 ^ PARITY


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
    left, right = np.uint32(r), np.uint32(32 - r)
    return lax.bitwise_or(lax.shift_left(x, left), lax.shift_right_logical(x, right))


def hash_2x32(
    k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 of the counters (x1, x2) under the key (k1, k2), uint32 arrays that
    broadcast together: five groups of four rounds, a key injection after each. In lax's
    primitives on operands broadcast once: it is traced at every draw of a program."""
    k1, k2, x1, x2 = jnp.broadcast_arrays(k1, k2, x1, x2)
    keys = (k1, k2, lax.bitwise_xor(lax.bitwise_xor(k1, k2), PARITY))
    x1, x2 = lax.add(x1, keys[0]), lax.add(x2, keys[1])
    for group in range(5):
        for r in ROTATIONS[group % 2]:
            x1 = lax.add(x1, x2)
            x2 = lax.bitwise_xor(_rotate_left(x2, r), x1)
        x1 = lax.add(x1, keys[(group + 1) % 3])
        x2 = lax.add(lax.add(x2, keys[(group + 2) % 3]), np.uint32(group + 1))
    return x1, x2


def register() -> bool:
    """Lower jax's threefry primitive with `hash_2x32` on the CPU, out of line where this jax
    can (one function per shape, as jax does for other devices; register_lowering's `inline`
    exists from jax 0.7, and inlined the compile gains about as much). Idempotent; False where
    this jax has no public primitive to lower."""
    if threefry2x32_p is None:
        return False
    rule = mlir.lower_fun(hash_2x32, multiple_results=True)
    out_of_line = "inline" in inspect.signature(mlir.register_lowering).parameters
    mlir.register_lowering(
        threefry2x32_p, rule, platform="cpu", **({"inline": False} if out_of_line else {})
    )
    return True


def drawn_once(draw: Callable[[jax.Array], _T], x: jax.Array) -> _T:
    """draw(x) bit for bit, each output (draw's own shapes and dtypes) one buffer where XLA would
    copy the hash behind it into each of its consumers. x: an integer array (a key, or the
    integers a key is made from). For small draws: a batch (vmap) runs the draw twice where any
    of its x has the top bit of its first word set. Not differentiable in reverse mode (a while
    loop); what it draws is not differentiated.

    The draw runs inside a while loop whose trip count, 1 + that top bit, XLA cannot fold, and
    whose body reads x as x ^ (i >> 31), x itself on every trip taken, so that XLA can neither
    unroll the loop nor hoist the draw out of it. Should a later XLA see through the loop, the
    result is still draw(x), compiled as before."""
    top_bit = lax.convert_element_type(x.ravel()[0], np.uint32) >> np.uint32(31)
    trips = 1 + top_bit.astype(np.int32)
    start = jax.tree_util.tree_map(_zeros, jax.eval_shape(draw, x))

    def body(carry: tuple) -> tuple:
        i, _ = carry
        return i + 1, draw(x ^ (i >> 31).astype(x.dtype))

    return lax.while_loop(lambda carry: carry[0] < trips, body, (jnp.int32(0), start))[1]


def _zeros(like: jax.ShapeDtypeStruct) -> jax.Array:
    """Zeros of like's shape and dtype, weakly typed where it is, as a loop's carry must be on
    every jax version."""
    if like.weak_type:  # a Python scalar's zero: lax.full keeps its weak type
        return lax.full(like.shape, np.zeros((), like.dtype).item())
    return jnp.zeros(like.shape, like.dtype)
