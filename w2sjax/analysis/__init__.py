"""Stage 5, analysis: loaded tables turned into statistics, regimes, boundaries, figures, reports.

- summary.py: seed statistics of each metric at one stated step, with 95% intervals.
- regimes.py: Theorem 3.4's and 3.6's regimes read by their mechanism (`regime`, REGIME_RULE).
- crossings.py: where a gain or metric crosses a level, and the slopes of that boundary.
- bisect.py: the boundary search as a pure function of an `evaluate` callback.
- boundary.py: `w2sjax boundary`: that search run on real sweeps.
- collapse.py: `w2sjax collapse`: the scaling law that puts every probe on one curve.
- levels.py: each curve's crossings of several levels, and their exponents.
- plots.py: learning curves, phase heatmaps, the boundary figure (matplotlib, no display).
- report.py: `w2sjax report DIR`: summary.md, summary.csv, figures.
"""

from w2sjax._lazy import exports

__getattr__, __dir__ = exports(
    __name__,
    {
        "summary_table": "summary",
        "mean_interval": "summary",
        "regime": "regimes",
        "REGIME_RULE": "regimes",
        "boundary_fit": "crossings",
        "snr_threshold": "crossings",
        "run_boundary": "boundary",
        "run_collapse": "collapse",
        "curves": "plots",
        "phase_heatmap": "plots",
        "hard_heatmap": "plots",
        "write_report": "report",
    },
)
