#!/usr/bin/env bash
# Training throughput of our two-tower model vs the same architecture in TensorFlow Recommenders,
# on the same dataset, in one run. Creates its Python venv on first use (tensorflow-cpu,
# tensorflow-recommenders, pyarrow, pandas from PyPI).
#   usage: benches/two_tower_vs_tfrs.sh [DATASET_DIR] [WORK_DIR]
# Default dataset: the quickstart's synthetic TechShop (generated when missing).
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
echo '{"epochs": 1}' >"$WORK/config.json"
"$BIN" -q train --data "$DATA" --registry "$WORK/registry" --config "$WORK/config.json" --gates off >/dev/null
ours=$(python3 -c "import json,glob; print(json.load(open(glob.glob('$WORK/registry/*/data.json')[0]))['training']['samples_per_second'])")
theirs=$(TF_USE_LEGACY_KERAS=1 "$VENV/bin/python" benches/python/tfrs_two_tower.py "$DATA" --steps 60 2>/dev/null | tail -1 |
  python3 -c "import json,sys; print(json.load(sys.stdin)['samples_per_second'])")
python3 -c "print(f'two-tower training, batch 1024, history 100, 256-d: techshop-recs {$ours:,.0f} samples/s, TFRS {$theirs:,.0f} samples/s, ratio {$ours/$theirs:.2f}x')"
