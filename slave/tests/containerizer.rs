//! Integration tests of the cgroups containerizer: real processes, real cgroups (v1), real
//! supervisors (the crate's `plateau-supervisor` binary).
//!
//! Every test works under its own slave name (`plateau-test/<test>-<pid>`) and temporary
//! directory, so tests run in parallel; a [`Harness`] guard kills and removes whatever a test
//! created, even when it fails.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use plateau_slave::containerizer::{
    task_dir_name, CgroupsContainerizer, CgroupsContainerizerConfig, CommandSpec, Containerizer,
    ContainerizerError, LaunchInfo, LaunchStart, RecoveredTask, TaskSpec, Termination,
};

const CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "freezer"];
/// Generous: the machine is small and shared.
const WAIT: Duration = Duration::from_secs(60);

type Events = Arc<(Mutex<Vec<(String, Termination)>>, Condvar)>;

/// Outcomes of background launches: the task, its outcome (the error as text), and whether a
/// termination of the task had been reported before (it must not have been).
type Launches = Arc<(
    Mutex<Vec<(String, Result<LaunchInfo, String>, bool)>>,
    Condvar,
)>;

/// One test's slave: its containerizer, its termination events, its directories; cleans up
/// every process and cgroup of the test on drop.
struct Harness {
    /// `plateau-test-<test>-<pid>`: the cgroup root of this test alone.
    cgroup_root: String,
    slave_name: String,
    dir: PathBuf,
    events: Events,
    containerizer: Option<CgroupsContainerizer>,
    pids_max: u64,
}

impl Harness {
    fn new(test: &str) -> Harness {
        Self::with_pids_max(test, 4096)
    }

    fn with_pids_max(test: &str, pids_max: u64) -> Harness {
        let cgroup_root = format!("plateau-test-{test}-{}", std::process::id());
        let slave_name = "slave".to_string();
        let dir = std::env::temp_dir().join(&cgroup_root);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut harness = Harness {
            cgroup_root,
            slave_name,
            dir,
            events: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
            containerizer: None,
            pids_max,
        };
        harness.start();
        harness
    }

    fn config(&self) -> CgroupsContainerizerConfig {
        let mut config = CgroupsContainerizerConfig::new(
            self.slave_name.clone(),
            self.dir.join("run"),
            env!("CARGO_BIN_EXE_plateau-supervisor"),
        );
        config.cgroup_root = self.cgroup_root.clone();
        config.pids_max = self.pids_max;
        config
    }

    /// Starts a (new) containerizer.
    fn start(&mut self) {
        let events = Arc::clone(&self.events);
        let callback = Arc::new(move |task_id: String, termination: Termination| {
            let (list, changed) = &*events;
            list.lock().unwrap().push((task_id, termination));
            changed.notify_all();
        });
        self.containerizer =
            Some(CgroupsContainerizer::new(self.config(), callback).expect("containerizer starts"));
    }

