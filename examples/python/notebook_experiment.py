"""An A/A and an A/B test on the click simulator, analysed like a real experiment (cells marked
``# %%`` open as a notebook in Jupyter via jupytext, or in VS Code).

    python examples/python/notebook_experiment.py --out /tmp/experiment

1. Generate a synthetic TechShop, import it and train two model versions: a full one and a weak one
   (one epoch of a tiny model).
2. A/A: the current version against itself, 50/50. Every lift's 95% interval should cover 0 (in 95%
   of such runs) and the sample-ratio check should pass.
3. A/B: the weak version as the candidate for 50% of users. Its CTR lift should come out negative.
4. Both experiments run through the real ``Recommender`` (``techshop_recs.simulate`` writes the
   exposure and event logs the serving would write) and are analysed by ``techshop_recs.ab_report``.
   ``techshop_recs.ope`` estimates, from the A/B's logs, what a uniform-random ranking would have
   scored, before serving it to anyone.

Writes ``lift.png``: each experiment's relative lift of CTR, conversion and revenue per user with
its 95% interval.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import techshop_recs as tr

METRICS = ["ctr", "conversion", "revenue_per_user"]
WEAK_MODEL = {"embedding_dim": 8, "id_dim": 4, "side_dim": 4, "hidden_dim": 8, "epochs": 1, "batch_size": 2048}


# %% Data and two model versions
def prepare(out: pathlib.Path, users: int, items: int, days: int, config: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """Generates, imports and trains the full and the weak versions; returns paths and versions."""
    raw, data, registry = out / "raw", out / "data", out / "registry"
    tr.generate(raw, users=users, items=items, days=days, events_per_day=users * 8, quiet=True)
    tr.import_events(
        raw / "events",
        data,
        "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity",
        items=raw / "items.parquet",
        users=raw / "users.parquet",
        event_type="event_type",
        quiet=True,
    )
    weak = tr.train(data, registry, config=WEAK_MODEL, gates="off", quiet=True)["version"]
    full = tr.train(data, registry, config=config, gates="off", quiet=True)["version"]
    return {"data": data, "registry": registry, "full": full, "weak": weak}


# %% An experiment on the simulator, analysed from its logs
def experiment(setup: Dict[str, Any], name: str, candidate: str, requests: int, seed: int, out: pathlib.Path) -> Dict[str, Any]:
    """Serves ``requests`` simulated requests with ``candidate`` for half of the users and returns
    the ``ab_report`` of the logs it wrote."""
    logs = out / name
    config = {"ab": {"candidate": candidate, "percent": 50.0, "salt": f"exp-{name}"}}
    sim = tr.simulate(
        setup["data"],
        setup["registry"],
        requests=requests,
        seed=seed,
        config=config,
        exposure_log=logs / "exposures",
        event_log=logs / "events",
    )
    report = tr.ab_report(logs / "exposures", logs / "events")
    return {"simulate": sim, "report": report, "logs": logs}


def lifts(report: Dict[str, Any], variant: str = "candidate") -> List[Tuple[str, float, float, float]]:
    """``(metric, lift, lo, hi)`` of ``variant`` against the control, for each of :data:`METRICS`."""
    lift = report["variants"][variant]["lift"]
    return [(m, lift[m]["value"], lift[m]["ci95"][0], lift[m]["ci95"][1]) for m in METRICS]


# %% Plot
def plot_lifts(experiments: Dict[str, List[Tuple[str, float, float, float]]], path: pathlib.Path) -> None:
    """One row per experiment and metric: the lift as a point, its 95% interval as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{exp}: {m}", v, lo, hi) for exp, ls in experiments.items() for (m, v, lo, hi) in ls]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    for y, (label, v, lo, hi) in enumerate(rows):
        ax.errorbar([100 * v], [y], xerr=[[100 * (v - lo)], [100 * (hi - v)]], fmt="o", capsize=4)
    ax.axvline(0.0, color="grey", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("lift against control, % (95% interval)")
    ax.set_title("A/A and A/B on the click simulator")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="out/experiment")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=400)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--config", help="model settings of the full version, as JSON")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = prepare(out, args.users, args.items, args.days, json.loads(args.config) if args.config else None)
    aa = experiment(setup, "aa", setup["full"], args.requests, args.seed, out)
    ab = experiment(setup, "ab", setup["weak"], args.requests, args.seed, out)
    # What a uniform-random ranking of the shown items would have scored, from the A/B's logs.
    uniform = tr.ope(ab["logs"] / "exposures", "uniform", events=ab["logs"] / "events", bootstrap=50)
    results = {"A/A": lifts(aa["report"]), "A/B": lifts(ab["report"])}
    png = out / "lift.png"
    plot_lifts(results, png)
    summary = {
        "versions": {"full": setup["full"], "weak": setup["weak"]},
        "aa": aa["report"],
        "ab": ab["report"],
        "lifts": results,
        "ope_uniform": uniform,
        "png": str(png),
    }
    print(json.dumps({k: v for k, v in summary.items() if k in ("versions", "lifts", "png")}, indent=1))
    return summary


if __name__ == "__main__":
    main()
