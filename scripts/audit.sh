#!/usr/bin/env bash
# `cargo audit` of Cargo.lock and fuzz/Cargo.lock against the RustSec advisories vendored in
# .ci/advisory-db (no network needed beyond the package registries; refresh them with
# scripts/update-advisories.sh). Ignored advisories and their reasons: .cargo/audit.toml. Any other
# vulnerability, unsound or unmaintained crate fails it. Installs cargo-audit (pinned) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.22.2
if ! cargo audit --version 2>/dev/null | grep -q "$VERSION"; then
  if ! cargo install -q cargo-audit --version "$VERSION" --locked; then
    if [ -n "${TECHSHOP_REQUIRE_TEST_DATA:-}" ]; then
      echo "could not install cargo-audit $VERSION" >&2
      exit 1
    fi
    echo "NOTICE: SKIPPED cargo audit: could not install cargo-audit $VERSION" >&2
    exit 0
  fi
fi
for lock in Cargo.lock fuzz/Cargo.lock; do
  cargo audit --db .ci/advisory-db --no-fetch --stale --file "$lock"
done