    /// Starts launcher threads: `start_launch` then launches in the background.
    fn start_launchers(&mut self, threads: usize) -> Launches {
        let launches: Launches = Arc::default();
        let (sink, events) = (Arc::clone(&launches), Arc::clone(&self.events));
        let callback = Arc::new(
            move |task_id: String, result: Result<LaunchInfo, ContainerizerError>| {
                let terminated = events
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(id, _)| *id == task_id);
                let (list, changed) = &*sink;
                list.lock()
                    .unwrap()
                    .push((task_id, result.map_err(|e| e.to_string()), terminated));
                changed.notify_all();
            },
        );
        self.c()
            .start_launchers(threads, callback)
            .expect("launchers start");
        launches
    }

    /// Drops the containerizer without destroying anything, as a `kill -9` of the slave would.
    fn crash(&mut self) {
        self.containerizer = None;
    }

    fn c(&mut self) -> &mut CgroupsContainerizer {
        self.containerizer.as_mut().expect("containerizer running")
    }

    fn sandbox(&self, task_id: &str) -> PathBuf {
        self.dir.join("sandboxes").join(task_dir_name(task_id))
    }

    fn spec(&self, task_id: &str, shell_command: &str) -> TaskSpec {
        TaskSpec {
            task_id: task_id.to_string(),
            command: CommandSpec {
                shell: true,
                value: shell_command.to_string(),
                arguments: Vec::new(),
            },
            env: BTreeMap::new(),
            cpus: 0.5,
            mem_mb: 64.0,
            ports: Vec::new(),
            sandbox: self.sandbox(task_id).into(),
            hostname: "test-host".to_string(),
            user: None,
        }
    }

    fn launch(
        &mut self,
        task_id: &str,
        shell_command: &str,
    ) -> Result<LaunchInfo, ContainerizerError> {
        let spec = self.spec(task_id, shell_command);
        self.c().launch(spec)
    }

    fn cgroup_dir(&self, controller: &str, task_id: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_root)
            .join(&self.slave_name)
            .join(task_dir_name(task_id))
    }

    fn cgroup_exists(&self, task_id: &str) -> bool {
        CONTROLLERS
            .iter()
            .any(|c| self.cgroup_dir(c, task_id).exists())
    }

    /// Waits for the termination of `task_id` reported through the callback.
    fn wait_termination(&self, task_id: &str) -> Termination {
        let (list, changed) = &*self.events;
        let deadline = Instant::now() + WAIT;
        let mut events = list.lock().unwrap();
        loop {
            if let Some((_, termination)) = events.iter().find(|(id, _)| id == task_id) {
                return termination.clone();
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "no termination of {task_id} within {WAIT:?}"
            );
            events = changed.wait_timeout(events, remaining).unwrap().0;
        }
    }

    fn terminations_of(&self, task_id: &str) -> usize {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| id == task_id)
            .count()
    }
}

/// Waits until `n` launch outcomes were reported.
fn wait_launches(launches: &Launches, n: usize) -> Vec<(String, Result<LaunchInfo, String>, bool)> {
    let (list, changed) = &**launches;
    let deadline = Instant::now() + WAIT;
    let mut outcomes = list.lock().unwrap();
    while outcomes.len() < n {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "{} of {n} launches reported",
            outcomes.len()
        );
        outcomes = changed.wait_timeout(outcomes, remaining).unwrap().0;
    }
    outcomes.clone()
}

/// Polls `condition` until it holds, failing the test after [`WAIT`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the process is gone (no such pid, or a zombie).
fn is_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            state == "Z" || state == "X"
        }
    }
}

