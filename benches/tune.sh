#!/usr/bin/env bash
# `recsys-train train --tune`: test metrics with the default settings vs settings tuned on the
# validation split inside the training period, per data set and seed, and how long tuning took.
#   usage: benches/tune.sh [BUDGET] [WORK_DIR] [DATA_DIR] [SEEDS]
# BUDGET: the --tune duration (default 10m); SEEDS: space-separated (default "42").
# Data sets (when present under DATA_DIR): Amazon Beauty 5-core (leave-one-out) and Ta-Feng
# (time split), imported as examples/import_amazon.sh and examples/import_ta_feng.sh do.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-10m}
WORK=${2:-/tmp/techshop-tune}
DATA=${3:-../shared/data}
SEEDS=${4:-42}
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
[ -n "${BIN:-}" ] || { cargo build --release -q --workspace --bins; BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"; }
mkdir -p "$WORK"

run() { # name, protocol, dataset dir, seed, extra args...
  local name=$1 protocol=$2 data=$3 seed=$4; shift 4
  echo "{\"seed\": $seed}" >"$WORK/seed-$seed.json"
  /usr/bin/time -f "%e" -o "$WORK/$name.time" \
    "$BIN" -q train --data "$data" --registry "$WORK/$name-registry" --gates off --item-index exact \
    --protocol "$protocol" --config "$WORK/seed-$seed.json" "$@" >"$WORK/$name.json"
  python3 - "$name" "$WORK/$name.json" "$WORK/$name.time" <<'PY'
import json, sys
name, path, tt = sys.argv[1:]
o = json.load(open(path))
m = o["metrics"]
line = (f"{name:<28} recall@20 {m['recall@20']:.4f}  ndcg@20 {m['ndcg@20']:.4f}  hr@10 {m['hr@10']:.4f}  "
        f"ndcg@10 {m['ndcg@10']:.4f}  cov@20 {m['coverage@20']:.3f}  total {float(open(tt).read()):.0f} s")
t = o.get("tuning")
if t:
    base = t["trials"][0]["settings"]
    ch = t["chosen"]
    diff = {k: v for k, v in ch["settings"].items() if base.get(k) != v}
    line += (f"\n{'':<28} tuning {t['seconds']:.0f} s, {len(t['trials'])} trials "
             f"({sum(x['status'] == 'pruned' for x in t['trials'])} pruned), stopped by {t['stopped_by']}; "
             f"chose trial {ch['trial']} ({t['metric']} {ch['validation']:.4f}): {json.dumps(diff)}")
print(line, flush=True)
PY
}

if [ -f "$DATA/amazon-2014-5core/Beauty.txt" ]; then
  [ -d "$WORK/beauty" ] || "$BIN" -q import --events "$DATA/amazon-2014-5core/Beauty.txt" --format sequences \
    --items "$DATA/amazon-2014-5core/Beauty_item2attributes.json" \
    --map user=user,item=item,ts=position --ts-format unix --event-type purchase --out "$WORK/beauty" >/dev/null
  for seed in $SEEDS; do
    run "beauty-defaults-$seed" leave-one-out "$WORK/beauty" "$seed"
    run "beauty-tune$BUDGET-$seed" leave-one-out "$WORK/beauty" "$seed" --tune "$BUDGET"
  done
fi
if [ -f "$DATA/ta-feng/ta_feng.csv.zip" ]; then
  [ -d "$WORK/ta-feng" ] || "$BIN" -q import --events "$DATA/ta-feng/ta_feng.csv.zip" \
    --map user=CUSTOMER_ID,item=PRODUCT_ID,ts=TRANSACTION_DT,category=PRODUCT_SUBCLASS,line_price=SALES_PRICE,quantity=AMOUNT,age_bucket=AGE_GROUP,region=PIN_CODE \
    --ts-format %m/%d/%Y --event-type purchase --out "$WORK/ta-feng" >/dev/null
  for seed in $SEEDS; do
    run "ta-feng-defaults-$seed" time-split "$WORK/ta-feng" "$seed"
    run "ta-feng-tune$BUDGET-$seed" time-split "$WORK/ta-feng" "$seed" --tune "$BUDGET"
  done
fi
