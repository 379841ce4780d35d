"""Training examples for the rival two-tower implementations (TFRS, PyTorch), built from a
techshop-recs dataset directory exactly as `recsys_core::model::trainer::examples` frames them:
one example per click / add-to-cart / purchase, with the user's last `history` events strictly
before the target's timestamp (most recent first) and event-type weights normalised over the window.

`tables(path)` reads the dataset (needs pyarrow); `save_tables` / `load_tables` keep those arrays in
one .npz so a machine without pyarrow (a lent GPU box) can build the same examples with numpy alone.
"""
import json, os

import numpy as np

WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0}
TYPES = list(WEIGHTS)
TARGET = {"click", "add_to_cart", "purchase"}


def codes(values):
    """Dense codes for a column of strings (0 = missing) and the vocabulary size."""
    names = sorted({v for v in values if v is not None})
    index = {n: i + 1 for i, n in enumerate(names)}
    return np.array([index.get(v, 0) for v in values], dtype=np.int32), len(names) + 1


def tables(path):
    """The dataset's events, item side and user side as numpy arrays."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = json.load(open(os.path.join(path, "_manifest.json")))
    files = [os.path.join(path, f) for p in manifest["partitions"].values() for f in p["files"]]
    events = pq.ParquetDataset(files).read(columns=["user_idx", "item_idx", "event_type", "timestamp"])
    # Only the order of timestamps matters here: their raw integer value in the column's unit.
    ev_ts = events.column("timestamp").cast(pa.int64()).to_numpy()
    t = events.drop_columns(["timestamp"]).to_pandas()
    items = pq.read_table(os.path.join(path, "items.parquet")).to_pandas()
    users = pq.read_table(os.path.join(path, "users.parquet")).to_pandas()
    cat, n_cat = codes(items["category"].tolist())
    brand, n_brand = codes(items["brand"].tolist())
    prices = items["price"].to_numpy(dtype=np.float64)
    finite = prices[np.isfinite(prices)]
    bounds = np.quantile(finite, np.linspace(0.1, 0.9, 9)) if len(finite) else np.array([])
    price = np.where(np.isfinite(prices), np.searchsorted(bounds, prices) + 1, 0).astype(np.int32)
    age, n_age = codes(users["age_bucket"].tolist())
    region, n_region = codes(users["region"].tolist())
    ev_type = np.array([TYPES.index(x) for x in t["event_type"].astype(str)], dtype=np.int8)
    return dict(
        ev_user=t["user_idx"].to_numpy(np.int64), ev_item=t["item_idx"].to_numpy(np.int32), ev_type=ev_type,
        ev_ts=ev_ts.astype(np.int64),
        cat=cat, brand=brand, price=price, age=age, region=region,
        vocab=np.array([len(items), n_cat, n_brand, len(bounds) + 2, n_age, n_region], np.int64),
    )


def save_tables(t, out):
    """Writes `tables()` to one compressed .npz (write then rename)."""
    tmp = out + ".tmp.npz"
    np.savez_compressed(tmp, **t)
    os.replace(tmp, out)


def load_tables(path):
    """`tables()` from a dataset directory, or from a .npz that `save_tables` wrote."""
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    return tables(path)


def examples(t, history, max_examples=0, seed=1, chunk=100_000):
    """Next-interaction examples: history items, short/long pooling weights, user and target item,
    the item side (category, brand, price bucket, 2 numeric) and the vocabulary sizes."""
    n_items, n_cat, n_brand, n_price, n_age, n_region = (int(x) for x in t["vocab"])
    # Events grouped by user, in time order within a user (stable, like the TFRS loader's groupby).
    order = np.lexsort((t["ev_ts"], t["ev_user"]))
    u, it, ty, ts = t["ev_user"][order], t["ev_item"][order], t["ev_type"][order], t["ev_ts"][order]
    span = int(ts.max() - ts.min()) + 1
    key = u * span + (ts - ts.min())
    weight = np.array([WEIGHTS[x] for x in TYPES], np.float32)
    targets = np.nonzero(np.isin(ty, [TYPES.index(x) for x in TARGET]))[0]
    if max_examples and len(targets) > max_examples:
        targets = np.sort(np.random.default_rng(seed).choice(targets, max_examples, replace=False))
    H, W = [], []
    back = np.arange(history)[None, :]
    for c in range(0, len(targets), chunk):
        p = targets[c : c + chunk]
        end = np.searchsorted(key, key[p], side="left")  # first event of the user at the target's time
        start = np.maximum(np.searchsorted(u, u[p], side="left"), end - history)
        idx = end[:, None] - 1 - back
        valid = idx >= start[:, None]
        idx = np.where(valid, idx, 0)
        H.append(np.where(valid, it[idx], 0).astype(np.int32))
        w = np.where(valid, weight[ty[idx]], 0.0).astype(np.float32)
        s = w.sum(1, keepdims=True)
        W.append(np.divide(w, s, out=np.zeros_like(w), where=s > 0))
    h, w = np.concatenate(H), np.concatenate(W)
    ex = dict(history=h, w_short=w, w_long=w, user=u[targets].astype(np.int32), item=it[targets].astype(np.int32))
    counts = np.bincount(t["ev_item"], minlength=n_items).astype(np.float32)
    numeric = np.stack([np.log1p(counts) / np.log1p(max(counts.max(), 1.0)), np.zeros(n_items, np.float32)], 1)
    vocab = dict(items=n_items, cat=n_cat, brand=n_brand, price=n_price, age=n_age, region=n_region)
    side = dict(cat=t["cat"], brand=t["brand"], price=t["price"], numeric=numeric.astype(np.float32),
                age=t["age"], region=t["region"])
    return ex, vocab, side


def log_q(ex, n_items):
    """Log frequency of each item as a target (the sampling-bias correction)."""
    q = np.bincount(ex["item"], minlength=n_items).astype(np.float64) + 0.1
    return np.log(q / q.sum()).astype(np.float32)


if __name__ == "__main__":
    # python two_tower_data.py DATASET_DIR OUT.npz : save_tables without needing torch here.
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python two_tower_data.py DATASET_DIR OUT.npz")
    save_tables(tables(sys.argv[1]), sys.argv[2])
