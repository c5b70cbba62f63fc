//! The real slave end to end: a real [`Node`] with the cgroups containerizer and the redb
//! checkpoint, a fake master process on another node, QUIC with mutual TLS between them. A real
//! task goes RUNNING then FINISHED with acknowledgements; another is inspected over HTTP and
//! killed.
//!
//! A [`Cleanup`] guard kills and removes every process, cgroup and directory the test created,
//! even when it fails.
//!
//! In `slave_process/leader.rs`, in the simulator: a slave and a framework's scheduler driver
//! following the leader of a group of three (fake) masters.

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{test as web_test, App};
use plateau_master::ids::{FrameworkId, SlaveId, TaskId};
use plateau_master::messages::{
    CommandInfo, FrameworkInfo, KillTaskMessage, RegisterSlaveMessage, ReregisterSlaveMessage,
    RunTaskMessage, SlaveHeartbeatMessage, SlaveRegisteredMessage, SlaveReregisteredMessage,
    StatusUpdateAcknowledgementMessage, StatusUpdateMessage, TaskInfo, TaskState, TaskStatus,
};
use plateau_master::resources::Resources;
use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::{Context, Handlers, Node, NodeConfig, Process, Upid};
use plateau_slave::{start, SlaveConfig};

mod slave_process {
    mod leader;
}

const CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "freezer"];
/// Generous: the machine is small and shared.
const WAIT: Duration = Duration::from_secs(90);

type Updates = Arc<Mutex<Vec<TaskStatus>>>;

/// Registers the slave, records and acknowledges its updates.
struct FakeMaster {
    updates: Updates,
    heartbeats: Arc<Mutex<u64>>,
    reregisters: Arc<Mutex<Vec<ReregisterSlaveMessage>>>,
}

impl FakeMaster {
    fn new(updates: &Updates, heartbeats: &Arc<Mutex<u64>>) -> Self {
        FakeMaster {
            updates: Arc::clone(updates),
            heartbeats: Arc::clone(heartbeats),
            reregisters: Arc::default(),
        }
    }
}

impl FakeMaster {
    fn handle_register(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: RegisterSlaveMessage) {
        let msg = SlaveRegisteredMessage {
            slave_id: SlaveId::new("test-S1"),
            heartbeat_interval_ms: 500,
        };
        ctx.send(from, msg);
    }

    fn handle_reregister(&mut self, ctx: &mut Context<'_>, from: &Upid, m: ReregisterSlaveMessage) {
        self.reregisters.lock().unwrap().push(m.clone());
        let msg = SlaveReregisteredMessage {
            slave_id: m.slave_id,
            heartbeat_interval_ms: 500,
        };
        ctx.send(from, msg);
    }

    fn handle_heartbeat(
        &mut self,
        _ctx: &mut Context<'_>,
        _from: &Upid,
        _m: SlaveHeartbeatMessage,
    ) {
        *self.heartbeats.lock().unwrap() += 1;
    }

    fn handle_update(&mut self, ctx: &mut Context<'_>, from: &Upid, m: StatusUpdateMessage) {
        self.updates.lock().unwrap().push(m.status.clone());
        if let Some(uuid) = m.status.uuid {
            let ack = StatusUpdateAcknowledgementMessage {
                slave_id: m.status.slave_id.clone().unwrap(),
                framework_id: m.framework_id,
                task_id: m.status.task_id,
                uuid,
            };
            ctx.send(from, ack);
        }
    }
}

impl Process for FakeMaster {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_register)
            .on(Self::handle_reregister)
            .on(Self::handle_heartbeat)
            .on(Self::handle_update);
    }
}

/// Kills and removes whatever the test created.
struct Cleanup {
    cgroup_root: String,
    dir: PathBuf,
}

