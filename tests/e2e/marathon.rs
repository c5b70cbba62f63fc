//! Marathon end to end: `plateau master`, two `plateau slave`s (127.0.0.2 and 127.0.0.3) and
//! `plateau marathon` as separate processes, driven only through Marathon's REST API v2.
//! Tasks are real processes in real cgroups (the test runs as root, as CI does).
//!
//! Three scenarios (each on its own cluster):
//! - lifecycle: 422 naming the field for a bad body; an app of 3 real processes; scale to 5
//!   and back to 2; a killed task is replaced; SSE shows `status_update_event`s; a rolling
//!   restart never drops below `minimumHealthCapacity × instances`; kill -9 of Marathon in
//!   the middle of a deployment and a restart on the same work dir converge without
//!   duplicate tasks.
//! - placement and health: UNIQUE hostname with 3 instances on 2 slaves runs 2 and queues 1;
//!   an app whose HTTP health check fails has its tasks replaced; a deployment waits for a
//!   readiness check (a real HTTP server answering 503, then 200) before it completes.
//! - leader + standbys: three masters (`--peers`), two slaves, two Marathons on the masters'
//!   list; the leading Marathon is killed with kill -9 right after its last acknowledged
//!   write. The standby takes over and answers a write as the leader (the time from the kill
//!   is printed; pass/fail uses a generous deadline, this is not a benchmark); every write
//!   acknowledged before the kill is there, at its latest version; every app runs exactly its
//!   instance count, in Marathon's view, at the master and as task processes on the slaves,
//!   and the master never saw a task end (none was launched twice); the tasks that ran before
//!   the kill keep their processes; the killed Marathon comes back as a standby.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{
    agreed_master, await_some, catch_panic, eventually, free_port, get_json, task_cgroups,
    task_pids, Cluster,
};

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
    let result = actix_rt::System::new().block_on(catch_panic(ok));
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
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
    let result = actix_rt::System::new().block_on(catch_panic(ok));
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

// ---- leader + standbys: three masters, two Marathons -----------------------------------------

/// Pass/fail limit from the kill of the leading Marathon to a write answered by the new
/// leader. Generous: the point is that a standby takes over, not how fast (the measured time
/// is printed; a Marathon failover usually takes the session TTL, 3 s, plus an election).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

/// Three masters, two slaves, two Marathons on the masters' list.
struct HaEnv {
    cluster: Cluster,
    masters: Vec<String>,
    /// Each Marathon's HOST:PORT; child `marathon-<i>`.
    marathons: Vec<String>,
    marathon_args: Vec<Vec<String>>,
    /// Slave hostname (its IP) → its work dir.
    slaves: BTreeMap<String, PathBuf>,
    client: reqwest::Client,
}

/// An answer: status, the `X-Marathon-Leader` header, the JSON body.
struct Answer {
    status: u16,
    leader_header: Option<String>,
    body: Value,
}

