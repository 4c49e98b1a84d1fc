"""The constructions (docs/MODEL.md section 9, docs/IMAGES.md): how a run draws its samples, by
name (`CONSTRUCTIONS`): the synthetic distribution, or images of a source built into samples.

A run of an image source draws its images by index, from keys of its own, out of one `Pool`
shared by every run of a bucket: the compiled program takes the pool as an argument that is not
batched, so the images are held once, never copied per run.

- "planted": the synthetic sample with its hard signal a nu_y replaced by a ||nu|| x / ||x||,
  x an image of class y (a fresh draw per sample, with replacement: training and weak samples
  from the training images, test and validation samples from the held-out ones). The image's F
  pixels take the axes 2 to 1 + F; the noise lives off them. The linear teacher stays blind to
  the image by the sign a (Proposition 2.1), and gnu is read against the class-mean images.
- "natural": the image itself, cut into P patches, with true labels; no easy signal, no noise
  patch. Weak, training and validation images are drawn without replacement from the training
  images, the test images from the held-out ones: all four disjoint. A test image's category is
  read from the teacher: EASY where it is right, HARD where it is wrong.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from w2sjax.config.fields import CONSTRUCTIONS as CONSTRUCTION_NAMES
from w2sjax.config.sources import binary, construction_of, images, patch_grid
from w2sjax.engine.batch import Params, Shape
from w2sjax.engine.data import RunData, Sample, signal_coefs_of, signal_matrix
from w2sjax.engine.draw import draw_synthetic, run_key

# A run's image indices come from fold_in(run key, IMAGE_SALT): draws of their own
# (noise.REDUCED_SALT's reasoning), so the planted construction keeps every synthetic draw.
IMAGE_SALT = 0x494D4753


class Pool(NamedTuple):
    """The images of a bucket's runs, centred on the dataset's mean training image
    (sources.binary): x_train (N, F) and x_test (M, F) with labels y_train (N,) and y_test (M,)
    in {+1, -1}. Planted: unit images, flat, class +1 first. Natural: patches (N, P, F / P),
    scaled so that a training image's mean squared norm is P (a patch's about 1)."""

    x_train: chex.Array
    y_train: chex.Array
    x_test: chex.Array
    y_test: chex.Array


def construction(shape: Shape) -> str:
    """The CONSTRUCTIONS entry of `shape` (sources.construction_of)."""
    return construction_of(shape.source, shape.construction)


def planted_images(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) unit images, class +1 first, and their labels (N,), from images (N, ...)."""
    flat = x.reshape(len(x), -1)
    order = np.argsort(-y, kind="stable")
    return (flat / np.linalg.norm(flat, axis=1, keepdims=True))[order], y[order]


