//! What can go wrong talking to the store, as types a caller can match on.

use std::time::Duration;

use crate::object::FormatError;

/// An error from [`crate::Store`] or from building one.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The key is not in the bucket (S3 `NoSuchKey`).
    #[error("{key}: no such object")]
    NotFound { key: String },
    /// No answer within the per-request timeout, on every attempt allowed.
    #[error("{op} {key}: no answer within {after:?} ({attempts} attempts)")]
    Timeout {
        op: &'static str,
        key: String,
        after: Duration,
        attempts: u32,
    },
    /// The store answered 5xx or asked us to slow down, on every attempt allowed.
    #[error("{op} {key}: store unavailable after {attempts} attempts: HTTP {status} {code}")]
    Unavailable {
        op: &'static str,
        key: String,
        status: u16,
        code: String,
        attempts: u32,
    },
    /// The connection failed (refused, reset, closed early) on every attempt allowed.
    #[error("{op} {key}: connection failed after {attempts} attempts: {detail}")]
    Connection {
        op: &'static str,
        key: String,
        detail: String,
        attempts: u32,
    },
    /// The store refused the request (4xx other than throttling): not retried.
    #[error("{op} {key}: refused: HTTP {status} {code}: {message}")]
    Refused {
        op: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A ranged GET came back with more bytes than asked for.
    #[error("{key}: asked for {asked} bytes, got {got}")]
    BadLength { key: String, asked: u64, got: u64 },
    /// The configuration cannot work (no credentials, no endpoint, no TLS roots...).
    #[error("tier configuration: {0}")]
    Config(String),
    /// The SDK failed before sending anything (a bug or a bad argument): not retried.
    #[error("{op} {key}: {detail}")]
    Internal {
        op: &'static str,
        key: String,
        detail: String,
    },
    /// An object read back does not verify (see [`crate::object`]).
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl TierError {
    /// Worth another attempt: timeouts, 5xx and throttling, broken connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TierError::Timeout { .. }
                | TierError::Unavailable { .. }
                | TierError::Connection { .. }
        )
    }

    /// Sets the attempt count on an error that is reported after the retries ran out.
    pub(crate) fn after_attempts(mut self, n: u32) -> Self {
        match &mut self {
            TierError::Timeout { attempts, .. }
            | TierError::Unavailable { attempts, .. }
            | TierError::Connection { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}
