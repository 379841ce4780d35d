#!/usr/bin/env bash
# Posts events for ever new user ids to a running recsys-serve as fast as it takes them and samples
# the server's resident memory: the memory bound of `session.max_users` (RELIABILITY.md). Before
# the bound, 4.6M new users took the server from 55 MB to 4.07 GB in 30 s.
#
#   benches/event_flood.sh DATA_DIR SECONDS MAX_USERS [MAX_USERS ...]
#
# DATA_DIR is a quickstart output (registry/ and store/ inside, e.g. examples/quickstart.sh OUT);
# one server run per MAX_USERS value. SERVE may name the recsys-serve binary (default: a release
# build through benches/release_bins.sh). Prints one line per sample and a JSON summary per run.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 seconds=$2
shift 2
if [ -z "${SERVE:-}" ]; then
  # shellcheck source=benches/release_bins.sh
  . benches/release_bins.sh
fi
for max_users in "$@"; do
  work=$(mktemp -d)
  # One address posting as fast as it can: the per-client limits of http.events off.
  printf '{"session": {"max_users": %s}, "http": {"events": {"per_second": 0, "per_item_per_hour": 0}}}' "$max_users" >"$work/config.json"
  "$SERVE" --registry "$data/registry" --store "file:$data/store" --listen 127.0.0.1:0 \
    --config "$work/config.json" >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
  base=$(sed -n 's/^listening on //p' "$work/out")
  python3 - "$base" "$pid" "$seconds" "$max_users" <<'PY'
import http.client, json, sys, time, urllib.parse
base, pid, seconds, max_users = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
start_rss, t0, users, samples, next_sample = rss_mb(), time.time(), 0, [], 0.0
batch = 1000
while time.time() - t0 < seconds:
    body = json.dumps([{"user_id": f"flood-{users + i}", "item_id": "P000001", "event_type": "view"} for i in range(batch)])
    conn.request("POST", "/api/v1/events", body, {"content-type": "application/json"})
    r = conn.getresponse(); r.read()
    if r.status != 202:
        sys.exit(f"status {r.status}")
    users += batch
    if time.time() - t0 >= next_sample:
        samples.append((round(time.time() - t0, 1), users, round(rss_mb(), 1)))
        print(f"  t={samples[-1][0]:>5}s users={users:>9,} rss={samples[-1][2]:>8.1f} MB", flush=True)
        next_sample += 2.0
end_rss = rss_mb()
print(json.dumps({"max_users": max_users, "seconds": seconds, "new_users_posted": users,
                  "events_per_second": round(users / seconds), "rss_start_mb": round(start_rss, 1),
                  "rss_end_mb": round(end_rss, 1), "rss_peak_sampled_mb": max(s[2] for s in samples + [(0, 0, end_rss)])}))
PY
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$work"
done
