"""Image sources (docs/IMAGES.md): the source registry's checks, the two constructions against
patches written out independently, Proposition 2.1 on the planted construction, the planted
construction's equivalence to the synthetic source, and the natural construction's disjoint
draws and teacher-read categories."""

from __future__ import annotations

import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import reference_strong_output

import w2sjax
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import sweep_from
from w2sjax.config.settings import build
from w2sjax.config.sources import SOURCES, images
from w2sjax.engine.batch import Shape, run_id, stack_params
from w2sjax.engine.data import EASY, HARD, patch_coefs
from w2sjax.engine.images import CONSTRUCTIONS, cut, pool_of
from w2sjax.engine.models import sign, strong_output, weak_output
from w2sjax.engine.simulate import simulate
from w2sjax.engine.teachers import fit_weak
from w2sjax.engine.train import draw_run

TINY = dict(n_wk=40, steps_wk=50, n_st=48, m=3, steps=20, n_test=60, n_val=30, log_points=5)


def _one(config, seed: int = 0):
    return jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, seed)]))


def _npz(path, x_train, y_train, x_test=None, y_test=None):
    x_test = x_train if x_test is None else x_test
    y_test = y_train if y_test is None else y_test
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


@pytest.fixture
def distinct(tmp_path):
    """An npz of 6 x 6 images, 3 classes, every image different (its index in pixel 0)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, (240, 6, 6)).astype(np.float32)
    x[:, 0, 0] = np.arange(240)
    y = np.arange(240) % 3
    return _npz(tmp_path / "distinct.npz", x[:160], y[:160], x[160:], y[160:])


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"source": "npz"}, 'data.path: data.source = "npz" needs the path'),
        ({"source": "npz", "path": "missing.npz"}, "data.path: no such file 'missing.npz'"),
        ({"source": "npz", "path": "{layout}"}, "must hold x_train, y_train, x_test, y_test"),
        ({"source": "npz", "path": "{ok}", "classes": "0/7"}, "data.classes: class 7 is not"),
        ({"source": "npz", "path": "{ok}", "classes": "0,1/1"}, "must not share a class"),
        ({"source": "npz", "path": "{ok}", "d": 30}, "data.d: must be at least 39"),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "n_st": 100},
            "strong.n_st: the weak, training and validation images",
        ),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "n_st": 8, "n_test": 99},
            "eval.n_test: must be at most the 53 test images",
        ),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "patches": 16},
            "data.patches: must be a square k^2 with k dividing",
        ),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "nu_norm": 2.0},
            'data.nu_norm: is not read with data.construction = "natural"',
        ),
        ({"source": "npz", "path": "{ok}", "data_hash": "0" * 16}, "data.data_hash: the data's"),
        ({"source": "npz", "path": "{ok}", "classes": "2-0/1"}, "a range runs from low to high"),
        ({"source": "npz", "path": "{broken}"}, "is not a readable .npz file"),
        ({"source": "npz", "path": "{npy}"}, "holds one array, not an .npz"),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "optimizer": "adam"},
            'strong.optimizer: "adam" is not offered with data.construction = "natural"',
        ),
        (
            {"source": "npz", "path": "{ok}", "construction": "natural", "d": 16},
            'data.d: is not read with data.construction = "natural" (the patch dimension',
        ),
        ({"classes": "0/1"}, 'data.classes: is read only with data.source = "digits" or "npz"'),
        ({"classes": "0-4"}, "data.classes: must be two groups of class labels"),
    ],
)
def test_bad_image_input_is_one_line_naming_the_field(tmp_path, distinct, fields, message):
    np.savez(tmp_path / "layout.npz", x_train=np.ones((4, 6, 6)))
    (tmp_path / "broken.npz").write_bytes(open(distinct, "rb").read()[:300])
    np.save(tmp_path / "one.npy", np.ones(3))
    (tmp_path / "one.npy").rename(tmp_path / "npy.npz")
    paths = {
        "{ok}": distinct,
        **{f"{{{n}}}": str(tmp_path / f"{n}.npz") for n in ("layout", "broken", "npy")},
    }
    fields = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    with pytest.raises(ConfigError) as err:
        build({**TINY, "n_val": 40, "classes": "0/1", **fields} if "path" in fields else fields)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_every_source_loads_the_common_layout(distinct):
    for name in SOURCES:
        imgs = images(name, distinct if name == "npz" else "")
        assert len(imgs.x_train) == len(imgs.y_train) and len(imgs.x_test) == len(imgs.y_test)
        assert imgs.x_train.shape[1:] == imgs.x_test.shape[1:]
        assert len(imgs.content_hash) == 16


def test_the_data_hash_separates_files_and_a_dataset_reads_without_its_data(tmp_path, distinct):
    """Runs on different data never share an id, the same data at another path keeps its ids,
    the hash enters the stored spec, which then reads without the data, and a resume on
    changed data is refused, naming the hash."""
    with np.load(distinct) as stored:
        arrays = {k: stored[k] for k in stored.files}
    other = _npz(
        tmp_path / "other.npz",
        arrays["x_train"] + 1.0,
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
    )
    moved = _npz(tmp_path / "moved.npz", **arrays)
    a, b, c = (
        build({"source": "npz", "path": p, "classes": "0/1"}) for p in (distinct, other, moved)
    )
    assert a.data_hash != b.data_hash and run_id(a, 0) != run_id(b, 0)
    assert a.data_hash == c.data_hash and run_id(a, 0) == run_id(c, 0)
    raw = {
        "name": "s",
        "data": {"source": "npz", "path": moved, "classes": "0/1"},
        "strong": {"steps": 2, "m": 2},
        "eval": {"n_test": 10, "n_val": 10, "log_points": 2},
        "grid": {"n_st": [8, 9]},
    }
    text = sweep_from(raw, "s").to_toml()
    assert f'data_hash = "{a.data_hash}"' in text
    Path(moved).unlink()
    stored = sweep_from(tomllib.loads(text), "s", read_data=False)
    assert [p.point_hash for p in stored.points] == [
        p.point_hash
        for p in sweep_from({**raw, "data": {**raw["data"], "path": distinct}}, "s").points
    ]
    with pytest.raises(ConfigError, match="grid.path: not a sweep axis; a sweep reads one"):
        sweep_from({"data": {"source": "npz"}, "grid": {"path": [distinct, other]}}, "s")
    root = tmp_path / "out" / "s"
    root.mkdir(parents=True)
    (root / "spec.toml").write_text(text)
    raw["data"]["path"] = other
    with pytest.raises(w2sjax.DatasetRefused, match=f"content hash {a.data_hash}.*{b.data_hash}"):
        w2sjax.run(raw, out=tmp_path / "out", quiet=True)
    assert not any(f.startswith(("source", "path", "data_hash")) for f in build({}).point_fields())


@pytest.mark.parametrize("name", CONSTRUCTIONS)
def test_every_construction_keeps_the_contract(name, distinct):
    """Shapes of what a construction draws, the images held once in the pool, and each
    sample's strong output against its patches written out."""
    fields = {"d": 64}
    if name != "synthetic":
        fields = {"d": 64, "source": "npz", "path": distinct, "classes": "0/1,2"}
    if name == "natural":
        fields = {**fields, "construction": "natural", "d": 10000}  # d is not read there
    config = build({**TINY, **fields})
    shape = Shape.of(config)
    pool = pool_of(shape)
    assert (pool is None) == (name == "synthetic")
    run = jax.jit(draw_run, static_argnums=0)(shape, _one(config), pool)
    dim = shape.dim
    rows = run.signals.shape[0]
    assert run.W0.shape == (2, config.m, dim) and run.signals.shape[1] == dim
    reference = run.signals if run.reference is None else run.reference
    assert reference.shape == (4, dim)
    for s, n in ((run.train, config.n_st), (run.test, config.n_test), (run.val, config.n_val)):
        coefs = patch_coefs(s)
        assert coefs.shape[1:] == (n, rows) and s.xi.shape == (n, dim)
        if s is run.val:  # drawn as the test set is; its output needs no check of its own
            continue
        X = np.concatenate(
            [np.einsum("pns,sd->npd", coefs, run.signals), np.asarray(s.xi)[:, None]], axis=1
        )
        np.testing.assert_allclose(
            strong_output(run.W0 * 50, run.signals, s),
            reference_strong_output(np.asarray(run.W0) * 50, X),
            rtol=1e-4,
            atol=1e-5,
        )


