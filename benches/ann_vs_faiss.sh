#!/usr/bin/env bash
# Item retrieval at the ADR's scale: our exact scan, HNSW and IVF indexes (recsys-core::retrieval)
# vs faiss's IndexFlatIP, IndexHNSWFlat and IndexIVFFlat, top-500 by inner product, on the SAME vectors: the item
# embeddings of a two-tower model trained on synthetic TechShop data (100,000 items, 500,000
# users, one day of 10M events) and user-embedding queries (a seeded sample of users, embedded from
# their whole history: what the batch precompute queries with). Same thread count on both sides.
#
#   usage: benches/ann_vs_faiss.sh
#   env:   BENCH_DIR (cache; default ~/.cache/techshop-recs/bench), USERS, ITEMS, EVENTS_PER_DAY,
#          THREADS (2), QUERIES (2000), K (500), M (16), EF_ADD (128), EF (search sweep),
#          QUANT (f32[,f16,i8]: ours only), HNSW (on|off), IVF_LISTS (0 = 4·sqrt(items);
#          empty: no IVF), IVF_PROBES (sweep), REPEAT (timed runs per search, median: 5),
#          TARGET_RECALL (0.95),
#          MAX_EXAMPLES (cap on the training examples of the one epoch; default 0 = all)
#
# Generated data, the imported dataset, the trained model and the faiss venv are cached under
# BENCH_DIR and reused, so a rerun only re-measures. The split is leave-one-out: with one day of
# events the default time split (hold out the last day) leaves nothing to train on.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$HOME/.cache/techshop-recs/bench}
USERS=${USERS:-500000}
ITEMS=${ITEMS:-100000}
EVENTS=${EVENTS_PER_DAY:-10000000}
THREADS=${THREADS:-2}
QUERIES=${QUERIES:-2000}
K=${K:-500}
M=${M:-32}
EF_ADD=${EF_ADD:-256}
EF=${EF:-1000,2000,3000}
QUANT=${QUANT:-f32}
HNSW=${HNSW:-on}
IVF_LISTS=${IVF_LISTS-0}
IVF_PROBES=${IVF_PROBES:-16,32,64,128}
REPEAT=${REPEAT:-5}
TARGET_RECALL=${TARGET_RECALL:-0.95}
MAX_EXAMPLES=${MAX_EXAMPLES:-0}
VENV="$BENCH_DIR/venv-faiss"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

# --workspace: one feature set for every build of the workspace (a `-p` build recompiles burn)
cargo build --release -q --workspace --bins
TRAIN="${CARGO_TARGET_DIR:-target}/release/recsys-train"
# shellcheck source=benches/adr_model.sh
source benches/adr_model.sh
OUT="$MODEL_DIR/out"

mkdir -p "$OUT"
echo "== ours: exact and HNSW (RAYON_NUM_THREADS=$THREADS)" >&2
cargo bench -q --workspace --bench ann -- --data "$WORK/data" --registry "$MODEL_DIR/registry" --out "$OUT" \
  --queries "$QUERIES" --k "$K" --m "$M" --ef-add "$EF_ADD" --ef "$EF" --quant "$QUANT" --hnsw "$HNSW" \
  --ivf-lists "$IVF_LISTS" --ivf-probes "$IVF_PROBES" --repeat "$REPEAT" | tee "$OUT/ours.jsonl"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import faiss, numpy" 2>/dev/null; then
  echo "== venv: faiss-cpu, numpy" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q faiss-cpu numpy
fi
# faiss's IVF gets the list count ours used (ours resolves 0 to 4·sqrt(items)).
FAISS_LISTS=$(python3 -c 'import json,sys; print(",".join(sorted({str(r["lists"]) for r in map(json.loads, open(sys.argv[1])) if r.get("index") == "ivf"}, key=int)))' "$OUT/ours.jsonl")
[ "$HNSW" = on ] || EF=""
echo "== faiss: IndexFlatIP, IndexHNSWFlat, IndexIVFFlat (omp threads $THREADS)" >&2
"$VENV/bin/python" benches/python/faiss_ann.py "$OUT" --threads "$THREADS" --m "$M" --ef-construction "$EF_ADD" \
  --ef "$EF" --ivf-lists "$FAISS_LISTS" --ivf-probes "$IVF_PROBES" --repeat "$REPEAT" | tee "$OUT/faiss.jsonl"

