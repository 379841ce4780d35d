"""Train the same two-tower architecture as techshop-recs with TensorFlow Recommenders on the same
dataset directory, and print training throughput (samples/s).

Architecture (mirrors recsys_core::model with its defaults, scaled by the flags):
  item tower: item-id emb (id_dim) + category, brand, price-bucket emb (side_dim) + 2 numeric
              -> Dense(hidden, relu) -> Dense(dim) -> L2 normalise
  user tower: the last `history` events before the target, pooled twice with the *same* item-id
              table (short- and long-term weights), pooled category and price-bucket embeddings,
              age and region embeddings, 4 numeric -> Dense(hidden, relu) -> Dense(dim) -> L2
  loss: in-batch sampled softmax with logQ correction and temperature (tfrs.tasks.Retrieval).

usage: python tfrs_two_tower.py DATASET_DIR [--steps N] [--batch 1024] [--history 100] [--dim 256]
Prints one JSON line: {"samples_per_second": ..., "steps": ..., "examples": ...}.
"""
import argparse, glob, json, os, sys, time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf
import tensorflow_recommenders as tfrs

WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0, "purchase": 4.0}
TARGET = {"click", "add_to_cart", "purchase"}


def codes(values):
    names = sorted({v for v in values if v is not None})
    index = {n: i + 1 for i, n in enumerate(names)}
    return np.array([index.get(v, 0) for v in values], dtype=np.int32), len(names) + 1


def load(path, history):
    manifest = json.load(open(os.path.join(path, "_manifest.json")))
    files = [os.path.join(path, f) for p in manifest["partitions"].values() for f in p["files"]]
    cols = ["user_idx", "item_idx", "event_type", "timestamp"]
    t = pq.ParquetDataset(files).read(columns=cols).to_pandas()
    t = t.sort_values("timestamp", kind="stable")
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
    n_items = len(items)
    counts = np.bincount(t["item_idx"].to_numpy(), minlength=n_items).astype(np.float32)
    numeric = np.stack([np.log1p(counts) / np.log1p(counts.max()), np.zeros(n_items, np.float32)], 1)
    # Next-interaction examples with the last `history` events strictly before each target.
    H, W, Wl, U, Y = [], [], [], [], []
    for u, g in t.groupby("user_idx", sort=False):
        it = g["item_idx"].to_numpy(); ty = g["event_type"].astype(str).to_numpy(); ts = g["timestamp"].to_numpy()
        for p in range(len(it)):
            if ty[p] not in TARGET:
                continue
            end = np.searchsorted(ts, ts[p], side="left")
            s = max(0, end - history)
            h = it[s:end][::-1]; w = np.array([WEIGHTS[x] for x in ty[s:end][::-1]], np.float32)
            hp = np.zeros(history, np.int32); wp = np.zeros(history, np.float32)
            hp[: len(h)] = h
            if len(w):
                wp[: len(w)] = w / w.sum()
            H.append(hp); W.append(wp); Wl.append(wp); U.append(u); Y.append(it[p])
    ex = dict(history=np.stack(H), w_short=np.stack(W), w_long=np.stack(Wl), user=np.array(U, np.int32), item=np.array(Y, np.int32))
    vocab = dict(items=n_items, cat=n_cat, brand=n_brand, price=len(bounds) + 2, age=n_age, region=n_region)
    side = dict(cat=cat, brand=brand, price=price, numeric=numeric.astype(np.float32), age=age, region=region)
    return ex, vocab, side


class TwoTower(tfrs.Model):
    def __init__(self, vocab, side, log_q, a):
        super().__init__()
        self.side = {k: tf.constant(v) for k, v in side.items()}
        self.log_q = tf.constant(log_q)
        self.ids = tf.keras.layers.Embedding(vocab["items"], a.id_dim)
        self.cat = tf.keras.layers.Embedding(vocab["cat"], a.side_dim)
        self.brand = tf.keras.layers.Embedding(vocab["brand"], a.side_dim)
        self.price = tf.keras.layers.Embedding(vocab["price"], a.side_dim)
        self.age = tf.keras.layers.Embedding(vocab["age"], a.side_dim)
        self.region = tf.keras.layers.Embedding(vocab["region"], a.side_dim)
        self.item_mlp = tf.keras.Sequential([tf.keras.layers.Dense(a.hidden, "relu"), tf.keras.layers.Dense(a.dim)])
        self.user_mlp = tf.keras.Sequential([tf.keras.layers.Dense(a.hidden, "relu"), tf.keras.layers.Dense(a.dim)])
        self.task = tfrs.tasks.Retrieval(temperature=a.temperature, remove_accidental_hits=True)

    def items(self, i):
        g = lambda k: tf.gather(self.side[k], i)
        x = tf.concat([self.ids(i), self.cat(g("cat")), self.brand(g("brand")), self.price(g("price")), g("numeric")], 1)
        return tf.math.l2_normalize(self.item_mlp(x), 1)

    def users(self, f):
        h = f["history"]; ws = f["w_short"][..., None]; wl = f["w_long"][..., None]
        e = self.ids(h)
        pool = lambda x, w: tf.reduce_sum(x * w, 1)
        cat = self.cat(tf.gather(self.side["cat"], h)); price = self.price(tf.gather(self.side["price"], h))
        n = tf.zeros([tf.shape(h)[0], 4])
        x = tf.concat([pool(e, ws), pool(e, wl), pool(cat, wl), pool(price, wl),
                       self.age(tf.gather(self.side["age"], f["user"])), self.region(tf.gather(self.side["region"], f["user"])), n], 1)
        return tf.math.l2_normalize(self.user_mlp(x), 1)

    def compute_loss(self, f, training=False):
        return self.task(self.users(f), self.items(f["item"]), candidate_sampling_probability=tf.exp(tf.gather(self.log_q, f["item"])),
                         candidate_ids=f["item"])


def main():
    a = argparse.ArgumentParser()
    a.add_argument("data"); a.add_argument("--steps", type=int, default=60); a.add_argument("--batch", type=int, default=1024)
    a.add_argument("--history", type=int, default=100); a.add_argument("--dim", type=int, default=256)
    a.add_argument("--id-dim", type=int, default=64); a.add_argument("--side-dim", type=int, default=16)
    a.add_argument("--hidden", type=int, default=256); a.add_argument("--temperature", type=float, default=0.05)
    a = a.parse_args()
    ex, vocab, side = load(a.data, a.history)
    n = len(ex["item"])
    q = np.bincount(ex["item"], minlength=vocab["items"]).astype(np.float64) + 0.1
    log_q = np.log(q / q.sum()).astype(np.float32)
    model = TwoTower(vocab, side, log_q, a)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.002))
    ds = tf.data.Dataset.from_tensor_slices(ex).shuffle(min(n, 100_000), seed=1).repeat().batch(a.batch, drop_remainder=True).prefetch(2)
    warm = 5
    model.fit(ds, steps_per_epoch=warm, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=a.steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t0
    print(json.dumps({"samples_per_second": a.steps * a.batch / dt, "steps": a.steps, "examples": n, "seconds": dt}))


if __name__ == "__main__":
    main()
