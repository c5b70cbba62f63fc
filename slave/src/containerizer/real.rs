//! [`CgroupsContainerizer`]: the real containerizer, with one supervisor process per task and
//! one watcher thread per containerizer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cgroups::{self, CgroupDirs, Limits};
use super::supervisor::{SupervisorSpec, SupervisorUser, KILL_FILE, LOG_FILE, STATUS_FILE};
use super::{
    sys, task_dir_name, Containerizer, ContainerizerError, LaunchCallback, LaunchInfo, LaunchStart,
    RecoverInfo, RecoveredTask, TaskId, TaskSpec, Termination, TerminationCallback, Usage,
};
use crate::limits;
use crate::user::{self, TaskUser};

/// Configuration of a [`CgroupsContainerizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupsContainerizerConfig {
    /// Name of this slave: task cgroups live under `<cgroup_root>/<slave_name>/`, so several
    /// slaves (or tests) on one host do not collide. Made path-safe like task ids.
    pub slave_name: String,
    /// First component of every task cgroup path (default `plateau`).
    pub cgroup_root: String,
    /// Directory of the tasks' run directories (`<run_dir>/<task>/`: status, kill request,
    /// supervisor log). Must survive a restart of the slave, and belong to this slave alone:
    /// recovery removes what it does not know there.
    pub run_dir: PathBuf,
    /// The program that runs [`super::supervisor_main`]: `plateau-supervisor`, or the `plateau`
    /// binary itself.
    pub supervisor_program: PathBuf,
    /// Arguments put before the run directory, e.g. `["supervise"]` for `plateau supervise`.
    pub supervisor_args: Vec<OsString>,
    /// `pids.max` of every task cgroup.
    pub pids_max: u64,
    /// Environment every task starts from, before its own variables (default: a standard
    /// `PATH`). The slave's own environment is not passed on.
    pub base_env: BTreeMap<String, String>,
}

impl CgroupsContainerizerConfig {
    /// A configuration with the defaults: cgroup root `plateau`, `pids.max`
    /// [`limits::TASK_PIDS_MAX_DEFAULT`], a base environment holding only `PATH`.
    pub fn new(
        slave_name: impl Into<String>,
        run_dir: impl Into<PathBuf>,
        supervisor_program: impl Into<PathBuf>,
    ) -> Self {
        let mut base_env = BTreeMap::new();
        base_env.insert(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
        CgroupsContainerizerConfig {
            slave_name: slave_name.into(),
            cgroup_root: "plateau".to_string(),
            run_dir: run_dir.into(),
            supervisor_program: supervisor_program.into(),
            supervisor_args: Vec::new(),
            pids_max: limits::TASK_PIDS_MAX_DEFAULT,
            base_env,
        }
    }
}

/// A watched task.
struct Entry {
    info: LaunchInfo,
    /// The supervisor's pidfd: readable once the supervisor exited, i.e. the task ended.
    pidfd: OwnedFd,
    dirs: CgroupDirs,
    /// When the containerizer SIGKILLs the cgroup itself, should the supervisor not have
    /// finished a requested kill by then.
    escalate_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    tasks: BTreeMap<TaskId, Entry>,
    /// Tasks removed from `tasks` whose termination is being reported.
    reporting: usize,
    /// Ids of the launches started with `start_launch` and not reported yet (queued or under
    /// way): taken, so that no second launch of the same id can start meanwhile.
    launching: BTreeSet<TaskId>,
    /// Launches waiting for a launcher thread, oldest first.
    queue: VecDeque<TaskSpec>,
    /// Where launch outcomes go; `None` until launcher threads are started.
    on_launch: Option<LaunchCallback>,
    stop: bool,
}

struct Shared {
    config: CgroupsContainerizerConfig,
    /// `<cgroup_root>/<slave_name>`.
    parent_cgroup: String,
    state: Mutex<State>,
    /// Notified whenever a task was removed from `state.tasks` or a launch was reported.
    removed: Condvar,
    /// Notified when a launch was queued (or the launchers must stop).
    queued: Condvar,
    /// Wakes the watcher when `state` changed.
    wake: OwnedFd,
    on_termination: TerminationCallback,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the callback must not wedge the containerizer: the state stays consistent
        // because every mutation is a single map operation.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The real containerizer: tasks are processes in cgroup v1 cgroups, each under its own
/// supervisor process (see the [module docs](super)).
///
/// Dropping it stops its watcher thread but leaves tasks and supervisors running, exactly as
/// a `kill -9` of the slave would; a new instance [`recovers`](Containerizer::recover) them.
pub struct CgroupsContainerizer {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    /// Launcher threads (see [`CgroupsContainerizer::start_launchers`]).
    launchers: Vec<JoinHandle<()>>,
}

impl CgroupsContainerizer {
    /// Checks the host (cgroup v1 controllers `cpu`, `cpuacct`, `memory`, `pids`, `freezer`),
    /// creates the run directory and starts the watcher thread. `on_termination` is called from
    /// that thread once per task when it ends.
    pub fn new(
        config: CgroupsContainerizerConfig,
        on_termination: TerminationCallback,
    ) -> Result<Self, ContainerizerError> {
        cgroups::check_host()?;
        fs::create_dir_all(&config.run_dir).map_err(|source| ContainerizerError::Io {
            context: "create run directory",
            path: config.run_dir.clone(),
            source,
        })?;
        let wake = sys::eventfd().map_err(|source| ContainerizerError::Io {
            context: "create eventfd",
            path: PathBuf::new(),
            source,
        })?;
        let parent_cgroup = format!(
            "{}/{}",
            task_dir_name(&config.cgroup_root),
            task_dir_name(&config.slave_name)
        );
        let thread_name = format!("containerizer-{}", config.slave_name);
        let shared = Arc::new(Shared {
            config,
            parent_cgroup,
            state: Mutex::new(State::default()),
            removed: Condvar::new(),
            queued: Condvar::new(),
            wake,
            on_termination,
        });
        let watcher_shared = Arc::clone(&shared);
        let watcher = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || watch(&watcher_shared))
            .map_err(|source| ContainerizerError::Io {
                context: "spawn watcher thread",
                path: PathBuf::new(),
                source,
            })?;
        Ok(CgroupsContainerizer {
            shared,
            watcher: Some(watcher),
            launchers: Vec::new(),
        })
    }