def test_the_natural_patches_are_the_image_cut_in_tiles():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    tiles = cut(x, 4)
    assert tiles.shape == (2, 4, 2 * 3 * 3)
    np.testing.assert_array_equal(tiles[1, 3].reshape(2, 3, 3), x[1, 2:, 3:])
    np.testing.assert_array_equal(tiles[0, 1].reshape(2, 3, 3), x[0, :2, 3:])


def test_natural_draws_are_disjoint_from_their_splits_and_categories_come_from_the_teacher(
    distinct,
):
    config = build(
        {**TINY, "source": "npz", "path": distinct, "classes": "0/1,2", "construction": "natural"}
    )
    config = build({**config.to_dict(), "n_st": 40, "n_wk": 20, "n_val": 20, "steps": 60})
    shape = Shape.of(config)
    pool = pool_of(shape)
    draw = jax.jit(draw_run, static_argnums=0)
    for seed in range(3):
        run = draw(shape, _one(config, seed), pool)
        index = {}
        for name, s, x in (
            ("weak", run.weak, pool.x_train),
            ("train", run.train, pool.x_train),
            ("val", run.val, pool.x_train),
            ("test", run.test, pool.x_test),
        ):
            # every row is an image of its split, found by its whole patch array
            flat = np.asarray(s.coefs).reshape(len(s.y), -1)
            rows = np.asarray(x).reshape(len(x), -1)
            match = (flat[:, None, :] == rows[None]).all(-1)
            assert (match.sum(1) == 1).all(), name
            index[name] = set(match.argmax(1).tolist())
            assert len(index[name]) == len(s.y), f"{name}: an image drawn twice"
        assert not (index["weak"] & index["train"] or index["train"] & index["val"])
        assert not index["weak"] & index["val"]
    per_run, per_step = jax.device_get(simulate(shape, stack_params([(config, 0), (config, 1)])))
    swapped = jax.device_get(simulate(shape, stack_params([(config, 1), (config, 0)])))
    assert (per_run["weak_test_acc_hard"] == 0).all()
    # the student's test accuracy is the teacher-right and teacher-wrong accuracies, weighted
    weak = per_run["weak_test_acc"][:, None]
    mixed = weak * per_step["test_acc_easy"] + (1 - weak) * per_step["test_acc_hard"]
    np.testing.assert_allclose(per_step["test_acc"], mixed, atol=1e-5)
    assert np.isnan(per_step["rho_bar_max"]).all() and np.isnan(per_step["gnu_pos"]).all()
    # a run's images depend on its own key only, not on its place in the batch
    np.testing.assert_array_equal(swapped[1]["test_acc"][::-1], per_step["test_acc"])


