//! The operator CLI (`plateau context|cluster|agent|app|task|job|...`) against real `plateau dev`
//! clusters, each on a loopback address of its own (`plateau dev --ip`), with the contexts file
//! in a temporary XDG_CONFIG_HOME: tables, `--json`, contexts over two clusters at once,
//! `task logs -f` following a running task, waits with progress, exit codes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::PLATEAU;

/// A `plateau dev --ip IP` cluster, stopped (SIGINT, then SIGKILL) and cleaned up when dropped.
struct Dev {
    child: Child,
    work: PathBuf,
    slaves: usize,
}

impl Dev {
    fn start(test: &str, ip: &str, slaves: usize) -> Dev {
        let work =
            std::env::temp_dir().join(format!("plateau-e2e-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let log = std::fs::File::create(work.with_extension("log")).unwrap();
        let child = Command::new(PLATEAU)
            .args([
                "dev",
                "--ip",
                ip,
                "--slaves",
                &slaves.to_string(),
                "--work-dir",
            ])
            .arg(&work)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Dev {
            child,
            work,
            slaves,
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for i in 1..=self.slaves {
            let slave = self.work.join(format!("slave-{i}"));
            plateau_slave::destroy_leftover_tasks(&slave);
            plateau_slave::remove_slave_cgroups(&slave);
        }
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = std::fs::remove_file(self.work.with_extension("log"));
    }
}

/// A temporary directory (the XDG config home, definition files), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("plateau-e2e-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `plateau ARGS` with its contexts under `config`.
fn command(config: &Path, args: &[&str]) -> Command {
    command_in(None, config, args)
}

/// [`command`], run inside network namespace `netns` if given (`nsenter --net`).
fn command_in(netns: Option<&str>, config: &Path, args: &[&str]) -> Command {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/var/run/netns/{ns}")).arg(PLATEAU);
            c
        }
        None => Command::new(PLATEAU),
    };
    command
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
        .env_remove("PLATEAU_CONTEXT")
        .env_remove("PLATEAU_CONTEXTS")
        .stdin(Stdio::null());
    command
}

/// What a finished CLI run gave.
pub(super) struct Run {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Run {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    pub(super) fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Run `plateau ARGS` with its contexts under `config`.
pub(super) fn cli(config: &Path, args: &[&str]) -> Run {
    cli_in(None, config, args)
}

/// [`cli`] inside network namespace `netns`, if given.
pub(super) fn cli_in(netns: Option<&str>, config: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command_in(netns, config, args).output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Poll `cond` every 300 ms until it holds; panic naming `what` after `limit`.
fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Wait until the context's cluster has `agents` active agents and Marathon and Chronos.
fn wait_ready(config: &Path, context: &str, agents: u64) {
    eventually(
        Duration::from_secs(120),
        &format!("context {context}: {agents} agents, Marathon and Chronos"),
        || {
            let run = cli(
                config,
                &["cluster", "status", "--json", "--context", context],
            );
            if run.code != 0 {
                return false;
            }
            let rows = run.json();
            let frameworks = rows[0]["frameworks"].to_string();
            rows[0]["agents_active"] == agents
                && frameworks.contains("marathon")
                && frameworks.contains("chronos")
        },
    );
}

#[test]
fn the_cli_drives_a_dev_cluster_with_tables_json_waits_logs_jobs_and_exit_codes() {
    let dev = Dev::start("one", "127.0.71.1", 2);
    let config = TempDir::new("one-config");
    let config = config.0.as_path();

    // Contexts: the first added is in use; another can be added and chosen.
    cli(
        config,
        &["context", "add", "one", "--master", "127.0.71.1:5050"],
    )
    .ok();
    // A port nothing listens on: an unreachable cluster.
    cli(
        config,
        &["context", "add", "down", "--master", "127.0.71.250:1"],
    )
    .ok();
    let list = cli(config, &["context", "list"]).ok();
    let one = list.stdout.lines().find(|l| l.contains("one")).unwrap();
    assert!(one.starts_with('*'), "{}", list.stdout);
    assert!(one.contains("http://127.0.71.1:8080"), "{}", list.stdout);
    cli(config, &["context", "use", "down"]).ok();
    let list = cli(config, &["context", "list", "--json"]).ok().json();
    assert_eq!(list[0]["name"], "down");
    assert_eq!(list[0]["current"], "*");
    cli(config, &["context", "use", "one"]).ok();
    assert!(
        std::fs::read_to_string(config.join("plateau/contexts.toml"))
            .unwrap()
            .contains("current = \"one\"")
    );
    assert_eq!(cli(config, &["context", "use", "nope"]).code, 5);

    // Unreachable: exit 3, saying what failed and how to look.
    let unreachable = cli(config, &["cluster", "status", "--context", "down"]);
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(
        unreachable.stderr.contains("cannot reach"),
        "{}",
        unreachable.stderr
    );
    assert!(
        unreachable.stderr.contains("127.0.71.250:1"),
        "{}",
        unreachable.stderr
    );

    wait_ready(config, "one", 2);
    let status = cli(config, &["cluster", "status"]).ok();
    let mut lines = status.stdout.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("LEADER") && header.contains("AGENTS"),
        "{}",
        status.stdout
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("127.0.71.1:5050"), "{}", status.stdout);
    assert!(
        row.contains("marathon") && row.contains("chronos"),
        "{}",
        status.stdout
    );
    let agents = cli(config, &["agent", "list", "-o", "wide"]).ok();
    assert!(agents.stdout.contains("127.0.71.2") && agents.stdout.contains("127.0.71.3"));
    assert!(agents.stdout.lines().next().unwrap().contains("ATTRIBUTES"));

    // An app that prints a line every 0.2 s, deployed from a file: the wait shows the count.
    let files = TempDir::new("one-files");
    let app = files.0.join("ticker.json");
    std::fs::write(
        &app,
        r#"{"id": "/ticker", "cmd": "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done",
            "instances": 1, "cpus": 0.05, "mem": 16}"#,
    )
    .unwrap();
    let deployed = cli(config, &["app", "deploy", "-f", app.to_str().unwrap()]).ok();
    assert!(
        deployed.stderr.contains("1/1 running"),
        "{}",
        deployed.stderr
    );
    assert!(
        deployed.stderr.contains("deployed /ticker"),
        "{}",
        deployed.stderr
    );
    let apps = cli(config, &["app", "list"]).ok();
    let line = apps
        .stdout
        .lines()
        .find(|l| l.starts_with("/ticker"))
        .unwrap();
    assert!(line.contains("1/1"), "{}", apps.stdout);
    let apps = cli(config, &["app", "list", "--json"]).ok().json();
    assert_eq!(apps[0]["id"], "/ticker");
    assert_eq!(apps[0]["running"], 1);

