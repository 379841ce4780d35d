"""Train the same two-tower architecture as techshop-recs with TensorFlow Recommenders on the same
dataset directory, and print training throughput (samples/s).

Architecture (mirrors recsys_core::model with its defaults, scaled by the flags):
  item tower: item-id emb (id_dim) + category, brand, price-bucket emb (side_dim) + 2 numeric
              -> Dense(hidden, relu) -> Dense(dim) -> L2 normalise
  user tower: the last `history` events before the target, pooled twice with the *same* item-id
              table (short- and long-term weights), pooled category and price-bucket embeddings,
              age and region embeddings, 4 numeric -> Dense(hidden, relu) -> Dense(dim) -> L2
  loss: in-batch sampled softmax with logQ correction and temperature (tfrs.tasks.Retrieval).

usage: python tfrs_two_tower.py DATASET_DIR|TABLES.npz [--steps N] [--batch 1024] [--history 100] [--dim 256]
                                [--max-examples N] [--jit]
--jit compiles the training step with XLA (`jit_compile=True`), TensorFlow's fastest CPU mode here.
Prints one JSON line: {"samples_per_second": ..., "steps": ..., "examples": ..., "jit": ...}.
"""
import argparse, glob, json, os, sys, time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from two_tower_data import examples, load_tables, log_q  # noqa: E402


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
    a.add_argument("--max-examples", type=int, default=0); a.add_argument("--jit", action="store_true")
    a = a.parse_args()
    ex, vocab, side = examples(load_tables(a.data), a.history, a.max_examples)
    n = len(ex["item"])
    model = TwoTower(vocab, side, log_q(ex, vocab["items"]), a)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.002), jit_compile=a.jit)
    ds = tf.data.Dataset.from_tensor_slices(ex).shuffle(min(n, 100_000), seed=1).repeat().batch(a.batch, drop_remainder=True).prefetch(2)
    warm = 5
    model.fit(ds, steps_per_epoch=warm, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=a.steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t0
    print(json.dumps({"samples_per_second": a.steps * a.batch / dt, "steps": a.steps, "examples": n, "seconds": dt, "jit": a.jit}))


if __name__ == "__main__":
    main()
