#!/usr/bin/env bash
# Accuracy of our two-tower model vs implicit's ALS (pip `implicit`) on the Amazon 2014 5-core sets
# of the shared notes (Beauty, Sports_and_Outdoors, Toys_and_Games; those present), leave-one-out,
# full ranking, in one run. ALS is tuned on the same validation split as ours (each user's
# second-to-last interaction; factors 64-512, alpha 1-40, regularisation 0.01-10, then refitted:
# benches/python/implicit_als.py --tune); ours is trained with OURS_ARGS (default `--tune 5m`, the
# validation split only; `OURS_ARGS=" "` for the defaults, or `--config FILE`).
#   usage: benches/two_tower_vs_implicit.sh [DATA_DIR] [WORK_DIR] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/amazon-2014-5core}
WORK=${2:-/tmp/techshop-implicit}
SEED=${3:-42}
OURS_ARGS=${OURS_ARGS:---tune 5m}
VENV=${TECHSHOP_BENCH_VENV:-$HOME/.cache/techshop-recs/bench-venv}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/python" -c "import implicit, pyarrow, scipy" 2>/dev/null || "$VENV/bin/pip" install -q implicit pyarrow scipy
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
[ -n "${BIN:-}" ] || { cargo build --release -q --workspace --bins; BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"; }
mkdir -p "$WORK"
echo "{\"seed\": $SEED}" >"$WORK/seed-$SEED.json"
for name in Beauty Sports_and_Outdoors Toys_and_Games; do
  [ -f "$DATA/$name.txt" ] || { echo "NOTICE: $DATA/$name.txt absent, skipped" >&2; continue; }
  [ -d "$WORK/$name" ] || "$BIN" -q import --events "$DATA/$name.txt" --format sequences \
    --items "$DATA/${name}_item2attributes.json" \
    --map user=user,item=item,ts=position --ts-format unix --event-type purchase --out "$WORK/$name" >/dev/null
  rm -rf "$WORK/$name-registry"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e" -o "$WORK/$name-$SEED.time" "$BIN" -q train --data "$WORK/$name" \
    --registry "$WORK/$name-registry" --protocol leave-one-out --gates off --item-index exact \
    --config "$WORK/seed-$SEED.json" $OURS_ARGS >"$WORK/$name-ours-$SEED.json"
  "$VENV/bin/python" benches/python/implicit_als.py "$WORK/$name" --tune >"$WORK/$name-implicit.json"
  python3 - "$name" "$SEED" "$WORK/$name-ours-$SEED.json" "$WORK/$name-implicit.json" "$WORK/$name-$SEED.time" <<'PY'
import json, sys
name, seed, ours_path, theirs_path, tt = sys.argv[1:]
o = json.load(open(ours_path)); ours = o["metrics"]; theirs = json.load(open(theirs_path))
t = o.get("tuning")
how = "defaults"
if t:
    ch = t["chosen"]
    how = f"--tune: {len(t['trials'])} trials, chose {json.dumps(ch['settings'])}"
print(f"== {name} (seed {seed}; ours {float(open(tt).read()):.0f} s, {how}; ALS factors {theirs['factors']}, "
      f"alpha {theirs['alpha']}, reg {theirs['reg']})")
for k in ("hr@10", "ndcg@10", "recall@20", "ndcg@20"):
    print(f"{k:<10} techshop-recs two-tower {ours[k]:.4f}   implicit ALS {theirs[k]:.4f}   ratio {ours[k] / theirs[k]:.2f}x")
PY
done
