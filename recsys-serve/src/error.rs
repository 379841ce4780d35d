//! The one error type of `recsys-serve`.

/// Everything that can go wrong while serving.
///
/// [`Error::BadRequest`] and [`Error::NotFound`] are the client's (HTTP 4xx); the rest are ours
/// or the environment's (HTTP 5xx, never with internals in the body).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field had a value the service cannot accept.
    #[error("invalid `{field}`: {value:?} ({reason})")]
    BadRequest {
        /// The request field or parameter.
        field: String,
        /// Its value.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// An id the service does not know.
    #[error("{kind} not found: {id:?}")]
    NotFound {
        /// What was looked up.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// A request body over the size limit.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// An admin route without the right bearer token.
    #[error("admin token missing or wrong")]
    Unauthorized,
    /// Loading the offline data failed.
    #[error(transparent)]
    Train(#[from] recsys_train::Error),
    /// A core-library error.
    #[error(transparent)]
    Core(#[from] recsys_core::Error),
    /// A broken invariant: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::BadRequest`].
    pub fn bad(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::BadRequest {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the client is at fault.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::BadRequest { .. } | Error::NotFound { .. } | Error::Unauthorized | Error::TooLarge { .. } => true,
            Error::Core(e) => e.is_user_error(),
            Error::Train(e) => e.is_user_error(),
            Error::Internal(_) => false,
        }
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