    /// Starts `threads` launcher threads (at least one): from now on
    /// [`start_launch`](Containerizer::start_launch) queues launches for them and answers
    /// [`LaunchStart::Pending`]; each outcome goes to `on_launch`, called from a launcher
    /// thread before the task is watched (so before its termination can be reported).
    /// Without launchers, `start_launch` launches synchronously. Calling it again adds threads
    /// and replaces the callback.
    pub fn start_launchers(
        &mut self,
        threads: usize,
        on_launch: LaunchCallback,
    ) -> Result<(), ContainerizerError> {
        self.shared.lock().on_launch = Some(on_launch);
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&self.shared);
            let handle = std::thread::Builder::new()
                .name(format!("launcher-{i}-{}", self.shared.config.slave_name))
                .spawn(move || launcher(&shared))
                .map_err(|source| ContainerizerError::Io {
                    context: "spawn launcher thread",
                    path: PathBuf::new(),
                    source,
                })?;
            self.launchers.push(handle);
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &CgroupsContainerizerConfig {
        &self.shared.config
    }

    /// The cgroup (relative to each hierarchy's root) of `task_id` on this slave.
    pub fn cgroup_of(&self, task_id: &str) -> String {
        self.shared.cgroup_of(task_id)
    }

    /// The run directory of `task_id`.
    pub fn run_dir_of(&self, task_id: &str) -> PathBuf {
        self.shared.run_dir_of(task_id)
    }

    /// Ids of the tasks currently watched (launched or recovered, not yet terminated).
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.shared.lock().tasks.keys().cloned().collect()
    }

    /// Ids of the launches started with [`start_launch`](Containerizer::start_launch) whose
    /// outcome has not been reported yet.
    pub fn launching_ids(&self) -> Vec<TaskId> {
        self.shared.lock().launching.iter().cloned().collect()
    }

    fn wake_watcher(&self) {
        self.shared.wake_watcher();
    }
}

impl Shared {
    fn cgroup_of(&self, task_id: &str) -> String {
        format!("{}/{}", self.parent_cgroup, task_dir_name(task_id))
    }

    fn run_dir_of(&self, task_id: &str) -> PathBuf {
        self.config.run_dir.join(task_dir_name(task_id))
    }

    fn wake_watcher(&self) {
        sys::eventfd_signal(&self.wake);
    }

    fn validate(spec: &TaskSpec) -> Result<(), ContainerizerError> {
        let invalid = |reason: String| ContainerizerError::InvalidSpec {
            task_id: spec.task_id.clone(),
            reason,
        };
        let has_nul = |s: &str| s.contains('\0');
        if spec.task_id.is_empty()
            || spec.task_id.len() > limits::TASK_ID_LEN_MAX
            || has_nul(&spec.task_id)
        {
            return Err(invalid(format!(
                "task id must be 1 to {} bytes without NUL",
                limits::TASK_ID_LEN_MAX
            )));
        }
        if !(spec.cpus.is_finite() && spec.cpus > 0.0 && spec.cpus <= 4096.0) {
            return Err(invalid(format!(
                "cpus must be in (0, 4096], got {}",
                spec.cpus
            )));
        }
        if !(spec.mem_mb.is_finite() && spec.mem_mb > 0.0 && spec.mem_mb <= (1u64 << 40) as f64) {
            return Err(invalid(format!(
                "mem must be a positive number of MB, got {}",
                spec.mem_mb
            )));
        }
        if spec.ports.len() > limits::TASK_PORTS_MAX {
            return Err(invalid(format!("at most {} ports", limits::TASK_PORTS_MAX)));
        }
        if spec.env.len() > limits::TASK_ENV_VARS_MAX {
            return Err(invalid(format!(
                "at most {} environment variables",
                limits::TASK_ENV_VARS_MAX
            )));
        }
        let env_bytes: usize = spec.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if env_bytes > limits::TASK_ENV_BYTES_MAX {
            return Err(invalid(format!(
                "environment larger than {} bytes",
                limits::TASK_ENV_BYTES_MAX
            )));
        }
        if let Some(name) = spec
            .env
            .iter()
            .find(|(k, v)| k.is_empty() || k.contains('=') || has_nul(k) || has_nul(v))
            .map(|(k, _)| k)
        {
            return Err(invalid(format!(
                "environment variable {name:?}: names must be non-empty without '=' or NUL, values without NUL"
            )));
        }
        let command_bytes = spec.command.value.len()
            + spec
                .command
                .arguments
                .iter()
                .map(String::len)
                .sum::<usize>();
        if command_bytes > limits::TASK_COMMAND_BYTES_MAX {
            return Err(invalid(format!(
                "command larger than {} bytes",
                limits::TASK_COMMAND_BYTES_MAX
            )));
        }
        if spec.command.value.is_empty()
            || has_nul(&spec.command.value)
            || spec.command.arguments.iter().any(|a| has_nul(a))
        {
            return Err(invalid(
                "command value must be non-empty, command and arguments without NUL".into(),
            ));
        }
        if has_nul(&spec.hostname) {
            return Err(invalid("hostname contains NUL".into()));
        }
        if !spec.sandbox.is_absolute() {
            return Err(invalid(format!(
                "sandbox {} is not an absolute path",
                spec.sandbox.display()
            )));
        }
        Ok(())
    }

