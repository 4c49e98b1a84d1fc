"""Figures from loaded tables (matplotlib, no display needed): learning and coefficient curves per
grid point with seed bands, and phase heatmaps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from w2sjax.analysis.crossings import snr_threshold  # noqa: E402
from w2sjax.analysis.summary import w2s_gain, with_final  # noqa: E402

if TYPE_CHECKING:  # collapse.py (and scipy with it) loads only for the collapse figure
    from w2sjax.analysis.collapse import Collapse, Probes

LEARNING = {
    "test_acc": "test",
    "test_acc_easy": "test (easy-only)",
    "test_acc_hard": "test (hard-only)",
    "test_acc_both": "test (both-signal)",
    "train_acc_pseudo": "train vs pseudo-labels",
    "flip_corrected": "flip_corrected",
    "flipped_grad_share": "flipped_grad_share",
}
COEFFICIENTS = {
    "gmu_own": "gmu_own",
    "gnu_pos": "gnu_pos",
    "gnu_neg": "gnu_neg",
    "rho_bar_mean_clean": "rho_bar (clean)",
    "rho_bar_mean_flipped": "rho_bar (flipped)",
}


def points(runs: pd.DataFrame, axes: list[str]) -> Iterator[tuple[str, pd.DataFrame]]:
    """(label, runs of the point) for each grid point, in axis order."""
    if not axes:
        yield "all runs", runs
        return
    for value, group in runs.groupby(axes, sort=True):
        values = value if isinstance(value, tuple) else (value,)
        yield (
            ", ".join(
                f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}"
                for a, v in zip(axes, values, strict=True)
            ),
            group,
        )


def _panels(count: int, title: str):
    cols = min(count, 4)
    rows = -(-count // cols)
    fig, axs = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharex=True
    )
    for ax in axs.flat[count:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axs.flat[:count])


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _band(ax, curve: pd.DataFrame, column: str, label: str, log_y: bool = False) -> bool:
    """Seed-mean curve of `column` with a mean +- 1 sd band over seeds (NaN rows, e.g. after a
    divergence, left out). Returns whether anything was drawn."""
    stats = curve.groupby("step")[column].agg(["mean", "std"])
    stats = stats[stats["mean"].notna()].fillna(0.0)
    if log_y:
        stats = stats[stats["mean"] > 0]
    x = stats.index.to_numpy()
    (line,) = ax.plot(x, stats["mean"], label=label, lw=1.4)
    ax.fill_between(
        x,
        stats["mean"] - stats["std"],
        stats["mean"] + stats["std"],
        color=line.get_color(),
        alpha=0.2,
        lw=0,
    )
    return len(stats) > 0


def curves(
    runs: pd.DataFrame,
    steps: pd.DataFrame,
    axes: list[str],
    path: str | Path,
    kind: str = "learning",
) -> Path:
    """One panel per grid point. kind "learning": test accuracy (all, and per category), train
    accuracy vs pseudo-labels, flip_corrected and flipped_grad_share, with the teacher's accuracy
    as a dashed line (a column that tables of an earlier version lack is left out). kind
    "coefficients": gmu_own, gnu_pos, gnu_neg, rho_bar on clean and flipped samples (log y).
    Steps on a symlog axis (step 0 included)."""
    columns = LEARNING if kind == "learning" else COEFFICIENTS
    groups = list(points(runs, axes))
    title = "learning curves" if kind == "learning" else "signal and noise coefficients"
    fig, panels = _panels(len(groups), f"{title} (mean and +-1 sd over seeds)")
    for ax, (label, point) in zip(panels, groups, strict=True):
        curve = steps[steps.run_id.isin(point.run_id)]
        drawn = [
            _band(ax, curve, c, name, log_y=kind != "learning")
            for c, name in columns.items()
            if c in curve
        ]
        if kind == "learning":
            ax.axhline(point.weak_test_acc.mean(), color="k", ls="--", lw=1, label="weak model")
            ax.set_ylim(0, 1.02)
        elif any(drawn):
            ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step")
    panels[0].legend(fontsize=7)
    return _save(fig, Path(path))


def _is_geometric(values: np.ndarray) -> bool:
    if len(values) < 3 or np.any(values <= 0):
        return False
    ratios = values[1:] / values[:-1]
    # steps below 1.5 must be equal to 2%: a linear grid's ratios differ by more ([4, 5, 6]: 4%)
    rtol = 0.15 if ratios[0] > 1.5 else 0.02
    return bool(np.allclose(ratios, ratios[0], rtol=rtol) and ratios[0] > 1.2)


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around sorted centres: midpoints (geometric on a log axis)."""
    v = np.log(values) if log else values.astype(float)
    if len(v) == 1:
        mids = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        inner = (v[1:] + v[:-1]) / 2
        mids = np.concatenate([[2 * v[0] - inner[0]], inner, [2 * v[-1] - inner[-1]]])
    return np.exp(mids) if log else mids


