#!/usr/bin/env bash
# Soak (issue 28): recsys-serve for MINUTES (default 30) at RATE requests/s (default 1,000, open
# loop, recsys-serve/benches/load.rs, response cache on as deployed), with events posted at
# EVENTS_RATE/s (default 100) and `POST /admin/reload` every RELOAD_SECONDS (default 300).
# Prints one JSON line per minute (requests, errors, shed, P50/P99, the server's resident memory)
# and a summary: errors in all, the worst minute's P99, RSS at the start and the end, and the RSS
# growth over the last 20 minutes (target: zero errors, P99 <= 100 ms every minute, growth <= 5%),
# and the events' answers by status.
#
# Before the soak, WARMUP_EVENTS events (default 50 per user: the sessions' cap) are posted as fast
# as the server takes them, so that the per-user state bounded by configuration (the sessions) is
# full when the soak starts, as in a server that has been up for a while; without it the soak
# measures the sessions filling (5,000 users x 50 events take 42 minutes at 100 events/s).
# WARMUP_EVENTS=0 skips it.
#
#   usage: benches/soak.sh [QUICKSTART_DIR]
#   env:   MINUTES (30), RATE (1000), EVENTS_RATE (100), RELOAD_SECONDS (300), USERS (5000), PIN (1),
#          WARMUP_EVENTS (50 x USERS)
#
# QUICKSTART_DIR (default ~/.cache/techshop-recs/overload) holds `registry/` and `store/`; made by
# examples/quickstart.sh (release) when missing. The events come from one address, as a load
# generator's do, so the per-client event limits (`http.events`) are off for this run. With two
# CPUs or more (PIN=1) the server runs on CPU 0, the load generator and the event poster on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
QS=${1:-$HOME/.cache/techshop-recs/overload}
MINUTES=${MINUTES:-30}
RATE=${RATE:-1000}
EVENTS_RATE=${EVENTS_RATE:-100}
RELOAD_SECONDS=${RELOAD_SECONDS:-300}
USERS=${USERS:-5000}
WARMUP_EVENTS=${WARMUP_EVENTS:-$((USERS * 50))}
# shellcheck source=benches/serve_bench.sh
source benches/serve_bench.sh
echo '{"http": {"events": {"per_second": 0, "per_item_per_hour": 0}}}' > "$OUT/config.json"
RECSYS_ADMIN_TOKEN=soak start_serve "$OUT/config.json"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
echo "{\"event\": \"start\", \"rss_kb\": $(rss_kb)}" > "$OUT/rss.jsonl"

# The warm-up: WARMUP_EVENTS events in batches of 500, the same users and items as the soak's.
"${ON_LOAD[@]}" python3 - "$URL" "$WARMUP_EVENTS" "$USERS" > "$OUT/warmup.json" <<'PY'
import http.client, json, sys, time, urllib.parse
url, total, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"]
status, start, n = {}, time.monotonic(), 0
while n < total:
    batch = [{"user_id": f"U{1 + (n + j) % users:07d}", "item_id": f"P{1 + (n + j) * 31 % 1000:06d}",
              "event_type": kinds[(n + j) % len(kinds)]} for j in range(min(500, total - n))]
    conn.request("POST", "/api/v1/events", json.dumps(batch), {"content-type": "application/json"})
    r = conn.getresponse(); r.read()
    status[str(r.status)] = status.get(str(r.status), 0) + len(batch)
    n += len(batch)
print(json.dumps({"warmup_events": total, "warmup_status": status,
                  "warmup_seconds": round(time.monotonic() - start, 1)}))
PY
echo "{\"event\": \"warm\", \"rss_kb\": $(rss_kb)}" >> "$OUT/rss.jsonl"

# The server's resident memory every 10 s.
( while kill -0 "$PID" 2>/dev/null; do
    echo "{\"t\": $(date +%s), \"rss_kb\": $(rss_kb)}" >> "$OUT/rss.jsonl"; sleep 10
  done ) &
# A reload every RELOAD_SECONDS; a failed one is recorded.
( while sleep "$RELOAD_SECONDS"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer soak" "$URL/admin/reload" || echo 000)
    echo "{\"t\": $(date +%s), \"reload\": $code}" >> "$OUT/reloads.jsonl"
  done ) &