    /// The task's whole environment.
    fn environment(
        &self,
        spec: &TaskSpec,
        sandbox: &Path,
        user: Option<&TaskUser>,
    ) -> BTreeMap<String, String> {
        let mut env = self.config.base_env.clone();
        if let Some(user) = user {
            // As a login would set them; the task's own variables may still override them.
            env.insert("HOME".into(), user.home.to_string_lossy().into_owned());
            env.insert("USER".into(), user.name.clone());
            env.insert("LOGNAME".into(), user.name.clone());
        }
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.insert("MESOS_TASK_ID".into(), spec.task_id.clone());
        env.insert(
            "MESOS_SANDBOX".into(),
            sandbox.to_string_lossy().into_owned(),
        );
        env.insert("HOST".into(), spec.hostname.clone());
        for (i, port) in spec.ports.iter().enumerate() {
            env.insert(format!("PORT{i}"), port.to_string());
        }
        if let Some(first) = spec.ports.first() {
            env.insert("PORT".into(), first.to_string());
        }
        if !spec.ports.is_empty() {
            let ports: Vec<String> = spec.ports.iter().map(u16::to_string).collect();
            env.insert("PORTS".into(), ports.join(","));
        }
        env
    }

    fn io_error(
        context: &'static str,
        path: &Path,
    ) -> impl FnOnce(std::io::Error) -> ContainerizerError {
        let path = path.to_path_buf();
        move |source| ContainerizerError::Io {
            context,
            path,
            source,
        }
    }

