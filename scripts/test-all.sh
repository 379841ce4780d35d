#!/usr/bin/env bash
# Runs every test of techshop-recs: formatting, lints, Rust unit/integration/doc tests, the quickstart,
# then the Python binding (pytest, in a venv) and the Node binding (node --test) with their examples.
# Tests that talk to Redis expect it on 127.0.0.1:6379 (.ci/run starts it).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's start, with the seconds since this script began, on stderr (CI's time budget).
stage() { echo "== [${SECONDS}s] $*" >&2; }
stage fmt
cargo fmt --all --check
stage clippy
cargo clippy --workspace --all-targets -- -D warnings
stage "cargo test"
cargo test --workspace
stage quickstart
# The README's first command, end to end, with the binary `cargo test` just built (test profile)
# and 2 training epochs instead of 5 (the gates in examples/gates.json still apply).
PROFILE=test TRAIN_CONFIG=examples/quick-train.json ./examples/quickstart.sh "${TMPDIR:-/tmp}/techshop-quickstart-test"
# The bindings, built into the same target directory (bindings/*/test.sh document their settings).
stage "python binding"
bindings/python/test.sh
stage "node binding"
bindings/node/test.sh
stage done
