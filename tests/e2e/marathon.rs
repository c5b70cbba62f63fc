//! Marathon end to end: `plateau master`, two `plateau slave`s (127.0.0.2 and 127.0.0.3) and
//! `plateau marathon` as separate processes, driven only through Marathon's REST API v2.
//! Tasks are real processes in real cgroups (the test runs as root, as CI does).
//!
//! Two scenarios (each on its own cluster):
//! - lifecycle: 422 naming the field for a bad body; an app of 3 real processes; scale to 5
//!   and back to 2; a killed task is replaced; SSE shows `status_update_event`s; a rolling
//!   restart never drops below `minimumHealthCapacity × instances`; kill -9 of Marathon in
//!   the middle of a deployment and a restart on the same work dir converge without
//!   duplicate tasks.
//! - placement and health: UNIQUE hostname with 3 instances on 2 slaves runs 2 and queues 1;
//!   an app whose HTTP health check fails has its tasks replaced; a deployment waits for a
//!   readiness check (a real HTTP server answering 503, then 200) before it completes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{eventually, free_port, get_json, Cluster};

/// Deadline for anything that involves launching processes on a slow, shared machine.
const SLOW: Duration = Duration::from_secs(90);

/// A running cluster: master, 2 slaves, Marathon.
struct Env {
    cluster: Cluster,
    master: String,
    marathon: String,
    marathon_args: Vec<String>,
    /// Slave hostname (its IP) → its work dir.
    slaves: BTreeMap<String, PathBuf>,
    client: reqwest::Client,
}

