"""Progress inside a chunk: engine/simulate.py steps a chunk's loop in calls of at most `tick`
steps and reports each call's last step once its steps are done, and a `Progress` turns those
reports into a bar with run-steps/s, the sweep's ETA and the chunk's, or into a plain line every
few seconds where stderr is not a terminal or is one that reports no width.

The reports come from the host between compiled programs, not from a callback inside one: jax
keeps no program with a host callback in its persistent compilation cache.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

import numpy as np
from tqdm import tqdm

# Reports per chunk pass before the first chunk has measured a speed; later ones aim at
# TICKS_PER_S reports a second (a few: a report blocks the loop while Python runs).
FIRST_TICKS = 20
TICKS_PER_S = 4.0
MAX_TICKS = 200
PLAIN_EVERY_S = 10.0  # a plain line's interval where stderr is not a terminal


def draws_bar(stream: IO[str]) -> bool:
    """Whether `stream` is a terminal with a width: some containers' pseudo-terminals report zero
    columns, where tqdm's bar would print nothing at all."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):  # no file descriptor, or not a terminal
        return False


def _clock(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """The sweep's progress in run-steps (runs x steps, the ceiling's counted with its
    student's): `chunk(runs, steps)` before a chunk and `done()` after it; the loop's reports
    (`reached`) move it in between. `tick(steps)` is the report interval to compile the next chunk
    with. quiet: nothing is shown (and no reports are asked for); plain: a line every
    PLAIN_EVERY_S seconds instead of a redrawn bar (default: where the stream draws no bar:
    draws_bar)."""

    def __init__(
        self, total: int, quiet: bool, stream: IO[str] | None = None, plain: bool | None = None
    ) -> None:
        self.quiet, self.total = quiet, total
        self.stream = stream or sys.stderr
        self.plain = not draws_bar(self.stream) if plain is None else plain
        self.start = time.perf_counter()
        self.finished = 0  # run-steps of committed chunks
        self.rate = float("nan")  # run-steps/s of the last chunk, compile included
        self._lock = threading.Lock()
        self._chunk = (0, 1)  # runs, steps of the chunk in flight
        self._chunk_start = self.start
        self._in_chunk = 0.0
        self._first: tuple[float, float] | None = None  # (time, run-steps) of the first report
        self._last_line = -np.inf
        self.closed = False
        self.bar = None
        if not quiet and not self.plain:
            self.bar = tqdm(total=total, unit="run-step", file=self.stream, dynamic_ncols=True)

    def tick(self, steps: int) -> int | None:
        """Steps between reports for a chunk of `steps` steps: about TICKS_PER_S reports a second
        at the last chunk's speed (FIRST_TICKS a chunk before any); None when quiet."""
        if self.quiet:
            return None
        if np.isfinite(self.rate):  # the loop's steps a second: every run steps at once
            every = int(self.rate / max(self._chunk[0], 1) / TICKS_PER_S)
        else:
            every = steps // FIRST_TICKS
        # at most MAX_TICKS a chunk, whatever the last chunk's speed said (it may have been
        # another bucket's, with cheaper steps)
        return min(max(every, steps // MAX_TICKS, 1), steps)

    def chunk(self, runs: int, steps: int) -> None:
        with self._lock:
            self._chunk, self._in_chunk, self._first = (runs, steps), 0.0, None
            self._chunk_start = time.perf_counter()

    def reached(self, step: int) -> None:
        """The chunk's runs have all stepped `step` steps (nothing once closed: a chunk a
        second Ctrl-C abandoned may still be stepping)."""
        if self.closed:
            return
        runs, _ = self._chunk
        with self._lock:
            self._in_chunk = float(runs * step)
            if self._first is None:  # the chunk's compile (if any) is over: time from here
                self._first = (time.perf_counter(), self._in_chunk)
        self._show()

    def done(self) -> None:
        runs, steps = self._chunk
        with self._lock:
            self.finished += runs * steps
            self._in_chunk = 0.0
            self.rate = runs * steps / max(time.perf_counter() - self._chunk_start, 1e-9)
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        done = self.finished + self._in_chunk
        rate = done / max(now - self.start, 1e-9)
        runs, steps = self._chunk
        chunk_eta = "?"
        if self._first is not None and self._in_chunk > self._first[1]:
            speed = (self._in_chunk - self._first[1]) / max(now - self._first[0], 1e-9)
            chunk_eta = _clock((runs * steps - self._in_chunk) / speed)
        if self.bar is not None:
            self.bar.update(int(done) - self.bar.n)
            self.bar.set_postfix_str(f"{rate:,.0f} run-steps/s, chunk ETA {chunk_eta}")
            return
        if force or now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            eta = _clock((self.total - done) / rate) if rate > 0 else "?"
            print(
                f"w2sjax: {int(done):,} of {self.total:,} run-steps "
                f"({100 * done / max(self.total, 1):.0f}%), {rate:,.0f} run-steps/s, "
                f"ETA {eta}, chunk ETA {chunk_eta}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        self.closed = True
        if self.bar is not None:
            self.bar.close()
