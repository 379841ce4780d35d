//! `techshop_recs.Recommender`: the online pipeline (`recsys_serve::Recommender`) in process, for
//! notebooks and Python services: the same answers as `recsys-serve` and the Node binding.

use crate::convert::{from_py, report};
use crate::errors::IntoPy;
use pyo3::prelude::*;
use recsys_serve::online::EventIn;
use recsys_serve::{RecQuery, RecommenderOptions, ServeConfig};
use std::path::PathBuf;

impl<T> IntoPy<T> for Result<T, recsys_serve::Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(crate::errors::serve_error)
    }
}

/// A [`recsys_serve::Recommendations`] as the dict `report` would make of its JSON, built directly
/// (interned keys, no intermediate JSON value): the per-call conversion is most of the binding's
/// overhead over the Rust call.
fn recommendations_to_py<'py>(py: Python<'py>, r: &recsys_serve::Recommendations) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::intern;
    use pyo3::types::{PyDict, PyList};
    let items = PyList::empty(py);
    for it in &r.items {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "item_id"), &it.item_id)?;
        d.set_item(intern!(py, "score"), f64::from(it.score))?;
        d.set_item(intern!(py, "reason"), &it.reason)?;
        items.append(d)?;
    }
    let d = PyDict::new(py);
    d.set_item(intern!(py, "user_id"), &r.user_id)?;
    d.set_item(intern!(py, "model_version"), &r.model_version)?;
    d.set_item(intern!(py, "variant"), r.variant.as_str())?;
    d.set_item(intern!(py, "items"), items)?;
    d.set_item(intern!(py, "source"), r.source.as_str())?;
    d.set_item(intern!(py, "request_id"), &r.request_id)?;
    Ok(d.into_any())
}

/// ``hour`` as the query's `u8`, refused (ValueError naming it) outside 0..=23.
fn hour_arg(hour: Option<i64>) -> PyResult<Option<u8>> {
    match hour {
        None => Ok(None),
        Some(h) => {
            u8::try_from(h).ok().filter(|h| *h <= 23).map(Some).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("invalid `hour`: {h} (must be in 0..=23)"))
            })
        }
    }
}

/// The online recommender: candidates from the store (or the model, or trending/popular), the live
/// session, the learned re-ranker, business rules and diversity, in process.
#[pyclass(module = "techshop_recs._native", name = "Recommender", frozen)]
pub struct Recommender {
    inner: recsys_serve::Recommender,
}

#[pymethods]
impl Recommender {
    /// Opens the registry's current model, the dataset (default: the one the model was trained on)
    /// and the candidate store (``file:DIR`` or ``redis://HOST:PORT``; None: candidates from the
    /// model). ``config`` is the serving configuration as a dict (the JSON of ``recsys-serve --config``).
    #[staticmethod]
    #[pyo3(signature = (registry, store=None, data=None, config=None))]
    fn open(
        py: Python<'_>,
        registry: PathBuf,
        store: Option<String>,
        data: Option<PathBuf>,
        config: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let config: ServeConfig = match config {
            None => ServeConfig::default(),
            Some(c) => ServeConfig::from_json(from_py("config", c)?).map_err(crate::errors::serve_error)?,
        };
        let opts = RecommenderOptions {
            registry,
            data,
            store,
            config,
            model: None,
            popular_only: false,
        };
        let inner = py.detach(|| recsys_serve::Recommender::open(opts)).py()?;
        Ok(Recommender { inner })
    }

