#!/usr/bin/env bash
# Disk full (issue 28): each stage writes onto a small tmpfs that fills up part-way, at POINTS
# different amounts of free space (from none to nearly what the stage needs). After every run:
# a failure is an error naming the file on the full file system and the cause ("No space left"),
# the dataset, registry or store is in its old or its new consistent state (never a mix), no
# temporary file or staging directory is left behind, and once space is freed the rerun completes.
#
#   usage: sudo benches/disk_full.sh [POINTS] [STAGES]      (root: it mounts a tmpfs)
#   STAGES: comma-separated of import,train,precompute-file,logs (default all)
#   env:    PROFILE=test (default; the binaries `cargo test` builds) | release, WORK (default: a
#           temporary directory; the fixture is made once per WORK)
#
#   import            the 8th day imported into a 7-day dataset on the full file system
#   train             a second model published into a registry on it
#   precompute-file   the second model's candidates into a file store on it
#   logs              recsys-serve with its event log and exposure log on a 64 KiB file system:
#                     recommendations keep answering 200; event posts are 202 or, while the log
#                     cannot be written, 503 (never 500, never acknowledged without being logged);
#                     after space is freed the logs hold no partial line, every acknowledged event
#                     is in the event log, and `recsys-train import` reads them all.
# Prints one line per stage: points, runs that hit the full disk, consistent states, reruns done.
set -euo pipefail
cd "$(dirname "$0")/.."
POINTS=${1:-10}
STAGES=${2:-import,train,precompute-file,logs}
PROFILE=${PROFILE:-test}
case "$PROFILE" in
  test) dir=debug ;;
  release) dir=release ;;
  *) echo "PROFILE must be test or release" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "disk_full.sh mounts a tmpfs: run it as root" >&2; exit 2; }
# shellcheck source=benches/pipeline_fixture.sh
source benches/pipeline_fixture.sh
M="$W/full"
mkdir -p "$M" "$W/run"
trap 'umount "$M" 2>/dev/null || true' EXIT
used() { df --output=used -B1 "$M" | tail -1 | tr -d ' '; }
bytes() { du -sb "$1" | cut -f1; }
# A fresh tmpfs at M holding a copy of SRC as NAME (none when SRC is -), shrunk to what it uses
# plus SLACK bytes.
fill_with() { # src name slack
  umount "$M" 2>/dev/null || true
  mount -t tmpfs -o size=512m tmpfs "$M"
  [ "$1" = - ] || cp -r "$1" "$M/$2"
  mount -o remount,size=$(( $(used) + $3 )) "$M"
}
grow() { mount -o remount,size=512m "$M"; }
# The error of a failed run names a path on the full file system and the cause.
check_error() { # label point stderr-file
  grep -q "No space left" "$3" && grep -q "$M" "$3" \
    || fail "$1" "point $2: the error does not name the file and the cause: $(head -c 600 "$3")"
}
no_leftovers() { # label point
  local left; left=$(find "$M" \( -name '.tmp-*' -o -name '.staging-*' -o -name '*.tmp' \) | head -5)
  [ -z "$left" ] || fail "$1" "point $2: left behind: $left"
}
slack_of() { python3 -c "import sys; print(int(sys.argv[1]) * int(sys.argv[2]) // (int(sys.argv[3]) + 1))" "$1" "$2" "$POINTS"; }
report() { printf '%-16s points %3d  hit the full disk %3d  consistent %3d  reruns completed %3d\n' "$1" "$POINTS" "$2" "$3" "$4"; }

stage_import() {
  local need full=0 ok=0 rerun=0 n
  need=$(( $(bytes "$W/base/ds8") - $(bytes "$W/base/ds7") ))
  import_day8() { "$TRAIN" -q import --events "$W/raw/events/events-2025-10-08.parquet" --map "$MAP" --event-type event_type --out "$M/ds"; }
  for p in $(seq 0 $((POINTS - 1))); do
    fill_with "$W/base/ds7" ds "$(slack_of "$need" "$p")"
    if ! import_day8 >/dev/null 2>"$W/run/err"; then full=$((full + 1)); check_error import "$p" "$W/run/err"; fi
    n=$(events_of "$M/ds") || fail import "point $p: the dataset does not read"
    [ "$n" = "$OLD_EVENTS" ] || [ "$n" = "$NEW_EVENTS" ] || fail import "point $p: $n events, neither $OLD_EVENTS nor $NEW_EVENTS"
    T features --data "$M/ds" --as-of end --out "$W/run/features" >/dev/null || fail import "point $p: a partition does not read back"
    no_leftovers import "$p"
    ok=$((ok + 1))
    grow
    [ "$n" = "$NEW_EVENTS" ] || import_day8 >/dev/null
    [ "$(events_of "$M/ds")" = "$NEW_EVENTS" ] || fail import "point $p: the rerun did not give $NEW_EVENTS events"
    rerun=$((rerun + 1))
  done
  report import "$full" "$ok" "$rerun"
}

