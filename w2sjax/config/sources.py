"""The data sources (`[data] source`, docs/IMAGES.md): datasets of images by name (`SOURCES`),
read and checked before any compute, with numpy alone (no jax; scikit-learn only for "digits").

A source gives `Images`: x_train, y_train, x_test, y_test, the layout in which MNIST,
Fashion-MNIST and CIFAR-10 are commonly kept. `check_source` checks a config's data fields
against the images (the file, its layout, the classes, the sizes a run draws), fills in the
class groups' default and the content hash, and raises a one-line ConfigError otherwise; a
dataset's own spec is read without its data (`read_data`). The synthetic source reads no file.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2sjax.config.fields import FIELDS, IMAGE_SOURCES, ConfigError, qualified

LAYOUT = ("x_train", "y_train", "x_test", "y_test")
# A fixed split of the 1,797 digits (they come unsplit): a third held out for evaluation.
DIGITS_TEST_SHARE, DIGITS_SPLIT_SEED = 1 / 3, 0
# Fields the natural construction never reads (no synthetic signal or noise; d is the patch
# dimension, from the images): they stay at their defaults. p_b is "rest" by default, so the
# probabilities are checked as resolved values.
NATURAL_UNREAD = ("d", "sigma_p", "mu_norm", "nu_norm", "easy_signal", "signal_patches")
NATURAL_PROBS = {f: FIELDS[f].default for f in ("p_e", "p_h")}


@dataclass(frozen=True)
class Images:
    """A dataset as stored: images x_train (N, ...) and x_test (M, ...) of one pixel layout
    ((H, W), (H, W, C) or, for the planted construction only, flat (F,)), integer labels
    y_train (N,) and y_test (M,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @functools.cached_property
    def content_hash(self) -> str:
        """16 hex digits of sha256 over every array's dtype, shape and bytes."""
        digest = hashlib.sha256()
        for name in LAYOUT:
            array = np.ascontiguousarray(getattr(self, name))
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Source:
    """load(path) -> Images (path: "" where the source reads no file); default_classes: the
    class groups a config gets when it names none."""

    load: Callable[[str], Images]
    default_classes: str


def _digits(path: str) -> Images:
    """scikit-learn's bundled 8x8 digits (in its wheel: nothing to download), split once by a
    fixed permutation, a third held out."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError(
            'data.source: "digits" needs scikit-learn; install it with pip install "w2sjax[images]"'
        ) from None
    digits = load_digits()
    x, y = digits.images.astype(np.float32), digits.target.astype(np.int64)
    # RandomState: numpy's frozen stream, so the split (and the data's hash) never changes
    order = np.random.RandomState(DIGITS_SPLIT_SEED).permutation(len(y))
    held = order[: round(len(y) * DIGITS_TEST_SHARE)]
    kept = np.sort(order[len(held) :])
    held = np.sort(held)
    return Images(x[kept], y[kept], x[held], y[held])


# What numpy raises for a file that is not a readable .npz (truncated, not a zip, bad member).
UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def _unreadable(path: str, err: Exception) -> ConfigError:
    return ConfigError(f"{qualified('path')}: {path!r} is not a readable .npz file ({err})")


def _npz(path: str) -> Images:
    """An .npz file holding x_train, y_train, x_test, y_test."""
    field = qualified("path")
    if not path:
        raise ConfigError(f'{field}: data.source = "npz" needs the path of an .npz file')
    if not Path(path).is_file():
        raise ConfigError(f"{field}: no such file {path!r}")
    try:
        stored = np.load(path, allow_pickle=False)
    except UNREADABLE as err:
        raise _unreadable(path, err) from None
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ConfigError(f"{field}: {path!r} holds one array, not an .npz of {', '.join(LAYOUT)}")
    with stored:
        missing = [k for k in LAYOUT if k not in stored.files]
        if missing:
            raise ConfigError(
                f"{field}: {path!r} must hold {', '.join(LAYOUT)}; missing {', '.join(missing)}"
            )
        try:  # members are read lazily: a damaged one fails here, not at np.load
            arrays = {k: stored[k] for k in LAYOUT}
        except UNREADABLE as err:
            raise _unreadable(path, err) from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not (np.issubdtype(x.dtype, np.number) and x.ndim in (2, 3, 4) and len(x)):
            raise ConfigError(
                f"{field}: x_{split} must be numeric images (N, H, W), (N, H, W, C) or (N, F) "
                f"with N >= 1, got dtype {x.dtype} and shape {x.shape}"
            )
        if not (np.issubdtype(y.dtype, np.integer) and y.shape == (len(x),)):
            raise ConfigError(
                f"{field}: y_{split} must be integer labels (N,) with N = len(x_{split}) = "
                f"{len(x)}, got dtype {y.dtype} and shape {y.shape}"
            )
        if not np.isfinite(x).all():
            raise ConfigError(f"{field}: x_{split} holds values that are not finite")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ConfigError(
            f"{field}: x_train and x_test must have one image shape, got "
            f"{arrays['x_train'].shape[1:]} and {arrays['x_test'].shape[1:]}"
        )
    return Images(**arrays)


SOURCES: dict[str, Source] = {
    "digits": Source(load=_digits, default_classes="0-4/5-9"),
    "npz": Source(load=_npz, default_classes="0-4/5-9"),
}
assert tuple(SOURCES) == IMAGE_SOURCES  # fields.py names them for its checks


@functools.lru_cache(maxsize=4)
def _cached(source: str, path: str, stamp: tuple[int, ...]) -> Images:
    return SOURCES[source].load(path)


def images(source: str, path: str) -> Images:
    """The images of `source` (read once per file version: a file rewritten, replaced or touched
    is read again)."""
    if source == "npz" and path and Path(path).is_file():
        stat = Path(path).stat()
        return _cached(
            source, path, (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)
        )
    return _cached(source, path, ())


def parse_classes(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """'0-4/5-9' -> ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)): the y = +1 group, then y = -1;
    ConfigError for a range that runs backwards or groups that share a class."""

    def group(part: str) -> tuple[int, ...]:
        labels: list[int] = []
        for item in part.split(","):
            low, _, high = item.partition("-")
            if int(high or low) < int(low):
                raise ConfigError(
                    f"{qualified('classes')}: a range runs from low to high, got {item!r} in "
                    f"{text!r}"
                )
            labels += range(int(low), int(high or low) + 1)
        return tuple(labels)

    pos, neg = (group(part) for part in text.split("/"))
    if set(pos) & set(neg):
        both = sorted(set(pos) & set(neg))
        raise ConfigError(
            f"{qualified('classes')}: the two groups must not share a class, got {both} in both"
        )
    return pos, neg


def binary(imgs: Images, classes: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The images of the two class groups, centred on the mean training image of the whole
    dataset (every class, so the centre does not depend on the groups chosen), and their labels
    in {+1, -1}: x_train, y_train, x_test, y_test (float32), in the data's order."""
    pos, neg = parse_classes(classes)
    centre = imgs.x_train.mean(0, dtype=np.float64)
    out = []
    for x, y in ((imgs.x_train, imgs.y_train), (imgs.x_test, imgs.y_test)):
        keep = np.isin(y, pos + neg)
        out += [(x[keep] - centre).astype(np.float32), np.where(np.isin(y[keep], pos), 1.0, -1.0)]
    return out[0], out[1].astype(np.float32), out[2], out[3].astype(np.float32)


