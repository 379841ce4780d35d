#!/usr/bin/env bash
# Training throughput of our two-tower model vs the same architecture in TensorFlow Recommenders,
# on the same dataset, in one run. Creates its Python venv on first use (tensorflow-cpu,
# tensorflow-recommenders, pyarrow, pandas from PyPI).
#   usage: [BATCH=1024] [MAX_EXAMPLES=0] [STEPS=60] [JIT=0|1] [PROTOCOL=time-split] benches/two_tower_vs_tfrs.sh [DATASET_DIR] [WORK_DIR]
# Default dataset: the quickstart's synthetic TechShop (generated when missing). MAX_EXAMPLES caps
# the examples of both sides (the same seeded sample size; 0 = all); JIT=1 also times TFRS with
# XLA (`jit_compile=True`) and takes the faster TFRS figure for the ratio.
# ADR scale (500,000 users, 100,000 items, one day of 10M events; the issue's reference run):
#   recsys-train generate --out RAW --users 500000 --items 100000 --events-per-day 10000000 --days 1
#   recsys-train import ... --out ADR   (as in benches/foundation.sh)
#   BATCH=4096 MAX_EXAMPLES=300000 JIT=1 PROTOCOL=leave-one-out benches/two_tower_vs_tfrs.sh ADR
# (one day of events leaves the time split nothing to train on).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-out/quickstart/data}
WORK=${2:-/tmp/techshop-tfrs}
VENV=${TECHSHOP_BENCH_VENV:-$HOME/.cache/techshop-recs/bench-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tensorflow-cpu tensorflow-recommenders pyarrow pandas
fi
[ -d "$DATA" ] || examples/quickstart.sh "$(dirname "$DATA")"
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
cargo build --release -q --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
rm -rf "$WORK"; mkdir -p "$WORK"
BATCH=${BATCH:-1024}
MAX_EXAMPLES=${MAX_EXAMPLES:-0}
STEPS=${STEPS:-60}
echo "{\"epochs\": 1, \"batch_size\": $BATCH, \"max_examples_per_epoch\": $MAX_EXAMPLES}" >"$WORK/config.json"
"$BIN" -q train --data "$DATA" --registry "$WORK/registry" --config "$WORK/config.json" --gates off \
  --protocol "${PROTOCOL:-time-split}" >/dev/null
ours=$(python3 -c "import json,glob; print(json.load(open(glob.glob('$WORK/registry/*/data.json')[0]))['training']['samples_per_second'])")
tfrs() { # extra flags
  TF_USE_LEGACY_KERAS=1 "$VENV/bin/python" benches/python/tfrs_two_tower.py "$DATA" --steps "$STEPS" --batch "$BATCH" \
    --max-examples "$MAX_EXAMPLES" "$@" 2>/dev/null | tail -1 |
    python3 -c "import json,sys; print(json.load(sys.stdin)['samples_per_second'])"
}
theirs=$(tfrs)
label="TFRS"
if [ "${JIT:-0}" = 1 ]; then
  xla=$(tfrs --jit)
  echo "TFRS tf.function: ${theirs%.*} samples/s, with XLA: ${xla%.*} samples/s"
  if python3 -c "import sys; sys.exit(0 if $xla > $theirs else 1)"; then theirs=$xla; label="TFRS+XLA"; fi
fi
python3 -c "print(f'two-tower training, batch $BATCH, history 100, 256-d: techshop-recs {$ours:,.0f} samples/s, $label {$theirs:,.0f} samples/s, ratio {$ours/$theirs:.2f}x')"
