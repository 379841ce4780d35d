"""Type stubs of techshop_recs (the Python binding of techshop-recs)."""

import os
import pathlib
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow

PathLike = Union[str, os.PathLike[str]]
Report = Dict[str, Any]

__version__: str

def generate(
    out: PathLike,
    *,
    users: int = 5000,
    items: int = 1000,
    events_per_day: int = 40000,
    days: int = 14,
    seed: int = 42,
    start: str = "2025-10-01",
    quiet: bool = False,
) -> Report:
    """Writes a synthetic TechShop export into ``out``; returns ``{"config", "events", "purchases", "files"}``."""

def import_events(
    events: Union[PathLike, Sequence[Any], Any],
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
) -> Report:
    """Imports event files, DataFrames or pyarrow Tables into the dataset ``out``; returns the import report."""

def compute_features(data: PathLike, out: PathLike, *, as_of: str = "end", quiet: bool = False) -> Report:
    """Point-in-time user and item features of ``data`` into ``out``; returns the features report."""

def train(
    data: PathLike,
    registry: PathLike,
    *,
    config: Union[Mapping[str, Any], PathLike, None] = None,
    gates: Union[Mapping[str, Any], PathLike, None] = None,
    backend: str = "cpu",
    protocol: str = "time-split",
    test_days: Optional[int] = None,
    item_index: str = "auto",
    quiet: bool = False,
) -> Report:
    """Trains, evaluates, publishes and (when the gates pass) promotes; returns ``{"version", "promoted", "metrics", "gate_failure"?}``."""

def evaluate(
    data: PathLike,
    *,
    model: str = "current",
    registry: Optional[PathLike] = None,
    protocol: str = "time-split",
    baselines: Sequence[str] = (),
    test_days: Optional[int] = None,
    quiet: bool = False,
) -> Report:
    """Full-ranking evaluation of a model and baselines; returns ``{"protocol", "models", "users_evaluated"}``."""

def precompute(
    data: PathLike,
    registry: PathLike,
    store: str,
    *,
    model: str = "current",
    top: int = 500,
    similar: int = 50,
    shard: str = "0/1",
    index: Literal["auto", "exact", "ivf"] = "auto",
    ivf_probes: int = 112,
    ttl: int = 604800,
    quiet: bool = False,
) -> Report:
    """Every user's candidates and every item's neighbours into the store ``store`` (a URL); returns the report.

    ``index``: the exact scan or the inverted file (``"auto"``: the inverted file from 20,000 items);
    ``ivf_probes``: lists the inverted file scans per user."""

def dataset_info(data: PathLike) -> Report:
    """The dataset's manifest summary."""

def simulate(
    data: PathLike,
    registry: PathLike,
    *,
    policy: str = "current",
    requests: int = 10_000,
    seed: int = 1,
    k: int = 10,
    config: Optional[Mapping[str, Any]] = None,
    store: Optional[str] = None,
    exposure_log: Optional[PathLike] = None,
    event_log: Optional[PathLike] = None,
    window_days: float = 7.0,
    threads: Optional[int] = None,
    quiet: bool = True,
) -> Report:
    """Simulated traffic served by the real Recommender: CTR, conversion, AOV with 95% intervals and the true CTR (``recsys-train simulate``)."""

def ope(
    logs: PathLike,
    policy: str,
    *,
    events: Optional[PathLike] = None,
    format: str = "exposure",
    registry: Optional[PathLike] = None,
    data: Optional[PathLike] = None,
    window_minutes: int = 30,
    clip: Optional[float] = None,
    bootstrap: int = 200,
    seed: int = 42,
    folds: int = 5,
    quiet: bool = True,
) -> Report:
    """Off-policy estimates of ``policy``'s CTR from logged exposures (or an Open Bandit Dataset CSV): replay, IPS, SNIPS, DR, intervals, ESS (``recsys-train ope``)."""

def ab_report(
    exposures: PathLike,
    events: PathLike,
    *,
    window_minutes: int = 30,
    purchase_window_minutes: Optional[int] = None,
    control: str = "control",
    expected: Optional[Sequence[Tuple[str, float]]] = None,
    min_conversion: float = 0.03,
    sequential: bool = False,
    sequential_tau: float = 0.1,
    cuped_pre: Optional[PathLike] = None,
    quiet: bool = True,
) -> Report:
    """An A/B experiment's figures per variant with 95% intervals, lifts, the sample-ratio check and guardrails (``recsys-train ab-report``)."""

