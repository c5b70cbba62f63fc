//! The containerizer: runs Mesos tasks as real processes, each isolated in its own cgroups.
//!
//! The slave process drives a [`Containerizer`]: it launches a task from a [`TaskSpec`], kills
//! it, asks for its resource [`Usage`], and after a restart [`recovers`](Containerizer::recover)
//! the tasks it had checkpointed. Terminations are not polled for: the containerizer calls the
//! [`TerminationCallback`] given at construction, from its own watcher thread, once per task.
//! The trait is small and synchronous, and names no async type, so that the simulator can put a
//! simulated implementation in its place.
//!
//! # The simulated implementation
//!
//! [`SimContainerizer`] runs nothing: a task "runs" for the time its command says
//! (`sim:run=30s;exit=0`, `sim:oom`, ... see [`SimBehaviour`]) on the slave's virtual clock,
//! driven by [`Containerizer::poll`]. Its tasks live in a [`SimMachine`] that survives a crash
//! of the simulated slave, so a restarted slave recovers them.
//!
//! # The real implementation
//!
//! [`CgroupsContainerizer`] (Linux, cgroup v1 controllers `cpu`, `cpuacct`, `memory`, `pids`,
//! `freezer`) runs every task under a tiny per-task **supervisor** process, the way Mesos runs a
//! task under its command executor:
//!
//! ```text
//!   slave ──posix_spawn, spec on stdin──▶ supervisor (setsid) ──fork, setsid, join cgroups,
//!     │                                                        become the task's user, exec──▶ task
//!     │  pidfd: exit of the      │ waits for the task (and, as child subreaper, its orphans),
//!     │  supervisor = end of     │ escalates kills, kills the whole cgroup on OOM and at the end,
//!     │  the task                │ removes the cgroups, writes status.json atomically, exits
//!     ▼                          ▼
//!   watcher thread reads <run dir>/status.json and calls the termination callback
//! ```
//!
//! - Launches (cgroups, run directory, supervisor start and its `started <pid>` handshake) take
//!   milliseconds. With [`CgroupsContainerizer::start_launchers`] they run on a few launcher
//!   threads ([`Containerizer::start_launch`] answers [`LaunchStart::Pending`] and the outcome
//!   comes through a [`LaunchCallback`]), so the slave's actor thread never waits for one.
//! - The supervisor is in its own session and stays outside the task's cgroups, so the memory
//!   cgroup's OOM killer picks the task, never the supervisor, and the supervisor is not killed
//!   with the slave. It records the outcome in `<run_dir>/<task>/status.json` (write to a
//!   temporary file, then rename) before it exits.
//! - A slave killed with `kill -9` leaves its supervisors and tasks running. The restarted slave
//!   hands its checkpointed [`LaunchInfo`]s to [`Containerizer::recover`], which re-attaches to
//!   the supervisors still alive (identified by pid *and* start time, then held by a pidfd) and
//!   reads the recorded status of those that finished meanwhile.
//! - Tasks run as their user ([`TaskSpec::user`]), the supervisor as the slave (root): it joins
//!   the task's cgroups, then drops the groups, the gid and the uid in that order, then execs.
//!   The sandbox, `stdout` and `stderr` belong to the task's user (mode 0750); the run
//!   directory, the supervisor and the cgroups stay root's, so that kills, OOM handling and
//!   cleanup work whatever the task does.
//! - The supervisor is an entry point of this library, [`supervisor_main`]; the containerizer
//!   is configured with the program (and leading arguments) that reaches it: the
//!   `plateau-supervisor` executable of this crate, or `plateau supervise`.
//!
//! Cgroups are named `<cgroup_root>/<slave_name>/<task>` under the root of each v1 hierarchy,
//! where `<task>` is the task id made safe for a path ([`task_dir_name`]). They are placed at the
//! hierarchy root rather than under the slave's own cgroup so that they do not depend on the
//! slave's cgroup, which may disappear with the slave.
//!
//! Kills are SIGTERM to every process of the task's cgroup (and its process group), then, after
//! the grace period, SIGKILL to everything in the frozen cgroup. The supervisor does the
//! escalation, so it happens even while the slave is down.

mod cgroups;
mod real;
mod sim;
mod supervisor;
mod sys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use real::{CgroupsContainerizer, CgroupsContainerizerConfig};
pub use sim::{SimBehaviour, SimContainerizer, SimMachine};
pub use supervisor::supervisor_main;

/// A task id, as given by the framework (any string; see [`task_dir_name`] for how it becomes a
/// path component).
pub type TaskId = String;

/// Called once per task when it terminates, from a watcher thread of the containerizer.
///
/// It must not block for long (send a message and return): it delays the reports of other tasks.
pub type TerminationCallback = Arc<dyn Fn(TaskId, Termination) + Send + Sync>;

