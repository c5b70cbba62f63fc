//! The per-task supervisor: a small process, started by the containerizer in its own session,
//! that starts the task inside its cgroups, waits for it, enforces kills and OOM, cleans the
//! cgroups and records how the task ended in its run directory.
//!
//! The containerizer writes the [`SupervisorSpec`] (JSON: what to run, where, in which
//! cgroups) to the supervisor's stdin and closes it.
//!
//! Files of a run directory:
//! - `kill` (written by the containerizer): a kill request, the grace period in milliseconds;
//!   the containerizer also sends SIGUSR1 to wake the supervisor;
//! - `status.json` (written by the supervisor, atomically, just before it exits): the
//!   [`Termination`];
//! - `supervisor.log`: the supervisor's stderr.
//!
//! Handshake: once the task is started (or could not be), the supervisor writes one line to its
//! stdout — `started <pid>` or `failed <reason>` — then points stdout at `/dev/null`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroups::{self, CgroupDirs};
use super::{sys, Termination};
use crate::limits;

/// Name of the status file in a run directory.
pub(crate) const STATUS_FILE: &str = "status.json";
/// Name of the kill request file in a run directory.
pub(crate) const KILL_FILE: &str = "kill";
/// Name of the supervisor's log in a run directory.
pub(crate) const LOG_FILE: &str = "supervisor.log";

/// What the supervisor runs: written by the containerizer to the supervisor's stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SupervisorSpec {
    /// The task's id (for messages).
    pub task_id: String,
    /// Program to execute.
    pub program: String,
    /// argv\[0\] if different from `program`.
    pub argv0: Option<String>,
    /// argv\[1..\].
    pub args: Vec<String>,
    /// The task's whole environment.
    pub env: BTreeMap<String, String>,
    /// Working directory, home of `stdout` and `stderr`.
    pub sandbox: PathBuf,
    /// The task's cgroup.
    pub cgroup: CgroupDirs,
    /// Who the task runs as; `None`: as the supervisor (the slave's user).
    #[serde(default)]
    pub user: Option<SupervisorUser>,
}

/// The user a task runs as, resolved by the slave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SupervisorUser {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its groups (supplementary, primary included).
    pub groups: Vec<u32>,
}

/// Entry point of the supervisor process. `args` are the arguments after the program (and after
/// whatever leading arguments selected this entry point, like `plateau supervise`): exactly one,
/// the task's run directory. Never returns.
///
/// ```no_run
/// // In a binary:
/// plateau_slave::containerizer::supervisor_main(std::env::args_os().skip(1).collect())
/// ```
pub fn supervisor_main(args: Vec<OsString>) -> ! {
    // Its own session first: out of the slave's process group and terminal, so that it
    // outlives the slave. (The containerizer starts it with posix_spawn, which cannot.) It fails
    // only for a process-group leader, e.g. a supervisor started by hand from a shell: then it
    // stays where it was started.
    // SAFETY: setsid has no memory-safety preconditions.
    let _ = unsafe { libc::setsid() };
    let [run_dir] = args.as_slice() else {
        eprintln!("usage: <supervisor> <task-run-dir>");
        std::process::exit(2);
    };
    let run_dir = PathBuf::from(run_dir);
    match supervise(&run_dir) {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            eprintln!("supervisor {}: {message}", run_dir.display());
            std::process::exit(1);
        }
    }
}

fn handshake(line: &str) {
    let mut stdout = std::io::stdout().lock();
    // The slave may be gone (SIGPIPE is blocked, so this is just an error): nothing to do.
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn detach_stdout() {
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: duplicates a valid descriptor onto stdout.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    }
}

/// What the supervisor learned while the task ran.
struct Watch {
    leader_status: Option<libc::c_int>,
    kill_grace: Option<Duration>,
    kill_deadline: Option<Instant>,
    oom_seen: bool,
}

