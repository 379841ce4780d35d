"""Runs the DAG's task functions in order on a small generated TechShop, without Airflow."""

from __future__ import annotations

import pathlib

import pytest

import techshop_daily_dag as dag
import techshop_recs as tr

SMALL = {"embedding_dim": 32, "id_dim": 16, "side_dim": 8, "hidden_dim": 32, "epochs": 1, "batch_size": 512}
# Gates any trained model passes (a 1-epoch model on 300 users is no better than chance).
LENIENT = {"min": {"recall@20": 0.0}, "regression_metrics": [], "max_regression": 0.0}


def test_daily_tasks_in_order(tmp_path: pathlib.Path) -> None:
    paths = dag.Paths.under(tmp_path)
    tr.generate(paths.raw, users=300, items=120, events_per_day=3000, days=4, seed=3, quiet=True)
    days = ["2025-10-01", "2025-10-02", "2025-10-03", "2025-10-04"]
    for d in days[:3]:  # history before the first scheduled run
        dag.import_day(paths, d)

    imported = dag.import_day(paths, days[3])
    assert imported["partitions"] == [days[3]]
    assert tr.dataset_info(paths.data)["partitions"].keys() >= set(days)
    features = dag.compute_features(paths)
    assert features["users"] > 0
    outcome = dag.train_model(paths, SMALL, LENIENT)
    version = dag.gate(outcome)
    assert version == "1.0.0"
    report = dag.precompute_candidates(paths, version)
    assert report["activated"] and report["version"] == version
    assert dag.promote(paths, version) == {"current": version, "store_active": version}
    assert len(tr.CandidateStore(paths.store).get_user("U0000001", k=3)) == 3

    # The next day: re-importing is idempotent; a model that fails its gates stops the run before
    # precompute, and version 1.0.0 keeps serving.
    again = dag.import_day(paths, days[3])
    assert again["rows_imported"] == imported["rows_imported"]
    rejected = dag.train_model(paths, SMALL, {"min": {"auc": 1.01}})
    with pytest.raises(dag.GateFailed, match="auc"):
        dag.gate(rejected)
    assert tr.Registry(paths.registry).current() == version
    assert tr.CandidateStore(paths.store).active_version() == version


def test_run_day_chains_the_tasks(tmp_path: pathlib.Path) -> None:
    paths = dag.Paths.under(tmp_path)
    tr.generate(paths.raw, users=200, items=80, events_per_day=2000, days=3, seed=5, quiet=True)
    dag.import_day(paths, "2025-10-01")
    dag.import_day(paths, "2025-10-02")
    out = dag.run_day(paths, "2025-10-03", SMALL, LENIENT)
    assert out["promote"]["current"] == out["train"]["version"]