    /// Starts the supervisor, hands it `spec` (JSON) on its stdin and waits for its handshake.
    /// Returns its child handle, pidfd and the task's pid.
    fn start_supervisor(
        &self,
        task_id: &str,
        run_dir: &Path,
        spec: &[u8],
    ) -> Result<(Child, OwnedFd, u32), ContainerizerError> {
        let launch_error = |reason: String| ContainerizerError::Launch {
            task_id: task_id.to_string(),
            reason,
        };
        let log_path = run_dir.join(LOG_FILE);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(Self::io_error("open supervisor log", &log_path))?;
        let mut command = Command::new(&self.config.supervisor_program);
        command
            .args(&self.config.supervisor_args)
            .arg(run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        // No `pre_exec` here: without one, std starts the child with posix_spawn (a vfork-like
        // clone), not a fork of this large, many-threaded process, which costs milliseconds
        // per launch. The supervisor puts itself in its own session first thing instead
        // (`supervisor_main`), so that it outlives the slave.
        let mut child = command.spawn().map_err(|e| {
            launch_error(format!(
                "start supervisor {}: {e}",
                self.config.supervisor_program.display()
            ))
        })?;
        // Our unreaped child: its pid cannot be reused, so this pidfd is the right process.
        let pidfd = match sys::pidfd_open(child.id()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(launch_error(format!("pidfd_open: {e}")));
            }
        };
        let deadline = super::monotonic_now() + limits::SUPERVISOR_HANDSHAKE_TIMEOUT;
        let stdin = child.stdin.take().expect("stdin is piped");
        // A supervisor that died early shows in the handshake (EOF), with its log: a failed
        // write adds nothing to that.
        if let Err(e) = write_spec(stdin, spec, deadline) {
            tracing::debug!(task_id, error = %e, "writing the spec to the supervisor failed");
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        match read_handshake(stdout, deadline) {
            Ok(line) => {
                if let Some(pid) = line
                    .strip_prefix("started ")
                    .and_then(|p| p.trim().parse::<u32>().ok())
                {
                    return Ok((child, pidfd, pid));
                }
                let reason = line.strip_prefix("failed ").unwrap_or(&line).to_string();
                let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                let _ = child.wait();
                Err(launch_error(reason))
            }
            Err(reason) => {
                let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                let _ = child.wait();
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                Err(launch_error(format!(
                    "supervisor handshake: {reason}; log: {}",
                    log.trim()
                )))
            }
        }
    }

    /// Does the work of a launch (sandbox, run directory, cgroups, supervisor and its
    /// handshake) and returns what to watch; the caller inserts it into the state. Runs on the
    /// slave's thread or on a launcher thread.
    fn launch(&self, spec: &TaskSpec) -> Result<(LaunchInfo, Entry), ContainerizerError> {
        let user = Self::resolve_user(spec)?;
        create_task_dir(&spec.sandbox).map_err(Self::io_error("create sandbox", &spec.sandbox))?;
        if let Some(user) = &user {
            give_sandbox(&spec.sandbox, user).map_err(Self::io_error(
                "give the sandbox to its user",
                &spec.sandbox,
            ))?;
            user.check_reachable(&spec.sandbox)
                .map_err(|dir| ContainerizerError::User {
                    task_id: spec.task_id.clone(),
                    reason: format!(
                        "user '{}' cannot reach its sandbox: it may not search {}",
                        user.name,
                        dir.display()
                    ),
                })?;
        }
        let run_dir = self.run_dir_of(&spec.task_id);
        // A run directory left by an earlier task of the same id (already reported): start clean.
        let _ = fs::remove_dir_all(&run_dir);
        create_task_dir(&run_dir).map_err(Self::io_error("create run directory", &run_dir))?;
        let cgroup = self.cgroup_of(&spec.task_id);
        let limits = Limits::new(spec.cpus, spec.mem_mb, self.config.pids_max);
        let created = cgroups::create(&cgroup, limits);
        let result = created.and_then(|(_, dirs)| {
            self.launch_inner(spec, user.as_ref(), &dirs, &run_dir)
                .inspect_err(|_| {
                    cgroups::destroy(&dirs);
                })
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&run_dir);
        }
        result
    }

    /// The task's user, resolved on this host; `None` when the spec names none.
    fn resolve_user(spec: &TaskSpec) -> Result<Option<TaskUser>, ContainerizerError> {
        let Some(name) = &spec.user else {
            return Ok(None);
        };
        let error = |reason: String| ContainerizerError::User {
            task_id: spec.task_id.clone(),
            reason,
        };
        let user = TaskUser::lookup(name).map_err(|e| error(e.to_string()))?;
        let slave_uid = user::current_uid();
        if slave_uid != 0 && user.uid != slave_uid {
            return Err(error(format!(
                "the slave runs as uid {slave_uid}, not root: it cannot start tasks as user '{}' \
                 (uid {}); run it as root, or make its own user the task user",
                user.name, user.uid
            )));
        }
        Ok(Some(user))
    }

    fn launch_inner(
        &self,
        spec: &TaskSpec,
        user: Option<&TaskUser>,
        dirs: &CgroupDirs,
        run_dir: &Path,
    ) -> Result<(LaunchInfo, Entry), ContainerizerError> {
        let sandbox = fs::canonicalize(&spec.sandbox)
            .map_err(Self::io_error("resolve sandbox", &spec.sandbox))?;
        let env = self.environment(spec, &sandbox, user);
        let (program, argv0, args) = if spec.command.shell {
            match simple_command(&spec.command.value, &env, &sandbox) {
                Some((program, argv0, args)) => (program, Some(argv0), args),
                None => (
                    "/bin/sh".to_string(),
                    None,
                    vec!["-c".to_string(), spec.command.value.clone()],
                ),
            }
        } else {
            match spec.command.arguments.split_first() {
                Some((first, rest)) => (
                    spec.command.value.clone(),
                    Some(first.clone()),
                    rest.to_vec(),
                ),
                None => (spec.command.value.clone(), None, Vec::new()),
            }
        };
        let supervisor_spec = SupervisorSpec {
            task_id: spec.task_id.clone(),
            program,
            argv0,
            args,
            env,
            sandbox: sandbox.clone(),
            cgroup: dirs.clone(),
            // A root slave always switches (to root too: the user's own groups); another
            // slave runs tasks as itself only (see resolve_user).
            user: user
                .filter(|_| user::current_uid() == 0)
                .map(|u| SupervisorUser {
                    uid: u.uid,
                    gid: u.gid,
                    groups: u.groups.clone(),
                }),
        };
        // Through the supervisor's stdin rather than a file: a file costs an inode, a rename
        // and an fsync per launch, and the spec is not needed once the task runs.
        let json = serde_json::to_vec(&supervisor_spec).expect("spec encodes");
        let (_child, pidfd, pid) = self.start_supervisor(&spec.task_id, run_dir, &json)?;
        // The child handle is dropped without waiting: the watcher reaps through the pidfd.
        let supervisor_pid = _child.id();
        let supervisor_start_time = sys::process_start_time(supervisor_pid).unwrap_or(0);
        let info = LaunchInfo {
            task_id: spec.task_id.clone(),
            pid,
            supervisor_pid,
            supervisor_start_time,
            cgroup: self.cgroup_of(&spec.task_id).into(),
            sandbox: sandbox.into(),
            run_dir: run_dir.to_path_buf(),
        };
        tracing::info!(task_id = %spec.task_id, pid, supervisor_pid, "task launched");
        let entry = Entry {
            info: info.clone(),
            pidfd,
            dirs: dirs.clone(),
            escalate_at: None,
        };
        Ok((info, entry))
    }

    /// Refuses a launch of an id already running or launching, or beyond the task limit.
    fn check_room(state: &State, task_id: &str) -> Result<(), ContainerizerError> {
        if state.tasks.contains_key(task_id) || state.launching.contains(task_id) {
            return Err(ContainerizerError::AlreadyRunning(task_id.to_string()));
        }
        if state.tasks.len() + state.launching.len() >= limits::CONTAINERIZER_TASKS_MAX {
            return Err(ContainerizerError::TooManyTasks(
                limits::CONTAINERIZER_TASKS_MAX,
            ));
        }
        Ok(())
    }

    /// Re-attaches to a checkpointed supervisor: its pid must still name a process with the
    /// checkpointed start time.
    fn attach(info: &RecoverInfo) -> Option<OwnedFd> {
        let pidfd = sys::pidfd_open(info.supervisor_pid).ok()?;
        // Checked after opening the pidfd, which pins the process: a match means the pidfd
        // is the supervisor and not a later process that reused its pid.
        if sys::process_start_time(info.supervisor_pid)? != info.supervisor_start_time {
            return None;
        }
        // An exited supervisor not yet reaped (a zombie) has a pidfd too: it is not running.
        let mut fds = [sys::pollfd(pidfd.as_raw_fd())];
        if sys::poll(&mut fds, Some(Duration::ZERO)).map_or(true, |ready| ready > 0) {
            sys::reap_pidfd(&pidfd);
            return None;
        }
        Some(pidfd)
    }
}

/// Shell builtins (dash's and POSIX's) that also exist as programs or could be mistaken for
/// them: a command starting with one of these goes through the shell, whose builtin may behave
/// differently from the program (`echo -e`, `kill %1`...).
const SHELL_BUILTINS: &[&str] = &[
    "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo", "eval", "exec", "exit",
    "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill", "local", "printf", "pwd",
    "read", "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type",
    "ulimit", "umask", "unalias", "unset", "wait",
];

/// A shell command that needs no shell: words of plain characters (no quoting, expansion,
/// redirection, operator, comment or assignment), the first naming an executable file found as
/// `/bin/sh` would find it (through `PATH` of `env`, or relative to `cwd`), that is a binary or
/// has a `#!` line. Returns the program's path, its argv\[0\] (the word as written) and the
/// other arguments: what `/bin/sh -c command` would execute, without the shell process in
/// between (dash forks the command rather than replacing itself). A launch then costs one
/// fork and exec fewer, a good part of it on virtual machines where every exec's CPU feature
/// probing traps to the hypervisor.
fn simple_command(
    command: &str,
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Option<(String, String, Vec<String>)> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:,+-=@".contains(c);
    if !command.chars().all(|c| c == ' ' || c == '\t' || plain(c)) {
        return None;
    }
    let mut words = command.split([' ', '\t']).filter(|w| !w.is_empty());
    let first = words.next()?;
    if first.contains('=') || SHELL_BUILTINS.contains(&first) {
        return None;
    }
    let program = if first.contains('/') {
        let path = cwd.join(first);
        is_executable(&path).then_some(path)?
    } else {
        // An empty or relative PATH entry means a directory relative to the working
        // directory: left to the shell.
        let path = env.get("PATH")?;
        let mut found = None;
        for dir in path.split(':') {
            if !dir.starts_with('/') {
                return None;
            }
            let candidate = Path::new(dir).join(first);
            if candidate.exists() {
                found = is_executable(&candidate).then_some(candidate);
                break;
            }
        }
        found?
    };
    Some((
        program.to_str()?.to_string(),
        first.to_string(),
        words.map(str::to_string).collect(),
    ))
}

/// Whether `path` is a regular file, executable by someone, that `execve` runs by itself (an ELF
/// binary or a `#!` script; a shell runs other files as shell scripts).
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF" || magic.starts_with(b"#!"))
}

