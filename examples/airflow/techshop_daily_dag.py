"""The ADR's daily pipeline as an Airflow DAG, each task one ``techshop_recs`` call:

    import the day -> features -> train -> gate -> precompute -> promote

* ``import_day``: the warehouse drops ``events-YYYY-MM-DD.parquet`` into ``RAW/events/``; importing it
  replaces that day in the dataset (idempotent, so a retried or re-run task is safe).
* ``compute_features``: point-in-time features as of the end of the data (for the feature store and
  the serving warm-up).
* ``train_model``: trains, evaluates and publishes a registry version; ``recsys-train`` promotes it
  only when the validation gates pass, otherwise the previous model stays current.
* ``gate``: fails the run (no candidates for a rejected model) unless the new version was promoted.
* ``precompute_candidates``: every user's top-500 and every item's top-50 neighbours for that version
  into the candidate store; the store switches to it atomically when the last shard completes
  (run N copies with ``shard="I/N"`` to split the work).
* ``promote``: verifies the version's checksums, makes it current in the registry (a no-op when it
  already is) and checks that the store serves the same version, so registry and store agree.

The task functions are plain Python (tested without Airflow: ``test_techshop_daily_dag.py``); the
DAG is only built when Airflow is installed. Paths come from ``TECHSHOP_HOME`` (default
``/var/lib/techshop``): ``raw/``, ``data/``, ``features/``, ``registry/``, ``store/``.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Union

import techshop_recs as tr

# The warehouse export's columns (the synthetic generator writes the same layout).
COLUMN_MAP = {
    "user": "user_id",
    "item": "item_id",
    "ts": "timestamp",
    "session": "session_id",
    "price": "price",
    "quantity": "quantity",
    "device": "device",
    "page": "page",
}
# Validation gates: the repository's examples/gates.json (the ADR's AUC with a full-ranking NDCG bar).
DEFAULT_GATES = str(pathlib.Path(__file__).resolve().parent.parent / "gates.json")


class GateFailed(Exception):
    """The trained model did not pass its validation gates; the previous model keeps serving."""


@dataclass(frozen=True)
class Paths:
    """Where the pipeline reads and writes."""

    raw: pathlib.Path
    data: pathlib.Path
    features: pathlib.Path
    registry: pathlib.Path
    store: str

    @classmethod
    def under(cls, home: Union[str, os.PathLike]) -> "Paths":
        home = pathlib.Path(home)
        return cls(home / "raw", home / "data", home / "features", home / "registry", f"file:{home / 'store'}")


def import_day(paths: Paths, day: str) -> Dict[str, Any]:
    """Imports the warehouse's event file of ``day`` (YYYY-MM-DD) with the current catalogue and users."""
    return tr.import_events(
        paths.raw / "events" / f"events-{day}.parquet",
        paths.data,
        COLUMN_MAP,
        items=paths.raw / "items.parquet",
        users=paths.raw / "users.parquet",
        event_type="event_type",
        quiet=True,
    )


def compute_features(paths: Paths) -> Dict[str, Any]:
    """Point-in-time features as of the end of the data."""
    return tr.compute_features(paths.data, paths.features, as_of="end", quiet=True)


def train_model(
    paths: Paths, config: Optional[Mapping[str, Any]] = None, gates: Union[str, Mapping[str, Any]] = DEFAULT_GATES
) -> Dict[str, Any]:
    """Trains, evaluates and publishes a version; returns ``{"version", "promoted", "metrics", ...}``."""
    return tr.train(paths.data, paths.registry, config=dict(config) if config else None, gates=gates, quiet=True)


def gate(outcome: Mapping[str, Any]) -> str:
    """Passes the new version on when it was promoted; raises GateFailed (failing the run) otherwise."""
    if not outcome["promoted"]:
        raise GateFailed(f"model {outcome['version']} rejected: {outcome.get('gate_failure')}")
    return str(outcome["version"])


def precompute_candidates(paths: Paths, version: str, shard: str = "0/1") -> Dict[str, Any]:
    """Candidates and similar items of ``version`` into the store (this worker's ``shard``)."""
    return tr.precompute(paths.data, paths.registry, paths.store, model=version, shard=shard, quiet=True)


def promote(paths: Paths, version: str) -> Dict[str, Any]:
    """Makes ``version`` current in the registry and checks the store serves it."""
    current = tr.Registry(paths.registry).promote(version)
    active = tr.CandidateStore(paths.store).active_version()
    if active != version:
        raise RuntimeError(f"the store serves {active}, the registry {current}; precompute did not complete")
    return {"current": current, "store_active": active}


def run_day(paths: Paths, day: str, config: Optional[Mapping[str, Any]] = None, gates: Any = DEFAULT_GATES) -> Dict[str, Any]:
    """The whole pipeline for one day, in order, without Airflow (the DAG's tasks, sequentially)."""
    imported = import_day(paths, day)
    features = compute_features(paths)
    outcome = train_model(paths, config, gates)
    version = gate(outcome)
    candidates = precompute_candidates(paths, version)
    promoted = promote(paths, version)
    return {"import": imported, "features": features, "train": outcome, "precompute": candidates, "promote": promoted}


try:  # The DAG itself, only where Airflow is installed.
    import airflow  # noqa: F401
except ImportError:
    airflow = None

if airflow is not None:
    import pendulum
    from airflow import DAG
    from airflow.decorators import task

    PATHS = Paths.under(os.environ.get("TECHSHOP_HOME", "/var/lib/techshop"))

    with DAG(
        dag_id="techshop_recs_daily",
        description="import the day -> features -> train -> gate -> precompute -> promote",
        schedule="@daily",
        start_date=pendulum.datetime(2025, 10, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["techshop", "recommendations"],
    ):
        day = "{{ ds }}"
        t_import = task(task_id="import_day")(import_day)(PATHS, day)
        t_features = task(task_id="compute_features")(compute_features)(PATHS)
        t_train = task(task_id="train_model")(train_model)(PATHS)
        t_gate = task(task_id="gate")(gate)(t_train)
        t_pre = task(task_id="precompute_candidates")(precompute_candidates)(PATHS, t_gate)
        t_promote = task(task_id="promote")(promote)(PATHS, t_gate)
        t_import >> t_features >> t_train
        t_pre >> t_promote
