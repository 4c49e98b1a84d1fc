#!/usr/bin/env bash
# One prepared GPU session (see docs/BENCHMARKS.md): runs from the work tree on the device image's
# own packages and prints a short summary last.
#   [OUT=dir] [DEADLINE=s] [TESTS="pytest args"] [TEST_TIMEOUT=s] [PRECISION_TEST=0] [BENCH=0] \
#     [BENCH_ARGS="--steps N ..."] [BENCH_SWEEP=SPEC.toml|""] [BENCH_SEEDS=n] [SWEEP_TIMEOUT=s] \
#     [AUTOTUNE_LEVELS="0 4"] [BENCH_D=1] [BENCH_D_TIMEOUT=s] [BOUNDARY="SPEC.toml ..."] \
#     [BOUNDARY_RATIO=r] [BOUNDARY_MEM="f ..."] [BOUNDARY_XLA_FLAGS=...] \
#     [RESUME="DATASET.tar.gz ..."] [RESERVE=s] [MNIST_NPZ=file] [CIFAR10_NPZ=file] \
#     scripts/gpu_session.sh [SWEEP.toml ...]
# Stages, most wanted first (a lease can end before the last):
# 1. environment; 2. the core correctness tests on this jax/GPU (TESTS overrides which), and the
# gate of --precision tf32/bf16 (PRECISION_TEST=0 skips it); 3. each sweep file given, its
# dataset packed as $OUT/<name>.tar.gz, then, with MNIST_NPZ or CIFAR10_NPZ (an .npz of x_train,
# y_train, x_test, y_test: docs/IMAGES.md), sweeps/images/mnist_*.toml or cifar10_*.toml on that
# file, packed likewise; 4. with BOUNDARY, `w2sjax boundary` on each file listed
# (level 0.85, lattice ratio BOUNDARY_RATIO, default 1.15: docs/BOUNDARY.md's searches), packed
# likewise, one after another or, with BOUNDARY_MEM (one GPU memory fraction per file), all at
# once; BOUNDARY_XLA_FLAGS are appended to XLA_FLAGS in the search processes only (dropped
# where this jaxlib refuses them); SWEEP_TIMEOUT limits each sweep and each search; 5. with
# BENCH_SWEEP (default: the frozen table workload sweeps/bench/bench_table_cpu.toml at
# BENCH_SEEDS seeds a point, default 32: 96 runs, GPU-sized; "" skips it), that sweep timed end
# to end, compile included, against the per-run loops (section "sweep"; its tables packed), then
# again at each XLA autotune level of AUTOTUNE_LEVELS (--xla_gpu_autotune_level); 6. `w2sjax
# bench` at GPU sizes (BENCH=0 skips it, BENCH_ARGS adds options such as --steps or --repeats),
# each bucket with its compile seconds cold and cached; both bench parts land in
# $OUT/bench-<device>-<date>.json, the name results/reference keeps it under, as soon as each is
# done; 7. with BENCH_D, the cost-against-d table of both noise samplers.
# RESUME: packed datasets of an earlier session, unpacked first, so that a sweep or search of the
# same name goes on from where that one stopped. The boundary law's GPU leg is a sweep file of
# stage 3: sweeps/boundary/law_coin_q_gpu.toml (its header gives the whole command).
# DEADLINE (seconds from the start) cuts every stage's timeout to what is left, keeping RESERVE
# (default 20) for the summary, so a lease's limit never kills the script mid-write.
# $OUT gets only the packed datasets and the bench JSONs (the device tool brings back at most 8
# files; the summary warns past that); logs and per-point tables stay in a scratch folder, and the
# summary prints them. A sweep cut by its limit is packed as far as it got and named in the log.
set -u -o pipefail
OUT=${OUT:-/tmp/w2sjax-gpu}
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/sweeps"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
log() { echo "== $* ($(date +%T), ${SECONDS} s)"; }

# stage NAME SECONDS CMD...: CMD under a timeout of SECONDS, cut to what DEADLINE leaves.
stage() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${DEADLINE:-}" ]; then
    local left=$((DEADLINE - SECONDS - ${RESERVE:-20}))
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  if [ "$limit" -lt 10 ]; then
    log "$name skipped: its limit is ${limit} s"
    return 1
  fi
  log "$name (at most $limit s)"
  timeout "$limit" "$@"
}

pack() { # a dataset under $WORK/sweeps, as one file of $OUT
  [ -d "$WORK/sweeps/$1" ] && tar czf "$OUT/$1.tar.gz" -C "$WORK/sweeps" "$1"
}

