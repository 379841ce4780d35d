"""Shared fixtures: one small generated TechShop, imported, trained and pre-computed once per session."""

from __future__ import annotations

import pathlib

import pytest

import techshop_recs as tr

# Small enough to train in seconds on 2 cores (the Rust tests use the same model size).
SMALL_MODEL = {"embedding_dim": 32, "id_dim": 16, "side_dim": 8, "hidden_dim": 32, "epochs": 1, "batch_size": 512}
MAP = {
    "user": "user_id",
    "item": "item_id",
    "ts": "timestamp",
    "session": "session_id",
    "price": "price",
    "quantity": "quantity",
}


@pytest.fixture(scope="session")
def raw(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("raw")
    tr.generate(out, users=400, items=150, events_per_day=4000, days=6, seed=7, quiet=True)
    return out


@pytest.fixture(scope="session")
def data(raw: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("data")
    tr.import_events(
        raw / "events",
        out,
        MAP,
        items=raw / "items.parquet",
        users=raw / "users.parquet",
        event_type="event_type",
        quiet=True,
    )
    return out


@pytest.fixture(scope="session")
def trained(data: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    registry = tmp_path_factory.mktemp("registry")
    outcome = tr.train(data, registry, config=SMALL_MODEL, gates="off", quiet=True)
    return {"registry": registry, "outcome": outcome}


@pytest.fixture(scope="session")
def served(data: pathlib.Path, trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The trained model's candidates pre-computed into a file store (read-only for the tests)."""
    store = "file:" + str(tmp_path_factory.mktemp("store"))
    tr.precompute(data, trained["registry"], store, top=100, similar=20, quiet=True)
    return {"data": data, "registry": trained["registry"], "store": store}
