//! The balancer against real sockets on 127.0.0.1, and its process in the simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use plateau_balancer::dataplane::{DataPlane, DataPlaneConfig};
use plateau_balancer::messages::{AppRoutes, Backend, BackendState, RoutesSnapshot};
use plateau_balancer::table::{RoutingState, Table};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(20);

/// Poll `f` until it holds or the deadline passes.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = tokio::time::Instant::now(); // determinism-ok: real-socket test
    while !f() {
        if start.elapsed() > DEADLINE {
            bail!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port nothing listens on: connecting is refused.
fn refused_port() -> u16 {
    free_port()
}

fn backend(task: &str, port: u16) -> Backend {
    Backend {
        task_id: task.into(),
        host: "127.0.0.1".into(),
        ports: vec![port],
        state: BackendState::Running,
        healthy: None,
    }
}

fn app(id: &str, service_port: u16, labels: &[(&str, &str)], backends: Vec<Backend>) -> AppRoutes {
    AppRoutes {
        app_id: id.into(),
        service_ports: vec![service_port],
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        has_health_checks: false,
        backends,
    }
}

fn table(version: u64, apps: Vec<AppRoutes>) -> Arc<Table> {
    let mut s = RoutingState::new(None);
    s.handle_snapshot(RoutesSnapshot {
        leader_epoch: 0,
        version,
        apps,
    });
    Arc::new(s.table())
}

fn data_plane(header_timeout: Duration) -> DataPlane {
    DataPlane::start(DataPlaneConfig {
        response_header_timeout: header_timeout,
        ..DataPlaneConfig::loopback()
    })
    .unwrap()
}

async fn wait_listening(dp: &DataPlane, port: u16) -> Result<()> {
    eventually(&format!("service port {port} listening"), || {
        dp.tcp_listeners().contains_key(&port)
    })
    .await
}

fn active_of(dp: &DataPlane, task: &str) -> u64 {
    dp.stats()
        .apps
        .iter()
        .flat_map(|a| &a.backends)
        .filter(|b| b.task_id == task)
        .map(|b| b.active)
        .sum()
}

// ---------------------------------------------------------------- TCP backends and client

/// A TCP backend: greets each connection with its name, then echoes until EOF.
struct TcpBackend {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tcp_backend(name: &str) -> TcpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (name, count) = (name.to_string(), accepted.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, SeqCst);
            let name = name.clone();
            tokio::spawn(async move {
                if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    TcpBackend {
        port,
        accepted,
        task,
    }
}

/// A client connection through the balancer; knows which backend greeted it.
struct TcpClient {
    reader: BufReader<TcpStream>,
    backend: String,
}

impl TcpClient {
    async fn connect(port: u16) -> Result<TcpClient> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, reader.read_line(&mut line))
            .await
            .context("greeting timed out")??;
        if line.is_empty() {
            bail!("connection closed without a greeting");
        }
        Ok(TcpClient {
            reader,
            backend: line.trim().to_string(),
        })
    }

    async fn echo(&mut self, text: &str) -> Result<String> {
        self.reader
            .get_mut()
            .write_all(format!("{text}\n").as_bytes())
            .await?;
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, self.reader.read_line(&mut line))
            .await
            .context("echo timed out")??;
        Ok(line.trim().to_string())
    }
}

// ---------------------------------------------------------------- TCP tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_round_robin_across_three_backends() -> Result<()> {
    let backends = [
        tcp_backend("a").await,
        tcp_backend("b").await,
        tcp_backend("c").await,
    ];
    let dp = data_plane(Duration::from_secs(5));
    let sp = free_port();
    let tasks = ["a", "b", "c"]
        .iter()
        .zip(&backends)
        .map(|(n, b)| backend(n, b.port))
        .collect();
    dp.publish(table(1, vec![app("/db", sp, &[], tasks)]));
    wait_listening(&dp, sp).await?;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let mut c = TcpClient::connect(sp).await?;
        assert_eq!(c.echo("hello").await?, "hello");
        seen.push(c.backend.clone());
    }
    // In turn: each backend once per round, the same order in both rounds.
    assert_eq!(seen[0..3], seen[3..6], "{seen:?}");
    let mut first: Vec<_> = seen[0..3].to_vec();
    first.sort();
    assert_eq!(first, vec!["a", "b", "c"]);
    for b in &backends {
        assert_eq!(b.accepted.load(SeqCst), 2);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_least_connections_picks_the_idlest_backend() -> Result<()> {
    let backends = [
        tcp_backend("a").await,
        tcp_backend("b").await,
        tcp_backend("c").await,
    ];
    let dp = data_plane(Duration::from_secs(5));
    let sp = free_port();
    let tasks = ["a", "b", "c"]
        .iter()
        .zip(&backends)
        .map(|(n, b)| backend(n, b.port))
        .collect();
    dp.publish(table(
        1,
        vec![app("/db", sp, &[("HAPROXY_0_BALANCE", "leastconn")], tasks)],
    ));
    wait_listening(&dp, sp).await?;
    let c1 = TcpClient::connect(sp).await?;
    let c2 = TcpClient::connect(sp).await?;
    let c3 = TcpClient::connect(sp).await?;
    let mut three = vec![c1.backend.clone(), c2.backend.clone(), c3.backend.clone()];
    three.sort();
    assert_eq!(
        three,
        vec!["a", "b", "c"],
        "each backend holds one connection"
    );
    // Free the second backend's connection: it is then the only one with none.
    let freed = c2.backend.clone();
    drop(c2);
    eventually("the freed backend has no active connection", || {
        active_of(&dp, &freed) == 0
    })
    .await?;
    // Round robin would go on to the next in turn; least connections picks the freed one.
    let c4 = TcpClient::connect(sp).await?;
    assert_eq!(c4.backend, freed);
    // Now 1-1-1: the next two go to two different backends, never one with 2 while
    // another has 1.
    let c5 = TcpClient::connect(sp).await?;
    let c6 = TcpClient::connect(sp).await?;
    assert_ne!(c5.backend, c6.backend);
    drop((c1, c3, c4, c5, c6));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_table_update_keeps_established_connections() -> Result<()> {
    let (a, b, c) = (
        tcp_backend("a").await,
        tcp_backend("b").await,
        tcp_backend("c").await,
    );
    let dp = data_plane(Duration::from_secs(5));
    let sp = free_port();
    dp.publish(table(
        1,
        vec![app(
            "/db",
            sp,
            &[],
            vec![backend("a", a.port), backend("b", b.port)],
        )],
    ));
    wait_listening(&dp, sp).await?;
    let mut long = TcpClient::connect(sp).await?;
    assert_eq!(long.echo("before").await?, "before");

    // The new set has only c: the long-lived connection stays, new ones go to c.
    dp.publish(table(
        2,
        vec![app("/db", sp, &[], vec![backend("c", c.port)])],
    ));
    for _ in 0..3 {
        let mut n = TcpClient::connect(sp).await?;
        assert_eq!(n.backend, "c");
        assert_eq!(n.echo("new").await?, "new");
    }
    assert_eq!(long.echo("during").await?, "during");

    // Even removing the service port closes only its listener, not the connection.
    dp.publish(table(3, vec![]));
    eventually("listener closed", || !dp.tcp_listeners().contains_key(&sp)).await?;
    assert_eq!(long.echo("after").await?, "after");
    assert!(
        TcpStream::connect(("127.0.0.1", sp)).await.is_err(),
        "port closed"
    );

    // And it comes back when the port reappears.
    dp.publish(table(
        4,
        vec![app("/db", sp, &[], vec![backend("b", b.port)])],
    ));
    wait_listening(&dp, sp).await?;
    assert_eq!(TcpClient::connect(sp).await?.backend, "b");
    assert_eq!(long.echo("still").await?, "still");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_to_a_removed_backend_is_closed_at_its_drain_deadline() -> Result<()> {
    let (a, b) = (tcp_backend("a").await, tcp_backend("b").await);
    let drain = Duration::from_secs(1);
    let dp = DataPlane::start(DataPlaneConfig {
        tcp_drain_timeout: drain,
        ..DataPlaneConfig::loopback()
    })?;
    let sp = free_port();
    dp.publish(table(
        1,
        vec![app("/db", sp, &[], vec![backend("a", a.port)])],
    ));
    wait_listening(&dp, sp).await?;
    let mut long = TcpClient::connect(sp).await?;
    assert_eq!(long.backend, "a");

    // Updates that keep its backend never start the deadline.
    dp.publish(table(
        2,
        vec![app(
            "/db",
            sp,
            &[],
            vec![backend("a", a.port), backend("b", b.port)],
        )],
    ));
    tokio::time::sleep(drain * 2).await;
    assert_eq!(long.echo("kept").await?, "kept");

    // Its backend leaves: still served at first, closed once the deadline passed.
    dp.publish(table(
        3,
        vec![app("/db", sp, &[], vec![backend("b", b.port)])],
    ));
    let removed = tokio::time::Instant::now(); // determinism-ok: real-socket test
    assert_eq!(long.echo("draining").await?, "draining");
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, long.reader.read_to_end(&mut rest))
        .await
        .context("connection not closed at its drain deadline")??;
    assert!(
        removed.elapsed() >= drain - Duration::from_millis(100),
        "closed before its deadline: {:?}",
        removed.elapsed()
    );
    assert_eq!(TcpClient::connect(sp).await?.backend, "b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_refused_backend_is_retried_on_another() -> Result<()> {
    let good = tcp_backend("good").await;
    let dp = data_plane(Duration::from_secs(5));
    let sp = free_port();
    let dead = refused_port();
    dp.publish(table(
        1,
        vec![app(
            "/db",
            sp,
            &[],
            vec![backend("dead", dead), backend("good", good.port)],
        )],
    ));
    wait_listening(&dp, sp).await?;
    for _ in 0..4 {
        assert_eq!(TcpClient::connect(sp).await?.backend, "good");
    }
    let stats = dp.stats();
    let dead_stats = stats.apps[0]
        .backends
        .iter()
        .find(|b| b.task_id == "dead")
        .unwrap();
    assert!(dead_stats.errors_connect >= 2, "{dead_stats:?}");
    Ok(())
}

// ---------------------------------------------------------------- HTTP backends and client

/// An HTTP backend answering `<name>` and the forwarding headers it received.
struct HttpBackend {
    port: u16,
    requests: Arc<AtomicUsize>,
    /// When set, answers 500: the backend is "gone" and must get no requests.
    gone: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn http_backend(name: &str) -> HttpBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let gone = Arc::new(AtomicBool::new(false));
    let (name, count, gone2) = (name.to_string(), requests.clone(), gone.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let (name, count, gone) = (name.clone(), count.clone(), gone2.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        count.fetch_add(1, SeqCst);
                        let h = |k: &str| {
                            req.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let body = format!(
                            "{name}\nxff={}\nproto={}\nxhost={}\nxport={}\nhost={}\npath={}\n",
                            h("x-forwarded-for"),
                            h("x-forwarded-proto"),
                            h("x-forwarded-host"),
                            h("x-forwarded-port"),
                            h("host"),
                            req.uri().path()
                        );
                        let status = if gone.load(SeqCst) { 500 } else { 200 };
                        async move {
                            let mut r = Response::new(http_body_util::Full::new(Bytes::from(body)));
                            *r.status_mut() = StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    HttpBackend {
        port,
        requests,
        gone,
        task,
    }
}

/// A backend that accepts connections and never answers.
async fn hanging_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

/// A backend that answers every request with bytes that are not HTTP.
async fn garbage_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n")
                    .await;
            });
        }
    });
    (port, task)
}

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(
    c: &TestClient,
    at: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut req = Request::builder()
        .uri(format!("http://{at}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(DEADLINE, c.request(req.body(Empty::new())?))
        .await
        .context("request timed out")??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

fn first_line(body: &str) -> &str {
    body.lines().next().unwrap_or("")
}

// ---------------------------------------------------------------- HTTP tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_by_host_and_path_prefix() -> Result<()> {
    let (web, api, v2, other) = (
        http_backend("web").await,
        http_backend("api").await,
        http_backend("v2").await,
        http_backend("other").await,
    );
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![
            app(
                "/web",
                0,
                &[("HAPROXY_0_VHOST", "web.example.com,www.example.com")],
                vec![backend("web", web.port)],
            ),
            app(
                "/api",
                0,
                &[
                    ("HAPROXY_0_VHOST", "web.example.com"),
                    ("HAPROXY_0_PATH", "/api"),
                ],
                vec![backend("api", api.port)],
            ),
            app(
                "/v2",
                0,
                &[
                    ("PLATEAU_VHOST", "web.example.com"),
                    ("PLATEAU_PATH", "/api/v2"),
                ],
                vec![backend("v2", v2.port)],
            ),
            app(
                "/other",
                0,
                &[("PLATEAU_VHOST", "Other.Example.com")],
                vec![backend("other", other.port)],
            ),
        ],
    ));
    let at = dp.http_addr().unwrap();
    let c = client();
    let cases = [
        ("web.example.com", "/", "web"),
        ("WEB.Example.com:8080", "/index.html", "web"),
        ("www.example.com", "/api/x", "web"),
        ("web.example.com", "/api/users", "api"),
        ("web.example.com", "/api/v2/users", "v2"),
        ("other.example.com", "/api", "other"),
    ];
    for (host, path, expected) in cases {
        let (status, body) = get(&c, at, host, path, &[]).await?;
        assert_eq!(status, 200, "{host}{path}: {body}");
        assert_eq!(first_line(&body), expected, "{host}{path}");
        assert!(body.contains(&format!("path={path}\n")), "{body}");
    }
    let (status, body) = get(&c, at, "nobody.example.com", "/x", &[]).await?;
    assert_eq!(status, 404);
    assert!(
        body.contains("no route for host 'nobody.example.com'"),
        "{body}"
    );

    // The admin server shows the same.
    let admin = dp.admin_addr().unwrap();
    let (status, stats) = get(&c, admin, "admin", "/stats", &[]).await?;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    assert_eq!(stats["table_version"], 1);
    assert_eq!(stats["no_route"], 1);
    let (status, metrics) = get(&c, admin, "admin", "/metrics", &[]).await?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("plateau_balancer_backend_requests_total{app=\"/web\",task=\"web\""),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_adds_forwarding_headers() -> Result<()> {
    let web = http_backend("web").await;
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![app(
            "/web",
            0,
            &[("HAPROXY_0_VHOST", "web.example.com")],
            vec![backend("web", web.port)],
        )],
    ));
    let c = client();
    let at = dp.http_addr().unwrap();
    let (status, body) = get(&c, at, "Web.Example.com:80", "/", &[]).await?;
    assert_eq!(status, 200);
    assert!(body.contains("xff=127.0.0.1\n"), "{body}");
    assert!(body.contains("proto=http\n"), "{body}");
    assert!(body.contains("xhost=Web.Example.com:80\n"), "{body}");
    assert!(
        body.contains(&format!("xport={}\n", at.port())),
        "the listener's port: {body}"
    );
    assert!(
        body.contains("host=Web.Example.com:80\n"),
        "Host is passed unchanged: {body}"
    );
    let (_, body) = get(
        &c,
        at,
        "web.example.com",
        "/",
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await?;
    assert!(
        body.contains("xff=203.0.113.9, 127.0.0.1\n"),
        "appended: {body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_no_healthy_backend_is_503_naming_the_app() -> Result<()> {
    let web = http_backend("web").await;
    let dp = data_plane(Duration::from_secs(5));
    let mut a = app(
        "/shop/web",
        0,
        &[("HAPROXY_0_VHOST", "shop")],
        vec![backend("web", web.port)],
    );
    a.has_health_checks = true;
    a.backends[0].healthy = Some(false);
    dp.publish(table(1, vec![a.clone()]));
    let c = client();
    let at = dp.http_addr().unwrap();
    let (status, body) = get(&c, at, "shop", "/", &[]).await?;
    assert_eq!(status, 503);
    assert!(
        body.contains("no healthy backend for app /shop/web"),
        "{body}"
    );
    assert_eq!(web.requests.load(SeqCst), 0);
    // Healthy again: served.
    a.backends[0].healthy = Some(true);
    dp.publish(table(2, vec![a]));
    assert_eq!(get(&c, at, "shop", "/", &[]).await?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_to_a_refused_backend_is_retried_on_another() -> Result<()> {
    let good = http_backend("good").await;
    let dp = data_plane(Duration::from_secs(5));
    let dead = refused_port();
    dp.publish(table(
        1,
        vec![app(
            "/web",
            0,
            &[("HAPROXY_0_VHOST", "web")],
            vec![backend("dead", dead), backend("good", good.port)],
        )],
    ));
    let c = client();
    let at = dp.http_addr().unwrap();
    for _ in 0..6 {
        let (status, body) = get(&c, at, "web", "/", &[]).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(first_line(&body), "good");
    }
    let stats = dp.stats();
    let dead_stats = stats.apps[0]
        .backends
        .iter()
        .find(|b| b.task_id == "dead")
        .unwrap();
    assert!(dead_stats.errors_connect >= 3, "{dead_stats:?}");
    // With every backend refusing: 503 naming the app.
    dp.publish(table(
        2,
        vec![app(
            "/web",
            0,
            &[("HAPROXY_0_VHOST", "web")],
            vec![backend("dead", dead)],
        )],
    ));
    let (status, body) = get(&c, at, "web", "/", &[]).await?;
    assert_eq!(status, 503);
    assert!(
        body.contains("no backend of app /web accepted the connection"),
        "{body}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_hanging_backend_is_504_and_stalls_nobody_else() -> Result<()> {
    let good = http_backend("good").await;
    let (hang_port, _hang) = hanging_backend().await;
    let timeout = Duration::from_secs(3);
    let dp = data_plane(timeout);
    dp.publish(table(
        1,
        vec![
            app(
                "/slow",
                0,
                &[("HAPROXY_0_VHOST", "slow")],
                vec![backend("hang", hang_port)],
            ),
            app(
                "/fast",
                0,
                &[("HAPROXY_0_VHOST", "fast")],
                vec![backend("good", good.port)],
            ),
        ],
    ));
    let at = dp.http_addr().unwrap();
    let c = client();
    let slow = {
        let c = c.clone();
        tokio::spawn(async move { get(&c, at, "slow", "/", &[]).await })
    };
    eventually("the slow request reached its backend", || {
        dp.stats()
            .apps
            .iter()
            .flat_map(|a| &a.backends)
            .any(|b| b.task_id == "hang" && b.active == 1)
    })
    .await?;
    let started = tokio::time::Instant::now(); // determinism-ok: real-socket test
    for _ in 0..20 {
        let (status, body) = get(&c, at, "fast", "/", &[]).await?;
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        !slow.is_finished() || started.elapsed() < timeout,
        "fast requests were not held behind the hung one"
    );
    let (status, body) = slow.await??;
    assert_eq!(status, 504);
    assert!(body.contains("did not answer within"), "{body}");
    assert!(body.contains("/slow"), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_that_stops_reading_a_request_body_is_504() -> Result<()> {
    let good = http_backend("good").await;
    let (hang_port, _hang) = hanging_backend().await;
    let idle = Duration::from_secs(2);
    let dp = DataPlane::start(DataPlaneConfig {
        body_idle_timeout: idle,
        ..DataPlaneConfig::loopback()
    })?;
    dp.publish(table(
        1,
        vec![
            app(
                "/sink",
                0,
                &[("HAPROXY_0_VHOST", "sink")],
                vec![backend("hang", hang_port)],
            ),
            app(
                "/fast",
                0,
                &[("HAPROXY_0_VHOST", "fast")],
                vec![backend("good", good.port)],
            ),
        ],
    ));
    let at = dp.http_addr().unwrap();
    // 64 MiB: more than the loopback socket buffers hold between the proxy and a backend that
    // reads nothing, so the proxy's writes stall.
    let len: usize = 64 << 20;
    let (mut rd, mut wr) = TcpStream::connect(at).await?.into_split();
    let writer = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: sink\r\nContent-Length: {len}\r\n\r\n");
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            wr.write_all(&chunk).await?;
        }
        anyhow::Ok(())
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(())
    })
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(
        read.is_ok(),
        "the proxy neither answered nor closed: {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("read none of the request body"), "{answer}");
    assert!(answer.contains("/sink"), "{answer}");
    // The client's upload was cut short, not completed.
    writer.abort();
    // Nobody else was held up.
    let (status, body) = get(&client(), at, "fast", "/", &[]).await?;
    assert_eq!(status, 200, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_garbage_from_backend_is_502() -> Result<()> {
    let (port, _task) = garbage_backend().await;
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![app(
            "/junk",
            0,
            &[("HAPROXY_0_VHOST", "junk")],
            vec![backend("junk", port)],
        )],
    ));
    let (status, body) = get(&client(), dp.http_addr().unwrap(), "junk", "/", &[]).await?;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("bad response from backend"), "{body}");
    let stats = dp.stats();
    assert_eq!(stats.apps[0].backends[0].errors_bad_response, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_draining_a_backend_loses_no_request() -> Result<()> {
    let (a, b) = (http_backend("a").await, http_backend("b").await);
    let dp = data_plane(Duration::from_secs(10));
    let apps = |b_state| {
        let mut tasks = vec![backend("a", a.port), backend("b", b.port)];
        tasks[1].state = b_state;
        vec![app("/web", 0, &[("HAPROXY_0_VHOST", "web")], tasks)]
    };
    dp.publish(table(1, apps(BackendState::Running)));
    let at = dp.http_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    const WORKERS: usize = 4;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (stop, total, failures, c) = (stop.clone(), total.clone(), failures.clone(), client());
        workers.push(tokio::spawn(async move {
            while !stop.load(SeqCst) {
                match get(&c, at, "web", "/", &[]).await {
                    Ok((200, _)) => {}
                    Ok((s, body)) => failures.lock().unwrap().push(format!("{s}: {body}")),
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                total.fetch_add(1, SeqCst);
            }
        }));
    }
    eventually("traffic on both backends", || {
        a.requests.load(SeqCst) > 20 && b.requests.load(SeqCst) > 20
    })
    .await?;
    dp.publish(table(2, apps(BackendState::Draining)));
    let b_at_drain = b.requests.load(SeqCst);
    eventually("b's requests in flight finished", || {
        active_of(&dp, "b") == 0
    })
    .await?;
    // b is now gone for good: any request still sent to it would fail.
    b.gone.store(true, SeqCst);
    let after = total.load(SeqCst);
    eventually("more traffic after the drain", || {
        total.load(SeqCst) > after + 100
    })
    .await?;
    stop.store(true, SeqCst);
    for w in workers {
        w.await?;
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        b.requests.load(SeqCst) <= b_at_drain + WORKERS,
        "at most the requests already in flight reached b"
    );
    Ok(())
}

/// Every task of `live` as RUNNING.
fn running(live: &[(String, HttpBackend)]) -> Vec<(String, &HttpBackend, BackendState)> {
    live.iter()
        .map(|(n, b)| (n.clone(), b, BackendState::Running))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_rolling_restart_under_load_loses_no_request() -> Result<()> {
    let dp = data_plane(Duration::from_secs(10));
    let mut live = vec![
        ("old-0".to_string(), http_backend("old-0").await),
        ("old-1".to_string(), http_backend("old-1").await),
        ("old-2".to_string(), http_backend("old-2").await),
    ];
    let mut version = 0;
    let mut publish = |tasks: &[(String, &HttpBackend, BackendState)]| {
        version += 1;
        let backends = tasks
            .iter()
            .map(|(name, b, state)| Backend {
                state: *state,
                ..backend(name, b.port)
            })
            .collect();
        dp.publish(table(
            version,
            vec![app("/web", 0, &[("HAPROXY_0_VHOST", "web")], backends)],
        ));
    };
    publish(&running(&live));
    let at = dp.http_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, total, failures) = (stop.clone(), total.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            // Raw keep-alive connections, so backend connections stay cached in the proxy.
            while !stop.load(SeqCst) {
                let Ok(mut s) = TcpStream::connect(at).await else {
                    failures.lock().unwrap().push("connect".to_string());
                    continue;
                };
                for _ in 0..50 {
                    match keep_alive_get(&mut s, "web").await {
                        Ok((200, _)) => {}
                        Ok((status, body)) => {
                            failures.lock().unwrap().push(format!("{status}: {body}"))
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    total.fetch_add(1, SeqCst);
                }
            }
        }));
    }
    for i in 0..3 {
        let before = total.load(SeqCst);
        eventually("traffic", || total.load(SeqCst) > before + 50).await?;
        // The new task is RUNNING.
        let name = format!("new-{i}");
        live.push((name.clone(), http_backend(&name).await));
        publish(&running(&live));
        let new = live.last().unwrap().1.requests.clone();
        eventually("the new task gets requests", || new.load(SeqCst) > 0).await?;
        // The oldest is killed: drained first, stopped once nothing is in flight on it.
        let mut tasks = running(&live);
        tasks[0].2 = BackendState::Draining;
        publish(&tasks);
        let old = live[0].0.clone();
        eventually("the old task drained", || active_of(&dp, &old) == 0).await?;
        let (_, gone) = live.remove(0);
        gone.gone.store(true, SeqCst);
        drop(gone);
        publish(&running(&live));
    }
    let before = total.load(SeqCst);
    eventually("traffic after the restart", || {
        total.load(SeqCst) > before + 100
    })
    .await?;
    stop.store(true, SeqCst);
    for w in workers {
        w.await?;
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {:?}",
        failures.len(),
        total.load(SeqCst),
        &failures[..failures.len().min(5)]
    );
    Ok(())
}

// ---------------------------------------------------------------- HTTP framing, raw

/// Send `bytes` on a fresh connection and read until the proxy closes it.
async fn exchange(at: SocketAddr, bytes: &[u8]) -> Result<String> {
    let mut s = TcpStream::connect(at).await?;
    s.write_all(bytes).await?;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .context("the proxy did not close the connection")??;
    Ok(String::from_utf8_lossy(&out).to_string())
}

/// The data of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (line, rest) = body.split_once("\r\n").unwrap_or((body, ""));
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// An HTTP backend echoing the request body (hyper picks the response framing: the same
/// length, or chunked when the request was chunked).
async fn echo_backend() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(Response::new(req.into_body()))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .await;
            });
        }
    });
    (port, task)
}

