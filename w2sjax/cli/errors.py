"""How a command that stops short says so: one line on stderr and an exit status, and for a command
that keeps what it wrote, how to resume it. The handlers (commands.py, sweep.py) and
main (main.py) all print through here, so every failure reads alike.
"""

from __future__ import annotations

import argparse
import sys


def error(err: Exception | str, status: int) -> int:
    """Print `err` as the one-line error users see and return the exit status."""
    print(f"w2sjax: error: {err}", file=sys.stderr)
    return status


def resume_hint(args: argparse.Namespace) -> str:
    """How to resume what `args` started."""
    return f"rerun the same command to resume: w2sjax {' '.join(args.argv)}"