fn read_procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(mut containerizer) = self.containerizer.take() {
            containerizer.destroy_all();
        }
        // Whatever is left (a failed test, a crashed containerizer): kill every process in our
        // cgroups and every supervisor working in our directory, then remove it all.
        let base: Vec<PathBuf> = CONTROLLERS
            .iter()
            .map(|c| {
                Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(&self.cgroup_root)
                    .join(&self.slave_name)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut pids = Vec::new();
            for dir in &base {
                for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        let _ = fs::write(entry.path().join("freezer.state"), "THAWED");
                        pids.extend(read_procs(&entry.path()));
                    }
                }
            }
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: plain kill.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let marker = self.dir.to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                // SAFETY: plain kill and waitpid (ECHILD if not our child).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
        for dir in &base {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = fs::remove_dir(entry.path());
            }
            let _ = fs::remove_dir(dir);
            if let Some(root) = dir.parent() {
                let _ = fs::remove_dir(root);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn exit_code_and_output_are_reported() {
    let mut h = Harness::new("exit-code");
    let spec = h.spec("exit-3", "echo to-stdout; echo to-stderr >&2; exit 3");
    let sandbox = spec.sandbox.clone();
    let info = h.c().launch(spec).unwrap();
    assert!(info.pid > 0 && info.supervisor_pid > 0 && info.pid != info.supervisor_pid);
    let termination = h.wait_termination("exit-3");
    assert_eq!(termination.exit_code, Some(3), "{termination:?}");
    assert_eq!(termination.signal, None);
    assert!(!termination.oom_killed);
    assert!(!termination.is_success());
    assert_eq!(read_trimmed(&sandbox.join("stdout")), "to-stdout");
    assert_eq!(read_trimmed(&sandbox.join("stderr")), "to-stderr");
    assert!(!h.cgroup_exists("exit-3"), "cgroup removed after the task");
    assert!(h.c().task_ids().is_empty());

    let ok = h.spec("exit-0", "true");
    h.c().launch(ok).unwrap();
    assert!(h.wait_termination("exit-0").is_success());
    assert_eq!(h.terminations_of("exit-3"), 1, "reported exactly once");
}

#[test]
fn argv_commands_and_launch_errors() {
    let mut h = Harness::new("argv");
    let mut spec = h.spec("argv", "");
    spec.command = CommandSpec {
        shell: false,
        value: "/bin/sh".into(),
        arguments: vec![
            "my-argv0".into(),
            "-c".into(),
            "tr '\\0' ' ' < /proc/$$/cmdline > argv.txt".into(),
            "one".into(),
        ],
    };
    let sandbox = spec.sandbox.clone();
    h.c().launch(spec).unwrap();
    assert_eq!(h.wait_termination("argv").exit_code, Some(0));
    let argv = read_trimmed(&sandbox.join("argv.txt"));
    assert!(
        argv.starts_with("my-argv0 -c ") && argv.ends_with(" one"),
        "{argv}"
    );

    let mut missing = h.spec("missing-program", "");
    missing.command = CommandSpec {
        shell: false,
        value: "/nonexistent/program".into(),
        arguments: vec![],
    };
    let err = h.c().launch(missing).unwrap_err();
    assert!(matches!(err, ContainerizerError::Launch { .. }), "{err}");
    assert!(
        !h.cgroup_exists("missing-program"),
        "no cgroup left by a failed launch"
    );

    let mut bad = h.spec("bad-cpus", "true");
    bad.cpus = 0.0;
    assert!(matches!(
        h.c().launch(bad),
        Err(ContainerizerError::InvalidSpec { .. })
    ));
    assert!(matches!(
        h.c().kill("nobody", Duration::ZERO),
        Err(ContainerizerError::UnknownTask(_))
    ));
    assert!(matches!(
        h.c().usage("nobody"),
        Err(ContainerizerError::UnknownTask(_))
    ));
}

#[test]
fn environment_and_ports_are_visible_to_the_task() {
    let mut h = Harness::new("env");
    let mut spec = h.spec("env/task 1", "env > env.txt; pwd > pwd.txt");
    spec.env.insert("FOO".into(), "bar baz".into());
    spec.env.insert("PORT".into(), "overridden".into());
    spec.ports = vec![31000, 31005];
    let sandbox = spec.sandbox.clone();
    h.c().launch(spec).unwrap();
    assert_eq!(h.wait_termination("env/task 1").exit_code, Some(0));
    let env = fs::read_to_string(sandbox.join("env.txt")).unwrap();
    let vars: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    let canonical = fs::canonicalize(&sandbox).unwrap();
    assert_eq!(vars.get("FOO"), Some(&"bar baz"));
    assert_eq!(vars.get("MESOS_TASK_ID"), Some(&"env/task 1"));
    assert_eq!(
        vars.get("MESOS_SANDBOX").map(PathBuf::from),
        Some(canonical.clone())
    );
    assert_eq!(vars.get("HOST"), Some(&"test-host"));
    assert_eq!(vars.get("PORT0"), Some(&"31000"));
    assert_eq!(vars.get("PORT1"), Some(&"31005"));
    assert_eq!(vars.get("PORT"), Some(&"31000"));
    assert_eq!(vars.get("PORTS"), Some(&"31000,31005"));
    assert!(vars.contains_key("PATH"));
    assert_eq!(
        PathBuf::from(read_trimmed(&sandbox.join("pwd.txt"))),
        canonical
    );
}

#[test]
fn cgroup_limits_are_applied() {
    let mut h = Harness::with_pids_max("limits", 100);
    let mut spec = h.spec("limited", "sleep 1000");
    spec.cpus = 0.25;
    spec.mem_mb = 48.0;
    let info = h.c().launch(spec).unwrap();
    let cpu = h.cgroup_dir("cpu", "limited");
    assert_eq!(read_trimmed(&cpu.join("cpu.shares")), "256");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trimmed(&cpu.join("cpu.cfs_quota_us")), "25000");
    let memory = h.cgroup_dir("memory", "limited");
    assert_eq!(
        read_trimmed(&memory.join("memory.limit_in_bytes")),
        (48u64 << 20).to_string()
    );
    assert_eq!(
        read_trimmed(&h.cgroup_dir("pids", "limited").join("pids.max")),
        "100"
    );
    for controller in CONTROLLERS {
        let procs = read_procs(&h.cgroup_dir(controller, "limited"));
        assert!(
            procs.contains(&info.pid),
            "task in the {controller} cgroup: {procs:?}"
        );
        assert!(
            !procs.contains(&info.supervisor_pid),
            "supervisor outside the {controller} cgroup"
        );
    }
    assert_eq!(
        info.cgroup,
        format!("{}/{}/limited", h.cgroup_root, h.slave_name).into()
    );
    h.c().kill("limited", Duration::from_secs(10)).unwrap();
    let termination = h.wait_termination("limited");
    assert_eq!(termination.signal, Some(libc::SIGTERM), "{termination:?}");
    assert!(!h.cgroup_exists("limited"));
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let mut h = Harness::new("oom");
    let mut spec = h.spec("hog", "head -c 300M /dev/zero | tail; echo survived");
    spec.mem_mb = 32.0;
    let sandbox = spec.sandbox.clone();
    h.c().launch(spec).unwrap();
    let termination = h.wait_termination("hog");
    eprintln!("OOM termination: {termination:?}");
    assert!(termination.oom_killed, "{termination:?}");
    assert!(!termination.is_success());
    assert!(
        termination.message.contains("Memory limit exceeded"),
        "{}",
        termination.message
    );
    // The supervisor kills the whole task on OOM: the shell never goes on to `echo`... unless
    // it was faster than the supervisor's tick; either way the task is reported as OOM-killed.
    let _ = fs::read_to_string(sandbox.join("stdout"));
    assert!(!h.cgroup_exists("hog"));
    // This process (the slave) is unaffected and still launches tasks.
    h.launch("after-hog", "exit 0").unwrap();
    assert!(h.wait_termination("after-hog").is_success());
}