impl Env {
    fn start(test: &str) -> Env {
        let mut cluster = Cluster::new(test);
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let master = cluster.start_master();
        let mut slaves = BTreeMap::new();
        for i in 1..=2u32 {
            let ip = format!("127.0.0.{}", i + 1);
            let resources = format!(
                "cpus:1;mem:512;disk:1000;ports:[{}-{}]",
                32000 + i * 100,
                32099 + i * 100
            );
            let (_listen, work) =
                cluster.start_slave(&format!("slave-{i}"), &ip, &master, &resources);
            slaves.insert(ip, work);
        }
        let marathon = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let mara_work = dir.join("marathon");
        let marathon_args: Vec<String> = [
            "marathon",
            "--master",
            &master,
            "--listen",
            &marathon,
            "--work-dir",
            mara_work.to_str().unwrap(),
            "--tls-dir",
            &tls,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut env = Env {
            cluster,
            master,
            marathon,
            marathon_args,
            slaves,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        env.spawn_marathon();
        env
    }

    fn spawn_marathon(&mut self) {
        let args: Vec<&str> = self.marathon_args.iter().map(String::as_str).collect();
        self.cluster.spawn("marathon", &args);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.marathon)
    }

    async fn wait_ready(&self) {
        let state = format!("http://{}/master/state", self.master);
        eventually(SLOW, "two slaves registered", || async {
            get_json(&state)
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
        })
        .await;
        let ping = self.url("/v2/info");
        eventually(SLOW, "marathon answers", || async {
            get_json(&ping).await.is_some()
        })
        .await;
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("marathon reachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET /v2/apps/{id}/tasks`, or empty when unreachable.
    async fn tasks(&self, app: &str) -> Vec<Value> {
        get_json(&self.url(&format!("/v2/apps{app}/tasks")))
            .await
            .and_then(|v| v["tasks"].as_array().cloned())
            .unwrap_or_default()
    }

    async fn running(&self, app: &str) -> Vec<Value> {
        self.tasks(app)
            .await
            .into_iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .collect()
    }

    async fn deployments(&self) -> Option<Vec<Value>> {
        get_json(&self.url("/v2/deployments"))
            .await
            .and_then(|v| v.as_array().cloned())
    }

    /// Exactly `n` tasks, all RUNNING, and no deployment in progress.
    async fn settled(&self, app: &str, n: usize) -> bool {
        let tasks = self.tasks(app).await;
        tasks.len() == n
            && tasks.iter().all(|t| t["state"] == "TASK_RUNNING")
            && self.deployments().await.is_some_and(|d| d.is_empty())
    }

    /// The pids in a task's cgroup on the slave named by the task's host.
    fn task_pids(&self, task: &Value) -> Vec<i32> {
        let host = task["host"].as_str().unwrap_or_default();
        let Some(work) = self.slaves.get(host) else {
            return Vec::new();
        };
        task_pids(work, task["id"].as_str().unwrap_or_default())
    }

    /// The master's non-terminal tasks of all frameworks.
    async fn master_live_tasks(&self) -> Option<Vec<String>> {
        let s = get_json(&format!("http://{}/master/state", self.master)).await?;
        let mut ids = Vec::new();
        for f in s["frameworks"].as_array()? {
            for t in f["tasks"].as_array().cloned().unwrap_or_default() {
                let state = t["state"].as_str().unwrap_or_default();
                if !matches!(
                    state,
                    "TASK_FINISHED" | "TASK_FAILED" | "TASK_KILLED" | "TASK_ERROR" | "TASK_LOST"
                ) {
                    ids.push(t["id"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        Some(ids)
    }

    fn dump_logs(&self) {
        for name in ["marathon", "master", "slave-1", "slave-2"] {
            let log = self.cluster.log(name);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("---- {name} log (last lines) ----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn task_pids(slave_work: &Path, task: &str) -> Vec<i32> {
    let name = plateau_slave::cgroup_slave_name(slave_work);
    let dir = Path::new("/sys/fs/cgroup/pids/plateau")
        .join(name)
        .join(plateau_slave::containerizer::task_dir_name(task));
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn ids(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect()
}

fn sleeper(id: &str, instances: u32) -> Value {
    json!({
        "id": id,
        "cmd": "sleep 600",
        "cpus": 0.1,
        "mem": 32,
        "instances": instances,
        "backoffSeconds": 1,
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
    })
}

/// Read the SSE stream into `sink` until the connection ends.
async fn collect_events(url: String, sink: Arc<Mutex<String>>) {
    let client = reqwest::Client::new();
    let Ok(mut resp) = client
        .get(url)
        .header("Accept", "text/event-stream")
        .send()
        .await
    else {
        return;
    };
    sink.lock()
        .unwrap()
        .push_str(&format!(": status {}\n", resp.status().as_u16()));
    while let Ok(Some(chunk)) = resp.chunk().await {
        sink.lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[test]
fn marathon_lifecycle_scale_kill_restart_and_failover() {
    let mut env = Env::start("marathon-life");
    let ok = std::panic::AssertUnwindSafe(lifecycle(&mut env));
    let result = actix_rt::System::new().block_on(futures_util_catch(ok));
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
}

/// Run a future, catching its panic so the logs can be printed before the cluster is dropped.
async fn futures_util_catch<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> std::thread::Result<()> {
    let mut f = Box::pin(f.0);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    })
    .await
}

async fn lifecycle(env: &mut Env) {
    env.wait_ready().await;
    let events = Arc::new(Mutex::new(String::new()));
    actix_rt::spawn(collect_events(env.url("/v2/events"), events.clone()));

    // A bad body: 422 naming the field.
    let (status, body) = env
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(json!({"id": "bad", "cmd": "sleep 1", "instances": -1})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("/instances"), "{body}");

    // 3 instances: 3 RUNNING tasks, 3 live processes.
    let (status, body) = env
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(sleeper("/sleepers", 3)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(SLOW, "3 sleepers RUNNING", || env.settled("/sleepers", 3)).await;
    let tasks = env.running("/sleepers").await;
    for task in &tasks {
        let pids = env.task_pids(task);
        assert!(!pids.is_empty(), "task {task} has processes");
        assert!(pids.iter().all(|p| alive(*p)), "task {task} alive");
    }
    eventually(SLOW, "SSE status_update_event TASK_RUNNING", || async {
        let text = events.lock().unwrap().clone();
        text.contains("event: status_update_event") && text.contains("TASK_RUNNING")
    })
    .await;

    // Scale to 5, then to 2.
    let (status, body) = env
        .send(
            reqwest::Method::PUT,
            "/v2/apps/sleepers",
            Some(json!({"instances": 5})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "5 sleepers RUNNING", || env.settled("/sleepers", 5)).await;
    let five = env.running("/sleepers").await;
    let (status, body) = env
        .send(
            reqwest::Method::PUT,
            "/v2/apps/sleepers",
            Some(json!({"instances": 2})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "2 sleepers RUNNING", || env.settled("/sleepers", 2)).await;
    // The killed ones are gone for real.
    let kept = ids(&env.running("/sleepers").await);
    for task in five
        .iter()
        .filter(|t| !kept.contains(t["id"].as_str().unwrap()))
    {
        let what = format!("processes of scaled-down task {} gone", task["id"]);
        eventually(SLOW, &what, || async {
            env.task_pids(task).iter().all(|p| !alive(*p))
        })
        .await;
    }

    // Kill a task: replaced.
    let victim = kept.iter().next().unwrap().clone();
    let (status, body) = env
        .send(
            reqwest::Method::DELETE,
            &format!("/v2/apps/sleepers/tasks/{victim}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "killed task replaced", || async {
        let now = ids(&env.running("/sleepers").await);
        now.len() == 2 && !now.contains(&victim) && env.tasks("/sleepers").await.len() == 2
    })
    .await;

    // Rolling restart of 4 instances with minimumHealthCapacity 0.5: never fewer than 2
    // RUNNING.
    let (status, body) = env
        .send(
            reqwest::Method::PUT,
            "/v2/apps/sleepers",
            Some(json!({"instances": 4})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "4 sleepers RUNNING", || env.settled("/sleepers", 4)).await;
    let before = ids(&env.running("/sleepers").await);
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps/sleepers/restart", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + SLOW;
    let mut min_running = usize::MAX;
    loop {
        let running = env.running("/sleepers").await;
        min_running = min_running.min(running.len());
        assert!(
            running.len() >= 2,
            "capacity dropped to {} during the restart",
            running.len()
        );
        let now = ids(&running);
        if now.len() == 4 && now.is_disjoint(&before) && env.settled("/sleepers", 4).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "restart finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("rolling restart: at least {min_running} of 4 running throughout");

    // kill -9 of Marathon mid-deployment (scale 4 → 6), restart: converges, no duplicates.
    let (status, body) = env
        .send(
            reqwest::Method::PUT,
            "/v2/apps/sleepers",
            Some(json!({"instances": 6})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    env.cluster.signal("marathon", libc::SIGKILL);
    let _ = env.cluster.children.get_mut("marathon").unwrap().wait();
    env.spawn_marathon();
    eventually(SLOW, "6 sleepers after failover", || {
        env.settled("/sleepers", 6)
    })
    .await;
    let tasks = env.tasks("/sleepers").await;
    assert_eq!(ids(&tasks).len(), 6, "no task listed twice: {tasks:?}");
    // The cluster agrees: exactly 6 live tasks at the master, the ones Marathon lists.
    eventually(SLOW, "master has exactly Marathon's 6 tasks", || async {
        let Some(live) = env.master_live_tasks().await else {
            return false;
        };
        let listed = ids(&env.tasks("/sleepers").await);
        live.len() == 6 && live.iter().cloned().collect::<BTreeSet<_>>() == listed
    })
    .await;

    // Clean up through the API.
    let (status, body) = env
        .send(reqwest::Method::DELETE, "/v2/apps/sleepers", None)
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "all tasks gone at the master", || async {
        env.master_live_tasks().await.is_some_and(|l| l.is_empty())
    })
    .await;

    // A readiness check: the task's server answers 503 until `<dir>/warm` exists. The
    // deployment waits (its readinessCheckResults say why), then completes.
    let dir = env.cluster.dir.clone();
    std::fs::write(dir.join("ready.py"), READY_SERVER).unwrap();
    let warm = json!({
        "id": "/warm",
        "cmd": format!("exec python3 {}/ready.py {}", dir.display(), dir.display()),
        "cpus": 0.1,
        "mem": 32,
        "instances": 1,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 1,
                             "timeoutSeconds": 0, "preserveLastResponse": true}]
    });
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps", Some(warm))
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(
        SLOW,
        "the deployment reports a 503 readiness answer",
        || async {
            env.deployments().await.is_some_and(|ds| {
                ds.iter().any(|d| {
                    d["currentActions"][0]["readinessCheckResults"]
                        .as_array()
                        .is_some_and(|r| {
                            r.iter().any(|r| {
                                r["ready"] == json!(false)
                                    && r["lastResponse"]["status"] == json!(503)
                            })
                        })
                })
            })
        },
    )
    .await;
    assert_eq!(env.running("/warm").await.len(), 1);
    std::fs::write(dir.join("warm"), b"").unwrap();
    eventually(SLOW, "deployment done once the task is ready", || async {
        env.deployments().await.is_some_and(|ds| ds.is_empty())
    })
    .await;
    let (status, body) = env
        .send(reqwest::Method::DELETE, "/v2/apps/warm", None)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// `/ready` answers 503 until `<argv[1]>/warm` exists, then 200.
const READY_SERVER: &str = r#"
import os, sys, http.server
port = int(os.environ['PORT0'])
warm = os.path.join(sys.argv[1], 'warm')
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if os.path.exists(warm) else 503
        body = b'warm\n' if code == 200 else b'warming up\n'
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(('0.0.0.0', port), H).serve_forever()
"#;

#[test]
fn marathon_unique_constraint_queues_and_failing_health_checks_replace_tasks() {
    let mut env = Env::start("marathon-place");
    let ok = std::panic::AssertUnwindSafe(placement_and_health(&mut env));
    let result = actix_rt::System::new().block_on(futures_util_catch(ok));
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
}

async fn placement_and_health(env: &mut Env) {
    env.wait_ready().await;

    // UNIQUE hostname, 3 instances, 2 slaves: 2 run (on different hosts), 1 waits in the queue.
    let mut unique = sleeper("/unique", 3);
    unique["constraints"] = json!([["hostname", "UNIQUE"]]);
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps", Some(unique))
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(SLOW, "2 unique RUNNING and 1 queued", || async {
        let running = env.running("/unique").await;
        let queued = get_json(&env.url("/v2/queue")).await.is_some_and(|q| {
            q["queue"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| i["app"]["id"] == "/unique" && i["count"] == 1)
            })
        });
        running.len() == 2 && queued
    })
    .await;
    let hosts: BTreeSet<String> = env
        .running("/unique")
        .await
        .iter()
        .filter_map(|t| t["host"].as_str().map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), 2, "one per host");
    let (status, body) = env
        .send(reqwest::Method::DELETE, "/v2/apps/unique", None)
        .await;
    assert_eq!(status, 200, "{body}");

    // A failing HTTP health check: the slave kills the task, Marathon replaces it.
    let mut sick = sleeper("/sick", 1);
    sick["healthChecks"] = json!([{
        "protocol": "HTTP",
        "portIndex": 0,
        "path": "/",
        "gracePeriodSeconds": 1,
        "intervalSeconds": 1,
        "timeoutSeconds": 1,
        "maxConsecutiveFailures": 1
    }]);
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps", Some(sick))
        .await;
    assert_eq!(status, 201, "{body}");
    let seen = Mutex::new(BTreeSet::new());
    eventually(SLOW, "unhealthy task replaced twice", || async {
        let tasks = env.tasks("/sick").await;
        let mut seen = seen.lock().unwrap();
        seen.extend(ids(&tasks));
        seen.len() >= 3
    })
    .await;
    let (status, body) = env
        .send(reqwest::Method::DELETE, "/v2/apps/sick", None)
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(SLOW, "all tasks gone at the master", || async {
        env.master_live_tasks().await.is_some_and(|l| l.is_empty())
    })
    .await;
}