def test_planted_images_are_of_the_sample_class_and_from_its_split(distinct):
    """Each hard-signal patch, divided by ||nu|| and its sign, is a row of the pool: training
    and weak samples' of the training images, test and validation samples' of the held-out
    ones, of the sample's class; a both-signal sample's image is its second patch."""
    config = build({**TINY, "d": 64, "source": "npz", "path": distinct, "classes": "0/1,2"})
    shape = Shape.of(config)
    pool = pool_of(shape)
    run = jax.jit(draw_run, static_argnums=0)(shape, _one(config), pool)
    pixels = pool.x_train.shape[1]
    for s, x, y in (
        (run.weak, pool.x_train, pool.y_train),
        (run.train, pool.x_train, pool.y_train),
        (run.test, pool.x_test, pool.y_test),
        (run.val, pool.x_test, pool.y_test),
    ):
        c, a = np.asarray(s.c), np.asarray(s.a)
        patch = np.where((c == HARD)[:, None], s.coefs[:, 0], s.coefs[:, 1])[c != EASY]
        image = patch[:, 2 : 2 + pixels] * a[c != EASY, None]
        match = np.isclose(image[:, None, :], np.asarray(x)[None], atol=1e-6).all(-1)
        assert (match.sum(1) == 1).all()
        np.testing.assert_array_equal(np.asarray(y)[match.argmax(1)], np.asarray(s.y)[c != EASY])
        np.testing.assert_array_equal(patch[:, :2], 0)  # the easy axes hold no image


