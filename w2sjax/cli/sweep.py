"""`w2sjax sweep SPEC.toml` and `w2sjax run CONFIG.toml` (a sweep without axes): the spec loaded and
checked before jax loads, the processes met where --distributed, what is not written yet
simulated, then the figures. The engine's main path, kept apart from the other commands
(commands.py), which reuse its span check.

Bad input exits with status 2 and one line on stderr naming the field, before any compute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from w2sjax.cli.errors import error, resume_hint
from w2sjax.config.fields import ConfigError
from w2sjax.config.grid import Sweep, heatmap_axes, load_sweep
from w2sjax.config.settings import check_engine, check_span
from w2sjax.config.toml import parse_overrides


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
    check_sweep_span(sweep, args.form, args.noise)
    return sweep


def check_sweep_span(sweep: Sweep, form: str, noise: str) -> None:
    """ConfigError before anything is written where a point's optimizer leaves the span that
    --form coef or --noise reduced needs (config.check_span)."""
    for config in sweep.points:
        check_span(config.optimizer, form, noise)


def _processes(args: argparse.Namespace):
    """Initialise jax.distributed if asked; this process's share and how the processes meet."""
    import jax

    from w2sjax.sweep.dataset import Processes

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
    from w2sjax.analysis.plots import hard_heatmap, phase_heatmap
    from w2sjax.tables.layout import FIGURES
    from w2sjax.tables.reading import load

    runs, steps = load(root)
    gain = phase_heatmap(runs, *axes, root / FIGURES["gain"])
    hard = hard_heatmap(runs, steps, *axes, root / FIGURES["hard"])[0]
    return [gain] if hard is None else [gain, hard]


def sweep_command(args: argparse.Namespace) -> int:
    """`w2sjax sweep` and `w2sjax run`: simulate what is not written yet, then the figures."""
    try:
        sweep = _load(args)
    except ConfigError as err:
        return error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.sweep.execution import OutOfMemory, execute
    from w2sjax.tables.layout import DatasetRefused

    procs = _processes(args)
    resume = resume_hint(args)
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
        return error(err, 2)
    except OutOfMemory as err:
        return error(f"{err}; chunks written so far are kept", 1)
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
            return error(f"the tables are written, the figures are not ({err})", 1)
        print(
            f"tables: {root / 'runs'} and {root / 'steps'}"
            + (f"; figures: {', '.join(map(str, figures))}" if figures else "")
        )
    return 0
