#!/usr/bin/env bash
# Serving at the ADR's scale (100,000 items, 500,000 users, each with 500 pre-computed candidates):
#  1. the library call alone (`Recommender::recommend`, no HTTP), file store and Redis store;
#  2. `recsys-serve` under an open-loop constant arrival rate (no coordinated omission): 1,000
#     requests/s for 60 s, then a rate sweep for the highest rate with P99 <= 50 ms; file store,
#     then Redis. Server and load generator share this machine, as the issue asks.
#
#   usage: benches/serve_load.sh
#   env:   BENCH_DIR (cache; default ~/.cache/techshop-recs/bench), USERS, ITEMS, EVENTS_PER_DAY,
#          MAX_EXAMPLES (training cap, default 300000), SECONDS_MAIN (60), SECONDS_STEP (15),
#          RATES (sweep, default 2000,3000,4000,5000,6000,8000), REDIS (redis://127.0.0.1:6379),
#          SKIP_HTTP=1 (library calls only), SKIP_REDIS=1 (file store only)
#
# Data, model and the stores are cached under BENCH_DIR (the same data as benches/ann_vs_faiss.sh),
# so a rerun only re-measures.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$HOME/.cache/techshop-recs/bench}
USERS=${USERS:-500000}
ITEMS=${ITEMS:-100000}
EVENTS=${EVENTS_PER_DAY:-10000000}
MAX_EXAMPLES=${MAX_EXAMPLES:-300000}
SECONDS_MAIN=${SECONDS_MAIN:-60}
SECONDS_STEP=${SECONDS_STEP:-15}
RATES=${RATES:-2000,3000,4000,5000,6000,8000}
REDIS=${REDIS:-redis://127.0.0.1:6379}
# shellcheck source=benches/release_bins.sh
source benches/release_bins.sh
# shellcheck source=benches/adr_model.sh
source benches/adr_model.sh
OUT="$MODEL_DIR/serve"
mkdir -p "$OUT"
adr_file_store
VERSION=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$MODEL_DIR/registry/CURRENT.json")
run_library() {
  echo "== library call: $1" >&2
  "$LOAD" library --registry "$MODEL_DIR/registry" --data "$WORK/data" --store "$2" --requests 20000 \
    --users "$USERS" --label "$1" | tee -a "$OUT/results.jsonl"
}
run_http() {
  [ "${SKIP_HTTP:-0}" = 1 ] && return 0
  local label=$1 store=$2
  echo "== HTTP: $label" >&2
  "$SERVE" --registry "$MODEL_DIR/registry" --data "$WORK/data" --store "$store" --listen 127.0.0.1:18080 \
    --config <(echo '{}') >"$OUT/server.out" 2>"$OUT/server.err" &
  local pid=$!
  for _ in $(seq 1 600); do grep -q listening "$OUT/server.out" 2>/dev/null && break; sleep 0.5; done
  "$LOAD" http --url http://127.0.0.1:18080 --rates 1000 --seconds "$SECONDS_MAIN" --users "$USERS" \
    --label "$label" | tee -a "$OUT/results.jsonl"
  "$LOAD" http --url http://127.0.0.1:18080 --rates "$RATES" --seconds "$SECONDS_STEP" --users "$USERS" \
    --label "$label" | tee -a "$OUT/results.jsonl"
  kill "$pid"; wait "$pid" || true
}
: >"$OUT/results.jsonl"
run_library file "file:$MODEL_DIR/store"
run_http file "file:$MODEL_DIR/store"
[ "${SKIP_REDIS:-0}" = 1 ] && exit 0
RURL="$REDIS#bench"
if [ "$("$TRAIN" store --store "$RURL" versions 2>/dev/null | grep -c "${VERSION:-none}" || true)" = 0 ]; then
  echo "== precompute into Redis ($RURL)" >&2
  timed "$TRAIN" -q precompute --data "$WORK/data" --registry "$MODEL_DIR/registry" \
    --store "$RURL" --ttl 86400 | tee "$MODEL_DIR/precompute-redis.json"
fi

run_library redis "$RURL"
run_http redis "$RURL"
echo "results: $OUT/results.jsonl" >&2
