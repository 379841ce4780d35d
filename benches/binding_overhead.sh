#!/usr/bin/env bash
# Overhead of a binding call over the Rust call, for `recommend` (issue 6: <= 20 µs median).
# One run, one model, store and user sequence (U%07d of i % USERS), response cache off, one call
# at a time, release builds of all three:
#   rust    Recommender::recommend in process (the load bench's library mode)
#   python  techshop_recs.Recommender.recommend (the release cdylib, in the test venv)
#   node    await rec.recommend (the release addon)
# The three sides run in turn for ROUNDS rounds (this machine's speed drifts by tens of percent
# from one minute to the next; alternating puts every side under the same drift). Prints each
# run's JSON line, then per binding the median over rounds of its median, Rust's, the overhead
# (their difference) and the ratio.
#
#   usage: benches/binding_overhead.sh [REGISTRY DATA STORE USERS]
#   default: the quickstart's output (examples/quickstart.sh, run here when missing)
#   env:   REQUESTS (3000 per side and round), ROUNDS (5), TECHSHOP_PY_VENV (as bindings/python/test.sh)
#          PREBUILT=DIR: no cargo, take DIR/load, DIR/index.node and DIR/_native.abi3.so as built
#          (a machine without Rust: benches/binding_overhead_device.sh); NODE, PYTHON: interpreters;
#          SKIP_PYTHON=1: Rust and Node only
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-3000}
ROUNDS=${ROUNDS:-5}
if [ $# -ge 4 ]; then
  REGISTRY=$1 DATA=$2 STORE=$3 USERS=$4
else
  Q=out/quickstart
  # A cached quickstart from before store versions carried the online feature snapshot
  # (features.bin) would be refused by the Node addon, which has no dataset fallback: redo it.
  if [ ! -f "$Q/registry/CURRENT.json" ] || ! ls "$Q"/store/*/features.bin >/dev/null 2>&1; then
    rm -rf "$Q"
    PROFILE=release bash examples/quickstart.sh "$Q" >/dev/null
  fi
  REGISTRY=$Q/registry DATA=$Q/data STORE=file:$Q/store
  USERS=5000  # the quickstart's `generate` default
fi

NODE=${NODE:-node}
PYPKG=$(mktemp -d)
cp -r bindings/python/python/techshop_recs "$PYPKG/"
if [ -n "${PREBUILT:-}" ]; then
  LOAD=$PREBUILT/load
  cp "$PREBUILT/index.node" bindings/node/index.node
  cp "$PREBUILT/_native.abi3.so" "$PYPKG/techshop_recs/_native.abi3.so"
  PYTHON=${PYTHON:-python3}
else
  # shellcheck source=benches/release_bins.sh
  RELEASE_NODE=1 source benches/release_bins.sh
  # The Python package as maturin lays it out: python/techshop_recs plus the cdylib as _native.
  VENV=${TECHSHOP_PY_VENV:-$HOME/.cache/techshop-recs-py-venv}
  [ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q numpy; }
  cp "$TARGET/release/lib_native.so" "$PYPKG/techshop_recs/_native.abi3.so"
  PYTHON=${PYTHON:-$VENV/bin/python}
fi

# Features from the store, as every front serves by default (the npm addon has no `dataset` feature).
args=(--registry "$REGISTRY" --store "$STORE" --users "$USERS" --requests "$REQUESTS")
RESULTS=$(mktemp)
trap 'rm -rf "$PYPKG" "$RESULTS"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  "$LOAD" library "${args[@]}" --order sequential --label rust | tee -a "$RESULTS"
  [ -n "${SKIP_PYTHON:-}" ] || PYTHONPATH="$PYPKG" "$PYTHON" benches/python/binding_overhead.py "${args[@]}" | tee -a "$RESULTS"
  "$NODE" bindings/node/bench/overhead.js "${args[@]}" | tee -a "$RESULTS"
done
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def p50s(side):
    return [r["p50_us"] for r in runs if r.get("side", r.get("label")) == side]
rust = statistics.median(p50s("rust"))
for name in ("python", "node"):
    if not p50s(name):
        continue
    b = statistics.median(p50s(name))
    over = b - rust
    print(json.dumps({"binding": name, "rounds": len(p50s(name)), "rust_p50_us": round(rust, 1),
                      "binding_p50_us": round(b, 1), "overhead_p50_us": round(over, 1),
                      "ratio": round(b / rust, 3), "target_overhead_us": 20, "ok": over <= 20}))
PY
