"""On top, cli: the `w2sjax` program (console script and `python -m w2sjax`).

- main.py: `entry`: parse, dispatch, exit status (2 for bad input, 130 for Ctrl-C).
- parser.py: every subcommand and its options.
- commands.py: each subcommand's handler (bench, boundary, report, check).
- sweep.py: `sweep` and `run`.
- errors.py: the one-line errors every command prints.
"""
