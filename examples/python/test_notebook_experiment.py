"""The experiment notebook runs an A/A and an A/B on the simulator and plots the lifts."""

from __future__ import annotations

import json
import pathlib

import notebook_experiment as nb


def test_aa_and_ab_on_the_simulator_are_analysed_and_plotted(tmp_path: pathlib.Path) -> None:
    small = {"embedding_dim": 32, "id_dim": 16, "side_dim": 8, "hidden_dim": 32, "epochs": 2, "batch_size": 512}
    out = nb.main(
        [
            "--out", str(tmp_path), "--users", "400", "--items", "150", "--days", "5",
            "--requests", "3000", "--config", json.dumps(small),
        ]
    )
    for name in ("aa", "ab"):
        report = out[name]
        assert set(report["variants"]) == {"control", "candidate"}, report["variants"].keys()
        for v in report["variants"].values():
            assert v["users"] > 0 and v["impressions"] > 0
            lo, hi = v["ctr"]["ci95"]
            assert lo <= v["ctr"]["value"] <= hi
        assert "p_value" in report["srm"] and "flagged" in report["srm"]
    # A/A: the same version on both sides, so the split is fair and the CTR interval covers 0.
    assert not out["aa"]["srm"]["flagged"]
    (metric, value, lo, hi) = out["lifts"]["A/A"][0]
    assert metric == "ctr" and lo <= 0.0 <= hi, out["lifts"]["A/A"]
    # A/B: a one-epoch tiny model against the full one loses clicks.
    assert out["lifts"]["A/B"][0][1] < 0.0, out["lifts"]["A/B"]
    assert out["ope_uniform"]["rows"] > 0 and "snips" in out["ope_uniform"]["estimators"]
    png = pathlib.Path(out["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
