#!/usr/bin/env bash
# Model quality: two-tower vs popularity, per-category popularity and ALS (our MF baseline) through
# the same evaluation code, full ranking over the whole catalogue.
#   usage: benches/quality.sh [WORK_DIR] [DATA_DIR]
# Data sets: the synthetic TechShop (time split), Amazon Beauty 5-core (leave-one-out; published
# popularity HR@10 0.0152, SASRec 0.0605) and Ta-Feng (time split, last 14 days).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/techshop-quality}
DATA=${2:-../shared/data}
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
cargo build --release -q --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
rm -rf "$WORK"; mkdir -p "$WORK"

report() { # name, protocol, dataset dir, [model config file]
  local name=$1 protocol=$2 data=$3 config=()
  [ -n "${4:-}" ] && config=(--config "$4")
  /usr/bin/time -f "%e" -o "$WORK/$name.train-time" \
    "$BIN" -q train --data "$data" --registry "$WORK/$name-registry" --gates off --protocol "$protocol" "${config[@]}" \
    >"$WORK/$name.train.json" || true
  "$BIN" -q evaluate --data "$data" --registry "$WORK/$name-registry" --model current --protocol "$protocol" \
    --baselines popularity,category_popularity,mf >"$WORK/$name.eval.json"
  python3 - "$name" "$WORK/$name.eval.json" "$WORK/$name.train.json" "$WORK/$name.train-time" <<'PY'
import json, sys
name, ev, tr, tt = sys.argv[1:]
e = json.load(open(ev))
print(f"\n## {name} ({e['protocol']}, {e['users_evaluated']} users); two-tower training {open(tt).read().strip()} s")
print(f"{'model':<22}{'recall@20':>10}{'ndcg@20':>10}{'hr@10':>10}{'ndcg@10':>10}{'auc':>8}{'cov@20':>8}")
for m, v in e["models"].items():
    print(f"{m:<22}{v['recall@20']:>10.4f}{v['ndcg@20']:>10.4f}{v['hr@10']:>10.4f}{v['ndcg@10']:>10.4f}{v['auc']:>8.4f}{v['coverage@20']:>8.3f}")
tt = e["models"]["two_tower"]
for b in ("popularity", "mf"):
    print(f"two-tower / {b}: recall@20 x{tt['recall@20'] / max(e['models'][b]['recall@20'], 1e-12):.2f}, hr@10 x{tt['hr@10'] / max(e['models'][b]['hr@10'], 1e-12):.2f}")
PY
}

"$BIN" -q generate --out "$WORK/raw" >/dev/null
"$BIN" -q import --events "$WORK/raw/events" --items "$WORK/raw/items.parquet" --users "$WORK/raw/users.parquet" \
  --map user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page \
  --event-type event_type --out "$WORK/synthetic" >/dev/null
report synthetic time-split "$WORK/synthetic"

if [ -f "$DATA/amazon-2014-5core/Beauty.txt" ]; then
  "$BIN" -q import --events "$DATA/amazon-2014-5core/Beauty.txt" --format sequences \
    --items "$DATA/amazon-2014-5core/Beauty_item2attributes.json" \
    --map user=user,item=item,ts=position --ts-format unix --event-type purchase --out "$WORK/beauty" >/dev/null
  report amazon-beauty leave-one-out "$WORK/beauty"
fi
if [ -f "$DATA/ta-feng/ta_feng.csv.zip" ]; then
  "$BIN" -q import --events "$DATA/ta-feng/ta_feng.csv.zip" \
    --map user=CUSTOMER_ID,item=PRODUCT_ID,ts=TRANSACTION_DT,category=PRODUCT_SUBCLASS,line_price=SALES_PRICE,quantity=AMOUNT,age_bucket=AGE_GROUP,region=PIN_CODE \
    --ts-format %m/%d/%Y --event-type purchase --out "$WORK/ta-feng" >/dev/null
  # Grocery baskets: one epoch with 2,048 extra uniform negatives per batch (the defaults overfit
  # repeat purchases, which evaluation excludes; see benches/README.md).
  report ta-feng time-split "$WORK/ta-feng" examples/ta-feng-train.json
  report ta-feng-defaults time-split "$WORK/ta-feng"
fi
