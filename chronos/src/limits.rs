//! Named maximums for everything in this crate that grows from outside input.
//!
//! Every list a client can send, every map keyed by client data and every search loop has its
//! bound here, so a hostile or buggy client meets a clear error instead of exhausting memory or
//! time (TigerBeetle's "put a limit on everything").

use std::time::Duration;

/// Most jobs a [`crate::job::JobGraph`] holds. Chronos installations ran a few thousand jobs; this
/// leaves two orders of magnitude of headroom.
pub const JOBS_MAX: usize = 100_000;

/// Longest job name, in bytes. Names appear in task IDs, paths and CSV lines.
pub const JOB_NAME_LEN_MAX: usize = 255;

/// Longest `command`, in bytes.
pub const COMMAND_LEN_MAX: usize = 64 * 1024;

/// Most parents one dependent job may name.
pub const PARENTS_PER_JOB_MAX: usize = 1_000;

/// Most entries in any other list field of a job (`arguments`, `environmentVariables`, `uris`,
/// `fetch`, `constraints`, container volumes and parameters).
pub const JOB_LIST_FIELD_LEN_MAX: usize = 1_000;

/// Longest text field of a job other than `command` (owner, description, executor flags, ...), in
/// bytes.
pub const JOB_TEXT_FIELD_LEN_MAX: usize = 16 * 1024;

/// Longest schedule or cron expression, in bytes.
pub const SCHEDULE_LEN_MAX: usize = 256;

/// Most instants one [`crate::schedule::due_instants`] call returns, whatever `max` it is given.
pub const DUE_INSTANTS_MAX: usize = 10_000;

/// Most cron pattern matches one cron search (next or previous instant) examines before it gives
/// up. Searches stop far sooner in practice: a match is normally found within a few steps, and
/// around a daylight-saving transition within three hours of wall-clock matches.
pub const CRON_SEARCH_STEPS_MAX: usize = 20_000;

/// Most steps one calendar search (the next or previous matching wall-clock time, or the next
/// or previous run around a daylight-saving transition) takes before it gives up. A step moves
/// at least to the next candidate second, day, month or year; an expression that matches once
/// in two centuries (`2199-12-31`) takes a few hundred.
pub const CALENDAR_SEARCH_STEPS_MAX: usize = 20_000;

/// Most task records `GET /job/stat/{name}` keeps per job (`taskStatHistory`); the oldest go first.
pub const TASK_STAT_HISTORY_PER_JOB_MAX: usize = 100;

/// Most run durations kept per job for the percentile histogram. 1028 is the size of the
/// Dropwizard uniform reservoir Chronos used; Plateau keeps the most recent ones (deterministic,
/// no sampling randomness).
pub const RUN_DURATIONS_PER_JOB_MAX: usize = 1_028;

/// Most finished runs kept (in memory and in the store) per job for the run history; the oldest
/// go first. The duration histogram is rebuilt from these after a restart.
pub const RUN_HISTORY_PER_JOB_MAX: usize = TASK_STAT_HISTORY_PER_JOB_MAX;

/// Most runs (pending, launched or running) the scheduler holds at once, over all jobs. A new
/// run past it is refused (an API call gets an error; a scheduled instant is retried on the next
/// tick), so a flood of run-now calls cannot exhaust memory.
pub const RUNS_ACTIVE_MAX: usize = 100_000;

/// Most runs of one job waiting behind a running one when the job is not `concurrent` and its
/// policy is `catchUp: "all"`; later instants are skipped (and logged).
pub const RUNS_WAITING_PER_JOB_MAX: usize = 100;

/// Most runs created for one job in one evaluation of the schedules (one tick); a longer
/// catch-up continues on the next tick.
pub const RUNS_CREATED_PER_TICK_PER_JOB_MAX: usize = 100;

/// Most tasks named in one explicit reconciliation request.
pub const RECONCILE_TASKS_PER_MESSAGE_MAX: usize = 1_000;

/// Most results `GET /scheduler/jobs/search` returns, whatever `limit` asks.
pub const SEARCH_RESULTS_MAX: usize = 10_000;

/// Largest JSON body the HTTP API accepts, in bytes.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Longest regular expression in a LIKE/UNLIKE constraint, in bytes; also bounds the size of
/// the compiled program.
pub const CONSTRAINT_REGEX_LEN_MAX: usize = 1_024;

/// Largest job definition, in bytes of its stored JSON. With the state in the masters'
/// coordination store every job is one key, whose value may hold at most 256 KiB; this leaves
/// room for its counters and rewritten schedule.
pub const JOB_STORED_BYTES_MAX: usize = 128 * 1024;

/// Largest scheduling state of one job (its parent edge counters), in bytes of its stored JSON.
pub const JOB_STATE_STORED_BYTES_MAX: usize = 128 * 1024;

/// Most tasks launched on one offer. Each launched run is one key of the state write that
/// precedes the launch, and that write must fit one transaction of the coordination store
/// (256 keys); the rest of the waiting runs take the next offers.
pub const LAUNCHES_PER_OFFER_MAX: usize = 100;

/// Most state writes of the replicated state not committed yet; an action that would make more
/// waits (an instant on the next tick, a launch on the next offer, a status update for its
/// resend) or is refused (an API call: 503). Below the SDK's own bound (4,096), which would
/// otherwise refuse a later part of a write split over several transactions.
pub const UNCOMMITTED_WRITES_MAX: u64 = 1_000;

/// Most API answers waiting for their state writes to commit (leader + standbys); one more is
/// answered 503 at once.
pub const REPLIES_WAITING_MAX: usize = 10_000;

/// How long a standby waits for the leader's answer to a request it proxies, in milliseconds.
pub const PROXY_TIMEOUT_MS: u64 = 30_000;

/// The largest answer a standby takes from its leader over HTTPS to pass on (a job list of
/// the most jobs a Chronos holds fits many times over).
pub const PROXY_RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// How long a crashed leader keeps the leadership by default (its session's ttl in the
/// coordination store) before a standby may take over: a standby leads within about this long
/// after a leader's crash. The leader keeps its session alive every third of it, and steps down
/// when none was confirmed for four fifths of it.
pub const LEADER_SESSION_TTL_DEFAULT: Duration = Duration::from_secs(3);

/// Largest `cpus`, `mem` or `disk` a job may ask for: what the master's resource model holds.
pub const RESOURCE_SCALAR_MAX: f64 = plateau_master::limits::SCALAR_MAX as f64;
