//! Named maxima of the simulator: every list that grows with a run has one.

use std::time::Duration;

/// Most masters one simulated cluster has (a group of 7 at most, as the detector takes).
pub const MASTERS_MAX: usize = 7;

/// Terms whose leader the group checks remember (the oldest are forgotten beyond it).
pub const GROUP_TERMS_KEPT_MAX: usize = 4_096;

/// Log indexes whose applied digest the group checks remember (the oldest are forgotten
/// beyond it): a copy that diverged is caught when it applies an index another copy applied
/// within this window.
pub const GROUP_DIGESTS_KEPT_MAX: usize = 1 << 16;

/// Most slaves one simulated cluster has (addresses are `10.<a>.<b>.<c>`).
pub const SLAVES_MAX: usize = 100_000;

/// Most frameworks one simulated cluster has.
pub const FRAMEWORKS_MAX: usize = 1_000;

/// Most apps over all frameworks.
pub const APPS_MAX: usize = 1_000_000;

/// Most instances of one app.
pub const INSTANCES_PER_APP_MAX: u32 = 100_000;

/// Invariant violations kept in a report (the first one stops the run; a few more found in
/// the same check are kept for context).
pub const VIOLATIONS_KEPT_MAX: usize = 16;

/// Injected faults listed one by one in a report; beyond it only counted.
pub const FAULT_LOG_MAX: usize = 10_000;

/// Longest simulated duration of a run.
pub const DURATION_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Tasks a Keeper framework launches on one offer at most.
pub const KEEPER_TASKS_PER_OFFER_MAX: usize = 256;

/// Task ids a Keeper names in one explicit reconciliation.
pub const KEEPER_RECONCILE_BATCH_MAX: usize = 10_000;

/// Most apps of the simulated Marathon.
pub const MARATHON_APPS_MAX: usize = 10_000;

/// Most jobs of the simulated Chronos.
pub const CHRONOS_JOBS_MAX: usize = 10_000;

/// Most operations in one history given to the linearizability checker
/// ([`crate::linearizability`]); a recorder stops recording beyond it.
pub const LINEARIZABILITY_OPS_MAX: usize = 100_000;

/// Most operations in one partition (the history of one key) the checker searches.
pub const LINEARIZABILITY_PARTITION_OPS_MAX: usize = 4_096;

/// Most search steps for one partition; beyond it the check is undecided (the search is
/// exponential in the number of concurrent operations in the worst case).
pub const LINEARIZABILITY_STEPS_MAX: u64 = 10_000_000;

/// Most memoized (linearized set, state) pairs for one partition; beyond it the check is
/// undecided (bounds the checker's memory).
pub const LINEARIZABILITY_CACHE_ENTRIES_MAX: usize = 1_000_000;

/// Instances of Marathon or of Chronos in a simulated cluster (leader + standbys).
pub const STANDBYS_MAX: usize = 3;

/// How long the harness waits (simulated ms) for a framework's leader to be elected, and then
/// for the answers to what it posted there, before it counts nothing as acknowledged.
pub const STANDBY_ELECTION_WAIT_MS_MAX: u64 = 60_000;
