//! Plateau's operator command line: `plateau context|cluster|agent|app|deployment|task|job|top|
//! completions`, talking HTTP(S) to a cluster's masters, Marathon, Chronos and agents.
//!
//! The command tree is clap derive types ([`Command`]) that the `plateau` binary mounts as its
//! own subcommands; [`run`] carries one out and gives the process exit code
//! ([`error::exit`]). Pure parts (the contexts file, table rendering, the rows built from the
//! cluster's JSON) are unit-tested; everything else does I/O.
//!
//! ```no_run
//! use clap::{CommandFactory, Parser};
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: plateau_cli::Command,
//! }
//! fn main() -> std::process::ExitCode {
//!     let cli = Cli::parse_from(["plateau", "app", "list", "--json"]);
//!     plateau_cli::run(cli.command, Cli::command())
//! }
//! ```
#![deny(missing_docs)]

/// `println!` that ignores a closed stdout (`plateau app list | head` must not panic).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod client;
mod commands;
pub mod context;
pub mod error;
pub mod output;
pub mod rows;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

pub use error::{exit, CliError};
use output::Format;

/// Flags every operator command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The context (cluster) to talk to, instead of the one in use.
    #[arg(long, global = true, env = "PLATEAU_CONTEXT")]
    pub context: Option<String>,
    /// Print JSON (stable keys) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Output format: `wide` (more columns) or `json`.
    #[arg(short = 'o', long = "output", global = true, value_enum)]
    pub output: Option<OutputArg>,
    /// List commands: one table over every context, with a CLUSTER column.
    #[arg(long, global = true)]
    pub all_contexts: bool,
    /// Do not wait for a deployment, a drain or a job: return once the cluster took the
    /// request.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// The longest wait for a deployment to finish (`30s`, `10m`, `1h`).
    #[arg(long, global = true, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The contexts file (default: `$XDG_CONFIG_HOME/plateau/contexts.toml`).
    #[arg(long, global = true, env = "PLATEAU_CONTEXTS")]
    pub contexts_file: Option<PathBuf>,
}

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    /// More columns.
    Wide,
    /// JSON.
    Json,
}

impl Global {
    /// The output format the flags ask for.
    pub fn format(&self) -> Format {
        match (self.json, self.output) {
            (true, _) | (_, Some(OutputArg::Json)) => Format::Json,
            (_, Some(OutputArg::Wide)) => Format::Wide,
            _ => Format::Table,
        }
    }
}

/// The operator commands (mounted as top-level subcommands of `plateau`).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Named clusters (kept in ~/.config/plateau/contexts.toml): add, use, list, rm.
    Context {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: ContextCommand,
    },
    /// The cluster at a glance: leader, agents, resources, frameworks.
    Cluster {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: ClusterCommand,
    },
    /// Agents (slaves): list, show, drain for maintenance, bring back up.
    Agent {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: AgentCommand,
    },
    /// Marathon apps: list, show, deploy, scale, restart, rm, versions, rollback.
    App {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: AppCommand,
    },
    /// Marathon deployments: list, watch, cancel.
    Deployment {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: DeploymentCommand,
    },
    /// Tasks of every framework: list, show, kill, logs.
    Task {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: TaskCommand,
    },
    /// Chronos jobs: list, show, add, run, rm, history.
    Job {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        #[command(subcommand)]
        #[allow(missing_docs)]
        command: JobCommand,
    },
    /// Live resource usage per agent and per task (Ctrl-C ends it).
    Top {
        #[command(flatten)]
        #[allow(missing_docs)]
        global: Global,
        /// Print one sample and end.
        #[arg(long)]
        once: bool,
        /// Seconds between samples.
        #[arg(long, default_value_t = 2.0)]
        interval: f64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `plateau context ...`.
#[derive(Subcommand, Debug)]
pub enum ContextCommand {
    /// Add (or replace) a context; the first one added is put in use.
    Add {
        /// The context's name.
        name: String,
        /// The masters, HOST:PORT[,HOST:PORT...] (or URLs).
        #[arg(long, value_delimiter = ',', required = true)]
        master: Vec<String>,
        /// Marathon, HOST:PORT or URL (default: the first master's host, port 8080).
        #[arg(long)]
        marathon: Option<String>,
        /// Chronos, HOST:PORT or URL (default: the first master's host, port 4400).
        #[arg(long)]
        chronos: Option<String>,
        /// A credentials file: `{"principal":"P","secret":"S"}`, Mesos'
        /// `{"credentials":[...]}`, or a line `P S` (read at each use).
        #[arg(long, conflicts_with_all = ["principal", "secret"])]
        credentials: Option<PathBuf>,
        /// The principal (HTTP Basic).
        #[arg(long, requires = "secret")]
        principal: Option<String>,
        /// The secret (kept in the contexts file, readable by you alone).
        #[arg(long, requires = "principal")]
        secret: Option<String>,
        /// The cluster CA (PEM): HTTPS, trusting it alone.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Put this context in use.
        #[arg(long = "use")]
        use_it: bool,
    },
    /// Put a context in use.
    Use {
        /// The context's name.
        name: String,
    },
    /// The contexts (the one in use marked `*`).
    List,
    /// Remove a context.
    Rm {
        /// The context's name.
        name: String,
    },
}

/// `plateau cluster ...`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, agents (active, unreachable, draining), resources used/total, frameworks.
    Status,
}

