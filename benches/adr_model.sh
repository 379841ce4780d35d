# Sourced by benches/ann_vs_faiss.sh, benches/serve_load.sh and benches/binding_overhead_device.sh:
# the ADR-scale synthetic TechShop data (generate, import) and a one-epoch two-tower model on it
# (leave-one-out split: one day of events leaves the time split nothing to train on), each step
# cached under BENCH_DIR behind a stamp file, so that a rerun of any of them only re-measures.
#
#   in:  BENCH_DIR, USERS, ITEMS, EVENTS, MAX_EXAMPLES (cap on the epoch's examples; 0 = all),
#        TRAIN (the recsys-train binary)
#   out: WORK (the data: $WORK/raw, $WORK/data), MODEL_DIR (the registry: $MODEL_DIR/registry),
#        and the function adr_file_store: the model's top-500 for every user in the embedded file
#        store $MODEL_DIR/store (cached the same way)
WORK="$BENCH_DIR/ann-u$USERS-i$ITEMS-e$EVENTS"
MODEL_DIR="$WORK/model-x$MAX_EXAMPLES"
mkdir -p "$WORK"
# Wall time and peak memory of a step (GNU time; wall time alone where it is not installed).
timed() {
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "   %es, %MKB" "$@"; else
    local start=$SECONDS
    "$@"
    echo "   $((SECONDS - start))s" >&2
  fi
}

if [ ! -f "$WORK/raw.done" ]; then
  echo "== generate: $USERS users, $ITEMS items, $EVENTS events, 1 day" >&2
  rm -rf "$WORK/raw"
  timed "$TRAIN" -q generate --out "$WORK/raw" --users "$USERS" --items "$ITEMS" \
    --events-per-day "$EVENTS" --days 1
  touch "$WORK/raw.done"
fi
if [ ! -f "$WORK/data.done" ]; then
  echo "== import" >&2
  rm -rf "$WORK/data"
  timed "$TRAIN" -q import \
    --events "$WORK/raw/events" --items "$WORK/raw/items.parquet" --users "$WORK/raw/users.parquet" \
    --map user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity,device=device,page=page \
    --event-type event_type --out "$WORK/data"
  touch "$WORK/data.done"
fi
if [ ! -f "$MODEL_DIR/done" ]; then
  echo "== train: one epoch (leave-one-out split; max_examples_per_epoch $MAX_EXAMPLES)" >&2
  rm -rf "$MODEL_DIR/registry"
  mkdir -p "$MODEL_DIR"
  echo "{\"epochs\": 1, \"max_examples_per_epoch\": $MAX_EXAMPLES}" >"$MODEL_DIR/config.json"
  timed "$TRAIN" train --data "$WORK/data" --registry "$MODEL_DIR/registry" \
    --config "$MODEL_DIR/config.json" --gates off --protocol leave-one-out | tee "$MODEL_DIR/train.json"
  touch "$MODEL_DIR/done"
fi

# The file store the serving benches read: precompute once per model (stamp file, as above).
adr_file_store() {
  # Also when the cached store predates the online feature snapshot (no features.bin): serving
  # without a dataset directory (the Node addon, `recsys-serve` without --data) needs it.
  if [ ! -f "$MODEL_DIR/store.done" ] || ! ls "$MODEL_DIR"/store/*/features.bin >/dev/null 2>&1; then
    echo "== precompute: top-500 for every user into the file store" >&2
    timed "$TRAIN" precompute --data "$WORK/data" --registry "$MODEL_DIR/registry" \
      --store "file:$MODEL_DIR/store" | tee "$MODEL_DIR/precompute.json"
    touch "$MODEL_DIR/store.done"
  fi
}
