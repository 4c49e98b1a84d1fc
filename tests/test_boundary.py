"""`w2sjax boundary`: the bisection on synthetic monotone metrics with a known crossing and a
known slope, its lattice and fits, bad requests, and one small real search."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import SWEEP_TEXT

import w2sjax
from w2sjax.analysis.bisect import bisect, lattice, n_crit, replicates
from w2sjax.analysis.boundary import check_request
from w2sjax.analysis.crossings import interval, slopes
from w2sjax.cli.main import main
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import sweep_from


def test_the_lattice_is_fixed_geometric_and_ends_at_the_bracket():
    values = lattice(10, 1000, 1.1, integer=False)
    assert values[0] == pytest.approx(10) and values[-1] == pytest.approx(1000)
    assert max(np.diff(np.log(values))) <= math.log(1.1) + 1e-12
    assert lattice(10, 1000, 1.1, False) == values  # the same probes on every rerun
    ints = lattice(10, 40, 1.1, integer=True)
    assert ints == sorted(set(ints)) and ints[0] == 10 and ints[-1] == 40


def _synthetic(points: dict, seeds: int, noise: float, calls: list, falling: bool = False):
    """evaluate() of a metric rising (or falling) in log n through 0.5 at n = points[p]:
    0.5 + 0.4 tanh(log(n / n_crit)) per seed plus a fixed seed offset of size `noise`."""
    offsets = noise * np.linspace(-1, 1, seeds)

    def evaluate(probes):
        calls.append(list(probes))
        out = {}
        for p, k in probes:
            rise = 0.4 * np.tanh(np.log(VALUES[k] / points[p]))
            out[(p, k)] = 0.5 + (-rise if falling else rise) + offsets
        return out

    return evaluate


VALUES = lattice(10, 10000, 1.05, integer=False)


@pytest.mark.parametrize("falling", [False, True])
def test_bisection_finds_a_known_crossing_and_slope(falling):
    truth = {p: 40.0 * p**-2 for p in (0.1, 0.2, 0.4)}  # n_crit ~ p_b^-2, inside the bracket
    truth[1.0] = 5.0  # below the bracket: reported, not an error
    calls: list = []
    found = bisect(list(truth), len(VALUES), 0.5, _synthetic(truth, 4, 0.01, calls, falling))
    assert found[1.0].bracket is None
    crit = {p: n_crit(found[p], VALUES, 0.5) for p in truth}
    for p in (0.1, 0.2, 0.4):
        a, b = found[p].bracket
        assert b == a + 1 and VALUES[b] / VALUES[a] <= 1.05 + 1e-9
        assert crit[p] == pytest.approx(truth[p], rel=0.01)
    # every open bracket of every point in one call per round: the two ends, then ~log2(size)
    assert len(calls) <= 2 + math.ceil(math.log2(len(VALUES)))
    assert len(calls[0]) == 2 * len(truth)  # both ends of every point, in one call
    assert all(len({p for p, _ in c}) == len(c) for c in calls[1:])  # then one probe per point
    fit = slopes({"p_b": np.array([0.1, 0.2, 0.4])}, np.array([crit[p] for p in (0.1, 0.2, 0.4)]))
    assert fit["p_b"] == pytest.approx(-2.0, abs=0.02)


def test_bootstrap_intervals_cover_the_seed_spread():
    truth = {0.2: 1000.0}
    found = bisect([0.2], len(VALUES), 0.5, _synthetic(truth, 8, 0.05, []))
    boots = replicates(found, VALUES, 0.5, 300)
    lo, hi = interval(boots[:, 0])
    assert lo < n_crit(found[0.2], VALUES, 0.5) < hi and hi / lo < 1.6
    exact = bisect([0.2], len(VALUES), 0.5, _synthetic(truth, 8, 0.0, []))
    assert np.ptp(replicates(exact, VALUES, 0.5, 50)) == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(interval(np.full(5, np.nan))).all()


def test_bootstrap_intervals_reach_past_the_final_bracket_and_say_when_censored():
    """Seeds noisy against the bracket's width: replicates land on probes outside the final
    bracket, so the interval is much wider than the bracket (an interval held inside it, the
    ratio 1.05, fails) and still holds the truth; a crossing near the lattice's top end has
    replicates that never cross inside it, and the interval's top is +inf, not a made-up bound."""
    truth = {0.2: 300.0, 0.4: 9000.0}
    found = bisect(list(truth), len(VALUES), 0.5, _synthetic(truth, 8, 0.2, []))
    boots = replicates(found, VALUES, 0.5, 400)
    lo, hi = interval(boots[:, 0])
    assert 1.3 < hi / lo < 2.5 and lo < truth[0.2] < hi
    lo, hi = interval(boots[:, 1])
    assert math.isfinite(lo) and lo < truth[0.4] and hi == math.inf


