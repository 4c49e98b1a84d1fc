"""`w2sjax bench --over-d`: what a bucket costs as d grows, under each noise sampler.

For n_st in N_ST and d in DIMS: the engine's run-steps/s under the reduced sampler and under the
full one (where its arrays fit the memory budget), and the per-run PyTorch loop's (where its
materialised patches fit half the host's memory), each measured in a process of its own so its
peak resident memory (ru_maxrss, runtime included) is its own. The engine's bucket is
timing.engine's (m = 20, n_wk = 200, n_test = 500): the time covers sampling, the weak
fit, STEPS training steps and evaluation (the faster of REPEATS calls); compile is timed apart
and left out. The loop's time covers its training steps only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import NamedTuple

DIMS = (10**4, 10**5, 10**6, 10**8)
N_ST = (75, 2000)
M, RUNS, STEPS, LOOP_STEPS, REPEATS = 20, 8, 400, 5, 2
KINDS = ("reduced", "full", "torch")
TORCH_MEMORY_FRACTION = 0.5


class Case(NamedTuple):
    """One measurement: kind ("reduced" or "full": the engine with that sampler; "torch": the
    per-run loop), n_st, d, and runs (the engine's batch; 1 for the loop)."""

    kind: str
    n_st: int
    d: int
    runs: int


def plan_case(kind: str, n_st: int, d: int) -> Case | str:
    """The case to measure, or why it does not fit this machine."""
    import jax

    from w2sjax.bench.timing import patch_bytes
    from w2sjax.config.settings import build
    from w2sjax.engine.batch import Shape
    from w2sjax.sweep.buckets import bytes_per_run, memory_budget

    if kind == "torch":
        need = patch_bytes(n_st, d)
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > TORCH_MEMORY_FRACTION * total:
            return f"n/a (patches need {need / 2**30:,.0f} GiB)"
        return Case(kind, n_st, d, 1)
    config = build({"d": d, "n_st": n_st, "m": M, "steps": STEPS, "n_test": 500, "log_points": 3})
    per_run = bytes_per_run(Shape.of(config, noise=kind))
    runs = min(RUNS, memory_budget(jax.devices()[0]) // per_run)
    if runs < 1:
        return f"n/a (one run needs {per_run / 2**30:,.0f} GiB)"
    return Case(kind, n_st, d, int(runs))


def measure(case: Case) -> dict:
    """In this process: the case's run-steps/s (and the engine's form and dimension)."""
    from w2sjax.bench.timing import engine, torch_per_run

    if case.kind == "torch":
        rate = torch_per_run(case.n_st, case.d, M, LOOP_STEPS)
        return {"run_steps_per_s": rate} if rate else {"error": "n/a (torch does not import)"}
    timed = engine(case.n_st, case.d, M, case.runs, STEPS, noise=case.kind, repeats=REPEATS)
    return {
        "run_steps_per_s": case.runs * STEPS / timed.engine_s,
        "compile_s": timed.compile_s,
        "form": timed.shape.form,
        "dim": timed.shape.dim,
    }


def run_case(case: Case) -> dict:
    """measure(case) in a child process, with the child's peak resident memory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "w2sjax.bench.dims", json.dumps(case._asdict())],
        stdout=subprocess.PIPE,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"failed (exit status {proc.returncode})"}
    return {**json.loads(out.strip().splitlines()[-1]), "peak_rss_gib": usage.ru_maxrss / 2**20}


def over_d(log=print) -> list[dict]:
    """Every (n_st, d, kind) of N_ST x DIMS x KINDS: measured, or why not."""
    rows = []
    for n_st in N_ST:
        for d in DIMS:
            for kind in KINDS:
                case = plan_case(kind, n_st, d)
                row = {"kind": kind, "n_st": n_st, "d": d}
                if isinstance(case, str):
                    row["skipped"] = case
                else:
                    row.update(runs=case.runs, **run_case(case))
                rows.append(row)
                log(json.dumps(row))
    return rows


def markdown(rows: list[dict]) -> str:
    """The table docs/BENCHMARKS.md shows: run-steps/s and peak memory per n_st, d and kind."""

    def cell(row: dict) -> str:
        if "skipped" in row or "error" in row:
            return row.get("skipped") or row["error"]
        rate = row["run_steps_per_s"]
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
        return f"{shown} ({row['peak_rss_gib']:.1f} GiB)"

    lines = [
        "| n_st | d | engine, reduced | engine, full | PyTorch loop |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n_st in N_ST:
        for d in DIMS:
            by_kind = {r["kind"]: r for r in rows if r["n_st"] == n_st and r["d"] == d}
            cells = " | ".join(cell(by_kind[k]) for k in KINDS)
            lines.append(f"| {n_st} | 10^{len(str(d)) - 1} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(measure(Case(**json.loads(sys.argv[1])))))
