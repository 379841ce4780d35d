#!/usr/bin/env bash
# Foundation speed benchmark at the ADR's scale (500,000 users, 100,000 items, 10M events/day).
# Whole-process figures from /usr/bin/time: wall seconds and peak resident memory.
#   usage: benches/foundation.sh [WORK_DIR] [DAYS]    (default /tmp/techshop-bench, 30 days)
# Targets (issue "Foundation"): generate one day <= 60 s; import of a 10M-row Parquet file
# >= 1M rows/s; features over 30 days <= 300 s and <= 8 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/techshop-bench}
DAYS=${2:-30}
# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
cargo build --release -q --workspace --bins
BIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
MAP=user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page
rm -rf "$WORK"; mkdir -p "$WORK"

measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.json"
  read -r wall kb <"$WORK/$name.time"
  printf '%-28s %8.1f s  %6.2f GiB\n' "$name" "$wall" "$(awk "BEGIN{print $kb/1048576}")"
}

echo "# foundation benchmark, $(nproc) cores, $DAYS days at ADR scale"
measure generate_1_day "$BIN" -q generate --out "$WORK/one" --users 500000 --items 100000 --events-per-day 10000000 --days 1
rows=$(python3 -c "import json;print(json.load(open('$WORK/generate_1_day.json'))['events'])")
measure import_1_day "$BIN" -q import --events "$WORK/one/events" --items "$WORK/one/items.parquet" \
  --users "$WORK/one/users.parquet" --map "$MAP" --event-type event_type --out "$WORK/one-data"
read -r iwall _ <"$WORK/import_1_day.time"
python3 -c "print(f'import rate: {$rows/$iwall/1e6:.2f} M rows/s over $rows rows (target >= 1.00)')"
rm -rf "$WORK/one" "$WORK/one-data"

measure generate_${DAYS}_days "$BIN" -q generate --out "$WORK/raw" --users 500000 --items 100000 --events-per-day 10000000 --days "$DAYS"
measure import_${DAYS}_days "$BIN" -q import --events "$WORK/raw/events" --items "$WORK/raw/items.parquet" \
  --users "$WORK/raw/users.parquet" --map "$MAP" --event-type event_type --out "$WORK/data"
rm -rf "$WORK/raw"
measure features_${DAYS}_days "$BIN" -q features --data "$WORK/data" --as-of end --out "$WORK/features"
du -sh "$WORK/data/events" | sed 's/^/dataset size: /'
