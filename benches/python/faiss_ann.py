"""faiss side of benches/ann_vs_faiss.sh: exact (IndexFlatIP) and HNSW (IndexHNSWFlat, inner
product) top-k on the vector files our bench wrote (items.f32, queries.f32: little-endian f32,
row-major; truth.u32: our exact top-k ids), with the same thread count. Prints one JSON object per
measurement, like ours.

    python faiss_ann.py DIR [--threads 2] [--m 16] [--ef-construction 128] [--ef 500,600,800]
        [--ivf-lists 256,1024 --ivf-probes 16,32,64]
"""

import argparse
import json
import os
import sys
import time

import faiss
import numpy as np


def mean_recall(found, truth):
    k = truth.shape[1]
    hits = 0
    for f, t in zip(found, truth):
        hits += np.intersect1d(f[f >= 0], t, assume_unique=False).size
    return hits / (k * truth.shape[0])


def timed(repeat, search):
    """Median wall time of `repeat` runs of search() and its last answer (as ours does)."""
    secs, out = [], None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = search()
        secs.append(time.perf_counter() - t)
    return sorted(secs)[len(secs) // 2], out


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--m", default="16")
    p.add_argument("--ef-construction", default="128")
    p.add_argument("--ef", default="500,600,800,1000")
    p.add_argument("--ivf-lists", default="", help="IndexIVFFlat list counts (nlist); empty: no IVF")
    p.add_argument("--ivf-probes", default="16,32,64", help="IndexIVFFlat nprobe sweep")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per search (median)")
    a = p.parse_args()

    meta = json.load(open(os.path.join(a.dir, "meta.json")))
    d, k, nq = meta["dim"], meta["k"], meta["queries"]
    xb = np.fromfile(os.path.join(a.dir, "items.f32"), dtype="<f4").reshape(-1, d)
    xq = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype="<f4").reshape(-1, d)
    truth = np.fromfile(os.path.join(a.dir, "truth.u32"), dtype="<u4").reshape(nq, k).astype(np.int64)
    xb, xq = np.ascontiguousarray(xb), np.ascontiguousarray(xq)
    faiss.omp_set_num_threads(a.threads)
    print(f"faiss {faiss.__version__}: {xb.shape[0]} items, {nq} queries, {d}-d, k={k}, "
          f"{a.threads} threads", file=sys.stderr)

    flat = faiss.IndexFlatIP(d)
    flat.add(xb)
    flat.search(xq[:10], k)  # warm up
    secs, (_, ids) = timed(a.repeat, lambda: flat.search(xq, k))
    emit({"engine": "faiss", "index": "exact", "items": xb.shape[0], "queries": nq, "k": k,
          "threads": a.threads, "search_s": secs, "qps": nq / secs,
          "recall": mean_recall(ids, truth)})

    efs = [int(x) for x in a.ef.split(",") if x]  # empty: no HNSW
    for m in [int(x) for x in a.m.split(",")] if efs else []:
        for efc in [int(x) for x in a.ef_construction.split(",")]:
            index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = efc
            t = time.perf_counter()
            index.add(xb)
            build_s = time.perf_counter() - t
            index.hnsw.efSearch = 500
            index.search(xq[:10], k)  # warm up
            for ef in efs:
                index.hnsw.efSearch = ef
                secs, (_, ids) = timed(a.repeat, lambda: index.search(xq, k))
                emit({"engine": "faiss", "index": "hnsw", "quantization": "f32", "m": m,
                      "ef_add": efc, "ef": ef, "build_s": build_s, "queries": nq, "k": k,
                      "threads": a.threads, "search_s": secs, "qps": nq / secs,
                      "recall": mean_recall(ids, truth)})

    for nlist in [int(x) for x in a.ivf_lists.split(",") if x]:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        index.train(xb)
        index.add(xb)
        build_s = time.perf_counter() - t
        index.nprobe = 1
        index.search(xq[:10], k)  # warm up
        for probes in [int(x) for x in a.ivf_probes.split(",")]:
            index.nprobe = probes
            secs, (_, ids) = timed(a.repeat, lambda: index.search(xq, k))
            emit({"engine": "faiss", "index": "ivf", "quantization": "f32", "lists": nlist,
                  "probes": probes, "build_s": build_s, "queries": nq, "k": k,
                  "threads": a.threads, "search_s": secs, "qps": nq / secs,
                  "recall": mean_recall(ids, truth)})


if __name__ == "__main__":
    main()
