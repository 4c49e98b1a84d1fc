"""The `w2sjax` program (the console script and `python -m w2sjax`): the command line parsed
(parser.py), handed to its command's handler (commands.py), and the status returned, so
every command ends alike: a rejected command line as one line on stderr and status 2, Ctrl-C as
status 130, and no abort under a chunk XLA is still computing.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from w2sjax.cli.commands import COMMANDS
from w2sjax.cli.errors import error
from w2sjax.cli.parser import UsageError, parser
from w2sjax.engine.executables import kept_whole

DESCRIPTION = "Simulate weak-to-strong training as batched sweeps, and time, check and report them."


def main(argv: list[str] | None = None) -> int:
    words = argv if argv is not None else sys.argv[1:]
    try:
        args = parser(DESCRIPTION).parse_args(words)
    except UsageError as err:
        return error(err, 2)
    args.argv = words
    return COMMANDS[args.command](args)


def entry() -> NoReturn:
    """The `w2sjax` program: main's status as the exit status. Where a second Ctrl-C left a
    chunk computing in XLA, the interpreter's shutdown would abort under it, so the process
    ends at once (the tables and the lock are settled by then)."""
    try:
        with kept_whole():  # this process runs the package's files as they are
            status = main()
    except KeyboardInterrupt:
        print("w2sjax: interrupted", file=sys.stderr)
        status = 130
    sweep = sys.modules.get("w2sjax.sweep.execution")
    if sweep is not None and sweep.computing():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