bench_json() { # the bench parts so far, whole or cut short, in the committed schema
  python3 - "$WORK" "$OUT" <<'PY'
import datetime, json, pathlib, re, sys
work, out = (pathlib.Path(p) for p in sys.argv[1:])
parts = [work / p / "bench.json" for p in ("bench", "sweep-bench")]
buckets, timed = (json.loads(p.read_text()) if p.exists() else None for p in parts)
if buckets is None and timed is None:
    sys.exit(0)
report = buckets or dict(timed, buckets=[])
if timed is not None and "sweep" in timed:  # absent where the sweep's timing was cut short
    report["sweep"] = timed["sweep"]
device = re.sub(r"[^a-z0-9]+", "-", report["device"].lower()).strip("-")
target = out / f"bench-{device}-{datetime.date.today().isoformat()}.json"
target.write_text(json.dumps(report, indent=2) + "\n")
print("wrote", target)
PY
}

for packed in ${RESUME:-}; do tar xzf "$packed" -C "$WORK/sweeps"; done
log environment
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader
jax_check() {
  python3 -c "import sys, jax; print('python', sys.version.split()[0], 'jax', jax.__version__, \
jax.devices(), jax.numpy.ones(2).sum())"
}
jax_check
# The searches' XLA flags, checked as they will be used. No stray space: XLA takes a value that
# does not start with "--" for a file name.
SEARCH_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }${BOUNDARY_XLA_FLAGS:-}"
if [ -n "${BOUNDARY_XLA_FLAGS:-}" ] && ! XLA_FLAGS=$SEARCH_FLAGS jax_check >/dev/null 2>&1; then
  log "this jaxlib refused BOUNDARY_XLA_FLAGS=$BOUNDARY_XLA_FLAGS: the searches run without them"
  SEARCH_FLAGS=${XLA_FLAGS:-}
fi

# shellcheck disable=SC2086
stage tests "${TEST_TIMEOUT:-240}" python3 -m pytest -q -x -p no:cacheprovider \
  ${TESTS:-tests/test_data.py tests/test_train.py tests/test_threefry.py} 2>&1 | tail -4 | tee "$WORK/tests.txt"
if [ "${PRECISION_TEST:-1}" != 0 ]; then
  # The gate for --precision tf32/bf16: it must pass on the GPU before either is used.
  stage "precision test" 240 python3 -m pytest -q -p no:cacheprovider -m slow \
    tests/test_train.py -k faster_precisions 2>&1 | tail -4 | tee -a "$WORK/tests.txt"
fi

# The image sweeps of each file given, its path passed to every one of them.
declare -a sweeps=("$@") sets=()
for _ in "$@"; do sets+=(""); done
for image in mnist:${MNIST_NPZ:-} cifar10:${CIFAR10_NPZ:-}; do
  [ -n "${image#*:}" ] || continue
  for spec in sweeps/images/"${image%%:*}"_*.toml; do
    sweeps+=("$spec")
    sets+=("path=\"${image#*:}\"")
  done
done
for i in "${!sweeps[@]}"; do
  spec=${sweeps[$i]}
  name=$(basename "$spec" .toml)
  stage "sweep $spec" "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax sweep "$spec" \
    ${sets[$i]:+--set "${sets[$i]}"} --out "$WORK/sweeps" --quiet 2>&1 | tail -3 \
    || log "sweep $spec failed or was cut short"
  pack "$name" || continue
  python3 - "$spec" "$WORK" "${sets[$i]}" <<'PY'
import sys, jax, w2sjax
from w2sjax.analysis.summary import summary_table
from w2sjax.config.grid import load_sweep
from w2sjax.config.toml import parse_overrides
sweep = load_sweep(sys.argv[1], parse_overrides([sys.argv[3]] if sys.argv[3] else []))
runs, steps = w2sjax.load(f"{sys.argv[2]}/sweeps/{sweep.name}")
table = summary_table(runs, steps, sweep.axes())
table.insert(len(sweep.axes()) + 1, "device", jax.devices()[0].device_kind)
table.to_csv(f"{sys.argv[2]}/{sweep.name}.csv", index=False)
PY
done
# boundary SPEC: one search, its output in $WORK/boundary-<name>.txt, its dataset packed.
boundary() {
  local name
  name=$(basename "$1" .toml)
  # outputs a RESUMEd dataset may hold: the summary shows only this session's
  rm -f "$WORK/sweeps/$name"/{boundary,slopes}.csv "$WORK/sweeps/$name/boundary.png"
  # JAX_LOG_COMPILES: each compile's time, which the summary adds up
  (
    [ -n "$SEARCH_FLAGS" ] && export XLA_FLAGS=$SEARCH_FLAGS
    JAX_LOG_COMPILES=1 stage "boundary $1" "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax boundary \
      "$1" --level 0.85 --ratio "${BOUNDARY_RATIO:-1.15}" --out "$WORK/sweeps" --quiet
  ) >"$WORK/boundary-$name.txt" 2>&1 || log "boundary $1 failed or was cut short"
  pack "$name"
}
declare -a specs=() shares=()
read -r -a specs <<<"${BOUNDARY:-}"
read -r -a shares <<<"${BOUNDARY_MEM:-}"
if [ "${#shares[@]}" -gt 0 ] && [ "${#shares[@]}" -ne "${#specs[@]}" ]; then
  log "BOUNDARY_MEM has ${#shares[@]} shares for ${#specs[@]} files: the searches run in turn"
  shares=()