/// Read one request head from `s` (bodies are not expected).
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

/// A raw backend: answers each request with `answer`; with `close_after_first`, a connection
/// answers its first request and then closes when the second one arrives, unanswered (a
/// keep-alive connection the backend dropped while idle). Counts connections.
async fn raw_backend(
    answer: &'static [u8],
    close_after_first: bool,
) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut served = 0;
                while read_head(&mut s).await.is_some() {
                    if close_after_first && served == 1 {
                        return;
                    }
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    served += 1;
                }
            });
        }
    });
    (port, accepted, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_are_relayed_by_their_framing() -> Result<()> {
    let (echo, _echo) = echo_backend().await;
    let (chunker, _, _chunker) = raw_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        false,
    )
    .await;
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![
            app(
                "/echo",
                0,
                &[("HAPROXY_0_VHOST", "echo")],
                vec![backend("echo", echo)],
            ),
            app(
                "/chunked",
                0,
                &[("HAPROXY_0_VHOST", "chunked")],
                vec![backend("chunked", chunker)],
            ),
        ],
    ));
    let at = dp.http_addr().unwrap();

    // Content-Length in, Content-Length out.
    let out = exchange(
        at,
        b"POST /x HTTP/1.1\r\nHost: echo\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await?;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_lowercase().contains("content-length: 5\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nhello"), "{out}");

    // Chunked in, chunked out.
    let out = exchange(
        at,
        b"POST /x HTTP/1.1\r\nHost: echo\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await?;
    let (head, body) = out.split_once("\r\n\r\n").context("no head")?;
    assert!(
        head.to_lowercase().contains("transfer-encoding: chunked"),
        "{out}"
    );
    assert_eq!(dechunk(body), "hello world", "{out}");

    // An HTTP/1.0 client gets a chunked response de-chunked, delimited by the close.
    let out = exchange(at, b"GET / HTTP/1.0\r\nHost: chunked\r\n\r\n").await?;
    let (head, body) = out.split_once("\r\n\r\n").context("no head")?;
    assert!(!head.to_lowercase().contains("transfer-encoding"), "{out}");
    assert_eq!(body, "abcde", "{out}");

    // Expect: 100-continue is answered by the proxy, then the body flows.
    let mut s = TcpStream::connect(at).await?;
    s.write_all(b"PUT /x HTTP/1.1\r\nHost: echo\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n")
        .await?;
    let mut interim = [0u8; 25];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut interim)).await??;
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"ping").await?;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await??;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("\r\n\r\nping"),
        "{out}"
    );

    // Ambiguous framing is refused before reaching anyone.
    let out = exchange(
        at,
        b"POST /x HTTP/1.1\r\nHost: echo\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await?;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    Ok(())
}