def patch_grid(image_shape: tuple[int, ...], patches: int) -> tuple[int, int]:
    """(k, patch dimension) of cutting images of `image_shape` ((H, W) or (H, W, C)) into
    patches = k^2 tiles; ConfigError where they do not tile."""
    field = qualified("patches")
    if len(image_shape) not in (2, 3):
        raise ConfigError(
            f'{field}: data.construction = "natural" needs images (H, W) or (H, W, C), got flat '
            f"images of shape {image_shape}"
        )
    k = math.isqrt(patches)
    height, width = image_shape[:2]
    if k * k != patches or height % k or width % k:
        raise ConfigError(
            f"{field}: must be a square k^2 with k dividing the image's height {height} and "
            f"width {width} (e.g. 4 for 2 x 2 tiles), got {patches}"
        )
    channels = image_shape[2] if len(image_shape) == 3 else 1
    return k, (height // k) * (width // k) * channels


def _check_classes(imgs: Images, classes: str) -> None:
    pos, neg = parse_classes(classes)
    field = qualified("classes")
    held = set(imgs.y_train.tolist()) & set(imgs.y_test.tolist())
    absent = [c for c in pos + neg if c not in held]
    if absent:
        raise ConfigError(
            f"{field}: class {absent[0]} is not in both the training and the test images (the "
            f"classes there: {', '.join(map(str, sorted(held)))}), got {classes!r}"
        )


def _check_natural(values: dict[str, Any], image_shape: tuple[int, ...]) -> int:
    """The patch dimension, after checking that nothing natural samples lack is asked for."""
    for field in NATURAL_UNREAD:
        if values[field] != FIELDS[field].default:
            raise ConfigError(
                f'{qualified(field)}: is not read with data.construction = "natural"'
                f"{' (the patch dimension comes from the images)' if field == 'd' else ''}; leave "
                f"it at its default {FIELDS[field].default!r}, got {values[field]!r}"
            )
    for field, default in NATURAL_PROBS.items():
        if abs(values[field] - default) > 1e-9:
            raise ConfigError(
                f'{qualified(field)}: is not read with data.construction = "natural" (categories '
                f"come from the teacher); leave it at its default {default!r}, got "
                f"{values[field]!r}"
            )
    if values["hard_labels"] != "teacher":
        raise ConfigError(
            'weak.hard_labels: must be "teacher" with data.construction = "natural" (no sample '
            f"is hard-only before the teacher has labelled it), got {values['hard_labels']!r}"
        )
    if values["optimizer"] == "adam":
        raise ConfigError(
            'strong.optimizer: "adam" is not offered with data.construction = "natural" (its '
            "coefficients are a projection onto the training noise, which natural samples do "
            'not have); use "gd", "sgd" or "momentum"'
        )
    if values["activation"] == "softplus" and values["second_layer"] == "trained":
        raise ConfigError(
            'strong.second_layer: "trained" with strong.activation = "softplus" is not offered '
            'with data.construction = "natural" (the empty noise patch\'s softplus(0) would '
            'become a trained bias); use "fixed" or another activation'
        )
    return patch_grid(image_shape, values["patches"])[1]


def _check_sizes(values: dict[str, Any], train: int, test: int, fitted: bool) -> None:
    """The natural construction draws disjoint images: weak, training and validation from the
    training images, the test set from the test images."""
    n_wk = values["n_wk"] if fitted else 0
    drawn = n_wk + values["n_st"] + values["n_val"]
    if drawn > train:
        raise ConfigError(
            f"strong.n_st: the weak, training and validation images are drawn without "
            f"replacement from the {train} training images of classes {values['classes']}: "
            f"n_wk + n_st + n_val = {n_wk} + {values['n_st']} + {values['n_val']} = {drawn} "
            f"must be at most {train}"
        )
    if values["n_test"] > test:
        raise ConfigError(
            f"eval.n_test: must be at most the {test} test images of classes "
            f"{values['classes']}, got {values['n_test']}"
        )


@functools.lru_cache(maxsize=16)
def _split(source: str, path: str, classes: str, content_hash: str) -> tuple[int, int, bool]:
    """How many training and held-out images the class groups hold, and whether one of them is
    the mean image (zero once centred): computed once per file, not once per grid point."""
    x_train, _, x_test, _ = binary(images(source, path), classes)
    flat = np.concatenate([x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)])
    return len(x_train), len(x_test), bool((np.abs(flat).sum(1) == 0).any())


