#!/usr/bin/env bash
# Imports one Amazon 2014 5-core set (Beauty, Sports_and_Outdoors or Toys_and_Games, as shipped by
# the S3-Rec paper's repository: NAME.txt sequences + NAME_item2attributes.json).
# The files carry order, not time: an item's position in its user's sequence becomes its
# timestamp in seconds since the epoch, which keeps the order for leave-one-out evaluation.
#   usage: examples/import_amazon.sh [NAME] [DATA_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-Beauty}
DATA=${2:-../shared/data/amazon-2014-5core}
OUT=${3:-out/amazon-$NAME}
# --workspace: the feature set every build of the workspace shares (a `-p` build recompiles burn).
cargo build --release -q --workspace --bins
"${CARGO_TARGET_DIR:-target}/release/recsys-train" import \
  --events "$DATA/$NAME.txt" --format sequences \
  --items "$DATA/${NAME}_item2attributes.json" \
  --map user=user,item=item,ts=position --ts-format unix --event-type purchase --out "$OUT"
