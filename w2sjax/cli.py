"""Command line: `w2sjax sweep SPEC.toml`, `w2sjax run CONFIG.toml` (a sweep without axes),
`bench`, `boundary`, `report` and `check`; cli_parser.py holds their options, COMMANDS their
handlers.

Bad input exits with status 2 and one line on stderr naming the field, before any compute.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from w2sjax.cli_parser import UsageError, parser
from w2sjax.config import check_engine, check_span
from w2sjax.config_toml import parse_overrides
from w2sjax.fields import ConfigError
from w2sjax.grid import Sweep, heatmap_axes, load_sweep

DESCRIPTION = "Simulate weak-to-strong training as batched sweeps, and time, check and report them."


def _error(err: Exception | str, status: int) -> int:
    """Print `err` as the one-line error users see and return the exit status."""
    print(f"w2sjax: error: {err}", file=sys.stderr)
    return status


def _resume(args: argparse.Namespace) -> str:
    """How to resume what `args` started."""
    return f"rerun the same command to resume: w2sjax {' '.join(args.argv)}"


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
    except KeyboardInterrupt:
        print(f"w2sjax: interrupted; the probes written so far are kept; {_resume(args)}",
              file=sys.stderr)  # fmt: skip
        return 130
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
        for name in ("seeds", "keep", "profile"):
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
            repeats=args.repeats,
            done=lambda partial: write(partial, args.out),
        )
        path = write(report, args.out)
        if sweep is not None:
            report["sweep"] = sweep_bench(
                sweep,
                use_torch=use_torch,
                precision=args.precision,
                keep=args.keep,
                noise=args.noise,
                profile=args.profile,
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
    if args.one_config and sweep.axes():
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

    from w2sjax.dataset import Processes

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
    from w2sjax.layout import FIGURES
    from w2sjax.plots import hard_heatmap, phase_heatmap
    from w2sjax.reading import load

    runs, steps = load(root)
    gain = phase_heatmap(runs, *axes, root / FIGURES["gain"])
    hard = hard_heatmap(runs, steps, *axes, root / FIGURES["hard"])[0]
    return [gain] if hard is None else [gain, hard]


def _simulate(args: argparse.Namespace) -> int:
    """`w2sjax sweep` and `w2sjax run`: simulate what is not written yet, then the figures."""
    try:
        sweep = _load(args)
    except ConfigError as err:
        return _error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.layout import DatasetRefused
    from w2sjax.sweep import OutOfMemory, execute

    procs = _processes(args)
    resume = _resume(args)
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


# Each subcommand's handler, by the name the parser stores in args.command.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sweep": _simulate,
    "run": _simulate,
    "bench": _bench,
    "report": _report,
    "boundary": _boundary,
    "check": _check,
}


def main(argv: list[str] | None = None) -> int:
    words = argv if argv is not None else sys.argv[1:]
    try:
        args = parser(DESCRIPTION).parse_args(words)
    except UsageError as err:
        return _error(err, 2)
    args.argv = words
    return COMMANDS[args.command](args)


def entry() -> NoReturn:
    """The `w2sjax` program: main's status as the exit status. Where a second Ctrl-C left a
    chunk computing in XLA, the interpreter's shutdown would abort under it, so the process
    ends at once (the tables and the lock are settled by then)."""
    try:
        status = main()
    except KeyboardInterrupt:
        print("w2sjax: interrupted", file=sys.stderr)
        status = 130
    sweep = sys.modules.get("w2sjax.sweep")
    if sweep is not None and sweep.computing():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