/// One keep-alive GET on `s` (Content-Length responses only): status and body.
async fn keep_alive_get(s: &mut TcpStream, host: &str) -> Result<(u16, String)> {
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tokio::time::timeout(DEADLINE, s.read(&mut byte)).await?? == 0 {
            bail!("closed after {:?}", String::from_utf8_lossy(&buf));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let status = head.split_whitespace().nth(1).context("status")?.parse()?;
    let len: usize = head
        .split("content-length: ")
        .nth(1)
        .and_then(|v| v.split("\r\n").next())
        .context("content-length")?
        .parse()?;
    let mut body = vec![0u8; len];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut body)).await??;
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

/// Each HTTP thread has its own listener (`SO_REUSEPORT`) and runtime: many clients are
/// all served, and a shutdown closes every listener and every client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_threads_serve_every_client_and_stop_on_shutdown() -> Result<()> {
    let web = http_backend("web").await;
    let dp = DataPlane::start(DataPlaneConfig {
        worker_threads: 3,
        ..DataPlaneConfig::loopback()
    })?;
    dp.publish(table(
        1,
        vec![app(
            "/web",
            0,
            &[("HAPROXY_0_VHOST", "web")],
            vec![backend("web", web.port)],
        )],
    ));
    let at = dp.http_addr().context("http address")?;
    let mut clients = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(at).await?;
        let (status, body) = keep_alive_get(&mut s, "web").await?;
        assert_eq!((status, first_line(&body)), (200, "web"));
        clients.push(s);
    }
    for s in &mut clients {
        assert_eq!(keep_alive_get(s, "web").await?.0, 200, "kept alive");
    }
    dp.shutdown();
    for mut s in clients {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(DEADLINE, s.read(&mut byte)).await? {
            Ok(0) | Err(_) => {}
            Ok(_) => bail!("a byte after shutdown"),
        }
    }
    let start = tokio::time::Instant::now(); // determinism-ok: real-socket test
    while TcpStream::connect(at).await.is_ok() {
        if start.elapsed() > DEADLINE {
            bail!("still accepting after shutdown");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_connections_are_kept_alive_and_replaced_when_closed() -> Result<()> {
    let (steady, steady_conns, _a) =
        raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", false).await;
    let (flaky, flaky_conns, _b) =
        raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", true).await;
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![
            app(
                "/steady",
                0,
                &[("HAPROXY_0_VHOST", "steady")],
                vec![backend("s", steady)],
            ),
            app(
                "/flaky",
                0,
                &[("HAPROXY_0_VHOST", "flaky")],
                vec![backend("f", flaky)],
            ),
        ],
    ));
    let at = dp.http_addr().unwrap();
    let mut s = TcpStream::connect(at).await?;
    for _ in 0..20 {
        assert_eq!(
            keep_alive_get(&mut s, "steady").await?,
            (200, "ok\n".into())
        );
    }
    assert_eq!(
        steady_conns.load(SeqCst),
        1,
        "one client connection, one backend connection kept alive"
    );
    // Every second request finds its backend connection closed: sent again on a new one.
    for i in 0..10 {
        let (status, body) = keep_alive_get(&mut s, "flaky").await?;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    assert!(
        flaky_conns.load(SeqCst) >= 5,
        "{}",
        flaky_conns.load(SeqCst)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reset_from_backend_is_502() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let _task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = read_head(&mut s).await;
            // Linger 0: closing sends a reset (and does not block).
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    });
    let dp = data_plane(Duration::from_secs(5));
    dp.publish(table(
        1,
        vec![app(
            "/rst",
            0,
            &[("HAPROXY_0_VHOST", "rst")],
            vec![backend("rst", port)],
        )],
    ));
    let (status, body) = get(&client(), dp.http_addr().unwrap(), "rst", "/", &[]).await?;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("bad response from backend"), "{body}");
    Ok(())
}

