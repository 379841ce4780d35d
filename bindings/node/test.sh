#!/usr/bin/env bash
# Builds the Node addon and runs the Node tests: bindings/node (binding, Rust/Node consistency,
# event-loop delay) and examples/storefront-bff. Honours CARGO_TARGET_DIR; the fixture uses the
# debug recsys-train and recsys-serve binaries there (built when missing).
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | node -pe 'JSON.parse(require("fs").readFileSync(0)).target_directory')}"

# The dev profile with the test profile's opt-level, as bindings/python/test.sh builds: both bindings
# then share the workspace crates' artifacts instead of rebuilding them for each.
export CARGO_PROFILE_DEV_OPT_LEVEL=${CARGO_PROFILE_DEV_OPT_LEVEL:-1}
start=$SECONDS
# The addon's crate alone, as `npm install` builds it (without recsys-serve's `dataset` feature:
# features from the store only), in the dev profile like the workspace's tests (its dependencies,
# burn included, have the same features and are shared), and the regenerated type definitions,
# which must match the checked-in index.d.ts.
npm ci --no-audit --no-fund --ignore-scripts
node build.js --dts --addon
if ! git -C "$root" diff --quiet -- bindings/node/index.d.ts; then
  echo "bindings/node/index.d.ts is out of date with src/lib.rs (regenerated; commit it)" >&2
  git -C "$root" --no-pager diff --stat -- bindings/node/index.d.ts >&2
  exit 1
fi
for bin in recsys-train recsys-serve; do
  [ -x "$CARGO_TARGET_DIR/debug/$bin" ] || cargo test --workspace --no-run -q
done
echo "node addon built in $((SECONDS - start)) s"

node --test --test-concurrency=1 test/
(cd "$root/examples/storefront-bff" && npm ci --no-audit --no-fund && node --test test/)
echo "node tests done in $((SECONDS - start)) s"
