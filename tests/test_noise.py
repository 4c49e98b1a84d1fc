"""The noise samplers (noise.SAMPLERS): each one's contract, the reduced sampler's law against the
full one's (Monte Carlo moments of the Gram matrix, then whole runs), and the choice between them:
auto, the record in spec.toml, resuming datasets written before the choice existed."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_tables, small_config

import w2sjax
from w2sjax.cli.main import main
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions
from w2sjax.config.settings import build
from w2sjax.engine.batch import SIGNAL_AXES, Shape, choose_noise, stack_params
from w2sjax.engine.data import noise_mask, sample
from w2sjax.engine.noise import SAMPLERS, NoiseKeys, bartlett
from w2sjax.engine.simulate import simulate
from w2sjax.engine.train import draw_run
from w2sjax.sweep.buckets import bytes_per_run
from w2sjax.sweep.execution import execute

DATA = Path(__file__).parent / "data"


def _keys(seed: int) -> NoiseKeys:
    # the fourth key was the test set's before 0.6.3: the others keep their draws
    run, weak, train, _, init = jax.random.split(jax.random.PRNGKey(seed), 5)
    return NoiseKeys(run, weak, train, init)


@pytest.mark.parametrize("noise", SAMPLERS)
@pytest.mark.parametrize("easy_signal", ["orthogonal", "antipodal"])
def test_every_sampler_keeps_the_contract(noise, easy_signal):
    config = small_config(d=64, n_wk=20, n_st=10, m=3, easy_signal=easy_signal)
    shape = Shape.of(config, noise=noise)
    p = stack_params([(config, 0)])
    one = jax.tree_util.tree_map(lambda a: a[0], p)
    drawn = SAMPLERS[noise].draw(shape, one, _keys(0))
    D = shape.dim
    assert drawn.W0.shape == (2, 3, D)
    assert [x.shape for x in drawn[1:]] == [(20, D), (10, D)]
    signal_axes = 1.0 - noise_mask(D, easy_signal)  # antipodal signals leave axis 1 to noise
    for patches in drawn[1:]:  # noise is orthogonal to every signal
        assert float(jnp.abs(patches * signal_axes).max()) == 0.0
    again = SAMPLERS[noise].draw(shape, one, _keys(0))
    assert all(bool((a == b).all()) for a, b in zip(drawn, again, strict=True))
    assert not bool((drawn.train == SAMPLERS[noise].draw(shape, one, _keys(1)).train).all())
    k_a, k_b = jax.random.split(jax.random.PRNGKey(5))
    evaluation = SAMPLERS[noise].evaluation(shape, one, (k_a, k_b), (7, 3))
    assert evaluation.shape == (10, D) and float(jnp.abs(evaluation * signal_axes).max()) == 0.0
    # the sets drawn together are each set drawn alone, one after another
    alone = [SAMPLERS[noise].evaluation(shape, one, (k,), (n,)) for k, n in ((k_a, 7), (k_b, 3))]
    np.testing.assert_array_equal(evaluation, np.concatenate(alone))
    assert not np.array_equal(alone[0][:3], alone[1])


def test_the_full_sampler_draws_what_every_earlier_run_drew():
    """Existing runs keep their numbers: a full-sampler run's training set is data.sample's."""
    config = small_config(d=64)
    shape = Shape.of(config, noise="full")
    p = jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, 3)]))
    run = draw_run(shape, p)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(p.base_seed), p.point), p.seed)
    k_st = jax.random.split(key, 4)[1]
    old = sample(k_st, config.n_st, 64, "orthogonal", p.p_e, p.p_h, p.sigma_p)
    for name in ("y", "c", "a", "xi"):
        np.testing.assert_array_equal(getattr(run.train, name), getattr(old, name))


def _grams(noise: str, d: int, easy_signal: str, draws: int) -> dict[str, np.ndarray]:
    """Monte Carlo over `draws` keys of what a run sees of its noise: the Gram matrix of its M
    vectors (W0's noise parts at sigma_0, then the training patches at sigma_p), the test
    patches' inner products with them, and W0's components on the signal axes."""
    config = small_config(
        d=d, n_wk=3, n_st=3, m=2, n_test=2, sigma_0=0.5, sigma_p=1.5, easy_signal=easy_signal
    )
    shape = Shape.of(config, noise=noise)
    p = jax.tree_util.tree_map(lambda a: a[0], stack_params([(config, 0)]))
    noise_axes = noise_mask(shape.dim, easy_signal)  # noise coordinates of the full layout
    signal_axes = [0, 1, 2, 3] if easy_signal == "orthogonal" else [0, 2, 3]

    def one(key):
        run, weak, train, k_test, init = jax.random.split(key, 5)  # as before 0.6.3
        drawn = SAMPLERS[noise].draw(shape, p, NoiseKeys(run, weak, train, init))
        test = SAMPLERS[noise].evaluation(shape, p, (k_test,), (config.n_test,))
        W0 = drawn.W0.reshape(-1, shape.dim)
        on_signals = W0[:, jnp.asarray(signal_axes)]
        W0 = W0 * noise_axes if noise == "full" else W0.at[:, :SIGNAL_AXES].set(0.0)
        V = jnp.concatenate([W0, drawn.weak, drawn.train])
        return V @ V.T, test @ V.T, on_signals

    gram, test, on_signals = jax.vmap(one)(jax.random.split(jax.random.PRNGKey(11), draws))
    return {
        "gram": np.asarray(gram, np.float64),
        "test": np.asarray(test, np.float64),
        "W0 on the signal axes": np.asarray(on_signals, np.float64),
    }


def _moments(sample: dict[str, np.ndarray], rank: int) -> dict[str, np.ndarray]:
    """Per draw, the statistics whose means are compared: first and second moments (so means
    and variances) of the diagonal and off-diagonal Gram entries by the rows' scales, of the
    test patches' inner products and of W0's signal-axis components, and the smallest of the
    Gram's `rank` nonzero eigenvalues."""
    gram, test = sample["gram"], sample["test"]
    M, w0 = gram.shape[1], 4  # the first 2m = 4 rows are W0's (sigma_0)
    diag = np.diagonal(gram, axis1=1, axis2=2)
    off = np.where(np.eye(M, dtype=bool), np.nan, gram)
    entries = {
        "diagonal, W0": diag[:, :w0],
        "diagonal, patches": diag[:, w0:],
        "off-diagonal, W0-W0": off[:, :w0, :w0],
        "off-diagonal, W0-patch": off[:, :w0, w0:],
        "off-diagonal, patch-patch": off[:, w0:, w0:],
        "test inner products": test,
        "W0 on the signal axes": sample["W0 on the signal axes"],
    }
    stats = {"smallest eigenvalue": np.linalg.eigvalsh(gram)[:, M - rank]}
    for name, x in entries.items():
        flat = x.reshape(len(x), -1)
        stats[f"mean of {name}"] = np.nanmean(flat, 1)
        stats[f"second moment of {name}"] = np.nanmean(flat**2, 1)
    return stats


@pytest.mark.parametrize(
    "d, easy_signal, rank",
    [  # M = 10 vectors: d' = 20 and 21 above it, d' = 6 and 7 below it (rank d')
        pytest.param(24, "orthogonal", 10, marks=pytest.mark.slow),  # antipodal covers above M
        (10, "orthogonal", 6),
        (24, "antipodal", 10),
        (10, "antipodal", 7),
    ],
)
def test_the_reduced_sampler_has_the_full_samplers_law(d, easy_signal, rank):
    draws = 6000
    full, reduced = (_moments(_grams(n, d, easy_signal, draws), rank) for n in ("full", "reduced"))
    for name in full:
        a, b = full[name], reduced[name]
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) <= 4 * se, (name, a.mean(), b.mean(), se)
    config = small_config(d=d, n_wk=3, n_st=3, m=2, easy_signal=easy_signal)
    assert Shape.of(config, noise="reduced").dim == 4 + rank


