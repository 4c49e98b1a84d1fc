"""The command line's grammar: every subcommand of `w2sjax` and its options (their handlers, in
commands.py and sweep.py, run them). A rejected command line raises UsageError, which
cli.main prints as one line, status 2."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from w2sjax.config.fields import FORMS, NOISES, PADS, PRECISIONS


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _levels(text: str) -> tuple[float, ...]:
    """'0.75,0.85,0.95': levels strictly between 0 and 1."""
    try:
        levels = tuple(float(v) for v in text.split(","))
    except ValueError:
        levels = ()
    if not levels or not all(0 < v < 1 for v in levels):
        raise argparse.ArgumentTypeError(f"must be levels in (0, 1) like 0.75,0.85, got {text!r}")
    return levels


def _bytes(text: str) -> int:
    """'2G', '500M', '64K' or a plain number of bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    try:
        value = float(text[:-1]) * units[text[-1].upper()] if text[-1:].isalpha() else float(text)
    except (KeyError, ValueError):
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a size like 2G, 500M or 1000000, got {text!r}")
    return int(value)


NOISE_OPTION = dict(
    choices=NOISES,
    default="auto",
    help="noise sampler: full (all d coordinates) or reduced (k = min(M, d') coordinates of the "
    "span the run uses, equal in distribution; needs --precision highest); auto: reduced "
    "where d' > M = 2m + n_wk + n_st (n_wk = 0 without a fitted teacher)",
)


PAD_OPTION = dict(
    choices=PADS,
    default="auto",
    help="runs that differ only in their sample counts (n_st, n_test, n_val) share one compiled "
    "program, padded to the larger counts with the padding weighing nothing: where a cost "
    "model (compile seconds against the padding's FLOPs) says it saves time (auto), never "
    "(off), or one program per group (max); a dataset keeps the choice it was made with",
)


CACHE_OPTION = dict(
    metavar="DIR|off",
    help="keep compiled programs in DIR for later runs and processes, or 'off' (default: "
    "$W2SJAX_CACHE_DIR, else $XDG_CACHE_HOME/w2sjax/xla or ~/.cache/w2sjax/xla)",
)


class UsageError(Exception):
    """A command line argparse rejects; main prints it as one line (no usage block), status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _common() -> argparse.ArgumentParser:
    """The options `sweep` and `run` share: overrides, output, and the engine options."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field (repeatable); an axis field becomes one value",
    )
    common.add_argument("--seeds", type=_positive_int, help="seeds per grid point")
    common.add_argument("--out", default="results", help="output folder (default: results)")
    common.add_argument(
        "--fresh", action="store_true", help="delete this sweep's earlier results and start over"
    )
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    common.add_argument(
        "--max-chunk", type=_positive_int, help="at most this many runs per compiled call"
    )
    common.add_argument(
        "--memory-budget",
        type=_bytes,
        help="device memory a chunk may plan to use per device (e.g. 8G; default: 60%% of a "
        "GPU, 25%% of host memory on CPU)",
    )
    common.add_argument(
        "--form",
        choices=FORMS,
        default="auto",
        help="state of the GD loop: dense W, or exact coefficients (gamma, rho); auto: "
        "coefficients when n_st < d",
    )
    common.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="highest",
        help="precision of the products with the noise patches: float32 (default), the GPU's "
        "TF32, or bf16 operands; the faster ones pass tests/test_train.py's agreement test",
    )
    common.add_argument("--noise", **NOISE_OPTION)
    common.add_argument("--pad", **PAD_OPTION)
    common.add_argument("--cache", **CACHE_OPTION)
    common.add_argument(
        "--compile-ahead",
        action="store_true",
        help="compile each bucket's programs while the one before it computes (meant for a "
        "GPU; on the CPU, where both share the cores, it gains nothing)",
    )
    common.add_argument(
        "--filters",
        action="store_true",
        help="also write the per-filter coefficient table (2 x m x 4 per step)",
    )
    dist = common.add_argument_group("several processes (jax.distributed)")
    dist.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize (SLURM / Open MPI settings are read "
        "automatically); each process runs its share",
    )
    dist.add_argument("--coordinator", help="host:port of process 0")
    dist.add_argument("--num-processes", type=_positive_int)
    dist.add_argument("--process-id", type=int)
    return common


def _add_simulate(sub: Any) -> None:
    """`sweep` (a sweep file) and `run` (one config, no axes)."""
    common = _common()
    for name, what, help_ in (
        ("sweep", "sweep file (TOML)", "run a sweep file ([grid], [zip] axes)"),
        ("run", "config file (TOML)", "run one config (no axes) as one batch"),
    ):
        simulate = sub.add_parser(name, parents=[common], help=help_)
        simulate.add_argument("spec", help=what)
        simulate.set_defaults(one_config=name == "run")


