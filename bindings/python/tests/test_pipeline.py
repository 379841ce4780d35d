"""The offline pipeline end to end from Python: generate -> import -> features -> train ->
evaluate -> precompute -> store get, with the reports the CLI prints."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import techshop_recs as tr
from conftest import SMALL_MODEL


def test_generate_reports_its_files_and_is_deterministic(raw: pathlib.Path, tmp_path: pathlib.Path) -> None:
    again = tr.generate(tmp_path, users=400, items=150, events_per_day=4000, days=6, seed=7, quiet=True)
    assert again["config"]["users"] == 400
    assert "items.parquet" in again["files"]
    assert len([f for f in again["files"] if f.startswith("events/")]) == 6
    for f in again["files"]:
        assert (tmp_path / f).read_bytes() == (raw / f).read_bytes(), f


def test_import_features_and_info(data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    info = tr.dataset_info(data)
    assert info["num_events"] > 0
    rep = tr.compute_features(data, tmp_path / "features", as_of="end", quiet=True)
    assert rep["users"] == 400 and rep["items"] == 150
    assert rep["events_used"] == info["num_events"]
    assert (tmp_path / "features" / "user_features.parquet").is_file()
    assert json.loads((tmp_path / "features" / "features.json").read_text())["as_of_ms"] == rep["as_of_ms"]


def test_train_evaluate_precompute_store(data: pathlib.Path, trained: dict, tmp_path: pathlib.Path) -> None:
    outcome, registry = trained["outcome"], trained["registry"]
    assert outcome["version"] == "1.0.0" and outcome["promoted"] is True
    assert 0.0 <= outcome["metrics"]["recall@20"] <= 1.0
    training = outcome["training"]
    assert len(training["loss_per_epoch"]) == SMALL_MODEL["epochs"] and training["steps"] > 0
    assert "best_epoch" not in training  # no early stopping asked for

    reg = tr.Registry(registry)
    assert reg.current() == "1.0.0"
    [entry] = reg.list()
    assert entry["version"] == "1.0.0" and entry["current"] is True
    assert entry["metrics"]["auc"] == pytest.approx(outcome["metrics"]["auc"])

    ev = tr.evaluate(data, model="current", registry=registry, baselines=["popularity"], quiet=True)
    assert set(ev["models"]) == {"two_tower", "popularity"}
    assert ev["models"]["two_tower"]["recall@20"] == pytest.approx(outcome["metrics"]["recall@20"])
    assert ev["users_evaluated"] > 0

    emb = tr.model_item_embeddings(registry)
    assert emb.dtype == np.float32 and emb.shape == (150, SMALL_MODEL["embedding_dim"])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)

    url = f"file:{tmp_path / 'store'}"
    rep = tr.precompute(data, registry, url, top=50, similar=10, quiet=True)
    assert rep["activated"] is True and rep["version"] == "1.0.0"
    assert rep["users"] == 400 and rep["items"] == 150

    store = tr.CandidateStore(url)
    assert store.active_version() == "1.0.0"
    assert store.versions() == {"active": "1.0.0", "versions": ["1.0.0"]}
    recs = store.get_user("U0000007", k=5)
    assert len(recs) == 5 and set(recs[0]) == {"item_id", "score"}
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    sims = store.get_item(recs[0]["item_id"], k=3)
    assert len(sims) == 3 and recs[0]["item_id"] not in [s["item_id"] for s in sims]
    assert rep["index"] == "exact"  # 150 items: scanned exactly

    # The inverted file on request (4·sqrt(150) = 49 lists, 4 scanned per user): approximate lists.
    ivf_url = f"file:{tmp_path / 'store-ivf'}"
    rep = tr.precompute(data, registry, ivf_url, top=50, similar=10, index="ivf", ivf_probes=4, quiet=True)
    assert rep["index"] == "ivf" and rep["users"] == 400
    approx = tr.CandidateStore(ivf_url).get_user("U0000007", k=50)
    exact = [r["item_id"] for r in store.get_user("U0000007", k=50)]
    assert len(approx) == 50
    assert 0.3 < len({r["item_id"] for r in approx} & set(exact)) / 50 <= 1.0
    with pytest.raises(ValueError, match="index"):
        tr.precompute(data, registry, ivf_url, index="hnsw", quiet=True)


def test_early_stopping_from_a_config_dict(data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    config = {**SMALL_MODEL, "epochs": 3, "early_stopping_patience": 1, "validation_metric": "ndcg@20"}
    outcome = tr.train(data, tmp_path / "registry", config=config, gates="off", quiet=True)
    training = outcome["training"]
    scores = training["validation_per_epoch"]
    assert 1 <= len(scores) <= 3 and scores[training["best_epoch"] - 1] == max(scores)
    # Time split: the refit on the whole training period runs the chosen number of epochs.
    assert len(training["loss_per_epoch"]) == training["best_epoch"]
    with pytest.raises(ValueError, match="validation_metric"):
        tr.train(data, tmp_path / "r2", config={"early_stopping_patience": 1, "validation_metric": "mrr"}, quiet=True)


def test_second_model_rollback_and_gates(data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    registry = tmp_path / "registry"
    first = tr.train(data, registry, config=SMALL_MODEL, gates="off", quiet=True)
    # An impossible minimum: published, not promoted, and the first model keeps serving.
    second = tr.train(data, registry, config=SMALL_MODEL, gates={"min": {"auc": 1.01}}, quiet=True)
    assert second["promoted"] is False and "auc" in second["gate_failure"]
    reg = tr.Registry(registry)
    assert reg.current() == first["version"]
    assert reg.promote(second["version"]) == second["version"]
    assert reg.rollback() == first["version"]
    assert reg.current() == first["version"]


def test_item_index_hnsw_saves_a_graph_with_the_version(data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    registry = tmp_path / "registry"
    small = tr.train(data, registry, config=SMALL_MODEL, gates="off", quiet=True)
    assert not (registry / small["version"] / "items.hnsw").exists(), "a small catalogue is scanned exactly"
    graph = tr.train(data, registry, config=SMALL_MODEL, gates="off", item_index="hnsw", quiet=True)
    assert (registry / graph["version"] / "items.hnsw").is_file()


def test_long_calls_release_the_gil(tmp_path: pathlib.Path) -> None:
    import threading
    import time

    done = threading.Event()
    ticks = []

    def work() -> None:
        try:
            tr.generate(tmp_path, users=2000, items=300, events_per_day=60_000, days=2, quiet=True)
        finally:
            done.set()

    worker = threading.Thread(target=work)
    start = time.perf_counter()
    worker.start()
    while not done.is_set():  # runs only while the worker does not hold the GIL
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    elapsed = time.perf_counter() - start
    assert elapsed < 0.05 or len(ticks) > 10, (elapsed, len(ticks))