def test_bartlett_takes_any_d():
    """d' beyond int32's range (d = 3 x 10^9): the chi-square degrees of freedom stay exact."""
    L = bartlett(jax.random.PRNGKey(0), 3, 3 * 10**9)
    assert bool(jnp.isfinite(L).all())
    np.testing.assert_allclose(np.diag(np.asarray(L)) ** 2, 3e9, rtol=1e-3)


def test_bartlett_rows_have_their_norms():
    """Row i's squared norm is chi-square(d'), whatever the other rows: its mean and variance."""
    L = jax.vmap(lambda k: bartlett(k, 5, 8))(jax.random.split(jax.random.PRNGKey(2), 20000))
    sq = np.asarray((L**2).sum(-1), np.float64)  # (draws, 5)
    assert L.shape == (20000, 5, 5)
    np.testing.assert_allclose(sq.mean(0), 8.0, atol=4 * np.sqrt(16 / 20000))
    np.testing.assert_allclose(sq.var(0), 16.0, rtol=0.1)


LAW_METRICS = (
    "weak_test_acc",
    "pseudo_label_error",
    "test_acc",
    "test_acc_hard",
    "train_acc_pseudo",
    "gmu_own",
    "gnu_pos",
    "rho_bar_max",
)


def _law_runs(d: int, noise: str, seeds: int = 64, **fields) -> dict[str, np.ndarray]:
    """Per seed: the run metrics and the last step's metrics of LAW_METRICS."""
    fitted = fields.get("teacher", "linear") == "linear"
    config = build(
        {
            "d": d,
            **({"n_wk": 200, "steps_wk": 100} if fitted else {}),
            "n_st": 100,
            "m": 5,
            "steps": 200,
            "n_test": 400,
            "n_val": 100,
            "log_points": 4,
            "sigma_0": 0.01,
            "eta": 0.5,
            **fields,
        }
    )
    shape = Shape.of(config, noise=noise)
    per_run, per_step = jax.device_get(
        simulate(shape, stack_params([(config, s) for s in range(seeds)]))
    )
    return {
        k: np.asarray(per_run[k]) if k in per_run else np.asarray(per_step[k])[:, -1]
        for k in LAW_METRICS
    }