/// Called once per launch that [`Containerizer::start_launch`] left [`LaunchStart::Pending`],
/// from a launcher thread of the containerizer, with the outcome of the launch.
///
/// It is called before the containerizer watches the task, so that the outcome of a launch is
/// always reported before the termination of the task it launched. It must not block (send a
/// message and return): the containerizer holds its lock meanwhile.
pub type LaunchCallback = Arc<dyn Fn(TaskId, Result<LaunchInfo, ContainerizerError>) + Send + Sync>;

/// What [`Containerizer::start_launch`] did with a launch.
#[derive(Debug)]
pub enum LaunchStart {
    /// The launch is over: its outcome (a simulated launch, a containerizer without launcher
    /// threads, or a spec refused at once).
    Done(Result<LaunchInfo, ContainerizerError>),
    /// The launch goes on in the background; its outcome arrives through the containerizer's
    /// [`LaunchCallback`], exactly once.
    Pending,
}

/// How to start the task's process (Mesos `CommandInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// `true`: run `value` with `/bin/sh -c value` (`arguments` are ignored). A simple
    /// command (plain words, the first an executable found in `PATH`, not a shell builtin) is
    /// executed directly, as the shell would, without the shell process in between.
    /// `false`: execute the program `value` (looked up in `PATH` if it has no `/`) with
    /// `arguments` as its whole argv, `arguments[0]` included, as Mesos does; empty `arguments`
    /// mean argv `[value]`.
    pub shell: bool,
    /// The shell command line, or the program to execute.
    pub value: String,
    /// The argv of the program when `shell` is false.
    pub arguments: Vec<String>,
}

/// Everything the containerizer needs to launch one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's id, unique on this slave while the task runs.
    pub task_id: TaskId,
    /// What to run.
    pub command: CommandSpec,
    /// Environment of the task, on top of the containerizer's base environment. The
    /// containerizer adds (and overrides) `MESOS_TASK_ID`, `MESOS_SANDBOX`, `HOST`, `PORT0`..,
    /// `PORT` and `PORTS`.
    pub env: BTreeMap<String, String>,
    /// CPUs: `cpu.shares` = 1024 per CPU, CFS quota = `cpus` × the 100 ms period.
    pub cpus: f64,
    /// Memory limit in MB (MiB), at least [`crate::limits::TASK_MEMORY_LIMIT_MIN_BYTES`].
    pub mem_mb: f64,
    /// Host ports assigned to the task, exported as `PORT0`.. in this order.
    pub ports: Vec<u16>,
    /// Working directory of the task (created if missing); `stdout` and `stderr` go there.
    /// Shared with the slave's books and the launch record.
    pub sandbox: Arc<Path>,
    /// This slave's hostname, exported as `HOST`.
    pub hostname: String,
    /// The user the task runs as (the slave decides it: see
    /// [`crate::process::SlaveProcess::task_user`]); `None`: the containerizer's own user. The
    /// real containerizer resolves it ([`crate::user::TaskUser::lookup`]; an unknown user fails
    /// the launch), gives it the sandbox, and starts the task as it with its `HOME`, `USER` and
    /// `LOGNAME`. The simulated one ignores it.
    pub user: Option<String>,
}

/// What the containerizer launched: the record the slave checkpoints, and gives back to
/// [`Containerizer::recover`] after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchInfo {
    /// The task's id.
    pub task_id: TaskId,
    /// Pid of the task's process (its process group and session leader).
    pub pid: u32,
    /// Pid of the task's supervisor.
    pub supervisor_pid: u32,
    /// Start time of the supervisor (field 22 of `/proc/<pid>/stat`, clock ticks since boot):
    /// with the pid, identifies the supervisor across pid reuse.
    pub supervisor_start_time: u64,
    /// The task's cgroup, relative to the root of each hierarchy.
    pub cgroup: Arc<str>,
    /// The task's sandbox (one path shared by the slave's books, its checkpoint record and
    /// the containerizer: the simulator holds a million of them).
    pub sandbox: Arc<Path>,
    /// The task's run directory (status, kill request and supervisor log of the containerizer).
    pub run_dir: PathBuf,
}

/// A checkpointed launch handed back to [`Containerizer::recover`].
pub type RecoverInfo = LaunchInfo;

/// The outcome of recovering one checkpointed task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RecoveredTask {
    /// The task still runs; the containerizer watches it again and will report its termination
    /// through the callback.
    Running(LaunchInfo),
    /// The task terminated while the slave was away (or its supervisor vanished); the
    /// termination is reported here, not through the callback. Its cgroups are removed.
    Terminated {
        /// The checkpointed launch.
        info: LaunchInfo,
        /// How it ended.
        termination: Termination,
    },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    /// Exit code, if the task's process exited.
    pub exit_code: Option<i32>,
    /// Signal number, if the task's process was killed by a signal.
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed a process of the task because the task exceeded its memory
    /// limit (the slave reports `TASK_FAILED` with `REASON_CONTAINER_LIMITATION_MEMORY`).
    pub oom_killed: bool,
    /// A human-readable explanation.
    pub message: String,
}

