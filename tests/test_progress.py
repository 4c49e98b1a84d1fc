"""Progress inside a chunk (progress.py): the loop's reports between its programs, that they
change no run, and what a sweep shows from them."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
from conftest import SWEEP_TEXT, assert_same_tables

import w2sjax
from w2sjax.analysis.report import write_report
from w2sjax.config.grid import load_sweep
from w2sjax.engine import progress
from w2sjax.engine.progress import MAX_TICKS, Progress
from w2sjax.engine.theory import pgr
from w2sjax.sweep.execution import execute

LINE = re.compile(r"w2sjax: ([\d,]+) of ([\d,]+) run-steps")


def test_reports_count_the_chunks_steps_and_the_tick_is_bounded():
    """A report of step t counts runs x t run-steps of the chunk in flight (the ceiling's pass
    steps with its student's, in the same calls), and a chunk's end counts it whole. The report
    interval aims at TICKS_PER_S a second at the last chunk's speed, but never under
    steps / MAX_TICKS (at most MAX_TICKS reports a chunk)."""
    bar = Progress(total=4 * 100 * 3, quiet=False, stream=io.StringIO(), plain=True)
    assert bar.tick(100) == 100 // progress.FIRST_TICKS
    bar.chunk(runs=4, steps=100)
    bar.reached(45)
    assert bar._in_chunk == 4 * 45
    bar.reached(90)
    assert bar._in_chunk == 4 * 90
    bar.done()
    assert bar.finished == 400 and bar._in_chunk == 0
    bar.rate = 4 * 1e6  # a chunk of 4 runs at a million steps a second
    assert bar.tick(100) == 100  # one report a chunk
    bar.rate = 4 * 1.0
    assert bar.tick(1000) == 1000 // MAX_TICKS
    assert Progress(total=1, quiet=True).tick(100) is None


def test_a_single_chunk_sweep_shows_progress_from_inside_its_chunk(tmp_path, monkeypatch, capsys):
    """One bucket in one chunk, with the ceiling (two passes): where stderr is not a terminal,
    plain lines (here one per report) show run-steps done from the second half of the chunk,
    before it is committed; the tables are bit for bit those of a --quiet sweep (its loop
    stepped a logged step a call, without reports), which shows nothing. The same dataset then
    checks the ceiling's columns end to end: the runs' ceiling_test_acc is its curve's last
    step, pgr_best is theory.pgr of the best columns, and the report gives PGR's seed means and
    heatmap."""
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    text = SWEEP_TEXT.replace("n_st = [20, 30]", "n_st = [20]").replace("steps = 25", "steps = 40")
    (tmp_path / "sw.toml").write_text(text.replace("[eval]", "[eval]\nceiling = true"))
    execute(load_sweep(tmp_path / "sw.toml"), tmp_path / "shown", quiet=False)
    lines = [LINE.search(line) for line in capsys.readouterr().err.splitlines()]
    done = [(int(m[1].replace(",", "")), int(m[2].replace(",", ""))) for m in lines if m]
    total = 2 * 3 * 40  # two p_b points x three seeds, 40 steps
    assert done and {t for _, t in done} == {total} and done[-1][0] == total
    inside = [d for d, _ in done if total / 2 < d < total]
    assert len(inside) >= 5, done
    execute(load_sweep(tmp_path / "sw.toml"), tmp_path / "quiet", quiet=True)
    assert not LINE.search(capsys.readouterr().err)
    shown, quiet = (w2sjax.load(tmp_path / f / "sw") for f in ("shown", "quiet"))
    assert_same_tables(shown, quiet, exact=True)

    runs, steps = shown
    last = steps[steps.step == steps.step.max()].set_index("run_id").ceiling_test_acc
    np.testing.assert_array_equal(runs.set_index("run_id").ceiling_test_acc, last[runs.run_id])
    best = pgr(runs.best_test_acc, runs.weak_test_acc, runs.ceiling_best_test_acc)
    np.testing.assert_array_equal(runs.pgr_best, best)
    report = write_report(tmp_path / "shown" / "sw")
    assert (report.parent / "phase_pgr.png").is_file() and "PGR (final)" in report.read_text()
    summary = pd.read_csv(report.parent / "summary.csv")
    means = runs.groupby(["n_st", "p_b"]).pgr_final.mean().to_numpy()
    np.testing.assert_allclose(summary.pgr_final, means)


def _terminal(columns: int):
    """A pseudo-terminal reporting `columns` columns: (what a program writes to, reader fd)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return os.fdopen(writer, "w"), reader


def _shown(columns: int) -> str:
    """What a Progress over one chunk writes to a terminal of `columns` columns."""
    import os

    stream, reader = _terminal(columns)
    with stream:
        bar = Progress(total=400, quiet=False, stream=stream)
        bar.chunk(runs=4, steps=100)
        bar.reached(50)
        bar.done()
        bar.close()
    # Read to the end only once the writing end is closed: one read returns what has reached
    # the terminal so far, which was sometimes the first line alone.
    chunks = []
    while True:
        try:
            chunk = os.read(reader, 1 << 16)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(reader)
    return b"".join(chunks).decode(errors="replace")


def test_a_zero_width_terminal_gets_plain_lines_instead_of_the_bar():
    lines = LINE.findall(_shown(0))
    assert lines and lines[-1] == ("400", "400")
    wide = _shown(80)  # the control: a terminal with a width draws tqdm's bar, no plain line
    assert "run-step" in wide and not LINE.search(wide)