/// Creates `dir` and its missing parents, after marking the deepest existing ancestor as the
/// top of a directory hierarchy ([`sys::mark_topdir`]), so that ext4 puts the new directories
/// (and the files later created in them) in a lightly used block group.
///
/// Why: on ext4 without a journal, creating an inode first scans past every inode of its block
/// group freed in the last 30 s (`recently_deleted`), one inode-table lookup each; and a new
/// directory goes to its parent's group, where the sandboxes of the previous tasks were just
/// removed. Measured on this project's machines: 1.4 to 3.4 ms for the five inodes of a task's
/// sandbox, 0.2 ms spread, most of a launch's cost.
fn create_task_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(existing) = dir.ancestors().skip(1).find(|a| a.is_dir()) {
        if let Err(e) = sys::mark_topdir(existing) {
            // Not ext2/3/4 (tmpfs...): nothing to spread.
            tracing::trace!(dir = %existing.display(), error = %e, "cannot mark a top directory");
        }
    }
    fs::create_dir_all(dir)
}

/// Gives the sandbox to the task's user: owned by it and its primary group, mode 0750 (other
/// users, other tasks among them, cannot look inside).
fn give_sandbox(sandbox: &Path, user: &TaskUser) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if user::current_uid() == 0 {
        std::os::unix::fs::chown(sandbox, Some(user.uid), Some(user.gid))?;
    }
    fs::set_permissions(sandbox, fs::Permissions::from_mode(0o750))
}

/// A launcher thread: takes queued launches one at a time, runs them and reports each outcome
/// through the launch callback, under the state lock and before the task is watched, so that
/// the outcome of a launch always reaches the slave before the termination of its task.
fn launcher(shared: &Shared) {
    loop {
        let spec = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(spec) = state.queue.pop_front() {
                    break spec;
                }
                state = shared
                    .queued
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let result = shared.launch(&spec);
        let mut state = shared.lock();
        state.launching.remove(&spec.task_id);
        let outcome = match result {
            Ok((info, entry)) => {
                state.tasks.insert(spec.task_id.clone(), entry);
                Ok(info)
            }
            Err(e) => Err(e),
        };
        if let Some(on_launch) = state.on_launch.clone() {
            let report = std::panic::AssertUnwindSafe(|| on_launch(spec.task_id.clone(), outcome));
            if std::panic::catch_unwind(report).is_err() {
                tracing::error!("containerizer launch callback panicked");
            }
        }
        drop(state);
        shared.removed.notify_all();
        shared.wake_watcher();
    }
}

