# Sourced by the simulator benches (simulate.sh, ope_accuracy.sh, aa_simulator.sh): the
# quickstart's synthetic TechShop (5,000 users, 1,000 items, 14 days) imported into $OUT/data with
# a two-epoch model in $OUT/registry, built once and reused while $OUT/registry/CURRENT.json is
# there. Needs $TRAIN (benches/release_bins.sh) and $OUT; sets DATA and REGISTRY to their absolute
# paths (`cargo bench` runs a bench in its package's directory).
if [ ! -f "$OUT/registry/CURRENT.json" ]; then
  rm -rf "$OUT"
  "$TRAIN" -q generate --out "$OUT/raw" >/dev/null
  "$TRAIN" -q import --events "$OUT/raw/events" --items "$OUT/raw/items.parquet" --users "$OUT/raw/users.parquet" \
    --map user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page \
    --event-type event_type --out "$OUT/data" >/dev/null
  echo '{"epochs": 2}' >"$OUT/train.json"
  "$TRAIN" -q train --data "$OUT/data" --registry "$OUT/registry" --config "$OUT/train.json" --gates off >/dev/null
fi
DATA=$(realpath "$OUT/data")
REGISTRY=$(realpath "$OUT/registry")