fn read_procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl Cleanup {
    fn new(test: &str) -> Cleanup {
        let cgroup_root = format!("plateau-test-slave-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&cgroup_root);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Cleanup { cgroup_root, dir }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let roots: Vec<PathBuf> = CONTROLLERS
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&self.cgroup_root))
            .collect();
        // Every task cgroup is <root>/<slave>/<task>.
        let task_dirs = || -> Vec<PathBuf> {
            let mut out = Vec::new();
            for root in &roots {
                for slave in fs::read_dir(root).into_iter().flatten().flatten() {
                    for task in fs::read_dir(slave.path()).into_iter().flatten().flatten() {
                        if task.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            out.push(task.path());
                        }
                    }
                }
            }
            out
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut pids = Vec::new();
            for dir in task_dirs() {
                let _ = fs::write(dir.join("freezer.state"), "THAWED");
                pids.extend(read_procs(&dir));
            }
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                // SAFETY: plain kill of a process in this test's cgroups.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Supervisors work in this test's directory: their command line names it.
        let marker = self.dir.to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if pid as u32 != std::process::id()
                && String::from_utf8_lossy(&cmdline).contains(&marker)
            {
                // SAFETY: plain kill and waitpid (ECHILD if not our child).
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
                }
            }
        }
        for dir in task_dirs() {
            let _ = fs::remove_dir(dir);
        }
        for root in &roots {
            for slave in fs::read_dir(root).into_iter().flatten().flatten() {
                let _ = fs::remove_dir(slave.path());
            }
            let _ = fs::remove_dir(root);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Polls `condition` until it holds, failing after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn states(updates: &Updates, task: &str) -> Vec<TaskState> {
    let mut out: Vec<TaskState> = Vec::new();
    for u in updates.lock().unwrap().iter() {
        if u.task_id.as_str() == task && out.last() != Some(&u.state) {
            out.push(u.state);
        }
    }
    out
}

fn quic_node(ca: &ClusterCa, seed: u64, role: plateau_runtime::Role) -> Node {
    let identity = NodeIdentity::self_issuing(ca, "node", role, None).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Node::start(NodeConfig::quic(bind, identity, seed)).unwrap()
}

fn task(id: &str, command: &str, ports: &str) -> TaskInfo {
    let mut command = CommandInfo::shell(command);
    command
        .environment
        .insert("FOO".to_string(), "bar".to_string());
    TaskInfo {
        name: id.to_string(),
        task_id: TaskId::new(id),
        slave_id: SlaveId::new("test-S1"),
        resources: Resources::parse(&format!("cpus:0.2;mem:64;ports:{ports}")).unwrap(),
        command,
        health_check: None,
        labels: BTreeMap::new(),
        kill_grace_period_secs: Some(1.0),
    }
}

#[test]
fn real_tasks_run_finish_and_are_killed_over_quic() {
    let cleanup = Cleanup::new("quic");
    let work_dir = cleanup.dir.join("work");
    let cgroup_root = cleanup.cgroup_root.clone();
    let slave_work_dir = work_dir.clone();
    actix_rt::System::new().block_on(async move {
        let ca = ClusterCa::generate().unwrap();
        let master_node = quic_node(&ca, 1, plateau_runtime::Role::Master);
        let slave_node = quic_node(&ca, 2, plateau_runtime::Role::Slave);
        let updates: Updates = Arc::default();
        let heartbeats = Arc::new(Mutex::new(0u64));
        let master = master_node
            .spawn("master", FakeMaster::new(&updates, &heartbeats))
            .unwrap();
        let mut config = SlaveConfig::new(
            master.upid().clone(),
            &slave_work_dir,
            env!("CARGO_BIN_EXE_plateau-supervisor"),
        );
        config.resources = Some("cpus:2;mem:1024;disk:1000;ports:[31000-31010]".into());
        config.attributes = Some("rack:r1".into());
        config.cgroup_root = cgroup_root;
        config.cgroup_slave_name = Some("slave".into());
        let slave = start(&slave_node, config).expect("slave starts");

        eventually("registration", || async {
            slave.call(|p, _| p.is_registered()).await.unwrap()
        })
        .await;
        eventually("heartbeats", || async { *heartbeats.lock().unwrap() >= 2 }).await;

        let run = |task: TaskInfo| RunTaskMessage {
            framework_id: FrameworkId::new("fw"),
            framework: FrameworkInfo::new("test"),
            framework_pid: master.upid().clone(),
            task,
        };
        // A long task, inspected over HTTP, then killed.
        master_node.send(
            master.upid(),
            slave.upid(),
            run(task(
                "long",
                "echo hello-sandbox; trap 'exit 0' TERM; sleep 1000 & wait",
                "[31001-31001]",
            )),
        );
        eventually("long RUNNING", || async {
            states(&updates, "long").contains(&TaskState::Running)
        })
        .await;

        let app = web_test::init_service(
            App::new().configure(|cfg| plateau_slave::http::configure(cfg, slave.clone())),
        )
        .await;
        let state: serde_json::Value =
            web_test::call_and_read_body_json(&app, web_test::TestRequest::get().uri("/state").to_request())
                .await;
        assert_eq!(state["id"], "test-S1");
        assert_eq!(state["attributes"]["rack"], "r1");
        assert_eq!(state["resources"]["ports"], "[31000-31010]");
        let executor = &state["frameworks"][0]["executors"][0];
        assert_eq!(executor["tasks"][0]["state"], "TASK_RUNNING");
        let directory = executor["directory"].as_str().unwrap().to_string();
        assert!(directory.contains("/frameworks/fw/executors/long/runs/latest"), "{directory}");

        let stdout_uri = format!("/files/read?path={directory}/stdout&offset=0");
        let mut data = String::new();
        let deadline = Instant::now() + WAIT;
        while !data.contains("hello-sandbox") {
            assert!(Instant::now() < deadline, "stdout never showed the output");
            let body: serde_json::Value = web_test::call_and_read_body_json(
                &app,
                web_test::TestRequest::get().uri(&stdout_uri).to_request(),
            )
            .await;
            data = body["data"].as_str().unwrap_or_default().to_string();
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        for (uri, status) in [
            (format!("/files/read?path={directory}/../../x/stdout"), 400),
            (format!("/files/read?path={directory}/nope"), 404),
            ("/files/read?path=/etc/passwd".to_string(), 404),
            ("/files/read?path=relative".to_string(), 400),
        ] {
            let response =
                web_test::call_service(&app, web_test::TestRequest::get().uri(&uri).to_request())
                    .await;
            assert_eq!(response.status().as_u16(), status, "{uri}");
        }
        let stats: serde_json::Value = web_test::call_and_read_body_json(
            &app,
            web_test::TestRequest::get().uri("/monitor/statistics").to_request(),
        )
        .await;
        assert_eq!(stats[0]["executor_id"], "long");
        assert_eq!(stats[0]["statistics"]["mem_limit_bytes"], 64 << 20);
        let metrics = web_test::call_and_read_body(
            &app,
            web_test::TestRequest::get().uri("/metrics").to_request(),
        )
        .await;
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(metrics.contains("slave_tasks_launched_total 1"), "{metrics}");

        // A task that checks its environment and finishes.
        master_node.send(
            master.upid(),
            slave.upid(),
            run(task(
                "short",
                "test \"$MESOS_TASK_ID\" = short && test \"$PORT0\" = 31005 && test \"$PORT\" = 31005 \
                 && test \"$FOO\" = bar && test \"$MESOS_SANDBOX\" = \"$PWD\" && echo ok",
                "[31005-31005]",
            )),
        );
        eventually("short FINISHED", || async {
            states(&updates, "short").contains(&TaskState::Finished)
                || states(&updates, "short").contains(&TaskState::Failed)
        })
        .await;
        assert_eq!(
            states(&updates, "short"),
            vec![TaskState::Starting, TaskState::Running, TaskState::Finished],
            "{:?}",
            updates.lock().unwrap()
        );

        master_node.send(
            master.upid(),
            slave.upid(),
            KillTaskMessage {
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new("long"),
                fencing_epoch: None,
            },
        );
        eventually("long KILLED", || async {
            states(&updates, "long").contains(&TaskState::Killed)
        })
        .await;
        // Every terminal update acknowledged: the books and the checkpoint are empty.
        eventually("tasks removed after their acks", || async {
            slave
                .call(|p, _| p.core().tasks().is_empty() && p.core().frameworks().is_empty())
                .await
                .unwrap()
        })
        .await;
        slave_node.shutdown();
        master_node.shutdown();
    });
    // The checkpoint kept the slave's id and nothing else.
    let store = plateau_slave::checkpoint::RedbCheckpoint::open(
        &work_dir.join("slave").join("checkpoint.redb"),
    );
    if let Ok(store) = store {
        use plateau_slave::checkpoint::CheckpointStore;
        let checkpoint = store.load().unwrap();
        assert_eq!(
            checkpoint.slave.map(|s| s.slave_id),
            Some(SlaveId::new("test-S1"))
        );
        assert!(checkpoint.tasks.is_empty());
    }
    drop(cleanup);
}

fn slave_config(master: &Upid, work_dir: &Path, cgroup_root: &str) -> SlaveConfig {
    let mut config = SlaveConfig::new(
        master.clone(),
        work_dir,
        env!("CARGO_BIN_EXE_plateau-supervisor"),
    );
    config.resources = Some("cpus:2;mem:1024;disk:1000;ports:[31000-31010]".into());
    config.cgroup_root = cgroup_root.to_string();
    config.cgroup_slave_name = Some("slave".into());
    config
}

fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            state != "Z" && state != "X"
        }
    }
}

