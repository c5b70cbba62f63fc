//! The HTTPS client of the standby → leader proxies (Marathon's and Chronos'): one request on
//! a connection of its own (no pool, for the reason the proxies give), trusting only the
//! cluster CA ([`crate::tls::https_client_config`]).
//!
//! A failure before the request was written (TCP connect, TLS handshake) is
//! [`SendError::Connect`]: the proxies retry those, since the leader cannot have seen the
//! request. Anything later is final.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

/// Request and response headers that concern one connection only (RFC 9110 §7.6.1), and the
/// ones the HTTP stacks set themselves: a proxy does not pass them on.
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Adds the answer headers a proxy passes on (all but the hop-by-hop ones, and any that is
/// not a valid header) to `builder`.
pub fn copy_answer_headers<'a>(
    builder: &mut actix_web::HttpResponseBuilder,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) {
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in headers {
        if is_hop_by_hop(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            builder.append_header((name, value));
        }
    }
}

/// The headers of `request` a proxy passes on, as [`send`] takes them.
pub fn forwarded_headers(request: &actix_web::HttpRequest) -> Vec<(String, Vec<u8>)> {
    request
        .headers()
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name.as_str()))
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect()
}

/// What a request sent through [`send`] gave back.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The response headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The answer as a proxy gives it back: its status, the headers it passes on, its body.
    pub fn into_response(self) -> actix_web::HttpResponse {
        use actix_web::http::StatusCode;
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut builder = actix_web::HttpResponse::build(status);
        copy_answer_headers(
            &mut builder,
            self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        );
        builder.body(self.body)
    }
}

/// Why [`send`] gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing was sent: the connection or the TLS handshake failed (or timed out).
    #[error("cannot reach {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The request may have reached the server, but no whole answer came back.
    #[error("{0}")]
    Failed(String),
    /// The answer's body is larger than allowed.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// Limits of one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From the request written to the whole answer read.
    pub read: Duration,
    /// The largest answer body accepted.
    pub body_bytes_max: usize,
}

/// Send `method path_and_query` with `headers` and `body` to `https://addr` on a connection
/// of its own.
pub async fn send(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(String, Vec<u8>)],
    body: Bytes,
    limits: Limits,
) -> Result<Answer, SendError> {
    let connect_err = |reason: String| SendError::Connect {
        addr: addr.to_string(),
        reason,
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|e| connect_err(e.to_string()))?;
    let connected = tokio::time::timeout(limits.connect, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    })
    .await
    .map_err(|_| connect_err("timed out".into()))?
    .map_err(connect_err)?;

    let exchange = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(connected))
                .await
                .map_err(|e| SendError::Failed(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, addr);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_slice());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SendError::Failed(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
            .collect();
        let body = Limited::new(response.into_body(), limits.body_bytes_max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    SendError::TooLarge(limits.body_bytes_max)
                } else {
                    SendError::Failed(e.to_string())
                }
            })?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(limits.read, exchange)
        .await
        .map_err(|_| SendError::Failed("timed out waiting for the answer".into()))?
}
