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
    let start = tokio::time::Instant::now();
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
    s.handle_snapshot(RoutesSnapshot { version, apps });
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
                            "{name}\nxff={}\nproto={}\nxhost={}\nhost={}\npath={}\n",
                            h("x-forwarded-for"),
                            h("x-forwarded-proto"),
                            h("x-forwarded-host"),
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
    let started = tokio::time::Instant::now();
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

// ---------------------------------------------------------------- the process, simulated

mod process {
    use super::*;
    use plateau_balancer::messages::{RoutesChanged, SubscribeRoutes};
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
