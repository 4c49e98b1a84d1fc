"""Summaries over seeds (the paper-table layout); the bench: keys, device fill, sweep timing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import SMALL, small_config

import w2sjax.bench.suite as bench
import w2sjax.bench.timing as bench_timing
from w2sjax.analysis.crossings import boundary_fit, crossing, snr_threshold
from w2sjax.analysis.summary import mean_interval, summary_table, with_final
from w2sjax.bench.suite import run_bench, write
from w2sjax.bench.sweep import loop_rates, sweep_bench
from w2sjax.cli.main import main
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.settings import build
from w2sjax.config.toml import to_toml
from w2sjax.engine.batch import Shape, stack_params
from w2sjax.sweep.buckets import bytes_per_run
from w2sjax.tables.reading import load


def test_mean_interval_is_the_t_interval():
    x = pd.Series([0.80, 0.84, 0.86, 0.90])
    mean, lo, hi = mean_interval(x)
    half = 3.182 * np.std(x, ddof=1) / 2  # t_{0.975, 3} * s / sqrt(4)
    assert mean == pytest.approx(0.85) and lo == pytest.approx(0.85 - half)
    assert hi == pytest.approx(0.85 + half)
    assert mean_interval(pd.Series([0.5, np.nan])) == (0.5, 0.5, 0.5)


def test_intervals_stay_in_the_range_of_their_metric():
    near_one = pd.Series([1.0, 1.0, 1.0, 0.99])  # the t-interval alone runs past 1
    mean, lo, hi = mean_interval(near_one)
    assert hi > 1
    assert mean_interval(near_one, (0.0, 1.0)) == (mean, lo, 1.0)
    assert mean_interval(1 - near_one, (0.0, 1.0))[1] == 0.0
    runs, steps = _synthetic()
    runs = runs.assign(pgr_final=[1.1, 1.0, 1.0, -0.4, -0.2, -0.2])  # PGR may leave [0, 1]
    steps = steps.assign(test_acc_easy=np.where(steps.run_id == "r2", 0.99, 1.0))
    table = summary_table(runs, steps, ["n_st"])
    bounded = [c for c in table.columns if c.endswith(("_lo", "_hi")) and "pgr" not in c]
    values = table[bounded].to_numpy(dtype=float)
    assert np.nanmin(values) >= 0 and np.nanmax(values) <= 1
    assert (table.final_test_acc_easy_hi == 1.0).any()  # cut where the t-interval passed 1
    assert table.pgr_final_hi.max() > 1 and table.pgr_final_lo.min() < 0  # PGR is not cut


def _synthetic():
    """Two n_st rows x 3 seeds. For n_st = 200 the test accuracy peaks at step 10; two of its
    runs stop early there (their validation peak), the third at step 100. For n_st = 75 the
    curves are flat and every run stops at step 0 (the first maximum)."""
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(6)],
            "n_st": [75] * 3 + [200] * 3,
            "weak_test_acc": [0.84, 0.85, 0.86] * 2,
            "pseudo_label_error": [0.15] * 6,
            "best_step": [0, 0, 0, 10, 10, 100],
            "oracle_test_acc": [0.85, 0.86, 0.87, 0.97, 0.98, 0.99],
        }
    )
    rows = []
    for i, run in runs.iterrows():
        for step in (0, 10, 100):
            peak = run.n_st == 200 and step == 10
            rows.append(
                {
                    "run_id": run.run_id,
                    "step": step,
                    "test_acc": (0.97 if peak else 0.85) + 0.01 * (i % 3),
                    "train_acc_pseudo": 0.88 if peak else 1.0,
                    "train_acc_true": 0.95 if peak else 0.85,
                    "flip_corrected": 0.9 if peak else 0.1,
                    **{
                        f"test_acc_{c}": 0.5 + 0.1 * k
                        for k, c in enumerate(("easy", "hard", "both"))
                    },
                }
            )
    return runs, pd.DataFrame(rows)


def test_summary_reads_each_run_at_its_own_early_stopping_step():
    table = summary_table(*_synthetic(), by=["n_st"]).set_index("n_st")
    assert list(table.seeds) == [3, 3]
    # n_st = 200: runs 3 and 4 read at step 10 (0.97, 0.98), run 5 at step 100 (0.87).
    assert table.loc[200, "best_step"] == 10  # the median of 10, 10, 100
    assert table.loc[200, "best_test_acc"] == pytest.approx((0.97 + 0.98 + 0.87) / 3)
    assert table.loc[200, "train_acc_pseudo_best"] == pytest.approx((0.88 + 0.88 + 1.0) / 3)
    assert table.loc[200, "flip_corrected_best"] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    assert table.loc[200, "oracle_test_acc"] == pytest.approx(0.98)  # the test set's own pick
    assert table.loc[200, "final_test_acc"] == pytest.approx(0.86)
    assert table.loc[200, "best_test_acc_hard"] == pytest.approx(0.6)
    assert table.loc[75, "best_step"] == 0
    assert table.loc[75, "weak_test_acc"] == pytest.approx(0.85)
    assert table.loc[75, "weak_test_acc_lo"] < 0.85 < table.loc[75, "weak_test_acc_hi"]
    whole = summary_table(*_synthetic(), by=[])
    assert len(whole) == 1 and whole.seeds[0] == 6
    runs, steps = _synthetic()  # runs written before the validation set: no early stopping
    old = summary_table(runs.assign(best_step=pd.array([pd.NA] * 6, "Int64")), steps, ["n_st"])
    assert old.best_test_acc.isna().all() and old.best_step.isna().all()
    assert old.final_test_acc.notna().all()


@pytest.mark.slow  # 35 s of compiles; the bench's own keys, which `make bench` shows at once
def test_bench_report_has_the_documented_keys(tmp_path, monkeypatch):
    assert bench.SIZES["cpu"][0] == (75, 500, 2000)
    # Two of its buckets, one per sampler and form, keep the test short: the keys are the same.
    monkeypatch.setitem(bench.SIZES, "cpu", ((75, 1200), *bench.SIZES["cpu"][1:]))
    finished = []  # buckets in the report each time a bucket is done
    report = run_bench(
        "cpu",
        runs=2,
        steps=3,
        use_torch=False,
        log=lambda *_: None,
        repeats=1,
        done=lambda partial: finished.append(len(partial["buckets"])),
    )
    assert finished == [1, 2]
    saved = json.loads(write(report, tmp_path).read_text())
    assert {"device", "jax_version"} <= set(saved) and saved["ceiling_flops"] > 0
    assert saved["repeats"] == 1
    keys = {
        "form",
        "noise",
        "dim",
        "n_st",
        "d",
        "m",
        "runs",
        "steps",
        "engine_run_steps_per_s",
        "baseline_run_steps_per_s",
        "torch_run_steps_per_s",
        "ceiling_flops",
        "achieved_flops",
        "compile_s",
        "compile_cached_s",
    }
    assert [b["n_st"] for b in saved["buckets"]] == [75, 1200]
    for bucket in saved["buckets"]:
        assert keys <= set(bucket) and bucket["torch_run_steps_per_s"] is None
        assert bucket["engine_run_steps_per_s"] > 0 and bucket["ceiling_flops"] > 0
        assert 0 < bucket["compile_cached_s"] < bucket["compile_s"]  # loaded, not compiled
        n, d, m, dim = bucket["n_st"], bucket["d"], bucket["m"], bucket["dim"]
        # auto: the reduced sampler where d' > M = 2m + n_wk + n_st (n_wk = 200), so D = 4 + M
        M = 2 * m + 200 + n
        assert (bucket["noise"], dim) == (("reduced", 4 + M) if d - 4 > M else ("full", d))
        assert bucket["form"] == (
            "coef" if n < dim - 4 * (bucket["noise"] == "reduced") else "dense"
        )
        flops = 4 * m * n * n if bucket["form"] == "coef" else 8 * m * n * dim
        assert bucket["achieved_flops"] == pytest.approx(bucket["engine_run_steps_per_s"] * flops)


def test_crossing_interpolates_in_log_n():
    n = np.array([10.0, 100.0, 1000.0])
    assert crossing(n, np.array([0.0, 0.1, 0.2]), 0.05) == pytest.approx(10**1.5)
    assert np.isnan(crossing(n, np.array([0.3, 0.2, 0.1]), 0.15))  # never rises through it


@pytest.mark.parametrize("exponent", [-2.0, 4.0])
def test_boundary_fit_recovers_a_known_slope(exponent):
    """Gain is a logistic step in log n_st centred on n0 = 300 * other^exponent (plus seed noise):
    the fitted slope of log n_crit against log other must recover the exponent."""
    rng = np.random.default_rng(1)
    rows = []
    for other in (0.5, 0.7, 1.0, 1.4):
        n0 = 300 * other**exponent
        for n in np.geomspace(10, 1e5, 25):
            for seed in range(6):
                gain = 0.1 / (1 + (n0 / n) ** 3) + rng.normal(0, 0.003)
                rows.append(
                    {
                        "n_st": n,
                        "other": other,
                        "seed": seed,
                        "weak_test_acc": 0.85,
                        "final_test_acc": 0.85 + gain,
                    }
                )
    fit = boundary_fit(pd.DataFrame(rows), "other", n_boot=200)
    assert fit["slope"] == pytest.approx(exponent, abs=0.15)
    assert fit["slope_lo"] <= fit["slope"] <= fit["slope_hi"]
    assert fit["slope_hi"] - fit["slope_lo"] < 0.5
    np.testing.assert_allclose(
        fit["n_crit"].n_crit, 300 * fit["n_crit"].other ** exponent, rtol=0.15
    )
    # A fixed level instead: the step reaches 0.08 at n = n0 (0.1 / 0.08 - 1)^(-1/3) = 4^(1/3) n0.
    fixed = boundary_fit(pd.DataFrame(rows), "other", n_boot=0, level=0.08)
    assert fixed["level"] == 0.08 and fixed["slope"] == pytest.approx(exponent, abs=0.15)
    np.testing.assert_allclose(
        fixed["n_crit"].n_crit, 4 ** (1 / 3) * 300 * fixed["n_crit"].other ** exponent, rtol=0.15
    )


def _two_point_spec(folder: Path) -> Path:
    """A sweep file "two": SMALL at n_st = 8 (coefficient form) and 80 (dense), 2 seeds each."""
    spec = folder / "two.toml"
    spec.write_text(to_toml({**SMALL, "name": "two", "steps": 12}) + "\n[grid]\nn_st = [8, 80]\n")
    return spec


def test_a_bench_stopped_in_a_bucket_keeps_the_buckets_it_finished(tmp_path, monkeypatch):
    """`w2sjax bench` writes bench.json after every bucket, so a bench stopped inside its second
    bucket (Ctrl-C; a timeout's signal alike) leaves the first on disk. The measurements are
    stand-ins: this is about what reaches the file."""
    shape = Shape.of(small_config())
    started = []

    def engine(n_st, *args, **kwargs):
        started.append(n_st)
        if len(started) == 2:
            raise KeyboardInterrupt
        return bench_timing.EngineTiming(shape, 2, 1.0, 0.5, 0.5, 0.1)

    monkeypatch.setitem(bench.SIZES, "cpu", ((75, 500), *bench.SIZES["cpu"][1:]))
    monkeypatch.setattr(bench, "engine", engine)
    monkeypatch.setattr(bench, "matmul_ceiling", lambda *a, **k: 1e11)
    monkeypatch.setattr(bench, "shape_ceiling", lambda *a, **k: 5e10)
    monkeypatch.setattr(bench, "jax_per_run", lambda *a: 100.0)
    assert main(["bench", "--sizes", "cpu", "--no-torch", "--out", str(tmp_path)]) == 130
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert started == [75, 500] and [b["n_st"] for b in saved["buckets"]] == [75]
    assert saved["repeats"] == 5 and saved["buckets"][0]["engine_s"] == 0.5


def test_the_loops_run_only_where_they_fit(monkeypatch):
    """The per-run loops hold every noise coordinate: where that would pass the memory budget
    (the default sweep's d = 10^6) they are not run, and the log says so, rather than the
    process being killed for memory."""
    monkeypatch.setattr(bench_timing, "jax_per_run", lambda n, d, m, steps: 1000.0)
    monkeypatch.setattr(bench_timing, "torch_per_run", lambda n, d, m, steps: 500.0)
    budget, said = bench_timing.loop_bytes(128, 10**6, 20), []
    assert loop_rates((128, 10**6, 20), 10, True, budget, said.append) == (1000.0, 500.0)
    assert loop_rates((128, 10**6, 20), 10, False, budget, said.append) == (1000.0, None)
    assert said == []
    assert loop_rates((2048, 10**6, 20), 10, True, budget, said.append) == (None, None)
    assert len(said) == 1 and "n_st=2048 d=1000000: per-run loops not run" in said[0], said


@pytest.mark.slow  # the bench's own accounting, 22 s of compiles: `make test-slow`
def test_sweep_bench_times_every_run_against_the_loops(tmp_path, monkeypatch):
    # Fixed loop rates: 1000 run-steps/s for the JAX loop; PyTorch 500 at n_st = 8, absent at 80.
    monkeypatch.setattr(bench_timing, "jax_per_run", lambda n, d, m, steps: 1000.0)
    monkeypatch.setattr(
        bench_timing, "torch_per_run", lambda n, d, m, steps: 500.0 if n == 8 else None
    )
    sweep = load_sweep(_two_point_spec(tmp_path))
    keep = tmp_path / "kept"
    result = sweep_bench(sweep, keep=keep, log=lambda *_: None)
    assert result["runs"] == 4 and result["diverged"] == 0 and result["engine_s"] > 0
    assert [(b["n_st"], b["form"], b["runs"], b["steps"]) for b in result["buckets"]] == [
        (8, "coef", 2, 12),
        (80, "dense", 2, 12),
    ]
    assert [b["baseline_s"] for b in result["buckets"]] == [2 * 12 / 1000.0] * 2
    assert [b["torch_s"] for b in result["buckets"]] == [2 * 12 / 500.0, None]
    assert result["baseline_s"] == pytest.approx(4 * 12 / 1000.0)
    assert result["torch_s"] is None and result["speedup_over_torch"] is None
    assert result["speedup_over_baseline"] == pytest.approx(0.048 / result["engine_s"])
    runs, _ = load(keep / "two")  # --keep: the timed sweep's tables stay, complete
    assert sorted(runs.n_st) == [8, 8, 80, 80]
    with pytest.raises(ConfigError, match="--keep: .*two exists"):
        sweep_bench(sweep, keep=keep, log=lambda *_: None)


@pytest.mark.parametrize(
    "args, field",
    [
        (["--sizes", "none"], "--sizes none"),
        (["--sweep", "missing.toml"], "missing.toml"),
        (["--keep", "."], "--keep"),
        (["--seeds", "3"], "--seeds"),
        (["--profile"], "--profile"),
        (["--repeats", "0"], "--repeats"),
        (["--sweep", "{spec}", "--keep", "{tmp}"], "--keep"),
        (["--sweep", "{spec}", "--keep", "{tmp}/blocker/x"], "--keep"),
        (["--out", "{tmp}/blocker"], "--out"),
    ],
)
def test_bench_rejects_bad_input_before_compute(args, field, tmp_path, capsys):
    spec = _two_point_spec(tmp_path)
    (tmp_path / "two").mkdir()  # "--keep {tmp}": a folder that already holds the sweep
    (tmp_path / "blocker").write_text("a file where a folder should be")
    assert main(["bench", *(a.format(tmp=tmp_path, spec=spec) for a in args)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]


def test_bad_bench_input_creates_no_folder(tmp_path, monkeypatch, capsys):
    """Refused input leaves no trace: not the default --out (results/bench under the working
    folder, which a run of the suite used to leave behind), not --keep."""
    spec = _two_point_spec(tmp_path)
    (tmp_path / "two").mkdir()  # the sweep's folder under --keep: refused
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["bench", "--sweep", str(spec), "--keep", str(tmp_path)]) == 2
    assert main(["bench", "--sweep", str(spec), "--keep", "new/keep", "--seeds", "0"]) == 2
    assert list(work.iterdir()) == []
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


@pytest.mark.slow  # the bench's profile, 45 s of compiles: `make test-slow`
def test_the_profile_times_the_training_simulate_does():
    """bench --profile's nested programs are prefixes of simulate's: the state its steps stage
    reaches, for the student and for its ceiling, records what simulate records at the last
    step; every phase is timed."""
    from w2sjax.bench.profile import _stages, profile_chunk
    from w2sjax.engine.simulate import simulate
    from w2sjax.engine.train import prepare_run

    config = small_config(steps=30, ceiling=True)
    runs = [(config, seed) for seed in range(2)]
    shape, params = Shape.of(config), stack_params(runs)
    states, _ = _stages(shape)[3](params)  # each pass's state, and begin's Fixed
    _, per_step = simulate(shape, params)
    # the student's loss and signal coefficient move every step; the ceiling keeps accuracies
    columns = ({"train_loss": "train_loss", "gmu_own": "gmu_own"},
               {"test_acc": "ceiling_test_acc", "val_acc": "ceiling_val_acc"})  # fmt: skip
    for pass_index, names in enumerate(columns):
        for run in range(2):
            prepared = prepare_run(shape, jax.tree_util.tree_map(lambda a, r=run: a[r], params))
            labels = prepared.fixed.passes[pass_index]
            state = jax.tree_util.tree_map(lambda a, r=run: a[r], states[pass_index])
            recorded = prepared.rec(labels)(prepared.loop(labels).views(state))
            for name, column in names.items():
                expected = float(per_step[column][run, -1])
                assert float(recorded[name]) == pytest.approx(expected, rel=1e-4)
    phases = profile_chunk(shape, runs, repeats=1)
    assert all(np.isfinite(list(dataclasses.asdict(phases).values())))


def test_bench_fills_the_device_like_a_sweep_chunk():
    shape = Shape.of(build({"d": 64, "n_st": 8, "m": 4, "n_test": 500, "log_points": 3}))
    per_run = bytes_per_run(shape)
    fits = [bench_timing.fill_runs(shape, k * per_run) for k in (3, 100, 10**6)]
    assert fits == [bench_timing.MIN_RUNS, 100, bench_timing.FILL_RUNS]


def test_the_over_d_table_measures_only_what_fits():
    from w2sjax.bench.dims import DIMS, KINDS, N_ST, Case, markdown, plan_case

    at_1e8 = plan_case("reduced", 2000, 10**8)
    assert isinstance(at_1e8, Case) and at_1e8.runs >= 1  # reduced: the size of d = 10^4's
    assert plan_case("reduced", 2000, 10**4) == at_1e8._replace(d=10**4)
    assert plan_case("full", 2000, 10**8).startswith("n/a (one run needs")
    assert plan_case("torch", 2000, 10**8).startswith("n/a (patches need")
    rows = [
        {"kind": k, "n_st": n, "d": d, "run_steps_per_s": 1234.5, "peak_rss_gib": 1.25}
        for n in N_ST
        for d in DIMS
        for k in KINDS
    ]
    rows[1] = {**rows[1], "skipped": "n/a (one run needs 9 GiB)"}
    table = markdown(rows).splitlines()
    assert len(table) == 2 + len(N_ST) * len(DIMS)
    assert (
        table[2] == "| 75 | 10^4 | 1,234 (1.2 GiB) | n/a (one run needs 9 GiB) | 1,234 (1.2 GiB) |"
    )


def test_final_values_and_the_snr_line_of_an_accuracy():
    """with_final reads each run's last logged step; snr_threshold on the accuracy itself (not
    its gain) puts C between the two benign_snr values where it jumps."""
    runs = pd.DataFrame(
        {"run_id": ["a", "b", "c", "d"], "benign_snr": [0.5, 2.0, 8.0, 32.0]}
        | {"weak_test_acc": [0.9, 0.5, 0.9, 0.5]}
    )
    steps = pd.DataFrame(
        {"run_id": list("aabbccdd"), "step": [0, 9] * 4}
        | {"test_acc_hard": [0.5, 0.55, 0.5, 0.6, 0.5, 0.95, 0.5, 0.99]}
    )
    final = with_final(runs, steps, ["test_acc_hard"])
    assert list(final.final_test_acc_hard) == [0.55, 0.6, 0.95, 0.99]
    assert snr_threshold(final, "final_test_acc_hard", gain=False) == pytest.approx(4.0)
    # Its gain over the (made-up) teacher jumps elsewhere: between 0.5 and 2.
    assert snr_threshold(final, "final_test_acc_hard") == pytest.approx(1.0)
    # a column the runs table has already (final_test_acc) is read again from the steps
    again = with_final(final.assign(final_test_acc_hard=0.0), steps, ["test_acc_hard"])
    assert list(again.final_test_acc_hard) == [0.55, 0.6, 0.95, 0.99]


def test_heatmaps_of_a_sweep_without_hard_only_samples(tmp_path):
    """p_h = 0 (the label-noise setting): no hard-only accuracy to draw, so the hard-only heatmap
    is skipped (it crashed the sweep after its tables were written); the accuracy heatmap is
    drawn, on log axes for a sqrt(2) grid."""
    from w2sjax.analysis.plots import _is_geometric, hard_heatmap, phase_heatmap

    cells = [(mu, d) for mu in (2.0, 2.83, 4.0) for d in (100, 1000)]
    runs = pd.DataFrame(
        {"run_id": [f"r{i}" for i in range(6)], "mu_norm": [c[0] for c in cells]}
        | {"d": [c[1] for c in cells], "final_test_acc": [0.9, 0.6, 1.0, 0.7, 1.0, 0.9]}
        | {"weak_test_acc": [0.9] * 6, "benign_snr": [0.0] * 6}
    )
    steps = pd.DataFrame({"run_id": runs.run_id, "step": 10, "test_acc_hard": np.nan})
    assert hard_heatmap(runs, steps, "mu_norm", "d", tmp_path / "hard.png")[0] is None
    assert not (tmp_path / "hard.png").exists()
    path = phase_heatmap(runs, "mu_norm", "d", tmp_path / "acc.png", gain=False)
    assert path.stat().st_size > 1000
    assert _is_geometric(np.array([2.0, 2.83, 4.0])) and not _is_geometric(np.array([1.0, 2, 3]))
    assert not _is_geometric(np.array([4.0, 5, 6])) and not _is_geometric(np.array([100, 150, 200]))


def test_the_grid_boundary_interval_keeps_replicates_that_do_not_cross():
    """One row crosses between the grid's last two n_st values with seed noise of the gain's own
    size: many bootstrap replicates stay below the level everywhere. They are censored at +inf,
    not dropped, so that row's interval ends at inf (dropping them, the interval ended inside
    the grid); the well-resolved row keeps a finite interval around its crossing."""
    rng = np.random.default_rng(3)
    n_values = [100, 200, 400, 800]
    rows = []
    for other, means in ((1.0, [0.0, 0.1, 0.1, 0.1]), (2.0, [0.0, 0.0, 0.0, 0.052])):
        for n, mean in zip(n_values, means, strict=True):
            for seed in range(6):
                noise = rng.normal(0, 0.03) if other == 2.0 else rng.normal(0, 0.002)
                rows.append({"n_st": n, "other": other, "seed": seed} | {"weak_test_acc": 0.8}
                            | {"final_test_acc": 0.8 + mean + noise})  # fmt: skip
    fit = boundary_fit(pd.DataFrame(rows), "other", n_boot=400, level=0.05)
    table = fit["n_crit"].set_index("other")
    assert 100 < table.n_crit_lo[1.0] <= table.n_crit[1.0] <= table.n_crit_hi[1.0] < 200
    assert 400 <= table.n_crit[2.0] <= 800 and table.n_crit_hi[2.0] == np.inf
    assert np.isfinite(fit["slope"]) and fit["slope_hi"] >= fit["slope"] >= fit["slope_lo"]
    # a cell past the grid whose seeds all diverged (NaN) says nothing: the replicates that do
    # not cross stay censored above (+inf), not below (-inf)
    extra = [r | {"n_st": 1600, "final_test_acc": np.nan} for r in rows if r["n_st"] == 800]
    with_nan = boundary_fit(pd.DataFrame(rows + extra), "other", n_boot=400, level=0.05)
    table = with_nan["n_crit"].set_index("other")
    assert 400 <= table.n_crit_lo[2.0] and table.n_crit_hi[2.0] == np.inf
