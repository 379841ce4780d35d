#!/usr/bin/env bash
# CUDA training check on a lent GPU machine that has no Rust: `prepare` here, `run` there.
#   benches/gpu_run.sh prepare [DIR]   build recsys-train with --features cuda (release, its own
#                                      target dir so the workspace's feature set stays as it is),
#                                      strip and xz it, and write the PyTorch side's dataset arrays;
#                                      DIR (default out/device, git-ignored) is what to carry (~30 MB)
#   benches/gpu_run.sh run [DIR]       on the GPU machine: unpack, generate the same synthetic
#                                      dataset (deterministic), then benches/two_tower_vs_torch.sh
# Environment: PYTHON (with torch and numpy there; with numpy, pandas and pyarrow here); EXAMPLES,
# EPOCHS, STEPS as two_tower_vs_torch.sh takes them; LIMIT=SECONDS bounds the comparison.
# With $OUT set, copies there the run's JSON reports, the training log (step times), nvidia-smi
# samples, and cubecl's autotune results as autotune.tgz (cubecl keeps them in target/autotune under
# the directory holding Cargo.toml): put that file in DIR to start the next run warm.
# CUBECL_LOG=1 also writes cubecl's compilation and autotune log to $OUT/cubecl.log.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: benches/gpu_run.sh prepare|run [DIR]}
DIR=${2:-out/device}
PYTHON=${PYTHON:-python3}
GEN=(--users 50000 --items 100000 --events-per-day 200000 --days 14)
MAP=user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page

dataset() { # BIN OUT_DIR
  "$1" -q generate --out "$2/raw" "${GEN[@]}" >/dev/null
  "$1" -q import --events "$2/raw/events" --items "$2/raw/items.parquet" --users "$2/raw/users.parquet" \
    --map "$MAP" --event-type event_type --out "$2/data" >/dev/null
}

case "$MODE" in
  prepare)
    target=${CUDA_TARGET_DIR:-$HOME/.cache/techshop-recs/target-cuda}
    CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=false \
      cargo build --release -q -p recsys-train --features cuda
    mkdir -p "$DIR"
    strip -o "$DIR/recsys-train" "$target/release/recsys-train"
    xz -T0 -6 -f "$DIR/recsys-train"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    dataset "$target/release/recsys-train" "$tmp"
    "$PYTHON" benches/python/two_tower_data.py "$tmp/data" "$DIR/tables.npz"
    du -sh "$DIR"
    ;;
  run)
    work=$(mktemp -d)
    "$PYTHON" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      "$DIR/recsys-train.xz" "$work/recsys-train"
    chmod +x "$work/recsys-train"
    nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU: comparing on the CPU"
    [ -f "$DIR/autotune.tgz" ] && tar xzf "$DIR/autotune.tgz" && echo "autotune cache from $DIR/autotune.tgz"
    if [ -n "${CUBECL_LOG:-}" ] && [ -n "${OUT:-}" ]; then export CUBECL_DEBUG_LOG="$OUT/cubecl.log"; fi
    dataset "$work/recsys-train" "$work"
    smi=
    if [ -n "${OUT:-}" ] && command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -lms 500 >"$OUT/gpu_util.csv" 2>/dev/null &
      smi=$!
    fi
    status=0
    # LIMIT=SECONDS bounds the comparison, so the logs still reach $OUT on a lent machine's clock.
    limit=()
    [ -n "${LIMIT:-}" ] && limit=(timeout "$LIMIT")
    BIN="$work/recsys-train" PYTHON="$PYTHON" TABLES="$DIR/tables.npz" \
      "${limit[@]}" benches/two_tower_vs_torch.sh "$work/data" "$work/bench" || status=$?
    if [ -n "$smi" ]; then kill "$smi" 2>/dev/null || true; fi
    if [ -n "${OUT:-}" ]; then
      cp "$work/bench/"*.json "$OUT/" 2>/dev/null || true
      cp "$work/bench/train.log" "$OUT/" 2>/dev/null || true
      [ -d target/autotune ] && tar czf "$OUT/autotune.tgz" target/autotune
      cp "$work/bench/registry/"*/data.json "$OUT/data.json" 2>/dev/null || true
    fi
    exit "$status"
    ;;
  *)
    echo "usage: benches/gpu_run.sh prepare|run [DIR]" >&2
    exit 2
    ;;
esac