impl Termination {
    /// The task exited with code 0 and was not OOM-killed.
    pub fn is_success(&self) -> bool {
        self.exit_code == Some(0) && !self.oom_killed
    }
}

/// Resource usage of a running task, read from its cgroups (Mesos `ResourceStatistics` names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time spent in user mode, in seconds (`cpuacct.usage_user`).
    pub cpus_user_time_secs: f64,
    /// CPU time spent in kernel mode, in seconds (`cpuacct.usage_sys`).
    pub cpus_system_time_secs: f64,
    /// The CPU limit (CFS quota / period).
    pub cpus_limit: f64,
    /// CFS periods elapsed (`cpu.stat` `nr_periods`).
    pub cpus_nr_periods: u64,
    /// CFS periods in which the task was throttled.
    pub cpus_nr_throttled: u64,
    /// Total time the task was throttled, in seconds.
    pub cpus_throttled_time_secs: f64,
    /// Resident anonymous memory (`memory.stat` `total_rss`), in bytes.
    pub mem_rss_bytes: u64,
    /// Memory charged to the task, page cache included (`memory.usage_in_bytes`), in bytes.
    pub mem_total_bytes: u64,
    /// The memory limit, in bytes.
    pub mem_limit_bytes: u64,
    /// Highest memory charge seen (`memory.max_usage_in_bytes`), in bytes.
    pub mem_max_usage_bytes: u64,
    /// Processes and threads in the task's cgroup (`pids.current`).
    pub processes: u64,
}

/// Errors of the containerizer. Operating errors only: bad specs, unknown tasks, and failures of
/// the operating system, each with the task and what failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerizerError {
    /// The task spec cannot be launched as given.
    #[error("invalid task spec for task '{task_id}': {reason}")]
    InvalidSpec {
        /// The task.
        task_id: TaskId,
        /// What is wrong.
        reason: String,
    },
    /// A task with this id is already running.
    #[error("task '{0}' is already running")]
    AlreadyRunning(TaskId),
    /// No running task has this id.
    #[error("unknown task '{0}'")]
    UnknownTask(TaskId),
    /// [`crate::limits::CONTAINERIZER_TASKS_MAX`] tasks are running already.
    #[error("too many tasks: at most {0} run at once")]
    TooManyTasks(usize),
    /// The task could not be started (its program does not exist, the supervisor failed...).
    #[error("failed to launch task '{task_id}': {reason}")]
    Launch {
        /// The task.
        task_id: TaskId,
        /// What failed.
        reason: String,
    },
    /// A cgroup operation failed.
    #[error("cgroup {cgroup}: {reason}")]
    Cgroup {
        /// The cgroup (relative path).
        cgroup: String,
        /// What failed.
        reason: String,
    },
    /// A file operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The error of the operating system.
        source: std::io::Error,
    },
    /// The task's user cannot be used: unknown on this slave, or out of reach of the slave's
    /// own privileges, or unable to reach its sandbox.
    #[error("task '{task_id}': {reason}")]
    User {
        /// The task.
        task_id: TaskId,
        /// What is wrong, naming the user.
        reason: String,
    },
    /// The host cannot run this containerizer (no cgroup v1 controllers...).
    #[error("unsupported host: {0}")]
    Unsupported(String),
}

/// Runs tasks as isolated processes. The slave process owns one; the simulator substitutes its
/// own implementation.
///
/// All methods return promptly (none waits for a task to exit, except
/// [`destroy_all`](Containerizer::destroy_all)); terminations arrive through the
/// [`TerminationCallback`] given to the implementation at construction, exactly once per
/// launched or recovered-as-running task.
pub trait Containerizer: Send {
    /// Starts a task: creates its sandbox and cgroups, starts its process, returns what the
    /// slave must checkpoint to recover it after a restart.
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError>;

    /// Starts a task like [`launch`](Containerizer::launch), but may do the work in the
    /// background and answer [`LaunchStart::Pending`]: the outcome then comes through the
    /// containerizer's [`LaunchCallback`]. Meanwhile the task id is taken (a second launch of it
    /// fails with [`ContainerizerError::AlreadyRunning`]) and the task is not yet known to
    /// [`kill`](Containerizer::kill) or [`usage`](Containerizer::usage).
    /// [`destroy_all`](Containerizer::destroy_all) cancels the launches not yet begun (their
    /// outcome is an error) and waits for those under way.
    ///
    /// The default launches synchronously: the simulator's containerizers keep it, so that a
    /// simulated launch stays immediate and deterministic.
    fn start_launch(&mut self, spec: TaskSpec) -> LaunchStart {
        LaunchStart::Done(self.launch(spec))
    }

