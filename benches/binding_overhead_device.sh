#!/usr/bin/env bash
# benches/binding_overhead.sh on a machine that has no Rust (a lent server): `prepare` here, `run` there.
#   benches/binding_overhead_device.sh prepare [DIR]  build the release binaries (the workspace's one
#                                                     feature set, its usual target dir), strip them
#                                                     and xz them into DIR (default out/device-overhead,
#                                                     git-ignored), with this machine's node: carry DIR
#   benches/binding_overhead_device.sh run [DIR]      there: unpack, build the ADR-scale data set, model
#                                                     and file store (benches/adr_model.sh, as
#                                                     benches/serve_load.sh does), then run
#                                                     benches/binding_overhead.sh on them
# Environment at `run`: BENCH_DIR (where the data, model and store are built; default a new
# temporary directory: name one to reuse them in a second run, e.g. of other binaries), USERS,
# ITEMS, EVENTS_PER_DAY, MAX_EXAMPLES (benches/adr_model.sh's; default the ADR's scale), ROUNDS,
# REQUESTS (benches/binding_overhead.sh's), PYTHON (python3), NODE (the machine's node when it is
# version 20 or later, else the carried one), SKIP_PYTHON (default 1: the cdylib cargo builds links
# this machine's libpython3.11, which maturin's wheel does not; set it empty where the other machine
# has that library). With $OUT set, the log of every step goes to $OUT/overhead.log.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: benches/binding_overhead_device.sh prepare|run [DIR]}
DIR=${2:-out/device-overhead}
PYTHON=${PYTHON:-python3}

case "$MODE" in
  prepare)
    # shellcheck source=benches/release_bins.sh
    RELEASE_NODE=1 source benches/release_bins.sh
    mkdir -p "$DIR"
    strip -o "$DIR/recsys-train" "$TARGET/release/recsys-train"
    strip -o "$DIR/load" "$LOAD"
    strip -o "$DIR/index.node" bindings/node/index.node
    strip -o "$DIR/_native.abi3.so" "$TARGET/release/lib_native.so"
    cp "$(command -v node)" "$DIR/node"
    for f in recsys-train load index.node _native.abi3.so node; do xz -T0 -6 -f "$DIR/$f"; done
    du -sh "$DIR"
    ;;
  run)
    work=$(mktemp -d)
    for f in recsys-train load index.node _native.abi3.so node; do
      "$PYTHON" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$DIR/$f.xz" "$work/$f"
      chmod +x "$work/$f"
    done
    node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$node_major" -ge 20 ]; then NODE=${NODE:-node}; else NODE=${NODE:-$work/node}; fi
    log=/dev/null
    [ -n "${OUT:-}" ] && log="$OUT/overhead.log"
    {
      echo "== $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
      echo "== node $("$NODE" --version), $("$PYTHON" --version)"
      BENCH_DIR=${BENCH_DIR:-$work/bench} TRAIN=$work/recsys-train USERS=${USERS:-500000} ITEMS=${ITEMS:-100000} \
        EVENTS=${EVENTS_PER_DAY:-10000000} MAX_EXAMPLES=${MAX_EXAMPLES:-300000}
      # shellcheck source=benches/adr_model.sh
      source benches/adr_model.sh
      adr_file_store
      PREBUILT=$work NODE=$NODE PYTHON=$PYTHON SKIP_PYTHON=${SKIP_PYTHON-1} \
        benches/binding_overhead.sh "$MODEL_DIR/registry" "$WORK/data" "file:$MODEL_DIR/store" "$USERS"
    } 2>&1 | tee "$log"
    ;;
  *)
    echo "usage: benches/binding_overhead_device.sh prepare|run [DIR]" >&2
    exit 2
    ;;
esac
