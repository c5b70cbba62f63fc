//! A real cluster of separate processes — `plateau master` and two `plateau slave`s on
//! 127.0.0.x — with this test playing the framework over QUIC + mTLS. Tasks are real
//! processes in real cgroups (the test runs as root, as CI does).
//!
//! One scenario, in order: tasks run and are RUNNING in `/master/state`; a memory hog is
//! OOM-killed and reported with the memory reason; a slave killed with kill -9 and restarted
//! keeps its task running (same pid) and RUNNING; a SIGSTOPped slave's task goes UNREACHABLE
//! within the default agent timeout (5 s; the test allows 15 s on a slow machine).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::{Node, NodeConfig, ProcessRef, Upid};
use plateau_sdk::*;

use super::support::{eventually, free_port, get_json, task_pids, Cluster};

/// The test's framework: launches what it is asked to on the first offers that fit, records
/// every status.
#[derive(Default)]
struct Recorder {
    wanted: Vec<(TaskId, Resources, CommandInfo, Option<String>)>,
    statuses: Arc<Mutex<Vec<TaskStatus>>>,
}

impl Scheduler for Recorder {
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        for offer in offers {
            let mut left = offer.resources.clone();
            let mut tasks = Vec::new();
            self.wanted.retain(|(id, resources, command, host)| {
                let host_ok = host.as_ref().is_none_or(|h| *h == offer.hostname);
                if host_ok && left.contains(resources) {
                    left = left.checked_sub(resources).unwrap();
                    let slave = offer.slave_id.clone();
                    tasks.push(TaskInfo::new(
                        id.clone(),
                        slave,
                        resources.clone(),
                        command.clone(),
                    ));
                    false
                } else {
                    true
                }
            });
            driver.launch_tasks(
                std::slice::from_ref(&offer.id),
                tasks,
                Filters {
                    refuse_seconds: 0.1,
                },
            );
        }
    }

    fn status_update(&mut self, _driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        self.statuses.lock().unwrap().push(status.clone());
    }
}

fn task_state(state: &serde_json::Value, task: &str) -> Option<String> {
    let frameworks = state["frameworks"].as_array()?;
    frameworks
        .iter()
        .flat_map(|f| f["tasks"].as_array().cloned().unwrap_or_default())
        .find(|t| t["id"] == task)
        .and_then(|t| t["state"].as_str().map(str::to_string))
}

fn has_status(
    statuses: &Arc<Mutex<Vec<TaskStatus>>>,
    task: &str,
    state: TaskState,
) -> Option<TaskStatus> {
    statuses
        .lock()
        .unwrap()
        .iter()
        .find(|s| s.task_id.as_str() == task && s.state == state)
        .cloned()
}

