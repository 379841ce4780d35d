#!/usr/bin/env bash
# CUDA training check on a lent GPU machine that has no Rust: `prepare` here, `run` there.
#   benches/gpu_run.sh prepare [DIR]   build recsys-train once per cargo feature in VARIANTS (release,
#                                      its own target dir so the workspace's feature set stays as it
#                                      is), strip and xz each as DIR/recsys-train-FEATURE.xz, and write
#                                      the PyTorch side's dataset arrays; DIR (default out/device,
#                                      git-ignored) is what to carry
#   benches/gpu_run.sh run [DIR]       on the GPU machine: unpack, generate the same synthetic
#                                      dataset (deterministic), then benches/two_tower_vs_torch.sh
#                                      once per entry of VARIANTS, in order
# VARIANTS: cargo features, one binary each (default "cuda": fusion, no autotuning; "cuda-autotune"
# adds cubecl's autotuning); at `run`, a feature named twice runs twice, the second time on the
# caches of the first (a warm start). Runs are numbered 1-cuda, 2-cuda, ...
# Environment: PYTHON (with torch and numpy there; with numpy, pandas and pyarrow here); EXAMPLES,
# EPOCHS, STEPS as two_tower_vs_torch.sh takes them; LIMIT=SECONDS bounds each run,
# DEADLINE=SECONDS (from the start of the script) all of them. PyTorch runs once, in the first
# run; the later ones compare with its figure. EXAMPLES a multiple of the batch (1024) keeps a
# partial last batch, a shape of its own to compile, out of a cold run's timed steps.
# Each variant keeps cubecl's caches (autotune results and compiled PTX) apart, in
# target/cubecl-FEATURE (a cubecl.toml written at the repository root points there). With $OUT set,
# each run's comparison line goes to $OUT/summary.txt and its files into ONE archive,
# $OUT/N-FEATURE.tgz (a lent machine sends back only a few files): N-FEATURE/ with the JSON
# reports, the training log (step times) and, with CUBECL_LOG=1, cubecl's compilation and autotune
# log, plus target/cubecl-FEATURE (copy the archive to DIR/cubecl-FEATURE.tgz to start that variant
# warm next time); nvidia-smi samples go to $OUT/gpu_util.csv. Each run also evaluates the model on
# the CPU and starts PyTorch: about 100 s on a 16-core machine besides the training, so give LIMIT
# at least 150.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: benches/gpu_run.sh prepare|run [DIR]}
DIR=${2:-out/device}
PYTHON=${PYTHON:-python3}
VARIANTS=${VARIANTS:-cuda}
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
    mkdir -p "$DIR"
    for v in $(printf '%s\n' $VARIANTS | sort -u); do
      CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo build --release -q -p recsys-cli --features "$v"
      strip -o "$DIR/recsys-train-$v" "$target/release/recsys-train"
      xz -T0 -6 -f "$DIR/recsys-train-$v"
    done
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    dataset "$target/release/recsys-train" "$tmp"
    "$PYTHON" benches/python/two_tower_data.py "$tmp/data" "$DIR/tables.npz"
    du -sh "$DIR"
    ;;
  run)
    work=$(mktemp -d)
    for v in $(printf '%s\n' $VARIANTS | sort -u); do
      "$PYTHON" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$DIR/recsys-train-$v.xz" "$work/recsys-train-$v"
      chmod +x "$work/recsys-train-$v"
    done
    nvidia-smi -L 2>/dev/null || echo "no NVIDIA GPU: comparing on the CPU"
    first=${VARIANTS%% *}
    dataset "$work/recsys-train-$first" "$work"
    smi=
    if [ -n "${OUT:-}" ] && command -v nvidia-smi >/dev/null; then
      nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 500 >"$OUT/gpu_util.csv" 2>/dev/null &
      smi=$!
    fi
    summary=/dev/null
    [ -n "${OUT:-}" ] && summary="$OUT/summary.txt"
    status=0
    i=0
    for v in $VARIANTS; do
      i=$((i + 1))
      run="$i-$v"
      # LIMIT=SECONDS bounds each comparison and DEADLINE=SECONDS (since the script started) all of
      # them, so the logs still reach $OUT on a lent machine's clock.
      bound=${LIMIT:-}
      if [ -n "${DEADLINE:-}" ]; then
        left=$((DEADLINE - SECONDS))
        [ "$left" -lt 30 ] && echo "== $run skipped: ${left} s left before DEADLINE" && continue
        if [ -z "$bound" ] || [ "$left" -lt "$bound" ]; then bound=$left; fi
      fi
      echo "== $run ($(date -u +%T), bound ${bound:-none} s)"
      cache="target/cubecl-$v"
      mkdir -p "$cache"
      if [ -f "$DIR/cubecl-$v.tgz" ]; then
        tar xzf "$DIR/cubecl-$v.tgz" "$cache" && echo "cubecl caches from $DIR/cubecl-$v.tgz" ||
          echo "no $cache in $DIR/cubecl-$v.tgz: starting cold"
      fi
      printf '[autotune]\ncache = { file = "%s" }\n[compilation]\ncache = { file = "%s" }\n' \
        "$PWD/$cache/autotune" "$PWD/$cache/ptx" >cubecl.toml
      files="$work/files/$run"
      mkdir -p "$files"
      unset CUBECL_DEBUG_LOG
      [ -n "${CUBECL_LOG:-}" ] && export CUBECL_DEBUG_LOG="$files/cubecl.log"
      limit=()
      [ -n "$bound" ] && limit=(timeout "$bound")
      BIN="$work/recsys-train-$v" PYTHON="$PYTHON" TABLES="$DIR/tables.npz" TORCH_JSON="$work/torch.json" \
        "${limit[@]}" benches/two_tower_vs_torch.sh "$work/data" "$work/bench-$run" |
        tee -a "$summary" || status=$?
      if [ -n "${OUT:-}" ]; then
        cp "$work/bench-$run/"*.json "$work/bench-$run/train.log" "$files/" 2>/dev/null || true
        cp "$work/bench-$run/registry/"*/data.json "$files/data.json" 2>/dev/null || true
        tar czf "$OUT/$run.tgz" -C "$work/files" "$run" -C "$PWD" "$cache"
      fi
    done
    rm -f cubecl.toml
    if [ -n "$smi" ]; then kill "$smi" 2>/dev/null || true; fi
    exit "$status"
    ;;
  *)
    echo "usage: benches/gpu_run.sh prepare|run [DIR]" >&2
    exit 2
    ;;
esac