def _add_bench(sub: Any) -> None:
    """`bench`: the engine timed."""
    bench = sub.add_parser(
        "bench",
        help="time the engine against per-run loops and a matmul ceiling; write OUT/bench.json",
    )
    bench.add_argument("--out", default="results/bench", help="default: results/bench")
    bench.add_argument(
        "--sizes",
        choices=("auto", "cpu", "gpu", "none"),
        default="auto",
        help="bucket sizes (auto: gpu sizes on a GPU; none: only --sweep)",
    )
    bench.add_argument(
        "--runs", type=_positive_int, help="runs per bucket (default: 8 on CPU, fill the GPU)"
    )
    bench.add_argument("--steps", type=_positive_int, help="engine steps per run of a bucket")
    bench.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        help="timed calls of each bucket's engine; the fastest counts (default: 5)",
    )
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    bench.add_argument(
        "--sweep",
        metavar="SPEC",
        help="also time this sweep file end to end (into a temporary folder) against the "
        "per-run loops for the same runs",
    )
    bench.add_argument("--seeds", type=_positive_int, help="seeds per grid point of --sweep")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="also time one chunk of each of --sweep's buckets by phase (compile, sampling, "
        "teacher, set-up, steps, views, writing)",
    )
    bench.add_argument(
        "--keep", metavar="OUT", help="write --sweep's tables under OUT/<name> (must be new)"
    )
    bench.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="highest",
        help="precision of the engine and the ceilings (see `sweep --precision`)",
    )
    bench.add_argument("--noise", **NOISE_OPTION)
    bench.add_argument(
        "--over-d",
        action="store_true",
        help="instead: one bucket per n_st in (75, 2000) and d in 10^4..10^8 under each noise "
        "sampler and the PyTorch loop, each in a process of its own (peak memory); writes "
        "OUT/bench_d.json and prints the table of docs/BENCHMARKS.md",
    )


def _add_boundary(sub: Any) -> None:
    """`boundary`: a bisection search for where a metric crosses a level."""
    boundary = sub.add_parser(
        "boundary",
        help="for every point of the file's other axes, where the seed mean of a metric at the "
        "last step crosses a level along one [grid] axis (bisection on a geometric lattice)",
    )
    boundary.add_argument("spec", help="sweep file (TOML); --axis's [grid] values are its bracket")
    boundary.add_argument("--axis", default="n_st", help="the axis searched (default: n_st)")
    boundary.add_argument(
        "--metric", default="test_acc_hard", help="a steps column (default: test_acc_hard)"
    )
    boundary.add_argument("--level", type=float, required=True, help="the level crossed")
    boundary.add_argument(
        "--ratio", type=float, default=1.1, help="the lattice's step; brackets end this narrow"
    )
    boundary.add_argument(
        "--out", default="results/boundary", help="output folder (default: results/boundary)"
    )
    boundary.add_argument("--seeds", type=_positive_int, help="seeds per probe")
    boundary.add_argument("--noise", **NOISE_OPTION)
    boundary.add_argument("--pad", **PAD_OPTION)
    boundary.add_argument("--cache", **CACHE_OPTION)
    boundary.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_collapse(sub: Any) -> None:
    """`collapse`: which scaling law puts every probe of boundary datasets on one curve."""
    collapse = sub.add_parser(
        "collapse",
        help="fit n_st p_b^alpha q^beta by the spread of every probe of the datasets about one "
        "increasing curve; against Theorem 3.4's benign_snr (alpha = beta = 2)",
    )
    collapse.add_argument("dirs", nargs="+", help="dataset folders, e.g. results/boundary/NAME")
    collapse.add_argument(
        "--metric", default="test_acc_hard", help="a steps column (default: test_acc_hard)"
    )
    collapse.add_argument("--boot", type=_positive_int, help="bootstrap replicates (default: 200)")
    collapse.add_argument(
        "--levels",
        type=_levels,
        help="levels whose crossings along n_st give exponents (default: 0.75,0.85,0.95)",
    )
    collapse.add_argument(
        "--q-min", type=float, default=0.0, help="only probes with q >= this (default: all)"
    )
    collapse.add_argument(
        "--q-max", type=float, default=float("inf"), help="only probes with q <= this"
    )
    collapse.add_argument(
        "--out", default="results/collapse", help="output folder (default: results/collapse)"
    )


def _add_report(sub: Any) -> None:
    """`report`: a dataset's summary and figures."""
    report = sub.add_parser(
        "report", help="markdown summary and figures of a sweep folder (written to DIR/report/)"
    )
    report.add_argument("dir", help="a sweep folder, e.g. results/default")
    report.add_argument("--format", choices=("png", "pdf"), default="png", help="figure format")


def _add_check(sub: Any) -> None:
    """`check`: a dataset's integrity, and its repair."""
    check = sub.add_parser(
        "check",
        help="a dataset's integrity: chunks, runs, step rows, damaged or stray files; exit 0 "
        "when clean, 1 when not",
    )
    check.add_argument("dir", help="a sweep folder, e.g. results/default")
    check.add_argument(
        "--repair",
        action="store_true",
        help="take the dataset's lock and move damaged chunks and stray files to DIR/quarantine/; "
        "rerunning the sweep then recomputes exactly their runs",
    )


def parser(description: str) -> argparse.ArgumentParser:
    """`w2sjax`'s parser: subcommands sweep, run, bench, boundary, collapse, report, check."""
    top = _Parser(prog="w2sjax", description=description)
    sub = top.add_subparsers(dest="command", required=True)
    for add in (_add_simulate, _add_bench, _add_boundary, _add_collapse, _add_report, _add_check):
        add(sub)
    return top