def phase_heatmap(
    runs: pd.DataFrame,
    x: str,
    y: str,
    path: str | Path,
    metric: str = "final_test_acc",
    snr_c: float | None = None,
    gain: bool = True,
    vrange: tuple[float, float] = (0.5, 1.0),
) -> Path:
    """Heatmap over the grid axes x and y of the seed mean of (metric - weak test accuracy), or of
    `metric` itself when not `gain` (coloured over vrange: an accuracy's 0.5 to 1 by default; a
    PGR's 0 to 1), each cell annotated;
    an axis whose values are geometric is drawn on a log scale. With snr_c, the contour
    benign_snr = snr_c is drawn (from the cells' benign_snr): Theorem 3.4's line."""
    values = runs.assign(value=w2s_gain(runs, metric) if gain else runs[metric])
    grid = values.pivot_table(index=y, columns=x, values="value", aggfunc="mean").sort_index()
    xs, ys = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
    log_x, log_y = _is_geometric(xs), _is_geometric(ys)
    fig, ax = plt.subplots(figsize=(1.0 * len(xs) + 3.0, 0.7 * len(ys) + 2.2))
    limit = max(float(np.nanmax(np.abs(grid.to_numpy()))), 1e-3)
    colours = (
        dict(cmap="RdBu", vmin=-limit, vmax=limit)
        if gain
        else dict(cmap="RdYlGn", vmin=vrange[0], vmax=vrange[1])
    )
    mesh = ax.pcolormesh(_edges(xs, log_x), _edges(ys, log_y), grid.to_numpy(), **colours)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        text = f"{value:+.3f}" if gain else f"{value:.3f}"
        ax.text(xs[j], ys[i], text, ha="center", va="center", fontsize=7)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.set_yticks(ys, [f"{v:g}" for v in ys])
    ax.minorticks_off()
    if snr_c is not None and np.isfinite(snr_c):
        snr = runs.pivot_table(index=y, columns=x, values="benign_snr", aggfunc="mean")
        snr = snr.sort_index().to_numpy()
        # a contour needs a grid of at least 2 x 2 (an axis may hold one value)
        if min(snr.shape) >= 2 and np.nanmin(snr) < snr_c < np.nanmax(snr):
            ax.contour(
                xs,
                ys,
                np.log(snr),
                levels=[np.log(snr_c)],
                colors="k",
                linewidths=1.5,
                linestyles="solid",
            )
        ax.plot([], [], "k-", label=f"benign_snr = {snr_c:.3g} (fitted)")
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    seeds = runs.groupby([x, y]).size().min()
    what = f"{metric} - weak_test_acc" if gain else metric
    ax.set_title(f"{what} (mean of {seeds} seeds)", fontsize=10)
    fig.colorbar(mesh, ax=ax)
    return _save(fig, Path(path))


