#!/usr/bin/env bash
# Simulator speed: REQUESTS (default 1,000,000) simulated requests through the real Recommender,
# in process, on the quickstart's synthetic TechShop (5,000 users, 1,000 items, 14 days) with a
# two-epoch model, on THREADS (default 2) worker threads. The ADR target: 1M requests in <= 10 min
# on 2 cores. Prints the simulator's JSON (seconds, requests_per_second among the fields) and the
# process's wall and CPU time.
#   usage: benches/simulate.sh            (BENCH_DIR=out/bench-simulate; reuses its data when there)
#   REQUESTS=N THREADS=T POLICY=current|popular|VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_DIR:-out/bench-simulate}
REQUESTS=${REQUESTS:-1000000}
THREADS=${THREADS:-2}
POLICY=${POLICY:-current}
source benches/release_bins.sh
source benches/sim_world.sh
echo "== simulate: $REQUESTS requests, $THREADS threads, policy $POLICY ($(nproc) cores here)" >&2
/usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S, "max_rss_kb": %M}' \
  "$TRAIN" -q simulate --data "$OUT/data" --registry "$OUT/registry" --policy "$POLICY" \
  --requests "$REQUESTS" --threads "$THREADS" --seed 1
