"""The online Recommender from Python: answers, freshness, errors, and equality with recsys-serve."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.request

import pytest

import techshop_recs as tr


def open_rec(served: dict, **config) -> tr.Recommender:
    return tr.Recommender.open(served["registry"], store=served["store"], data=served["data"], config=config or None)


def ids(answer: dict) -> list:
    return [i["item_id"] for i in answer["items"]]


def test_recommend_similar_and_status(served: dict) -> None:
    rec = open_rec(served)
    out = rec.recommend("U0000007", k=8)
    assert out["user_id"] == "U0000007"
    assert out["variant"] == "control"
    assert out["source"] == "store"
    assert len(out["items"]) == 8 and len(set(ids(out))) == 8
    assert all(i["reason"] for i in out["items"])
    assert out["model_version"] == rec.status()["model_version"] == tr.Registry(served["registry"]).current()
    sim = rec.similar("P000005", k=5)
    assert len(sim["items"]) == 5 and "P000005" not in ids(sim)
    cold = rec.recommend("nobody-yet", k=6)
    assert cold["source"] == "popular" and len(cold["items"]) == 6
    ctx = rec.recommend("U0000007", k=3, device="mobile", hour=21)
    assert len(ctx["request_id"]) == 32 and ctx["request_id"] != out["request_id"]
    with pytest.raises(ValueError, match="device"):
        rec.recommend("U0000007", device="no spaces")
    with pytest.raises(ValueError, match="hour"):
        rec.recommend("U0000007", hour=24)
    mine = rec.recommend("U0000007", k=3, request_id="bff:7.a")
    assert mine["request_id"] == "bff:7.a" and ids(mine) == ids(rec.recommend("U0000007", k=3))
    with pytest.raises(ValueError, match="request_id"):
        rec.recommend("U0000007", request_id="no spaces")


def test_ingest_changes_the_next_answer(served: dict) -> None:
    rec = open_rec(served)
    first = ids(rec.recommend("U0000011", k=10))[0]
    assert rec.ingest({"user_id": "U0000011", "item_id": first, "event_type": "purchase"}) == 1
    assert first not in ids(rec.recommend("U0000011", k=10))
    assert rec.ingest([{"user_id": "U0000011", "item_id": "P000001", "event_type": "view"}] * 3) == 3
    rid = rec.recommend("U0000011", k=3)["request_id"]
    assert rec.ingest({"user_id": "U0000011", "item_id": "P000001", "event_type": "click", "request_id": rid}) == 1
    with pytest.raises(ValueError, match="request_id"):
        rec.ingest({"user_id": "U0000011", "item_id": "P000001", "event_type": "click", "request_id": "x" * 65})


def test_recommend_many_as_dicts_and_as_a_pyarrow_table(served: dict) -> None:
    pa = pytest.importorskip("pyarrow")
    rec = open_rec(served, cache={"capacity": 0})
    users = ["U0000003", "U0000004", "nobody-yet", "U0000003"]
    many = rec.recommend_many(users, k=5)
    # Same answers, same order, as one call per user.
    assert [m["user_id"] for m in many] == users
    # Every answer has its own request id; the rest is the same.
    def no_id(r: dict) -> dict:
        r = dict(r)
        rid = r.pop("request_id")
        assert len(rid) == 32
        return r

    singles = [rec.recommend(u, k=5) for u in users]
    assert [no_id(m) for m in many] == [no_id(s) for s in singles]
    assert len({m["request_id"] for m in many + singles}) == 2 * len(users)
    table = rec.recommend_many(users, k=5, as_table=True)
    assert isinstance(table, pa.Table)
    assert table.column_names == [
        "user_id", "rank", "item_id", "score", "reason", "model_version", "variant", "source", "request_id",
    ]
    assert table.num_rows == 20
    assert table.schema.field("rank").type == pa.uint32()
    assert table.schema.field("score").type == pa.float32()
    rows = table.to_pylist()
    assert [r["item_id"] for r in rows[:5]] == ids(many[0])
    assert [r["rank"] for r in rows[:5]] == [1, 2, 3, 4, 5]
    assert rows[10]["user_id"] == "nobody-yet" and rows[10]["source"] == "popular"
    assert rec.recommend_many([], as_table=True).num_rows == 0
    with pytest.raises(ValueError, match="user_id"):
        rec.recommend_many(["U0000001", " "])


def test_errors_are_python_exceptions(served: dict) -> None:
    rec = open_rec(served)
    with pytest.raises(ValueError, match="`k`"):
        rec.recommend("U0000001", k=0)
    with pytest.raises(ValueError, match="category"):
        rec.recommend("U0000001", category="No Such Category")
    with pytest.raises(ValueError, match="NOPE"):
        rec.similar("NOPE")
    with pytest.raises(ValueError, match="event_type"):
        rec.ingest({"user_id": "U1", "item_id": "P000001", "event_type": "wishlist"})
    with pytest.raises(ValueError, match="config"):
        tr.Recommender.open(served["registry"], store=served["store"], data=served["data"], config={"cahce": 1})
    with pytest.raises(ValueError, match="registry"):
        tr.Recommender.open(pathlib.Path(served["registry"]) / "missing", store=served["store"])


def serve_binary() -> pathlib.Path:
    root = pathlib.Path(__file__).resolve().parents[3]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return target / "debug" / "recsys-serve"


@pytest.mark.skipif(not serve_binary().exists(), reason="recsys-serve not built (cargo test builds it)")
def test_same_answers_as_the_rust_service(served: dict) -> None:
    """Python and the Rust HTTP service give identical item lists and scores for the same users."""
    proc = subprocess.Popen(
        [
            str(serve_binary()),
            "--registry", str(served["registry"]),
            "--store", served["store"],
            "--data", str(served["data"]),
            "--listen", "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        base = line.removeprefix("listening on ")
        rec = open_rec(served)
        for n in range(0, 200, 17):
            user = f"U{n:07d}"
            with urllib.request.urlopen(f"{base}/api/v1/recommendations?user_id={user}&k=10", timeout=30) as r:
                http = json.load(r)
            mine = rec.recommend(user, k=10)
            assert ids(mine) == ids(http), user
            for a, b in zip(mine["items"], http["items"]):
                # The re-ranker reads the time since the last events at the moment of each request.
                assert a["score"] == pytest.approx(b["score"], rel=1e-4)
                assert a["reason"] == b["reason"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