# Events at EVENTS_RATE/s (one per request, paced; users and items of the quickstart).
"${ON_LOAD[@]}" python3 - "$URL" "$EVENTS_RATE" "$((MINUTES * 60))" "$USERS" > "$OUT/events.json" <<'PY' &
import http.client, json, sys, time, urllib.parse
url, rate, seconds, users = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
kinds = ["view", "view", "view", "click", "add_to_cart", "purchase"]
ok = failed = 0
status = {}
start = time.monotonic()
n = 0
while time.monotonic() - start < seconds:
    due = start + n / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    body = json.dumps({"user_id": f"U{1 + n * 7919 % users:07d}", "item_id": f"P{1 + n * 31 % 1000:06d}",
                       "event_type": kinds[n % len(kinds)]})
    try:
        conn.request("POST", "/api/v1/events", body, {"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status == 202: ok += 1
        else: failed += 1
        key = str(r.status)
    except Exception as e:
        failed += 1
        key = type(e).__name__
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
    status[key] = status.get(key, 0) + 1
    n += 1
print(json.dumps({"events_posted": ok, "events_failed": failed, "events_status": status,
                  "events_per_second": round(ok / (time.monotonic() - start), 1)}))
PY
EVENTS=$!
RATES=$(python3 -c "print(','.join(['$RATE'] * $MINUTES))")
"${ON_LOAD[@]}" "$LOAD" http --url "$URL" --rates "$RATES" --seconds 60 --users "$USERS" --threads 1 --label soak \
  > "$OUT/minutes.jsonl"
wait "$EVENTS" || true
echo "{\"event\": \"end\", \"rss_kb\": $(rss_kb)}" >> "$OUT/rss.jsonl"
kill "$PID"; wait "$PID" 2>/dev/null || true
python3 - "$OUT" "$MINUTES" <<'PY'
import json, sys, os
out, minutes = sys.argv[1], int(sys.argv[2])
rows = [json.loads(l) for l in open(f"{out}/minutes.jsonl")]
rss = [json.loads(l) for l in open(f"{out}/rss.jsonl")]
samples = [r for r in rss if "t" in r]
t0 = samples[0]["t"] if samples else 0
for m, r in enumerate(rows, 1):
    in_minute = [s["rss_kb"] for s in samples if (m - 1) * 60 <= s["t"] - t0 < m * 60] or [0]
    print(json.dumps({"minute": m, "requests": r["requests"], "errors": r["errors"], "shed": r["shed"],
                      "p50_ms": round(r["p50_ms"], 2), "p99_ms": round(r["p99_ms"], 2),
                      "rss_mb": round(max(in_minute) / 1024, 1)}))
reloads = [json.loads(l) for l in open(f"{out}/reloads.jsonl")] if os.path.exists(f"{out}/reloads.jsonl") else []
events = json.load(open(f"{out}/events.json"))
warmup = json.load(open(f"{out}/warmup.json"))
start_kb = next(r["rss_kb"] for r in rss if r.get("event") == "start")
warm_kb = next(r["rss_kb"] for r in rss if r.get("event") == "warm")
end_kb = next(r["rss_kb"] for r in rss if r.get("event") == "end")
last20 = [s["rss_kb"] for s in samples if s["t"] - t0 >= (minutes - 20) * 60]
growth = (max(last20) - last20[0]) / last20[0] if len(last20) > 1 else 0.0
print(json.dumps({
    "minutes": len(rows), "requests": sum(r["requests"] for r in rows),
    "errors": sum(r["errors"] + r["shed"] for r in rows),
    "worst_minute_p99_ms": round(max(r["p99_ms"] for r in rows), 2),
    "reloads": len(reloads), "reloads_failed": sum(1 for r in reloads if r["reload"] != 200),
    **events, **warmup,
    "rss_start_mb": round(start_kb / 1024, 1), "rss_warm_mb": round(warm_kb / 1024, 1),
    "rss_end_mb": round(end_kb / 1024, 1),
    "rss_growth_last_20_min": round(growth, 4),
}))
PY
