//! HTTP mode: one listener routing by `Host` and path prefix to a pool of backend
//! connections.
//!
//! | Case | Answer |
//! |---|---|
//! | no route for the host and path | 404, body `no route for host '…' and path '…'` |
//! | the app has no backend taking requests | 503, body naming the app |
//! | connecting fails on every backend tried | 503, body naming the app and the last error |
//! | connecting or the response headers take too long | 504, body naming the backend |
//! | the backend answers something that is not HTTP, or resets | 502, body naming the backend |
//!
//! Idempotent requests without a body (`GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`)
//! are retried on another backend when connecting fails, up to
//! [`HTTP_ATTEMPTS_MAX`](crate::limits::HTTP_ATTEMPTS_MAX) backends in all. Nothing was sent
//! then, so the retry cannot run a request twice. Each request is its own task: a hung
//! backend holds only its own requests.
//!
//! Headers added: `X-Forwarded-For` (the client's address appended), `X-Forwarded-Proto:
//! http`, `X-Forwarded-Host` (the client's `Host`). Hop-by-hop headers are not forwarded.
//! `Host` is passed unchanged, as HAProxy does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::stats::{ActiveGuard, ErrorClass};
use super::{LiveRoute, Shared};
use crate::limits::{
    CLIENT_HEADER_READ_TIMEOUT, HTTP_ATTEMPTS_MAX, POOL_IDLE_PER_BACKEND_MAX, POOL_IDLE_TIMEOUT,
};

/// The body type of every response the proxy gives.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

type BackendClient = Client<HttpConnector, ProxyBody>;

/// The HTTP proxy: routing, pooled backend client, retries.
#[derive(Clone)]
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    client: BackendClient,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that concern one hop only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body + "\n"))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A backend's response body that keeps its backend's request counted as active until it
/// is fully sent (or the client goes away).
struct GuardedBody {
    inner: Incoming,
    _active: ActiveGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Proxy {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(shared.config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_BACKEND_MAX)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Proxy { shared, client }
    }

    /// Accept clients until the runtime stops.
    pub(crate) async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok(permit) = self.shared.connections.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(peer, req).await) }
                });
                let result = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(CLIENT_HEADER_READ_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                drop(permit);
            });
        }
    }

    /// Route and forward one request.
    pub(crate) async fn handle(
        &self,
        peer: SocketAddr,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let route = {
            let live = self.shared.live();
            live.http_route(&host, req.uri().path()).cloned()
        };
        let Some(route) = route else {
            self.shared.stats.no_route.fetch_add(1, Relaxed);
            return text(
                StatusCode::NOT_FOUND,
                format!("no route for host '{host}' and path '{}'", req.uri().path()),
            );
        };
        if route.backends.is_empty() {
            route.app.no_backend.fetch_add(1, Relaxed);
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no healthy backend for app {}", route.app_id),
            );
        }
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let client_ip = peer.ip().to_string();
        let forwarded_for = match parts
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {client_ip}"),
            None => client_ip,
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            parts.headers.insert(X_FORWARDED_FOR, v);
        }
        parts
            .headers
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Ok(v) = HeaderValue::from_str(&host) {
            parts.headers.insert(X_FORWARDED_HOST, v);
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let retryable = is_idempotent(&parts.method) && body.is_end_stream();
        let mut body = Some(body);
        let mut tried = Vec::with_capacity(HTTP_ATTEMPTS_MAX);
        let mut last_connect_error = String::new();
        while tried.len() < HTTP_ATTEMPTS_MAX {
            let Some((i, active)) = route.pick(&tried) else {
                break;
            };
            tried.push(i);
            let this_body: ProxyBody = if retryable {
                Empty::new()
                    .map_err(|never: Infallible| match never {})
                    .boxed_unsync()
            } else {
                match body.take() {
                    Some(b) => b.boxed_unsync(),
                    None => break,
                }
            };
            match self
                .send(&route, i, &parts, &path_and_query, this_body, active)
                .await
            {
                Attempt::Done(resp) => return resp,
                Attempt::ConnectFailed(e) => {
                    last_connect_error = e;
                    if !retryable {
                        break;
                    }
                }
            }
        }
        route.app.no_backend.fetch_add(1, Relaxed);
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no backend of app {} accepted the connection (tried {}; last error: {last_connect_error})",
                route.app_id,
                tried.len()
            ),
        )
    }

    async fn send(
        &self,
        route: &LiveRoute,
        index: usize,
        parts: &hyper::http::request::Parts,
        path_and_query: &str,
        body: ProxyBody,
        active: ActiveGuard,
    ) -> Attempt {
        let backend = &route.backends[index];
        let uri: Uri = match format!("http://{}{}", backend.address, path_and_query).parse() {
            Ok(u) => u,
            Err(e) => {
                return Attempt::Done(text(
                    StatusCode::BAD_REQUEST,
                    format!("request target cannot be forwarded: {e}"),
                ))
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = parts.headers.clone();
        backend.stats.requests.fetch_add(1, Relaxed);
        let started = tokio::time::Instant::now(); // determinism-ok: I/O shell, latency metric
        let timeout = self.shared.config.response_header_timeout;
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => {
                backend.stats.latency.observe(started.elapsed());
                backend.stats.response(resp.status().as_u16());
                let (mut rparts, rbody) = resp.into_parts();
                strip_hop_by_hop(&mut rparts.headers);
                let body = GuardedBody {
                    inner: rbody,
                    _active: active,
                }
                .boxed_unsync();
                Attempt::Done(Response::from_parts(rparts, body))
            }
            Ok(Err(e)) if e.is_connect() => {
                if caused_by_timeout(&e) {
                    backend.stats.error(ErrorClass::Timeout);
                    return Attempt::Done(text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "backend {} of app {} did not accept the connection within {:?}",
                            backend.address, route.app_id, self.shared.config.connect_timeout
                        ),
                    ));
                }
                backend.stats.error(ErrorClass::Connect);
                let cause =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                Attempt::ConnectFailed(format!("{}: {cause}", backend.address))
            }
            Ok(Err(e)) => {
                backend.stats.error(ErrorClass::BadResponse);
                let cause =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                Attempt::Done(text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "bad response from backend {} of app {}: {cause}",
                        backend.address, route.app_id
                    ),
                ))
            }
            Err(_) => {
                backend.stats.error(ErrorClass::Timeout);
                Attempt::Done(text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "backend {} of app {} did not answer within {:?}",
                        backend.address, route.app_id, timeout
                    ),
                ))
            }
        }
    }
}

enum Attempt {
    Done(Response<ProxyBody>),
    ConnectFailed(String),
}