fn supervise(run_dir: &Path) -> Result<(), String> {
    // Signals arrive through a signalfd; SIGTERM/SIGINT/SIGHUP are blocked so that nothing but
    // SIGKILL stops the supervisor (the task gets a clean mask: see pre_exec below).
    let blocked = sys::sigset(&[
        libc::SIGCHLD,
        libc::SIGUSR1,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
    ]);
    sys::block_signals(&blocked).map_err(|e| format!("block signals: {e}"))?;
    let signals = sys::signalfd(&sys::sigset(&[libc::SIGCHLD, libc::SIGUSR1]))
        .map_err(|e| format!("signalfd: {e}"))?;
    // Orphans of the task are re-parented to us, so we reap them and init does not have to.
    let _ = sys::set_child_subreaper();
    let _ = std::env::set_current_dir("/");

    let spec = match read_spec() {
        Ok(spec) => spec,
        Err(message) => {
            handshake(&format!("failed {message}"));
            return Err(message);
        }
    };
    let task_pid = match start_task(&spec) {
        Ok(pid) => pid,
        Err(message) => {
            handshake(&format!("failed {message}"));
            return Err(message);
        }
    };
    handshake(&format!("started {task_pid}"));
    detach_stdout();

    let mut watch = Watch {
        leader_status: None,
        kill_grace: None,
        kill_deadline: None,
        oom_seen: false,
    };
    while watch.leader_status.is_none() {
        let timeout = match watch.kill_deadline {
            Some(deadline) => deadline
                .saturating_duration_since(super::monotonic_now())
                .min(limits::SUPERVISOR_TICK),
            None => limits::SUPERVISOR_TICK,
        };
        let mut fds = [sys::pollfd(signals.as_raw_fd())];
        sys::poll(&mut fds, Some(timeout)).map_err(|e| format!("poll: {e}"))?;
        sys::signalfd_drain(&signals);
        reap(task_pid, &mut watch.leader_status);
        if watch.leader_status.is_some() {
            break;
        }
        check_kill_request(run_dir, &spec, task_pid, &mut watch);
        if !watch.oom_seen && cgroups::oom_kill_count(&spec.cgroup).unwrap_or(0) > 0 {
            // Like Mesos' memory limitation: the task as a whole is over its limit, so the
            // whole task goes, not just the process the kernel picked.
            watch.oom_seen = true;
            cgroups::signal_all(&spec.cgroup, libc::SIGKILL);
        }
    }

    let termination = finish(&spec, &watch);
    // Leftovers (daemonized children...) die with the task.
    let empty = cgroups::kill_until_empty(&spec.cgroup, limits::CGROUP_EMPTY_TIMEOUT, || {
        let mut ignored = None;
        reap(task_pid, &mut ignored);
    });
    if !empty {
        eprintln!(
            "task {}: cgroup not empty after {:?}",
            spec.task_id,
            limits::CGROUP_EMPTY_TIMEOUT
        );
    }
    // Processes leave cgroup.procs when they exit, before they are reaped: reap the last
    // zombies among our children (orphans re-parented to us), or init would inherit them.
    reap_all(Duration::from_secs(2));
    if !cgroups::remove(&spec.cgroup) {
        eprintln!(
            "task {}: could not remove cgroup {:?}",
            spec.task_id, spec.cgroup.all
        );
    }
    let json = serde_json::to_vec(&termination).map_err(|e| format!("encode status: {e}"))?;
    sys::write_atomic(&run_dir.join(STATUS_FILE), &json)
        .map_err(|e| format!("write status: {e}"))?;
    Ok(())
}

/// Reads the spec from stdin, to its end (the containerizer closes it).
fn read_spec() -> Result<SupervisorSpec, String> {
    use std::io::Read;
    let mut data = Vec::new();
    std::io::stdin()
        .lock()
        .take(limits::RUN_FILE_BYTES_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("read the spec from stdin: {e}"))?;
    if data.len() as u64 > limits::RUN_FILE_BYTES_MAX {
        return Err(format!(
            "spec larger than {} bytes",
            limits::RUN_FILE_BYTES_MAX
        ));
    }
    serde_json::from_slice(&data).map_err(|e| format!("parse the spec: {e}"))
}

