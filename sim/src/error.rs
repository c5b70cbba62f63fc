//! The simulator's error type.

/// What can go wrong setting up or comparing runs (an invariant violation is not an error: it
/// is the result of a run, in its report).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad options.
    #[error("bad simulation options: {0}")]
    Config(String),
    /// A process could not be created.
    #[error("cannot start a simulated process: {0}")]
    Start(String),
    /// Two runs of one seed differed.
    #[error(
        "seed {seed} is not deterministic: trace hashes {first:016x} and {second:016x} differ"
    )]
    Nondeterministic {
        /// The seed.
        seed: u64,
        /// Trace hash of the first run.
        first: u64,
        /// Trace hash of the second run.
        second: u64,
    },
    /// A child run failed or printed no report.
    #[error("child simulation run failed: {0}")]
    Child(String),
    /// A history given to the linearizability checker is malformed or too large.
    #[error("bad history: {0}")]
    History(String),
}