/// The slave process goes away without killing anything (as with `kill -9`: its checkpoint is
/// all that is left); a new one on the same work directory re-registers with the task, which
/// never stopped.
#[test]
fn a_restarted_slave_recovers_its_running_task() {
    let cleanup = Cleanup::new("restart");
    let work_dir = cleanup.dir.join("work");
    let cgroup_root = cleanup.cgroup_root.clone();
    let ca = ClusterCa::generate().unwrap();
    let updates: Updates = Arc::default();
    let heartbeats = Arc::new(Mutex::new(0u64));

    let (wd, root, ca1, u1, h1) = (
        work_dir.clone(),
        cgroup_root.clone(),
        &ca,
        updates.clone(),
        heartbeats.clone(),
    );
    let pid = actix_rt::System::new().block_on(async move {
        let master_node = quic_node(ca1, 1, plateau_runtime::Role::Master);
        let slave_node = quic_node(ca1, 2, plateau_runtime::Role::Slave);
        let master = master_node
            .spawn("master", FakeMaster::new(&u1, &h1))
            .unwrap();
        let slave = start(&slave_node, slave_config(master.upid(), &wd, &root)).unwrap();
        eventually("registration", || async {
            slave.call(|p, _| p.is_registered()).await.unwrap()
        })
        .await;
        master_node.send(
            master.upid(),
            slave.upid(),
            RunTaskMessage {
                framework_id: FrameworkId::new("fw"),
                framework: FrameworkInfo::new("test"),
                framework_pid: master.upid().clone(),
                task: task("survivor", "exec sleep 1000", "[31002-31002]"),
            },
        );
        eventually("RUNNING acknowledged", || async {
            slave
                .call(|p, _| {
                    p.core()
                        .tasks()
                        .values()
                        .any(|t| t.state == TaskState::Running && t.pending_updates().count() == 0)
                })
                .await
                .unwrap()
        })
        .await;
        let pid = slave
            .call(|p, _| p.core().tasks().values().next().unwrap().launch.clone())
            .await
            .unwrap()
            .unwrap()
            .pid;
        slave_node.shutdown();
        master_node.shutdown();
        pid
    });
    assert!(is_alive(pid), "the task outlives its slave");

    let (wd, root, u2, h2) = (
        work_dir.clone(),
        cgroup_root.clone(),
        updates.clone(),
        heartbeats.clone(),
    );
    let ca2 = &ca;
    actix_rt::System::new().block_on(async move {
        let master_node = quic_node(ca2, 3, plateau_runtime::Role::Master);
        let slave_node = quic_node(ca2, 4, plateau_runtime::Role::Slave);
        let fake = FakeMaster::new(&u2, &h2);
        let reregisters = Arc::clone(&fake.reregisters);
        let master = master_node.spawn("master", fake).unwrap();
        let slave = start(&slave_node, slave_config(master.upid(), &wd, &root))
            .expect("the slave restarts on its checkpoint");
        eventually("re-registration", || async {
            slave.call(|p, _| p.is_registered()).await.unwrap()
        })
        .await;
        let rereg = reregisters.lock().unwrap()[0].clone();
        assert_eq!(rereg.slave_id, SlaveId::new("test-S1"));
        assert_eq!(rereg.tasks.len(), 1);
        assert_eq!(rereg.tasks[0].task.task_id, TaskId::new("survivor"));
        assert_eq!(rereg.tasks[0].state, TaskState::Running);
        assert!(is_alive(pid), "the task was not disturbed");
        master_node.send(
            master.upid(),
            slave.upid(),
            KillTaskMessage {
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new("survivor"),
                fencing_epoch: None,
            },
        );
        eventually("KILLED", || async {
            states(&u2, "survivor").contains(&TaskState::Killed)
        })
        .await;
        eventually("task removed", || async {
            slave
                .call(|p, _| p.core().tasks().is_empty())
                .await
                .unwrap()
        })
        .await;
        slave_node.shutdown();
        master_node.shutdown();
    });
    assert!(!is_alive(pid));
    drop(cleanup);
}