#[test]
fn separate_processes_run_real_tasks_survive_slave_restart_and_detect_a_frozen_slave() {
    let mut cluster = Cluster::new("cluster");
    let dir = cluster.dir.clone();
    let tls = cluster.tls();
    let master_port = free_port("127.0.0.1");
    let master = format!("127.0.0.1:{master_port}");
    let tls_s = tls.to_str().unwrap().to_string();
    let m_work = dir.join("master");
    cluster.spawn(
        "master",
        &[
            "master",
            "--listen",
            &master,
            "--work-dir",
            m_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
        ],
    );
    let mut slave_args = Vec::new();
    for i in 1..=2 {
        let ip = format!("127.0.0.{}", i + 1);
        let listen = format!("{ip}:{}", free_port(&ip));
        let work = dir.join(format!("slave-{i}"));
        cluster.slave_dirs.push(work.clone());
        let resources = format!(
            "cpus:2;mem:1024;disk:1000;ports:[{}-{}]",
            31000 + i * 100,
            31099 + i * 100
        );
        let args: Vec<String> = [
            "slave",
            "--master",
            &master,
            "--listen",
            &listen,
            "--work-dir",
            work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
            "--resources",
            &resources,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cluster.spawn(
            &format!("slave-{i}"),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        slave_args.push((args, work, ip));
    }
    let state_url = format!("http://{master}/master/state");

    actix_rt::System::new().block_on(async {
        eventually(Duration::from_secs(60), "two slaves registered", || async {
            get_json(&state_url)
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
        })
        .await;

        // The framework: this test, on its own node.
        let ca = ClusterCa::load(&tls).unwrap();
        let identity = NodeIdentity::self_issuing(
            &ca,
            "test-framework",
            plateau_runtime::Role::Framework,
            None,
        )
        .unwrap();
        let node = Node::start(NodeConfig::quic(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            identity,
            7,
        ))
        .unwrap();
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let memory_hog = CommandInfo::shell("head -c 300000000 /dev/zero | tail");
        let recorder = Recorder {
            wanted: vec![
                (
                    TaskId::new("sleeper-1"),
                    Resources::parse("cpus:0.1;mem:32").unwrap(),
                    CommandInfo::shell("sleep 600"),
                    Some(slave_args[0].2.clone()),
                ),
                (
                    TaskId::new("sleeper-2"),
                    Resources::parse("cpus:0.1;mem:32").unwrap(),
                    CommandInfo::shell("sleep 600"),
                    Some(slave_args[1].2.clone()),
                ),
                (
                    TaskId::new("hog"),
                    Resources::parse("cpus:0.1;mem:32").unwrap(),
                    memory_hog,
                    None,
                ),
            ],
            statuses: statuses.clone(),
        };
        let master_upid: Upid = format!("master@{master}").parse().unwrap();
        let mut info = FrameworkInfo::new("cluster-test");
        info.failover_timeout_secs = 600.0;
        let framework: ProcessRef<SchedulerDriver<Recorder>> = node
            .spawn(
                "cluster-test",
                SchedulerDriver::new(info, master_upid, recorder),
            )
            .unwrap();

        // Real tasks, RUNNING at the master, real processes in their cgroups.
        eventually(
            Duration::from_secs(60),
            "both sleepers RUNNING at the master",
            || async {
                let Some(s) = get_json(&state_url).await else {
                    return false;
                };
                task_state(&s, "sleeper-1").as_deref() == Some("TASK_RUNNING")
                    && task_state(&s, "sleeper-2").as_deref() == Some("TASK_RUNNING")
            },
        )
        .await;
        let pids_before = task_pids(&slave_args[0].1, "sleeper-1");
        assert!(
            !pids_before.is_empty(),
            "sleeper-1 has processes in its cgroup"
        );
        let limit = std::fs::read_to_string(
            Path::new("/sys/fs/cgroup/memory/plateau")
                .join(plateau_slave::cgroup_slave_name(&slave_args[0].1))
                .join("sleeper-1")
                .join("memory.limit_in_bytes"),
        )
        .unwrap();
        assert_eq!(
            limit.trim(),
            (32 * 1024 * 1024).to_string(),
            "memory limit from mem:32"
        );

        // The memory hog is killed by the kernel and reported with the memory reason.
        eventually(Duration::from_secs(60), "hog FAILED", || async {
            has_status(&statuses, "hog", TaskState::Failed).is_some()
        })
        .await;
        let hog = has_status(&statuses, "hog", TaskState::Failed).unwrap();
        assert_eq!(
            hog.reason,
            Some(Reason::ContainerLimitationMemory),
            "{hog:?}"
        );

        // kill -9 of slave 1, then restart: the task keeps running (same pid) and RUNNING.
        cluster.signal("slave-1", libc::SIGKILL);
        let _ = cluster.children.get_mut("slave-1").unwrap().wait();
        assert_eq!(
            task_pids(&slave_args[0].1, "sleeper-1"),
            pids_before,
            "task survives its slave"
        );
        let args = slave_args[0]
            .0
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>();
        cluster.spawn("slave-1", &args);
        let slave1_url = format!("http://{}/state", args[4]);
        eventually(Duration::from_secs(60), "slave 1 back", || async {
            get_json(&slave1_url)
                .await
                .is_some_and(|s| s["id"].as_str().is_some_and(|id| !id.is_empty()))
        })
        .await;
        eventually(
            Duration::from_secs(30),
            "sleeper-1 RUNNING after slave restart",
            || async {
                get_json(&state_url)
                    .await
                    .is_some_and(|s| task_state(&s, "sleeper-1").as_deref() == Some("TASK_RUNNING"))
            },
        )
        .await;
        assert_eq!(
            task_pids(&slave_args[0].1, "sleeper-1"),
            pids_before,
            "same process after recovery"
        );

        // kill -9 of the master, then restart: the registry comes back from redb, slaves and
        // the framework re-register, the tasks were never disturbed.
        cluster.signal("master", libc::SIGKILL);
        let _ = cluster.children.get_mut("master").unwrap().wait();
        let master_args = [
            "master",
            "--listen",
            &master,
            "--work-dir",
            m_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
        ];
        cluster.spawn("master", &master_args);
        eventually(
            Duration::from_secs(60),
            "slaves, tasks and the framework back at the restarted master",
            || async {
                let Some(s) = get_json(&state_url).await else {
                    return false;
                };
                s["activated_slaves"].as_f64() == Some(2.0)
                    && task_state(&s, "sleeper-1").as_deref() == Some("TASK_RUNNING")
                    && task_state(&s, "sleeper-2").as_deref() == Some("TASK_RUNNING")
                    && s["frameworks"].as_array().is_some_and(|fs| {
                        fs.iter()
                            .any(|f| f["name"] == "cluster-test" && f["active"] == true)
                    })
            },
        )
        .await;
        assert_eq!(
            task_pids(&slave_args[0].1, "sleeper-1"),
            pids_before,
            "undisturbed by the master's restart"
        );

        // SIGSTOP of slave 2: its task goes UNREACHABLE within the agent timeout.
        let frozen_at = std::time::Instant::now();
        cluster.signal("slave-2", libc::SIGSTOP);
        eventually(Duration::from_secs(15), "sleeper-2 UNREACHABLE", || async {
            has_status(&statuses, "sleeper-2", TaskState::Unreachable).is_some()
        })
        .await;
        let detected = frozen_at.elapsed();
        eprintln!("agent loss detected after {detected:?}");
        cluster.signal("slave-2", libc::SIGCONT);

        // Clean up through the API: kill the tasks, unregister.
        framework
            .call(|d: &mut SchedulerDriver<Recorder>, ctx| {
                let (_, mut driver) = d.scheduler_and_driver(ctx);
                driver.kill_task(&TaskId::new("sleeper-1"));
                driver.kill_task(&TaskId::new("sleeper-2"));
            })
            .await
            .unwrap();
        eventually(Duration::from_secs(30), "sleeper-1 KILLED", || async {
            has_status(&statuses, "sleeper-1", TaskState::Killed).is_some()
        })
        .await;
        node.shutdown();
    });
    if std::thread::panicking() {
        eprintln!("master log:\n{}", cluster.log("master"));
    }
}

#[test]
fn bad_flags_and_resource_strings_exit_with_code_2() {
    for args in [
        &[
            "slave",
            "--master",
            "127.0.0.1:5050",
            "--work-dir",
            "/tmp/x",
            "--tls-dir",
            "/tmp/x",
            "--resources",
            "cpus:abc",
        ][..],
        &[
            "slave",
            "--master",
            "127.0.0.1:5050",
            "--work-dir",
            "/tmp/x",
            "--tls-dir",
            "/tmp/x",
            "--resources",
            "ports:[10-5]",
        ][..],
        &[
            "master",
            "--work-dir",
            "/tmp/x",
            "--tls-dir",
            "/tmp/x",
            "--agent-timeout",
            "5 parsecs",
        ][..],
        &[
            "master",
            "--work-dir",
            "/tmp/x",
            "--tls-dir",
            "/tmp/x",
            "--weights",
            "apps=-1",
        ][..],
        &["master", "--no-such-flag"][..],
    ] {
        let out = std::process::Command::new(super::PLATEAU)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }
}

/// The SDK's example framework (sdk/examples/run_tasks.rs), built by cargo and run as its own
/// process against a master and a slave, runs its tasks to completion and exits 0.
#[test]
fn the_example_framework_runs_its_tasks() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let built = std::process::Command::new(&cargo)
        .args(["build", "-q", "-p", "plateau-sdk", "--example", "run_tasks"])
        .status()
        .unwrap();
    assert!(built.success(), "the example builds");
    let exe = Path::new(super::PLATEAU)
        .parent()
        .unwrap()
        .join("examples")
        .join("run_tasks");
    assert!(exe.exists(), "{}", exe.display());

    let mut cluster = Cluster::new("example");
    let tls = cluster.tls().to_str().unwrap().to_string();
    let master = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let m_work = cluster.dir.join("master");
    cluster.spawn(
        "master",
        &[
            "master",
            "--listen",
            &master,
            "--work-dir",
            m_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
        ],
    );
    let s_work = cluster.dir.join("slave-1");
    cluster.slave_dirs.push(s_work.clone());
    let listen = format!("127.0.0.2:{}", free_port("127.0.0.2"));
    cluster.spawn(
        "slave-1",
        &[
            "slave",
            "--master",
            &master,
            "--listen",
            &listen,
            "--work-dir",
            s_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
            "--resources",
            "cpus:1;mem:256;disk:100;ports:[31500-31510]",
        ],
    );
    let state_url = format!("http://{master}/master/state");
    actix_rt::System::new().block_on(eventually(
        Duration::from_secs(60),
        "slave registered",
        || async {
            get_json(&state_url)
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(1.0))
        },
    ));
    let mut child = std::process::Command::new(&exe)
        .args([
            "--master",
            &master,
            "--tls-dir",
            &tls,
            "--tasks",
            "4",
            "--command",
            "echo hi from $MESOS_TASK_ID",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example framework did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("done: 0 failed"), "{out}");
    assert_eq!(out.matches("TASK_FINISHED").count(), 4, "{out}");
}
