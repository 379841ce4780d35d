#!/usr/bin/env bash
# Off-policy estimators on the click simulator, where the truth is known (issue 26): the
# quickstart's synthetic TechShop and its model (benches/sim_world.sh) serve through the real
# Recommender with epsilon-uniform exploration (EPSILON, default 0.3, over the top POOL, default
# 20), every request logged with its exact propensities; the target policy is the model's
# deterministic top 10 (OFFSET=0) or its second page (OFFSET=10). Prints two JSON objects:
#   accuracy  REQUESTS (default 1,000,000) logged requests: each estimator's |estimate - truth| / truth
#   coverage  REPLICATIONS (default 100) draws of REP_REQUESTS (default 20,000) requests: the share
#             of 95% bootstrap intervals (BOOTSTRAP resamples, default 200) containing the truth
#   usage: benches/ope_accuracy.sh     (BENCH_DIR=out/bench-simulate; reuses its data when there)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_DIR:-out/bench-simulate}
source benches/release_bins.sh
source benches/sim_world.sh
cargo bench -q --workspace --bench ope_accuracy -- --source simulator --data "$DATA" --registry "$REGISTRY" \
  --epsilon "${EPSILON:-0.3}" --pool "${POOL:-20}" --offset "${OFFSET:-0}" \
  --requests "${REQUESTS:-1000000}" --replications "${REPLICATIONS:-100}" --rep-requests "${REP_REQUESTS:-20000}" \
  --bootstrap "${BOOTSTRAP:-200}" --seed "${SEED:-1}"
