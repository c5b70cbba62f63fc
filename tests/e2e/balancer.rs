//! The balancer end to end: `plateau master`, two `plateau slave`s (127.0.0.2 and 127.0.0.3),
//! `plateau marathon` and `plateau balancer` as separate processes. Apps are real Python HTTP
//! servers on `$PORT0` that answer with their task id.
//!
//! One scenario, in order, on one app with an HTTP health check, a Marathon-assigned service
//! port and a virtual host:
//! - the app answers through the balancer's TCP service port;
//! - scaled from 1 to 3, new connections reach all three tasks while a keep-alive connection
//!   opened before the change keeps working (no reload);
//! - HTTP virtual hosts: `Host: web.test` reaches the app, an unknown host does not;
//! - a task whose health check fails stops getting traffic;
//! - a rolling restart (`POST /v2/apps/web/restart`) under a steady request loop answers
//!   every request with 200.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{eventually, free_port, get_json, Cluster};

/// Deadline for anything that involves launching processes on a slow, shared machine.
const SLOW: Duration = Duration::from_secs(120);

/// The app: HTTP/1.1 with keep-alive, answers its task id; `/health` answers 503 while
/// `<dir>/sick-<port>` exists; on SIGTERM it keeps serving 2 s (requests in flight finish).
pub(super) const SERVER: &str = r#"
import os, sys, signal, threading, http.server
port = int(os.environ['PORT0'])
tid = os.environ.get('MESOS_TASK_ID', 'unknown')
sick = os.path.join(sys.argv[1], 'sick-%d' % port)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        if self.path == '/health' and os.path.exists(sick):
            code, body = 503, b'sick\n'
        else:
            code, body = 200, (tid + '\n').encode()
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(('0.0.0.0', port), H)
srv.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: threading.Timer(2.0, lambda: os._exit(0)).start())
srv.serve_forever()
"#;

struct Env {
    cluster: Cluster,
    master: String,
    marathon: String,
    stats: String,
    http: String,
    client: reqwest::Client,
}

impl Env {
    fn start(test: &str) -> Env {
        let mut cluster = Cluster::new(test);
        let dir = cluster.dir.clone();
        let tls = cluster.tls().to_str().unwrap().to_string();
        let master = cluster.start_master();
        for i in 1..=2u32 {
            let ip = format!("127.0.0.{}", i + 1);
            let resources = format!(
                "cpus:2;mem:1024;disk:1000;ports:[{}-{}]",
                33000 + i * 100,
                33099 + i * 100
            );
            cluster.start_slave(&format!("slave-{i}"), &ip, &master, &resources);
        }
        let marathon = cluster.start_marathon(&master);
        let stats = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let http_port = free_port("127.0.0.1");
        cluster.spawn(
            "balancer",
            &[
                "balancer",
                "--marathon",
                &marathon,
                "--listen-ip",
                "127.0.0.1",
                "--stats",
                &stats,
                "--http-port",
                &http_port.to_string(),
                "--tls-dir",
                &tls,
            ],
        );
        std::fs::write(dir.join("server.py"), SERVER).unwrap();
        Env {
            cluster,
            master,
            marathon,
            stats,
            http: format!("127.0.0.1:{http_port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    async fn wait_ready(&self) {
        let state = format!("http://{}/master/state", self.master);
        eventually(SLOW, "two slaves registered", || async {
            get_json(&state)
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(2.0))
        })
        .await;
        let ping = format!("http://{}/v2/info", self.marathon);
        eventually(SLOW, "marathon answers", || async {
            get_json(&ping).await.is_some()
        })
        .await;
        let stats = format!("http://{}/stats", self.stats);
        eventually(SLOW, "the balancer has a table from marathon", || async {
            get_json(&stats)
                .await
                .is_some_and(|s| s["table_version"].is_u64())
        })
        .await;
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("http://{}{path}", self.marathon));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("marathon request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn app(&self) -> Value {
        get_json(&format!(
            "http://{}/v2/apps/web?embed=apps.tasks",
            self.marathon
        ))
        .await
        .map(|v| v["app"].clone())
        .unwrap_or(Value::Null)
    }

    /// Ids of the tasks Marathon reports healthy, when it has exactly `n` tasks and no
    /// deployment.
    async fn healthy_tasks(&self, n: usize) -> Option<Vec<Value>> {
        let app = self.app().await;
        let tasks = app["tasks"].as_array()?.clone();
        let healthy = tasks
            .iter()
            .filter(|t| {
                t["state"] == "TASK_RUNNING"
                    && t["healthCheckResults"]
                        .as_array()
                        .is_some_and(|r| r.iter().all(|h| h["alive"] == true) && !r.is_empty())
            })
            .count();
        let idle = app["deployments"].as_array().is_some_and(|d| d.is_empty());
        (tasks.len() == n && healthy == n && idle).then_some(tasks)
    }

    fn dump_logs(&self) {
        for name in ["marathon", "balancer", "slave-1", "slave-2"] {
            let tail = super::support::last_lines(&self.cluster.log(name), 60);
            eprintln!("---- {name} (last lines) ----\n{tail}");
        }
    }
}

/// One GET over a fresh connection (`Connection: close`): status and body.
async fn get_once(addr: &str, host: &str) -> Option<(u16, String)> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    request(&mut s, host, true).await
}

/// One HTTP/1.1 GET on `s`, reading exactly the response (Content-Length bodies only).
async fn request(s: &mut TcpStream, host: &str, close: bool) -> Option<(u16, String)> {
    let conn = if close { "close" } else { "keep-alive" };
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: {conn}\r\n\r\n");
    tokio::time::timeout(Duration::from_secs(10), async {
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]);
                return Some((status, body.trim().to_string()));
            }
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .ok()?
}

