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
    /// Reading or writing a file failed (missing file, permissions, disk full).
    #[error("I/O error on {path}: {message}")]
    Io {
        /// The file or directory.
        path: String,
        /// The operating system's error kind (`NotFound`, `PermissionDenied`, ...): what the
        /// bindings map to their own error types.
        kind: std::io::ErrorKind,
        /// What the operating system said.
        message: String,
    },
    /// A file or stored value failed its integrity check (checksum, magic, truncated or inconsistent).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The file, key or artifact that was refused.
        what: String,
        /// Which check failed.
        reason: String,
    },
    /// An external service (Redis) failed or could not be reached: retry later, not the caller's input.
    #[error("{service} unavailable: {message}")]
    Unavailable {
        /// The service ("redis", ...).
        service: &'static str,
        /// What failed.
        message: String,
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

    /// Shorthand for [`Error::Io`]: `.map_err(Error::io(path))`.
    pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        move |e| Error::Io {
            path,
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(what: impl ToString, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the error is the caller's fault (bad input, an unknown id, a corrupt file they passed);
    /// false for the environment ([`Error::Io`], [`Error::Unavailable`]) and for bugs.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput { .. } | Error::NotFound { .. } | Error::Corrupt { .. }
        )
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_keep_the_operating_systems_kind() {
        let missing = std::fs::read("/no/such/techshop-recs/file").map_err(Error::io("/no/such/techshop-recs/file"));
        match missing {
            Err(Error::Io { kind, ref path, .. }) => {
                assert_eq!(kind, std::io::ErrorKind::NotFound);
                assert!(path.contains("no/such"));
            }
            other => panic!("{other:?}"),
        }
    }
}
