//! Stopping and logging as a service manager sees them: a master, a slave, Marathon, Chronos
//! and a balancer, as separate processes with `--log-format json` and the default log levels
//! (no `RUST_LOG`). The master's log is JSON lines naming the slave's and the frameworks'
//! registrations with their fields; a slave stopped with SIGTERM exits 0 and leaves its task
//! running, and the slave started again recovers it; every daemon exits 0 on SIGTERM.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::support::{await_some, eventually, free_port, get_json, task_cgroups, Cluster};
use super::PLATEAU;

/// Generous: a slow shared 2-core machine.
const SLOW: Duration = Duration::from_secs(90);

/// Whether process `pid` is alive (a zombie is not).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Start `plateau ARGS` as `name` with JSON logs at the default levels.
fn spawn_json(cluster: &mut Cluster, name: &str, args: &[&str]) {
    let mut command = Command::new(PLATEAU);
    command
        .arg("--log-format")
        .arg("json")
        .args(args)
        .env_remove("RUST_LOG");
    cluster.start(name, command);
}

/// SIGTERM to child `name`; its exit status, waiting at most `limit`.
fn terminate(cluster: &mut Cluster, name: &str, limit: Duration) -> ExitStatus {
    cluster.signal(name, libc::SIGTERM);
    let child = cluster.children.get_mut(name).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON events of a log; panics on a line that is not JSON.
fn events(log: &str, name: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{name}: a log line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The first event of `log` with `message`.
fn event(log: &str, name: &str, message: &str) -> Option<serde_json::Value> {
    events(log, name)
        .into_iter()
        .find(|e| e["message"] == message)
}

#[test]
fn daemons_log_json_at_info_and_exit_0_on_sigterm_a_slave_leaving_its_task_to_recovery() {
    let mut cluster = Cluster::new("signals");
    let tls = cluster.tls();
    let tls = tls.to_str().unwrap().to_string();
    let master = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let master_work = cluster.dir.join("master");
    let master_args = [
        "master",
        "--listen",
        &master,
        "--work-dir",
        master_work.to_str().unwrap(),
        "--tls-dir",
        &tls,
    ];
    spawn_json(&mut cluster, "master", &master_args);
    let slave = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let slave_work = cluster.dir.join("slave");
    cluster.slave_dirs.push(slave_work.clone());
    let slave_args = [
        "slave",
        "--master",
        &master,
        "--listen",
        &slave,
        "--work-dir",
        slave_work.to_str().unwrap(),
        "--tls-dir",
        &tls,
        "--resources",
        "cpus:2;mem:1024;disk:1024;ports:[31000-31100]",
        "--attributes",
        "rack:r1",
    ];
    spawn_json(&mut cluster, "slave", &slave_args);
    let marathon = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let marathon_work = cluster.dir.join("marathon");
    spawn_json(
        &mut cluster,
        "marathon",
        &[
            "marathon",
            "--master",
            &master,
            "--listen",
            &marathon,
            "--work-dir",
            marathon_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
        ],
    );
    let chronos = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let chronos_work = cluster.dir.join("chronos");
    spawn_json(
        &mut cluster,
        "chronos",
        &[
            "chronos",
            "--master",
            &master,
            "--listen",
            &chronos,
            "--work-dir",
            chronos_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
        ],
    );
    let stats = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    spawn_json(
        &mut cluster,
        "balancer",
        &[
            "balancer",
            "--marathon",
            &marathon,
            "--listen-ip",
            "127.0.0.1",
            "--stats",
            &stats,
            "--tls-dir",
            &tls,
        ],
    );

    let state_url = format!("http://{master}/master/state");
    let app_id = actix_rt::System::new().block_on(async {
        eventually(SLOW, "the slave and both frameworks registered", || async {
            get_json(&state_url).await.is_some_and(|s| {
                s["activated_slaves"].as_f64() == Some(1.0)
                    && s["frameworks"].as_array().is_some_and(|f| f.len() == 2)
            })
        })
        .await;
        eventually(SLOW, "the balancer answers", || async {
            get_json(&format!("http://{stats}/stats")).await.is_some()
        })
        .await;
        eventually(SLOW, "Chronos answers", || async {
            get_json(&format!("http://{chronos}/scheduler/jobs"))
                .await
                .is_some()
        })
        .await;
        let app = serde_json::json!({"id": "/sleeper", "cmd": "sleep 600", "cpus": 0.1, "mem": 16});
        let created = reqwest::Client::new()
            .post(format!("http://{marathon}/v2/apps"))
            .json(&app)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        await_some(SLOW, "the app's task running", || async {
            let tasks = get_json(&format!("http://{marathon}/v2/apps/sleeper/tasks")).await?;
            let task = tasks["tasks"].as_array()?.first()?.clone();
            (task["state"] == "TASK_RUNNING").then(|| task["id"].as_str().unwrap().to_string())
        })
        .await
    });

    // The master's log: JSON lines, the registrations at INFO with their fields.
    let log = cluster.log("master");
    let registered = event(&log, "master", "slave registered")
        .unwrap_or_else(|| panic!("no `slave registered` event in the master's log:\n{log}"));
    assert_eq!(registered["level"], "INFO");
    assert!(registered["target"]
        .as_str()
        .is_some_and(|t| t.starts_with("plateau_master")));
    assert!(registered["slave_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(registered["hostname"], "127.0.0.1");
    assert_eq!(registered["attributes"], "rack:r1");
    assert!(registered["timestamp"].is_string());
    let framework = event(&log, "master", "framework registered")
        .unwrap_or_else(|| panic!("no `framework registered` event:\n{log}"));
    assert!(framework["framework_id"].is_string());
    assert!(["marathon", "chronos"].contains(&framework["name"].as_str().unwrap_or("")));
    // The slave's and Marathon's too.
    let slave_log = cluster.log("slave");
    let launched = event(&slave_log, "slave", "task launched")
        .unwrap_or_else(|| panic!("no `task launched` event in the slave's log:\n{slave_log}"));
    assert_eq!(launched["task_id"], app_id.as_str());
    let marathon_log = cluster.log("marathon");
    assert!(
        event(&marathon_log, "marathon", "deployment started").is_some(),
        "{marathon_log}"
    );

    // SIGTERM to the slave: it exits 0, its task runs on; started again, it recovers the task.
    let pids: Vec<i32> = task_cgroups(&slave_work).into_values().flatten().collect();
    assert!(!pids.is_empty(), "the task's processes are in its cgroup");
    let status = terminate(&mut cluster, "slave", SLOW);
    assert!(status.success(), "slave on SIGTERM: {status:?}");
    for pid in &pids {
        assert!(alive(*pid), "task process {pid} died with the slave");
    }
    spawn_json(&mut cluster, "slave", &slave_args);
    let slave_log_path = cluster.dir.join("slave.log");
    actix_rt::System::new().block_on(async {
        eventually(SLOW, "the slave started again re-registered", || async {
            let log = std::fs::read_to_string(&slave_log_path).unwrap_or_default();
            // Lines still being written are not JSON yet: only whole lines count.
            log.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|e| e["message"] == "re-registered with the master")
            })
        })
        .await;
        eventually(SLOW, "the slave back with its task RUNNING", || async {
            get_json(&state_url).await.is_some_and(|s| {
                s["activated_slaves"].as_f64() == Some(1.0)
                    && s["frameworks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
                        .any(|t| t["id"] == app_id.as_str() && t["state"] == "TASK_RUNNING")
            })
        })
        .await;
    });
    let slave_log = cluster.log("slave");
    assert!(
        event(&slave_log, "slave", "recovered from the checkpoint")
            .is_some_and(|e| e["recovered"].as_u64() == Some(1)),
        "the slave recovered its task:\n{slave_log}"
    );
    for pid in &pids {
        assert!(alive(*pid), "task process {pid} survived the recovery");
    }
    assert!(
        event(&cluster.log("master"), "master", "slave re-registered").is_some(),
        "the master logged the re-registration"
    );

    // Every daemon exits 0 on SIGTERM, promptly.
    for name in ["balancer", "chronos", "marathon", "slave", "master"] {
        let status = terminate(&mut cluster, name, Duration::from_secs(30));
        assert!(status.success(), "{name} on SIGTERM: {status:?}");
    }
}
