"""Misuse and concurrency (issue 28): wrong types, out-of-range values and many threads at once
get Python exceptions or answers, never a crash of the interpreter."""

from __future__ import annotations

import threading

import pytest

import techshop_recs as tr


@pytest.fixture(scope="module")
def rec(served: dict) -> tr.Recommender:
    return tr.Recommender.open(served["registry"], store=served["store"], data=served["data"])


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.recommend(123),
        lambda r: r.recommend(None),
        lambda r: r.recommend("U0000001", k="ten"),
        lambda r: r.recommend("U0000001", k=-1),
        lambda r: r.recommend("U0000001", k=10**30),
        lambda r: r.recommend("U0000001", k=10**6),
        lambda r: r.recommend("U0000001", k=2.5),
        lambda r: r.recommend("U0000001", exclude="P000001"),
        lambda r: r.recommend("U0000001", exclude=[1, 2]),
        lambda r: r.recommend("U0000001", exclude=["P%06d" % i for i in range(1_001)]),
        lambda r: r.recommend("U0000001", hour=99),
        lambda r: r.recommend("U0000001", hour=-1),
        lambda r: r.recommend("U0000001", min_price=float("nan")),
        lambda r: r.recommend("U0000001", context=b"home"),
        lambda r: r.recommend("x" * 100_000),
        lambda r: r.recommend_many("U0000001"),
        lambda r: r.recommend_many([None]),
        lambda r: r.recommend_many(["U0000001"], k=0),
        lambda r: r.similar(None),
        lambda r: r.similar("P000001", k=10**6),
        lambda r: r.ingest("not events"),
        lambda r: r.ingest([{"user_id": 1}]),
        lambda r: r.ingest([{"user_id": "U1", "item_id": "P000001", "event_type": "view", "timestamp": 2**70}]),
        lambda r: r.ingest([{"user_id": "U1", "item_id": "P000001", "event_type": "view", "price": "cheap"}]),
    ],
)
def test_wrong_types_and_values_are_exceptions(rec: tr.Recommender, call) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError)):
        call(rec)


def test_open_with_wrong_types_is_an_exception(served: dict) -> None:
    for kwargs in ({"store": 5}, {"config": "cache"}, {"config": {"cache": {"capacity": -1}}}, {"data": 3.5}):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            tr.Recommender.open(served["registry"], **kwargs)
    with pytest.raises(TypeError):
        tr.Recommender.open(None)


def test_many_threads_at_once_get_answers_and_exceptions_never_a_crash(rec: tr.Recommender) -> None:
    users = ["U%07d" % u for u in range(1, 200)]
    errors: list = []
    unexpected: list = []
    counts = [0] * 16

    def work(t: int) -> None:
        try:
            for n in range(120):
                u = users[(t * 31 + n) % len(users)]
                step = n % 6
                if step == 0:
                    assert len(rec.recommend(u, k=10)["items"]) == 10
                elif step == 1:
                    rec.ingest({"user_id": u, "item_id": "P%06d" % (n % 100 + 1), "event_type": "click"})
                elif step == 2:
                    assert len(rec.recommend_many(users[:20], k=5)) == 20
                elif step == 3:
                    rec.similar("P%06d" % (n % 100 + 1), k=5)
                elif step == 4:
                    try:
                        rec.recommend(u, k=0)
                    except ValueError as e:
                        errors.append(e)
                else:
                    if t == 0 and n % 30 == 5:
                        rec.reload()
                    rec.status()
                counts[t] += 1
        except Exception as e:  # noqa: BLE001 - collected and reported below
            unexpected.append(repr(e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert unexpected == []
    assert counts == [120] * 16
    assert len(errors) == 16 * 20 and all("`k`" in str(e) for e in errors)
