//! The one place where Rust errors become Python exceptions.
//!
//! | Rust | Python |
//! |---|---|
//! | user errors (`is_user_error()`: bad rows, arguments, data; unknown ids; corrupt files; failed gates) | `ValueError` |
//! | I/O on a path | `FileNotFoundError`, `PermissionError`, `FileExistsError`, else `OSError` |
//! | an unreachable service (Redis) | `ConnectionError` (an `OSError`) |
//! | Arrow, Parquet and internal errors (bugs) | `RuntimeError` |
//!
//! The exception's message is the Rust error's `Display` text, unchanged.

use pyo3::PyErr;
use pyo3::exceptions::{
    PyConnectionError, PyFileExistsError, PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError,
    PyValueError,
};
use std::io::ErrorKind;

/// Converts a Rust result into a Python one (`.py()?` in every binding function).
pub trait IntoPy<T> {
    /// The result with its error mapped to the Python exception of this module's table.
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, recsys_train::Error> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(train_error)
    }
}

impl<T> IntoPy<T> for Result<T, recsys_core::Error> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(core_error)
    }
}

/// The Python exception for a `recsys-train` error.
pub fn train_error(e: recsys_train::Error) -> PyErr {
    use recsys_train::Error as E;
    match e {
        E::Core(core) => core_error(core),
        E::Io { ref source, .. } => io_error(source.kind(), e.to_string()),
        e if e.is_user_error() => PyValueError::new_err(e.to_string()),
        e => PyRuntimeError::new_err(e.to_string()),
    }
}

/// The Python exception for a `recsys-core` error.
pub fn core_error(e: recsys_core::Error) -> PyErr {
    use recsys_core::Error as E;
    match e {
        E::Io { kind, .. } => io_error(kind, e.to_string()),
        E::Unavailable { .. } => PyConnectionError::new_err(e.to_string()),
        e if e.is_user_error() => PyValueError::new_err(e.to_string()),
        e => PyRuntimeError::new_err(e.to_string()),
    }
}

/// The Python exception for a `recsys-serve` error.
pub fn serve_error(e: recsys_serve::Error) -> PyErr {
    use recsys_serve::Error as E;
    match e {
        E::Core(core) => core_error(core),
        e if e.is_user_error() => PyValueError::new_err(e.to_string()),
        e => PyRuntimeError::new_err(e.to_string()),
    }
}

fn io_error(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
        ErrorKind::AlreadyExists => PyFileExistsError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}
