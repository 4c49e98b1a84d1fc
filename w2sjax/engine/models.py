"""The two models of docs/MODEL.md sections 2 and 3 as pure functions on a `Sample`.

Weak: f_wk(w, X) = sum_p <w, x^(p)>. Strong: f_st(W, X) = F_{+1} - F_{-1},
F_j = (1/m) sum_r sum_p sigma(<w_{j,r}, x^(p)>), sigma ReLU unless `[strong] activation` says
otherwise; with `[strong] second_layer = "trained"` each filter's +1/-1 becomes a weight v_{j,r}
learned with W. Class index 0 of W is j = +1, index 1 is j = -1.
Every product runs at float32 "highest" precision: GPUs would otherwise silently use TF32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.config.fields import SECOND_LAYERS as SECOND_LAYER_NAMES
from w2sjax.engine.activations import RELU, Act
from w2sjax.engine.data import Sample, patch_coefs

BF16, F32 = jnp.bfloat16, jnp.float32
J_SIGN = np.array([1.0, -1.0], np.float32)  # j of class index 0 and 1 (numpy: no device at import)


def mm(subscripts: str, *operands: chex.Array, precision: str = "highest") -> chex.Array:
    """einsum with float32 results at `precision` (its transpose under jax.grad keeps it):
    "highest", true float32 products; "tf32", the GPU's TensorFloat-32 matmul mode (plain float32
    on CPU); "bf16", exactly two operands rounded to bfloat16, float32 accumulation
    (bf16_product)."""
    if precision == "bf16":
        assert len(operands) == 2 and "->" in subscripts, "bf16: two operands, an explicit output"
        return bf16_product(subscripts, *operands)
    level = jax.lax.Precision.HIGHEST if precision == "highest" else jax.lax.Precision.DEFAULT
    return jnp.einsum(subscripts, *operands, precision=level)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def bf16_product(subscripts: str, a: chex.Array, b: chex.Array) -> chex.Array:
    """einsum "A,B->C" of a and b rounded to bfloat16, accumulated in float32; under jax.grad
    its transposes are the same kind of product (each index of an operand in the other or in
    the output). jax's own transpose would turn a bfloat16 operand kept as such (the noise,
    engine/train.py) back into float32 at every step and round the gradient to bfloat16."""
    return jnp.einsum(subscripts, a.astype(BF16), b.astype(BF16), preferred_element_type=F32)


def _bf16_forward(subscripts: str, a: chex.Array, b: chex.Array) -> tuple:
    return bf16_product(subscripts, a, b), (a, b)


def _bf16_backward(subscripts: str, operands: tuple, ct: chex.Array) -> tuple:
    a, b = operands
    (sa, sb), sc = subscripts.split("->")[0].split(","), subscripts.split("->")[1]
    da = bf16_product(f"{sc},{sb}->{sa}", ct, b)
    db = bf16_product(f"{sa},{sc}->{sb}", a, ct)
    return da.astype(a.dtype), db.astype(b.dtype)


bf16_product.defvjp(_bf16_forward, _bf16_backward)


def logistic_loss(z: chex.Array) -> chex.Array:
    """l(z) = log(1 + e^{-z}), stable for large |z|."""
    return jax.nn.softplus(-z)


def sign(f: chex.Array) -> chex.Array:
    """Prediction in {+1, -1} with sign(0) = +1."""
    return jnp.where(f >= 0, 1.0, -1.0)


def weak_output(w: chex.Array, signals: chex.Array, s: Sample) -> chex.Array:
    """(n,) f_wk for w (d,), signals (S, d) (the four signals, or an image source's rows,
    data.RunData): signal patches through their S inner products with w."""
    return mm("pns,s->n", patch_coefs(s), mm("sd,d->s", signals, w)) + mm("nd,d->n", s.xi, w)


@chex.dataclass(frozen=True)
class Preacts:
    """Pre-activations <w_{j,r}, x^(p)>: signal (2, m, P, n) for the P signal patches (two for
    the synthetic source), noise (2, m, n) for the noise patch."""

    signal: chex.Array
    noise: chex.Array


def strong_preacts(
    W: chex.Array, signals: chex.Array, s: Sample, precision: str = "highest"
) -> Preacts:
    """Pre-activations of W (2, m, d) on n samples whose signal patches combine the rows of
    signals (S, d); `precision` (see `mm`) applies to the dominant product, with the noise
    patches."""
    proj = mm("jrd,sd->jrs", W, signals)
    return Preacts(
        signal=mm("jrs,pns->jrpn", proj, patch_coefs(s)),
        noise=mm("jrd,nd->jrn", W, s.xi, precision=precision),
    )


def filter_sums(pre: Preacts, act: Act = RELU) -> chex.Array:
    """(2, m, n) each filter's activation summed over a sample's patches."""
    return act.fn(pre.signal).sum(2) + act.fn(pre.noise)


def strong_output_of(pre: Preacts, act: Act = RELU, second: chex.Array | None = None) -> chex.Array:
    """(n,) f_st from pre-activations: F_j = mean over r of the activation's sum over patches
    (ReLU unless `act` says otherwise: activations.py), f_st = F_{+1} - F_{-1}; with a trained
    second layer's weights `second` (2, m), f_st = (1/m) sum_{j,r} v_{j,r} (sum over patches)."""
    h = filter_sums(pre, act)
    if second is None:
        F = h.mean(1)
        return F[0] - F[1]
    return (second[:, :, None] * h).sum((0, 1)) / h.shape[1]


@dataclass(frozen=True)
class SecondLayer:
    """`[strong] second_layer`: init(m) -> the second layer's weights at step 0, None where they
    stay the fixed +1 (class j = +1) and -1 (j = -1), else v (2, m), trained with W."""

    init: Callable[[int], chex.Array | None]


SECOND_LAYERS: dict[str, SecondLayer] = {
    "fixed": SecondLayer(init=lambda m: None),
    "trained": SecondLayer(init=lambda m: jnp.repeat(jnp.asarray(J_SIGN)[:, None], m, 1)),
}
assert tuple(SECOND_LAYERS) == SECOND_LAYER_NAMES  # fields.py validates the names without jax


def strong_output(W: chex.Array, signals: chex.Array, s: Sample, act: Act = RELU) -> chex.Array:
    """(n,) f_st(W, X) for W (2, m, d)."""
    return strong_output_of(strong_preacts(W, signals, s), act)