/// `plateau agent ...`.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Every agent: state, resources used/total, tasks.
    List,
    /// One agent (by host name, IP, HOST:PORT or id) and its tasks.
    Show {
        /// The agent.
        agent: String,
    },
    /// Drain an agent for maintenance: schedule a window from now, wait until its tasks are
    /// gone (or the deadline), then mark it down.
    Drain {
        /// The agent.
        agent: String,
        /// The longest wait for its tasks to go, and the maintenance window's length.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        deadline: Duration,
    },
    /// Bring a drained (down) agent back.
    Up {
        /// The agent.
        agent: String,
    },
}

/// `plateau app ...`.
#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Every app: instances running/wanted, healthy, resources, deployments.
    List,
    /// One app and its tasks.
    Show {
        /// The app id (`/hello` or `hello`).
        id: String,
    },
    /// Create or update an app from a file (Marathon's app JSON) and wait until deployed.
    Deploy {
        /// The app definition (`app.json`).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Override a deployment in progress.
        #[arg(long)]
        force: bool,
    },
    /// Change the number of instances and wait until deployed.
    Scale {
        /// The app id.
        id: String,
        /// Instances wanted.
        instances: u32,
        /// Override a deployment in progress.
        #[arg(long)]
        force: bool,
    },
    /// Replace every task (a rolling restart) and wait until deployed.
    Restart {
        /// The app id.
        id: String,
        /// Override a deployment in progress.
        #[arg(long)]
        force: bool,
    },
    /// Destroy an app (kill its tasks) and wait until it is gone.
    Rm {
        /// The app id.
        id: String,
        /// Override a deployment in progress.
        #[arg(long)]
        force: bool,
    },
    /// The app's versions, newest first.
    Versions {
        /// The app id.
        id: String,
    },
    /// Go back to an earlier version (default: the one before the current) and wait.
    Rollback {
        /// The app id.
        id: String,
        /// The version to go back to (from `app versions`).
        #[arg(long)]
        to: Option<String>,
        /// Override a deployment in progress.
        #[arg(long)]
        force: bool,
    },
}

/// `plateau deployment ...`.
#[derive(Subcommand, Debug)]
pub enum DeploymentCommand {
    /// Deployments in progress.
    List,
    /// Follow a deployment until it ends.
    Watch {
        /// The deployment id.
        id: String,
    },
    /// Cancel a deployment (a rollback deployment undoes it; `--force` just stops it).
    Cancel {
        /// The deployment id.
        id: String,
        /// Stop it without rolling back.
        #[arg(long)]
        force: bool,
    },
}

/// `plateau task ...`.
#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Tasks of every framework (running and staging; `--all`: finished ones too).
    List {
        /// Include finished tasks.
        #[arg(long)]
        all: bool,
        /// Only the tasks of this Marathon app (`/hello`) or Chronos job.
        #[arg(long)]
        app: Option<String>,
    },
    /// One task.
    Show {
        /// The task id.
        id: String,
    },
    /// Kill a task of a Marathon app (it is replaced unless `--scale`).
    Kill {
        /// The task id.
        id: String,
        /// Scale the app down by one instead of replacing the task.
        #[arg(long)]
        scale: bool,
    },
    /// A task's stdout (or stderr) from its sandbox.
    Logs {
        /// The task id.
        id: String,
        /// Keep printing what the task writes, until it ends (or Ctrl-C).
        #[arg(short = 'f', long)]
        follow: bool,
        /// stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        /// Start with the last N bytes only.
        #[arg(long)]
        tail_bytes: Option<u64>,
    },
}

/// `plateau job ...`.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Every job: schedule or parents, last success and error, counts.
    List,
    /// One job.
    Show {
        /// The job's name.
        name: String,
    },
    /// Add (or replace) a job from a file (Chronos' job JSON; with `parents`: a dependent job).
    Add {
        /// The job definition (`job.json`).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Run a job now (its schedule does not change); waits for the run to end unless
    /// `--no-wait`.
    Run {
        /// The job's name.
        name: String,
    },
    /// Delete a job.
    Rm {
        /// The job's name.
        name: String,
    },
    /// The job's recent runs.
    History {
        /// The job's name.
        name: String,
    },
}

/// `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds; at most a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let duration = parse_duration_with_unit(text)?;
    if duration > Duration::from_secs(365 * 86_400) {
        return Err(format!("'{text}' is longer than a year"));
    }
    Ok(duration)
}

/// `500ms`, `5s`, `2m`, `1h`, `2d`: a number (decimals allowed) and its unit, as every
/// duration flag of `plateau` takes it.
pub fn parse_duration_with_unit(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("'{text}' has no unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a number followed by a unit"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("'{unit}' is not a unit (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

/// Carry out `command`; `root` is the whole `plateau` command (for completions). Returns the
/// process exit code ([`exit`]); errors are printed on stderr.
pub fn run(command: Command, root: clap::Command) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the I/O runtime: {e}");
            return std::process::ExitCode::from(exit::CLUSTER);
        }
    };
    match runtime.block_on(commands::run(command, root)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("9999d").is_err());
    }
}