#[test]
fn kill_with_grace_kills_the_whole_process_tree() {
    let mut h = Harness::new("kill");
    // Processes that ignore SIGTERM, one in the task's process group, one in a session of its
    // own: only the cgroup finds the latter, only SIGKILL stops them.
    let command = "trap '' TERM; \
        (trap '' TERM; sleep 1000) & \
        setsid sh -c \"trap '' TERM; sleep 1000\" & \
        echo ready > ready; wait; wait; sleep 1000";
    let spec = h.spec("stubborn", command);
    let sandbox = spec.sandbox.clone();
    let info = h.c().launch(spec).unwrap();
    wait_until("task ready", || sandbox.join("ready").exists());
    let freezer = h.cgroup_dir("freezer", "stubborn");
    let mut pids = Vec::new();
    wait_until("all processes started", || {
        pids = read_procs(&freezer);
        // The shell, the subshell (or its sleep, if the subshell execs it), the other
        // session's shell (or its sleep).
        pids.len() >= 3
    });
    let started = Instant::now();
    h.c().kill("stubborn", Duration::from_millis(300)).unwrap();
    let termination = h.wait_termination("stubborn");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the grace period was granted"
    );
    assert_eq!(termination.signal, Some(libc::SIGKILL), "{termination:?}");
    assert!(
        termination.message.contains("killed on request"),
        "{}",
        termination.message
    );
    for pid in pids {
        wait_until("process killed", || is_gone(pid));
    }
    assert!(is_gone(info.pid));
    assert!(!h.cgroup_exists("stubborn"), "cgroup removed");
    assert!(!h.c().task_ids().contains(&"stubborn".to_string()));
}

#[test]
fn usage_is_read_from_the_cgroups() {
    let mut h = Harness::new("usage");
    let mut spec = h.spec("busy", "while :; do :; done");
    spec.cpus = 1.0;
    spec.mem_mb = 40.0;
    h.c().launch(spec).unwrap();
    let mut usage = h.c().usage("busy").unwrap();
    wait_until("CPU time accrues", || {
        usage = h.c().usage("busy").unwrap();
        usage.cpus_user_time_secs + usage.cpus_system_time_secs > 0.05 && usage.cpus_nr_periods > 0
    });
    assert_eq!(usage.cpus_limit, 1.0);
    assert_eq!(usage.mem_limit_bytes, 40 << 20);
    assert!(usage.mem_total_bytes > 0, "{usage:?}");
    assert!(usage.mem_total_bytes <= usage.mem_limit_bytes);
    assert!(usage.processes >= 1, "{usage:?}");
    assert!(usage.cpus_nr_periods > 0, "{usage:?}");
    h.c().kill("busy", Duration::ZERO).unwrap();
    let termination = h.wait_termination("busy");
    assert!(termination.signal.is_some(), "{termination:?}");
    assert!(matches!(
        h.c().usage("busy"),
        Err(ContainerizerError::UnknownTask(_))
    ));
}