def hard_heatmap(
    runs: pd.DataFrame, steps: pd.DataFrame, x: str, y: str, path: str | Path
) -> tuple[Path | None, float]:
    """The heatmap of final hard-only test accuracy (Theorem 3.4's order parameter) over x and y,
    with the benign_snr = C line fitted to that accuracy itself; returns the figure and C, or
    (None, NaN) where no test sample is hard-only (p_h = 0: the accuracy is NaN everywhere)."""
    hard = with_final(runs, steps, ["test_acc_hard"])
    if hard["final_test_acc_hard"].isna().all():
        return None, float("nan")
    c = snr_threshold(hard, "final_test_acc_hard", gain=False)
    return phase_heatmap(hard, x, y, path, "final_test_acc_hard", snr_c=c, gain=False), c


def boundary_figure(
    probes: pd.DataFrame,
    table: pd.DataFrame,
    axis: str,
    others: list[str],
    metric: str,
    level: float,
    path: str | Path,
) -> Path:
    """A boundary search on the plane (first other axis, searched axis), both log: every probe
    coloured by its seed mean of `metric`, the n_crit found with its 95% interval, and the
    theory's line benign_snr = C through the median benign_snr at the boundary (slope -2 against
    p_b, +4 against sigma_p, ... when the searched axis is n_st)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    x = others[0] if others else None
    cells = probes.groupby([*others, axis])[metric].mean().reset_index()
    xs = cells[x] if x else np.ones(len(cells))
    dots = ax.scatter(xs, cells[axis], c=cells[metric], cmap="RdYlGn", vmin=0, vmax=1, s=28)
    found = table[table.status == "found"]  # found rows carry n_crit and benign_snr
    if len(found):  # else nothing to draw or label (matplotlib warns on an empty legend)
        fx = found[x] if x else np.ones(len(found))
        err = np.abs(found[["n_crit_lo", "n_crit_hi"]].to_numpy().T - found.n_crit.to_numpy())
        ax.errorbar(fx, found.n_crit, yerr=err, fmt="ko-", lw=1.4, label=f"{metric} = {level:g}")
        if axis == "n_st":
            c = float(found.benign_snr.median())
            line = found.n_crit * c / found.benign_snr  # benign_snr is linear in n_st
            ax.plot(fx, line, "b--", lw=1, label=f"benign_snr = {c:.3g}")
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x or "")
    ax.set_ylabel(axis)
    ax.set_title(f"boundary of {metric} (probes: seed means)", fontsize=10)
    fig.colorbar(dots, ax=ax)
    return _save(fig, Path(path))


def collapse_figure(probes: Probes, result: Collapse, metric: str, path: str | Path) -> Path:
    """The data collapse (collapse.py): every probe's seed mean of `metric` (with its standard
    error) against the theorem's variable benign_snr = n_st p_b^2 q^2, and against the fitted
    n_st p_b^alpha q^beta, coloured by the probe's curve (p_b, q)."""
    from w2sjax.analysis.collapse import means

    mean, se = means(probes.values)
    fig, axs = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    groups = sorted(set(probes.group))
    colours = plt.cm.viridis(np.linspace(0, 0.95, len(groups)))
    laws = {"theorem: benign_snr": result.theorem, "fitted": result.fitted}
    for ax, (name, law) in zip(axs, laws.items(), strict=True):
        a, b = (0.0 if np.isnan(v) else v for v in (law.alpha, law.beta))
        x = np.exp(probes.log_n + a * probes.log_p_b + b * probes.log_q)
        for g, colour in zip(groups, colours, strict=True):
            at = probes.group == g
            ax.errorbar(x[at], mean[at], yerr=se[at], fmt="o", ms=3, color=colour, label=g)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # spans under a decade
        ax.set_xlabel(f"n_st p_b^{a:.2f} q^{b:.2f}")
        ax.set_title(f"{name}; spread {law.spread:.2f} seed errors", fontsize=10)
    axs[0].set_ylabel(f"{metric} (seed mean)")
    axs[1].legend(fontsize=6, ncol=2)
    return _save(fig, Path(path))
