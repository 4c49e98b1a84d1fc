"""The data collapse (analysis/collapse.py) on synthetic probes drawn from a known law: the fit
recovers the planted exponents, and the wrong law leaves the curves apart."""

import numpy as np
import pandas as pd
import pytest

from w2sjax.analysis.collapse import (
    THEOREM,
    Probes,
    collapse,
    collapse_table,
    law_spread,
    probes_of,
)
from w2sjax.analysis.levels import LEVELS, crossings, exponents
from w2sjax.config.fields import ConfigError
from w2sjax.engine.theory import q_of

PLANTED = (1.7, 1.4)  # the exponents our searches measured, not the theorem's (2, 2)
SEEDS, NOISE = 8, 0.04


def synthetic(law: tuple[float, float], seed: int = 0) -> Probes:
    """Probes on 3 p_b x 3 q curves, 13 n_st each around the curve's crossing, whose seeds are
    0.5 + 0.5 sigmoid(2 (x - 2.4)) + N(0, NOISE^2), x = log n_st + alpha log p_b + beta log q.
    Each curve's lattice starts at an offset of its own: curves sharing one lattice of x would
    also line up under laws that move them by whole lattice steps."""
    rng = np.random.default_rng(seed)
    alpha, beta = law
    rows = []
    for p_b in (0.2, 0.4, 0.6):
        for q in (0.1, 0.2, 0.4):
            shift = alpha * np.log(p_b) + beta * np.log(q)
            for log_n in 2.4 - shift + rng.uniform(0, 0.5) + np.linspace(-3, 3, 13):
                rows.append((log_n, np.log(p_b), np.log(q), log_n + shift))
    log_n, log_p, log_q, x = map(np.array, zip(*rows, strict=True))
    clean = 0.5 + 0.5 / (1 + np.exp(-2 * (x - 2.4)))
    values = clean[:, None] + NOISE * rng.standard_normal((len(x), SEEDS))
    group = np.array([f"{p:.2f} {v:.2f}" for p, v in zip(log_p, log_q, strict=True)])
    return Probes(log_n, log_p, log_q, values, group)


def test_the_fit_recovers_the_planted_law_and_the_wrong_law_spreads():
    result = collapse(synthetic(PLANTED), n_boot=30)
    fitted = result.fitted
    assert abs(fitted.alpha - PLANTED[0]) < 0.15 and abs(fitted.beta - PLANTED[1]) < 0.15
    assert 0.6 < fitted.spread < 1.2  # on one curve up to the seeds' noise
    table = collapse_table(result).set_index("law")
    for axis, true in zip(("alpha", "beta"), PLANTED, strict=True):
        assert table.loc["fitted", f"{axis}_lo"] <= true <= table.loc["fitted", f"{axis}_hi"]
    # the control: the theorem's law on these probes leaves the curves seed errors apart
    assert result.theorem.spread > 3 * fitted.spread
    assert table.loc["theorem", "spread_lo"] > table.loc["fitted", "spread_hi"]
    assert table.loc["fitted", "edge"] == 0  # no replicate stopped at its search's edge


def test_probes_a_law_lines_up_share_one_value_of_the_curve():
    """p_b 0.3 and 0.6 under alpha = 2 are a factor 4 in n_st, whole steps of the lattice
    16 x 2^(k/2): probes land on the same x. Ordered among themselves by round-off (or by a law
    a hair away), they made the spread jump at alpha = 2; pooled, it is the same on both sides."""
    rng = np.random.default_rng(3)
    log_n = np.log(np.round(16 * 2 ** (np.arange(12) / 2)))
    rows = [(n, np.log(p)) for p in (0.3, 0.6) for n in log_n]
    log_n, log_p = map(np.array, zip(*rows, strict=True))
    x = log_n + 2 * log_p
    values = 0.5 + 0.5 / (1 + np.exp(-2 * (x - x.mean())))
    values = values[:, None] + 0.05 * rng.standard_normal((len(x), 8))
    probes = Probes(log_n, log_p, np.zeros_like(log_n), values, np.array(["g"] * len(x)))
    near = [law_spread(probes, a, 0.0).spread for a in (2.0, 2 - 1e-7, 2 + 1e-7, 2.002, 1.998)]
    assert len(np.unique(np.round(x, 9))) < len(x)  # the ties are there
    assert np.ptp(near) < 1e-9


def test_probes_drawn_from_the_theorems_law_collapse_under_it():
    """The same fit on probes of the theorem's own law: its spread is the fitted one's."""
    result = collapse(synthetic(THEOREM, seed=1), n_boot=2)
    assert abs(result.fitted.alpha - 2) < 0.15 and abs(result.fitted.beta - 2) < 0.15
    assert result.theorem.spread < 1.2 * result.fitted.spread + 0.1