    // The task, and its stdout followed while it runs.
    let tasks = cli(config, &["task", "list", "--app", "/ticker", "--json"])
        .ok()
        .json();
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["state"] == "TASK_RUNNING")
        .unwrap_or_else(|| panic!("no running task: {tasks}"));
    let task_id = task["id"].as_str().unwrap().to_string();
    assert!(task_id.starts_with("ticker."), "{task_id}");
    let table = cli(config, &["task", "list"]).ok();
    assert!(table.stdout.contains(&task_id), "{}", table.stdout);
    follow_logs(config, &task_id);

    // Scale with progress, then errors for an unknown app.
    let scaled = cli(config, &["app", "scale", "ticker", "2"]).ok();
    assert!(scaled.stderr.contains("2/2 running"), "{}", scaled.stderr);
    // Live usage: one sample of every agent and of both running tasks, from the slaves'
    // statistics.
    let top = cli(config, &["top", "--once", "--json"]).ok().json();
    assert_eq!(top["agents"].as_array().map(Vec::len), Some(2), "{top}");
    let sampled: Vec<&str> = top["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["task"].as_str())
        .collect();
    assert!(sampled.contains(&task_id.as_str()), "{top}");
    assert_eq!(
        sampled.iter().filter(|t| t.starts_with("ticker.")).count(),
        2,
        "{top}"
    );
    // Nothing is deploying now; the app has its versions.
    let deployments = cli(config, &["deployment", "list", "--json"]).ok().json();
    assert_eq!(deployments, Value::Array(vec![]), "{deployments}");
    let versions = cli(config, &["app", "versions", "ticker", "--json"])
        .ok()
        .json();
    assert!(!versions.as_array().unwrap().is_empty(), "{versions}");
    // Kill the first task and scale down with it: one instance remains, not the killed one.
    cli(config, &["task", "kill", &task_id, "--scale"]).ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let apps = cli(config, &["app", "list", "--json"]).ok().json();
        let tasks = cli(config, &["task", "list", "--app", "/ticker", "--json"])
            .ok()
            .json();
        let running: Vec<&str> = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["id"].as_str())
            .collect();
        if apps[0]["instances"] == 1 && running.len() == 1 && running[0] != task_id {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after task kill --scale: {apps} {tasks}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let unknown = cli(config, &["app", "show", "/nosuch"]);
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no app '/nosuch'"),
        "{}",
        unknown.stderr
    );
    let unknown = cli(config, &["app", "scale", "nosuch", "2"]);
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    let bad = cli(config, &["app", "deploy", "-f", "/nonexistent/web.service"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    // A systemd unit that cannot be expressed is refused, naming the directive.
    let unit = files.0.join("once.service");
    std::fs::write(&unit, "[Service]\nExecStart=/bin/true\nRestart=no\n").unwrap();
    let refused = cli(config, &["app", "deploy", "-f", unit.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("Restart"), "{}", refused.stderr);
    // One that can: deployed as an app, what has no meaning in a cluster named on the way.
    let unit = files.0.join("sleeper.service");
    std::fs::write(
        &unit,
        "[Unit]\nDescription=Sleeper\nAfter=network.target\n\n[Service]\n\
         ExecStart=/bin/sleep 1000\nMemoryMax=16M\nCPUQuota=5%\n",
    )
    .unwrap();
    let deployed = cli(config, &["app", "deploy", "-f", unit.to_str().unwrap()]).ok();
    assert!(
        deployed.stderr.contains("deployed /sleeper") && deployed.stderr.contains("After="),
        "{}",
        deployed.stderr
    );
    let sleeper = cli(config, &["app", "show", "sleeper", "--json"])
        .ok()
        .json();
    assert_eq!(sleeper["mem"], 16.0, "{sleeper}");
    assert_eq!(sleeper["cpus"], 0.05, "{sleeper}");
    cli(config, &["app", "rm", "sleeper"]).ok();

    // A Chronos job: added from a file, run now (waiting for its result), its history.
    let job = files.0.join("hello.json");
    std::fs::write(
        &job,
        r#"{"name": "hello-job", "command": "echo hello", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
            "cpus": 0.05, "mem": 16, "owner": "ops@example.com"}"#,
    )
    .unwrap();
    cli(config, &["job", "add", "-f", job.to_str().unwrap()]).ok();
    let jobs = cli(config, &["job", "list"]).ok();
    let line = jobs
        .stdout
        .lines()
        .find(|l| l.starts_with("hello-job"))
        .unwrap();
    assert!(line.contains("fresh"), "{}", jobs.stdout);
    let ran = cli(config, &["job", "run", "hello-job", "--timeout", "3m"]).ok();
    assert!(ran.stderr.contains("ran: success"), "{}", ran.stderr);
    let history = cli(config, &["job", "history", "hello-job", "--json"])
        .ok()
        .json();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["status"] == "Success"),
        "{history}"
    );
    let unknown = cli(config, &["job", "show", "nosuch"]);
    assert_eq!(unknown.code, 5, "{}", unknown.stderr);
    cli(config, &["job", "rm", "hello-job"]).ok();