stage_train() {
  local need full=0 ok=0 rerun=0 cur after
  need=$(( $(bytes "$W/base/reg2") - $(bytes "$W/base/reg1") ))
  train2() { "$TRAIN" -q train --data "$W/base/ds8" --registry "$M/reg" --config examples/quick-train.json --gates off; }
  for p in $(seq 0 $((POINTS - 1))); do
    fill_with "$W/base/reg1" reg "$(slack_of "$need" "$p")"
    if ! train2 >/dev/null 2>"$W/run/err"; then full=$((full + 1)); check_error train "$p" "$W/run/err"; fi
    cur=$(current_of "$M/reg") || fail train "point $p: the registry does not read"
    [ -n "$cur" ] || fail train "point $p: no current version"
    T registry --registry "$M/reg" promote "$cur" >/dev/null || fail train "point $p: current $cur fails its checksums"
    no_leftovers train "$p"
    ok=$((ok + 1))
    grow
    if [ "$cur" = "$V1" ]; then train2 >/dev/null; fi
    after=$(current_of "$M/reg")
    [ "$after" != "$V1" ] || fail train "point $p: the rerun did not publish a new version"
    T registry --registry "$M/reg" promote "$after" >/dev/null || fail train "point $p: the rerun's version fails its checksums"
    rerun=$((rerun + 1))
  done
  report train "$full" "$ok" "$rerun"
}

stage_precompute() {
  local need full=0 ok=0 rerun=0 a url="file:$M/store"
  rm -rf "$W/run/store"; cp -r "$W/base/store1" "$W/run/store"
  T precompute --data "$W/base/ds8" --registry "$W/base/reg2" --store "file:$W/run/store" >/dev/null
  need=$(( $(bytes "$W/run/store") - $(bytes "$W/base/store1") ))
  pre2() { "$TRAIN" -q precompute --data "$W/base/ds8" --registry "$W/base/reg2" --store "$url"; }
  for p in $(seq 0 $((POINTS - 1))); do
    fill_with "$W/base/store1" store "$(slack_of "$need" "$p")"
    if ! pre2 >/dev/null 2>"$W/run/err"; then full=$((full + 1)); check_error precompute-file "$p" "$W/run/err"; fi
    a=$(active_of "$url") || fail precompute-file "point $p: the store does not read"
    [ "$a" = "$V1" ] || [ "$a" = "$V2" ] || fail precompute-file "point $p: active version '$a', neither $V1 nor $V2"
    T store --store "$url" get --user U0000007 --k 5 >/dev/null || fail precompute-file "point $p: a list does not read back from $a"
    if [ "$a" = "$V1" ] && [ -e "$M/store/$V2" ]; then
      fail precompute-file "point $p: the failed version's directory $M/store/$V2 was left behind"
    fi
    no_leftovers precompute-file "$p"
    ok=$((ok + 1))
    grow
    [ "$a" = "$V2" ] || pre2 >/dev/null
    [ "$(active_of "$url")" = "$V2" ] || fail precompute-file "point $p: the rerun did not activate $V2"
    rerun=$((rerun + 1))
  done
  report precompute-file "$full" "$ok" "$rerun"
}

