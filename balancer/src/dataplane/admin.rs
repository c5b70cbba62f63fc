//! The admin listener (default `:9090`, as marathon-lb's stats port):
//!
//! | Path | Answer |
//! |---|---|
//! | `/stats` | [`StatsSnapshot`](super::stats::StatsSnapshot) as JSON: table version and problems, listeners, per-app and per-backend counters |
//! | `/metrics` | the same counters as Prometheus text |
//! | `/_health` | `200 OK` while the data plane runs |
//! | `/table` | the routing table being served, as JSON |
//!
//! Behind the same guard as the other APIs ([`classify`]: `/_health` open, the others
//! `get_endpoints` on their path), over HTTPS when configured.
//!
//! Limits, so that no client can starve it: a TLS handshake and each request head must arrive
//! within [`ADMIN_HEADER_READ_TIMEOUT`]; a connection with no request for the idle timeout
//! ([`DataPlaneConfig::admin_idle_timeout`](super::DataPlaneConfig)) is closed; at most
//! [`ADMIN_CONNECTIONS_MAX`] connections are open — when a new one arrives at the limit, the
//! connection idle the longest is closed to make room (only when all are busy serving a request
//! does the new one wait).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use plateau_security::{Access, Action, Guard, Outcome, ServeOptions};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use super::stats::{Stats, StatsCollector};
use crate::limits::{ADMIN_CONNECTIONS_MAX, ADMIN_HEADER_READ_TIMEOUT};

/// What each admin request needs ([`plateau_security::Access`]).
pub fn classify(method: &str, path: &str) -> Access {
    match (method, path) {
        (_, "/_health") => Access::Open,
        ("GET" | "HEAD", "/stats" | "/metrics" | "/table") => {
            Access::Action(Action::GetEndpoints, Some(path.to_string()))
        }
        _ => Access::Authenticated,
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer(
    stats: &Arc<Stats>,
    registry: &prometheus_client::registry::Registry,
    path: &str,
) -> Response<Full<Bytes>> {
    match path {
        "/stats" => match serde_json::to_string_pretty(&stats.snapshot()) {
            Ok(s) => reply(StatusCode::OK, "application/json", s),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                e.to_string(),
            ),
        },
        "/table" => {
            let table = stats.registry.lock().expect("stats lock").table.clone();
            match serde_json::to_string_pretty(&*table) {
                Ok(s) => reply(StatusCode::OK, "application/json", s),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        "/metrics" => {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, registry) {
                Ok(()) => reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    out,
                ),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        "/_health" => reply(StatusCode::OK, "text/plain", "OK\n".into()),
        other => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("no such page '{other}': try /stats, /metrics, /table, /_health\n"),
        ),
    }
}

/// One open admin connection, as the accept loop sees it.
struct Slot {
    /// No request is being served on it.
    idle: bool,
    /// Closes it.
    close: Arc<Notify>,
}

/// The open connections, oldest first (ids grow).
#[derive(Default)]
struct Slots(Mutex<BTreeMap<u64, Slot>>);

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(slot) = self.lock().get_mut(&id) {
            slot.idle = idle;
        }
    }

    /// Close the connection idle the longest; false if every connection is busy.
    fn evict_idle(&self) -> bool {
        let slots = self.lock();
        match slots.values().find(|s| s.idle) {
            Some(slot) => {
                slot.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// The guard's answer to a refused request.
fn refusal(status: u16, body: String, outcome: Outcome) -> Response<Full<Bytes>> {
    let mut r = reply(
        StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
        "application/json",
        body,
    );
    if outcome == Outcome::Unauthenticated {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(plateau_security::guard::WWW_AUTHENTICATE),
        );
    }
    r
}

/// Serve the admin pages until the runtime stops.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<Stats>,
    security: ServeOptions,
    idle_timeout: Duration,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats.clone())));
    let registry = Arc::new(registry);
    let guard = Arc::new(security.guard("balancer", classify));
    let tls = security.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS_MAX));
    let slots = Arc::new(Slots::default());
    let mut next_id = 0u64;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // At the limit: make room by closing the connection idle the longest; wait only
        // when every connection is in the middle of a request (they end quickly).
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                slots.evict_idle();
                match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        next_id += 1;
        let id = next_id;
        let close = Arc::new(Notify::new());
        slots.lock().insert(
            id,
            Slot {
                idle: true,
                close: close.clone(),
            },
        );
        let connection = Connection {
            id,
            stats: stats.clone(),
            registry: registry.clone(),
            guard: guard.clone(),
            slots: slots.clone(),
            close,
            idle_timeout,
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let slots = connection.slots.clone();
            match tls {
                None => connection.run(stream).await,
                Some(tls) => {
                    match tokio::time::timeout(ADMIN_HEADER_READ_TIMEOUT, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "admin TLS handshake failed"),
                        Err(_) => tracing::debug!("admin TLS handshake timed out"),
                    }
                }
            }
            slots.lock().remove(&id);
            drop(permit);
        });
    }
}

/// One admin connection.
struct Connection {
    id: u64,
    stats: Arc<Stats>,
    registry: Arc<prometheus_client::registry::Registry>,
    guard: Arc<Guard>,
    slots: Arc<Slots>,
    close: Arc<Notify>,
    idle_timeout: Duration,
}

/// The host's clock: the admin listener runs on real hosts only (the simulator has no HTTP).
fn real_now() -> tokio::time::Instant {
    tokio::time::Instant::now() // determinism-ok: the admin listener runs on real hosts only
}

impl Connection {
    async fn run<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // When the last request ended (or the connection opened), `None` while one is served.
        let since = Arc::new(Mutex::new(Some(real_now())));
        let service = {
            let (stats, registry, guard) = (
                self.stats.clone(),
                self.registry.clone(),
                self.guard.clone(),
            );
            let (slots, since, id) = (self.slots.clone(), since.clone(), self.id);
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                slots.set_idle(id, false);
                *since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let method = req.method().as_str().to_string();
                let decision = guard.decide(
                    &method,
                    req.uri().path(),
                    req.headers()
                        .get(hyper::header::AUTHORIZATION)
                        .map(HeaderValue::as_bytes),
                );
                let r = match decision.rejection() {
                    Some((status, body)) => refusal(status, body, decision.outcome),
                    None => answer(&stats, &registry, req.uri().path()),
                };
                decision.audit(guard.component(), &method, r.status().as_u16());
                slots.set_idle(id, true);
                *since.lock().unwrap_or_else(|e| e.into_inner()) = Some(real_now());
                async move { Ok::<_, Infallible>(r) }
            })
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle_check = (self.idle_timeout / 4).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                biased;
                _ = connection.as_mut() => return,
                _ = self.close.notified() => return,
                _ = tokio::time::sleep(idle_check) => {
                    let idle_since = *since.lock().unwrap_or_else(|e| e.into_inner());
                    if idle_since.is_some_and(|t| t.elapsed() >= self.idle_timeout) {
                        return;
                    }
                }
            }
        }
    }
}