def test_proposition_2_1_holds_on_planted_digits():
    """The linear teacher is at chance on planted hard-only samples whatever it learned; the
    control without the random sign a learns the images."""
    config = build(
        {
            "source": "digits",
            "d": 200,
            "n_wk": 400,
            "n_st": 8,
            "m": 2,
            "n_test": 20000,
            "n_val": 8,
            "mu_norm": 4.0,
            "nu_norm": 4.0,
        }
    )
    shape = Shape.of(config)
    run = jax.jit(draw_run, static_argnums=0)(shape, _one(config), pool_of(shape))
    test = run.test
    hard = np.asarray(test.c) == HARD

    def without_sign(s):  # a = +1 on every sample: the hard patches times a (a^2 = 1)
        return s.replace(coefs=s.coefs.at[:, :, 2:].multiply(s.a[:, None, None]))

    fit = jax.jit(fit_weak, static_argnums=3)
    for weak, held in ((run.weak, test), (without_sign(run.weak), without_sign(test))):
        w = fit(run.signals, weak, jnp.float32(0.05), 200)
        right = np.asarray(sign(weak_output(w, run.signals, held)) == held.y)
        if weak is run.weak:
            n = hard.sum()
            assert abs(right[hard].mean() - 0.5) <= 3 * np.sqrt(0.25 / n), right[hard].mean()
            assert right[np.asarray(test.c) == EASY].mean() >= 0.95
        else:
            assert right[hard].mean() >= 0.6, right[hard].mean()


def test_planted_on_the_signals_themselves_is_the_synthetic_run(tmp_path):
    """Every image of class y is nu_y / ||nu||: the planted construction draws what the synthetic
    source draws, run for run (the images' indices come from a key of their own); the two
    programs are compiled apart, so they agree to float32 round-off. (The teacher is the clean
    one: the fitted teacher on planted samples is Proposition 2.1's test.)"""
    # a third class, left out, puts the dataset's mean image at 0: centring changes nothing
    x = np.concatenate([np.tile(np.eye(2, dtype=np.float32), (5, 1)), np.full((10, 2), -0.5)])
    path = _npz(tmp_path / "signals.npz", x, np.concatenate([np.tile([0, 1], 5), np.full(10, 2)]))
    base = {**{k: v for k, v in TINY.items() if k not in ("n_wk", "steps_wk")}, "d": 80}
    base |= {"steps": 40, "log_points": 4, "teacher": "clean"}
    synthetic = build(base)
    planted = build({**base, "source": "npz", "path": path, "classes": "0/1"})
    params = stack_params([(synthetic, s) for s in range(3)])  # the same keys for both
    a = simulate(Shape.of(synthetic, form="dense"), params)
    shape = Shape.of(planted)
    b = simulate(shape, params)
    for got, want in zip(b, a, strict=True):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_array_equal(b[1]["test_acc"], a[1]["test_acc"])
    # the control: images that are not the signals (the same program, another pool) change it
    x = np.float32([[0.6, 0.8]] * 5 + [[0.8, 0.6]] * 5)  # class +1 first, as the pool keeps it
    other = pool_of(shape)._replace(x_train=jnp.asarray(x), x_test=jnp.asarray(x))
    c = simulate(shape, params, pool=other)
    assert not np.allclose(c[1]["gnu_pos"], a[1]["gnu_pos"], rtol=1e-3)


def test_image_sources_refuse_the_synthetic_only_engine_choices(distinct):
    config = build({**TINY, "source": "npz", "path": distinct, "classes": "0/1"})
    assert (Shape.of(config, noise="auto").noise, Shape.of(config).form) == ("full", "dense")
    for choice in ({"form": "coef"}, {"noise": "reduced"}):
        with pytest.raises(ConfigError, match='serves only data.source = "synthetic"'):
            Shape.of(config, **choice)
