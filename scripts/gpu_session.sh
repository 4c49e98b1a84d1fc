#!/usr/bin/env bash
# One prepared GPU session (see docs/BENCHMARKS.md): runs from the work tree on the device image's
# own packages, writes everything under $OUT and prints a short summary last.
#   [TESTS="pytest args"] [BENCH=0] [BENCH_SWEEP=SPEC.toml|""] [SWEEP_TIMEOUT=s] [BENCH_D=1] \
#     [BOUNDARY="SPEC.toml ..."] scripts/gpu_session.sh [SWEEP.toml ...]
# 1. environment; 2. the core correctness tests on this jax/GPU (TESTS overrides which);
# 3. `w2sjax bench` at GPU sizes (BENCH=0 skips it); with BENCH_SWEEP (default: the frozen table
# workload sweeps/bench_table_cpu.toml; "" skips it), also that sweep timed end to end against
# the per-run loops (its tables kept; section "sweep" of bench.json), and the whole report copied
# to $OUT/bench-<device>-<date>.json, the name results/reference keeps it under; with BENCH_D,
# the cost-against-d table of both noise samplers (bench_d.json); 4. each sweep file given (one
# already run by BENCH_SWEEP resumes with nothing left to do), then its per-grid-point table
# (analysis.summary_table) as CSV; 5. with BOUNDARY, `w2sjax boundary` on each file listed (level
# 0.85, ratio 1.15: docs/BOUNDARY.md's searches), its boundary.csv and slopes.csv under $OUT.
set -u -o pipefail
OUT=${OUT:-/tmp/w2sjax-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
log() { echo "== $* ($(date +%T))"; }

log environment
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader
python3 -c "import sys, jax; print('python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"

log tests
# shellcheck disable=SC2086
timeout 240 python3 -m pytest -q -x -p no:cacheprovider ${TESTS:-tests/test_data.py tests/test_train.py} \
  2>&1 | tail -4 | tee "$OUT/tests.txt"
# The gate for --precision tf32/bf16 is a `slow` test: it must pass on the GPU before either is used.
timeout 240 python3 -m pytest -q -p no:cacheprovider -m slow tests/test_train.py \
  -k faster_precisions 2>&1 | tail -4 | tee -a "$OUT/tests.txt"

log bench
if [ "${BENCH:-1}" = 0 ]; then
  echo "bench skipped (BENCH=0)" > "$OUT/bench.txt"
elif ! timeout 300 python3 -m w2sjax bench --out "$OUT" 2>&1 | tee "$OUT/bench.txt"; then
  log "bench failed; retrying with 32 runs"
  timeout 200 python3 -m w2sjax bench --out "$OUT" --runs 32 2>&1 | tee "$OUT/bench.txt"
fi

BENCH_SWEEP=${BENCH_SWEEP-sweeps/bench_table_cpu.toml}
if [ -n "$BENCH_SWEEP" ]; then
  log "end-to-end timing of $BENCH_SWEEP"
  rm -rf "$OUT/sweep-bench"
  if timeout "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax bench --sizes none --sweep "$BENCH_SWEEP" \
    --keep "$OUT/sweeps" --out "$OUT/sweep-bench" 2>&1 | tee "$OUT/sweep-bench.txt"; then
    # bench.json keeps the buckets; the sweep's timing joins it as its "sweep" section.
    python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
timed = json.loads((out / "sweep-bench" / "bench.json").read_text())
path = out / "bench.json"
report = json.loads(path.read_text()) if path.exists() else dict(timed, buckets=[])
report["sweep"] = timed["sweep"]
path.write_text(json.dumps(report, indent=2) + "\n")
PY
  else
    log "end-to-end timing failed or timed out"
  fi
fi

# The bench in the committed schema, named by device (lower case, e.g. nvidia-h200) and date.
python3 - "$OUT" <<'PY'
import datetime, json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
path = out / "bench.json"
if path.exists():
    device = re.sub(r"[^a-z0-9]+", "-", json.loads(path.read_text())["device"].lower()).strip("-")
    target = out / f"bench-{device}-{datetime.date.today().isoformat()}.json"
    target.write_text(path.read_text())
    print("wrote", target)
PY

if [ -n "${BENCH_D:-}" ]; then
  # Cost against d under each noise sampler (docs/BENCHMARKS.md, "Cost against d").
  log "bench over d"
  timeout "${BENCH_D_TIMEOUT:-400}" python3 -m w2sjax bench --over-d --out "$OUT" 2>&1 \
    | tee "$OUT/bench-d.txt" | grep -E "^\|"
fi

for spec in "$@"; do
  log "sweep $spec"
  timeout "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax sweep "$spec" --out "$OUT/sweeps" --quiet \
    2>&1 | tail -3
  python3 - "$spec" "$OUT" <<'PY'
import sys, jax, w2sjax
from w2sjax.analysis import summary_table
from w2sjax.grid import load_sweep
sweep = load_sweep(sys.argv[1])
runs, steps = w2sjax.load(f"{sys.argv[2]}/sweeps/{sweep.name}")
table = summary_table(runs, steps, sweep.axes())
table.insert(len(sweep.axes()) + 1, "device", jax.devices()[0].device_kind)
table.to_csv(f"{sys.argv[2]}/{sweep.name}.csv", index=False)
PY
done
for spec in ${BOUNDARY:-}; do
  log "boundary $spec"
  timeout "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax boundary "$spec" --level 0.85 --ratio 1.15 \
    --out "$OUT/sweeps" --quiet 2>&1 | tail -2
  name=$(basename "$spec" .toml)
  for f in boundary.csv slopes.csv; do
    [ -f "$OUT/sweeps/$name/$f" ] && cp "$OUT/sweeps/$name/$f" "$OUT/${name}_$f"
  done
done
if [ -d "$OUT/sweeps" ]; then tar czf "$OUT/sweeps.tar.gz" -C "$OUT" sweeps && rm -rf "$OUT/sweeps"; fi

log summary
cat "$OUT/tests.txt"
grep -E "ceiling|n_st=|skipped" "$OUT/bench.txt"
[ -f "$OUT/sweep-bench.txt" ] && grep -E "^sweep " "$OUT/sweep-bench.txt"
for csv in "$OUT"/*.csv; do
  [ -f "$csv" ] || continue
  echo "-- $(basename "$csv")"
  python3 -c "
import pandas as pd, sys
t = pd.read_csv(sys.argv[1])
cols = [c for c in t.columns if not c.endswith(('_lo', '_hi')) and c != 'device']
print(t[cols].round(3).to_string(index=False))" "$csv"
done
