#!/usr/bin/env bash
# Accuracy of our two-tower model vs implicit's ALS (pip `implicit`, 128 factors, alpha 40: the
# tuned reference) on Amazon Beauty 5-core, leave-one-out, full ranking, in one run.
#   usage: benches/two_tower_vs_implicit.sh [DATA_DIR] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/amazon-2014-5core}
WORK=${2:-/tmp/techshop-implicit}
VENV=${TECHSHOP_BENCH_VENV:-$HOME/.cache/techshop-recs/bench-venv}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -c "import implicit, pyarrow, scipy" 2>/dev/null || "$VENV/bin/pip" install -q implicit pyarrow scipy
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
cargo build --release -q --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
rm -rf "$WORK"; mkdir -p "$WORK"
"$BIN" -q import --events "$DATA/Beauty.txt" --format sequences --items "$DATA/Beauty_item2attributes.json" \
  --map user=user,item=item,ts=position --ts-format unix --event-type purchase --out "$WORK/beauty" >/dev/null
"$BIN" -q train --data "$WORK/beauty" --registry "$WORK/registry" --protocol leave-one-out --gates off >/dev/null
"$BIN" -q evaluate --data "$WORK/beauty" --registry "$WORK/registry" --model current --protocol leave-one-out >"$WORK/ours.json"
"$VENV/bin/python" benches/python/implicit_als.py "$WORK/beauty" >"$WORK/implicit.json"
python3 - "$WORK/ours.json" "$WORK/implicit.json" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["models"]["two_tower"]; theirs = json.load(open(sys.argv[2]))
for k in ("hr@10", "ndcg@10", "recall@20", "ndcg@20"):
    print(f"{k:<10} techshop-recs two-tower {ours[k]:.4f}   implicit ALS {theirs[k]:.4f}   ratio {ours[k] / theirs[k]:.2f}x")
PY
