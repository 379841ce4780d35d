//! `techshop_recs.CandidateStore`: the pre-computed candidate lists (`recsys-train store`).

use crate::convert::to_py;
use crate::errors::IntoPy;
use pyo3::prelude::*;
use recsys_train::precompute::{StoreKey, store_get, store_versions};
use std::sync::Arc;

/// A candidate store (``file:DIR``, ``redis://HOST:PORT[/DB]``, ``redis+cluster://HOST:PORT,...``)
/// holding every user's candidates and every item's neighbours per model version.
#[pyclass(module = "techshop_recs._native", name = "CandidateStore", frozen)]
pub struct CandidateStore {
    inner: Arc<dyn recsys_core::store::CandidateStore>,
}

impl CandidateStore {
    fn get<'py>(&self, py: Python<'py>, key: StoreKey<'_>, k: usize) -> PyResult<Bound<'py, PyAny>> {
        let mut v = py.detach(|| store_get(self.inner.as_ref(), key, k)).py()?;
        to_py(py, &v["items"].take())
    }
}

#[pymethods]
impl CandidateStore {
    /// Opens the store at ``url``.
    #[new]
    fn new(py: Python<'_>, url: &str) -> PyResult<Self> {
        let inner = py.detach(|| recsys_core::store::open_store(url)).py()?;
        Ok(CandidateStore { inner })
    }

    /// The store's URL.
    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    /// ``{"active": version or None, "versions": [...]}`` (complete versions only).
    fn versions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = py.detach(|| store_versions(self.inner.as_ref())).py()?;
        to_py(py, &v)
    }

    /// The active version, or None before the first complete ``precompute``.
    fn active_version(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.inner.active_version()).py()
    }

    /// Makes a complete version active.
    fn activate(&self, py: Python<'_>, version: &str) -> PyResult<()> {
        py.detach(|| self.inner.activate(version)).py()
    }

    /// The first ``k`` candidates of ``user_id`` in the active version, best first, as
    /// ``[{"item_id", "score"}, ...]``; ValueError for an unknown user.
    #[pyo3(signature = (user_id, k=20))]
    fn get_user<'py>(&self, py: Python<'py>, user_id: &str, k: usize) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, StoreKey::User(user_id), k)
    }

    /// The first ``k`` neighbours of ``item_id`` in the active version, as ``[{"item_id", "score"}, ...]``.
    #[pyo3(signature = (item_id, k=20))]
    fn get_item<'py>(&self, py: Python<'py>, item_id: &str, k: usize) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, StoreKey::Item(item_id), k)
    }

    fn __repr__(&self) -> String {
        format!("CandidateStore({:?})", self.inner.url())
    }
}
