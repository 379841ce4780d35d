#!/usr/bin/env bash
# techshop-recs end to end on the embedded defaults: build, generate a small synthetic TechShop
# export, import it into a dataset, compute point-in-time features, train and register the
# two-tower model, evaluate it against baselines, pre-compute candidates into the embedded store
# and read one user's recommendations back, then serve them over HTTP (recsys-serve) and query the
# recommendation, similar-items and events endpoints.
#   usage: examples/quickstart.sh [OUT_DIR]        (default out/quickstart)
#   PROFILE=release (default) | test (the optimised-dependencies build `cargo test` already made) | dev
#   TRAIN_CONFIG=FILE: TwoTowerConfig JSON for `train` (default: the model's defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/quickstart}
PROFILE=${PROFILE:-release}
case "$PROFILE" in
  release) dir=release ;;
  dev | test) dir=debug ;;
  *) echo "PROFILE must be release, test or dev, not $PROFILE" >&2; exit 2 ;;
esac
# The whole workspace's feature set (a `-p` build would unify features differently and rebuild burn);
# the test profile's binaries are the ones `cargo test --workspace` builds.
if [ "$PROFILE" = test ]; then
  cargo test --workspace --no-run -q
else
  cargo build --profile "$PROFILE" -q --workspace --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$dir/recsys-train"
SERVE="${CARGO_TARGET_DIR:-target}/$dir/recsys-serve"
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

echo "== train: two-tower, time split, gates from examples/gates.json, registry in $OUT/registry" >&2
"$BIN" train --data "$OUT/data" --registry "$OUT/registry" --gates examples/gates.json ${TRAIN_CONFIG:+--config "$TRAIN_CONFIG"}

echo "== evaluate: the current model beside popularity and matrix factorisation" >&2
"$BIN" evaluate --data "$OUT/data" --registry "$OUT/registry" --model current --baselines popularity,mf

echo "== precompute: top-500 candidates per user and 50 similar items per item, embedded store" >&2
"$BIN" precompute --data "$OUT/data" --registry "$OUT/registry" --store "file:$OUT/store"

echo "== store: recommendations for user U0000007" >&2
"$BIN" store --store "file:$OUT/store" get --user U0000007 --k 5

echo "== serve: recsys-serve on the registry and the store (PORT=${PORT:-0}: 0 picks a free port)" >&2
RECSYS_ADMIN_TOKEN=quickstart "$SERVE" --registry "$OUT/registry" --store "file:$OUT/store" \
  --listen "127.0.0.1:${PORT:-0}" >"$OUT/serve.out" 2>"$OUT/serve.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serve.err" >&2; exit 1; }
  sleep 0.2
done
URL=$(sed -n 's/^listening on //p' "$OUT/serve.out")
fetch() { # method path [json body]: prints the body, fails on an HTTP error
  python3 - "$@" <<'PY'
import json, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    print(json.dumps(json.load(r)))
PY
}
echo "-- GET /api/v1/recommendations?user_id=U0000007&k=5" >&2
fetch GET "$URL/api/v1/recommendations?user_id=U0000007&k=5"
echo "-- GET /api/v1/similar?item_id=P000001&k=5" >&2
fetch GET "$URL/api/v1/similar?item_id=P000001&k=5"
echo "-- POST /api/v1/events (U0000007 views P000001), then the recommendations again" >&2
fetch POST "$URL/api/v1/events" '{"user_id": "U0000007", "item_id": "P000001", "event_type": "view"}'
fetch GET "$URL/api/v1/recommendations?user_id=U0000007&k=5"
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
if [ "$PROFILE" = test ]; then
  echo "== embed: the same pipeline inside a Rust program (examples/rust/embed.rs)" >&2
  "${CARGO_TARGET_DIR:-target}/debug/examples/embed" "$OUT/registry" "file:$OUT/store" U0000007
fi
echo "done: dataset in $OUT/data, features in $OUT/features, models in $OUT/registry, candidates in $OUT/store; served by recsys-serve" >&2
