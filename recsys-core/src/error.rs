//! The one error type of `recsys-core`.

/// Everything that can go wrong in `recsys-core`.
///
/// [`Error::InvalidInput`] is the caller's fault (a bad field or value) and is safe to show to a
/// user as is; [`Error::Internal`] is a broken invariant inside the library and deserves a bug report.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A field had a value the library cannot accept.
    #[error("invalid value for `{field}`: {value:?} ({reason})")]
    InvalidInput {
        /// The field (column, parameter) that was wrong.
        field: String,
        /// The offending value, as text.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A lookup for an id that does not exist.
    #[error("{kind} not found: {id:?}")]
    NotFound {
        /// What was looked up ("user", "item", ...).
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// A broken invariant inside the library: a bug, not a user error.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the error is the caller's fault (bad input or an unknown id).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Internal(_))
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
