#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) from its committed seed corpus and prints
# one line per target: executions, executions/s, coverage, corpus size, and whether it found a
# crash (RELIABILITY.md records the runs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). SANITIZER=address|none (default none: a panic, an overflow check or
# a debug assertion is what these targets look for, and the C++ HNSW reader runs without ASan's 2x
# cost; use address for that reader). New inputs go to fuzz/work/TARGET (not committed), crashes
# to fuzz/artifacts/TARGET; to replay one: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(import_formats http_api store_codecs file_store model_artifacts hnsw_file configs)
fi
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/techshop-recs/fuzz-target}
SANITIZER=${SANITIZER:-none}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is required: cargo install cargo-fuzz" >&2; exit 2; }
cargo +nightly fuzz build --sanitizer "$SANITIZER" --debug-assertions >&2   # every target
mkdir -p logs
status=0
printf '%-16s %12s %10s %8s %8s  %s\n' target executions "exec/s" cov corpus result
for t in "${TARGETS[@]}"; do
  mkdir -p "work/$t" "artifacts/$t"
  log="logs/$t.log"
  set +e
  cargo +nightly fuzz run --sanitizer "$SANITIZER" --debug-assertions "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=4096 -timeout=60 \
    -artifact_prefix="artifacts/$t/" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(ls "work/$t" | wc -l)
  result=ok
  if [ $rc -ne 0 ]; then result="FAILED (exit $rc, see fuzz/$log)"; status=1; fi
  printf '%-16s %12s %10s %8s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus" "$result"
done
exit $status
