//! Named bounds of the replica.

use std::time::Duration;

/// Task polls in one [`crate::executor::Executor::run`]; more wait for the next run (a task
/// that wakes itself forever cannot hang its process).
pub const POLLS_PER_RUN_MAX: usize = 100_000;

/// Raft requests awaiting an answer from peers; a request beyond this fails at once.
pub const PENDING_RPCS_MAX: usize = 4_096;

/// Proposals in flight at once; beyond this a proposal fails at once (the host must slow down).
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 65_536;

/// Largest encoded raft request or answer accepted from a peer.
pub const RPC_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest snapshot chunk sent in one message.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 1024 * 1024;

/// Default leader heartbeat interval.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);

/// Default least election timeout: a follower that heard nothing from a leader this long may
/// stand for election, and a leader that heard no majority this long stops acting.
pub const ELECTION_TIMEOUT_MIN_DEFAULT: Duration = Duration::from_millis(500);

/// Default greatest election timeout: followers refuse to vote for this long after they last
/// heard from a leader (openraft's leader lease).
pub const ELECTION_TIMEOUT_MAX_DEFAULT: Duration = Duration::from_millis(800);

/// Default number of entries applied since the last snapshot that triggers a new one.
pub const SNAPSHOT_AFTER_ENTRIES_DEFAULT: u64 = 5_000;

/// Default number of entries kept in the log behind the latest snapshot (so a follower a
/// little behind catches up from the log instead of a whole snapshot).
pub const LOG_ENTRIES_KEPT_DEFAULT: u64 = 1_000;
