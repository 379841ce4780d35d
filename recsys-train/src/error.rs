//! The one error type of `recsys-train`.

use crate::arrow;
use std::path::PathBuf;

/// Everything that can go wrong in the offline pipeline.
///
/// User errors ([`Error::BadRow`], [`Error::InvalidArgument`], [`Error::InvalidData`] and
/// user-side [`Error::Core`] errors) describe input the caller can fix; [`Error::Io`] is the
/// environment; [`Error::Arrow`], [`Error::Parquet`] and [`Error::Internal`] are ours.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed input row.
    #[error("{file}: row {row}, column `{column}`: {reason}: {value:?}")]
    BadRow {
        /// Input file.
        file: String,
        /// 1-based data row (the header is not counted).
        row: u64,
        /// Input column name.
        column: String,
        /// The offending value as text.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A command-line argument or API parameter that cannot be used.
    #[error("invalid argument `{name}`: {value:?}: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: String,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A file that exists but does not hold what it should (wrong schema, corrupt, foreign).
    #[error("{path}: {message}")]
    InvalidData {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An operating-system I/O failure on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An error from `recsys-core`.
    #[error(transparent)]
    Core(#[from] recsys_core::Error),
    /// An Arrow compute or IPC failure.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A Parquet encoding or decoding failure.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A trained model that fails a validation gate (a minimum or a regression against the current model).
    #[error("validation gate failed: {metric} = {value:.4} < {threshold:.4} ({reason})")]
    GateFailed {
        /// The metric, e.g. `ndcg@20`.
        metric: String,
        /// Its value (NaN when the metric is missing).
        value: f64,
        /// The value it had to reach.
        threshold: f64,
        /// Which gate: `minimum`, `missing`, or a regression description.
        reason: String,
    },
    /// A broken invariant: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn arg(name: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::InvalidData`].
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::InvalidData {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// True when the caller (the data, the arguments) is at fault rather than the library.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::BadRow { .. }
            | Error::InvalidArgument { .. }
            | Error::InvalidData { .. }
            | Error::GateFailed { .. } => true,
            Error::Core(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