fi
if [ "${#shares[@]}" -gt 0 ]; then
  # All searches at once, each process given its share of the GPU's memory (XLA preallocates
  # it; the planner sizes chunks from it): compiles, which dominate a search on a GPU, overlap.
  for i in "${!specs[@]}"; do
    XLA_PYTHON_CLIENT_MEM_FRACTION=${shares[$i]} boundary "${specs[$i]}" &
  done
  wait
else
  for spec in "${specs[@]}"; do boundary "$spec"; done
fi

BENCH_SWEEP=${BENCH_SWEEP-sweeps/bench/bench_table_cpu.toml}
if [ -n "$BENCH_SWEEP" ]; then
  if stage "end-to-end timing of $BENCH_SWEEP" "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax bench \
    --sizes none --sweep "$BENCH_SWEEP" --seeds "${BENCH_SEEDS:-32}" --keep "$WORK/sweeps" \
    --out "$WORK/sweep-bench" 2>&1 \
    | tee "$WORK/sweep-bench.txt"; then :; else
    log "end-to-end timing failed or timed out"
  fi
  bench_json
  pack "$(basename "$BENCH_SWEEP" .toml)"
fi

# The autotuning setting that serves a sweep best (issue 28): the same end-to-end timing, compile
# included, at each of AUTOTUNE_LEVELS (XLA's --xla_gpu_autotune_level; the default run above is
# jaxlib's own level); their "sweep" lines land in the summary.
for level in ${AUTOTUNE_LEVELS:-}; do
  [ -n "$BENCH_SWEEP" ] || break
  XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=$level" stage \
    "end-to-end timing at autotune level $level" "${SWEEP_TIMEOUT:-300}" python3 -m w2sjax bench \
    --sizes none --sweep "$BENCH_SWEEP" --seeds "${BENCH_SEEDS:-32}" --no-torch \
    --out "$WORK/autotune-$level" 2>&1 \
    | sed "s/^sweep /sweep (autotune level $level) /" | tee -a "$WORK/sweep-bench.txt" \
    || log "timing at autotune level $level failed or timed out"
done

if [ "${BENCH:-1}" = 0 ]; then
  echo "bench skipped (BENCH=0)" > "$WORK/bench.txt"
else
  # shellcheck disable=SC2086
  if stage bench 300 python3 -m w2sjax bench --out "$WORK/bench" ${BENCH_ARGS:-} 2>&1 \
    | tee "$WORK/bench.txt"; then :; else
    log "bench failed or timed out; its finished buckets are kept"
  fi
  bench_json
fi

if [ -n "${BENCH_D:-}" ]; then
  # Cost against d under each noise sampler (docs/BENCHMARKS.md, "Cost against d").
  stage "bench over d" "${BENCH_D_TIMEOUT:-400}" python3 -m w2sjax bench --over-d --out "$OUT" \
    2>&1 | tee "$WORK/bench-d.txt" | grep -E "^\|"
fi

log summary
cat "$WORK/tests.txt"
grep -E "ceiling|n_st=|skipped" "$WORK/bench.txt"
[ -f "$WORK/sweep-bench.txt" ] && grep -E "^sweep " "$WORK/sweep-bench.txt"
for txt in "$WORK"/boundary-*.txt; do
  [ -f "$txt" ] || continue
  echo "-- $(basename "$txt" .txt)"
  grep -v -E "^(Compiling|Finished)|Argument mapping" "$txt" | tail -6
  name=${txt##*/boundary-}
  cat "$WORK/sweeps/${name%.txt}"/{boundary,slopes}.csv 2>/dev/null
  grep -oE "Finished XLA compilation of jit\((_begin|_advance|_look)\) in [0-9.]*" "$txt" \
    | awk '{n++; s+=$NF} END {if (n) printf "%d compiles of simulate, %.0f s in all\n", n, s}'
done
for csv in "$WORK"/*.csv; do
  [ -f "$csv" ] || continue
  echo "-- $(basename "$csv")"
  python3 -c "
import pandas as pd, sys
t = pd.read_csv(sys.argv[1])
cols = [c for c in t.columns if not c.endswith(('_lo', '_hi')) and c != 'device']
print(t[cols].round(3).to_string(index=False))" "$csv"
done
ls -l "$OUT"
files=$(find "$OUT" -type f | wc -l)
[ "$files" -gt 8 ] && log "warning: $files files under \$OUT; the device tool brings back 8"
true
