"""What each subcommand does: its handler, from parsed options to an exit status (COMMANDS, by the
name the parser stores), for `bench`, `boundary`, `collapse`, `report` and `check` here and for
`sweep` and `run` in sweep.py; main.py parses and dispatches, parser.py holds the options.

Bad input exits with status 2 and one line on stderr naming the field, before any compute.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from w2sjax.cli.errors import error, resume_hint
from w2sjax.cli.sweep import sweep_command
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import load_sweep
from w2sjax.config.options import EngineOptions


def _report(args: argparse.Namespace) -> int:
    from w2sjax.analysis.report import write_report
    from w2sjax.tables.layout import DatasetRefused

    try:
        path = write_report(args.dir, args.format)
    except (FileNotFoundError, ConfigError, DatasetRefused) as err:
        return error(err, 2)
    print(f"report: {path}")
    return 0


def _boundary(args: argparse.Namespace) -> int:
    from w2sjax.analysis.boundary import check_request

    try:
        sweep = load_sweep(args.spec, seeds=args.seeds)
        request = check_request(sweep, args.axis, args.metric, args.level, args.ratio)
        options = EngineOptions(noise=args.noise, cache=args.cache, pad=args.pad)
        options.check(sweep)
    except ConfigError as err:
        return error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.analysis.boundary import run_boundary
    from w2sjax.sweep.execution import OutOfMemory
    from w2sjax.tables.layout import DatasetRefused

    try:
        paths = run_boundary(sweep, request, args.out, args.quiet, options)
    except (OSError, DatasetRefused) as err:
        return error(err, 2)
    except OutOfMemory as err:
        return error(f"{err}; probes written so far are kept", 1)
    except KeyboardInterrupt:
        print(f"w2sjax: interrupted; the probes written so far are kept; {resume_hint(args)}",
              file=sys.stderr)  # fmt: skip
        return 130
    print("boundary: " + ", ".join(map(str, paths)))
    return 0


def _collapse(args: argparse.Namespace) -> int:
    from w2sjax.analysis.collapse import run_collapse
    from w2sjax.tables.layout import DatasetRefused

    given = {"n_boot": args.boot, "levels": args.levels}  # run_collapse's defaults otherwise
    try:
        table, paths = run_collapse(
            args.dirs,
            args.metric,
            args.out,
            q_range=(args.q_min, args.q_max),
            **{k: v for k, v in given.items() if v is not None},
        )
    except (OSError, ConfigError, DatasetRefused) as err:
        return error(err, 2)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("collapse: " + ", ".join(map(str, paths)))
    return 0


def _check(args: argparse.Namespace) -> int:
    from w2sjax.tables.check import check
    from w2sjax.tables.layout import DatasetRefused

    try:
        result = check(args.dir, args.repair)
    except DatasetRefused as err:
        return error(err, 2)
    except OSError as err:
        return error(f"{args.dir}: cannot {'repair' if args.repair else 'check'} it ({err})", 2)
    print("\n".join(result.lines))
    return 0 if result.clean else 1


def _bench_over_d(out: str) -> int:
    import json

    from w2sjax.bench.dims import markdown, over_d

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
        options = EngineOptions(noise=args.noise, precision=args.precision)
        if sweep is not None:
            options.check(sweep)
            other = next((c.optimizer for c in sweep.points if c.optimizer != "gd"), None)
            if other is not None:
                raise ConfigError(
                    f"--sweep: the per-run loops it is timed against take full-batch GD steps, "
                    f'so every point needs strong.optimizer = "gd", got "{other}"'
                )
        from w2sjax.bench.suite import run_bench, write
        from w2sjax.bench.sweep import prepare_keep, sweep_bench, writable_folder
        from w2sjax.sweep.execution import OutOfMemory
        from w2sjax.tables.layout import DatasetRefused

        writable_folder(args.out, "--out")
        if args.keep:
            prepare_keep(args.keep, sweep)
    except ConfigError as err:
        return error(err, 2)

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
        return error(err, 2)
    except (OSError, OutOfMemory) as err:
        return error(err, 1)
    print(f"wrote {path}")
    return 0


# Each subcommand's handler, by the name the parser stores in args.command.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sweep": sweep_command,
    "run": sweep_command,
    "bench": _bench,
    "report": _report,
    "boundary": _boundary,
    "collapse": _collapse,
    "check": _check,
}