// ---------------------------------------------------------------- the process, simulated

mod process {
    use super::*;
    use plateau_balancer::messages::{RoutesChanged, RoutesNotLeader, SubscribeRoutes};
    use plateau_balancer::{BalancerProcess, TablePublisher};
    use plateau_runtime::sim::{Sim, SimConfig};
    use plateau_runtime::{Context, Handlers, NodeAddr, Process, Upid};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Arc<Table>>>);

    impl TablePublisher for Recorder {
        fn publish(&self, table: Arc<Table>) {
            self.0.lock().unwrap().push(table);
        }
    }

    impl Recorder {
        fn last(&self) -> Option<Arc<Table>> {
            self.0.lock().unwrap().last().cloned()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// Marathon's side of the feed: a snapshot per subscription, deltas on demand.
    #[derive(Default)]
    struct FakeMarathon {
        version: u64,
        apps: BTreeMap<String, AppRoutes>,
        subscribers: Vec<Upid>,
        subscriptions: usize,
    }

    impl FakeMarathon {
        fn handle_subscribe(&mut self, ctx: &mut Context<'_>, from: &Upid, _msg: SubscribeRoutes) {
            self.subscriptions += 1;
            if !self.subscribers.contains(from) {
                self.subscribers.push(from.clone());
            }
            ctx.send(
                from,
                RoutesSnapshot {
                    leader_epoch: 0,
                    version: self.version,
                    apps: self.apps.values().cloned().collect(),
                },
            );
        }

        /// Change an app; send the delta with version `self.version + 1 + skip`.
        fn upsert(&mut self, ctx: &mut Context<'_>, app: AppRoutes, skip: u64) {
            self.version += 1 + skip;
            self.apps.insert(app.app_id.clone(), app.clone());
            for s in &self.subscribers {
                ctx.send(
                    s,
                    RoutesChanged {
                        version: self.version,
                        upserts: vec![app.clone()],
                        removed_apps: vec![],
                    },
                );
            }
        }
    }

    impl Process for FakeMarathon {
        fn install(h: &mut Handlers<Self>) {
            h.on(Self::handle_subscribe);
        }
    }

    fn web(ports: &[u16]) -> AppRoutes {
        let tasks = ports
            .iter()
            .map(|p| backend(&format!("web.{p}"), *p))
            .collect();
        app("/web", 10000, &[], tasks)
    }

    fn backends_of(t: &Table) -> Vec<u16> {
        t.tcp_route(10000)
            .map(|r| r.backends.iter().map(|b| b.port).collect())
            .unwrap_or_default()
    }

    struct World {
        sim: Sim,
        marathon_node: NodeAddr,
        marathon: Upid,
        balancer: Upid,
        recorder: Arc<Recorder>,
    }

    fn world(seed: u64) -> World {
        let mut sim = Sim::new(SimConfig::new(seed));
        let (m, b) = (
            NodeAddr::new("10.0.0.1", 8080),
            NodeAddr::new("10.0.0.2", 9090),
        );
        sim.add_node(m.clone());
        sim.add_node(b.clone());
        let marathon = sim.spawn(
            &m,
            "marathon",
            FakeMarathon {
                version: 1,
                ..Default::default()
            },
        );
        sim.call(&marathon, |fm: &mut FakeMarathon, _| {
            fm.apps.insert("/web".into(), web(&[31000]))
        });
        let recorder = Arc::new(Recorder::default());
        let balancer = sim.spawn(
            &b,
            "balancer",
            BalancerProcess::new(marathon.clone(), None, recorder.clone()),
        );
        World {
            sim,
            marathon_node: m,
            marathon,
            balancer,
            recorder,
        }
    }

    #[test]
    fn follows_snapshot_then_deltas_and_resubscribes_on_a_gap() {
        let mut w = world(7);
        let rec = w.recorder.clone();
        assert!(w.sim.run_until_condition(Duration::from_secs(5), |_| rec
            .last()
            .is_some_and(|t| t.version == Some(1))));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000]);

        // The next delta applies at once.
        w.sim.call(&w.marathon, |fm: &mut FakeMarathon, ctx| {
            fm.upsert(ctx, web(&[31000, 31001]), 0)
        });
        assert!(w.sim.run_until_condition(Duration::from_secs(5), |_| rec
            .last()
            .is_some_and(|t| t.version == Some(2))));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000, 31001]);

        // A delta after a lost one (version 4 after 2) is not applied: a new subscription
        // brings a snapshot at 4 instead.
        let published = rec.count();
        w.sim.call(&w.marathon, |fm: &mut FakeMarathon, ctx| {
            fm.upsert(ctx, web(&[31002]), 1)
        });
        let m = w.marathon.clone();
        assert!(w.sim.run_until_condition(Duration::from_secs(5), |sim| {
            sim.inspect(&m, |fm: &FakeMarathon| fm.subscriptions)
                .unwrap()
                == 2
                && rec.last().is_some_and(|t| t.version == Some(4))
        }));
        assert_eq!(
            rec.count(),
            published + 1,
            "the gapped delta itself published nothing"
        );
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31002]);
        let b = w.balancer.clone();
        assert_eq!(
            w.sim.inspect(&b, |p: &BalancerProcess| p.version()),
            Some(Some(4))
        );
    }

    #[test]
    fn keeps_serving_and_resubscribes_after_the_link_breaks() {
        let mut w = world(11);
        let rec = w.recorder.clone();
        assert!(w
            .sim
            .run_until_condition(Duration::from_secs(5), |_| rec.last().is_some()));
        let published = rec.count();

        // Marathon's node dies: the balancer learns through its link, keeps its table and
        // keeps trying.
        w.sim.crash(&w.marathon_node);
        w.sim.run_for(Duration::from_secs(30));
        assert_eq!(
            rec.count(),
            published,
            "losing Marathon publishes nothing, empties nothing"
        );
        let b = w.balancer.clone();
        let attempts = w
            .sim
            .inspect(&b, |p: &BalancerProcess| p.subscriptions())
            .unwrap();
        assert!(attempts >= 3, "retried with backoff: {attempts}");
        assert!(attempts <= 30, "backoff bounds the retries: {attempts}");

        // A new Marathon comes up with newer state: the balancer finds it and follows it.
        w.sim.restart(&w.marathon_node);
        let m = w.sim.spawn(
            &w.marathon_node,
            "marathon",
            FakeMarathon {
                version: 10,
                ..Default::default()
            },
        );
        w.sim.call(&m, |fm: &mut FakeMarathon, _| {
            fm.apps.insert("/web".into(), web(&[32000]))
        });
        assert!(w.sim.run_until_condition(Duration::from_secs(15), |_| rec
            .last()
            .is_some_and(|t| t.version == Some(10))));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![32000]);

        // And deltas flow again.
        w.sim.call(&m, |fm: &mut FakeMarathon, ctx| {
            fm.upsert(ctx, web(&[32000, 32001]), 0)
        });
        assert!(w.sim.run_until_condition(Duration::from_secs(5), |_| rec
            .last()
            .is_some_and(|t| t.version == Some(11))));
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let mut w = world(seed);
            w.sim.run_for(Duration::from_secs(2));
            w.sim.crash(&w.marathon_node);
            w.sim.run_for(Duration::from_secs(20));
            w.sim.trace_hash()
        };
        assert_eq!(run(3), run(3));
    }

    /// One of several Marathons: the leader feeds routes stamped with its epoch; a standby
    /// answers `RoutesNotLeader` and keeps the subscriber for when it is elected.
    #[derive(Default)]
    struct HaMarathon {
        epoch: Option<u64>,
        version: u64,
        apps: BTreeMap<String, AppRoutes>,
        subscribers: Vec<Upid>,
    }

    impl HaMarathon {
        fn handle_subscribe(&mut self, ctx: &mut Context<'_>, from: &Upid, _m: SubscribeRoutes) {
            if !self.subscribers.contains(from) {
                self.subscribers.push(from.clone());
            }
            match self.epoch {
                Some(epoch) => ctx.send(from, self.snapshot(epoch)),
                None => ctx.send(from, RoutesNotLeader { leader: None }),
            }
        }

        fn snapshot(&self, epoch: u64) -> RoutesSnapshot {
            RoutesSnapshot {
                leader_epoch: epoch,
                version: self.version,
                apps: self.apps.values().cloned().collect(),
            }
        }

        fn elect(&mut self, ctx: &mut Context<'_>, epoch: u64, apps: Vec<AppRoutes>) {
            self.epoch = Some(epoch);
            self.version += 1;
            self.apps = apps.into_iter().map(|a| (a.app_id.clone(), a)).collect();
            for s in &self.subscribers {
                ctx.send(s, self.snapshot(epoch));
            }
        }

        fn depose(&mut self, ctx: &mut Context<'_>) {
            self.epoch = None;
            for s in &self.subscribers {
                ctx.send(s, RoutesNotLeader { leader: None });
            }
        }

        /// A delta, whether or not this one leads (a deposed leader's late one).
        fn upsert(&mut self, ctx: &mut Context<'_>, app: AppRoutes) {
            self.version += 1;
            self.apps.insert(app.app_id.clone(), app.clone());
            for s in &self.subscribers {
                ctx.send(
                    s,
                    RoutesChanged {
                        version: self.version,
                        upserts: vec![app.clone()],
                        removed_apps: vec![],
                    },
                );
            }
        }
    }

    impl Process for HaMarathon {
        fn install(h: &mut Handlers<Self>) {
            h.on(Self::handle_subscribe);
        }
    }

    #[test]
    fn follows_the_leader_of_two_marathons_and_keeps_its_table_between_leaders() {
        let mut sim = Sim::new(SimConfig::new(5));
        let nodes = [
            NodeAddr::new("10.0.0.1", 8080),
            NodeAddr::new("10.0.0.2", 8080),
            NodeAddr::new("10.0.0.9", 9090),
        ];
        for n in &nodes {
            sim.add_node(n.clone());
        }
        let a = sim.spawn(&nodes[0], "marathon", HaMarathon::default());
        let b = sim.spawn(&nodes[1], "marathon", HaMarathon::default());
        let recorder = Arc::new(Recorder::default());
        let balancer = sim.spawn(
            &nodes[2],
            "balancer",
            BalancerProcess::following(vec![a.clone(), b.clone()], None, recorder.clone()),
        );
        let rec = recorder.clone();
        let followed = |sim: &mut Sim| {
            sim.inspect(&balancer, |p: &BalancerProcess| p.followed().cloned())
                .unwrap()
        };
        // Nobody leads yet: both answer that they do not; nothing is published.
        sim.run_for(Duration::from_secs(1));
        assert_eq!(rec.count(), 0);
        assert_eq!(followed(&mut sim), None);

        // A is elected: its snapshot comes without a new subscription.
        sim.call(&a, |m: &mut HaMarathon, ctx| {
            m.elect(ctx, 5, vec![web(&[31000])])
        });
        assert!(sim.run_until_condition(Duration::from_secs(2), |_| rec.count() == 1));
        assert_eq!(followed(&mut sim), Some(a.clone()));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000]);
        // Deltas from the standby are ignored; the leader's apply.
        sim.call(&b, |m: &mut HaMarathon, ctx| m.upsert(ctx, web(&[39999])));
        sim.call(&a, |m: &mut HaMarathon, ctx| {
            m.upsert(ctx, web(&[31000, 31001]))
        });
        sim.run_for(Duration::from_secs(1));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000, 31001]);

        // A is deposed: the balancer follows nobody and keeps serving A's last table.
        let published = rec.count();
        sim.call(&a, |m: &mut HaMarathon, ctx| m.depose(ctx));
        sim.run_for(Duration::from_secs(3));
        assert_eq!(followed(&mut sim), None);
        assert_eq!(rec.count(), published, "nothing published between leaders");
        // B is elected (a newer epoch): its snapshot replaces the table in one piece.
        sim.call(&b, |m: &mut HaMarathon, ctx| {
            m.elect(ctx, 7, vec![web(&[31000, 31002])])
        });
        assert!(sim.run_until_condition(Duration::from_secs(2), |_| rec.count() == published + 1));
        assert_eq!(followed(&mut sim), Some(b.clone()));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000, 31002]);
        // A late snapshot of the old leadership and A's deltas change nothing.
        sim.call(&a, |m: &mut HaMarathon, ctx| {
            let late = m.snapshot(5);
            for s in m.subscribers.clone() {
                ctx.send(&s, late.clone());
            }
            m.upsert(ctx, web(&[38888]));
        });
        sim.run_for(Duration::from_secs(1));
        assert_eq!(followed(&mut sim), Some(b.clone()));
        assert_eq!(backends_of(&rec.last().unwrap()), vec![31000, 31002]);
        let epoch = sim
            .inspect(&balancer, |p: &BalancerProcess| p.epoch())
            .unwrap();
        assert_eq!(epoch, 7);

        // B's node dies: the balancer keeps B's table and takes A when A leads again.
        let published = rec.count();
        sim.crash(&nodes[1]);
        sim.run_for(Duration::from_secs(3));
        assert_eq!(rec.count(), published);
        sim.call(&a, |m: &mut HaMarathon, ctx| {
            m.elect(ctx, 9, vec![web(&[31003])])
        });
        assert!(sim.run_until_condition(Duration::from_secs(10), |_| rec
            .last()
            .is_some_and(|t| backends_of(&t) == vec![31003])));
        assert_eq!(followed(&mut sim), Some(a.clone()));
    }

    /// `start` on a real (actix) node: the process subscribes to a Marathon on the node and
    /// the data plane serves what it publishes.
    #[test]
    fn start_hosts_the_process_and_the_data_plane_on_a_node() -> Result<()> {
        use plateau_balancer::BalancerConfig;
        use plateau_runtime::{Node, NodeConfig};
        actix_rt::System::new().block_on(async {
            let node = Node::start(NodeConfig::local("127.0.0.1", 5999, 1))?;
            let backend_a = tcp_backend("a").await;
            let sp = free_port();
            let mut apps = BTreeMap::new();
            apps.insert(
                "/db".to_string(),
                app("/db", sp, &[], vec![backend("a", backend_a.port)]),
            );
            let marathon = node.spawn(
                "marathon",
                FakeMarathon {
                    version: 3,
                    apps,
                    ..Default::default()
                },
            )?;
            let mut config = BalancerConfig::new(marathon.upid().clone());
            config.data_plane = DataPlaneConfig::loopback();
            let balancer = plateau_balancer::start(&node, config)?;
            wait_listening(&balancer.data_plane, sp).await?;
            assert_eq!(TcpClient::connect(sp).await?.backend, "a");
            let version = balancer
                .process
                .call(|p: &mut BalancerProcess, _| p.version())
                .await?;
            assert_eq!(version, Some(3));
            assert_eq!(balancer.data_plane.stats().table_version, Some(3));
            node.shutdown();
            balancer.data_plane.shutdown();
            Ok(())
        })
    }
}
