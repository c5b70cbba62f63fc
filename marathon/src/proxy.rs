//! The leader proxy of Marathons run as leader + standbys: an actix-web middleware in front of
//! the API, as Marathon's `LeaderProxyFilter`.
//!
//! For each request it asks the scheduler process who leads ([`Leadership`]):
//! - **This instance leads:** the request goes to the API; the answer gets
//!   `X-Marathon-Leader: http://host:port`.
//! - **Another instance leads:** the request is forwarded to it — method, path, query, the
//!   headers (but hop-by-hop ones; `Authorization` is forwarded, and the leader checks it
//!   again), the body — with `X-Marathon-Via: 1.1 <this instance>`
//!   added, and the leader's status, headers and body are the answer. `/v2/events` is not
//!   forwarded: it gets a `302` to the leader's `/v2/events` (Marathon's choice too: an event
//!   stream through a proxy ties the standby to it for hours).
//! - **No leader is known** (a failover is under way), or the leader cannot be reached (it
//!   died and its lease has not expired yet): the request waits, asking again every
//!   [`LEADER_PROXY_RETRY_INTERVAL`], for at most [`LEADER_PROXY_WAIT`] — a failover
//!   usually ends within it, and the request is then served by the new leader (maybe this
//!   instance) — then `502 {"message":"Could not determine the current leader"}`.
//!   Only a failure to *connect* is retried: once the request reached the leader, its answer
//!   (or the failure to get one: 502) is final, so a write is never sent twice. Each forwarded
//!   request has a connection of its own (no pool), so a leader that just died is seen as a
//!   refused connection — retried — and not as a request lost on a stale pooled one.
//!
//! `/ping`, `/v2/leader` and `/v2/info` are always answered by the instance asked (`/v2/info`
//! says whether it is `elected`, and who leads). A request that already went through this
//! instance (`X-Marathon-Via` names it) is a loop: `502 {"message":"Detected proxying loop."}`.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use std::sync::Arc;

use crate::limits::{
    HTTP_BODY_BYTES_MAX, LEADER_PROXY_CONNECT_TIMEOUT, LEADER_PROXY_READ_TIMEOUT,
    LEADER_PROXY_RESPONSE_BYTES_MAX, LEADER_PROXY_RETRY_INTERVAL, LEADER_PROXY_WAIT,
};
use crate::scheduler::with_marathon;

/// The header a proxying standby adds (Marathon's name).
pub const VIA_HEADER: &str = "X-Marathon-Via";
/// The header the leader adds to its answers (Marathon's name).
pub const LEADER_HEADER: &str = "X-Marathon-Leader";

/// Who leads, as the scheduler process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This instance leads (and may answer).
    pub acting: bool,
    /// The leader's `host:port`, if one is known.
    pub leader: Option<String>,
}

/// The proxy's settings (app data of the HTTP server).
#[derive(Clone)]
pub struct LeaderProxy {
    /// This instance's advertised `host:port`.
    pub me: String,
    client: reqwest::Client,
    /// With HTTPS: the client configuration trusting the cluster CA (the leader serves HTTPS
    /// too, all instances being started alike).
    https: Option<Arc<rustls::ClientConfig>>,
}

