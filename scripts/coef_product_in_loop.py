"""The bounds the CPU bench buckets meet (docs/BENCHMARKS.md, "Where the time goes on the CPU"):
the coefficient form's product inside a step loop, alone and with the step's elementwise work;
and the dense form's two products per step at the dense bucket's shape.
Usage: python scripts/coef_product_in_loop.py [N_ST RUNS] (default: 500 8, and dense 2000 x 1000)"""

import sys

import jax

from w2sjax.bench import timed
from w2sjax.models import mm

STEPS, M = 200, 20


def product_only(rho: jax.Array, K: jax.Array) -> jax.Array:
    """STEPS dependent products rho (2, M, n) x K (n, n), as the coefficient step's forward."""
    return jax.lax.fori_loop(0, STEPS, lambda i, c: 1e-3 * mm("jri,in->jrn", c, K), rho)


def with_elementwise(rho: jax.Array, K: jax.Array) -> jax.Array:
    """The same products, each followed by a ReLU network's output, loss derivative and update."""

    def step(i: int, c: jax.Array) -> jax.Array:
        pre = mm("jri,in->jrn", c, K)
        out = jax.nn.relu(pre).mean(1)
        l_prime = -jax.nn.sigmoid(-(out[0] - out[1]))
        return c - 1e-3 * (pre > 0) * l_prime

    return jax.lax.fori_loop(0, STEPS, step, rho)


def main(n: int, runs: int) -> None:
    K = jax.random.normal(jax.random.PRNGKey(0), (runs, n, n))
    rho = jax.random.normal(jax.random.PRNGKey(1), (runs, 2, M, n))
    flops = runs * 2 * 2 * M * n * n  # one (2M x n)(n x n) product a run
    outside = jax.jit(jax.vmap(lambda r, k: mm("jri,in->jrn", r, k)))
    timed(outside, rho, K)
    seconds = min(timed(outside, rho, K) for _ in range(10))
    print(f"n_st={n}, {runs} runs: one product outside a loop {flops / seconds / 1e9:.0f} GFLOP/s")
    for name, fn in (("product only", product_only), ("product + elementwise", with_elementwise)):
        looped = jax.jit(jax.vmap(fn))
        timed(looped, rho, K)
        per_step = min(timed(looped, rho, K) for _ in range(3)) / STEPS
        rate = flops / per_step / 1e9
        print(f"  in a loop, {name}: {per_step * 1e3:.2f} ms a step, {rate:.0f} GFLOP/s")


def dense(n: int = 2000, d: int = 1000, runs: int = 8) -> None:
    """The dense step's forward (2M x d)(d x n) and gradient (2M x n)(n x d) products, batched."""
    W = jax.random.normal(jax.random.PRNGKey(2), (runs, 2 * M, d))
    xi = jax.random.normal(jax.random.PRNGKey(3), (runs, n, d))
    g = jax.random.normal(jax.random.PRNGKey(4), (runs, 2 * M, n))
    flops = runs * 2 * 2 * M * n * d
    for name, fn, args in (
        ("forward", lambda w, x: mm("brd,bnd->brn", w, x), (W, xi)),
        ("gradient", lambda g, x: mm("brn,bnd->brd", g, x), (g, xi)),
    ):
        jitted = jax.jit(fn)
        timed(jitted, *args)
        seconds = min(timed(jitted, *args) for _ in range(10))
        print(f"dense n_st={n} d={d}, {runs} runs, {name}: {flops / seconds / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    if len(sys.argv) > 2:
        main(int(sys.argv[1]), int(sys.argv[2]))
    else:
        main(500, 8)
        dense()
