//! `techshop_recs.Registry`: the versioned model registry (`recsys-train registry`).

use crate::convert::report;
use crate::errors::IntoPy;
use pyo3::prelude::*;
use recsys_train::Error;
use std::path::PathBuf;

/// A model registry directory: versions with checksums, the current version, promotion and rollback.
#[pyclass(module = "techshop_recs._native", name = "Registry", frozen)]
pub struct Registry {
    inner: recsys_train::registry::Registry,
}

#[pymethods]
impl Registry {
    /// Opens the registry at ``path`` (an existing directory, as ``train`` creates it).
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        if !path.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "not a registry directory");
            return Err(Error::Io { path, source }).py();
        }
        Ok(Registry {
            inner: recsys_train::registry::Registry::open(&path).py()?,
        })
    }

    /// The registry directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.root().to_path_buf()
    }

    /// The published versions in ascending order, each ``{"version", "created_at_ms", "metrics", "current"}``.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = py.detach(|| self.inner.list()).py()?;
        report(py, &v)
    }

    /// The current (promoted) version, or None.
    fn current(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.inner.current()).py()
    }

    /// A version's manifest: files with checksums, metrics and training info.
    fn manifest<'py>(&self, py: Python<'py>, version: &str) -> PyResult<Bound<'py, PyAny>> {
        let m = py.detach(|| self.inner.manifest(version)).py()?;
        report(py, &m)
    }

    /// Verifies ``version``'s checksums and makes it current; returns the current version.
    fn promote(&self, py: Python<'_>, version: &str) -> PyResult<Option<String>> {
        py.detach(|| {
            self.inner.promote(version)?;
            self.inner.current()
        })
        .py()
    }

    /// Switches back to the previously promoted version and returns it.
    fn rollback(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| self.inner.rollback()).py()
    }

    fn __repr__(&self) -> String {
        format!("Registry({:?})", self.inner.root().display().to_string())
    }
}
