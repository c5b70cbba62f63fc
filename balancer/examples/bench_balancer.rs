//! Pieces for `bench/balancer.sh`: a trivial HTTP backend, the balancer's data plane routing
//! one virtual host (`bench.local`) and one service port to it, and the task-lifecycle
//! measurements.
//!
//! ```text
//! bench_balancer backend <port> [<name>]
//! bench_balancer balancer <http-port> <backend-port> <service-port> [<threads>]
//! bench_balancer lifecycle
//! ```
//! `backend` and `balancer` run until killed. `lifecycle` runs the whole balancer (its actor
//! on a node, following a stand-in Marathon through the typed change feed, and its data
//! plane) in front of real backend processes under steady keep-alive load, and prints one
//! JSON line:
//! - `running_to_routed_ms`: the longest time, over every task started, from the moment the
//!   Marathon process sends the delta saying the task is RUNNING to the first response from
//!   that task reaching a client (so an upper bound of "first request routed to it");
//!   `running_to_routed_ms_samples` has each one;
//! - `failed_during_scale_down`: failed requests (anything but a 200, or a broken
//!   connection) while 4 tasks are scaled down to 1 the way Marathon does it with Plateau:
//!   each task is first marked draining (TASK_KILLING / kill intent), the task process is
//!   killed once the balancer shows no request in flight on it, and it leaves the feed;
//! - `failed_during_rolling_restart`: the same while every task is replaced one by one
//!   (start the new task, RUNNING, then drain, kill and remove an old one).

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use plateau_balancer::dataplane::{DataPlane, DataPlaneConfig};
use plateau_balancer::messages::{
    AppRoutes, Backend, BackendState, RoutesChanged, RoutesSnapshot, SubscribeRoutes,
};
use plateau_balancer::table::RoutingState;
use plateau_balancer::BalancerConfig;
use plateau_runtime::{Context, Handlers, Node, NodeConfig, Process, Upid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn port(arg: Option<String>, what: &str) -> u16 {
    arg.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("missing or bad {what}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("backend") => {
            let p = port(args.next(), "port");
            backend(p, args.next().unwrap_or_else(|| "ok".into()))
        }
        Some("balancer") => {
            let http = port(args.next(), "http port");
            let backend = port(args.next(), "backend port");
            let service = port(args.next(), "service port");
            let threads = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
            balancer(http, backend, service, threads)
        }
        Some("lifecycle") => lifecycle(),
        _ => {
            eprintln!("usage: bench_balancer backend <port> [<name>] | balancer <http-port> <backend-port> <service-port> [<threads>] | lifecycle");
            std::process::exit(2);
        }
    }
}

/// An HTTP backend answering `<name>\n` to everything.
fn backend(port: u16, name: String) {
    let body = Bytes::from(format!("{name}\n"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind backend");
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
}

fn balancer(http: u16, backend: u16, service: u16, threads: usize) {
    let dp = DataPlane::start(DataPlaneConfig {
        http_addr: Some(SocketAddr::from(([127, 0, 0, 1], http))),
        worker_threads: threads,
        ..DataPlaneConfig::loopback()
    })
    .expect("start data plane");
    let mut state = RoutingState::new(None);
    state.handle_snapshot(RoutesSnapshot {
        leader_epoch: 0,
        version: 1,
        apps: vec![AppRoutes {
            app_id: "/bench".into(),
            service_ports: vec![service],
            labels: [("HAPROXY_0_VHOST".to_string(), "bench.local".to_string())].into(),
            has_health_checks: false,
            backends: vec![Backend {
                task_id: "bench.1".into(),
                host: "127.0.0.1".into(),
                ports: vec![backend],
                state: BackendState::Running,
                healthy: None,
            }],
        }],
    });
    dp.publish(Arc::new(state.table()));
    eprintln!(
        "balancer: http {:?}, admin {:?}, service port {service}",
        dp.http_addr(),
        dp.admin_addr()
    );
    loop {
        std::thread::park();
    }
}

// ---------------------------------------------------------------- lifecycle

const APP: &str = "/bench";
const VHOST: &str = "bench.local";
/// Keep-alive client connections of the steady load.
const LOAD_CONNECTIONS: usize = 8;
/// Steady load between two steps of a scale-down or rolling restart.
const STEP_DWELL: Duration = Duration::from_millis(250);
/// Longest wait for anything in the lifecycle run.
const WAIT_MAX: Duration = Duration::from_secs(20);

/// Marathon's side of the change feed: a snapshot per subscription, then deltas.
struct StandInMarathon {
    version: u64,
    app: AppRoutes,
    subscribers: Vec<Upid>,
}

impl StandInMarathon {
    fn handle_subscribe(&mut self, ctx: &mut Context<'_>, from: &Upid, _msg: SubscribeRoutes) {
        if !self.subscribers.contains(from) {
            self.subscribers.push(from.clone());
        }
        ctx.send(
            from,
            RoutesSnapshot {
                leader_epoch: 0,
                version: self.version,
                apps: vec![self.app.clone()],
            },
        );
    }

    /// The app's tasks changed: send the delta, as Marathon does on a task status update.
    fn set_backends(&mut self, ctx: &mut Context<'_>, backends: Vec<Backend>) {
        self.version += 1;
        self.app.backends = backends;
        for s in &self.subscribers {
            ctx.send(
                s,
                RoutesChanged {
                    version: self.version,
                    upserts: vec![self.app.clone()],
                    removed_apps: vec![],
                },
            );
        }
    }
}

impl Process for StandInMarathon {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_subscribe);
    }
}