    /// The top ``k`` items for ``user_id``: ``{"user_id", "model_version", "variant", "items":
    /// [{"item_id", "score", "reason"}, ...], "source", "request_id"}``. ``context``: ``home``,
    /// ``cart``, ``product:ITEM_ID`` or ``category:NAME``; ``device``: 1 to 32 characters of
    /// ``[A-Za-z0-9_-]``; ``hour``: the user's local hour, 0-23 (default: the UTC hour). Each answer
    /// has its own ``request_id`` (events may quote it back): a fresh one, or ``request_id`` when
    /// given (1 to 64 characters of ``[A-Za-z0-9_.:-]``, yours to keep unique). An unknown user is
    /// a cold start, not an error.
    #[pyo3(signature = (user_id, k=None, context=None, category=None, min_price=None, max_price=None, exclude=None, device=None, hour=None, request_id=None))]
    #[allow(clippy::too_many_arguments)] // mirrors the HTTP query parameters one to one
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        user_id: &str,
        k: Option<usize>,
        context: Option<String>,
        category: Option<String>,
        min_price: Option<f64>,
        max_price: Option<f64>,
        exclude: Option<Vec<String>>,
        device: Option<String>,
        hour: Option<i64>,
        request_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = RecQuery {
            k,
            context,
            category,
            min_price,
            max_price,
            exclude: exclude.unwrap_or_default(),
            device,
            hour: hour_arg(hour)?,
            request_id,
        };
        let out = py.detach(|| self.inner.recommend(user_id, &q)).py()?;
        recommendations_to_py(py, &out)
    }

    /// ``recommend`` for many users at once, in parallel on all cores with the GIL released
    /// (batch jobs, notebooks). Returns a list of the dicts ``recommend`` returns, in the order of
    /// ``user_ids``; with ``as_table=True`` a ``pyarrow.Table`` instead, one row per recommended
    /// item: ``user_id``, ``rank`` (1 = best), ``item_id``, ``score``, ``reason``,
    /// ``model_version``, ``variant``, ``source``, ``request_id``. ``device`` and ``hour`` as in
    /// ``recommend``. A bad user id fails the whole call (``ValueError`` naming it).
    #[pyo3(signature = (user_ids, k=None, context=None, as_table=false, device=None, hour=None))]
    #[allow(clippy::too_many_arguments)] // mirrors `recommend`'s keyword arguments
    fn recommend_many<'py>(
        &self,
        py: Python<'py>,
        user_ids: Vec<String>,
        k: Option<usize>,
        context: Option<String>,
        as_table: bool,
        device: Option<String>,
        hour: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        use rayon::prelude::*;
        let q = RecQuery {
            k,
            context,
            device,
            hour: hour_arg(hour)?,
            ..RecQuery::default()
        };
        let all = py
            .detach(|| {
                user_ids
                    .par_iter()
                    .map(|u| self.inner.recommend(u, &q))
                    .collect::<Result<Vec<_>, _>>()
            })
            .py()?;
        if !as_table {
            let list = pyo3::types::PyList::empty(py);
            for r in &all {
                list.append(recommendations_to_py(py, r)?)?;
            }
            return Ok(list.into_any());
        }
        let rows: usize = all.iter().map(|r| r.items.len()).sum();
        let mut user_id = Vec::with_capacity(rows);
        let mut rank = Vec::with_capacity(rows);
        let mut item_id = Vec::with_capacity(rows);
        let mut score = Vec::with_capacity(rows);
        let mut reason = Vec::with_capacity(rows);
        let mut model_version = Vec::with_capacity(rows);
        let mut variant = Vec::with_capacity(rows);
        let mut source = Vec::with_capacity(rows);
        let mut request_id = Vec::with_capacity(rows);
        for r in &all {
            for (i, it) in r.items.iter().enumerate() {
                user_id.push(r.user_id.as_str());
                rank.push(i as u32 + 1);
                item_id.push(it.item_id.as_str());
                score.push(it.score);
                reason.push(it.reason.as_str());
                model_version.push(r.model_version.as_str());
                variant.push(r.variant.as_str());
                source.push(r.source.as_str());
                request_id.push(r.request_id.as_str());
            }
        }
        let pa = py.import("pyarrow").map_err(|e| {
            pyo3::exceptions::PyImportError::new_err(format!("as_table=True needs pyarrow (pip install pyarrow): {e}"))
        })?;
        let columns = pyo3::types::PyDict::new(py);
        columns.set_item("user_id", pa.call_method1("array", (user_id, "string"))?)?;
        columns.set_item("rank", pa.call_method1("array", (rank, "uint32"))?)?;
        columns.set_item("item_id", pa.call_method1("array", (item_id, "string"))?)?;
        columns.set_item("score", pa.call_method1("array", (score, "float32"))?)?;
        columns.set_item("reason", pa.call_method1("array", (reason, "string"))?)?;
        columns.set_item("model_version", pa.call_method1("array", (model_version, "string"))?)?;
        columns.set_item("variant", pa.call_method1("array", (variant, "string"))?)?;
        columns.set_item("source", pa.call_method1("array", (source, "string"))?)?;
        columns.set_item("request_id", pa.call_method1("array", (request_id, "string"))?)?;
        pa.call_method1("table", (columns,))
    }

    /// Items similar to ``item_id``: ``{"item_id", "model_version", "items": [...]}``.
    #[pyo3(signature = (item_id, k=20))]
    fn similar<'py>(&self, py: Python<'py>, item_id: &str, k: usize) -> PyResult<Bound<'py, PyAny>> {
        let out = py.detach(|| self.inner.similar(item_id, k)).py()?;
        report(py, &out)
    }

    /// Applies events at once (a dict or a list of dicts with ``user_id``, ``item_id``,
    /// ``event_type`` and optional ``timestamp`` (UTC ms), ``session_id``, ``price``, ``quantity``,
    /// ``rating``, ``request_id`` (the ``request_id`` of the answer the event came from, at most 64
    /// bytes)); all or nothing. Returns how many were accepted.
    fn ingest(&self, py: Python<'_>, events: &Bound<'_, PyAny>) -> PyResult<usize> {
        let v = from_py("events", events)?;
        let v = if v.is_array() {
            v
        } else {
            serde_json::Value::Array(vec![v])
        };
        let events: Vec<EventIn> = serde_json::from_value(v)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("invalid argument `events`: {e}")))?;
        py.detach(|| self.inner.ingest(&events)).py()
    }

    /// What is being served (model versions, store version, counts).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = py.detach(|| self.inner.status()).py()?;
        report(py, &s)
    }

    /// Loads the registry's current model and swaps it in; the old one keeps serving on failure.
    fn reload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = py.detach(|| self.inner.reload()).py()?;
        report(py, &s)
    }

    fn __repr__(&self) -> PyResult<String> {
        let s = self.inner.status().map_err(crate::errors::serve_error)?;
        Ok(format!(
            "Recommender(model_version={:?}, store={:?})",
            s.model_version, s.store
        ))
    }
}