@pytest.mark.parametrize("falling", [False, True])
def test_diverged_seeds_do_not_censor_a_replicate(falling):
    """The final bracket's upper probe with 3 of its 4 seeds NaN (diverged runs): a replicate
    that draws only those takes its crossing from the next probes instead of reading -inf, and
    the interval still holds the truth; the same for a falling metric."""
    truth = {0.2: 300.0}
    found = bisect([0.2], len(VALUES), 0.5, _synthetic(truth, 4, 0.05, [], falling))[0.2]
    found.values[found.bracket[1]][:3] = np.nan
    boots = replicates({0.2: found}, VALUES, 0.5, 400)
    assert np.isfinite(boots).all()
    lo, hi = interval(boots[:, 0])
    assert lo < truth[0.2] < hi


def test_joint_slopes_in_logs():
    rng = np.random.default_rng(0)
    p_b, sigma_p = rng.uniform(0.1, 0.6, 12), rng.uniform(0.5, 2.0, 12)
    n = 50 * p_b**-2 * sigma_p**4
    fit = slopes({"p_b": p_b, "sigma_p": sigma_p}, n)
    assert fit == pytest.approx({"p_b": -2.0, "sigma_p": 4.0})
    assert math.isnan(slopes({"p_b": p_b[:1]}, n[:1])["p_b"])


SPEC = sweep_from({"data": {"p_e": "rest"}, "grid": {"n_st": [20, 80], "p_b": [0.2, 0.4]}}, "b")


