"""The CPU lowering of jax's random hash (engine/threefry.py) computes Threefry-2x32: the
published known-answer vectors, a plain numpy implementation on random inputs, and jax's draws
(which go through the primitive it lowers) against the same numpy hash; and drawn_once, which
materialises a draw, against the draw itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from w2sjax.engine import threefry

# Random123's known answers for threefry2x32_20: (key, counter) -> output, all as uint32 pairs.
KNOWN = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def numpy_hash(key: tuple, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32, 20 rounds, written out from the specification in numpy's wrapping uint32
    arithmetic: the reference the lowering is held to."""
    k = [np.uint32(key[0]), np.uint32(key[1])]
    k.append(k[0] ^ k[1] ^ np.uint32(0x1BD11BDA))
    rot = [13, 15, 26, 6, 17, 29, 16, 24]
    x1, x2 = x1 + k[0], x2 + k[1]
    for i in range(20):
        x1 = x1 + x2
        r = np.uint32(rot[i % 8])
        x2 = ((x2 << r) | (x2 >> (np.uint32(32) - r))) ^ x1
        if i % 4 == 3:
            s = i // 4 + 1
            x1, x2 = x1 + k[s % 3], x2 + k[(s + 1) % 3] + np.uint32(s)
    return x1, x2


def test_draws_lower_without_a_loop():
    # jax's own CPU lowering is a five-iteration loop; importing the engine's data module (as
    # every module that draws does) registers straight-line code in its place
    import w2sjax.engine.data  # noqa: F401

    if jax.default_backend() != "cpu":
        pytest.skip("the lowering is the CPU's; jit lowers for this machine's device")

    text = jax.jit(lambda k: jax.random.normal(k, (8,))).lower(jax.random.PRNGKey(0)).as_text()
    assert "stablehlo.while" not in text
    assert threefry.register()  # this jax has the public primitive


@pytest.mark.parametrize(("key", "counter", "expected"), KNOWN)
def test_known_answers(key, counter, expected):
    u = lambda pair: [np.uint32(v) for v in pair]  # noqa: E731
    with np.errstate(over="ignore"):
        assert [int(v) for v in numpy_hash(key, *u(counter))] == list(expected)
    hashed = jax.jit(threefry.hash_2x32)(*u(key), *u(counter))
    assert [int(v) for v in hashed] == list(expected)
    # the primitive jax's draws bind, lowered by threefry.register on the CPU
    out = threefry_2x32(np.array(key, np.uint32), np.array(counter, np.uint32))
    assert [int(v) for v in out] == list(expected)


def test_random_inputs_match_numpy():
    rng = np.random.default_rng(0)
    key = tuple(int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64))
    x1, x2 = (rng.integers(0, 2**32, 4097, dtype=np.uint64).astype(np.uint32) for _ in range(2))
    with np.errstate(over="ignore"):
        want = numpy_hash(key, x1, x2)
    got = jax.jit(threefry.hash_2x32)(np.uint32(key[0]), np.uint32(key[1]), x1, x2)
    np.testing.assert_array_equal(np.asarray(got[0]), want[0])
    np.testing.assert_array_equal(np.asarray(got[1]), want[1])
    # batched over keys (vmap broadcasts the key words against the counters)
    keys = rng.integers(0, 2**32, (3, 2), dtype=np.uint64).astype(np.uint32)
    batched = jax.jit(jax.vmap(lambda k: threefry_2x32(k, x1)))(jnp.asarray(keys))
    for row, k in zip(np.asarray(batched), keys, strict=True):
        half = (len(x1) + 1) // 2  # threefry_2x32 hashes an odd count padded, as halves
        padded = np.concatenate([x1, np.zeros(1, np.uint32)])
        with np.errstate(over="ignore"):
            a, b = numpy_hash(tuple(int(v) for v in k), padded[:half], padded[half:])
        np.testing.assert_array_equal(row, np.concatenate([a, b])[: len(x1)])


def test_drawn_once_is_the_draw():
    # bit for bit the draw itself, with every output and its weak type: vmapped over keys whose
    # first word takes the loop once (top bit clear) or twice (set), and each alone
    def draw(k: jax.Array) -> tuple:
        signs = jnp.where(jax.random.bernoulli(k, 0.3, (7,)), 1.0, -1.0)  # weakly typed
        return jax.random.normal(k, (5,)), signs, jax.random.split(k)

    keys = jnp.asarray([[0, 1], [0x80000000, 7], [0xFFFFFFFF, 0xFFFFFFFF]], jnp.uint32)
    cases = [
        (jax.vmap(draw)(keys), jax.jit(jax.vmap(lambda k: threefry.drawn_once(draw, k)))(keys)),
        *((draw(k), jax.jit(lambda k: threefry.drawn_once(draw, k))(k)) for k in keys[:2]),
    ]
    leaves = jax.tree_util.tree_leaves
    for want, got in cases:
        for w, g in zip(leaves(want), leaves(got), strict=True):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
            assert (g.dtype, g.weak_type) == (w.dtype, w.weak_type)
