//! Named maxima of the balancer: every map fed from outside, every retry loop and every
//! timeout has one here.

use std::time::Duration;

/// Most apps the routing table keeps; further apps are refused and reported.
pub const APPS_MAX: usize = 20_000;

/// Most backends (tasks) routed per app; the rest are left out and reported.
pub const BACKENDS_PER_APP_MAX: usize = 10_000;

/// Most port indices considered per app.
pub const PORTS_PER_APP_MAX: usize = 64;

/// Most virtual hosts per app port (`HAPROXY_{n}_VHOST`).
pub const VHOSTS_PER_PORT_MAX: usize = 64;

/// Most path prefixes per app port (`HAPROXY_{n}_PATH`).
pub const PATHS_PER_PORT_MAX: usize = 64;

/// Longest host name accepted in a `VHOST` label (DNS' own limit).
pub const VHOST_LEN_MAX: usize = 253;

/// Longest path prefix accepted in a `PATH` label.
pub const PATH_PREFIX_LEN_MAX: usize = 1024;

/// Most problems (bad labels, conflicts) the table keeps to report; later ones are counted.
pub const PROBLEMS_MAX: usize = 1_000;

/// Most connections (TCP and HTTP clients together) the data plane serves at once; further
/// clients wait in the listen backlog (HAProxy's `maxconn`).
pub const CONNECTIONS_MAX: usize = 50_000;

/// Listen backlog of each HTTP thread's listener (tokio's default for its listeners).
pub const HTTP_LISTEN_BACKLOG: u32 = 1024;

/// Most connections the admin listener serves at once.
pub const ADMIN_CONNECTIONS_MAX: usize = 64;

/// Admin listener: time a client has for its TLS handshake and for each request head.
pub const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Admin listener: a connection with no request for this long is closed (default of
/// [`DataPlaneConfig::admin_idle_timeout`](crate::DataPlaneConfig)).
pub const ADMIN_IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Most backends one TCP connection tries before giving up (the first try included).
pub const TCP_CONNECT_ATTEMPTS_MAX: usize = 3;

/// Most backends one HTTP request tries when connecting fails (the first try included).
pub const HTTP_ATTEMPTS_MAX: usize = 3;

/// Most times a connection or request reads the table again because every backend of the
/// table it read was retired (drained or removed) by a newer one meanwhile.
pub const PICK_TABLE_REREADS_MAX: usize = 3;

/// How long connecting to a backend may take (HAProxy's `timeout connect`).
pub const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default wait for a backend's response headers before answering 504.
pub const RESPONSE_HEADER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How long a client may take to send a request's headers (HAProxy's `timeout http-request`),
/// counted from the end of the previous response on a kept-alive connection: an idle client
/// connection is closed after this long.
pub const CLIENT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest request or response head (request line or status line and headers) accepted;
/// a longer request head is answered 431, a longer response head 502.
pub const HEAD_LEN_MAX: usize = 64 * 1024;

/// Most headers in one request or response head.
pub const HEADERS_MAX: usize = 128;

/// Longest chunk-size line (or trailer line) of a chunked body.
pub const CHUNK_LINE_LEN_MAX: usize = 4096;

/// Most hex digits in a chunk size: 15 digits are sizes below 2^60 (an exabyte), so a size plus
/// its CRLF never overflows; a longer size is a malformed body.
pub const CHUNK_SIZE_DIGITS_MAX: usize = 15;

/// How long a body being relayed may go without a byte before the exchange is dropped
/// (HAProxy's `timeout client` / `timeout server` while data flows).
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Backend connections one client connection keeps idle for its next requests (one per
/// backend it used last); older ones go to its HTTP thread's pool.
pub const CLIENT_BACKEND_CONNECTIONS_MAX: usize = 4;

/// Most backends the idle pool of one HTTP thread holds connections for.
pub const POOL_BACKENDS_MAX: usize = 10_000;

/// Idle pooled connections kept per backend, per HTTP thread.
pub const POOL_IDLE_PER_BACKEND_MAX: usize = 64;

/// How long an idle pooled backend connection is kept.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// First delay before subscribing again after the link to Marathon broke.
pub const RESUBSCRIBE_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest delay between subscription attempts.
pub const RESUBSCRIBE_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How long to wait for the snapshot answering a subscription before subscribing again.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default drain deadline of a TCP-mode connection whose backend left the table or is
/// draining: it may finish on its own for this long, then it is closed. Long enough for
/// request/response protocols to finish their exchange, short enough that a removed task's
/// connections cannot linger for hours (marathon-lb's old HAProxy processes did, #359).
pub const TCP_DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Delay before retrying to bind a service port that could not be bound.
pub const LISTENER_REBIND_INTERVAL: Duration = Duration::from_secs(1);