@pytest.mark.parametrize(
    "axis, metric, level, ratio, fragment",
    [
        ("d", "test_acc_hard", 0.8, 1.1, "--axis d: must be a numeric [grid] axis"),
        ("n_st", "bogus", 0.8, 1.1, "--metric bogus: must be a steps column"),
        ("n_st", "test_acc_hard", 1.2, 1.1, "--level 1.2: test_acc_hard lies in [0, 1]"),
        ("n_st", "test_acc_hard", 0.8, 1.0, "--ratio 1: must be > 1"),
    ],
)
def test_bad_requests_fail_in_one_line(axis, metric, level, ratio, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        check_request(SPEC, axis, metric, level, ratio)
    one = sweep_from({"data": {"p_e": "rest"}, "grid": {"n_st": [20], "p_b": [0.2, 0.4]}}, "b")
    with pytest.raises(ConfigError, match="at least two positive numbers"):
        check_request(one, "n_st", "test_acc_hard", 0.8, 1.1)


def test_a_small_search_keeps_its_probes_and_resumes(tmp_path, capsys):
    """Along ||nu|| (a batched field: every probe shares one compiled program, which keeps the
    test short; n_st would compile one per lattice value)."""
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT.replace("n_st = [20, 30]", "nu_norm = [0.5, 8.0]"))
    args = ["boundary", str(spec), "--axis", "nu_norm", "--level", "0.6", "--ratio", "3"]
    args += ["--out", str(tmp_path)]
    assert main([*args, "--quiet"]) == 0
    root = tmp_path / "sw"
    table = pd.read_csv(root / "boundary.csv")
    assert list(table.p_b) == [0.2, 0.4]
    statuses = set(table.status)
    assert "found" in statuses and statuses <= {"found", "does not straddle the level"}
    assert (root / "slopes.csv").exists() and (root / "boundary.png").stat().st_size > 1000
    runs, _ = w2sjax.load(root)
    assert main(["check", str(root)]) == 0  # the outputs are the dataset's own files
    assert main([*args, "--quiet"]) == 0  # a rerun reuses every probe
    assert len(w2sjax.load(root).runs) == len(runs)
    assert pd.read_csv(root / "boundary.csv").equals(table)
    capsys.readouterr()
    assert main([*args[:4], "--level", "2", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # the search's probes collapse (`w2sjax collapse`), and bad input is one line, status 2
    folded = tmp_path / "collapse"
    assert main(["collapse", str(root), "--boot", "2", "--out", str(folded)]) == 0
    assert list(pd.read_csv(folded / "collapse.csv").law) == ["fitted", "theorem"]
    twice = tmp_path / "twice"  # a dataset named twice: its runs count once
    assert main(["collapse", str(root), str(root), "--boot", "2", "--out", str(twice)]) == 0
    assert (twice / "collapse.csv").read_text() == (folded / "collapse.csv").read_text()
    assert (folded / "collapse.png").stat().st_size > 1000
    levels = pd.read_csv(folded / "crossings.csv")  # one n_st: no curve crosses anything
    curves = runs.groupby(["p_b", "nu_norm"]).ngroups
    assert len(levels) == 3 * curves and levels.n_crit.isna().all()
    assert set(pd.read_csv(folded / "exponents.csv").level) <= {0.75, 0.85, 0.95}
    part = tmp_path / "part"  # only the probes of q <= the median q
    q_max = float(levels.q.median())
    args_part = ["collapse", str(root), "--q-max", str(q_max), "--boot", "2", "--out", str(part)]
    assert main(args_part) == 0
    kept = pd.read_csv(part / "crossings.csv").q
    assert (kept <= q_max).all() and 0 < kept.nunique() < levels.q.nunique()
    capsys.readouterr()
    for bad in (["--metric", "bogus"], ["--levels", "0.5,1.5"], ["--q-min", "1e9"]):
        assert main(["collapse", str(root), *bad, "--out", str(folded)]) == 2
    assert main(["collapse", str(tmp_path / "none"), "--out", str(folded)]) == 2
    assert main(["collapse", str(root), "--out", str(spec)]) == 2  # --out is a file
    assert len(capsys.readouterr().err.strip().splitlines()) == 5


def test_the_figure_of_a_search_that_found_nothing_draws_without_warnings(tmp_path):
    """No point straddles the level: the probes are drawn, with no empty legend (matplotlib warns
    on one, and that warning reached every such search's stderr)."""
    from w2sjax.analysis.plots import boundary_figure

    probes = pd.DataFrame({"p_b": [0.3, 0.3, 0.6, 0.6], "n_st": [16, 4096, 16, 4096]})
    probes["test_acc_hard"] = [0.6, 0.64, 0.7, 0.83]
    table = pd.DataFrame({"p_b": [0.3, 0.6], "status": ["does not straddle the level"] * 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = boundary_figure(
            probes, table, "n_st", ["p_b"], "test_acc_hard", 0.85, tmp_path / "b.png"
        )
    assert path.stat().st_size > 0


def test_ctrl_c_in_a_search_keeps_its_probes_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """A round whose sweep was stopped by Ctrl-C ends the search with status 130 and the resume
    command, instead of reading probes that were never run (it used to raise a KeyError)."""
    import dataclasses

    import w2sjax.sweep.execution as engine

    real = engine.execute

    def stopped(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), interrupted=True)

    monkeypatch.setattr(engine, "execute", stopped)
    spec = tmp_path / "sw.toml"
    spec.write_text(SWEEP_TEXT.replace("n_st = [20, 30]", "nu_norm = [0.5, 8.0]"))
    args = ["boundary", str(spec), "--axis", "nu_norm", "--level", "0.6", "--ratio", "3"]
    assert main([*args, "--out", str(tmp_path), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert main(["check", str(tmp_path / "sw")]) == 0
