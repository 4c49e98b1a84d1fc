"""`w2sjax report DIR`: a markdown summary of a sweep folder and its figures, under DIR/report/.

Per grid point (summary.md, summary.csv; for a sweep over n_st alone also paper_table.csv, the
layout of the paper's table): mean and 95% interval over seeds of the teacher's accuracy, final,
best (each run's early-stopping step, by its validation set) and oracle test accuracy, train
accuracy vs pseudo-labels and vs truth, flip_corrected at the best step, accuracy by category,
the regime by mechanism (regimes.REGIME_RULE), with `[eval] ceiling` the ceiling's accuracy and
the performance gap recovered (theory.pgr), and with a filters table the filters' sign
agreement (summary.filter_sign_agreement).
Figures: learning and coefficient curves per grid point; for two-axis sweeps, heatmaps of final
and best W2S gain, of final test accuracy and of final hard-only test accuracy (the gains' and
the hard-only one with its fitted benign_snr = C contour), with `[eval] ceiling` of the final
performance gap recovered, and, when one axis is n_st, the phase-boundary fit."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from w2sjax.analysis.crossings import boundary_fit, snr_threshold
from w2sjax.analysis.plots import curves, hard_heatmap, phase_heatmap
from w2sjax.analysis.regimes import REGIME_RULE
from w2sjax.analysis.summary import summary_of
from w2sjax.config.grid import heatmap_axes, load_sweep
from w2sjax.tables.layout import SPEC_FILE
from w2sjax.tables.reading import load, provenance, read_table

COLUMNS = {  # summary column: markdown header
    "weak_test_acc": "weak",
    "final_test_acc": "final test",
    "best_test_acc": "best test",
    "oracle_test_acc": "oracle test",
    "train_acc_pseudo_final": "train vs pseudo (final)",
    "train_acc_pseudo_best": "train vs pseudo (best)",
    "train_acc_true_final": "train vs truth (final)",
    "flip_corrected_best": "flip_corrected (best)",
    # the regime's order parameters (regimes.py)
    "final_test_acc_easy": "easy-only (final)",
    "final_test_acc_hard": "hard-only (final)",
    "final_test_acc_both": "both-signal (final)",
    "best_test_acc_hard": "hard-only (best)",
    # with `[eval] ceiling`: the same student on true labels, and the gap recovered
    "ceiling_test_acc": "ceiling (final)",
    "pgr_final": "PGR (final)",
    "pgr_best": "PGR (best)",
    "filter_sign_agreement": "filter sign agreement",
}


# The layout of the paper's table (issue 4): one row per n_st, accuracies with 95% intervals, the
# category probabilities and accuracies by category, and the regime.
PAPER_COLUMNS = ["n_st", "p_e", "p_h", "p_b", "seeds", "device", "best_step", "regime"] + [
    f"{name}{suffix}"
    for name in (
        "weak_test_acc",
        "final_test_acc",
        "best_test_acc",
        "train_acc_pseudo_final",
        "train_acc_pseudo_best",
        "flip_corrected_best",
        *(f"{w}_test_acc_{c}" for w in ("final", "best") for c in ("easy", "hard", "both")),
    )
    for suffix in ("", "_lo", "_hi")
]


def _cell(row: pd.Series, name: str) -> str:
    return f"{row[name]:.3f} [{row[f'{name}_lo']:.3f}, {row[f'{name}_hi']:.3f}]"


def markdown_table(table: pd.DataFrame, axes: list[str]) -> str:
    """The summary as a markdown table: mean [95% interval] per metric."""
    shown = [c for c in COLUMNS if table[c].notna().any()]  # e.g. no filters table: no agreement
    header = [*axes, "seeds", *(COLUMNS[c] for c in shown), "best step", "regime"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [f"{row[a]:g}" if isinstance(row[a], float) else str(row[a]) for a in axes]
        step = f"{row.best_step:g}" if np.isfinite(row.best_step) else "n/a"
        cells += [str(row.seeds), *(_cell(row, c) for c in shown), step, row.regime]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(path: str | Path, fmt: str = "png") -> Path:
    """Write DIR/report/summary.md, summary.csv and the figures (png or pdf); returns the .md."""
    root = Path(path)
    sweep = load_sweep(root / SPEC_FILE, read_data=False)
    axes = sweep.axes()
    runs, steps = load(root)
    filters = read_table(root, "filters") if (root / "filters").is_dir() else None
    meta = provenance(root)
    out = root / "report"
    out.mkdir(exist_ok=True)
    table = summary_of(runs, steps, filters, axes)
    table.to_csv(out / "summary.csv", index=False)
    if axes == ["n_st"]:
        probs = {p: runs[p].iloc[0] for p in ("p_e", "p_h", "p_b")}  # one value: not an axis
        paper = table.assign(device=meta.get("device_kind", ""), **probs)[PAPER_COLUMNS]
        paper.to_csv(out / "paper_table.csv", index=False)

    figures = [
        curves(runs, steps, axes, out / f"learning_curves.{fmt}", "learning"),
        curves(runs, steps, axes, out / f"coefficient_curves.{fmt}", "coefficients"),
    ]
    sections = []
    if heatmap_axes(axes):
        c = snr_threshold(runs)
        for metric in ("final_test_acc", "best_test_acc"):
            figures.append(
                phase_heatmap(
                    runs,
                    axes[0],
                    axes[1],
                    out / f"phase_{metric.split('_')[0]}_gain.{fmt}",
                    metric,
                    snr_c=c,
                )
            )
        # the accuracy itself (1 - test error), which a teacher-free reading needs
        figures.append(
            phase_heatmap(
                runs, *axes, out / f"phase_final_test.{fmt}", "final_test_acc", gain=False
            )
        )
        if runs.get("pgr_final", pd.Series(dtype=float)).notna().any():
            figures.append(
                phase_heatmap(
                    runs, *axes, out / f"phase_pgr.{fmt}", "pgr_final", gain=False, vrange=(0, 1)
                )
            )
        hard_figure, c_hard = hard_heatmap(runs, steps, *axes, out / f"phase_final_hard.{fmt}")
        hard_text = "no hard-only test samples"
        if hard_figure is not None:
            figures.append(hard_figure)
            hard_text = f"C = {c_hard:.3g} for the final hard-only test accuracy"
        sections.append(
            f"Fitted benign_snr threshold C = {c:.3g} (benign_snr >= C best separates "
            f"grid points whose seed-mean final gain is above half its range); {hard_text} "
            f"(Theorem 3.4's order parameter)."
        )
        if "n_st" in axes:
            other = axes[1 - axes.index("n_st")]
            fit = boundary_fit(runs, other)
            crit = fit["n_crit"].to_string(index=False, float_format=lambda v: f"{v:.4g}")
            if np.isfinite(fit["slope"]):
                slope = (
                    f"has slope {fit['slope']:.2f}, 95% bootstrap interval over seeds "
                    f"[{fit['slope_lo']:.2f}, {fit['slope_hi']:.2f}]"
                )
            else:
                slope = "has no slope: fewer than two values cross inside the n_st grid"
            sections.append(
                f"Phase boundary: n_crit({other}) is the n_st where the seed-mean final gain "
                f"crosses {fit['level']:.4f} (half its range); log n_crit against log {other} "
                f"{slope} (Theorem 3.4: -2 for p_b, +4 for sigma_p).\n\n```\n{crit}\n```"
            )
    text = [
        f"# Sweep report: {sweep.name}",
        "",
        f"Produced by `w2sjax report {root}` on {date.today().isoformat()} from the tables made "
        f"by `w2sjax sweep` (spec: `{root / SPEC_FILE}`, hash {meta.get('spec_hash', '?')}; "
        f"device {meta.get('device_kind', '?')}, jax {meta.get('jax_version', '?')}, w2sjax "
        f"{meta.get('version', '?')}, commit {meta.get('git_commit') or 'unknown'}).",
        "",
        "Mean over seeds [95% t-interval, cut to [0, 1] for accuracies]. Each run is read at "
        "its last step (final) and at its "
        "early-stopping step (best: its first logged step of highest validation accuracy, chosen "
        "without the test set); best step is the median of those steps. Oracle test is each "
        "run's highest test accuracy, the test set choosing its own step: an upper bound.",
        "",
        markdown_table(table, axes),
        "",
        f"Regime rule: {REGIME_RULE}.",
        "",
        *[s + "\n" for s in sections],
        "Figures: " + ", ".join(f"[{f.name}]({f.name})" for f in figures),
        "",
    ]
    md = out / "summary.md"
    md.write_text("\n".join(text))
    return md
