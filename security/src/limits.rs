//! Named maxima of the security crate and the server limits every HTTP API applies.

use std::time::Duration;

/// Largest credentials or ACL file read, in bytes.
pub const POLICY_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Most credentials in one file.
pub const CREDENTIALS_LEN_MAX: usize = 10_000;

/// Longest principal or secret, in bytes.
pub const CREDENTIAL_TEXT_LEN_MAX: usize = 4096;

/// Most rules in one ACL file (all actions together).
pub const ACL_RULES_MAX: usize = 10_000;

/// Longest `Authorization` header examined, in bytes; a longer one is a wrong credential.
pub const AUTHORIZATION_HEADER_BYTES_MAX: usize = 8192;

/// HTTP servers: time a client has to send the request head after connecting (actix'
/// `client_request_timeout`; hyper's `header_read_timeout`).
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP servers: time a client has to finish the TLS or connection shutdown.
pub const HTTP_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP servers: how long an idle keep-alive connection is kept open.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP servers: most connections open at once, per worker thread (actix'
/// `max_connections`; further connections wait in the listen backlog).
pub const HTTP_CONNECTIONS_PER_WORKER_MAX: usize = 1024;

/// HTTP servers: largest request body of an API that takes no body of its own (master,
/// slave), in bytes. Marathon and Chronos set their own in their `limits.rs`.
pub const HTTP_BODY_BYTES_MAX: usize = 64 * 1024;