/// The task cgroups (any controller) left under the test's cgroup root.
fn task_cgroups(cgroup_root: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for controller in CONTROLLERS {
        let slave = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(cgroup_root)
            .join("slave");
        for entry in fs::read_dir(slave).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Kills sent right behind their RunTask, and a shutdown (`destroy_all_tasks`) right after a
/// burst of RunTasks, meet launches still under way in the launcher threads: every task ends
/// with exactly one terminal update and nothing is left running.
#[test]
fn kills_and_shutdown_overtake_launches_in_flight() {
    let cleanup = Cleanup::new("inflight");
    let work_dir = cleanup.dir.join("work");
    let cgroup_root = cleanup.cgroup_root.clone();
    let root = cgroup_root.clone();
    actix_rt::System::new().block_on(async move {
        let ca = ClusterCa::generate().unwrap();
        let master_node = quic_node(&ca, 1, plateau_runtime::Role::Master);
        let slave_node = quic_node(&ca, 2, plateau_runtime::Role::Slave);
        let updates: Updates = Arc::default();
        let heartbeats = Arc::new(Mutex::new(0u64));
        let master = master_node
            .spawn("master", FakeMaster::new(&updates, &heartbeats))
            .unwrap();
        let slave = start(&slave_node, slave_config(master.upid(), &work_dir, &root)).unwrap();
        eventually("registration", || async {
            slave.call(|p, _| p.is_registered()).await.unwrap()
        })
        .await;
        let run = |id: &str, port: u16| RunTaskMessage {
            framework_id: FrameworkId::new("fw"),
            framework: FrameworkInfo::new("test"),
            framework_pid: master.upid().clone(),
            task: task(id, "exec sleep 1000", &format!("[{port}-{port}]")),
        };
        let kill = |id: &str| KillTaskMessage {
            framework_id: FrameworkId::new("fw"),
            task_id: TaskId::new(id),
            fencing_epoch: None,
        };
        let killed = ["k0", "k1", "k2"];
        for (i, id) in killed.iter().enumerate() {
            master_node.send(master.upid(), slave.upid(), run(id, 31001 + i as u16));
            master_node.send(master.upid(), slave.upid(), kill(id));
        }
        eventually("killed tasks removed", || async {
            killed
                .iter()
                .all(|id| states(&updates, id).contains(&TaskState::Killed))
                && slave
                    .call(|p, _| p.core().tasks().is_empty())
                    .await
                    .unwrap()
        })
        .await;
        for id in killed {
            let states = states(&updates, id);
            assert_eq!(states.last(), Some(&TaskState::Killed), "{id}: {states:?}");
            let terminal = states.iter().filter(|s| s.is_terminal()).count();
            assert_eq!(terminal, 1, "{id}: {states:?}");
        }
        eventually("no task cgroups left", || async {
            task_cgroups(&root).is_empty()
        })
        .await;

        let burst: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
        for (i, id) in burst.iter().enumerate() {
            master_node.send(master.upid(), slave.upid(), run(id, 31001 + i as u16));
        }
        // Destroy as soon as the slave holds them all, with launches still under way.
        let count = burst.len();
        eventually("all RunTasks arrived, then destroy_all", || async {
            slave
                .call(move |p, _| {
                    let arrived = p.core().tasks().len() == count;
                    if arrived {
                        p.destroy_all_tasks();
                    }
                    arrived
                })
                .await
                .unwrap()
        })
        .await;
        eventually("every task terminal and removed", || async {
            slave
                .call(|p, _| p.core().tasks().is_empty())
                .await
                .unwrap()
        })
        .await;
        for id in &burst {
            let states = states(&updates, id);
            let terminal = states.iter().filter(|s| s.is_terminal()).count();
            assert_eq!(terminal, 1, "{id}: {states:?}");
        }
        assert!(task_cgroups(&root).is_empty(), "{:?}", task_cgroups(&root));
        assert_eq!(slave.call(|p, _| p.launches_in_flight()).await.unwrap(), 0);
        slave_node.shutdown();
        master_node.shutdown();
    });
    drop(cleanup);
}

/// The status and JSON body of a GET on the slave's HTTP API.
macro_rules! get {
    ($app:expr, $uri:expr) => {{
        let response =
            web_test::call_service($app, web_test::TestRequest::get().uri($uri).to_request()).await;
        let status = response.status().as_u16();
        let body = web_test::read_body(response).await;
        let json: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, json)
    }};
}

/// Tasks run as the slave's default task user (`nobody`) unless they name a user; a user
/// unknown to the slave fails the task with a clear message; `/files/read` serves the task's
/// own files but not a root-only file hard-linked into its sandbox.
#[test]
fn tasks_run_as_nobody_by_default_and_their_sandbox_serves_only_their_files() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let cleanup = Cleanup::new("users");
    let work_dir = cleanup.dir.join("work");
    let cgroup_root = cleanup.cgroup_root.clone();
    let secret = cleanup.dir.join("shadow");
    fs::write(&secret, "root-only-content").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let nobody = plateau_slave::user::TaskUser::lookup("nobody").unwrap();
    let daemon = plateau_slave::user::TaskUser::lookup("daemon").unwrap();
    actix_rt::System::new().block_on(async move {
        let ca = ClusterCa::generate().unwrap();
        let master_node = quic_node(&ca, 1, plateau_runtime::Role::Master);
        let slave_node = quic_node(&ca, 2, plateau_runtime::Role::Slave);
        let updates: Updates = Arc::default();
        let heartbeats = Arc::new(Mutex::new(0u64));
        let master = master_node
            .spawn("master", FakeMaster::new(&updates, &heartbeats))
            .unwrap();
        let config = slave_config(master.upid(), &work_dir, &cgroup_root);
        assert_eq!(config.default_task_user, "nobody");
        let slave = start(&slave_node, config).expect("slave starts");
        eventually("registration", || async {
            slave.call(|p, _| p.is_registered()).await.unwrap()
        })
        .await;
        let run = |task: TaskInfo| RunTaskMessage {
            framework_id: FrameworkId::new("fw"),
            framework: FrameworkInfo::new("test"),
            framework_pid: master.upid().clone(),
            task,
        };
        let send = |task: TaskInfo| master_node.send(master.upid(), slave.upid(), run(task));
        // By default: nobody.
        send(task(
            "plain",
            "id -u; echo mine > mine; echo up > ready; exec sleep 1000",
            "[31001-31001]",
        ));
        // The command names its user.
        let mut named = task("named", "id -u", "[31002-31002]");
        named.command.user = Some("daemon".into());
        send(named);
        // A user this slave does not know.
        let mut lost = task("lost", "true", "[31003-31003]");
        lost.command.user = Some("plateau-no-such-user".into());
        send(lost);

        eventually("plain RUNNING", || async {
            states(&updates, "plain").contains(&TaskState::Running)
        })
        .await;
        eventually("named and lost over", || async {
            states(&updates, "named").contains(&TaskState::Finished)
                && states(&updates, "lost").contains(&TaskState::Failed)
        })
        .await;
        let failure = updates
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.task_id.as_str() == "lost" && u.state == TaskState::Failed)
            .cloned()
            .unwrap();
        let message = failure.message.unwrap_or_default();
        assert!(
            message.contains("user 'plateau-no-such-user' does not exist on this slave"),
            "{message}"
        );

        let app = web_test::init_service(
            App::new().configure(|cfg| plateau_slave::http::configure(cfg, slave.clone())),
        )
        .await;
        let state: serde_json::Value = web_test::call_and_read_body_json(
            &app,
            web_test::TestRequest::get().uri("/state").to_request(),
        )
        .await;
        let directory = |id: &str| -> PathBuf {
            let executors = state["frameworks"][0]["executors"].as_array().unwrap();
            let executor = executors.iter().find(|e| e["id"] == id).unwrap();
            PathBuf::from(executor["directory"].as_str().unwrap())
        };
        let plain = directory("plain");
        eventually("plain ready", || async { plain.join("ready").exists() }).await;
        let (status, body) = get!(
            &app,
            &format!("/files/read?path={}/stdout&offset=0", plain.display())
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], format!("{}\n", nobody.uid));
        // A file the task wrote is served.
        let (status, body) = get!(
            &app,
            &format!("/files/read?path={}/mine&offset=0", plain.display())
        );
        assert_eq!(
            (status, body["data"].as_str()),
            (200, Some("mine\n")),
            "{body}"
        );
        // A root-only file hard-linked into the sandbox (as a task could with a file it may
        // link, or any file where hard links are not protected) is refused, size included.
        fs::hard_link(&secret, plain.join("shadow")).unwrap();
        for offset in ["0", "-1"] {
            let (status, body) = get!(
                &app,
                &format!(
                    "/files/read?path={}/shadow&offset={offset}",
                    plain.display()
                )
            );
            assert_eq!(status, 403, "{body}");
            assert!(!body.to_string().contains("root-only-content"));
            assert!(
                body["message"].as_str().unwrap().contains("not served"),
                "{body}"
            );
        }
        // A symbolic link out of the sandbox is not followed.
        std::os::unix::fs::symlink(&secret, plain.join("link")).unwrap();
        let (status, _) = get!(
            &app,
            &format!("/files/read?path={}/link&offset=0", plain.display())
        );
        assert_eq!(status, 404);

        // The named task ran as daemon (its sandbox is gone from the books once acknowledged:
        // read its stdout from the disk).
        let named_out = fs::read_to_string(
            plain
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("named/runs/latest/stdout"),
        )
        .unwrap();
        assert_eq!(named_out.trim(), daemon.uid.to_string());

        // The slave's own directory (checkpoint, run directories) is closed to tasks.
        {
            use std::os::unix::fs::MetadataExt;
            let mode = fs::metadata(work_dir.join("slave")).unwrap().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        master_node.send(
            master.upid(),
            slave.upid(),
            KillTaskMessage {
                framework_id: FrameworkId::new("fw"),
                task_id: TaskId::new("plain"),
                fencing_epoch: None,
            },
        );
        eventually("plain KILLED", || async {
            states(&updates, "plain").contains(&TaskState::Killed)
        })
        .await;
        slave_node.shutdown();
        master_node.shutdown();
    });
    drop(cleanup);
}