/// Task ids answering `n` fresh requests in a row, or `None` if any failed.
async fn answering(addr: &str, host: &str, n: usize) -> Option<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        let (status, body) = get_once(addr, host).await?;
        if status != 200 {
            return None;
        }
        seen.insert(body);
    }
    Some(seen)
}

fn web_app(dir: &Path) -> Value {
    json!({
        "id": "/web",
        "cmd": format!("exec python3 {}/server.py {}", dir.display(), dir.display()),
        "cpus": 0.1,
        "mem": 64,
        "instances": 1,
        "portDefinitions": [{"port": 0}],
        "labels": {"HAPROXY_0_VHOST": "web.test"},
        "backoffSeconds": 1,
        "taskKillGracePeriodSeconds": 5,
        "healthChecks": [{
            "protocol": "HTTP",
            "portIndex": 0,
            "path": "/health",
            "gracePeriodSeconds": 30,
            "intervalSeconds": 1,
            "timeoutSeconds": 2,
            "maxConsecutiveFailures": 100000
        }],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
    })
}

async fn scenario(env: &Env) {
    env.wait_ready().await;
    let dir = env.cluster.dir.clone();
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps", Some(web_app(&dir)))
        .await;
    assert_eq!(status, 201, "create: {body}");

    // Service port, as Marathon assigned it.
    let app = env.app().await;
    let service_port = app["portDefinitions"][0]["port"].as_u64().unwrap();
    assert!(service_port > 0, "{app}");
    let tcp = format!("127.0.0.1:{service_port}");
    eventually(SLOW, "one healthy task", || async {
        env.healthy_tasks(1).await.is_some()
    })
    .await;
    eventually(
        SLOW,
        "the app answers through the TCP service port",
        || async { answering(&tcp, "x", 1).await.is_some() },
    )
    .await;

    // A keep-alive connection opened before scaling.
    let mut kept = TcpStream::connect(&tcp).await.unwrap();
    let (status, first) = request(&mut kept, "x", false)
        .await
        .expect("keep-alive GET");
    assert_eq!(status, 200);

    let (status, body) = env
        .send(
            reqwest::Method::PUT,
            "/v2/apps/web",
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(status, 200, "scale: {body}");
    eventually(SLOW, "three healthy tasks", || async {
        env.healthy_tasks(3).await.is_some()
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "new connections reach all three tasks",
        || async { answering(&tcp, "x", 12).await.is_some_and(|s| s.len() == 3) },
    )
    .await;
    let again = request(&mut kept, "x", false).await;
    assert_eq!(
        again,
        Some((200, first.clone())),
        "the keep-alive connection survived the change, on its backend"
    );
    drop(kept);

    // HTTP virtual hosts.
    eventually(
        Duration::from_secs(30),
        "vhost web.test answers",
        || async { answering(&env.http, "web.test", 3).await.is_some() },
    )
    .await;
    let other = get_once(&env.http, "other.test").await;
    assert!(
        other.as_ref().is_some_and(|(s, _)| *s != 200),
        "unknown host must not reach the app: {other:?}"
    );

    // A failing health check: that task stops getting traffic.
    let tasks = env.healthy_tasks(3).await.expect("three healthy tasks");
    let sick_task = tasks[0]["id"].as_str().unwrap().to_string();
    let sick_port = tasks[0]["ports"][0].as_u64().unwrap();
    let sick_file = dir.join(format!("sick-{sick_port}"));
    std::fs::write(&sick_file, b"").unwrap();
    eventually(SLOW, "the sick task gets no traffic", || async {
        answering(&tcp, "x", 12)
            .await
            .is_some_and(|s| s.len() == 2 && !s.contains(&sick_task))
    })
    .await;
    std::fs::remove_file(&sick_file).unwrap();
    eventually(SLOW, "three healthy tasks again", || async {
        env.healthy_tasks(3).await.is_some()
    })
    .await;

    // A rolling restart under a steady request loop: every request answered 200.
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
    let looper = {
        let (stop, results, http) = (stop.clone(), results.clone(), env.http.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(format!("http://{http}/"))
                    .header("Host", "web.test")
                    .send()
                    .await;
                let r = match r {
                    Ok(resp) => {
                        let s = resp.status().as_u16();
                        match resp.bytes().await {
                            Ok(_) => Ok(s),
                            Err(e) => Err(format!("body: {e}")),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                results.lock().unwrap().push(r);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let before: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let (status, body) = env
        .send(reqwest::Method::POST, "/v2/apps/web/restart", None)
        .await;
    assert_eq!(status, 200, "restart: {body}");
    eventually(SLOW, "restart done: three new healthy tasks", || async {
        env.healthy_tasks(3).await.is_some_and(|t| {
            t.iter()
                .all(|t| !before.contains(t["id"].as_str().unwrap_or("")))
        })
    })
    .await;
    // A few more requests after the old tasks are gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    looper.await.unwrap();
    let results = results.lock().unwrap().clone();
    let bad: Vec<_> = results.iter().filter(|r| **r != Ok(200)).collect();
    assert!(results.len() >= 20, "too few requests: {}", results.len());
    assert!(
        bad.is_empty(),
        "{} of {} requests failed during the restart: {bad:?}",
        bad.len(),
        results.len()
    );
    eprintln!("rolling restart: {} requests, all 200", results.len());
}

#[test]
fn balancer_follows_marathon_scale_health_vhosts_and_rolling_restart() {
    let env = Env::start("balancer");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(scenario(&env))));
    if let Err(panic) = result {
        env.dump_logs();
        std::panic::resume_unwind(panic);
    }
}
