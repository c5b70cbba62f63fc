//! The slave's error type: operating errors (bad configuration, a checkpoint that cannot be
//! read or written, a host that cannot run tasks) as values with clear messages.

use std::path::PathBuf;

use crate::containerizer::ContainerizerError;

/// Everything that can go wrong when starting or running the slave.
#[derive(Debug, thiserror::Error)]
pub enum SlaveError {
    /// The configuration is not usable.
    #[error("invalid slave configuration: {0}")]
    Config(String),
    /// `--resources` or `--attributes` did not parse.
    #[error("invalid {what}: {source}")]
    Resources {
        /// `resources` or `attributes`.
        what: &'static str,
        /// The parser's error (boxed: it is large, and this error is returned everywhere).
        source: Box<plateau_master::MasterError>,
    },
    /// Reading or writing the checkpoint failed.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file (empty for the in-memory store).
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Host resources could not be discovered.
    #[error("cannot discover host resources: {0}")]
    Discovery(String),
    /// The containerizer could not start.
    #[error(transparent)]
    Containerizer(#[from] ContainerizerError),
    /// The node refused the process.
    #[error(transparent)]
    Node(#[from] plateau_runtime::node::NodeError),
}