impl LeaderProxy {
    /// A proxy for the instance advertised at `me`.
    pub fn new(me: impl Into<String>, https: Option<Arc<rustls::ClientConfig>>) -> Self {
        // No connection pool: every forwarded request opens its own connection. A pooled
        // connection to a leader killed a moment ago may not look closed yet; a request
        // written to it fails after it left, so it cannot be retried (the leader might have
        // read it) and the client would get a 502 during a failover. A fresh connection to a
        // dead leader is refused before anything is sent: that is retried.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .connect_timeout(LEADER_PROXY_CONNECT_TIMEOUT)
            .timeout(LEADER_PROXY_READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS always builds");
        LeaderProxy {
            me: me.into(),
            client,
            https,
        }
    }

    fn via(&self) -> String {
        format!("1.1 {}", self.me)
    }

    fn scheme(&self) -> &'static str {
        if self.https.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Paths every instance answers itself.
fn is_local(path: &str) -> bool {
    matches!(path, "/ping" | "/v2/leader" | "/v2/info")
}

use plateau_security::client::{copy_answer_headers, is_hop_by_hop};

fn message(status: u16, text: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
        .content_type("application/json")
        .body(serde_json::json!({ "message": text }).to_string())
}

async fn leadership(marathon: &crate::http::MarathonRef) -> Option<Leadership> {
    marathon
        .call(|p, ctx| {
            with_marathon(p, ctx, |s, _| Leadership {
                acting: s.is_acting(),
                leader: s.leader(),
            })
        })
        .await
        .ok()
}

/// What forwarding a request gave.
enum Forwarded {
    /// The leader's answer (or a final failure).
    Answer(HttpResponse),
    /// The leader could not be reached: the request did not leave; try again.
    Unreachable,
}

async fn forward(
    proxy: &LeaderProxy,
    req: &ServiceRequest,
    leader: &str,
    body: Bytes,
) -> Forwarded {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if let Some(config) = &proxy.https {
        return forward_https(proxy, config.clone(), req, leader, &path_and_query, body).await;
    }
    let url = format!("http://{leader}{path_and_query}");
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return Forwarded::Answer(message(405, "Method not allowed"));
    };
    let mut request = proxy.client.request(method, &url);
    for (name, value) in req.headers() {
        if !is_hop_by_hop(name.as_str()) {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    request = request.header(VIA_HEADER, proxy.via()).body(body);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            tracing::debug!(%leader, error = %e, "leader unreachable");
            return Forwarded::Unreachable;
        }
        Err(e) => {
            tracing::warn!(%leader, %url, error = %e, "proxying to the leader failed");
            return Forwarded::Answer(message(502, &format!("Proxying to the leader failed: {e}")));
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = HttpResponse::build(status);
    copy_answer_headers(
        &mut builder,
        response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    );
    let mut body = Vec::new();
    let mut response = response;
    loop {
        match response.chunk().await {
            Ok(None) => break,
            Ok(Some(chunk)) if body.len() + chunk.len() <= LEADER_PROXY_RESPONSE_BYTES_MAX => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => {
                return Forwarded::Answer(message(
                    502,
                    &format!(
                        "The leader's answer is larger than {LEADER_PROXY_RESPONSE_BYTES_MAX} bytes"
                    ),
                ))
            }
            Err(e) => {
                return Forwarded::Answer(message(
                    502,
                    &format!("Reading the leader's answer failed: {e}"),
                ))
            }
        }
    }
    Forwarded::Answer(builder.body(body))
}

/// [`forward`] to a leader serving HTTPS.
async fn forward_https(
    proxy: &LeaderProxy,
    config: Arc<rustls::ClientConfig>,
    req: &ServiceRequest,
    leader: &str,
    path_and_query: &str,
    body: Bytes,
) -> Forwarded {
    use plateau_security::client::{send, Limits, SendError};
    let mut headers = plateau_security::client::forwarded_headers(req.request());
    headers.push((VIA_HEADER.to_string(), proxy.via().into_bytes()));
    let limits = Limits {
        connect: LEADER_PROXY_CONNECT_TIMEOUT,
        read: LEADER_PROXY_READ_TIMEOUT,
        body_bytes_max: LEADER_PROXY_RESPONSE_BYTES_MAX,
    };
    let method = req.method().as_str();
    match send(
        config,
        leader,
        method,
        path_and_query,
        &headers,
        body,
        limits,
    )
    .await
    {
        Ok(answer) => Forwarded::Answer(answer.into_response()),
        Err(e @ SendError::Connect { .. }) => {
            tracing::debug!(%leader, error = %e, "leader unreachable");
            Forwarded::Unreachable
        }
        Err(SendError::TooLarge(max)) => Forwarded::Answer(message(
            502,
            &format!("The leader's answer is larger than {max} bytes"),
        )),
        Err(e) => {
            tracing::warn!(%leader, error = %e, "proxying to the leader failed");
            Forwarded::Answer(message(502, &format!("Proxying to the leader failed: {e}")))
        }
    }
}

/// The middleware (see the [module docs](self)); installed with
/// `actix_web::middleware::from_fn(proxy::leader_proxy)` when Marathon runs as leader +
/// standbys, with [`LeaderProxy`] and the scheduler's `MarathonRef` as app data.
pub async fn leader_proxy(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (Some(proxy), Some(marathon)) = (
        req.app_data::<web::Data<LeaderProxy>>().cloned(),
        req.app_data::<web::Data<crate::http::MarathonRef>>()
            .cloned(),
    ) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let path = req.path().to_string();
    if is_local(&path) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let via = proxy.via();
    let looped = req
        .headers()
        .get_all(VIA_HEADER)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|hop| hop.trim() == via));
    // The proxy serves HTTP on the real host only; the simulator has no HTTP.
    let deadline = tokio::time::Instant::now() + LEADER_PROXY_WAIT; // determinism-ok: real HTTP host only
                                                                    // The body, once read to forward it (put back if this instance ends up answering).
    let mut body: Option<Bytes> = None;
    loop {
        match leadership(&marathon).await {
            Some(Leadership { acting: true, .. }) => {
                if let Some(bytes) = body.take() {
                    req.set_payload(Payload::from(bytes));
                }
                let mut response = next.call(req).await?.map_into_boxed_body();
                if let Ok(value) =
                    HeaderValue::from_str(&format!("{}://{}", proxy.scheme(), proxy.me))
                {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static("x-marathon-leader"), value);
                }
                return Ok(response);
            }
            Some(Leadership {
                leader: Some(leader),
                ..
            }) if leader != proxy.me => {
                if looped {
                    let response = message(502, "Detected proxying loop.");
                    return Ok(req.into_response(response));
                }
                if path == "/v2/events" {
                    let query = req.query_string();
                    let scheme = proxy.scheme();
                    let location = if query.is_empty() {
                        format!("{scheme}://{leader}{path}")
                    } else {
                        format!("{scheme}://{leader}{path}?{query}")
                    };
                    let response = HttpResponse::Found()
                        .insert_header(("Location", location))
                        .finish();
                    return Ok(req.into_response(response));
                }
                let bytes = match body.clone() {
                    Some(bytes) => bytes,
                    None => {
                        let read = req.extract::<web::Bytes>().await.map_err(|e| {
                            tracing::debug!(error = %e, "reading a request body to forward");
                            e
                        });
                        match read {
                            Ok(bytes) if bytes.len() <= HTTP_BODY_BYTES_MAX => bytes,
                            Ok(_) | Err(_) => {
                                let response = message(413, "Request body too large or unreadable");
                                return Ok(req.into_response(response));
                            }
                        }
                    }
                };
                body = Some(bytes.clone());
                match forward(&proxy, &req, &leader, bytes).await {
                    Forwarded::Answer(response) => return Ok(req.into_response(response)),
                    Forwarded::Unreachable => {}
                }
            }
            // Nobody leads now (or the key still names this instance's earlier session).
            Some(_) => {}
            None => {
                let response = message(503, "Marathon is not running");
                return Ok(req.into_response(response));
            }
        }
        let now = tokio::time::Instant::now(); // determinism-ok: real HTTP host only
        if now >= deadline {
            let response = message(502, "Could not determine the current leader");
            return Ok(req.into_response(response));
        }
        tokio::time::sleep(LEADER_PROXY_RETRY_INTERVAL).await;
    }
}
