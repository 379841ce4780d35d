#!/usr/bin/env bash
# Training throughput of our two-tower model vs the same architecture in PyTorch
# (benches/python/torch_two_tower.py), on the same dataset and the same device, in one run:
# CUDA when the machine has an NVIDIA GPU, else the CPU.
#   usage: benches/two_tower_vs_torch.sh [DATASET_DIR] [WORK_DIR]
#   BIN=FILE        a prebuilt recsys-train (on a GPU machine without Rust: one built elsewhere
#                   with `cargo build --release --workspace --features recsys-train/cuda`)
#   BACKEND=cuda|cpu (default: cuda when nvidia-smi lists a GPU)
#   PYTHON=python3  an interpreter with torch and numpy (and pyarrow, unless TABLES is given)
#   TABLES=FILE.npz the dataset's arrays for PyTorch where pyarrow is missing
#                   (`python benches/python/torch_two_tower.py DATASET_DIR --save-tables FILE.npz`)
#   EXAMPLES=N examples per epoch for us and the example pool for PyTorch (default 200000),
#   EPOCHS=N (default 2), STEPS=N timed PyTorch steps (default 300)
#   TORCH_JSON=FILE PyTorch's report: written by the first run that names it, read by the later
#                   ones (several builds of ours against one PyTorch run on the same machine)
# Both sides skip their first 20 steps in the figure (CUDA kernel compilation, and autotuning in a
# `cuda-autotune` build) and report that warm-up separately.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-out/quickstart/data}
WORK=${2:-/tmp/techshop-torch}
PYTHON=${PYTHON:-python3}
EXAMPLES=${EXAMPLES:-200000}
EPOCHS=${EPOCHS:-2}
STEPS=${STEPS:-300}
if [ -z "${BACKEND:-}" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then BACKEND=cuda; else BACKEND=cpu; fi
fi
if [ -z "${BIN:-}" ]; then
  [ -d "$DATA" ] || examples/quickstart.sh "$(dirname "$DATA")"
  features=()
  [ "$BACKEND" = cuda ] && features=(--features recsys-train/cuda)
  # --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
  cargo build --release -q --workspace --bins "${features[@]}"
  BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
fi
rm -rf "$WORK"; mkdir -p "$WORK"
if [ "$BACKEND" = cuda ]; then
  # burn's CUDA backend dlopens libcuda and libnvrtc by their plain names; point those names at the
  # driver's libcuda.so.1 and at an nvrtc (PyTorch's wheels carry one), never at a toolkit stub.
  libs="$WORK/cuda-libs"; mkdir -p "$libs"
  site=$("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
  nvrtc=$(find /usr/local/cuda/ /usr/lib/x86_64-linux-gnu/ $site -name 'libnvrtc.so*' -not -path '*/stubs/*' 2>/dev/null |
    sort | head -1 || true)
  cuda=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}' || true)
  [ -n "$nvrtc" ] && ln -sf "$nvrtc" "$libs/libnvrtc.so" && ln -sf "$(dirname "$nvrtc")"/libnvrtc-builtins.so* "$libs/"
  [ -n "$cuda" ] && ln -sf "$cuda" "$libs/libcuda.so"
  echo "CUDA libraries: libcuda ${cuda:-not found}, nvrtc ${nvrtc:-not found}" >&2
  export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}"
fi
echo "{\"epochs\": $EPOCHS, \"max_examples_per_epoch\": $EXAMPLES}" >"$WORK/config.json"
# Not -q: its step lines (time since the start at steps 1, 2, 3, 5, 10, 20, then every tenth)
# show where a cold GPU spends its warm-up; kept in WORK/train.log.
# --item-index exact: the timing is the training's; the HNSW graph of a 100k catalogue would add a
# sequential build of half a minute to every run.
"$BIN" train --data "$DATA" --registry "$WORK/registry" --config "$WORK/config.json" \
  --backend "$BACKEND" --gates off --item-index exact >"$WORK/train.json" 2> >(tee "$WORK/train.log" >&2)
ours=$("$PYTHON" -c "import json,glob; t=json.load(open(glob.glob('$WORK/registry/*/data.json')[0]))['training']; print(t['samples_per_second'], t['warmup_seconds'], t['steps'])")
if [ -n "${TORCH_JSON:-}" ] && [ -s "$TORCH_JSON" ]; then
  echo "PyTorch's figure from $TORCH_JSON (an earlier run on this machine)" >&2
  cp "$TORCH_JSON" "$WORK/torch.json"
else
  "$PYTHON" benches/python/torch_two_tower.py "${TABLES:-$DATA}" --device "$BACKEND" --steps "$STEPS" \
    --max-examples "$EXAMPLES" >"$WORK/torch.json"
  [ -n "${TORCH_JSON:-}" ] && cp "$WORK/torch.json" "$TORCH_JSON"
fi
theirs=$("$PYTHON" -c "import json; t=json.load(open('$WORK/torch.json')); print(t['samples_per_second'], t['warmup_seconds'], t['device'])")
"$PYTHON" - "$ours" "$theirs" "$BACKEND" <<'EOF'
import sys
o, t, backend = sys.argv[1].split(), sys.argv[2].split(maxsplit=2), sys.argv[3]
print(f"two-tower training on {t[2]} (burn backend {backend}), batch 1024, history 100, 256-d: "
      f"techshop-recs {float(o[0]):,.0f} samples/s ({o[2]} steps, the first 20 timed apart as warm-up: {float(o[1]):.1f} s), "
      f"PyTorch {float(t[0]):,.0f} samples/s (warm-up {float(t[1]):.1f} s), ratio {float(o[0]) / float(t[0]):.2f}x")
EOF
# Where our steps after the warm-up went (a GPU's own work shows up mostly as read-back).
"$PYTHON" - "$WORK" <<'EOF'
import glob, json, sys
t = json.load(open(glob.glob(sys.argv[1] + "/registry/*/data.json")[0]))["training"]
p, n = t.get("phases"), t["steps"] - 20
if p and n > 0:
    parts = ", ".join(f"{k.replace('_', ' ')} {v / n * 1e3:.2f}" for k, v in p.items())
    print(f"  our step after warm-up, ms: {parts} (sum {sum(p.values()) / n * 1e3:.2f})")
EOF