#[test]
fn tasks_survive_a_slave_crash_and_are_recovered() {
    let mut h = Harness::new("recover");
    let long = h.launch("long", "sleep 1000").unwrap();
    let gated_spec = h.spec("gated", "while [ ! -e go ]; do sleep 0.05; done; exit 7");
    let gated_sandbox = gated_spec.sandbox.clone();
    let gated = h.c().launch(gated_spec).unwrap();
    let doomed = h.launch("doomed", "sleep 1000").unwrap();
    let checkpoint: Vec<LaunchInfo> = vec![long.clone(), gated.clone(), doomed.clone()];

    h.crash();
    // The slave is "down": tasks keep running; one exits meanwhile, one's supervisor is killed.
    assert!(!is_gone(long.pid) && !is_gone(long.supervisor_pid));
    fs::write(gated_sandbox.join("go"), b"").unwrap();
    wait_until("gated task exits while the slave is down", || {
        is_gone(gated.supervisor_pid)
    });
    // SAFETY: plain kill of our own test's supervisor.
    unsafe { libc::kill(doomed.supervisor_pid as i32, libc::SIGKILL) };
    wait_until("doomed supervisor gone", || is_gone(doomed.supervisor_pid));
    // An orphan: a cgroup of this slave with a process in it, unknown to the checkpoint.
    let mut orphan = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    for controller in CONTROLLERS {
        let dir = h.cgroup_dir(controller, "orphan");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), orphan.id().to_string()).unwrap();
    }

    h.start();
    let recovered = h.c().recover(checkpoint);
    assert_eq!(recovered.len(), 3);
    match &recovered[0] {
        RecoveredTask::Running(info) => assert_eq!(info.task_id, "long"),
        other => panic!("long should run: {other:?}"),
    }
    match &recovered[1] {
        RecoveredTask::Terminated { info, termination } => {
            assert_eq!(info.task_id, "gated");
            assert_eq!(termination.exit_code, Some(7), "{termination:?}");
        }
        other => panic!("gated should have terminated: {other:?}"),
    }
    match &recovered[2] {
        RecoveredTask::Terminated { info, termination } => {
            assert_eq!(info.task_id, "doomed");
            assert_eq!(termination.exit_code, None, "{termination:?}");
            assert!(
                termination.message.contains("supervisor"),
                "{}",
                termination.message
            );
        }
        other => panic!("doomed should be reported terminated: {other:?}"),
    }
    assert!(!h.cgroup_exists("gated") && !h.cgroup_exists("doomed"));
    wait_until("doomed task killed", || is_gone(doomed.pid));
    assert!(!h.cgroup_exists("orphan"), "orphan cgroup destroyed");
    let _ = orphan.wait();
    assert_eq!(h.c().task_ids(), vec!["long".to_string()]);

    // The recovered task is watched again: its kill is reported through the callback.
    let usage = h.c().usage("long").unwrap();
    assert!(usage.processes >= 1);
    h.c().kill("long", Duration::from_secs(5)).unwrap();
    let termination = h.wait_termination("long");
    assert_eq!(termination.signal, Some(libc::SIGTERM), "{termination:?}");
    assert!(!h.cgroup_exists("long"));
    assert_eq!(
        h.terminations_of("gated"),
        0,
        "recovered terminations are returned, not called back"
    );

    // forget() drops the run directory; recover() keeps run directories only of known tasks.
    let run_dir = h.c().run_dir_of("long");
    assert!(run_dir.join("status.json").exists());
    h.c().forget("long");
    assert!(!run_dir.exists());
}

#[test]
fn destroy_all_kills_every_task() {
    let mut h = Harness::new("destroy");
    let a = h.launch("a", "sleep 1000").unwrap();
    let b = h
        .launch("b", "trap '' TERM; sleep 1000 & wait; sleep 1000")
        .unwrap();
    assert!(matches!(
        h.launch("a", "true"),
        Err(ContainerizerError::AlreadyRunning(_))
    ));
    h.c().destroy_all();
    assert!(h.c().task_ids().is_empty());
    assert_eq!(h.terminations_of("a"), 1);
    assert_eq!(h.terminations_of("b"), 1);
    assert!(is_gone(a.pid) && is_gone(b.pid));
    assert!(!h.cgroup_exists("a") && !h.cgroup_exists("b"));
}

