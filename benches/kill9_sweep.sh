#!/usr/bin/env bash
# kill -9 at random points (issue 28): each stage's command is killed POINTS times at a uniformly
# random moment of its normal run time; after every kill the dataset, registry, store or server must
# be in the old or the new consistent state (never a mix), and the rerun must complete.
#
#   usage: benches/kill9_sweep.sh [POINTS] [STAGES]
#   STAGES: comma-separated of import,train,precompute-file,precompute-redis,reload (default all)
#   env:    PROFILE=test (default; the binaries `cargo test` builds) | release, SEED (default 1),
#           WORK (default: a temporary directory), REDIS (default redis://127.0.0.1:6379)
#
# What "consistent" means per stage (checked after every kill, then after the rerun):
#   import            `info` reads the manifest; its event count is the old or the new one; every
#                     partition file it lists reads back (`features` over the whole dataset)
#   train             `registry list` reads; the current version is the old or a new one and passes
#                     `registry promote` (every file against its manifest's sha256)
#   precompute-*      `store versions` reads; the active version is the old or the new one and a
#                     user's list reads back from it
#   reload            recsys-serve killed during POST /admin/reload, restarted: ready, serving the
#                     registry's current version, answers 200
# Prints one line per stage: points, kills that landed mid-run, consistent states, reruns done.
set -euo pipefail
cd "$(dirname "$0")/.."
POINTS=${1:-50}
STAGES=${2:-import,train,precompute-file,precompute-redis,reload}
PROFILE=${PROFILE:-test}
SEED=${SEED:-1}
REDIS=${REDIS:-redis://127.0.0.1:6379}
case "$PROFILE" in
  test) dir=debug ;;
  release) dir=release ;;
  *) echo "PROFILE must be test or release" >&2; exit 2 ;;