def _beyond(a: dict, b: dict, z: float = 3.0) -> list[str]:
    """The metrics whose seed means differ by more than z standard errors of the difference."""
    out = []
    for k in LAW_METRICS:
        se = np.sqrt(a[k].var(ddof=1) / len(a[k]) + b[k].var(ddof=1) / len(b[k]))
        if abs(a[k].mean() - b[k].mean()) > z * max(se, 1e-12):
            out.append(k)
    return out


# M = 310: above d' = 296, then below d' = 1996 (where `auto` takes reduced). Both under `slow`
# (about 45 s each): the fast suite checks the sampler's own law
# (test_the_reduced_sampler_has_the_full_samplers_law) and pins reduced runs bit for bit
# (test_golden), and the image tests needed the time.
@pytest.mark.slow
@pytest.mark.parametrize("d", [300, 2000])
def test_reduced_runs_equal_full_runs_in_law(d):
    full = _law_runs(d, "full")
    assert _beyond(full, _law_runs(d, "reduced")) == []
    # The control: a real change (sigma_p x 1.3) fails the same comparison.
    assert _beyond(full, _law_runs(d, "reduced", sigma_p=1.3)) != []


@pytest.mark.slow
def test_without_a_weak_set_reduced_runs_equal_full_runs_in_law():
    """With no teacher fitted the reduced sampler's joint draw is W0 and the training noise
    alone (M = 2m + n_st): still the full sampler's law, and the control still fails."""
    fields = {"teacher": "clean", "hard_labels": "coin"}
    full = _law_runs(2000, "full", **fields)
    assert _beyond(full, _law_runs(2000, "reduced", **fields)) == []
    assert _beyond(full, _law_runs(2000, "reduced", sigma_p=1.3, **fields)) != []


def test_auto_takes_reduced_where_it_is_exact_and_smaller():
    small_d, large_d = small_config(d=64, n_wk=60, n_st=40, m=4), small_config(d=10**6)
    assert choose_noise(small_d, "highest") == "full"  # d' = 60 < M = 108
    assert choose_noise(large_d, "highest") == "reduced"
    assert choose_noise(large_d, "bf16") == "full"  # low precision rounds the long coordinate
    with pytest.raises(ConfigError, match="--noise reduced: needs --precision highest"):
        Shape.of(large_d, noise="reduced", precision="tf32")
    # Cost flat in d: the same arrays at d = 10^4, 10^6 and 10^8.
    shapes = [Shape.of(small_config(d=d), noise="auto") for d in (10**4, 10**6, 10**8)]
    assert len({s.dim for s in shapes}) == 1 and len({bytes_per_run(s) for s in shapes}) == 1
    assert shapes[0].form == "coef"  # n_st = 40 < k = 108


