"""Command line: `w2sjax sweep SPEC.toml` and `w2sjax run CONFIG.toml` (a sweep without axes).

Bad input exits with status 2 and one line on stderr naming the field, before any compute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from w2sjax.config import (
    FORMS,
    NOISES,
    PRECISIONS,
    ConfigError,
    check_engine,
    check_span,
    parse_overrides,
)
from w2sjax.grid import Sweep, heatmap_axes, load_sweep


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


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


class _UsageError(Exception):
    """A command line argparse rejects; main prints it as one line (no usage block), status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
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

    parser = _Parser(prog="w2sjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "sweep", parents=[common], help="run a sweep file ([grid], [zip] axes)"
    ).add_argument("spec", help="sweep file (TOML)")
    sub.add_parser(
        "run", parents=[common], help="run one config (no axes) as one batch"
    ).add_argument("spec", help="config file (TOML)")
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
    bench.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop")
    bench.add_argument(
        "--sweep",
        metavar="SPEC",
        help="also time this sweep file end to end (into a temporary folder) against the "
        "per-run loops for the same runs",
    )
    bench.add_argument("--seeds", type=_positive_int, help="seeds per grid point of --sweep")
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
    boundary.add_argument("--quiet", action="store_true", help="no progress bars")
    report = sub.add_parser(
        "report", help="markdown summary and figures of a sweep folder (written to DIR/report/)"
    )
    report.add_argument("dir", help="a sweep folder, e.g. results/default")
    report.add_argument("--format", choices=("png", "pdf"), default="png", help="figure format")
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
    return parser


def _error(err: Exception | str, status: int) -> int:
    """Print `err` as the one-line error users see and return the exit status."""
    print(f"w2sjax: error: {err}", file=sys.stderr)
    return status


def _report(args: argparse.Namespace) -> int:
    from w2sjax.layout import DatasetRefused
    from w2sjax.report import write_report

    try:
        path = write_report(args.dir, args.format)
    except (FileNotFoundError, ConfigError, DatasetRefused) as err:
        return _error(err, 2)
    print(f"report: {path}")
    return 0


def _boundary(args: argparse.Namespace) -> int:
    from w2sjax.boundary_run import check_request

    try:
        sweep = load_sweep(args.spec, seeds=args.seeds)
        request = check_request(sweep, args.axis, args.metric, args.level, args.ratio)
        _check_span(sweep, "auto", args.noise)
    except ConfigError as err:
        return _error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.boundary_run import run_boundary
    from w2sjax.layout import DatasetRefused
    from w2sjax.sweep import OutOfMemory

    try:
        paths = run_boundary(sweep, request, args.out, args.quiet, args.noise)
    except (OSError, DatasetRefused) as err:
        return _error(err, 2)
    except OutOfMemory as err:
        return _error(f"{err}; probes written so far are kept", 1)
    print("boundary: " + ", ".join(map(str, paths)))
    return 0


def _check(args: argparse.Namespace) -> int:
    from w2sjax.check import check
    from w2sjax.layout import DatasetRefused

    try:
        result = check(args.dir, args.repair)
    except DatasetRefused as err:
        return _error(err, 2)
    except OSError as err:
        return _error(f"{args.dir}: cannot {'repair' if args.repair else 'check'} it ({err})", 2)
    print("\n".join(result.lines))
    return 0 if result.clean else 1


