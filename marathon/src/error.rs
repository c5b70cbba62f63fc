//! The error type of this crate.

use thiserror::Error;

/// Operating errors of the Marathon pure cores: bad input from a user or a peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// A timestamp that is not an ISO 8601 instant.
    #[error("invalid timestamp {input:?}: {reason}")]
    InvalidTimestamp {
        /// The text that was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A unix-ms value that cannot be shown as a calendar date.
    #[error("timestamp {unix_ms} ms is out of the representable range")]
    TimestampOutOfRange {
        /// The value that was given.
        unix_ms: i64,
    },
    /// A placement constraint that Marathon would refuse; `message` is Marathon's text.
    #[error("invalid constraint: {message}")]
    InvalidConstraint {
        /// Marathon's validation message, as sent in a 422 body.
        message: String,
    },
    /// The state store could not be read or written.
    #[error("state store {path}: {message}")]
    Store {
        /// The store's file (or `memory`).
        path: String,
        /// What failed.
        message: String,
    },
    /// The HTTP server could not start.
    #[error("cannot start the HTTP server on {addr}: {message}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The node refused the Marathon process.
    #[error("cannot start the marathon process: {0}")]
    Spawn(String),
    /// `plateau bench launch` could not complete.
    #[error("launch benchmark: {message}")]
    Bench {
        /// What went wrong.
        message: String,
    },
}
