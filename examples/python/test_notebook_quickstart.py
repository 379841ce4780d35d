"""The notebook quickstart runs end to end on a small synthetic TechShop and writes its plot."""

from __future__ import annotations

import json
import pathlib

import notebook_quickstart as nb


def test_quickstart_plots_recall_for_model_and_baselines(tmp_path: pathlib.Path) -> None:
    small = {"embedding_dim": 32, "id_dim": 16, "side_dim": 8, "hidden_dim": 32, "epochs": 1, "batch_size": 512}
    out = nb.main(
        ["--out", str(tmp_path), "--users", "300", "--items", "120", "--days", "5", "--config", json.dumps(small)]
    )
    assert set(out["evaluation"]["models"]) == {"two_tower", *nb.BASELINES}
    curves = nb.recall_curves(out["evaluation"])
    assert [k for k, _ in curves["two_tower"]] == [10, 20, 100, 500]
    png = pathlib.Path(out["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert out["embeddings"] == (120, 32)
