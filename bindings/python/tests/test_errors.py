"""Rust errors arrive as the matching Python exception with the Rust message."""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

import techshop_recs as tr


def test_bad_arguments_are_value_errors_naming_the_value(tmp_path: pathlib.Path, data: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="users"):
        tr.generate(tmp_path, users=0, quiet=True)
    with pytest.raises(ValueError, match="2025-13-45"):
        tr.generate(tmp_path, start="2025-13-45", quiet=True)
    with pytest.raises(ValueError, match="sometimes"):
        tr.import_events(tmp_path, tmp_path / "d", "user=u,item=i,ts=t", on_error="sometimes")
    with pytest.raises(ValueError, match="colour"):
        tr.import_events(tmp_path, tmp_path / "d", {"user": "u", "item": "i", "ts": "t", "colour": "c"})
    with pytest.raises(ValueError, match="sideways"):
        tr.evaluate(data, protocol="sideways")
    with pytest.raises(ValueError, match="learning_speed"):
        tr.train(data, tmp_path / "reg", config={"learning_speed": 3}, quiet=True)
    with pytest.raises(ValueError, match="item_index.*faiss"):
        tr.train(data, tmp_path / "reg", item_index="faiss", quiet=True)
    with pytest.raises(ValueError, match="5/2"):
        tr.precompute(data, tmp_path / "reg", f"file:{tmp_path / 's'}", shard="5/2")
    with pytest.raises(ValueError, match="gopher"):
        tr.CandidateStore("gopher://x")


def test_bad_rows_name_file_row_column_and_value(tmp_path: pathlib.Path) -> None:
    df = pd.DataFrame({"u": ["a"], "i": ["b"], "t": ["yesterday"]})
    with pytest.raises(ValueError, match=r"row 1, column `t`.*yesterday"):
        tr.import_events(df, tmp_path / "d", "user=u,item=i,ts=t", event_type="view", quiet=True)


def test_missing_paths_are_file_not_found(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        tr.import_events(missing / "events.csv", tmp_path / "d", "user=u,item=i,ts=t", event_type="view")
    with pytest.raises(FileNotFoundError, match="nope"):
        tr.Registry(missing)
    with pytest.raises(ValueError, match="no current version"):
        tr.model_item_embeddings(tmp_path / "empty-registry")
    # recsys-train calls a directory without a manifest bad input (exit status 2), not an I/O error.
    with pytest.raises(ValueError, match="not a dataset directory"):
        tr.compute_features(missing, tmp_path / "f")


def test_unknown_user_and_empty_store(trained: dict, data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    empty = tr.CandidateStore(f"file:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="no active version"):
        empty.get_user("U0000001")
    url = f"file:{tmp_path / 'store'}"
    tr.precompute(data, trained["registry"], url, top=10, similar=5, quiet=True)
    with pytest.raises(ValueError, match="NOBODY"):
        tr.CandidateStore(url).get_user("NOBODY")