def model_item_embeddings(registry: PathLike, version: str = "current") -> npt.NDArray[np.float32]:
    """The model's item embeddings, shape ``(items, dim)``, float32."""

class Registry:
    """A model registry directory."""

    def __init__(self, path: PathLike) -> None: ...
    @property
    def path(self) -> pathlib.Path: ...
    def list(self) -> List[Report]:
        """The versions, each ``{"version", "created_at_ms", "metrics", "current"}``."""
    def current(self) -> Optional[str]:
        """The current version, or None."""
    def manifest(self, version: str) -> Report:
        """A version's manifest."""
    def promote(self, version: str) -> Optional[str]:
        """Verifies and promotes ``version``; returns the current version."""
    def rollback(self) -> str:
        """Switches back to the previous version and returns it."""

class CandidateStore:
    """A candidate store (``file:DIR``, ``redis://...``)."""

    def __init__(self, url: str) -> None: ...
    @property
    def url(self) -> str: ...
    def versions(self) -> Report:
        """``{"active", "versions"}``."""
    def active_version(self) -> Optional[str]:
        """The active version, or None."""
    def activate(self, version: str) -> None:
        """Makes a complete version active."""
    def get_user(self, user_id: str, k: int = 20) -> List[Dict[str, Any]]:
        """The user's first ``k`` candidates, ``[{"item_id", "score"}, ...]``."""
    def get_item(self, item_id: str, k: int = 20) -> List[Dict[str, Any]]:
        """The item's first ``k`` neighbours, ``[{"item_id", "score"}, ...]``."""

class Recommender:
    """The online pipeline in process (the same answers as ``recsys-serve``)."""

    @staticmethod
    def open(
        registry: PathLike,
        store: Optional[str] = None,
        data: Optional[PathLike] = None,
        config: Optional[Mapping[str, Any]] = None,
    ) -> "Recommender":
        """Opens the registry's current model, the dataset and the candidate store."""
    def recommend(
        self,
        user_id: str,
        k: Optional[int] = None,
        context: Optional[str] = None,
        category: Optional[str] = None,
        min_price: Optional[float] = None,
        max_price: Optional[float] = None,
        exclude: Optional[Sequence[str]] = None,
        device: Optional[str] = None,
        hour: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> Report:
        """``{"user_id", "model_version", "variant", "items": [{"item_id", "score", "reason"}], "source",
        "request_id"}``. ``device``: 1 to 32 characters of ``[A-Za-z0-9_-]``; ``hour``: the user's local
        hour, 0-23 (default: the UTC hour). ``request_id``: a fresh one per answer, or yours when given
        (1 to 64 characters of ``[A-Za-z0-9_.:-]``)."""
    @overload
    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: Optional[int] = None,
        context: Optional[str] = None,
        as_table: Literal[False] = False,
        device: Optional[str] = None,
        hour: Optional[int] = None,
    ) -> List[Report]: ...
    @overload
    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: Optional[int] = None,
        context: Optional[str] = None,
        as_table: Literal[True] = ...,
        device: Optional[str] = None,
        hour: Optional[int] = None,
    ) -> "pyarrow.Table":
        """``recommend`` for many users in parallel (GIL released): a list of reports, or with
        ``as_table=True`` a ``pyarrow.Table`` (``user_id``, ``rank``, ``item_id``, ``score``,
        ``reason``, ``model_version``, ``variant``, ``source``, ``request_id``), one row per item."""
    def similar(self, item_id: str, k: int = 20) -> Report:
        """``{"item_id", "model_version", "items": [...]}``; ValueError for an unknown item or k outside 1..=500."""
    def ingest(self, events: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]) -> int:
        """Applies events at once (all or nothing); returns how many were accepted. An event may
        carry ``request_id``: the ``request_id`` of the answer it came from (at most 64 bytes)."""
    def status(self) -> Report:
        """What is being served."""
    def reload(self) -> Report:
        """Loads the registry's current model; the old one keeps serving on failure."""
