#!/usr/bin/env bash
# The ADR's "traffic spike 3x" (issue 28): how much recsys-serve sustains, then three times that.
#  1. a rate sweep (open loop, recsys-serve/benches/load.rs) for R, the highest rate whose P99
#     stays within the ADR's 100 ms with nothing shed or failed;
#  2. 3 x R for SPIKE_SECONDS with load shedding at its default (`http.max_in_flight` 256) and,
#     for comparison, with it off (a limit nobody reaches): how many requests were shed (503 with
#     Retry-After) or failed, and the P99 of the accepted ones;
#  3. R again right after each spike: does it recover at once.
# Every request is computed (response cache off). Server and load generator share this machine,
# so compare the two spike rows with each other, not with another machine's figures.
#
#   usage: benches/overload.sh [QUICKSTART_DIR]
#   env:   RATES (sweep, default 1000,2000,3000,4000,5000,6000,8000), STEP_SECONDS (per sweep point and
#          recovery, default 15), SPIKE_SECONDS (default 20), USERS (default 5000)
#
# QUICKSTART_DIR (default ~/.cache/techshop-recs/overload) holds `registry/` and `store/`; made by
# examples/quickstart.sh (release) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
QS=${1:-$HOME/.cache/techshop-recs/overload}
RATES=${RATES:-1000,2000,3000,4000,5000,6000,8000}
SECONDS_EACH=${STEP_SECONDS:-15}
SPIKE_SECONDS=${SPIKE_SECONDS:-20}
USERS=${USERS:-5000}
# shellcheck source=benches/release_bins.sh
source benches/release_bins.sh
if [ ! -d "$QS/store" ]; then
  ./examples/quickstart.sh "$QS" >/dev/null
fi
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
serve() { # max_in_flight: starts recsys-serve, sets URL and PID
  printf '{"cache": {"capacity": 0}, "http": {"max_in_flight": %s}}\n' "$1" > "$OUT/config.json"
  "$SERVE" --registry "$QS/registry" --store "file:$QS/store" --config "$OUT/config.json" \
    --listen 127.0.0.1:0 >"$OUT/serve.out" 2>"$OUT/serve.err" &
  PID=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break; sleep 0.2; done
  URL=$(sed -n 's/^listening on //p' "$OUT/serve.out")
}
load() { # label rates seconds
  "$LOAD" http --url "$URL" --rates "$2" --seconds "$3" --users "$USERS" --threads 1 --label "$1"
}
serve 256
echo "== sweep: $RATES requests/s, $SECONDS_EACH s each" >&2
load sweep "$RATES" "$SECONDS_EACH" | tee "$OUT/sweep.jsonl"
R=$(python3 - "$OUT/sweep.jsonl" <<'PY'
import json, sys
ok = [r for r in map(json.loads, open(sys.argv[1])) if r["p99_ms"] <= 100 and r["errors"] == 0 and r["shed"] == 0]
print(max((r["rate"] for r in ok), default=0))
PY
)
if [ "$R" = 0 ]; then echo "no rate of the sweep held P99 <= 100 ms" >&2; exit 1; fi
SPIKE=$((3 * R))
echo "== sustained: $R requests/s; spike: $SPIKE requests/s for $SPIKE_SECONDS s, then $R again" >&2
load "spike, shedding at 256 in flight" "$SPIKE" "$SPIKE_SECONDS"
load "after the spike" "$R" "$SECONDS_EACH"
kill "$PID"; wait "$PID" 2>/dev/null || true
serve 1000000
load "spike, no shedding" "$SPIKE" "$SPIKE_SECONDS"
load "after the spike (no shedding)" "$R" "$SECONDS_EACH"
kill "$PID"; wait "$PID" 2>/dev/null || true
