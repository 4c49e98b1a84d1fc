"""Figures from loaded tables (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def w2s_gain_grid(
    runs: pd.DataFrame, x: str, y: str, metric: str = "final_test_acc"
) -> pd.DataFrame:
    """Mean over seeds of `metric` minus weak_test_acc, as a (y values x x values) table."""
    gain = runs.assign(gain=runs[metric] - runs.weak_test_acc)
    return gain.pivot_table(index=y, columns=x, values="gain", aggfunc="mean").sort_index()


def phase_heatmap(
    runs: pd.DataFrame, x: str, y: str, path: str | Path, metric: str = "final_test_acc"
) -> Path:
    """Heatmap of (metric - weak test accuracy), mean over seeds, over the two axes x and y;
    one cell per grid value, annotated. Returns the written path."""
    grid = w2s_gain_grid(runs, x, y, metric)
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.8 * grid.shape[0] + 1.8))
    limit = max(float(np.nanmax(np.abs(grid.to_numpy()))), 1e-3)
    image = ax.imshow(
        grid.to_numpy(), origin="lower", cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto"
    )
    ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:+.3f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    seeds = runs.groupby([x, y]).size().min()
    ax.set_title(f"{metric} - weak_test_acc (mean of {seeds} seeds)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