#[test]
fn background_launches_report_their_outcome_before_the_termination() {
    let mut h = Harness::new("async");
    let launches = h.start_launchers(3);
    let mut ids = Vec::new();
    for i in 0..9 {
        let id = format!("t{i}");
        // Every third task ends at once: its end must still be reported after its launch.
        let command = if i % 3 == 0 { "exit 3" } else { "sleep 1000" };
        let spec = h.spec(&id, command);
        assert!(matches!(h.c().start_launch(spec), LaunchStart::Pending));
        ids.push(id);
    }
    let again = h.spec("t1", "true");
    assert!(
        matches!(
            h.c().start_launch(again),
            LaunchStart::Done(Err(ContainerizerError::AlreadyRunning(_)))
        ),
        "an id under launch is taken"
    );
    let mut bad = h.spec("bad", "unused");
    bad.command = CommandSpec {
        shell: false,
        value: "/nonexistent/program".into(),
        arguments: Vec::new(),
    };
    assert!(matches!(h.c().start_launch(bad), LaunchStart::Pending));
    let mut invalid = h.spec("invalid", "true");
    invalid.cpus = -1.0;
    assert!(matches!(
        h.c().start_launch(invalid),
        LaunchStart::Done(Err(ContainerizerError::InvalidSpec { .. }))
    ));

    let outcomes = wait_launches(&launches, ids.len() + 1);
    for (id, result, terminated_before) in &outcomes {
        assert!(
            !terminated_before,
            "{id}: termination reported before the launch"
        );
        if id == "bad" {
            let error = result.as_ref().unwrap_err();
            assert!(error.contains("/nonexistent/program"), "{error}");
            assert!(!h.cgroup_exists("bad"), "a failed launch leaves no cgroup");
        } else {
            let info = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(info.pid > 0 && info.supervisor_pid > 0);
        }
    }
    for id in ["t0", "t3", "t6"] {
        assert_eq!(h.wait_termination(id).exit_code, Some(3));
    }
    assert!(h.c().launching_ids().is_empty());
    assert_eq!(h.c().task_ids().len(), 6);
    h.c().destroy_all();
    for id in &ids {
        assert_eq!(h.terminations_of(id), 1, "{id}");
        assert!(!h.cgroup_exists(id), "{id}");
    }
}

#[test]
fn destroy_all_covers_launches_in_flight() {
    let mut h = Harness::new("destroy-async");
    let launches = h.start_launchers(2);
    let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    for id in &ids {
        let spec = h.spec(id, "sleep 1000");
        assert!(matches!(h.c().start_launch(spec), LaunchStart::Pending));
    }
    h.c().destroy_all();
    // Every launch was reported, launched (then killed) or cancelled; nothing is left.
    let outcomes = wait_launches(&launches, ids.len());
    assert_eq!(outcomes.len(), ids.len(), "each launch reported once");
    for (id, result, _) in &outcomes {
        match result {
            Ok(info) => {
                assert_eq!(h.terminations_of(id), 1, "{id}");
                assert!(is_gone(info.pid), "{id}");
            }
            Err(e) => {
                assert!(e.contains("cancelled"), "{id}: {e}");
                assert_eq!(h.terminations_of(id), 0, "{id}");
            }
        }
        assert!(!h.cgroup_exists(id), "{id}");
    }
    assert!(h.c().task_ids().is_empty() && h.c().launching_ids().is_empty());
}

#[test]
fn a_spec_larger_than_a_pipe_buffer_reaches_the_supervisor() {
    let mut h = Harness::new("bigspec");
    let mut spec = h.spec("big", "test ${#BIG0} -eq 60000 && test ${#BIG4} -eq 60000");
    // The spec goes through the supervisor's stdin: far more than a pipe holds at once (each
    // variable within the kernel's limit for one string).
    for i in 0..5 {
        spec.env.insert(format!("BIG{i}"), "x".repeat(60_000));
    }
    h.c().launch(spec).expect("launch");
    let termination = h.wait_termination("big");
    assert_eq!(termination.exit_code, Some(0), "{termination:?}");
}