impl HaEnv {
    fn start(test: &str) -> HaEnv {
        let mut cluster = Cluster::new(test);
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let masters: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
            .collect();
        for i in 0..masters.len() {
            cluster.spawn_master(i, &masters);
        }
        let peers = masters.join(",");
        let mut slaves = BTreeMap::new();
        for i in 1..=2u32 {
            let ip = format!("127.0.0.{}", i + 1);
            let resources = format!(
                "cpus:1;mem:512;disk:1000;ports:[{}-{}]",
                33000 + i * 100,
                33099 + i * 100
            );
            let (_, work) = cluster.start_slave(&format!("slave-{i}"), &ip, &peers, &resources);
            slaves.insert(ip, work);
        }
        let marathons: Vec<String> = (0..2)
            .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
            .collect();
        let marathon_args = marathons
            .iter()
            .enumerate()
            .map(|(i, listen)| {
                let work = dir.join(format!("marathon-{i}"));
                [
                    "marathon",
                    "--master",
                    &peers,
                    "--ha",
                    "true",
                    "--listen",
                    listen,
                    "--work-dir",
                    work.to_str().unwrap(),
                    "--tls-dir",
                    &tls,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            })
            .collect();
        let mut env = HaEnv {
            cluster,
            masters,
            marathons,
            marathon_args,
            slaves,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        for i in 0..env.marathons.len() {
            env.spawn_marathon(i);
        }
        env
    }

    fn spawn_marathon(&mut self, i: usize) {
        let args: Vec<&str> = self.marathon_args[i].iter().map(String::as_str).collect();
        self.cluster.spawn(&format!("marathon-{i}"), &args);
    }

    /// kill -9 of Marathon `i`; returns once the process is gone.
    fn kill_marathon(&mut self, i: usize) {
        let name = format!("marathon-{i}");
        self.cluster.signal(&name, libc::SIGKILL);
        let _ = self.cluster.children.get_mut(&name).unwrap().wait();
    }

    /// `METHOD http://marathon/path`; None when unreachable.
    async fn send(
        &self,
        marathon: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<Answer> {
        let mut req = self
            .client
            .request(method, format!("http://{marathon}{path}"));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let leader_header = resp
            .headers()
            .get("x-marathon-leader")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Some(Answer {
            status,
            leader_header,
            body,
        })
    }

    /// A write that must be acknowledged: panics on anything but `expected`.
    async fn acked(
        &self,
        marathon: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        let what = format!("{method} {path}");
        let answer = self
            .send(marathon, method, path, body)
            .await
            .unwrap_or_else(|| panic!("{what}: {marathon} unreachable"));
        assert_eq!(answer.status, expected, "{what}: {}", answer.body);
        answer.body
    }

    /// The Marathon leader every one of `marathons` names.
    async fn agreed_marathon(&self, marathons: &[String]) -> Option<String> {
        let mut seen = None;
        for m in marathons {
            let leader = get_json(&format!("http://{m}/v2/leader")).await?["leader"]
                .as_str()?
                .to_string();
            if seen.get_or_insert_with(|| leader.clone()) != &leader {
                return None;
            }
        }
        seen
    }

    async fn tasks(&self, marathon: &str, app: &str) -> Vec<Value> {
        get_json(&format!("http://{marathon}/v2/apps{app}/tasks"))
            .await
            .and_then(|v| v["tasks"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Every app of `expected` (id → instances) has exactly that many tasks, all RUNNING,
    /// and no deployment is in progress.
    async fn settled(&self, marathon: &str, expected: &BTreeMap<&str, usize>) -> bool {
        for (app, n) in expected {
            let tasks = self.tasks(marathon, app).await;
            if tasks.len() != *n || tasks.iter().any(|t| t["state"] != "TASK_RUNNING") {
                return false;
            }
        }
        get_json(&format!("http://{marathon}/v2/deployments"))
            .await
            .and_then(|d| d.as_array().map(Vec::is_empty))
            .unwrap_or(false)
    }

    /// Task id → pids of every task cgroup holding a process, on all slaves.
    fn task_processes(&self) -> BTreeMap<String, Vec<i32>> {
        self.slaves.values().flat_map(|w| task_cgroups(w)).collect()
    }

    fn dump_logs(&self) {
        // What the cluster says now, while its processes still run.
        let mut urls: Vec<String> = self
            .masters
            .iter()
            .map(|m| format!("http://{m}/master/state"))
            .collect();
        for m in &self.marathons {
            for path in ["/v2/info", "/v2/queue", "/v2/deployments", "/v2/tasks"] {
                urls.push(format!("http://{m}{path}"));
            }
        }
        actix_rt::System::new().block_on(async {
            for url in &urls {
                let answer = tokio::time::timeout(Duration::from_secs(5), get_json(url)).await;
                eprintln!("---- {url}: {answer:?}");
            }
        });
        let names = [
            "marathon-0",
            "marathon-1",
            "master-0",
            "master-1",
            "master-2",
            "slave-1",
            "slave-2",
        ];
        for name in names {
            let log = self.cluster.log(name);
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("openraft")).collect();
            eprintln!("---- {name} log (last lines, without the raft library's) ----");
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

#[test]
fn two_marathons_a_killed_leader_loses_no_acknowledged_write_and_launches_no_task_twice() {
    let mut env = HaEnv::start("marathon-ha");
    let run = std::panic::AssertUnwindSafe(leader_failover(&mut env));
    let result = actix_rt::System::new().block_on(catch_panic(run));
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
}

async fn leader_failover(env: &mut HaEnv) {
    use reqwest::Method;

    let master = await_some(SLOW, "a master all three agree on", || {
        agreed_master(&env.masters)
    })
    .await;
    eventually(SLOW, "two slaves registered", || async {
        get_json(&format!("http://{master}/master/state"))
            .await
            .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
    })
    .await;
    let marathons = env.marathons.clone();
    let leader = await_some(SLOW, "a Marathon leader both name", || {
        env.agreed_marathon(&marathons)
    })
    .await;
    let killed = marathons.iter().position(|m| *m == leader).unwrap();
    let standby = marathons[1 - killed].clone();
    let info = get_json(&format!("http://{leader}/v2/info")).await.unwrap();
    assert_eq!(info["elected"], true, "{info}");
    let info = get_json(&format!("http://{standby}/v2/info"))
        .await
        .unwrap();
    assert_eq!(info["elected"], false, "{info}");
    assert_eq!(info["leader"], leader.as_str(), "{info}");

    // Acknowledged writes, each app's latest version as its answer gave it.
    let mut versions: BTreeMap<&str, String> = BTreeMap::new();
    let mut instances: BTreeMap<&str, usize> = BTreeMap::new();
    let version_of = |body: &Value| body["version"].as_str().unwrap().to_string();
    // Through the standby, which forwards it.
    let body = env
        .acked(
            &standby,
            Method::POST,
            "/v2/apps",
            Some(sleeper("/sleepy", 2)),
            201,
        )
        .await;
    versions.insert("/sleepy", version_of(&body));
    instances.insert("/sleepy", 2);
    let body = env
        .acked(
            &leader,
            Method::POST,
            "/v2/apps",
            Some(sleeper("/scaled", 1)),
            201,
        )
        .await;
    versions.insert("/scaled", version_of(&body));
    instances.insert("/scaled", 1);
    let body = env
        .acked(
            &leader,
            Method::POST,
            "/v2/apps",
            Some(sleeper("/idle", 0)),
            201,
        )
        .await;
    versions.insert("/idle", version_of(&body));
    instances.insert("/idle", 0);
    env.acked(
        &leader,
        Method::POST,
        "/v2/apps",
        Some(sleeper("/gone", 0)),
        201,
    )
    .await;
    eventually(SLOW, "sleepy 2, scaled 1 RUNNING", || {
        env.settled(&leader, &instances)
    })
    .await;
    env.acked(&leader, Method::DELETE, "/v2/apps/gone", None, 200)
        .await;
    let body = env
        .acked(
            &leader,
            Method::PUT,
            "/v2/apps/idle",
            Some(json!({"labels": {"round": "2"}})),
            200,
        )
        .await;
    versions.insert("/idle", version_of(&body));
    let before_kill = env.tasks(&leader, "/sleepy").await;
    let pids_before: BTreeMap<String, Vec<i32>> = before_kill
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap().to_string();
            let work = &env.slaves[t["host"].as_str().unwrap()];
            let pids = task_pids(work, &id);
            assert!(!pids.is_empty(), "task {id} has processes");
            (id, pids)
        })
        .collect();
    let framework_id = get_json(&format!("http://{leader}/v2/info")).await.unwrap()["frameworkId"]
        .as_str()
        .map(str::to_string);
    // The last write before the kill starts a deployment (1 → 3) the new leader inherits.
    let body = env
        .acked(
            &leader,
            Method::PUT,
            "/v2/apps/scaled",
            Some(json!({"instances": 3})),
            200,
        )
        .await;
    versions.insert("/scaled", version_of(&body));
    instances.insert("/scaled", 3);

    let killed_at = std::time::Instant::now(); // determinism-ok: a test measuring wall time
    env.kill_marathon(killed);

    // The standby takes over and answers a write as the leader. The standby holds a request
    // while nobody leads (for `LEADER_PROXY_WAIT`); should the takeover take longer, it
    // answers 502 "Could not determine the current leader", or 503 if it lost a race with
    // its own election: not acknowledged, sent again (a scale is idempotent). Any other
    // answer fails the test: a request lost on its way to the dead leader (502 "Proxying to
    // the leader failed") is a bug.
    let retries = std::cell::Cell::new(0u32);
    let (elected_after, write_after, body) = {
        let elected = async {
            let named = await_some(
                FAILOVER_DEADLINE,
                "the standby names itself leader",
                || async {
                    let named = get_json(&format!("http://{standby}/v2/leader")).await?;
                    (named["leader"] == standby.as_str()).then_some(())
                },
            );
            named.await;
            killed_at.elapsed()
        };
        let write = async {
            let me = format!("http://{standby}");
            let retries = &retries;
            let body = await_some(
                FAILOVER_DEADLINE,
                "a write answered by the new leader",
                || async {
                    let answer = env
                        .send(
                            &standby,
                            Method::PUT,
                            "/v2/apps/sleepy",
                            Some(json!({"instances": 3})),
                        )
                        .await?;
                    if answer.status == 200 {
                        assert_eq!(answer.leader_header.as_deref(), Some(me.as_str()));
                        Some(answer.body)
                    } else {
                        let waited_too_long = answer.status == 502
                            && answer.body["message"] == "Could not determine the current leader";
                        assert!(
                            waited_too_long || answer.status == 503,
                            "a write during the failover: {} {}",
                            answer.status,
                            answer.body
                        );
                        retries.set(retries.get() + 1);
                        None
                    }
                },
            );
            let body = body.await;
            (killed_at.elapsed(), body)
        };
        let (elected_after, (write_after, body)) = tokio::join!(elected, write);
        (elected_after, write_after, body)
    };
    eprintln!(
        "Marathon failover, kill -9 of the leader to: /v2/leader naming the standby \
         {elected_after:?}; a write (PUT) answered by it as leader {write_after:?} \
         (sent {} times)",
        retries.get() + 1
    );
    versions.insert("/sleepy", version_of(&body));
    instances.insert("/sleepy", 3);
    let info = get_json(&format!("http://{standby}/v2/info"))
        .await
        .unwrap();
    assert_eq!(info["elected"], true, "{info}");
    assert_eq!(info["leader"], standby.as_str(), "{info}");
    let body = env
        .acked(
            &standby,
            Method::POST,
            "/v2/apps",
            Some(sleeper("/after", 1)),
            201,
        )
        .await;
    versions.insert("/after", version_of(&body));
    instances.insert("/after", 1);

    // No acknowledged write lost: every app at its latest acknowledged version; the deleted
    // one stays deleted.
    for (app, version) in &versions {
        let body = env
            .acked(&standby, Method::GET, &format!("/v2/apps{app}"), None, 200)
            .await;
        assert_eq!(body["app"]["version"], version.as_str(), "{app}: {body}");
        assert_eq!(body["app"]["instances"], instances[app], "{app}: {body}");
    }
    let idle = env
        .acked(&standby, Method::GET, "/v2/apps/idle", None, 200)
        .await;
    assert_eq!(idle["app"]["labels"]["round"], "2", "{idle}");
    let gone = env
        .send(&standby, Method::GET, "/v2/apps/gone", None)
        .await
        .unwrap();
    assert_eq!(gone.status, 404, "{}", gone.body);
    let listed = env
        .acked(&standby, Method::GET, "/v2/apps", None, 200)
        .await;
    let listed: BTreeSet<&str> = listed["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(listed, versions.keys().copied().collect(), "apps listed");

    // No task launched twice: each app runs exactly its instance count — in Marathon's
    // view, at the master, and as task processes on the slaves — and the master never saw a
    // task end.
    eventually(SLOW, "every app at its instance count", || {
        env.settled(&standby, &instances)
    })
    .await;
    let mut listed_tasks = BTreeSet::new();
    for (app, n) in &instances {
        let tasks = ids(&env.tasks(&standby, app).await);
        assert_eq!(tasks.len(), *n, "{app}: {tasks:?}");
        listed_tasks.extend(tasks);
    }
    let processes = env.task_processes();
    for (app, n) in &instances {
        let running: Vec<&String> = processes
            .keys()
            .filter(|t| plateau_marathon::state::app_id_of_task(t).as_deref() == Some(*app))
            .collect();
        assert_eq!(running.len(), *n, "{app}: task processes {running:?}");
    }
    assert_eq!(
        processes.keys().cloned().collect::<BTreeSet<_>>(),
        listed_tasks,
        "the task processes on the slaves are the tasks Marathon lists"
    );
    for pid in processes.values().flatten() {
        assert!(alive(*pid), "pid {pid} alive");
    }
    for (task, pids) in &pids_before {
        assert_eq!(
            processes.get(task),
            Some(pids),
            "task {task} kept its processes"
        );
    }
    let state = get_json(&format!("http://{master}/master/state"))
        .await
        .unwrap();
    let frameworks = state["frameworks"].as_array().unwrap();
    assert_eq!(
        frameworks.len(),
        1,
        "one Marathon framework: {frameworks:?}"
    );
    let framework = &frameworks[0];
    if let Some(id) = &framework_id {
        assert_eq!(
            framework["id"],
            id.as_str(),
            "the new leader took the framework over"
        );
    }
    let at_master: BTreeSet<String> = framework["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "TASK_RUNNING", "{t}");
            t["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(at_master, listed_tasks, "the master's tasks are Marathon's");
    let completed = framework["completed_tasks"].as_array().unwrap();
    assert!(completed.is_empty(), "no task ended: {completed:?}");

    // The killed Marathon comes back as a standby of the new leader.
    env.spawn_marathon(killed);
    eventually(
        SLOW,
        "the restarted Marathon follows the new leader",
        || async { env.agreed_marathon(&marathons).await.as_deref() == Some(standby.as_str()) },
    )
    .await;
    let info = get_json(&format!("http://{leader}/v2/info")).await.unwrap();
    assert_eq!(info["elected"], false, "{info}");
    let tasks = ids(&env.tasks(&leader, "/sleepy").await);
    assert_eq!(
        tasks.len(),
        3,
        "read through the restarted standby: {tasks:?}"
    );
}
