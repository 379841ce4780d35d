#!/usr/bin/env bash
# techshop-recs end to end on the embedded defaults: build, generate a small synthetic TechShop
# export, import it into a dataset, compute point-in-time features.
#   usage: examples/quickstart.sh [OUT_DIR]        (default out/quickstart; PROFILE=dev for a debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/quickstart}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then flag=--release; dir=release; else flag=; dir=debug; fi
cargo build $flag -q -p recsys-train
BIN="${CARGO_TARGET_DIR:-target}/$dir/recsys-train"
rm -rf "$OUT"

echo "== generate: synthetic TechShop export (5,000 users, 1,000 items, 14 days)" >&2
"$BIN" generate --out "$OUT/raw"

echo "== import: warehouse export -> canonical dataset" >&2
"$BIN" import \
  --events "$OUT/raw/events" --items "$OUT/raw/items.parquet" --users "$OUT/raw/users.parquet" \
  --map user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page \
  --event-type event_type --out "$OUT/data"

echo "== features: as of the end of the data" >&2
"$BIN" features --data "$OUT/data" --as-of end --out "$OUT/features" >/dev/null
ls -l "$OUT/features" >&2
echo "done: dataset in $OUT/data, features in $OUT/features" >&2