/// Whether the tests run as root (switching users needs it).
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn tasks_run_as_their_user_and_cannot_reach_the_slave_or_other_users() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let mut h = Harness::new("users");
    let nobody = plateau_slave::user::TaskUser::lookup("nobody").unwrap();
    let daemon = plateau_slave::user::TaskUser::lookup("daemon").unwrap();
    assert_ne!(nobody.uid, daemon.uid);
    // A root-only file (removed with the harness directory).
    let secret = h.dir.join("secret");
    fs::write(&secret, "root-only-content").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    // Another user's task, with a file in its sandbox.
    let mut other = h.spec(
        "other",
        "echo private-content > private; echo up > ready; exec sleep 1000",
    );
    other.user = Some("daemon".into());
    let other_sandbox = other.sandbox.clone();
    let other_info = h.c().launch(other).unwrap();
    wait_until("the other task is up", || {
        other_sandbox.join("ready").exists()
    });

    // The slave is this test process: it hosts the containerizer.
    let slave_pid = std::process::id();
    let command = format!(
        "id -u; id -g; echo \"env: $HOME $USER $LOGNAME\"; \
         echo \"secret: $(cat {secret} 2>&1)\"; \
         echo \"mem: $(head -c 1 /proc/{slave_pid}/mem 2>&1 >/dev/null)\"; \
         echo \"signal slave: $(kill -0 {slave_pid} 2>&1)\"; \
         echo \"signal other: $(kill -0 {other_pid} 2>&1)\"; \
         echo \"other sandbox: $(cat {other_sandbox}/private 2>&1)\"",
        secret = secret.display(),
        other_pid = other_info.pid,
        other_sandbox = other_sandbox.display(),
    );
    let mut spec = h.spec("me", &command);
    spec.user = Some("nobody".into());
    let sandbox = spec.sandbox.clone();
    h.c().launch(spec).unwrap();
    let termination = h.wait_termination("me");
    assert!(termination.is_success(), "{termination:?}");
    let output = fs::read_to_string(sandbox.join("stdout")).unwrap();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string(), "{output}");
    assert_eq!(lines[1], nobody.gid.to_string(), "{output}");
    assert_eq!(
        lines[2],
        format!("env: {} nobody nobody", nobody.home.display()),
        "{output}"
    );
    let line = |prefix: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {output}"))
            .to_string()
    };
    assert!(line("secret:").contains("Permission denied"), "{output}");
    assert!(line("mem:").contains("Permission denied"), "{output}");
    assert!(
        line("signal slave:").contains("Operation not permitted"),
        "{output}"
    );
    assert!(
        line("signal other:").contains("Operation not permitted"),
        "{output}"
    );
    assert!(
        line("other sandbox:").contains("Permission denied"),
        "{output}"
    );
    assert!(!output.contains("root-only-content") && !output.contains("private-content"));

    // The sandbox and what the supervisor wrote in it are the task user's; others keep out.
    let meta = fs::metadata(&sandbox).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (nobody.uid, nobody.gid));
    assert_eq!(meta.mode() & 0o777, 0o750);
    for name in ["stdout", "stderr"] {
        assert_eq!(fs::metadata(sandbox.join(name)).unwrap().uid(), nobody.uid);
    }
    assert_eq!(fs::metadata(&other_sandbox).unwrap().uid(), daemon.uid);

    // The supervisor (root) still kills a task of another user, and removes its cgroup.
    h.c().kill("other", Duration::from_millis(200)).unwrap();
    let termination = h.wait_termination("other");
    assert!(termination.signal.is_some(), "{termination:?}");
    assert!(is_gone(other_info.pid));
    assert!(!h.cgroup_exists("other"), "cgroup removed");
}

#[test]
fn an_unknown_user_fails_the_launch_clearly() {
    let mut h = Harness::new("no-user");
    let mut spec = h.spec("lost", "true");
    spec.user = Some("plateau-no-such-user".into());
    let error = h.c().launch(spec).unwrap_err();
    assert!(
        matches!(error, ContainerizerError::User { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "task 'lost': user 'plateau-no-such-user' does not exist on this slave"
    );
    assert!(!h.cgroup_exists("lost"));
    assert!(h.c().task_ids().is_empty());
}