python3 - "$OUT" "$TARGET_RECALL" <<'EOF'
import json, sys
out, target = sys.argv[1], float(sys.argv[2])
rows = [json.loads(l) for f in ("ours.jsonl", "faiss.jsonl") for l in open(f"{out}/{f}") if l.startswith("{")]
meta = json.load(open(f"{out}/meta.json"))
k = meta["k"]
print(f"\n{meta['items']:,} items x {meta['dim']}-d, {meta['queries']:,} user queries, top-{k}, "
      f"{rows[0]['threads']} threads")
print(f"| engine | index | quant | M / lists | ef_add | ef_search / probes | build s | queries/s | recall@{k} |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["index"] == "hnsw":
        print(f"| {r['engine']} | hnsw | {r['quantization']} | {r['m']} | {r['ef_add']} | {r['ef']} | "
              f"{r['build_s']:.1f} | ", end="")
    elif r["index"] == "ivf":
        print(f"| {r['engine']} | ivf | {r['quantization']} | {r['lists']} | - | {r['probes']} | "
              f"{r['build_s']:.1f} | ", end="")
    else:
        print(f"| {r['engine']} | {r['index']} | - | - | - | - | - | ", end="")
    print(f"{r['qps']:,.0f} | {r['recall']:.4f} |")

def best(engine, index, quant="f32", at=target):
    ok = [r for r in rows if r["engine"] == engine and r["index"] == index
          and r.get("quantization", "f32") == quant and r["recall"] >= at]
    return max(ok, key=lambda r: r["qps"]) if ok else None

oe, fe = best("ours", "exact"), best("faiss", "exact")
print()
if oe and fe:
    print(f"our exact / faiss IndexFlatIP: {oe['qps']:,.0f} / {fe['qps']:,.0f} queries/s = {oe['qps']/fe['qps']:.2f}x")
for at in sorted({target, 0.99}):
    oh, fh = best("ours", "hnsw", at=at), best("faiss", "hnsw", at=at)
    if oh and fh:
        print(f"our HNSW / faiss HNSW at recall@{k} >= {at}: {oh['qps']:,.0f} (ef {oh['ef']}, recall {oh['recall']:.4f})"
              f" / {fh['qps']:,.0f} (ef {fh['ef']}, recall {fh['recall']:.4f}) = {oh['qps']/fh['qps']:.2f}x")
    else:
        print(f"recall@{k} >= {at}: ours {'reached' if oh else 'not reached'}, faiss {'reached' if fh else 'not reached'}")
    if oh and oe:
        verdict = "meets" if oh["qps"] >= 5 * oe["qps"] else "misses"
        print(f"our HNSW / our exact at recall@{k} >= {at}: {oh['qps']/oe['qps']:.2f}x ({verdict} the >= 5x target)")
    oi, fi = best("ours", "ivf", at=at), best("faiss", "ivf", at=at)
    if oi and fi:
        print(f"our IVF / faiss IVF at recall@{k} >= {at}: {oi['qps']:,.0f} (probes {oi['probes']}, recall "
              f"{oi['recall']:.4f}) / {fi['qps']:,.0f} (probes {fi['probes']}, recall {fi['recall']:.4f}) = "
              f"{oi['qps']/fi['qps']:.2f}x")
    if oi and oe:
        verdict = "meets" if oi["qps"] >= 5 * oe["qps"] else "misses"
        print(f"our IVF / our exact at recall@{k} >= {at}: {oi['qps']/oe['qps']:.2f}x ({verdict} the >= 5x target)")
    elif oe and any(r["index"] == "ivf" for r in rows):
        print(f"our IVF: recall@{k} >= {at} not reached")
EOF