def cut(x: np.ndarray, patches: int) -> np.ndarray:
    """(N, P, F / P) images (N, H, W) or (N, H, W, C) cut into P = k^2 tiles, row by row."""
    k, _ = patch_grid(x.shape[1:], patches)
    n, height, width = x.shape[:3]
    tiles = x.reshape(n, k, height // k, k, width // k, -1).transpose(0, 1, 3, 2, 4, 5)
    return tiles.reshape(n, patches, -1)


@functools.lru_cache(maxsize=4)
def _pool(source: str, path: str, classes: str, kind: str, patches: int, data_hash: str) -> Pool:
    imgs = images(source, path)
    if imgs.content_hash != data_hash:
        raise ValueError(
            f"data.data_hash: the data's content hash is now {imgs.content_hash}, the runs were "
            f"set up with {data_hash} (the file changed while the sweep ran)"
        )
    x_train, y_train, x_test, y_test = binary(imgs, classes)
    if kind == "planted":
        arrays = (*planted_images(x_train, y_train), *planted_images(x_test, y_test))
    else:
        scale = np.sqrt(np.mean((x_train**2).reshape(len(x_train), -1).sum(1)) / patches)
        arrays = (cut(x_train / scale, patches), y_train, cut(x_test / scale, patches), y_test)
    return Pool(*(jnp.asarray(a, jnp.float32) for a in arrays))


def pool_of(shape: Shape) -> Pool | None:
    """The images the runs of `shape` draw from (read and prepared once); None: synthetic."""
    if shape.source == "synthetic":
        return None
    return _pool(
        shape.source, shape.path, shape.classes, shape.construction, shape.patches, shape.data_hash
    )


def pick(key: chex.PRNGKey, y_pool: chex.Array, y: chex.Array) -> chex.Array:
    """(n,) indices into a pool sorted class +1 first (y_pool (N,)): for each label of y (n,) an
    image of that class, uniformly, with replacement."""
    n_pos = (y_pool > 0).sum()
    low = jnp.where(y > 0, 0, n_pos)
    high = jnp.where(y > 0, n_pos, y_pool.shape[0])
    return jax.random.randint(key, y.shape, low, high)


def _planted(shape: Shape, p: Params, pool: Pool) -> RunData:
    """The synthetic draws, each hard signal replaced by an image of its class."""
    run = draw_synthetic(shape, p)
    pixels, dim = pool.x_train.shape[1], shape.dim
    # The synthetic noise is already 0 on axes 2 and 3; the images' further axes are cleared too.
    off_images = jnp.ones(dim, jnp.float32).at[2 : 2 + pixels].set(0.0)
    keys = jax.random.split(jax.random.fold_in(run.key, IMAGE_SALT), 4)

    def plant(s: Sample, key: chex.PRNGKey, x: chex.Array, y_pool: chex.Array) -> Sample:
        hard = x[pick(key, y_pool, s.y)]
        return s.replace(xi=s.xi * off_images, coefs=jnp.moveaxis(signal_coefs_of(s, hard), 0, 1))

    weak, train = (
        plant(s, k, pool.x_train, pool.y_train)
        for s, k in ((run.weak, keys[0]), (run.train, keys[1]))
    )
    test, val = (
        plant(s, k, pool.x_test, pool.y_test) for s, k in ((run.test, keys[2]), (run.val, keys[3]))
    )
    signals = signal_matrix(dim, shape.easy_signal, p.mu_norm, p.nu_norm, pixels)
    means = jnp.stack([(pool.x_train * (pool.y_train == y)[:, None]).sum(0) for y in (1.0, -1.0)])
    nu = p.nu_norm * means / jnp.linalg.norm(means, axis=1, keepdims=True)
    reference = jnp.concatenate([signals[:2], jnp.pad(nu, ((0, 0), (2, dim - 2 - pixels)))])
    return run._replace(
        signals=signals, weak=weak, train=train, test=test, val=val, reference=reference
    )


def _natural(shape: Shape, p: Params, pool: Pool) -> RunData:
    """Images cut into patches, with their true labels; W0 as the synthetic run's."""
    key = run_key(p)
    dim, init = shape.dim, jax.random.split(key, 4)[3]
    k_train, k_test = jax.random.split(jax.random.fold_in(key, IMAGE_SALT))
    order = jax.random.permutation(k_train, pool.y_train.shape[0])
    ends = np.cumsum([shape.n_wk, shape.n_st, shape.n_val])
    sets = np.split(np.arange(ends[-1]), ends[:-1])

    def take(index: chex.Array, x: chex.Array, y: chex.Array) -> Sample:
        n = index.shape[0]
        return Sample(
            y=y[index],
            c=jnp.zeros(n, jnp.float32),  # read from the teacher (prepare_run)
            a=jnp.ones(n, jnp.float32),
            xi=jnp.zeros((n, dim), jnp.float32),
            coefs=x[index],
        )

    weak, train, val = (take(order[s], pool.x_train, pool.y_train) for s in sets)
    test_order = jax.random.permutation(k_test, pool.y_test.shape[0])[: shape.n_test]
    test = take(test_order, pool.x_test, pool.y_test)
    return RunData(
        signals=jnp.eye(dim, dtype=jnp.float32),
        weak=weak,
        train=train,
        test=test,
        val=val,
        W0=p.sigma_0 * jax.random.normal(init, (2, shape.m, dim)),
        coins=jnp.ones(shape.n_st, jnp.float32),
        key=key,
        reference=jnp.full((4, dim), jnp.nan, jnp.float32),  # no signals: gmu and gnu are NaN
    )


@dataclass(frozen=True)
class Construction:
    """draw(shape, p, pool) -> RunData; synthetic_noise: whether samples have the synthetic
    noise patch (else the noise coefficients are NaN); categories_from_teacher: whether a test
    sample's category is read from the teacher (EASY right, HARD wrong) after it labels."""

    draw: Callable[[Shape, Params, Pool | None], RunData]
    synthetic_noise: bool = True
    categories_from_teacher: bool = False


CONSTRUCTIONS: dict[str, Construction] = {
    "synthetic": Construction(draw=draw_synthetic),
    "planted": Construction(draw=_planted),
    "natural": Construction(draw=_natural, synthetic_noise=False, categories_from_teacher=True),
}
assert tuple(CONSTRUCTIONS) == ("synthetic", *CONSTRUCTION_NAMES)  # fields.py checks the names
