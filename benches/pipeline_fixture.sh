# Sourced by the benches that break the offline pipeline on purpose (kill9_sweep.sh,
# disk_full.sh): the binaries of PROFILE's directory `dir` (set by the caller: debug or release),
# a work directory W (WORK or a temporary one), helpers reading the dataset, registry and store,
# and a small fixture made once per W:
#   raw/            generated events of 8 days, 1,500 users, 300 items
#   base/ds7, ds8   the dataset with 7 days, and with the 8th day imported (OLD_EVENTS, NEW_EVENTS)
#   base/reg1, reg2 a registry with one model (V1), and with a second one published (V2)
#   base/store1     a file store with V1's candidates active
TARGET=${CARGO_TARGET_DIR:-target}
TRAIN="$TARGET/$dir/recsys-train"
SERVE="$TARGET/$dir/recsys-serve"
[ -x "$TRAIN" ] && [ -x "$SERVE" ] || { echo "build first: $TRAIN, $SERVE" >&2; exit 2; }
W=${WORK:-$(mktemp -d)}
mkdir -p "$W"
MAP=user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity
T() { "$TRAIN" -q "$@"; }
fail() { echo "INCONSISTENT ($1): $2" >&2; exit 1; }
events_of() { "$TRAIN" info --data "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['num_events'])"; }
current_of() { "$TRAIN" registry --registry "$1" list | python3 -c "import json,sys; print(next((v['version'] for v in json.load(sys.stdin) if v.get('current')), ''))"; }
active_of() { "$TRAIN" store --store "$1" versions | python3 -c "import json,sys; print(json.load(sys.stdin)['active'] or '')"; }

echo "== fixture in $W" >&2
if [ ! -d "$W/base/reg2" ]; then
  rm -rf "$W/base"
  T generate --out "$W/raw" --users 1500 --items 300 --events-per-day 20000 --days 8 >/dev/null
  T import --events "$W"/raw/events/events-2025-10-0{1,2,3,4,5,6,7}.parquet --items "$W/raw/items.parquet" \
    --users "$W/raw/users.parquet" --map "$MAP" --event-type event_type --out "$W/base/ds7" >/dev/null
  cp -r "$W/base/ds7" "$W/base/ds8"
  T import --events "$W/raw/events/events-2025-10-08.parquet" --map "$MAP" --event-type event_type --out "$W/base/ds8" >/dev/null
  T train --data "$W/base/ds8" --registry "$W/base/reg1" --config examples/quick-train.json --gates off >/dev/null
  cp -r "$W/base/reg1" "$W/base/reg2"
  T train --data "$W/base/ds8" --registry "$W/base/reg2" --config examples/quick-train.json --gates off >/dev/null
  T precompute --data "$W/base/ds8" --registry "$W/base/reg1" --store "file:$W/base/store1" >/dev/null
fi
OLD_EVENTS=$(events_of "$W/base/ds7"); NEW_EVENTS=$(events_of "$W/base/ds8")
V1=$(current_of "$W/base/reg1"); V2=$(current_of "$W/base/reg2")