    /// Asks a running task to stop: SIGTERM to all its processes now, SIGKILL to whatever is
    /// left after `grace`. Returns at once; the termination arrives through the callback.
    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError>;

    /// Current resource usage of a running task.
    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError>;

    /// After a restart: re-attaches to each checkpointed task still running, reports those
    /// that terminated meanwhile, and removes the cgroups, processes and run directories of
    /// this slave's tasks that are in neither `known` nor the tasks already tracked.
    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask>;

    /// Forgets a terminated task for good: removes its run directory (with its recorded
    /// status). The slave calls it once the termination is durably checkpointed, so that a
    /// crash in between still finds the status at recovery. No effect on a running task.
    fn forget(&mut self, task_id: &str);

    /// Kills every running task at once (SIGKILL) and waits (bounded) until all are cleaned up;
    /// their terminations are reported through the callback. Launches not yet begun are
    /// cancelled (reported as failed through the launch callback); those under way are waited
    /// for, reported, and killed like the others. For slave shutdown.
    fn destroy_all(&mut self);

    /// Lets a containerizer that keeps its own (virtual) time advance to `now` (time since the
    /// slave process's clock origin): the simulated containerizer ends tasks whose run time
    /// is over here, through the callback. Returns when it next wants to be polled. The slave
    /// polls at that time, after any handler that called another `&mut self` method, and
    /// after handling an event the containerizer posted (a launch finished, a task ended);
    /// it may poll more often. The real containerizer watches on its own thread and needs no
    /// polling (the default).
    fn poll(&mut self, _now: Duration) -> Option<Duration> {
        None
    }
}

/// The directory name (cgroup and run directory) of a task id: the id itself when it only uses
/// `[A-Za-z0-9_.-]` (and does not start with `.`), otherwise the id with every other byte
/// written as `%XX`. Ids longer than 200 bytes once escaped are cut and suffixed with a hash of
/// the whole id, so that the name stays a valid path component. Different ids give different
/// names (except for hash collisions of very long ids).
pub fn task_dir_name(task_id: &str) -> String {
    const NAME_LEN_MAX: usize = 200;
    let mut name = String::with_capacity(task_id.len());
    for (i, byte) in task_id.bytes().enumerate() {
        let plain =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if plain {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    if name.is_empty() {
        name.push('%');
    }
    if name.len() > NAME_LEN_MAX {
        // FNV-1a: deterministic, good enough to keep long ids apart.
        let hash = plateau_runtime::rng::stable_hash(task_id.as_bytes());
        name.truncate(NAME_LEN_MAX - 17);
        // The cut must not split a `%XX` escape; a trailing partial escape is harmless but ugly.
        while name.ends_with('%') || name[..name.len().saturating_sub(1)].ends_with('%') {
            name.pop();
        }
        name.push_str(&format!("~{hash:016x}"));
    }
    name
}

/// The monotonic clock of the slave's real side effects (supervisors, cgroup teardown, probe
/// threads): never simulated, so it reads the operating system's clock.
pub(crate) fn monotonic_now() -> std::time::Instant {
    std::time::Instant::now() // determinism-ok: real processes and threads, never simulated
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_ids_are_kept() {
        assert_eq!(task_dir_name("web.1234-abcd_x"), "web.1234-abcd_x");
    }

    #[test]
    fn unsafe_bytes_are_escaped() {
        assert_eq!(task_dir_name("a/b"), "a%2Fb");
        assert_eq!(task_dir_name(".."), "%2E.");
        assert_eq!(task_dir_name("."), "%2E");
        assert_eq!(task_dir_name(""), "%");
        assert_eq!(task_dir_name("a b%"), "a%20b%25");
    }

    #[test]
    fn long_ids_are_cut_and_hashed() {
        let a = "x".repeat(300);
        let b = format!("{}y", "x".repeat(299));
        assert!(task_dir_name(&a).len() <= 200);
        assert_ne!(task_dir_name(&a), task_dir_name(&b));
    }

    proptest! {
        #[test]
        fn names_are_safe_path_components(id in ".{0,300}") {
            let name = task_dir_name(&id);
            prop_assert!(!name.is_empty() && name.len() <= 200);
            prop_assert!(name != "." && name != ".." && !name.starts_with('.'));
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-%~".contains(&b)));
        }

        #[test]
        fn short_distinct_ids_get_distinct_names(a in ".{0,40}", b in ".{0,40}") {
            prop_assume!(a != b);
            prop_assert_ne!(task_dir_name(&a), task_dir_name(&b));
        }
    }
}
