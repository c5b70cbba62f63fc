//! Named maxima of the master: every map that grows from outside input, and every value whose
//! sum must not overflow, has one here.

use std::time::Duration;

/// Largest scalar resource value (cpus, MB of memory, MB of disk) accepted for one resource
/// set, in units (10^9 cpus, or 10^9 MB = 1 PB). Kept low enough that the sum over
/// [`SLAVES_MAX`] slaves, in thousandths, still fits in a `u64`.
pub const SCALAR_MAX: u64 = 1_000_000_000;

/// [`SCALAR_MAX`] in thousandths, the unit scalars are stored in.
pub const SCALAR_MAX_MILLI: u64 = SCALAR_MAX * 1000;

/// Most disjoint ranges in one `Ranges` value (every other port of 0–65535).
pub const RANGES_LEN_MAX: usize = 32_768;

/// Longest resource or attribute text accepted by the parsers, in bytes.
pub const RESOURCES_TEXT_LEN_MAX: usize = 256 * 1024;

/// Most attributes on one slave.
pub const ATTRIBUTES_LEN_MAX: usize = 256;

/// Longest attribute name or text value, in bytes.
pub const ATTRIBUTE_TEXT_LEN_MAX: usize = 1024;

/// Most slaves the allocator tracks.
pub const SLAVES_MAX: usize = 100_000;

/// Most frameworks the allocator tracks.
pub const FRAMEWORKS_MAX: usize = 10_000;

/// Most roles the allocator tracks (roles with frameworks plus roles with a weight set).
pub const ROLES_MAX: usize = 1_024;

/// Longest role name, in bytes.
pub const ROLE_NAME_LEN_MAX: usize = 255;

/// Most distinct unknown frameworks whose resources slaves may report as in use (they are held
/// until the framework registers or the resources are recovered).
pub const UNKNOWN_FRAMEWORKS_MAX: usize = FRAMEWORKS_MAX;

