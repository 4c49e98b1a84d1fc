"""Command line: `w2sjax run CONFIG.toml [--set field=value ...] [--out DIR] [--filters]`.

Bad input exits with status 2 and one line on stderr naming the field; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from w2sjax.config import ConfigError, load_config, parse_overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="w2sjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate `seeds` runs of one config as one batch")
    run.add_argument("config", help="config file (TOML)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (repeatable)",
    )
    run.add_argument("--out", default="results", help="output folder (default: results)")
    run.add_argument(
        "--filters",
        action="store_true",
        help="also write the per-filter coefficient table (2 x m x 4 per logged step)",
    )
    return parser


def _summary(out_dir) -> str:
    import pandas as pd

    runs = pd.read_parquet(out_dir / "runs")
    return (
        f"{len(runs)} runs: weak test acc {runs.weak_test_acc.mean():.3f}, strong test acc "
        f"final {runs.final_test_acc.mean():.3f}, best {runs.best_test_acc.mean():.3f} "
        f"(mean over seeds)"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, parse_overrides(args.overrides))
    except ConfigError as err:
        print(f"w2sjax: error: {err}", file=sys.stderr)
        return 2
    from w2sjax.runner import run  # jax loads only once the input is known to be good

    start = time.perf_counter()
    try:
        out_dir = run(config, args.out, filters=args.filters)
    except OSError as err:
        print(f"w2sjax: error: {err}", file=sys.stderr)
        return 2
    print(f"{_summary(out_dir)}; {time.perf_counter() - start:.1f} s")
    print(f"tables: {out_dir / 'runs'} and {out_dir / 'steps'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
