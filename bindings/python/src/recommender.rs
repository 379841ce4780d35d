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
            Some(c) => serde_json::from_value(from_py("config", c)?)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("invalid argument `config`: {e}")))?,
        };
        let opts = RecommenderOptions {
            registry,
            data,
            store,
            config,
        };
        let inner = py.detach(|| recsys_serve::Recommender::open(opts)).py()?;
        Ok(Recommender { inner })
    }

    /// The top ``k`` items for ``user_id``: ``{"user_id", "model_version", "variant", "items":
    /// [{"item_id", "score", "reason"}, ...], "source"}``. ``context``: ``home``, ``cart``,
    /// ``product:ITEM_ID`` or ``category:NAME``. An unknown user is a cold start, not an error.
    #[pyo3(signature = (user_id, k=None, context=None, category=None, min_price=None, max_price=None, exclude=None))]
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
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = RecQuery {
            k,
            context,
            category,
            min_price,
            max_price,
            exclude: exclude.unwrap_or_default(),
        };
        let out = py.detach(|| self.inner.recommend(user_id, &q)).py()?;
        report(py, &out)
    }

    /// Items similar to ``item_id``: ``{"item_id", "model_version", "items": [...]}``.
    #[pyo3(signature = (item_id, k=20))]
    fn similar<'py>(&self, py: Python<'py>, item_id: &str, k: usize) -> PyResult<Bound<'py, PyAny>> {
        let out = py.detach(|| self.inner.similar(item_id, k)).py()?;
        report(py, &out)
    }

    /// Applies events at once (a dict or a list of dicts with ``user_id``, ``item_id``,
    /// ``event_type`` and optional ``timestamp`` (UTC ms), ``session_id``, ``price``, ``quantity``,
    /// ``rating``); all or nothing. Returns how many were accepted.
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