def test_probes_of_a_runs_table_group_seeds_and_read_q():
    """Runs grouped into probes by their config (the seed aside), q = ||nu||^2 / (sigma_p^2
    sqrt d), and an exponent along an axis that does not vary is not fitted."""
    runs = pd.DataFrame(
        [
            {
                "n_st": n,
                "p_b": 0.3,
                "nu_norm": nu,
                "sigma_p": 1.0,
                "d": 10**6,
                "seed": s,
                "final_test_acc_hard": 0.5 + 0.4 * (n > 100) + 0.01 * s,
            }  # fmt: skip
            for n in (50, 200, 800)
            for nu in (10.0, 20.0)
            for s in range(3)
        ]
    )
    probes = probes_of(runs, "final_test_acc_hard")
    assert probes.values.shape == (6, 3)
    assert sorted(np.round(np.exp(probes.log_q), 6)) == [0.1] * 3 + [0.4] * 3
    assert q_of(20.0, 1.0, 10**6) == pytest.approx(0.4)
    np.testing.assert_allclose(np.sort(probes.values.mean(1)), [0.51] * 2 + [0.91] * 4)
    result = collapse(probes, n_boot=2)
    assert np.isnan(result.fitted.alpha) and not np.isnan(result.fitted.beta)
    with pytest.raises(ConfigError, match="--metric: the runs have no column 'bogus'"):
        probes_of(runs, "bogus")
    # a diverged seed (NaN) is left out of its probe, a probe of NaN seeds altogether
    holed = runs.copy()
    holed.loc[
        (holed.n_st == 50) & (holed.nu_norm == 10.0) & (holed.seed == 1), "final_test_acc_hard"
    ] = np.nan
    holed.loc[(holed.n_st == 800) & (holed.nu_norm == 20.0), "final_test_acc_hard"] = np.nan
    packed = probes_of(holed, "final_test_acc_hard")
    assert packed.values.shape == (5, 3) and np.isnan(packed.values).sum() == 1
    assert np.isfinite(packed.values[:, :2]).all()  # finite seeds first: resampling draws them
    # runs that differ in more than the law's fields are not one set of probes
    with pytest.raises(ConfigError, match=r"the runs differ in steps \(300, 3000\)"):
        probes_of(runs.assign(steps=np.where(runs.seed == 0, 300, 3000)), "final_test_acc_hard")
    with pytest.raises(ConfigError, match="must vary p_b or q"):
        collapse(probes_of(runs[runs.nu_norm == 10.0], "final_test_acc_hard"))


def test_crossings_at_every_level_give_the_planted_exponents():
    """Each curve's crossing of 0.75, 0.85 and 0.95 moves as n_st p_b^1.7 q^1.4 = const says:
    d log n_crit / d log p_b = -1.7 and d log n_crit / d log q = -1.4, jointly at every level
    and one axis at a time at 0.75 and 0.85; the theorem's -2 lies outside the joint intervals.
    (At 0.95, near the curves' ceiling, a noisy curve's first crossing comes early, and a local
    exponent from three curves reads up to 0.25 shallow.)"""
    found = crossings(synthetic(PLANTED), LEVELS, n_boot=20)
    assert found.table.n_crit.notna().all() and len(found.table) == 9 * len(LEVELS)
    table = exponents(found)
    assert (table.not_crossing == 0).all() and (table[table.fit == "all curves"].curves == 9).all()
    for (fit, axis), rows in table.groupby(["fit", "axis"]):
        true = -PLANTED[0] if axis == "p_b" else -PLANTED[1]
        rows = rows if fit == "all curves" else rows[rows.level < 0.9]
        assert np.allclose(rows.slope, true, atol=0.2), (fit, axis)
    joint = table[table.fit == "all curves"]
    assert (joint.hi < -1.0).all() and (joint.lo > -2.0).all()
    assert set(table.fit) >= {"q = 0.1", "p_b = 0.2, q 0.1-0.4"}
    # a curve held below 0.95 stays out of that level's fits, and says so
    cut = synthetic(PLANTED)
    curve = (cut.log_p_b == cut.log_p_b.min()) & (cut.log_q == cut.log_q.min())
    cut = cut._replace(values=np.where(curve[:, None], np.minimum(cut.values, 0.9), cut.values))
    joint = exponents(crossings(cut, LEVELS, n_boot=5)).query("fit == 'all curves'")
    assert list(joint.not_crossing.unique()) == [0, 1] and joint.curves.min() == 8
