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
    /// An admin route, or an event post where the server has an events token, without the
    /// right bearer token.
    #[error("bearer token missing or wrong")]
    Unauthorized,
    /// A client over one of its limits (`http.events`): HTTP 429 with `Retry-After`.
    #[error("rate limited by `{limit}` at `{field}` ({value}): {reason}")]
    RateLimited {
        /// The configuration field of the limit, e.g. `http.events.per_second`.
        limit: String,
        /// The request field that went over it.
        field: String,
        /// Its value.
        value: String,
        /// The limit in words.
        reason: String,
        /// Seconds after which the same request can pass.
        retry_after_s: u64,
    },
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
            Error::BadRequest { .. }
            | Error::NotFound { .. }
            | Error::Unauthorized
            | Error::TooLarge { .. }
            | Error::RateLimited { .. } => true,
            Error::Core(e) => e.is_user_error(),
            Error::Internal(_) => false,
        }
    }
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary, for
/// quoting a long client value in an error (slicing at a byte offset would panic inside a UTF-8
/// character).
pub(crate) fn truncate_chars(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let end = s
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|&i| i <= max_bytes)
        .last()
        .unwrap_or(0);
    &s[..end]
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the offline pipeline (the `dataset` feature: warming from a dataset directory, the
/// simulator) in serving's terms: the user's errors stay user errors naming the same field or file,
/// I/O errors keep their kind, the rest are internal.
#[cfg(feature = "dataset")]
impl From<recsys_train::Error> for Error {
    fn from(e: recsys_train::Error) -> Self {
        use recsys_train::Error as T;
        match e {
            T::Core(c) => Error::Core(c),
            T::Io { path, source } => Error::Core(recsys_core::Error::io(path)(source)),
            T::InvalidArgument { name, value, reason } => Error::BadRequest {
                field: name,
                value,
                reason,
            },
            T::BadRow {
                file,
                row,
                column,
                value,
                reason,
            } => Error::BadRequest {
                field: column,
                value,
                reason: format!("{file}: row {row}: {reason}"),
            },
            T::InvalidData { path, message } => Error::Core(recsys_core::Error::corrupt(path.display(), message)),
            e @ T::GateFailed { .. } => Error::BadRequest {
                field: "gate".into(),
                value: String::new(),
                reason: e.to_string(),
            },
            e => Error::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_chars;

    #[test]
    fn truncation_never_cuts_a_character() {
        let s = format!("{}\u{e9}tail", "a".repeat(31));
        assert_eq!(truncate_chars(&s, 32), "a".repeat(31));
        assert_eq!(truncate_chars(&s, 33), format!("{}\u{e9}", "a".repeat(31)));
        assert_eq!(truncate_chars("short", 32), "short");
        assert_eq!(truncate_chars("\u{1f600}x", 2), "");
    }
}
