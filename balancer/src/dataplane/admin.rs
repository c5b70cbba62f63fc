//! The admin listener (default `:9090`, as marathon-lb's stats port):
//!
//! | Path | Answer |
//! |---|---|
//! | `/stats` | [`StatsSnapshot`](super::stats::StatsSnapshot) as JSON: table version and problems, listeners, per-app and per-backend counters |
//! | `/metrics` | the same counters as Prometheus text |
//! | `/_health` | `200 OK` while the data plane runs |
//! | `/table` | the routing table being served, as JSON |

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::stats::{Stats, StatsCollector};
use crate::limits::ADMIN_CONNECTIONS_MAX;

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

/// Serve the admin pages until the runtime stops.
pub(crate) async fn serve(listener: tokio::net::TcpListener, stats: Arc<Stats>) {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats.clone())));
    let registry = Arc::new(registry);
    let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (stats, registry) = (stats.clone(), registry.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = answer(&stats, &registry, req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}