esac
# shellcheck source=benches/pipeline_fixture.sh
source benches/pipeline_fixture.sh
rand_delay() { python3 -c "import random,sys; random.seed(int(sys.argv[1])); print(f'{random.uniform(0, float(sys.argv[2])):.3f}')" "$1" "$2"; }
# Runs "$@" in the background, kills it with SIGKILL after DELAY seconds; sets LANDED=1 when it
# was still running at that moment.
kill_after() {
  local delay=$1; shift
  "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then LANDED=1; else LANDED=0; fi
  wait "$pid" 2>/dev/null || true
}
timed() { local s; s=$(date +%s.%N); "$@" >/dev/null; python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$s" "$(date +%s.%N)"; }

report() { printf '%-18s points %3d  killed mid-run %3d  consistent %3d  reruns completed %3d\n' "$1" "$POINTS" "$2" "$3" "$4"; }

stage_import() {
  local d="$W/run/ds" landed=0 ok=0 rerun=0 t
  t=$(timed T import --events "$W/raw/events/events-2025-10-08.parquet" --map "$MAP" --event-type event_type --out "$(rm -rf "$d"; cp -r "$W/base/ds7" "$d"; echo "$d")")
  for p in $(seq 1 "$POINTS"); do
    rm -rf "$d"; cp -r "$W/base/ds7" "$d"
    kill_after "$(rand_delay "$SEED$p" "$t")" "$TRAIN" -q import --events "$W/raw/events/events-2025-10-08.parquet" --map "$MAP" --event-type event_type --out "$d"
    landed=$((landed + LANDED))
    local n; n=$(events_of "$d") || fail import "point $p: the dataset does not read"
    [ "$n" = "$OLD_EVENTS" ] || [ "$n" = "$NEW_EVENTS" ] || fail import "point $p: $n events, neither $OLD_EVENTS nor $NEW_EVENTS"
    T features --data "$d" --as-of end --out "$W/run/features" >/dev/null || fail import "point $p: a partition does not read back"
    ok=$((ok + 1))
    if [ "$n" = "$OLD_EVENTS" ]; then
      T import --events "$W/raw/events/events-2025-10-08.parquet" --map "$MAP" --event-type event_type --out "$d" >/dev/null
    fi
    [ "$(events_of "$d")" = "$NEW_EVENTS" ] || fail import "point $p: the rerun did not give $NEW_EVENTS events"
    rerun=$((rerun + 1))
  done
  report import "$landed" "$ok" "$rerun"
}

stage_train() {
  local r="$W/run/reg" landed=0 ok=0 rerun=0 t
  rm -rf "$r"; cp -r "$W/base/reg1" "$r"
  t=$(timed T train --data "$W/base/ds8" --registry "$r" --config examples/quick-train.json --gates off)
  for p in $(seq 1 "$POINTS"); do
    rm -rf "$r"; cp -r "$W/base/reg1" "$r"
    kill_after "$(rand_delay "$SEED$p" "$t")" "$TRAIN" -q train --data "$W/base/ds8" --registry "$r" --config examples/quick-train.json --gates off
    landed=$((landed + LANDED))
    local cur; cur=$(current_of "$r") || fail train "point $p: the registry does not read"
    [ -n "$cur" ] || fail train "point $p: no current version"
    T registry --registry "$r" promote "$cur" >/dev/null || fail train "point $p: current $cur fails its checksums"
    ok=$((ok + 1))
    T train --data "$W/base/ds8" --registry "$r" --config examples/quick-train.json --gates off >/dev/null
    local after; after=$(current_of "$r")
    [ "$after" != "$V1" ] || fail train "point $p: the rerun did not publish a new version"
    T registry --registry "$r" promote "$after" >/dev/null || fail train "point $p: the rerun's version fails its checksums"
    rerun=$((rerun + 1))
  done
  report train "$landed" "$ok" "$rerun"
}

stage_precompute() { # label store-url-maker
  local label=$1 landed=0 ok=0 rerun=0 t url
  fresh() {
    if [ "$label" = precompute-file ]; then
      rm -rf "$W/run/store"; cp -r "$W/base/store1" "$W/run/store"; url="file:$W/run/store"
    else
      url="$REDIS#kill9sweep"
      T precompute --data "$W/base/ds8" --registry "$W/base/reg1" --store "$url" >/dev/null
    fi
  }
  fresh
  t=$(timed T precompute --data "$W/base/ds8" --registry "$W/base/reg2" --store "$url")
  for p in $(seq 1 "$POINTS"); do
    fresh
    kill_after "$(rand_delay "$SEED$p" "$t")" "$TRAIN" -q precompute --data "$W/base/ds8" --registry "$W/base/reg2" --store "$url"
    landed=$((landed + LANDED))
    local a; a=$(active_of "$url") || fail "$label" "point $p: the store does not read"
    [ "$a" = "$V1" ] || [ "$a" = "$V2" ] || fail "$label" "point $p: active version '$a', neither $V1 nor $V2"
    T store --store "$url" get --user U0000007 --k 5 >/dev/null || fail "$label" "point $p: a list does not read back from $a"
    ok=$((ok + 1))
    T precompute --data "$W/base/ds8" --registry "$W/base/reg2" --store "$url" >/dev/null
    [ "$(active_of "$url")" = "$V2" ] || fail "$label" "point $p: the rerun did not activate $V2"
    rerun=$((rerun + 1))
  done
  report "$label" "$landed" "$ok" "$rerun"
}

stage_reload() {
  local landed=0 ok=0 rerun=0 tok="$W/run/token" r="$W/run/reg" s="$W/run/rstore"
  echo sweep-token > "$tok"
  rm -rf "$r" "$s"; cp -r "$W/base/reg2" "$r"; cp -r "$W/base/store1" "$s"
  start() {
    "$SERVE" --registry "$r" --store "file:$s" --admin-token-file "$tok" --listen 127.0.0.1:0 >"$W/run/serve.out" 2>"$W/run/serve.err" &
    SPID=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$W/run/serve.out" 2>/dev/null && break; sleep 0.1; done
    URL=$(sed -n 's/^listening on //p' "$W/run/serve.out")
  }
  get() { python3 -c "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())" "$1"; }
  for p in $(seq 1 "$POINTS"); do
    # Serve v1, make v2 current, reload and kill the server at a random moment of the reload.
    T registry --registry "$r" promote "$V1" >/dev/null
    start
    T registry --registry "$r" promote "$V2" >/dev/null
    python3 - "$URL" <<'PY' &
import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/admin/reload", method="POST", headers={"Authorization": "Bearer sweep-token"})
try: urllib.request.urlopen(req, timeout=10).read()
except Exception: pass
PY
    local client=$!
    sleep "$(rand_delay "$SEED$p" 0.3)"
    if kill -9 "$SPID" 2>/dev/null; then landed=$((landed + 1)); fi
    wait "$SPID" 2>/dev/null || true; wait "$client" 2>/dev/null || true
    start
    local ready; ready=$(get "$URL/readyz") || fail reload "point $p: not ready after the restart"
    echo "$ready" | grep -q "\"model_version\":\"$V2\"" || fail reload "point $p: serves $ready, not the current $V2"
    get "$URL/api/v1/recommendations?user_id=U0000007&k=5" >/dev/null || fail reload "point $p: no answer"
    ok=$((ok + 1)); rerun=$((rerun + 1))
    kill "$SPID"; wait "$SPID" 2>/dev/null || true
  done
  report reload "$landed" "$ok" "$rerun"
}

mkdir -p "$W/run"
IFS=, read -r -a list <<<"$STAGES"
for s in "${list[@]}"; do
  echo "== $s: $POINTS kills" >&2
  case "$s" in
    import) stage_import ;;
    train) stage_train ;;
    precompute-file|precompute-redis) stage_precompute "$s" ;;
    reload) stage_reload ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
