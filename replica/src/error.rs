//! The replica's errors.

/// What can go wrong in a replica.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// The disk could not be read or written, or holds something that does not decode.
    #[error("replica disk: {0}")]
    Disk(String),
    /// A setting is out of range.
    #[error("replica configuration: {0}")]
    Config(String),
}

/// Why a proposal (a command, or a membership change) did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This replica does not lead; `leader` is the one it knows, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's process, as far as this replica knows.
        leader: Option<plateau_runtime::Upid>,
    },
    /// The replica is not running yet, or stopped (a storage failure).
    #[error("replica not running: {0}")]
    Stopped(String),
    /// A membership change was refused (another one in progress, unknown node, ...).
    #[error("membership change refused: {0}")]
    Membership(String),
}
