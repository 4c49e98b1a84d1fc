"""`w2sjax sweep SPEC.toml` and `w2sjax run CONFIG.toml` (a sweep without axes): the Python API's
path (api/runner.py) behind the parser: the spec loaded and checked before jax loads, what is not
written yet simulated, then the figures, with what happened said in a few lines.

Bad input exits with status 2 and one line on stderr naming the field, before any compute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from w2sjax.api.runner import figures, load_spec
from w2sjax.cli.errors import error, resume_hint
from w2sjax.config.fields import ConfigError
from w2sjax.config.options import Distributed, EngineOptions


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options of a parsed command line (ConfigError where they do not go
    together)."""
    if not args.distributed and (
        args.coordinator or args.num_processes or args.process_id is not None
    ):
        raise ConfigError("--coordinator/--num-processes/--process-id: need --distributed")
    distributed = (
        Distributed(args.coordinator, args.num_processes, args.process_id)
        if args.distributed
        else None
    )
    return EngineOptions(
        form=args.form,
        precision=args.precision,
        noise=args.noise,
        filters=args.filters,
        max_chunk=args.max_chunk,
        memory_budget=args.memory_budget,
        distributed=distributed,
        cache=args.cache,
        compile_ahead=args.compile_ahead,
        pad=args.pad,
    )


def sweep_command(args: argparse.Namespace) -> int:
    """`w2sjax sweep` and `w2sjax run`: simulate what is not written yet, then the figures."""
    try:  # in the order the checks always ran: the file, then the options against it
        sweep = load_spec(Path(args.spec), args.overrides, args.seeds, one_config=args.one_config)
        options = engine_options(args)
        options.check(sweep)
    except ConfigError as err:
        return error(err, 2)
    # jax loads only once the input is known to be good.
    from w2sjax.sweep.execution import OutOfMemory, execute
    from w2sjax.tables.layout import DatasetRefused

    resume = resume_hint(args)
    try:
        summary = execute(sweep, args.out, options, fresh=args.fresh, quiet=args.quiet)
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
    if summary.process == 0:
        try:
            drawn = figures(sweep, root)
        except (OSError, DatasetRefused) as err:  # e.g. another writer's --fresh took the folder
            return error(f"the tables are written, the figures are not ({err})", 1)
        print(
            f"tables: {root / 'runs'} and {root / 'steps'}"
            + (f"; figures: {', '.join(map(str, drawn))}" if drawn else "")
        )
    return 0
