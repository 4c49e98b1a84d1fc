"""Shared helpers: small configs and an independent reference of the docs/MODEL.md models that
materialises every patch (the engine never does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

# The suite spends most of its time compiling small programs that then run for milliseconds:
# LLVM's optimisation level 0 halves the compile time (tests/test_golden.py: 62 s -> 30 s on
# one core) and changes no HLO, so every program computes what it computes for users, to the
# float round-off the tests allow. Set before jax starts its backend, so the xdist workers and
# the `w2sjax` processes the tests start inherit it.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax  # noqa: E402
import jax.numpy as jnp
import numpy as np
import pytest

import w2sjax
from w2sjax.config.settings import Config, build
from w2sjax.engine.activations import RELU
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.engine.data import EASY, HARD, Sample
from w2sjax.engine.loops.coef import coef_data, coef_init, coef_step
from w2sjax.engine.loops.dense import strong_init, strong_step
from w2sjax.engine.optimizers import OPTIMIZERS
from w2sjax.engine.train import draw_run

REPO = Path(__file__).resolve().parents[1]

SMALL = dict(
    d=64,
    n_wk=60,
    steps_wk=50,
    n_st=40,
    m=4,
    steps=30,
    n_test=80,
    n_val=40,
    log_points=8,
    seeds=2,
    sigma_0=0.1,
    eta=0.5,
)


# Each activation's parameter in the tests, and the activations written out independently of
# the registry (activations.py), for the reference model.
ACTIVATION_PARAMS = {"leaky_relu": 0.1, "relu_pow": 3.0, "softplus": 2.0}
REFERENCE_ACTIVATIONS = {
    "relu": lambda x, _: jnp.maximum(x, 0.0),
    "linear": lambda x, _: x,
    "leaky_relu": lambda x, a: jnp.maximum(x, a * x),
    "relu_pow": lambda x, q: jnp.maximum(x, 0.0) ** q,
    "softplus": lambda x, b: jnp.logaddexp(0.0, b * x) / b,
}


def small_config(**fields) -> Config:
    """A CPU-tiny config: SMALL with `fields` on top."""
    return build({**SMALL, **fields})


def reference_patches(s: Sample, signals: np.ndarray) -> np.ndarray:
    """(n, 3, d) patches written out from MODEL.md section 1: easy (mu_y, mu_y, xi), hard
    (a nu_y, a nu_y, xi), both (mu_y, a nu_y, xi).
    signals rows: mu_{+1}, mu_{-1}, nu_{+1}, nu_{-1}."""
    y, c, a, xi = (np.asarray(v) for v in (s.y, s.c, s.a, s.xi))
    mu_y = np.where(y[:, None] > 0, signals[0], signals[1])
    a_nu_y = a[:, None] * np.where(y[:, None] > 0, signals[2], signals[3])
    cat = c[:, None]
    first = np.where(cat == HARD, a_nu_y, mu_y)
    second = np.where(cat == EASY, mu_y, a_nu_y)
    return np.stack([first, second, xi], axis=1)


def reference_strong_output(W, X, activation=None):
    """f_st(W, X) from materialised patches X (n, 3, d), W (2, m, d); numpy or jax arrays.
    activation: an elementwise function (default ReLU)."""
    if isinstance(W, jax.Array):  # explicit: a GPU's default precision is TF32
        pre = jnp.einsum("jrd,npd->jrnp", W, X, precision=jax.lax.Precision.HIGHEST)
        xp = jnp
    else:
        pre, xp = np.einsum("jrd,npd->jrnp", W, X), np
    F = (xp.maximum(pre, 0) if activation is None else activation(pre)).sum(-1).mean(1)
    return F[0] - F[1]


def strong_setup(seed: int, easy_signal: str = "orthogonal", noise: str = "full", m=3, n=30):
    """A random small strong-training problem: (state, signals, data, yhat, eta, opt), its data
    and W0 drawn by the `noise` sampler at d = 48 (reduced: k = M = 2m + 5 + n coordinates),
    trained by full-batch GD (`with_optimizer` binds another)."""
    config = small_config(d=48, n_wk=5, n_st=n, m=m, sigma_0=0.3, easy_signal=easy_signal)
    config = build({**config.to_dict(), "mu_norm": 3.0, "nu_norm": 2.5})
    p = jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, seed)]))
    run = draw_run(Shape.of(config, noise=noise), p)
    data, W0 = run.train, run.W0
    flip = jax.random.bernoulli(jax.random.PRNGKey(seed), 0.2, (n,))
    yhat = jnp.where(flip, -data.y, data.y)  # pseudo-labels with some flips
    eta = jnp.float32(0.7)
    state, opt = with_optimizer(W0, n, eta, run.key)
    return state, run.signals, data, yhat, eta, opt


def with_optimizer(W0, n, eta, key, name="gd", momentum=0.9, batch_size=8):
    """(initial Strong state, optimizers.Opt) of optimizer `name` for W0 (2, m, d), n samples."""
    opt = OPTIMIZERS[name].at(eta, jnp.float32(momentum), key, n, batch_size)
    return strong_init(W0, n, opt), opt


def jitted_step(signals, data: Sample, yhat, eta, opt, act=RELU):
    """loops_dense.strong_step on one problem (strong_setup's), jitted: state -> state."""
    step = partial(strong_step, opt=opt, eta=eta, signals=signals, data=data, yhat=yhat)
    return jax.jit(partial(step, xi_sq=(data.xi**2).sum(-1), act=act))


def gd_steps_match(step, state, eta, reference_loss, checked: int, total: int):
    """Take `total` steps of the jitted `step`, asserting that each of the first `checked` equals
    W - eta grad reference_loss(W) (the patch-materialising reference's GD step); the state."""
    for t in range(total):
        expected = state.W - eta * jax.grad(reference_loss)(state.W) if t < checked else None
        state = step(state)
        if expected is not None:
            np.testing.assert_allclose(state.W, expected, rtol=1e-5, atol=1e-6)
    return state


def assert_coef_form_reaches(
    W0, signals, data: Sample, yhat, eta, opt, act, steps, gamma, rho, v0=None
):
    """`steps` steps of loops_coef.coef_step from zero coefficients (with optimizer `opt`, and a
    trained second layer from v0 where given) reach the coefficients gamma (2, m, 4) and rho
    (2, m, n) that the dense form reached; the final Coef state."""
    xi_sq = (data.xi**2).sum(-1)
    c = coef_init(rho.shape[1], rho.shape[2], opt, v0)
    step = partial(coef_step, opt=opt, eta=eta, data=coef_data(W0, signals, data, data, xi_sq))
    step = jax.jit(partial(step, yhat=yhat, xi_sq=xi_sq, signal_gram=signals @ signals.T, act=act))
    for _ in range(steps):
        c = step(c)
    np.testing.assert_allclose(c.gamma, gamma, rtol=1e-4, atol=1e-4 * np.abs(gamma).max())
    np.testing.assert_allclose(c.rho, rho, rtol=1e-4, atol=1e-4 * np.abs(rho).max())
    return c


def pytest_configure(config: pytest.Config) -> None:
    """One persistent XLA compilation cache for the session, in a temporary folder outside the
    work tree, shared by the xdist workers and the `w2sjax` processes the tests start: the
    suite compiles the same small programs in many processes, and compiling is most of its time.
    A cached executable is the one the compiler would make, so no result changes. (JAX caches
    programs that took over a second to compile; caching every one cost more than it saved.)"""
    # Under pytest-xdist the workers are the controller's child processes: one folder named by
    # the controller's pid serves them all (the controller, which unconfigures last, removes it).
    worker = "PYTEST_XDIST_WORKER" in os.environ
    owner = os.getppid() if worker else os.getpid()
    cache = os.path.join(tempfile.gettempdir(), f"w2sjax-tests-xla-{owner}")
    os.makedirs(cache, exist_ok=True)
    if not worker:
        config.stash[_CACHE] = cache
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
    os.environ["W2SJAX_CACHE_DIR"] = cache  # every sweep's cache (sweep/cache.py), not ~/.cache
    jax.config.update("jax_compilation_cache_dir", cache)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash.get(_CACHE, ""), ignore_errors=True)


