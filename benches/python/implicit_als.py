"""Evaluate implicit's ALS on a techshop-recs dataset with the same leave-one-out protocol as
`recsys-train evaluate --protocol leave-one-out`: per user with >= 3 interactions (time order),
the last is the test item, the one before validation; ALS is fitted on everything else plus the
validation interactions (as the reference figures were), every item the user touched outside the
test is excluded, full ranking over the catalogue.

With --tune, the factors, alpha and regularisation are chosen by HR@10 on the validation split
(each user's second-to-last interaction, ALS fitted without it and without the test), then ALS
is refitted with the chosen settings as above: the same validation split `recsys-train train
--tune` uses, and the test is touched once.

usage: python implicit_als.py DATASET_DIR [--factors 128] [--alpha 40] [--reg 0.01] [--iterations 15] [--tune]
Prints one JSON line with hr@10, ndcg@10, recall@20, ndcg@20 and users (with --tune, also the grid).
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
    a.add_argument("--tune", action="store_true")
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
    def split(last):
        """Holds out each user's `last`-th interaction from the end (users with >= 3 in all)."""
        keep = np.ones(len(u), bool); held = []
        for s, e in zip(starts, ends):
            if e - s >= 3:
                keep[e - last:e] = False
                held.append((u[s], i[e - last]))
        return keep, held

    def fit_and_score(keep, held, factors, alpha, reg):
        rows, cols = u[keep], i[keep]
        ui = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
        ui.sum_duplicates()
        model = implicit.cpu.als.AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha,
                                                         iterations=a.iterations, random_state=42)
        t0 = time.perf_counter()
        model.fit(ui, show_progress=False)
        fit = time.perf_counter() - t0
        users = np.array([x[0] for x in held]); targets = np.array([x[1] for x in held])
        ids, _ = model.recommend(users, ui[users], N=20, filter_already_liked_items=True)
        return [(np.flatnonzero(r == t)[0] + 1) if t in r else 0 for r, t in zip(ids, targets)], fit

    hr = lambda ranks, k: float(np.mean([1.0 if 0 < r <= k else 0.0 for r in ranks]))
    ndcg = lambda ranks, k: float(np.mean([1.0 / np.log2(r + 1) if 0 < r <= k else 0.0 for r in ranks]))
    grid = []
    if a.tune:
        # Validation: the second-to-last interaction held out (with the test).
        keep_val, val = split(2)
        for factors in (64, 128, 256, 512):
            for alpha in (1.0, 10.0, 40.0):
                for reg in (0.01, 0.1, 1.0, 10.0):
                    ranks, _ = fit_and_score(keep_val, val, factors, alpha, reg)
                    grid.append({"factors": factors, "alpha": alpha, "reg": reg, "validation_hr@10": hr(ranks, 10)})
        best = max(grid, key=lambda g: g["validation_hr@10"])
        a.factors, a.alpha, a.reg = best["factors"], best["alpha"], best["reg"]
    keep, tests = split(1)
    hit_rank, fit = fit_and_score(keep, tests, a.factors, a.alpha, a.reg)
    out = {"hr@10": hr(hit_rank, 10), "ndcg@10": ndcg(hit_rank, 10), "recall@20": hr(hit_rank, 20),
           "ndcg@20": ndcg(hit_rank, 20), "users": len(tests), "fit_seconds": fit, "factors": a.factors,
           "alpha": a.alpha, "reg": a.reg}
    if grid:
        out["tuning"] = grid
    print(json.dumps(out))


if __name__ == "__main__":
    main()
