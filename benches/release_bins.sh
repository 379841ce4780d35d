# Sourced by the benches that time release binaries (serve_load.sh, binding_overhead.sh,
# binding_overhead_device.sh): one release build of the whole workspace with its one feature set
# (bindings included, so nothing rebuilds burn under another set), then sets
#   TARGET  the cargo target directory (CARGO_TARGET_DIR or ./target)
#   LOAD    the load bench's binary (recsys-serve/benches/load.rs), newest build
#   TRAIN   recsys-train;  SERVE  recsys-serve
# With RELEASE_NODE=1 it also builds the Node addon in release (bindings/node/index.node).
# Run from the repository root.
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q --workspace --bins --lib
cargo bench -q --workspace --bench load --no-run 2>/dev/null
LOAD=$(ls -t "$TARGET"/release/deps/load-* | grep -v '\.d$' | head -1)
TRAIN="$TARGET/release/recsys-train"
SERVE="$TARGET/release/recsys-serve"
if [ -n "${RELEASE_NODE:-}" ]; then
  (cd bindings/node && { [ -d node_modules ] || npm ci --no-audit --no-fund --ignore-scripts >/dev/null; })
  (cd bindings/node && node build.js --release 2>/dev/null)
fi
