#!/usr/bin/env bash
# The GPU figures for the README, in one run of under 8 minutes:
#   (a) the GPU-relevant tests (micro-batches, recompute, mixed precision);
#   (b) ResNet-50 at 224 px, bfloat16, XLA: bare and end-to-end views/s and
#       peak memory (benchmarks/train_step.py, synthetic JPEGs, colour on
#       the device), batch 256, else 128 if 256 fails;
#   (c) peak memory at batch 128 plain, with K=4 micro-batches, with
#       --recompute_blocks and both, and plain at 32 (B/K, and the slope)
#       (benchmarks/memory.py, r50 at 224 px, bfloat16; a fresh process per
#       point costs ~30 s, so few points, and no XLA, whose compile in every
#       process would not fit the time), with its largest-batch estimates;
#   (d) host pipeline images/s on all host cores (benchmarks/host_pipeline.py).
# Each part has its own timeout (150 + 110 + 190 + 50 s; 60 s more only if
# batch 256 fails other than by timing out) and prints its wall time; the
# output goes to the terminal and to $OUT/accelerator_check.txt (OUT
# defaults to ./accelerator_check_out), the full logs beside it.
#
#   bash benchmarks/accelerator_check.sh             # on the GPU machine
#   bash benchmarks/accelerator_check.sh --dry_run   # tiny sizes, on a CPU
#                                                    # (or DRY_RUN=1)
# PYTHON selects the interpreter (default: python).

set -u
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry_run) DRY_RUN=1 ;;
    *) echo "accelerator_check.sh: unknown argument $arg; use --dry_run" \
         "or nothing." >&2; exit 2 ;;
  esac
done
OUT=${OUT:-./accelerator_check_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || {
  echo "accelerator_check.sh: cannot create OUT=$OUT; set OUT to a" \
    "writable folder." >&2; exit 2; }
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
REPORT="$OUT/accelerator_check.txt"
: > "$REPORT"
export TF_CPP_MIN_LOG_LEVEL=2

say() { echo "$@" | tee -a "$REPORT"; }

# part NAME TIMEOUT_S COMMAND...: runs it under `timeout`, keeps its full log
# in $OUT/NAME.log and the lines worth reporting (FILTER, an egrep pattern;
# empty: all) in the report.
FILTER=''
part() {
  local name=$1 limit=$2
  shift 2
  say ""
  say "== $name (timeout ${limit}s): $*"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  if [ -n "$FILTER" ]; then
    grep -E "$FILTER" "$OUT/$name.log" | tee -a "$REPORT"
  else
    tee -a "$REPORT" < "$OUT/$name.log" > /dev/null
    cat "$OUT/$name.log"
  fi
  local note="exit $rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="TIMED OUT after ${limit}s"
  say "-- $name: $note, wall $((SECONDS - start)) s (full log: $OUT/$name.log)"
  return "$rc"
}

if [ "$DRY_RUN" = 1 ]; then
  MODE="DRY RUN (tiny sizes on the CPU: tests the script, not the figures)"
  export CUDA_VISIBLE_DEVICES=''
  LIMIT_TESTS=300; LIMIT_STEP=300; LIMIT_FALLBACK=300; LIMIT_MEMORY=600
  LIMIT_HOST=300
  TESTS=(tests/test_recompute.py)
  STEP_FLAGS=(--config=r18_16px --batch_size=8 --steps=2 --warmup_steps=1
              --num_jpegs=16)
  STEP_FALLBACK=4
  MEMORY_FLAGS=(--sizes=r18:16:4 --microbatches=2 --steps=1)
  HOST_FLAGS=(--repeats=1 --batch_size=4 --batches=2 --warmup=1
              --num_jpegs=8 --view_size=32)
else
  MODE="GPU check"
  LIMIT_TESTS=150; LIMIT_STEP=110; LIMIT_FALLBACK=60; LIMIT_MEMORY=190
  LIMIT_HOST=50
  TESTS=(tests/test_microbatch.py tests/test_recompute.py
         tests/test_precision.py)
  STEP_FLAGS=(--config=r50_224px --batch_size=256 --steps=20
              --warmup_steps=5 --num_jpegs=512)
  STEP_FALLBACK=128
  MEMORY_FLAGS=(--sizes=r50:224:128 --microbatches=4
                --mixed_precision=mixed_bfloat16)
  HOST_FLAGS=(--repeats=1 --batch_size=64 --batches=20 --warmup=3)
fi

TOTAL=$SECONDS
say "accelerator_check.sh: $MODE; $(date -u '+%Y-%m-%d %H:%M UTC')"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say "gpus: $( (nvidia-smi -L 2>/dev/null || echo none) | tr '\n' ';')"
say "host: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)," \
    "$(nproc) cores; python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

FILTER='passed|failed|error|skipped'
part tests "$LIMIT_TESTS" "$PYTHON" -m pytest -q -x "${TESTS[@]}"

FILTER='^config=|bare step|end to end|^machine:|Error'
part train_step "$LIMIT_STEP" "$PYTHON" benchmarks/train_step.py \
  "${STEP_FLAGS[@]}" --mixed_precision=mixed_bfloat16 --jit_compile \
  --input=jpegs --augment_on_device
rc=$?
# A failure that is not a timeout (out of memory, say): a smaller batch.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
  say "train_step failed; again at batch $STEP_FALLBACK"
  part train_step_fallback "$LIMIT_FALLBACK" "$PYTHON" \
    benchmarks/train_step.py "${STEP_FLAGS[@]}" --batch_size="$STEP_FALLBACK" \
    --mixed_precision=mixed_bfloat16 --jit_compile --input=jpegs \
    --augment_on_device
fi

FILTER='^\||PASS|FAIL|ESTIMATE|^  |allocator|failed'
part memory "$LIMIT_MEMORY" "$PYTHON" benchmarks/memory.py "${MEMORY_FLAGS[@]}"

FILTER='images/s|ours /|no reference|core'
part host_pipeline "$LIMIT_HOST" "$PYTHON" benchmarks/host_pipeline.py \
  --cores=0 "${HOST_FLAGS[@]}"

say ""
say "accelerator_check.sh: done in $((SECONDS - TOTAL)) s; report: $REPORT"