stage_logs() {
  local full=0 ok=0 rerun=0
  for p in $(seq 0 $((POINTS - 1))); do
    fill_with - - $(( (64 + 8 * p) * 1024 ))
    printf '{"event_log": "%s/events", "exposure_log": "%s/exposures", "http": {"events": {"per_second": 0, "per_item_per_hour": 0}}}\n' "$M" "$M" > "$W/run/logs.json"
    "$SERVE" --registry "$W/base/reg1" --store "file:$W/base/store1" --config "$W/run/logs.json" \
      --listen 127.0.0.1:0 >"$W/run/serve.out" 2>"$W/run/serve.err" &
    local spid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$W/run/serve.out" 2>/dev/null && break; sleep 0.1; done
    local url; url=$(sed -n 's/^listening on //p' "$W/run/serve.out")
    # Requests and event batches until the disk is full and some more; then space is freed
    # (the parent grows the file system when the client prints "full") and more batches follow.
    python3 - "$url" "$p" "$W/run/acked" "$M" > "$W/run/client.out" <<'PY' &
import http.client, json, sys, time, urllib.parse
url, point, acked_path, mount = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
def call(method, path, body=None):
    conn.request(method, path, body, {"content-type": "application/json"})
    r = conn.getresponse(); data = r.read()
    return r.status, data
acked, statuses, n, refused_since = [], {}, 0, None
phase = "filling"
while True:
    n += 1
    s, data = call("GET", f"/api/v1/recommendations?user_id=U{1 + n % 1500:07d}&k=10")
    if s != 200:
        print(json.dumps({"error": f"recommendations answered {s}: {data[:300]!r}"})); sys.exit(1)
    users = [f"df-{point}-{n}-{i}" for i in range(20)]
    body = json.dumps([{"user_id": x, "item_id": f"P{1 + (n + i) % 300:06d}", "event_type": "view"} for i, x in enumerate(users)])
    s, data = call("POST", "/api/v1/events", body)
    statuses[s] = statuses.get(s, 0) + 1
    if s == 202:
        acked += users
    elif s != 503:
        print(json.dumps({"error": f"events answered {s}: {data[:300]!r}"})); sys.exit(1)
    if phase == "filling" and s == 503:
        refused_since = n
        phase = "full"
    if phase == "full" and n - refused_since >= 50:
        print("full", flush=True); sys.stdout.flush()
        time.sleep(1.0)  # the parent grows the file system
        phase = "freed"; freed_at = n
    if phase == "freed" and n - freed_at >= 20:
        break
    if n > 20000:
        break
open(acked_path, "w").write("\n".join(acked))
print(json.dumps({"requests": n, "statuses": statuses, "acked": len(acked), "hit_full": refused_since is not None}))
PY
    local client=$!
    for _ in $(seq 1 600); do grep -q '^full' "$W/run/client.out" 2>/dev/null && break; kill -0 $client 2>/dev/null || break; sleep 0.1; done
    grow
    wait "$client" || fail logs "point $p: $(tail -1 "$W/run/client.out")"
    kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
    local result; result=$(tail -1 "$W/run/client.out")
    grep -q '"hit_full": true' <<<"$result" && full=$((full + 1))
    grep -q "No space left" "$W/run/serve.err" && grep -q "$M" "$W/run/serve.err" \
      || fail logs "point $p: the server's log does not name the file and the cause"
    # No partial line; every acknowledged event logged; the import reads them all.
    python3 - "$M" "$W/run/acked" <<'PY' || fail logs "point $p: the logs are not whole"
import csv, glob, json, sys
mount, acked = sys.argv[1], set(open(sys.argv[2]).read().split())
users = set()
for f in glob.glob(f"{mount}/events/*.csv"):
    rows = list(csv.reader(open(f)))
    assert rows[0][0] == "user_id", f
    for r in rows[1:]:
        assert len(r) == 8, (f, r)
        int(r[3])
        users.add(r[0])
missing = acked - users
assert not missing, f"{len(missing)} acknowledged events missing, e.g. {sorted(missing)[:3]}"
for f in glob.glob(f"{mount}/exposures/*.jsonl"):
    for line in open(f):
        json.loads(line)
PY
    rm -rf "$W/run/evds"
    local imported
    imported=$("$TRAIN" -q import --events "$M/events" --map "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity" \
      --event-type event_type --ts-format unix_ms --out "$W/run/evds" | python3 -c "import json,sys; print(json.load(sys.stdin)['rows_imported'])")
    [ "$imported" -ge "$(wc -w < "$W/run/acked")" ] || fail logs "point $p: import read $imported rows for $(wc -w < "$W/run/acked") acknowledged"
    ok=$((ok + 1)); rerun=$((rerun + 1))
  done
  report logs "$full" "$ok" "$rerun"
}

IFS=, read -r -a list <<<"$STAGES"
for s in "${list[@]}"; do
  echo "== $s: $POINTS points" >&2
  case "$s" in
    import) stage_import ;;
    train) stage_train ;;
    precompute-file) stage_precompute ;;
    logs) stage_logs ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
