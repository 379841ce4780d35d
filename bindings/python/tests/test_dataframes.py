"""Importing pandas DataFrames and pyarrow Tables gives the same dataset as importing the files."""

from __future__ import annotations

import pathlib

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import techshop_recs as tr


def test_dataframe_import_matches_file_import(raw: pathlib.Path, data: pathlib.Path, tmp_path: pathlib.Path) -> None:
    events = pd.concat(
        [pd.read_parquet(p) for p in sorted((raw / "events").glob("*.parquet"))], ignore_index=True
    )
    items = pd.read_parquet(raw / "items.parquet")
    users = pq.read_table(raw / "users.parquet")  # a pyarrow Table
    rep = tr.import_events(
        events,
        tmp_path / "data",
        "user=user_id,item=item_id,ts=timestamp,session=session_id,price=price,quantity=quantity",
        items=items,
        users=users,
        event_type="event_type",
        quiet=True,
    )
    want = tr.dataset_info(data)
    assert rep["rows_imported"] == len(events) == want["num_events"]
    got = tr.dataset_info(tmp_path / "data")
    assert got["num_events"] == want["num_events"]
    assert sorted(got["partitions"]) == sorted(want["partitions"])


def test_small_hand_made_frame_with_strings_and_skip(tmp_path: pathlib.Path) -> None:
    df = pd.DataFrame(
        {
            "customer": ["c1", "c2", "c1", "c3"],
            "sku": ["p1", "p2", "p2", "p1"],
            "when": ["2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z", "not a time", "2025-01-02T09:00:00Z"],
            "kind": ["view", "purchase", "click", "add_to_cart"],
        }
    )
    rep = tr.import_events(
        pa.Table.from_pandas(df),
        tmp_path / "d",
        {"user": "customer", "item": "sku", "ts": "when", "event_type": "kind"},
        on_error="skip",
        quiet=True,
    )
    assert rep["rows_read"] == 4 and rep["rows_imported"] == 3
    assert sum(rep["skipped"].values()) == 1
    assert rep["users"] == 3 and rep["items"] == 2