def construction_of(source: str, construction: str) -> str:
    """Which construction builds the samples: "synthetic" for the synthetic source (whose
    construction field is unread), else the image source's construction."""
    return "synthetic" if source == "synthetic" else construction


def natural_dim(source: str, path: str, patches: int) -> int:
    """The natural construction's working dimension: the patch dimension of the images."""
    return patch_grid(images(source, path).x_train.shape[1:], patches)[1]


def check_source(values: dict[str, Any], fitted: bool, read_data: bool = True) -> dict[str, Any]:
    """`values` with what the data decides filled in, or a ConfigError: the class groups (the
    source's default where none are named), then, reading the data, its file and layout, that it
    holds the classes, the content hash (data_hash: filled in; refused where given and
    different, a file changed under a dataset) and the sizes each construction needs (`fitted`:
    whether the teacher draws a weak set). read_data False: what a dataset's spec.toml already
    records is taken as it is (a dataset reads without its data), and data_hash must be there.
    Synthetic: unchanged."""
    if values["source"] == "synthetic":
        return values
    values = dict(values)
    values["classes"] = values["classes"] or SOURCES[values["source"]].default_classes
    parse_classes(values["classes"])
    if not read_data:
        if not values["data_hash"]:
            raise ConfigError(
                "data.data_hash: a dataset's spec.toml records its data's content hash; none "
                "found (the spec was not written by w2sjax)"
            )
        return values
    imgs = images(values["source"], values["path"])
    _check_classes(imgs, values["classes"])
    given, found = values["data_hash"], imgs.content_hash
    if given and given != found:
        raise ConfigError(
            f"data.data_hash: the data's content hash is {found}, the spec says {given} (the file "
            f"changed since the spec was written; rerun with --fresh or restore the file)"
        )
    values["data_hash"] = found
    train, test, blank = _split(values["source"], values["path"], values["classes"], found)
    image_shape = imgs.x_train.shape[1:]
    pixels = math.prod(image_shape)
    if values["construction"] == "natural":
        _check_natural(values, image_shape)
        _check_sizes(values, train, test, fitted)
    elif blank:
        raise ConfigError(
            f"data.classes: an image of classes {values['classes']} is the dataset's mean image "
            f"(zero once centred); the planted construction scales each image to ||nu||, so "
            f"none may be"
        )
    elif values["d"] < pixels + 3:
        raise ConfigError(
            f'data.d: must be at least {pixels + 3} with data.construction = "planted" (2 easy '
            f"signal axes, the {pixels} pixels of an image and at least one noise axis), got "
            f"{values['d']}"
        )
    return values
