"""Train the same two-tower architecture as techshop-recs with PyTorch on the same dataset, and print
training throughput (samples/s). The rival for `recsys-train train --backend cuda` on a GPU, and for
the CPU backend on a CPU.

Architecture (mirrors recsys_core::model with its defaults, as benches/python/tfrs_two_tower.py does):
  item tower: item-id emb (id_dim) + category, brand, price-bucket emb (side_dim) + 2 numeric
              -> Linear(hidden) + ReLU -> Linear(dim) -> L2 normalise
  user tower: the last `history` events before the target, pooled twice with the *same* item-id
              table (short- and long-term weights), pooled category and price-bucket embeddings,
              age and region embeddings, 4 numeric -> Linear(hidden) + ReLU -> Linear(dim) -> L2
  loss: in-batch sampled softmax with logQ correction, temperature and accidental hits removed.
  optimiser: Adam (lr 0.002) on every parameter, dense (PyTorch's usual two-tower setup).

usage: python torch_two_tower.py DATASET_DIR|TABLES.npz [--device cuda|cpu] [--steps N] [--warmup N]
       [--batch 1024] [--history 100] [--dim 256] [--max-examples N] [--compile]
       python torch_two_tower.py DATASET_DIR --save-tables OUT.npz   (for a machine without pyarrow)
Prints one JSON line: {"samples_per_second": ..., "steps": ..., "examples": ..., "device": ...}.
Every example is on the device before timing starts; warm-up steps (CUDA context, cuBLAS
autotuning, torch.compile) are timed separately as "warmup_seconds".
"""
import argparse, json, os, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from two_tower_data import examples, load_tables, log_q, save_tables, tables  # noqa: E402


class TwoTower(nn.Module):
    def __init__(self, vocab, side, lq, a):
        super().__init__()
        for k, v in side.items():
            self.register_buffer("side_" + k, torch.as_tensor(v))
        self.register_buffer("log_q", torch.as_tensor(lq))
        self.ids = nn.Embedding(vocab["items"], a.id_dim)
        emb = lambda k: nn.Embedding(vocab[k], a.side_dim)
        self.cat, self.brand, self.price_e, self.age_e, self.region_e = (emb(k) for k in ("cat", "brand", "price", "age", "region"))
        self.item_mlp = nn.Sequential(nn.Linear(a.id_dim + 3 * a.side_dim + 2, a.hidden), nn.ReLU(), nn.Linear(a.hidden, a.dim))
        self.user_mlp = nn.Sequential(nn.Linear(2 * a.id_dim + 4 * a.side_dim + 4, a.hidden), nn.ReLU(), nn.Linear(a.hidden, a.dim))
        self.temperature = a.temperature

    def items(self, i):
        x = torch.cat([self.ids(i), self.cat(self.side_cat[i]), self.brand(self.side_brand[i]),
                       self.price_e(self.side_price[i]), self.side_numeric[i]], 1)
        return F.normalize(self.item_mlp(x), dim=1)

    def users(self, h, ws, wl, u):
        pool = lambda x, w: (x * w[..., None]).sum(1)
        e = self.ids(h)
        x = torch.cat([pool(e, ws), pool(e, wl), pool(self.cat(self.side_cat[h]), wl),
                       pool(self.price_e(self.side_price[h]), wl), self.age_e(self.side_age[u]),
                       self.region_e(self.side_region[u]), torch.zeros(h.shape[0], 4, device=h.device)], 1)
        return F.normalize(self.user_mlp(x), dim=1)

    def forward(self, h, ws, wl, u, y):
        logits = self.users(h, ws, wl, u) @ self.items(y).T / self.temperature - self.log_q[y][None, :]
        same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
        logits = logits.masked_fill(same, -1e9)
        return F.cross_entropy(logits, torch.arange(len(y), device=y.device))


def main():
    a = argparse.ArgumentParser()
    a.add_argument("data"); a.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a.add_argument("--steps", type=int, default=200); a.add_argument("--warmup", type=int, default=20)
    a.add_argument("--batch", type=int, default=1024); a.add_argument("--history", type=int, default=100)
    a.add_argument("--dim", type=int, default=256); a.add_argument("--id-dim", type=int, default=64)
    a.add_argument("--side-dim", type=int, default=16); a.add_argument("--hidden", type=int, default=256)
    a.add_argument("--temperature", type=float, default=0.05); a.add_argument("--max-examples", type=int, default=0)
    a.add_argument("--compile", action="store_true"); a.add_argument("--save-tables")
    a = a.parse_args()
    if a.save_tables:
        save_tables(tables(a.data), a.save_tables)
        return
    torch.manual_seed(1)
    dev = torch.device(a.device)
    ex, vocab, side = examples(load_tables(a.data), a.history, a.max_examples)
    n = len(ex["item"])
    model = TwoTower(vocab, side, log_q(ex, vocab["items"]), a).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=0.002)
    data = {k: torch.as_tensor(v, device=dev) for k, v in ex.items()}
    step_fn = torch.compile(model) if a.compile else model
    gen = torch.Generator(device=dev).manual_seed(1)

    def run(steps):
        for _ in range(steps):
            b = torch.randint(0, n, (a.batch,), device=dev, generator=gen)
            loss = step_fn(data["history"][b], data["w_short"][b], data["w_long"][b], data["user"][b], data["item"][b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    t0 = time.perf_counter()
    run(a.warmup)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss = run(a.steps)
    dt = time.perf_counter() - t0
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(json.dumps({"samples_per_second": a.steps * a.batch / dt, "steps": a.steps, "examples": n, "seconds": dt,
                      "warmup_seconds": warm, "loss": loss, "device": name, "compiled": a.compile}))


if __name__ == "__main__":
    main()
