//! The console's reverse proxy: the master forwards the console's requests to the agents,
//! the frameworks' web UIs, the balancer, and (from a master that does not lead) to the
//! leading master, so the browser talks to one origin only.
//!
//! A request keeps its method, path, query, body and headers but the hop-by-hop ones
//! (`Authorization` goes along: the target checks the credentials itself). Over plain HTTP the
//! answer streams back as it comes (so an event stream flows through); over HTTPS (a cluster
//! with `--https`) the answer is read whole, trusting only the cluster CA, and event streams
//! are not forwarded (501: the console then asks again every few seconds).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Connect (and TLS handshake) timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence of a target once connected (event streams send at least every few
/// seconds).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read whole (HTTPS).
pub const ANSWER_BYTES_MAX: usize = 64 << 20;

use plateau_security::client::copy_answer_headers as copy_headers;
pub use plateau_security::client::is_hop_by_hop;

/// The proxy's client: plain HTTP, and HTTPS when the cluster's TLS client configuration is
/// given.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    https: Option<Arc<rustls::ClientConfig>>,
}

fn message(status: u16, text: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
        .content_type("application/json")
        .body(serde_json::json!({ "message": text }).to_string())
}

impl Client {
    /// A client for targets over HTTP, and over HTTPS with `https` (trusting the cluster CA).
    pub fn new(https: Option<Arc<rustls::ClientConfig>>) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Client { http, https }
    }

    /// Forwards `request` (with `body`) to `base` (`http://host:port` or `https://...`) at
    /// `path_and_query`.
    pub async fn forward(
        &self,
        request: &HttpRequest,
        body: web::Bytes,
        base: &str,
        path_and_query: &str,
    ) -> HttpResponse {
        if let Some(addr) = base.strip_prefix("https://") {
            return self
                .forward_https(request, body, addr, path_and_query)
                .await;
        }
        let url = format!("{base}{path_and_query}");
        let Ok(method) = reqwest::Method::from_bytes(request.method().as_str().as_bytes()) else {
            return message(405, "method not allowed");
        };
        let mut out = self.http.request(method, &url);
        for (name, value) in request.headers() {
            if !is_hop_by_hop(name.as_str()) {
                out = out.header(name.as_str(), value.as_bytes());
            }
        }
        let response = match out.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%url, error = %e, "console proxy: target unreachable");
                return message(502, &format!("cannot reach {base}: {e}"));
            }
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut builder = HttpResponse::build(status);
        copy_headers(
            &mut builder,
            response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        let stream = futures_util::stream::unfold(response, |mut response| async move {
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(chunk), response)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), response)),
            }
        });
        builder.streaming(stream)
    }

    async fn forward_https(
        &self,
        request: &HttpRequest,
        body: web::Bytes,
        addr: &str,
        path_and_query: &str,
    ) -> HttpResponse {
        use plateau_security::client::{send, Limits};
        let Some(config) = self.https.clone() else {
            return message(
                502,
                "this master has no TLS client configuration for HTTPS targets",
            );
        };
        let wants_stream = request
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        if wants_stream {
            return message(
                501,
                "event streams are not forwarded over HTTPS; ask again instead",
            );
        }
        let headers = plateau_security::client::forwarded_headers(request);
        let limits = Limits {
            connect: CONNECT_TIMEOUT,
            read: READ_TIMEOUT,
            body_bytes_max: ANSWER_BYTES_MAX,
        };
        match send(
            config,
            addr,
            request.method().as_str(),
            path_and_query,
            &headers,
            body,
            limits,
        )
        .await
        {
            Ok(answer) => answer.into_response(),
            Err(e) => message(502, &format!("cannot reach https://{addr}: {e}")),
        }
    }
}
