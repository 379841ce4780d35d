"""Evaluate implicit's ALS on a techshop-recs dataset with the same leave-one-out protocol as
`recsys-train evaluate --protocol leave-one-out`: per user with >= 3 interactions (time order),
the last is the test item, the one before validation; ALS is fitted on everything else plus the
validation interactions (as the reference figures were), every item the user touched outside the
test is excluded, full ranking over the catalogue.

usage: python implicit_als.py DATASET_DIR [--factors 128] [--alpha 40] [--reg 0.01] [--iterations 15]
Prints one JSON line with hr@10, ndcg@10, recall@20, ndcg@20 and users.
"""
import argparse, json, os, time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp
import implicit


def main():
    a = argparse.ArgumentParser()
    a.add_argument("data"); a.add_argument("--factors", type=int, default=128); a.add_argument("--alpha", type=float, default=40.0)
    a.add_argument("--reg", type=float, default=0.01); a.add_argument("--iterations", type=int, default=15)
    a = a.parse_args()
    m = json.load(open(os.path.join(a.data, "_manifest.json")))
    files = [os.path.join(a.data, f) for p in m["partitions"].values() for f in p["files"]]
    t = pq.ParquetDataset(files).read(columns=["user_idx", "item_idx", "timestamp"])
    u = t["user_idx"].to_numpy(); i = t["item_idx"].to_numpy(); ts = t["timestamp"].cast("int64").to_numpy()
    order = np.lexsort((np.arange(len(u)), ts, u))  # by user, then time, then file order
    u, i = u[order], i[order]
    n_users, n_items = int(m["num_users"]), int(m["num_items"])
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    ends = np.r_[starts[1:], len(u)]
    keep = np.ones(len(u), bool); tests = []
    for s, e in zip(starts, ends):
        if e - s >= 3:
            keep[e - 1] = False
            tests.append((u[s], i[e - 1]))
    rows, cols = u[keep], i[keep]
    ui = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    ui.sum_duplicates()
    model = implicit.cpu.als.AlternatingLeastSquares(factors=a.factors, regularization=a.reg, alpha=a.alpha,
                                                     iterations=a.iterations, random_state=42)
    t0 = time.perf_counter()
    model.fit(ui, show_progress=False)
    fit = time.perf_counter() - t0
    users = np.array([x[0] for x in tests]); targets = np.array([x[1] for x in tests])
    ids, _ = model.recommend(users, ui[users], N=20, filter_already_liked_items=True)
    hit_rank = [(np.flatnonzero(r == t)[0] + 1) if t in r else 0 for r, t in zip(ids, targets)]
    hr = lambda k: float(np.mean([1.0 if 0 < r <= k else 0.0 for r in hit_rank]))
    ndcg = lambda k: float(np.mean([1.0 / np.log2(r + 1) if 0 < r <= k else 0.0 for r in hit_rank]))
    print(json.dumps({"hr@10": hr(10), "ndcg@10": ndcg(10), "recall@20": hr(20), "ndcg@20": ndcg(20),
                      "users": len(tests), "fit_seconds": fit, "factors": a.factors, "alpha": a.alpha}))


if __name__ == "__main__":
    main()
