"""The bounds the CPU bench buckets meet (docs/notes/benchmarks.md, "2026-11-29, 2 CPU cores:
where the time goes"): the square-matmul ceiling; the coefficient step's product alone, inside a
step loop, and with the step's elementwise work; the dense step's forward and gradient products
and the rate of a step made of both. Usage: PYTHONPATH=. python scripts/cpu_product_bounds.py"""

import jax

from w2sjax.bench.timing import fastest, matmul_ceiling, shape_ceiling
from w2sjax.engine.loops.coef import rho_times_K
from w2sjax.engine.models import mm

STEPS, M, RUNS = 200, 20, 8


def product_only(rho: jax.Array, K: jax.Array) -> jax.Array:
    """STEPS dependent products rho (2, M, n) x K (n, n), as the coefficient step's forward
    (coef.rho_times_K; the 2026-11-29 figures took the layout before 0.6.5's, about 1.8x slower
    at n = 2048)."""
    return jax.lax.fori_loop(0, STEPS, lambda i, c: 1e-3 * rho_times_K(c, K), rho)


def with_elementwise(rho: jax.Array, K: jax.Array) -> jax.Array:
    """The same products, each followed by a ReLU network's output, loss derivative and update."""

    def step(i: int, c: jax.Array) -> jax.Array:
        pre = rho_times_K(c, K)
        out = jax.nn.relu(pre).mean(1)
        l_prime = -jax.nn.sigmoid(-(out[0] - out[1]))
        return c - 1e-3 * (pre > 0) * l_prime

    return jax.lax.fori_loop(0, STEPS, step, rho)


def coef(n: int = 500) -> None:
    K = jax.random.normal(jax.random.PRNGKey(0), (RUNS, n, n))
    rho = jax.random.normal(jax.random.PRNGKey(1), (RUNS, 2, M, n))
    flops = RUNS * 2 * 2 * M * n * n  # one (2M x n)(n x n) product a run
    alone = shape_ceiling(n, n, M, RUNS, repeats=10)
    print(f"coef n_st={n}: the product alone {alone / 1e9:.0f} GFLOP/s")
    for name, fn in (("product only", product_only), ("product + elementwise", with_elementwise)):
        looped = jax.jit(jax.vmap(fn))
        per_step = fastest(looped, rho, K, repeats=3) / STEPS
        print(f"  in a step loop, {name}: {flops / per_step / 1e9:.0f} GFLOP/s")


def dense(n: int = 2000, d: int = 1000) -> None:
    forward = shape_ceiling(n, d, M, RUNS, repeats=10)
    g = jax.random.normal(jax.random.PRNGKey(4), (RUNS, 2 * M, n))
    xi = jax.random.normal(jax.random.PRNGKey(3), (RUNS, n, d))
    gradient_fn = jax.jit(lambda g, x: mm("brn,bnd->brd", g, x))
    gradient = RUNS * 2 * 2 * M * n * d / fastest(gradient_fn, g, xi, repeats=10)
    both = 2 / (1 / forward + 1 / gradient)  # a step does one of each, in sequence
    print(
        f"dense n_st={n} d={d}: forward {forward / 1e9:.0f}, gradient {gradient / 1e9:.0f}, "
        f"a step of both {both / 1e9:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    ceiling = matmul_ceiling(1024)
    print(f"{RUNS} runs, float32 highest; square-matmul ceiling {ceiling / 1e9:.0f} GFLOP/s")
    coef()
    dense()