def _bench_over_d(out: str) -> int:
    import json

    from w2sjax.bench_dims import markdown, over_d

    rows = over_d()
    path = Path(out) / "bench_d.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    print(f"wrote {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    try:
        sweep = load_sweep(args.sweep, seeds=args.seeds) if args.sweep else None
        if args.sizes == "none" and sweep is None:
            raise ConfigError("--sizes none: needs --sweep SPEC (nothing to time otherwise)")
        for name in ("seeds", "keep"):
            if getattr(args, name) and sweep is None:
                raise ConfigError(f"--{name}: needs --sweep SPEC")
        check_engine(args.noise, args.precision)
        if sweep is not None:
            _check_span(sweep, "auto", args.noise)
            other = next((c.optimizer for c in sweep.points if c.optimizer != "gd"), None)
            if other is not None:
                raise ConfigError(
                    f"--sweep: the per-run loops it is timed against take full-batch GD steps, "
                    f'so every point needs strong.optimizer = "gd", got "{other}"'
                )
        from w2sjax.bench import run_bench, write
        from w2sjax.bench_sweep import prepare_keep, sweep_bench, writable_folder
        from w2sjax.layout import DatasetRefused
        from w2sjax.sweep import OutOfMemory

        writable_folder(args.out, "--out")
        if args.keep:
            prepare_keep(args.keep, sweep)
    except ConfigError as err:
        return _error(err, 2)

    if args.over_d:
        return _bench_over_d(args.out)
    use_torch = not args.no_torch
    try:
        report = run_bench(
            args.sizes,
            args.runs,
            args.steps,
            use_torch=use_torch,
            precision=args.precision,
            noise=args.noise,
        )
        path = write(report, args.out)
        if sweep is not None:
            report["sweep"] = sweep_bench(
                sweep,
                use_torch=use_torch,
                precision=args.precision,
                keep=args.keep,
                noise=args.noise,
            )
            write(report, args.out)
    except KeyboardInterrupt:
        kept = f"; {Path(args.keep) / sweep.name} holds a partial sweep" if args.keep else ""
        print(f"w2sjax: bench interrupted{kept}", file=sys.stderr)
        return 130
    except DatasetRefused as err:  # --keep's dataset taken by another writer meanwhile
        return _error(err, 2)
    except (OSError, OutOfMemory) as err:
        return _error(err, 1)
    print(f"wrote {path}")
    return 0


def _load(args: argparse.Namespace) -> Sweep:
    sweep = load_sweep(args.spec, parse_overrides(args.overrides), args.seeds)
    if args.command == "run" and sweep.axes():
        raise ConfigError(
            f"{args.spec}: has [grid]/[zip] axes ({', '.join(sweep.axes())}); use `w2sjax sweep`"
        )
    if not args.distributed and (
        args.coordinator or args.num_processes or args.process_id is not None
    ):
        raise ConfigError("--coordinator/--num-processes/--process-id: need --distributed")
    check_engine(args.noise, args.precision)
    _check_span(sweep, args.form, args.noise)
    return sweep


def _check_span(sweep: Sweep, form: str, noise: str) -> None:
    """ConfigError before anything is written where a point's optimizer leaves the span that
    --form coef or --noise reduced needs (config.check_span)."""
    for config in sweep.points:
        check_span(config.optimizer, form, noise)


def _processes(args: argparse.Namespace):
    """Initialise jax.distributed if asked; this process's share and how the processes meet."""
    import jax

    from w2sjax.sweep import Processes

    if not args.distributed:
        return Processes()
    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )
    import numpy as np
    from jax.experimental import multihost_utils

    return Processes(
        jax.process_index(),
        jax.process_count(),
        barrier=multihost_utils.sync_global_devices,
        agree=lambda ok: bool(multihost_utils.broadcast_one_to_all(np.int32(ok))),
    )


def _figures(sweep: Sweep, root: Path) -> list[Path]:
    """The phase heatmaps beside the tables when the sweep has exactly two numeric axes: the
    final gain over the teacher, and the final hard-only test accuracy (Theorem 3.4's order
    parameter) with the benign_snr = C line fitted to it where there are hard-only samples."""
    axes = sweep.axes()
    if not heatmap_axes(axes):
        return []
    from w2sjax.analysis import load
    from w2sjax.layout import FIGURES
    from w2sjax.plots import hard_heatmap, phase_heatmap

    runs, steps = load(root)
    gain = phase_heatmap(runs, *axes, root / FIGURES["gain"])
    hard = hard_heatmap(runs, steps, *axes, root / FIGURES["hard"])[0]
    return [gain] if hard is None else [gain, hard]


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _UsageError as err:
        return _error(err, 2)
    if args.command == "bench":
        return _bench(args)
    if args.command == "report":
        return _report(args)
    if args.command == "boundary":
        return _boundary(args)
    if args.command == "check":
        return _check(args)
    try:
        sweep = _load(args)
    except ConfigError as err:
        return _error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.layout import DatasetRefused
    from w2sjax.sweep import OutOfMemory, execute

    procs = _processes(args)
    words = argv if argv is not None else sys.argv[1:]
    resume = f"rerun the same command to resume: w2sjax {' '.join(words)}"
    try:
        summary = execute(
            sweep,
            args.out,
            fresh=args.fresh,
            quiet=args.quiet,
            filters=args.filters,
            max_chunk=args.max_chunk,
            form=args.form,
            precision=args.precision,
            noise=args.noise,
            memory_budget_bytes=args.memory_budget,
            procs=procs,
        )
    except (OSError, DatasetRefused) as err:
        return _error(err, 2)
    except OutOfMemory as err:
        return _error(f"{err}; chunks written so far are kept", 1)
    except KeyboardInterrupt:
        print(
            f"w2sjax: interrupted; the chunk in flight was discarded, the rest is kept; {resume}",
            file=sys.stderr,
        )
        return 130
    if summary.interrupted:
        print(
            f"w2sjax: interrupted after {summary.chunks} chunks ({summary.ran} runs) "
            f"were written; {resume}",
            file=sys.stderr,
        )
        return 130
    root = summary.root
    print(
        f"{summary.ran} runs simulated in {summary.chunks} chunks on {summary.devices}, "
        f"{summary.skipped} already written; {summary.seconds:.1f} s"
    )
    if summary.diverged:
        print(
            f"{summary.diverged} runs diverged (non-finite state): see the diverged and "
            f"diverged_step columns of {root / 'runs'}; their rows from that step on are NaN"
        )
    if procs.index == 0:
        try:
            figures = _figures(sweep, root)
        except (OSError, DatasetRefused) as err:  # e.g. another writer's --fresh took the folder
            return _error(f"the tables are written, the figures are not ({err})", 1)
        print(
            f"tables: {root / 'runs'} and {root / 'steps'}"
            + (f"; figures: {', '.join(map(str, figures))}" if figures else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