_CACHE = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(20261128)


SWEEP_TEXT = """
name = "sw"
seeds = 3

[data]
d = 40
p_e = "rest"
p_h = 0.3

[weak]
n_wk = 40
steps_wk = 30

[strong]
m = 3
sigma_0 = 0.1
eta = 0.5
steps = 25

[eval]
n_test = 60
n_val = 30
log_points = 6

[grid]
n_st = [20, 30]
p_b = [0.2, 0.4]
"""


@pytest.fixture
def sweep_file(tmp_path):
    """A 2 x 2 grid (two buckets by n_st) x 3 seeds = 12 runs, tiny enough for CPU tests."""
    path = tmp_path / "sw.toml"
    path.write_text(SWEEP_TEXT)
    return path


def assert_same_tables(a, b, exact: bool = False) -> None:
    """Two (runs, steps) pairs from w2sjax.load hold the same rows. Float columns agree to float32
    round-off (exactly when `exact`); every other column exactly."""
    for x, y in zip(a, b, strict=True):
        assert list(x.columns) == list(y.columns) and len(x) == len(y) > 0
        for col in x.columns:
            if not exact and x[col].dtype.kind == "f":
                np.testing.assert_allclose(x[col], y[col], rtol=1e-5, atol=1e-6, err_msg=col)
            else:
                np.testing.assert_array_equal(x[col].to_numpy(), y[col].to_numpy(), err_msg=col)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """(runs, steps) of the sweep of SWEEP_TEXT in one process, one chunk per bucket."""
    from w2sjax.config.grid import load_sweep
    from w2sjax.sweep.execution import execute

    tmp = tmp_path_factory.mktemp("ref")
    (tmp / "sw.toml").write_text(SWEEP_TEXT)
    execute(load_sweep(tmp / "sw.toml"), tmp / "out", quiet=True)
    return w2sjax.load(tmp / "out" / "sw")


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """`python -m w2sjax ARGS` from the work tree, in a process of its own."""
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "w2sjax", *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen) -> str:
    """Wait for a `cli` process; its stdout, after asserting it exited 0."""
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return out
