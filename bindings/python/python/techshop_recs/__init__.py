"""techshop-recs from Python: the offline pipeline (generate, import, features, train, evaluate,
precompute), the model registry, the candidate store and the online ``Recommender``.

Every function calls the same Rust library function as the ``recsys-train`` command of the same
name and returns the same report the command prints, as a dict. Long calls release the GIL and
show progress bars on stderr unless ``quiet=True``. Errors: ``ValueError`` for bad input (the
message names the argument, file, row or value), ``FileNotFoundError``/``OSError`` for I/O,
``RuntimeError`` for internal errors.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from ._native import (
    CandidateStore,
    Recommender,
    Registry,
    __version__,
    ab_report,
    compute_features,
    dataset_info,
    evaluate,
    generate,
    ope,
    precompute,
    simulate,
    train,
)
from . import _native

__all__ = [
    "CandidateStore",
    "Recommender",
    "Registry",
    "__version__",
    "ab_report",
    "compute_features",
    "dataset_info",
    "evaluate",
    "generate",
    "import_events",
    "model_item_embeddings",
    "ope",
    "precompute",
    "simulate",
    "train",
]

PathLike = Union[str, "os.PathLike[str]"]


def _is_table(x: Any) -> bool:
    """True for a pandas DataFrame or a pyarrow Table / RecordBatch (duck-typed, no imports)."""
    mod = type(x).__module__
    return (mod.startswith("pandas") and hasattr(x, "to_parquet")) or (
        mod.startswith("pyarrow") and hasattr(x, "schema")
    )


def _write_parquet(table: Any, path: str) -> str:
    """Writes a DataFrame or pyarrow Table to ``path`` as Parquet (through pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, (pa.Table, pa.RecordBatch)):
        table = pa.Table.from_pandas(table, preserve_index=False)
    elif isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    pq.write_table(table, path)
    return path


def _map_text(map: Union[str, Mapping[str, str]]) -> str:
    if isinstance(map, str):
        return map
    return ",".join(f"{k}={v}" for k, v in map.items())


def import_events(
    events: Union[PathLike, Sequence[PathLike], Any],
    out: PathLike,
    map: Union[str, Mapping[str, str]],
    *,
    items: Union[PathLike, Any, None] = None,
    users: Union[PathLike, Any, None] = None,
    ts_format: str = "rfc3339",
    event_type: Optional[str] = None,
    on_error: str = "fail",
    format: Optional[str] = None,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Imports events into the dataset directory ``out`` (created when missing; the days in the
    input replace the same days) and returns the import report
    (``{"rows_read", "rows_imported", "skipped", "partitions", "users", "items", ...}``).

    ``events``: a file or directory, a list of them (CSV, zipped CSV, Parquet, Arrow IPC, user
    sequences), or a pandas DataFrame / pyarrow Table; ``items`` and ``users`` likewise (one file or
    table each). Tables go through a temporary Parquet file and the same Rust import as files.
    ``map``: the column mapping, ``{"user": COL, "item": COL, "ts": COL, ...}`` or the CLI's
    ``"user=COL,item=COL,ts=COL,..."``. ``ts_format``: ``rfc3339``, ``unix``, ``unix_ms`` or a
    strftime pattern; a pandas datetime column is written as a Parquet timestamp and read as such.
    ``event_type``: a constant (``view``, ``click``, ``add_to_cart``, ``purchase``) or a column name.
    ``on_error``: ``fail`` (default) or ``skip`` malformed rows. ``format``: force the input format
    of files (``csv``, ``parquet``, ``arrow``, ``sequences``, ``json``).
    """
    with tempfile.TemporaryDirectory(prefix="techshop-import-") as tmp:

        def path_of(x: Any, name: str) -> Any:
            if x is None or not _is_table(x):
                return x
            return _write_parquet(x, os.path.join(tmp, f"{name}.parquet"))

        if _is_table(events):
            event_paths = [path_of(events, "events")]
            if format is not None and format != "parquet":
                raise ValueError(f"invalid argument `format`: {format!r}: a table is imported as parquet")
        elif isinstance(events, (str, os.PathLike)):
            event_paths = [events]
        else:
            event_paths = [path_of(e, f"events-{i}") for i, e in enumerate(events)]
        return _native.import_files(
            event_paths,
            out,
            _map_text(map),
            items=path_of(items, "items"),
            users=path_of(users, "users"),
            ts_format=ts_format,
            event_type=event_type,
            on_error=on_error,
            format=format,
            quiet=quiet,
        )


def model_item_embeddings(registry: PathLike, version: str = "current") -> "Any":
    """The item embeddings of a model as a ``numpy.ndarray`` of ``float32``, shape ``(items, dim)``
    (L2-normalised rows; row ``i`` is the item of dense index ``i``, the order of the dataset's
    ``items.parquet``). ``version``: a version of ``registry``, ``"current"`` or a model directory.
    The array is read-only and shares the buffer Rust filled (one copy, no conversion)."""
    import numpy as np

    rows, dim, raw = _native.item_embeddings_raw(registry, version)
    return np.frombuffer(raw, dtype="<f4").reshape(rows, dim)
