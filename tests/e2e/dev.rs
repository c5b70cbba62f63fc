//! `plateau dev` as the README's quick start uses it: one command runs a master, three slaves
//! on their own loopback addresses, Marathon and Chronos; an app deployed with one HTTP request
//! runs as real processes; Ctrl-C (SIGINT) or SIGTERM (systemd, containers, CI) kills the tasks
//! and removes their cgroups.
//!
//! It uses the default ports (5050, 5051, 8080, 4400, 8000, 9090), as the README does; no other
//! test does, and the two tests here take turns ([`DEFAULT_PORTS`]).

use std::path::Path;
use std::time::Duration;

use super::support::{eventually, get_json, Dev};

/// Held by a test that runs `plateau dev` on the default ports.
static DEFAULT_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn task_cgroups(work: &Path) -> usize {
    (1..=3)
        .map(|i| {
            let name = plateau_slave::cgroup_slave_name(&work.join(format!("slave-{i}")));
            std::fs::read_dir(Path::new("/sys/fs/cgroup/pids/plateau").join(name))
                .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
                .unwrap_or(0)
        })
        .sum()
}

/// The pids in the task cgroups of `plateau dev`'s slaves.
fn task_pids(work: &Path) -> Vec<i32> {
    (1..=3)
        .flat_map(|i| super::support::task_cgroups(&work.join(format!("slave-{i}"))))
        .flat_map(|(_, pids)| pids)
        .collect()
}

#[test]
fn plateau_dev_runs_a_cluster_that_deploys_an_app_and_cleans_up_on_ctrl_c() {
    dev_deploys_an_app_and_cleans_up_on(libc::SIGINT, "ctrl-c");
}

#[test]
fn plateau_dev_stops_on_sigterm_killing_its_tasks() {
    dev_deploys_an_app_and_cleans_up_on(libc::SIGTERM, "sigterm");
}

/// `plateau dev` deploys an app of 3 tasks; `signal` stops it, its tasks and their cgroups.
fn dev_deploys_an_app_and_cleans_up_on(signal: i32, name: &str) {
    let _ports = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let work = std::env::temp_dir().join(format!("plateau-e2e-dev-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("plateau-e2e-dev-{name}.log")))
            .unwrap();
    let mut dev = Dev::start(&["--work-dir".as_ref(), work.as_os_str()], log);
    actix_rt::System::new().block_on(async {
        eventually(
            Duration::from_secs(90),
            "3 slaves and Marathon registered",
            || async {
                get_json("http://127.0.0.1:5050/master/state")
                    .await
                    .is_some_and(|s| {
                        s["activated_slaves"].as_f64() == Some(3.0)
                            && s["frameworks"].as_array().is_some_and(|f| f.len() >= 2)
                    })
            },
        )
        .await;
        let app = serde_json::json!({
            "id": "/hello", "cmd": "sleep 600", "instances": 3, "cpus": 0.05, "mem": 16,
            "constraints": [["hostname", "UNIQUE"]]
        });
        let created = reqwest::Client::new()
            .post("http://127.0.0.1:8080/v2/apps")
            .json(&app)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status().as_u16(), 201);
        eventually(
            Duration::from_secs(90),
            "3 tasks running on 3 hosts",
            || async {
                get_json("http://127.0.0.1:8080/v2/apps/hello/tasks")
                    .await
                    .is_some_and(|t| {
                        let tasks = t["tasks"].as_array().cloned().unwrap_or_default();
                        let hosts: std::collections::BTreeSet<_> =
                            tasks.iter().map(|t| t["host"].to_string()).collect();
                        tasks
                            .iter()
                            .filter(|t| t["state"] == "TASK_RUNNING")
                            .count()
                            == 3
                            && hosts.len() == 3
                    })
            },
        )
        .await;
        let jobs = get_json("http://127.0.0.1:4400/scheduler/jobs").await;
        assert!(jobs.is_some_and(|j| j.is_array()), "Chronos answers");
    });
    assert_eq!(task_cgroups(&work), 3, "one cgroup per task");
    let pids = task_pids(&work);
    assert!(pids.len() >= 3, "the tasks' processes: {pids:?}");
    // The signal: the tasks are killed and their cgroups removed.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(dev.0.id() as i32, signal) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "plateau dev did not stop on {name}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "plateau dev on {name}: {status:?}");
    for pid in pids {
        assert!(
            !super::signals::alive(pid),
            "task process {pid} outlived plateau dev"
        );
    }
    assert_eq!(task_cgroups(&work), 0, "{name} removed the tasks' cgroups");
    for i in 1..=3 {
        let name = plateau_slave::cgroup_slave_name(&work.join(format!("slave-{i}")));
        for controller in ["pids", "memory", "cpu", "freezer"] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join("plateau")
                .join(&name);
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