/// Longest duration a task may ask its slave to wait (health check delay, interval, timeout
/// and grace period; kill grace period); longer or non-finite ones make the launch invalid.
pub const TASK_DURATION_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Longest refusal filter; longer `refuse_seconds` are clamped (Mesos caps them at a year too).
pub const REFUSE_DURATION_MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Most tasks the master tracks (active, staging and unreachable; completed ones are bounded
/// per framework by [`COMPLETED_TASKS_PER_FRAMEWORK_MAX`]). A launch beyond it gets TASK_ERROR.
pub const TASKS_MAX: usize = 1_000_000;

/// Most tasks in one `LaunchTasksMessage`; a larger launch is refused whole (TASK_ERROR).
pub const TASKS_PER_LAUNCH_MAX: usize = 4_096;

/// Most offers in one `LaunchTasksMessage`; more make the offers invalid.
pub const OFFERS_PER_LAUNCH_MAX: usize = 1_024;

/// Most offers in one `DeclineOffersMessage`; the rest are ignored (they stay outstanding).
pub const OFFERS_PER_DECLINE_MAX: usize = 100_000;

/// Most tasks named in one explicit `ReconcileTasksMessage`; the rest are ignored.
pub const RECONCILE_TASKS_MAX: usize = 100_000;

/// Most tasks one re-registering slave may report; the rest are ignored.
pub const SLAVE_TASKS_MAX: usize = 100_000;

/// Statuses kept per task for `/master/state` (the latest ones).
pub const STATUSES_PER_TASK_MAX: usize = 16;

/// Completed tasks kept per framework for `/master/state` (Mesos keeps 1000).
pub const COMPLETED_TASKS_PER_FRAMEWORK_MAX: usize = 1_000;

/// Removed frameworks kept for `/master/state` (Mesos keeps 50).
pub const COMPLETED_FRAMEWORKS_MAX: usize = 50;

/// Most outstanding offers; an allocation round stops making offers beyond it.
pub const OFFERS_MAX: usize = 1_000_000;

/// Longest framework failover timeout honoured (longer ones are clamped): ten years.
pub const FAILOVER_TIMEOUT_MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Longest interval between two resends of a RunTaskMessage for a task its slave has not
/// confirmed (see `MasterConfig::run_task_resend_timeout`, which doubles up to this).
pub const RUN_TASK_RESEND_INTERVAL_MAX: Duration = Duration::from_secs(60);

/// Largest action vector (in actions) the master keeps for reuse between two messages; a
/// larger one (a reconciliation's burst) is freed.
pub const ACTIONS_RECYCLED_CAPACITY_MAX: usize = 64;

// ---- coordination store (`crate::coord`) -----------------------------------------------------

/// Longest key of the coordination store, in bytes (ZooKeeper paths and etcd keys are short;
/// a key is a name, not data).
pub const COORD_KEY_BYTES_MAX: usize = 1024;

/// Largest value of one key, in bytes. Every put is one entry of the replicated log and is
/// sent to every master, so values stay small; ZooKeeper's default cap is 1 MiB, and
/// Marathon's largest nodes (a group of apps) are far below this.
pub const COORD_VALUE_BYTES_MAX: usize = 256 * 1024;

/// Most keys in the coordination store.
pub const COORD_KEYS_MAX: usize = 100_000;

/// Most bytes of keys and values stored in all (each key counts its key and value bytes):
/// the whole store is in every master's memory and in every raft snapshot.
pub const COORD_STORED_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Most live leases.
pub const COORD_LEASES_MAX: usize = 10_000;

/// Most keys attached to one lease (revoking a lease deletes them in one log entry).
pub const COORD_KEYS_PER_LEASE_MAX: usize = 1_000;

/// Shortest lease time-to-live accepted: below it a holder cannot keep its lease alive across
/// a network hiccup.
pub const COORD_LEASE_TTL_MIN: Duration = Duration::from_secs(1);

/// Longest lease time-to-live accepted: a crashed holder keeps its keys at most this long.
pub const COORD_LEASE_TTL_MAX: Duration = Duration::from_secs(3600);

/// Longest session label of a lease or client, in bytes.
pub const COORD_LABEL_BYTES_MAX: usize = 256;

/// Most keys one range read returns (it says `more` and the client pages on).
pub const COORD_RANGE_KEYS_MAX: usize = 10_000;

/// Most key and value bytes one range read returns (at least one key is always returned).
pub const COORD_RANGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Most writes in one transaction (`CoordOp::Txn`): a framework leader's group commit of a
/// batch of changes. It is one log entry, applied at once by every master.
pub const COORD_TXN_OPS_MAX: usize = 256;

/// Most key and value bytes in one transaction: a few values of [`COORD_VALUE_BYTES_MAX`], far
/// below the replicated log's largest message (8 MiB), so that one entry never stalls it.
pub const COORD_TXN_BYTES_MAX: usize = 1024 * 1024;

/// Most leases one expire operation names (the leader proposes more operations for more).
pub const COORD_EXPIRE_LEASES_PER_OP_MAX: usize = 1_000;

/// Most registered clients in the deduplication table; registering one more forgets the
/// client unused for longest (its next request is refused as from an unknown client, never
/// applied twice).
pub const COORD_CLIENTS_MAX: usize = 10_000;

/// Most answers kept per client for retried requests (answers the client has not yet
/// acknowledged with `first_unanswered`); a client with this many unacknowledged writes gets
/// its further writes refused until it acknowledges some.
pub const COORD_ANSWERS_PER_CLIENT_MAX: usize = 64;

/// Most watch events the store queues for its host between two drains; beyond it the oldest
/// are dropped and the drain says so (watchers are then cancelled and re-read).
pub const COORD_EVENTS_QUEUED_MAX: usize = 100_000;

/// Most key and value bytes in the store's queued watch events (see
/// [`COORD_EVENTS_QUEUED_MAX`]).
pub const COORD_EVENT_BYTES_QUEUED_MAX: usize = 64 * 1024 * 1024;

/// Most recent watch events a master keeps to replay to a watch that starts at a past
/// revision (older starts are refused as compacted).
pub const COORD_WATCH_HISTORY_EVENTS_MAX: usize = 10_000;

/// Most key and value bytes in the watch history (see [`COORD_WATCH_HISTORY_EVENTS_MAX`]).
pub const COORD_WATCH_HISTORY_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Most watches of one session.
pub const COORD_WATCHES_PER_SESSION_MAX: usize = 256;

/// Most sessions with watches at once.
pub const COORD_WATCH_SESSIONS_MAX: usize = 10_000;

/// Most events in one watch notification (more are sent as several notifications).
pub const COORD_WATCH_EVENTS_PER_MESSAGE_MAX: usize = 1_000;

/// How long the leader waits for an expire operation it proposed to be applied before it
/// proposes the expiry of those leases again (the proposal may have been lost with a
/// leadership change or a full log queue).
pub const COORD_EXPIRE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a newly elected leader keeps every coordination lease alive before it may expire
/// one: longer than an election plus a client's keep-alive interval, so that a master failover
/// does not depose a healthy framework leader whose keep-alives went to the old master.
pub const COORD_LEASE_GRACE: Duration = Duration::from_secs(5);

/// Most masters a slave or framework may be given to follow (`--master A,B,C`): a group is 3
/// or 5; the rest is slack.
pub const MASTERS_MAX: usize = 16;

/// First interval between two rounds of leader queries (a [`crate::messages::LeaderQueryMessage`]
/// to every master) while no leading master is known; it doubles up to
/// [`LEADER_QUERY_INTERVAL_MAX`] until a leader is found.
pub const LEADER_QUERY_INTERVAL_MIN: Duration = Duration::from_millis(500);

/// Longest interval between two rounds of leader queries (an election that takes long is not
/// hammered by every slave and framework of the cluster).
pub const LEADER_QUERY_INTERVAL_MAX: Duration = Duration::from_secs(8);

/// Digests of the last commands applied that a copy of the masters' replicated state keeps for
/// observers ([`crate::replicated::MasterState::recent_digests`]).
pub const APPLIED_DIGESTS_KEPT_MAX: usize = 64;

/// Most windows in a maintenance schedule; a larger schedule is refused (400).
pub const MAINTENANCE_WINDOWS_MAX: usize = 10_000;

/// Most machines in a maintenance schedule (over all its windows), or in one
/// `/master/machine/down` or `/master/machine/up` request; more are refused (400).
pub const MAINTENANCE_MACHINES_MAX: usize = 100_000;

/// Longest machine host name or IP text accepted, in bytes.
pub const MACHINE_ID_TEXT_LEN_MAX: usize = 255;
