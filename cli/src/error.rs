//! What can go wrong in a command, and the exit code each kind gives (docs/cli.md lists them).

/// The exit codes of the operator commands.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The cluster answered with an error (a 4xx other than 401/403/404, a 5xx), or a wait
    /// ended without the result (a deployment still running at its deadline).
    pub const CLUSTER: u8 = 1;
    /// Bad usage: a flag, a file, an unknown context (clap's own parse errors are 2 too).
    pub const USAGE: u8 = 2;
    /// No master (or Marathon, Chronos, agent) of the context could be reached.
    pub const UNREACHABLE: u8 = 3;
    /// The cluster refused the credentials (401) or the action (403).
    pub const UNAUTHORIZED: u8 = 4;
    /// The app, task, job, agent or deployment named does not exist.
    pub const NOT_FOUND: u8 = 5;
}

/// An error of an operator command: what failed and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad usage.
    #[error("{0}")]
    Usage(String),
    /// Nothing answered.
    #[error("cannot reach {what} ({tried}): {reason}\n  hint: is the cluster running? Check the context's addresses with `plateau context list`, or pick another with --context")]
    Unreachable {
        /// The service (`the master of context "dev"`).
        what: String,
        /// The addresses tried.
        tried: String,
        /// The last failure.
        reason: String,
    },
    /// 401 or 403.
    #[error("{what} answered {status}: {message}\n  hint: {hint}")]
    Unauthorized {
        /// The request.
        what: String,
        /// 401 or 403.
        status: u16,
        /// The server's message.
        message: String,
        /// How to fix it.
        hint: String,
    },
    /// 404, or nothing of that name in a listing.
    #[error("{0}")]
    NotFound(String),
    /// Any other error answer, or a failed wait.
    #[error("{0}")]
    Cluster(String),
}

impl CliError {
    /// The process exit code of this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::Unauthorized { .. } => exit::UNAUTHORIZED,
            CliError::NotFound(_) => exit::NOT_FOUND,
            CliError::Cluster(_) => exit::CLUSTER,
        }
    }
}

/// The result of a command.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