    // Remove the app: the wait ends when it is gone.
    let removed = cli(config, &["app", "rm", "ticker"]).ok();
    assert!(
        removed.stderr.contains("removed /ticker"),
        "{}",
        removed.stderr
    );
    assert_eq!(
        cli(config, &["app", "list", "--json"]).ok().json(),
        Value::Array(vec![])
    );

    let completions = cli(config, &["completions", "bash"]).ok();
    assert!(completions.stdout.contains("plateau"), "completion script");
    drop(dev);
}

/// `task logs -f`: lines keep coming while the task runs (later lines than the first ones
/// seen, read as the task writes them).
fn follow_logs(config: &Path, task_id: &str) {
    let mut child = command(config, &["task", "logs", "-f", task_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let child = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let number = |line: &str| {
        line.strip_prefix("tick-")
            .and_then(|n| n.parse::<u64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a first line of the task's stdout");
        if let Some(n) = number(&line) {
            break n;
        }
    };
    // Ten lines after the first one seen: 2 s of the task's life, read as it went.
    let mut last = first;
    while last < first + 10 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("following stopped at tick-{last} (first tick-{first})"));
        if let Some(n) = number(&line) {
            assert_eq!(n, last + 1, "lines in order, none lost");
            last = n;
        }
    }
    drop(child);
}

#[test]
fn all_contexts_shows_two_dev_clusters_in_one_table_with_a_cluster_column() {
    let east = Dev::start("east", "127.0.72.1", 1);
    let west = Dev::start("west", "127.0.73.1", 1);
    let config = TempDir::new("two-config");
    let config = config.0.as_path();
    cli(
        config,
        &["context", "add", "east", "--master", "127.0.72.1:5050"],
    )
    .ok();
    cli(
        config,
        &["context", "add", "west", "--master", "127.0.73.1:5050"],
    )
    .ok();
    wait_ready(config, "east", 1);
    wait_ready(config, "west", 1);

    let agents = cli(config, &["agent", "list", "--all-contexts"]).ok();
    let mut lines = agents.stdout.lines();
    assert!(
        lines.next().unwrap().starts_with("CLUSTER"),
        "{}",
        agents.stdout
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{}", agents.stdout);
    assert!(
        rows[0].starts_with("east") && rows[0].contains("127.0.72.2"),
        "{}",
        agents.stdout
    );
    assert!(
        rows[1].starts_with("west") && rows[1].contains("127.0.73.2"),
        "{}",
        agents.stdout
    );

    let status = cli(config, &["cluster", "status", "--all-contexts", "--json"])
        .ok()
        .json();
    let clusters: Vec<(&str, &str)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["cluster"].as_str().unwrap(),
                r["leader"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [("east", "127.0.72.1:5050"), ("west", "127.0.73.1:5050")]
    );

    // One cluster gone: the other is still listed, and the exit code says one failed.
    drop(west);
    let partial = cli(config, &["app", "list", "--all-contexts"]);
    assert_eq!(partial.code, 3, "{}", partial.stderr);
    assert!(partial.stdout.starts_with("CLUSTER"), "{}", partial.stdout);
    assert!(
        partial.stderr.contains("context 'west'"),
        "{}",
        partial.stderr
    );
    drop(east);
}

#[test]
fn agent_drain_shows_the_tasks_left_then_marks_the_agent_down_and_up_brings_it_back() {
    // Three agents: the drained one's instance has somewhere to go under UNIQUE hostname.
    let _dev = Dev::start("drain", "127.0.74.1", 3);
    let config = TempDir::new("drain-config");
    let config = config.0.as_path();
    cli(
        config,
        &["context", "add", "drain", "--master", "127.0.74.1:5050"],
    )
    .ok();
    wait_ready(config, "drain", 3);
    let files = TempDir::new("drain-files");
    let app = files.0.join("sleeper.json");
    std::fs::write(
        &app,
        r#"{"id": "/sleeper", "cmd": "sleep 600", "instances": 2, "cpus": 0.05, "mem": 16,
            "constraints": [["hostname", "UNIQUE"]]}"#,
    )
    .unwrap();
    cli(config, &["app", "deploy", "-f", app.to_str().unwrap()]).ok();
    let running_hosts = || -> Vec<String> {
        let tasks = cli(config, &["task", "list", "--app", "sleeper", "--json"])
            .ok()
            .json();
        tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["host"].as_str().map(str::to_string))
            .collect()
    };
    // The host of an instance is drained.
    let host = running_hosts()[0].clone();
    let drained = cli(config, &["agent", "drain", &host, "--deadline", "2m"]).ok();
    assert!(
        drained.stderr.contains(&format!("1 tasks left on {host}"))
            || drained.stderr.contains(&format!("1 task left on {host}")),
        "{}",
        drained.stderr
    );
    assert!(
        drained.stderr.contains(&format!("tasks left on {host}")),
        "{}",
        drained.stderr
    );
    assert!(
        drained
            .stderr
            .contains("drained: no task left; marked down"),
        "the instance moved before the deadline: {}",
        drained.stderr
    );
    let agents = cli(config, &["agent", "list", "--json"]).ok().json();
    let agent = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["hostname"] == host.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert!(agent.is_null() || agent["state"] == "down", "{agents}");
    // The app kept its two instances, elsewhere.
    let hosts = running_hosts();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(!hosts.contains(&host), "{hosts:?}");
    cli(config, &["agent", "up", &host]).ok();
}