fn start_task(spec: &SupervisorSpec) -> Result<u32, String> {
    // Opened here, written in the child: pre_exec must not allocate, and joining the cgroups
    // before exec puts every descendant of the task in them.
    let mut procs_files = Vec::new();
    for dir in &spec.cgroup.all {
        let path = dir.join("cgroup.procs");
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        procs_files.push(file);
    }
    let procs_fds: Vec<RawFd> = procs_files.iter().map(|f| f.as_raw_fd()).collect();
    let open_output = |name: &str| {
        let path = spec.sandbox.join(name);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))
    };
    let stdout = open_output("stdout")?;
    let stderr = open_output("stderr")?;
    if let Some(user) = &spec.user {
        // Created by us (root) in the user's sandbox: the task's, like the rest of it.
        for (name, file) in [("stdout", &stdout), ("stderr", &stderr)] {
            std::os::unix::fs::fchown(file, Some(user.uid), Some(user.gid))
                .map_err(|e| format!("give {name} to uid {}: {e}", user.uid))?;
        }
    }
    let switch = spec.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone()));

    let mut command = Command::new(&spec.program);
    if let Some(argv0) = &spec.argv0 {
        command.arg0(argv0);
    }
    command
        .args(&spec.args)
        .current_dir(&spec.sandbox)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // SAFETY: the closure only makes async-signal-safe system calls (setsid, write,
    // setgroups, setgid, setuid, sigprocmask) on data prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &fd in &procs_fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // In the cgroups first (as root), then the task's user: groups, gid, uid.
            if let Some((uid, gid, groups)) = &switch {
                crate::user::TaskUser::switch_in_child(*uid, *gid, groups)?;
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| format!("start {:?}: {e}", spec.program))?;
    drop(procs_files);
    Ok(child.id())
}

/// Reaps every exited child; records the task leader's wait status.
fn reap(task_pid: u32, leader_status: &mut Option<libc::c_int>) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if pid as u32 == task_pid {
            *leader_status = Some(status);
        }
    }
}

/// Reaps children until there are none left, for at most `timeout`.
fn reap_all(timeout: Duration) {
    let deadline = super::monotonic_now() + timeout;
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid with a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 || super::monotonic_now() >= deadline {
            return; // ECHILD: no children left.
        }
        if pid == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn check_kill_request(run_dir: &Path, spec: &SupervisorSpec, task_pid: u32, watch: &mut Watch) {
    if watch.kill_grace.is_none() {
        let Ok(text) = fs::read_to_string(run_dir.join(KILL_FILE)) else {
            return;
        };
        let grace = Duration::from_millis(text.trim().parse().unwrap_or(0));
        watch.kill_grace = Some(grace);
        watch.kill_deadline = Some(super::monotonic_now() + grace);
        // The process group catches children that left the cgroup's listing race; the
        // cgroup catches those that left the process group.
        let _ = sys::kill(-(task_pid as libc::pid_t), libc::SIGTERM);
        cgroups::signal_all(&spec.cgroup, libc::SIGTERM);
    }
    if let Some(deadline) = watch.kill_deadline {
        if super::monotonic_now() >= deadline {
            watch.kill_deadline = None;
            cgroups::signal_all(&spec.cgroup, libc::SIGKILL);
        }
    }
}

/// Builds the termination from the leader's wait status and the cgroup's OOM counter (read
/// before the cgroup is removed).
fn finish(spec: &SupervisorSpec, watch: &Watch) -> Termination {
    let status = watch
        .leader_status
        .expect("finish is called once the leader exited");
    let oom_killed = watch.oom_seen || cgroups::oom_kill_count(&spec.cgroup).unwrap_or(0) > 0;
    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let mut message = match (exit_code, signal) {
        (Some(code), _) => format!("Command exited with status {code}"),
        (_, Some(signal)) => format!("Command terminated by signal {}", signal_name(signal)),
        _ => format!("Command ended with wait status {status}"),
    };
    if let Some(grace) = watch.kill_grace {
        message.push_str(&format!(
            " (killed on request, grace period {} ms)",
            grace.as_millis()
        ));
    }
    if oom_killed {
        const MIB: u64 = 1 << 20;
        let limit = cgroups::memory_value(&spec.cgroup, "memory.limit_in_bytes").unwrap_or(0);
        let max_used =
            cgroups::memory_value(&spec.cgroup, "memory.max_usage_in_bytes").unwrap_or(0);
        message = format!(
            "Memory limit exceeded: Requested: {}MB Maximum Used: {}MB; {message}",
            limit / MIB,
            max_used.div_ceil(MIB)
        );
    }
    Termination {
        exit_code,
        signal,
        oom_killed,
        message,
    }
}

fn signal_name(signal: libc::c_int) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("{signal}"),
    };
    name.to_string()
}