def test_noise_option_errors_are_one_line(sweep_file, capsys):
    for extra in (["--noise", "bogus"], ["--noise", "reduced", "--precision", "bf16"]):
        assert main(["sweep", str(sweep_file), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--noise" in err, err
    assert main(["bench", "--noise", "sometimes"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_dataset_written_before_the_choice_resumes_full_with_its_numbers(tmp_path, capsys):
    """tests/data/old_dataset: 4 runs written by w2sjax 6668fa0 (before the sampler choice),
    where auto would now take the reduced sampler. Two of its chunks are removed; the resume
    recomputes just those, with the full sampler, and every row equals the original's."""
    out = tmp_path / "out"
    shutil.copytree(DATA / "old_dataset", out / "old")
    spec_before = (out / "old" / "spec.toml").read_text()
    original = w2sjax.load(out / "old")
    for part in sorted((out / "old").glob("*/bucket=*/part-*.parquet"))[:1]:
        for table in ("runs", "steps"):
            (out / "old" / table / part.parent.name / part.name).unlink()
    args = ["sweep", str(DATA / "old.toml"), "--out", str(out), "--quiet", "--max-chunk", "1"]
    assert main(args) == 0
    assert "1 runs simulated" in capsys.readouterr().out
    assert (out / "old" / "spec.toml").read_text() == spec_before  # no record added
    resumed = w2sjax.load(out / "old")
    assert (resumed.runs.noise == "full").all()
    # Every column the old dataset has, equal; the recomputed run adds a validation set (a key
    # of its own: no other draw moved) and so an early-stopping step (best_*), which the old runs
    # lack (read as oracle_*, their test argmax).
    runs_cols = [c for c in original.runs.columns if not c.startswith("best_")]
    assert_same_tables(
        (resumed.runs[runs_cols], resumed.steps[original.steps.columns]),
        (original.runs[runs_cols], original.steps),
    )
    assert resumed.runs.best_step.notna().sum() == 1 and original.runs.best_step.isna().all()
    assert main([*args, "--noise", "reduced"]) == 2
    assert "written with the full sampler" in capsys.readouterr().err


def test_the_sampler_is_recorded_and_a_resume_keeps_it(tmp_path, capsys):
    spec = tmp_path / "old.toml"
    spec.write_text((DATA / "old.toml").read_text())
    args = ["sweep", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 0
    text = (tmp_path / "out" / "old" / "spec.toml").read_text()
    assert "# --noise reduced: d=200, n_wk=40, n_st=20, m=3, easy_signal=orthogonal" in text
    runs, _ = w2sjax.load(tmp_path / "out" / "old")
    assert (runs.noise == "reduced").all()
    assert main([*args, "--noise", "full"]) == 2
    assert "written with the reduced sampler" in capsys.readouterr().err
    assert main([*args, "--noise", "reduced"]) == 0 and main(args) == 0
    assert "4 already written" in capsys.readouterr().out


def test_reduced_coordinates_out_of_memory_is_the_usual_clear_line(tmp_path, monkeypatch, capsys):
    import w2sjax.sweep.execution as engine

    def no_memory(shape, params, tick=None, reached=None):
        assert shape.noise == "reduced"
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating")

    monkeypatch.setattr(engine, "simulate", no_memory)
    args = [
        "sweep",
        str(DATA / "old.toml"),
        "--out",
        str(tmp_path),
        "--quiet",
        "--set",
        "d=100000000",
        "--pad",
        "off",
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of device memory with 1 run(s)" in err[0]
    assert "reduced noise, 70 coordinates" in err[0]  # 4 signal axes + M = 6 + 40 + 20


def test_without_a_readable_spec_toml_a_resume_follows_the_parts_samplers(tmp_path, capsys):
    """spec.toml lost (the old dataset: no record, so full) or damaged on a record line (a new
    dataset, reduced): the samplers come from the spec the parts record, nothing is recomputed
    and no chunk is called another spec's."""
    out = tmp_path / "out"
    shutil.copytree(DATA / "old_dataset", out / "old")
    before = (out / "old" / "spec.toml").read_text()
    (out / "old" / "spec.toml").unlink()
    args = ["sweep", str(DATA / "old.toml"), "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert "4 already written" in capsys.readouterr().out
    assert (out / "old" / "spec.toml").read_text() == before  # full: no record lines
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(DATA / "old.toml"), "--out", str(fresh), "--quiet"]) == 0
    spec = fresh / "old" / "spec.toml"
    recorded = spec.read_bytes()
    spec.write_bytes(recorded[: recorded.rindex(b"# --noise")] + b"\xff" + recorded[-20:])
    capsys.readouterr()
    assert main(["sweep", str(DATA / "old.toml"), "--out", str(fresh), "--quiet"]) == 0
    assert "4 already written" in capsys.readouterr().out and spec.read_bytes() == recorded


@pytest.mark.slow  # 33 s; chunking is tested under the full sampler in the fast suite, and
# both samplers draw each run from its own key
def test_chunking_changes_no_reduced_run(tmp_path):
    """Under the reduced sampler too, a run's numbers do not depend on its chunk."""
    sweep = load_sweep(DATA / "old.toml", {"n_st": 20})  # one bucket of 2 runs
    whole = execute(sweep, tmp_path / "whole", EngineOptions(noise="reduced"), quiet=True)
    ones = execute(
        sweep, tmp_path / "ones", EngineOptions(noise="reduced", max_chunk=1), quiet=True
    )
    assert (whole.chunks, ones.chunks) == (1, 2)
    tables = [w2sjax.load(tmp_path / out / "old") for out in ("whole", "ones")]
    assert (tables[0].runs.noise == "reduced").all()
    assert_same_tables(*tables)
