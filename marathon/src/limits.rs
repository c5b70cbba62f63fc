//! Named maximums for everything in this crate that grows from outside input.
//!
//! Marathon itself has few limits; these are generous enough that no definition accepted by
//! Marathon 1.10 in practice is refused, and small enough that one request cannot make a pure
//! core allocate or compute without bound.

/// Largest app definition body accepted by [`crate::validation::parse_app`], in bytes.
/// Marathon stores each app in one ZooKeeper node of at most 1 MiB (`--zk_max_node_size`).
pub const APP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most placement constraints on one app.
pub const CONSTRAINTS_PER_APP_MAX: usize = 256;

/// Longest LIKE/UNLIKE regular expression, in bytes.
pub const CONSTRAINT_REGEX_BYTES_MAX: usize = 4096;

/// Compiled size limit handed to the `regex` crate for a LIKE/UNLIKE expression, in bytes.
pub const CONSTRAINT_REGEX_COMPILED_BYTES_MAX: usize = 1024 * 1024;

/// Most health checks on one app.
pub const HEALTH_CHECKS_PER_APP_MAX: usize = 64;

/// Most port definitions (or container port mappings) on one app.
pub const PORTS_PER_APP_MAX: usize = 1024;

/// Most instances considered by [`crate::constraints::select_instances_to_kill`] in one call.
pub const KILL_CANDIDATES_MAX: usize = 100_000;

/// Most apps Marathon keeps.
pub const APPS_MAX: usize = 10_000;

/// Most instances (tasks) Marathon tracks, over all apps.
pub const INSTANCES_MAX: usize = 100_000;

/// Largest `instances` of one app.
pub const INSTANCES_PER_APP_MAX: u32 = 10_000;

/// Versions kept per app for rollback (Marathon's `--zk_max_versions`, default 50).
pub const VERSIONS_PER_APP_MAX: usize = 50;

/// Most deployments in progress (Marathon's `--max_running_deployments`, default 100).
pub const DEPLOYMENTS_MAX: usize = 100;

/// Most `/v2/events` subscribers at once.
pub const EVENT_SUBSCRIBERS_MAX: usize = 256;

/// Events queued per subscriber before it is dropped (Marathon's
/// `--event_stream_max_outstanding_messages`, default 1024).
pub const EVENT_QUEUE_PER_SUBSCRIBER_MAX: usize = 1024;

/// Most tasks launched on one offer (Marathon's `--max_instances_per_offer`).
pub const INSTANCES_PER_OFFER_MAX: usize = 100;

/// Most task ids in one `POST /v2/tasks/delete` body.
pub const TASK_IDS_PER_KILL_MAX: usize = 10_000;

/// Largest request body accepted by the HTTP API, in bytes.
pub const HTTP_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Slaves remembered from offers (for one-instance-per-agent apps).
pub const SLAVES_SEEN_MAX: usize = 100_000;

/// Balancers subscribed to the routes feed (`SubscribeRoutes`); past it the oldest is dropped.
pub const ROUTE_SUBSCRIBERS_MAX: usize = 64;

/// Route changes waiting for their state writes to commit before they go to balancers (leader
/// + standbys); past it the newest waits for a later write.
pub const ROUTES_WAITING_MAX: usize = 64;

/// Worker threads of the real readiness prober (started by the first readiness probe).
pub const READINESS_PROBER_THREADS: usize = 4;

/// Readiness probes waiting for a worker before new ones fail at once.
pub const READINESS_PROBES_QUEUED_MAX: usize = 4096;

/// Largest response head a readiness probe reads.
pub const READINESS_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Largest response body a readiness probe keeps (`lastResponse.body`).
pub const READINESS_BODY_BYTES_MAX: usize = 64 * 1024;

/// API answers waiting for their state writes to commit (leader + standbys); one more is
/// answered 503 at once (its change is made, its outcome reported as unknown).
pub const PENDING_ANSWERS_MAX: usize = 10_000;

/// Longest wait for a state write to commit before an API answer waiting for it gives up with
/// 503 (its outcome unknown). Longer than a master failover and the SDK's request deadline.
pub const API_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest a standby holds a request while no leader is known or the leader cannot be reached
/// (a failover: the crashed leader's session ttl, an election, the state's load), before
/// answering 502. Marathon waits a few seconds too.
pub const LEADER_PROXY_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// How often a held request asks again who leads.
pub const LEADER_PROXY_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Longest wait to connect to the leader when forwarding a request (Marathon's
/// `--leader_proxy_connection_timeout`).
pub const LEADER_PROXY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait for the leader's whole answer to a forwarded request (Marathon's
/// `--leader_proxy_read_timeout`, longer here: a write waits for its commit, which takes
/// longer during a master failover).
pub const LEADER_PROXY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest answer of the leader a standby forwards (a full `GET /v2/apps?embed=apps.tasks` of
/// a large cluster fits).
pub const LEADER_PROXY_RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// The session ttl of a Marathon run as leader + standbys, by default: how long a crashed
/// leader keeps the leadership before a standby takes over. Short, so that a standby answers
/// writes within 5 s of a leader's crash; long enough for 2 missed keep-alives (one every
/// third of it).
pub const LEADER_SESSION_TTL_DEFAULT: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest `cpus`, `mem` or `disk` an app may ask for: what the master's resource model holds
/// (a larger value would be accepted here and never launch).
pub const RESOURCE_SCALAR_MAX: f64 = plateau_master::limits::SCALAR_MAX as f64;

/// Longest health check delay, interval, timeout or grace period, and kill grace period, in
/// seconds: what the master accepts in a task (see `plateau_master::limits::TASK_DURATION_MAX`).
pub const TASK_SECONDS_MAX: i64 = plateau_master::limits::TASK_DURATION_MAX.as_secs() as i64;
