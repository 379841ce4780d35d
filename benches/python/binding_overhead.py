"""Latency of ``recommend`` through the Python binding, one call at a time.

Run by ``benches/binding_overhead.sh`` beside the Rust library call and the Node binding on the same
model, store and user sequence (users ``U%07d`` of ``i % users`` for i = 0..requests, response cache
off). Prints one JSON line: the median and p99 in microseconds.

    python benches/python/binding_overhead.py --registry R --store S [--data D] --users U [--requests N]
"""

import argparse
import json
import time

import techshop_recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--data", help="warm the features from this dataset instead of the store")
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--requests", type=int, default=5000)
    a = ap.parse_args()
    rec = techshop_recs.Recommender.open(
        a.registry, store=a.store, data=a.data, config={"cache": {"capacity": 0}}
    )

    def user(i: int) -> str:
        return f"U{i % a.users:07d}"

    for i in range(200):
        rec.recommend(user(i), k=20)
    lat = []
    for i in range(a.requests):
        t = time.perf_counter_ns()
        rec.recommend(user(i), k=20)
        lat.append((time.perf_counter_ns() - t) / 1e3)
    lat.sort()

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)

    print(json.dumps({"side": "python", "requests": a.requests, "p50_us": q(0.5), "p99_us": q(0.99)}))


if __name__ == "__main__":
    main()
