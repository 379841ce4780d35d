#!/usr/bin/env bash
# The ADR's "traffic spike 3x" (issue 28): how much recsys-serve sustains, then three times that.
#  1. a rate sweep (open loop, recsys-serve/benches/load.rs) for R, the highest rate whose P99
#     stays within the ADR's 100 ms with nothing shed or failed;
#  2. 3 x R for SPIKE_SECONDS with load shedding at its defaults (`http.max_queue_ms` 50 and
#     `http.max_in_flight` 256), with the in-flight limit alone (the queueing-delay limit out of
#     reach), and with shedding off: how many requests were shed (503 with Retry-After) or failed,
#     and the P99 of the accepted ones;
#  3. R again right after each spike: does it recover at once.
# Every request is computed (response cache off). With two CPUs or more (PIN=1, the default) the
# server runs on CPU 0 and the load generator on CPU 1 (taskset), so that the generator's own work
# at 3x does not take the server's CPU; its `sent_late_p99_ms` says whether it kept to its
# schedule. Compare the spike rows with each other, not with another machine's figures.
#
#   usage: benches/overload.sh [QUICKSTART_DIR]
#   env:   RATES (sweep, default 1000,2000,3000,4000,5000,6000,8000), STEP_SECONDS (per sweep point and
#          recovery, default 15), SPIKE_SECONDS (default 20), USERS (default 5000), PIN (default 1),
#          CONNECTIONS (default 0: a request that finds every connection busy opens a new one, as
#          independent clients do; N: at most N connections, reused, as a pooling proxy in front
#          of the service; a request waits for a free one and the wait counts in its latency)
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
# shellcheck source=benches/serve_bench.sh
source benches/serve_bench.sh
serve() { # http config (JSON object): starts recsys-serve, sets URL and PID
  printf '{"cache": {"capacity": 0}, "http": %s}\n' "$1" > "$OUT/config.json"
  start_serve "$OUT/config.json"
}
load() { # label rates seconds
  "${ON_LOAD[@]}" "$LOAD" http --url "$URL" --rates "$2" --seconds "$3" --users "$USERS" --threads 1 --label "$1" \
    --connections "${CONNECTIONS:-0}"
}
serve '{}'
echo "== sweep: $RATES requests/s, $SECONDS_EACH s each${ON_SERVER:+ (server on CPU 0, load on CPU 1)}" >&2
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
load "spike, shedding at its defaults" "$SPIKE" "$SPIKE_SECONDS"
load "after the spike" "$R" "$SECONDS_EACH"
kill "$PID"; wait "$PID" 2>/dev/null || true
serve '{"max_queue_ms": 1000000000}'
load "spike, max_in_flight 256 alone" "$SPIKE" "$SPIKE_SECONDS"
load "after the spike (max_in_flight alone)" "$R" "$SECONDS_EACH"
kill "$PID"; wait "$PID" 2>/dev/null || true
serve '{"max_queue_ms": 1000000000, "max_in_flight": 1000000}'
load "spike, no shedding" "$SPIKE" "$SPIKE_SECONDS"
load "after the spike (no shedding)" "$R" "$SECONDS_EACH"
kill "$PID"; wait "$PID" 2>/dev/null || true