/// A backend task: a real process of this example, killed when dropped.
struct Task {
    name: String,
    port: u16,
    child: std::process::Child,
}

impl Drop for Task {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

async fn start_task(name: &str) -> Task {
    let port = free_port();
    let child = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["backend", &port.to_string(), name])
        .spawn()
        .expect("start backend task");
    let task = Task {
        name: name.to_string(),
        port,
        child,
    };
    let deadline = Instant::now() + WAIT_MAX; // determinism-ok: benchmark
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "task {name} never listened"); // determinism-ok: benchmark
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task
}

fn backend_of(task: &Task, state: BackendState) -> Backend {
    Backend {
        task_id: task.name.clone(),
        host: "127.0.0.1".into(),
        ports: vec![task.port],
        state,
        healthy: None,
    }
}

/// Steady closed-loop load: counts and the first time each task answered.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    first_answer: Mutex<BTreeMap<String, Instant>>,
}

impl Load {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Relaxed);
        let mut f = self.failures.lock().expect("failures lock");
        if f.len() < 10 {
            f.push(why);
        }
    }

    fn total(&self) -> u64 {
        self.ok.load(Relaxed) + self.failed.load(Relaxed)
    }
}

/// One GET on `s`: status and body (Content-Length bodies only).
async fn get(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    let req = format!("GET / HTTP/1.1\r\nHost: {VHOST}\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("bad status line")?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or("no content-length")?;
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed mid-body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]);
            return Ok((status, body.trim().to_string()));
        }
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn load_client(load: Arc<Load>, at: SocketAddr) {
    let mut seen = HashSet::new();
    let mut buf = Vec::with_capacity(4096);
    while !load.stop.load(Relaxed) {
        let mut s = match tokio::net::TcpStream::connect(at).await {
            Ok(s) => s,
            Err(e) => {
                load.fail(format!("connect: {e}"));
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        while !load.stop.load(Relaxed) {
            match get(&mut s, &mut buf).await {
                Ok((200, body)) => {
                    load.ok.fetch_add(1, Relaxed);
                    if seen.insert(body.clone()) {
                        let now = Instant::now(); // determinism-ok: benchmark
                        load.first_answer
                            .lock()
                            .expect("first answer lock")
                            .entry(body)
                            .or_insert(now);
                    }
                }
                Ok((status, body)) => load.fail(format!("{status}: {body}")),
                Err(e) => {
                    load.fail(e);
                    break;
                }
            }
        }
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_MAX; // determinism-ok: benchmark
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}"); // determinism-ok: benchmark
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn active_of(dp: &DataPlane, task: &str) -> Option<u64> {
    dp.stats()
        .apps
        .iter()
        .flat_map(|a| &a.backends)
        .find(|b| b.task_id == task)
        .map(|b| b.active)
}

struct Cluster {
    marathon: plateau_runtime::ProcessRef<StandInMarathon>,
    dp: DataPlane,
    load: Arc<Load>,
    tasks: Vec<Task>,
    started: usize,
    running_to_routed_ms: Vec<f64>,
}

impl Cluster {
    async fn publish(&self) {
        let backends: Vec<Backend> = self
            .tasks
            .iter()
            .map(|t| backend_of(t, BackendState::Running))
            .collect();
        self.marathon
            .call(move |m: &mut StandInMarathon, ctx| m.set_backends(ctx, backends))
            .await
            .expect("marathon call");
    }

    /// Start a task and report it RUNNING; wait for its first routed request.
    async fn scale_up(&mut self) {
        self.started += 1;
        let task = start_task(&format!("task-{}", self.started)).await;
        let name = task.name.clone();
        self.tasks.push(task);
        let sent = Instant::now(); // determinism-ok: benchmark
        self.publish().await;
        let load = self.load.clone();
        wait_for(&format!("{name} routed"), || {
            load.first_answer
                .lock()
                .expect("first answer lock")
                .contains_key(&name)
        })
        .await;
        let first = self.load.first_answer.lock().expect("first answer lock")[&name];
        let ms = first.saturating_duration_since(sent).as_secs_f64() * 1000.0;
        eprintln!("lifecycle: {name} RUNNING → first routed request in {ms:.2} ms");
        self.running_to_routed_ms.push(ms);
        tokio::time::sleep(STEP_DWELL).await;
    }

    /// Drain the task at `index` (TASK_KILLING), kill it once nothing is in flight on it,
    /// then report it gone.
    async fn kill(&mut self, index: usize) {
        let name = self.tasks[index].name.clone();
        let backends: Vec<Backend> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let state = if i == index {
                    BackendState::Draining
                } else {
                    BackendState::Running
                };
                backend_of(t, state)
            })
            .collect();
        self.marathon
            .call(move |m: &mut StandInMarathon, ctx| m.set_backends(ctx, backends))
            .await
            .expect("marathon call");
        let dp = self.dp.clone();
        wait_for(&format!("{name} drained"), || {
            active_of(&dp, &name).unwrap_or(0) == 0
        })
        .await;
        drop(self.tasks.remove(index)); // the task process really stops
        self.publish().await;
        eprintln!("lifecycle: {name} drained, killed and removed");
        tokio::time::sleep(STEP_DWELL).await;
    }
}

fn lifecycle() {
    let load = Arc::new(Load::default());
    // The load has its own thread, so it neither waits for nor slows the node's actors.
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("load runtime");
    let result = actix_rt::System::new().block_on(async {
        let node = Node::start(NodeConfig::local("127.0.0.1", free_port(), 1)).expect("node");
        let first = start_task("task-1").await;
        let marathon = node
            .spawn(
                "marathon",
                StandInMarathon {
                    version: 1,
                    app: AppRoutes {
                        app_id: APP.into(),
                        service_ports: vec![0],
                        labels: [("HAPROXY_0_VHOST".to_string(), VHOST.to_string())].into(),
                        has_health_checks: false,
                        backends: vec![backend_of(&first, BackendState::Running)],
                    },
                    subscribers: vec![],
                },
            )
            .expect("spawn marathon");
        let mut config = BalancerConfig::new(marathon.upid().clone());
        config.data_plane = DataPlaneConfig::loopback();
        let balancer = plateau_balancer::start(&node, config).expect("start balancer");
        let dp = balancer.data_plane.clone();
        let at = dp.http_addr().expect("http listener");
        wait_for("the first table", || dp.stats().table_version == Some(1)).await;
        for _ in 0..LOAD_CONNECTIONS {
            load_rt.spawn(load_client(load.clone(), at));
        }
        let mut c = Cluster {
            marathon,
            dp,
            load: load.clone(),
            tasks: vec![first],
            started: 1,
            running_to_routed_ms: vec![],
        };
        wait_for("load flowing", || load.ok.load(Relaxed) > 1000).await;

        // Scale up to 4 (each a RUNNING → routed sample), then down to 1.
        for _ in 0..3 {
            c.scale_up().await;
        }
        let (f0, t0) = (load.failed.load(Relaxed), load.total());
        for _ in 0..3 {
            c.kill(c.tasks.len() - 1).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let scale_down = (load.failed.load(Relaxed) - f0, load.total() - t0);

        // Back to 3, then replace each one: new task RUNNING, then the oldest drained.
        for _ in 0..2 {
            c.scale_up().await;
        }
        let (f1, t1) = (load.failed.load(Relaxed), load.total());
        for _ in 0..3 {
            c.scale_up().await;
            c.kill(0).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rolling = (load.failed.load(Relaxed) - f1, load.total() - t1);
        load.stop.store(true, Relaxed);
        node.shutdown();
        balancer.data_plane.shutdown();
        (c.running_to_routed_ms.clone(), scale_down, rolling)
    });
    let (samples, scale_down, rolling) = result;
    let failures = load.failures.lock().expect("failures lock").clone();
    if !failures.is_empty() {
        eprintln!("lifecycle: first failures: {failures:?}");
    }
    let max = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "{}",
        serde_json::json!({
            "running_to_routed_ms": (max * 100.0).round() / 100.0,
            "running_to_routed_ms_samples": samples.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>(),
            "failed_during_scale_down": scale_down.0,
            "requests_during_scale_down": scale_down.1,
            "failed_during_rolling_restart": rolling.0,
            "requests_during_rolling_restart": rolling.1,
        })
    );
    load_rt.shutdown_background();
}
