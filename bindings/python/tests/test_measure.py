"""The measurement loop from Python: simulate, ab_report and ope return the commands' reports."""

from __future__ import annotations

import pathlib

import pytest

import techshop_recs as tr


def test_simulate_reports_the_contract_and_is_deterministic(data: pathlib.Path, trained: dict) -> None:
    a = tr.simulate(data, trained["registry"], requests=400, seed=3)
    assert {"policy", "requests", "ctr", "conversion", "aov", "true_ctr"} <= set(a)
    assert a["requests"] == 400
    lo, hi = a["ctr"]["ci95"]
    assert 0.0 <= lo <= a["ctr"]["value"] <= hi <= 1.0
    b = tr.simulate(data, trained["registry"], requests=400, seed=3)
    assert (a["ctr"], a["conversion"], a["true_ctr"]) == (b["ctr"], b["conversion"], b["true_ctr"])
    popular = tr.simulate(data, trained["registry"], requests=400, seed=3, policy="popular")
    assert popular["policy"] == "popular"


def test_simulated_logs_feed_ab_report_and_ope(data: pathlib.Path, trained: dict, tmp_path: pathlib.Path) -> None:
    version = trained["outcome"]["version"]
    config = {"ab": {"candidate": version, "percent": 50.0}, "exploration": {"epsilon": 0.2, "pool": 30}}
    tr.simulate(
        data,
        trained["registry"],
        requests=600,
        seed=5,
        config=config,
        exposure_log=tmp_path / "exposures",
        event_log=tmp_path / "events",
    )
    report = tr.ab_report(tmp_path / "exposures", tmp_path / "events", expected=[("control", 0.5), ("candidate", 0.5)])
    assert set(report["variants"]) == {"control", "candidate"}
    assert sum(v["exposures"] for v in report["variants"].values()) == 600
    assert {"p_value", "flagged"} <= set(report["srm"])
    est = tr.ope(tmp_path / "exposures", "uniform", events=tmp_path / "events", bootstrap=20)
    assert est["rows"] > 0
    assert {"ips", "snips"} <= set(est["estimators"])


def test_measurement_errors_are_value_errors(data: pathlib.Path, trained: dict, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="policy"):
        tr.simulate(data, trained["registry"], requests=10, policy="no-such-policy!")
    with pytest.raises(ValueError, match="rules.k"):
        tr.simulate(data, trained["registry"], requests=10, config={"rules": {"k": 0}})
    with pytest.raises(ValueError, match="format"):
        tr.ope(tmp_path, "uniform", format="parquet")
