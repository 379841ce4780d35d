#!/usr/bin/env bash
# A/A tests on the click simulator's traffic (issue 26): DAYS (default 14) simulations of
# REQUESTS / DAYS requests (REQUESTS default 200,000) through the real Recommender write the
# exposure logs and the events; ab-report's collection attributes them per user after each day;
# RUNS (default 1,000) re-randomised 50/50 splits of those users are analysed as ab-report does at
# every daily look. Prints the false-positive rate of each lift at the last look (CTR, conversion,
# AOV, revenue per user; 5% expected), of the sample-ratio check, and of the CTR lift called at
# any of the looks with fixed and with --sequential (always-valid) intervals.
#   usage: benches/aa_simulator.sh     (BENCH_DIR=out/bench-simulate; reuses its data when there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_DIR:-out/bench-simulate}
source benches/release_bins.sh
source benches/sim_world.sh
cargo bench -q --workspace --bench aa_simulator -- --data "$DATA" --registry "$REGISTRY" \
  --requests "${REQUESTS:-200000}" --days "${DAYS:-14}" --runs "${RUNS:-1000}" --seed "${SEED:-1}"