/// Writes the spec to the supervisor's stdin, then closes it; gives up at `deadline` (the pipe
/// is non-blocking, so that a supervisor that does not read cannot hang a launcher thread).
fn write_spec(
    mut stdin: std::process::ChildStdin,
    mut data: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    sys::set_nonblocking(stdin.as_raw_fd())?;
    while !data.is_empty() {
        match stdin.write(data) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let remaining = deadline.saturating_duration_since(super::monotonic_now());
                if remaining.is_zero() {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                let mut fds = [libc::pollfd {
                    fd: stdin.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                sys::poll(&mut fds, Some(remaining))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the supervisor's one-line handshake, waiting at most until `deadline`.
fn read_handshake(
    mut stdout: std::process::ChildStdout,
    deadline: Instant,
) -> Result<String, String> {
    let mut line = Vec::new();
    loop {
        let remaining = deadline.saturating_duration_since(super::monotonic_now());
        if remaining.is_zero() {
            return Err(format!(
                "no answer within {:?}",
                limits::SUPERVISOR_HANDSHAKE_TIMEOUT
            ));
        }
        let mut fds = [sys::pollfd(stdout.as_raw_fd())];
        sys::poll(&mut fds, Some(remaining)).map_err(|e| format!("poll: {e}"))?;
        if fds[0].revents == 0 {
            continue;
        }
        let mut buffer = [0u8; 512];
        let n = stdout.read(&mut buffer).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("supervisor exited without answering".into());
        }
        line.extend_from_slice(&buffer[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() > limits::SUPERVISOR_HANDSHAKE_BYTES_MAX {
            return Err("handshake line too long".into());
        }
    }
}

/// The recorded termination in `run_dir`, if the supervisor wrote one.
fn read_status(run_dir: &Path) -> Option<Termination> {
    let data = sys::read_small(&run_dir.join(STATUS_FILE), limits::RUN_FILE_BYTES_MAX).ok()?;
    serde_json::from_slice(&data).ok()
}

/// How a task ended whose supervisor is gone: its recorded status, or, without one, an unknown
/// outcome (with the OOM counter if the cgroup still tells). Cleans the task's cgroup.
fn conclude(run_dir: &Path, dirs: &CgroupDirs) -> Termination {
    let termination = read_status(run_dir).unwrap_or_else(|| Termination {
        exit_code: None,
        signal: None,
        oom_killed: cgroups::oom_kill_count(dirs).unwrap_or(0) > 0,
        message: format!(
            "The task's supervisor exited without recording its status (see {})",
            run_dir.join(LOG_FILE).display()
        ),
    });
    if !cgroups::destroy(dirs) {
        tracing::warn!(cgroup = ?dirs.all, "could not remove the cgroup of a terminated task");
    }
    termination
}

/// The watcher thread: polls every supervisor's pidfd (and the wake eventfd), reports ended
/// tasks, and escalates overdue kills.
fn watch(shared: &Shared) {
    loop {
        let (mut fds, ids, timeout) = {
            let state = shared.lock();
            if state.stop {
                return;
            }
            let mut fds = Vec::with_capacity(state.tasks.len() + 1);
            let mut ids = Vec::with_capacity(state.tasks.len());
            fds.push(sys::pollfd(shared.wake.as_raw_fd()));
            let mut next: Option<Instant> = None;
            for (id, entry) in &state.tasks {
                fds.push(sys::pollfd(entry.pidfd.as_raw_fd()));
                ids.push(id.clone());
                if let Some(at) = entry.escalate_at {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
            let timeout = next.map(|at| at.saturating_duration_since(super::monotonic_now()));
            (fds, ids, timeout)
        };
        // Only this thread removes entries, so the pidfds polled here stay open meanwhile.
        if let Err(e) = sys::poll(&mut fds, timeout) {
            tracing::error!(error = %e, "containerizer watcher: poll failed");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if fds[0].revents != 0 {
            sys::eventfd_drain(&shared.wake);
        }
        for (fd, id) in fds[1..].iter().zip(ids) {
            if fd.revents == 0 {
                continue;
            }
            let Some(entry) = ({
                let mut state = shared.lock();
                let entry = state.tasks.remove(&id);
                state.reporting += usize::from(entry.is_some());
                entry
            }) else {
                continue;
            };
            sys::reap_pidfd(&entry.pidfd);
            let termination = conclude(&entry.info.run_dir, &entry.dirs);
            tracing::info!(task_id = %id, ?termination, "task terminated");
            let callback =
                std::panic::AssertUnwindSafe(|| (shared.on_termination)(id, termination));
            // A panicking callback must not kill the watcher: other tasks still need it.
            if std::panic::catch_unwind(callback).is_err() {
                tracing::error!("containerizer termination callback panicked");
            }
            shared.lock().reporting -= 1;
            shared.removed.notify_all();
        }
        let now = super::monotonic_now();
        let overdue: Vec<CgroupDirs> = {
            let mut state = shared.lock();
            state
                .tasks
                .values_mut()
                .filter(|e| e.escalate_at.is_some_and(|at| at <= now))
                .map(|e| {
                    e.escalate_at = None;
                    e.dirs.clone()
                })
                .collect()
        };
        for dirs in overdue {
            tracing::warn!(cgroup = ?dirs.all, "supervisor did not finish a kill in time: killing the cgroup");
            cgroups::signal_all(&dirs, libc::SIGKILL);
        }
    }
}

impl Containerizer for CgroupsContainerizer {
    fn launch(&mut self, spec: TaskSpec) -> Result<LaunchInfo, ContainerizerError> {
        Shared::validate(&spec)?;
        Shared::check_room(&self.shared.lock(), &spec.task_id)?;
        let (info, entry) = self.shared.launch(&spec)?;
        self.shared.lock().tasks.insert(spec.task_id.clone(), entry);
        self.wake_watcher();
        Ok(info)
    }

    fn start_launch(&mut self, spec: TaskSpec) -> LaunchStart {
        if let Err(e) = Shared::validate(&spec) {
            return LaunchStart::Done(Err(e));
        }
        let mut state = self.shared.lock();
        if state.on_launch.is_none() || self.launchers.is_empty() {
            drop(state);
            return LaunchStart::Done(self.launch(spec));
        }
        if let Err(e) = Shared::check_room(&state, &spec.task_id) {
            return LaunchStart::Done(Err(e));
        }
        state.launching.insert(spec.task_id.clone());
        state.queue.push_back(spec);
        drop(state);
        self.shared.queued.notify_one();
        LaunchStart::Pending
    }

    fn kill(&mut self, task_id: &str, grace: Duration) -> Result<(), ContainerizerError> {
        let mut state = self.shared.lock();
        let entry = state
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| ContainerizerError::UnknownTask(task_id.to_string()))?;
        let kill_path = entry.info.run_dir.join(KILL_FILE);
        let written = sys::write_atomic(&kill_path, grace.as_millis().to_string().as_bytes());
        let signalled =
            written.is_ok() && sys::pidfd_send_signal(&entry.pidfd, libc::SIGUSR1).is_ok();
        let escalate_at = super::monotonic_now() + grace + limits::KILL_ESCALATION_MARGIN;
        entry.escalate_at = Some(
            entry
                .escalate_at
                .map_or(escalate_at, |at| at.min(escalate_at)),
        );
        let dirs = entry.dirs.clone();
        drop(state);
        if !signalled {
            // No supervisor to do it gracefully (it is gone, or the run directory is broken):
            // kill now; the watcher reports the end as usual.
            tracing::warn!(
                task_id,
                "kill: supervisor unreachable, killing the cgroup at once"
            );
            cgroups::signal_all(&dirs, libc::SIGKILL);
        }
        self.wake_watcher();
        Ok(())
    }

    fn usage(&self, task_id: &str) -> Result<Usage, ContainerizerError> {
        let cgroup = {
            let state = self.shared.lock();
            let entry = state
                .tasks
                .get(task_id)
                .ok_or_else(|| ContainerizerError::UnknownTask(task_id.to_string()))?;
            entry.info.cgroup.clone()
        };
        cgroups::usage(&cgroups::load(&cgroup), &cgroup)
    }

    fn recover(&mut self, known: Vec<RecoverInfo>) -> Vec<RecoveredTask> {
        let mut recovered = Vec::with_capacity(known.len());
        let mut keep: BTreeSet<String> = {
            let state = self.shared.lock();
            state
                .tasks
                .keys()
                .chain(state.launching.iter())
                .map(|id| task_dir_name(id))
                .collect()
        };
        for mut info in known {
            let name = task_dir_name(&info.task_id);
            keep.insert(name);
            // Paths come from our configuration, not from the checkpoint: a stale or corrupt
            // checkpoint must not make us kill or delete anything outside this slave's space.
            info.cgroup = self.cgroup_of(&info.task_id).into();
            info.run_dir = self.run_dir_of(&info.task_id);
            let mut state = self.shared.lock();
            if let Some(entry) = state.tasks.get(&info.task_id) {
                recovered.push(RecoveredTask::Running(entry.info.clone()));
                continue;
            }
            let dirs = cgroups::dirs(&cgroups::load(&info.cgroup));
            match Shared::attach(&info) {
                Some(pidfd) if state.tasks.len() < limits::CONTAINERIZER_TASKS_MAX => {
                    state.tasks.insert(
                        info.task_id.clone(),
                        Entry {
                            info: info.clone(),
                            pidfd,
                            dirs,
                            escalate_at: None,
                        },
                    );
                    tracing::info!(task_id = %info.task_id, "recovered running task");
                    recovered.push(RecoveredTask::Running(info));
                }
                attached => {
                    drop(state);
                    if let Some(pidfd) = attached {
                        // Over the limit of watched tasks: it cannot be watched, so it ends.
                        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                    }
                    let termination = conclude(&info.run_dir, &dirs);
                    tracing::info!(task_id = %info.task_id, ?termination, "task terminated while the slave was away");
                    recovered.push(RecoveredTask::Terminated { info, termination });
                }
            }
        }
        // Orphans: cgroups and run directories of this slave that nobody knows about.
        let parent_cgroup = &self.shared.parent_cgroup;
        for name in cgroups::children(parent_cgroup) {
            if !keep.contains(&name) {
                let dirs = cgroups::dirs(&cgroups::load(&format!("{parent_cgroup}/{name}")));
                tracing::warn!(cgroup = %name, "destroying orphan task cgroup");
                cgroups::destroy(&dirs);
            }
        }
        if let Ok(entries) = fs::read_dir(&self.shared.config.run_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        self.wake_watcher();
        recovered
    }

    fn forget(&mut self, task_id: &str) {
        {
            let state = self.shared.lock();
            if state.tasks.contains_key(task_id) || state.launching.contains(task_id) {
                return;
            }
        }
        let _ = fs::remove_dir_all(self.run_dir_of(task_id));
    }

    fn destroy_all(&mut self) {
        let deadline = super::monotonic_now() + limits::DESTROY_ALL_TIMEOUT;
        // Launches not begun are cancelled; those under way are waited for, then killed below
        // with the others.
        {
            let mut state = self.shared.lock();
            let cancelled: Vec<TaskSpec> = state.queue.drain(..).collect();
            for spec in cancelled {
                state.launching.remove(&spec.task_id);
                let error = ContainerizerError::Launch {
                    task_id: spec.task_id.clone(),
                    reason: "cancelled: the containerizer is destroying all its tasks".into(),
                };
                if let Some(on_launch) = state.on_launch.clone() {
                    on_launch(spec.task_id, Err(error));
                }
            }
            while !state.launching.is_empty() {
                let remaining = deadline.saturating_duration_since(super::monotonic_now());
                if remaining.is_zero() {
                    tracing::error!(
                        launches = state.launching.len(),
                        "destroy_all: launches still under way after the timeout"
                    );
                    break;
                }
                state = self
                    .shared
                    .removed
                    .wait_timeout(state, remaining)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        }
        let ids = self.task_ids();
        for id in &ids {
            let _ = self.kill(id, Duration::ZERO);
        }
        let mut state = self.shared.lock();
        while !state.tasks.is_empty() || state.reporting > 0 {
            let remaining = deadline.saturating_duration_since(super::monotonic_now());
            if remaining.is_zero() {
                tracing::error!(
                    tasks = state.tasks.len(),
                    "destroy_all: tasks still running after the timeout"
                );
                return;
            }
            state = self
                .shared
                .removed
                .wait_timeout(state, remaining)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

impl Drop for CgroupsContainerizer {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.wake_watcher();
        self.shared.queued.notify_all();
        // Launches under way finish (their tasks run on, like the others); queued ones are
        // dropped, as a crash of the slave would.
        for launcher in self.launchers.drain(..) {
            let _ = launcher.join();
        }
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop, even when the test fails.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("plateau-real-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn env_with_path(path: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("PATH".to_string(), path.to_string())])
    }

    fn write_program(path: &Path, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn simple_commands_skip_the_shell() {
        let dir = Scratch::new("simple");
        let bin = dir.0.join("bin");
        fs::create_dir_all(&bin).unwrap();
        write_program(&bin.join("prog"), b"#!/bin/sh\nexit 0\n");
        let env = env_with_path(&format!("/nonexistent-plateau:{}", bin.display()));
        let (program, argv0, args) =
            simple_command("  prog a=1\t-x ./b:c,d@e+f ", &env, &dir.0).expect("simple");
        assert_eq!(program, bin.join("prog").to_str().unwrap());
        assert_eq!(argv0, "prog");
        assert_eq!(args, ["a=1", "-x", "./b:c,d@e+f"]);
        // Relative to the working directory.
        let (program, argv0, args) = simple_command("bin/prog", &env, &dir.0).expect("relative");
        assert_eq!(program, bin.join("prog").to_str().unwrap());
        assert_eq!(argv0, "bin/prog");
        assert!(args.is_empty());
    }

    #[test]
    fn commands_needing_a_shell_keep_it() {
        let dir = Scratch::new("shell");
        let bin = dir.0.join("bin");
        fs::create_dir_all(&bin).unwrap();
        write_program(&bin.join("prog"), b"#!/bin/sh\nexit 0\n");
        // No `#!`: a shell runs it as a script, execve would not.
        write_program(&bin.join("script"), b"exit 0\n");
        fs::write(bin.join("plain"), b"#!/bin/sh\n").unwrap();
        fs::create_dir_all(bin.join("dir")).unwrap();
        let env = env_with_path(&bin.to_string_lossy());
        for command in [
            "prog > out",
            "prog | prog",
            "prog; prog",
            "prog && prog",
            "prog $HOME",
            "prog 'a b'",
            "prog \"a\"",
            "prog *",
            "prog ~",
            "prog # comment",
            "prog \\x",
            "prog\nprog",
            "prog &",
            "(prog)",
            "A=1 prog",
            "echo hi",
            "exec prog",
            "cd /",
            "missing-program",
            "script",
            "plain",
            "dir",
            "",
            "   ",
        ] {
            assert_eq!(simple_command(command, &env, &dir.0), None, "{command:?}");
        }
        // No PATH, or a relative PATH entry before the program: left to the shell.
        assert_eq!(simple_command("prog", &BTreeMap::new(), &dir.0), None);
        let relative = env_with_path(&format!("bin:{}", bin.display()));
        assert_eq!(simple_command("prog", &relative, &dir.0), None);
    }

    #[test]
    fn task_dirs_are_created_with_their_parents() {
        let dir = Scratch::new("taskdir");
        let deep = dir.0.join("a/b/c");
        create_task_dir(&deep).unwrap();
        assert!(deep.is_dir());
        // Idempotent.
        create_task_dir(&deep).unwrap();
        let file = dir.0.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(create_task_dir(&file.join("below")).is_err());
    }
}
