//! The one HTTP client of the CLI ([`Api::send`]) and the cluster's services as a context names
//! them: the masters (each tried in turn; a 307 from a master that does not lead is followed by
//! hand, so that the credentials go along), Marathon, Chronos and the agents.
//!
//! `http://` goes through reqwest (without TLS, as everywhere in the workspace: its rustls
//! feature would make every reqwest client of the binary depend on a process-wide crypto
//! provider); `https://` through [`plateau_security::client`] (hyper over tokio-rustls with
//! ring), trusting the context's CA alone.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::context::Context;
use crate::error::{CliError, Result};

/// TCP connect (plus TLS) to one address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed for one request.
pub const REDIRECTS_MAX: usize = 3;

/// Which service a request is for.
#[derive(Debug, Clone)]
pub enum Service {
    /// The leading master (any master of the context, following its redirect).
    Master,
    /// Marathon.
    Marathon,
    /// Chronos.
    Chronos,
    /// One agent (slave), by its base URL.
    Agent(String),
}

/// The largest answer body read over HTTPS.
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// An answer: status and body (JSON when it parses, else a string).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// A cluster as one context names it.
pub struct Api {
    /// The context's name (for messages and the CLUSTER column).
    pub name: String,
    context: Context,
    http: reqwest::Client,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    auth: Option<(String, String)>,
}

/// One exchange's outcome: a status, a Location, a body; or why nothing came back.
struct Exchange {
    status: u16,
    location: Option<String>,
    text: String,
}

impl Api {
    /// A client for `context`.
    pub fn new(name: &str, context: Context) -> Result<Api> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CliError::Usage(format!("building the HTTP client: {e}")))?;
        let tls = match &context.ca {
            Some(ca) => Some(std::sync::Arc::new(tls_config(ca).map_err(|e| {
                CliError::Usage(format!("context '{name}': --ca {}: {e}", ca.display()))
            })?)),
            None => None,
        };
        let auth = context.basic_auth()?;
        Ok(Api {
            name: name.to_string(),
            context,
            http,
            tls,
            auth,
        })
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The base URL of an agent at `host:port`.
    pub fn agent_url(&self, host_port: &str) -> String {
        self.context.url(host_port)
    }

    fn describe(&self, service: &Service) -> String {
        match service {
            Service::Master => format!("the masters of context '{}'", self.name),
            Service::Marathon => format!("Marathon of context '{}'", self.name),
            Service::Chronos => format!("Chronos of context '{}'", self.name),
            Service::Agent(url) => format!("the agent {url}"),
        }
    }

    fn bases(&self, service: &Service) -> Vec<String> {
        match service {
            Service::Master => self.context.master_urls(),
            Service::Marathon => vec![self.context.marathon_url()],
            Service::Chronos => vec![self.context.chronos_url()],
            Service::Agent(url) => vec![url.clone()],
        }
    }

    /// Send `method path` (path with its query) with an optional JSON body to `service`;
    /// any status comes back (see [`Api::call`] for the checked form).
    pub async fn send(
        &self,
        service: &Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let bases = self.bases(service);
        let mut last_error = String::from("no address configured");
        for base in &bases {
            let mut url = format!("{base}{path}");
            for _ in 0..=REDIRECTS_MAX {
                let answer = match self.exchange(&method, &url, body).await {
                    Ok(a) => a,
                    Err(e) => {
                        last_error = format!("{url}: {e}");
                        break;
                    }
                };
                let status = answer.status;
                if matches!(status, 301 | 302 | 307 | 308) {
                    let Some(location) = answer.location else {
                        last_error = format!("{url}: a redirect without a Location");
                        break;
                    };
                    url = redirected(&location, path);
                    continue;
                }
                if status == 503 && matches!(service, Service::Master) {
                    // A master without a leader yet: another may know better.
                    last_error = format!("{url}: 503 {}", answer.text);
                    break;
                }
                let text = answer.text;
                let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                return Ok(Answer { status, body });
            }
        }
        Err(CliError::Unreachable {
            what: self.describe(service),
            tried: bases.join(", "),
            reason: last_error,
        })
    }

    /// One request to `url` (no redirect followed); an error when nothing came back.
    async fn exchange(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
    ) -> std::result::Result<Exchange, String> {
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        if let Some(rest) = url.strip_prefix("https://") {
            let Some(tls) = &self.tls else {
                return Err(
                    "an https address needs the cluster CA: add the context with --ca FILE".into(),
                );
            };
            let (addr, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let mut headers = vec![("accept".to_string(), b"application/json".to_vec())];
            if body.is_some() {
                headers.push(("content-type".into(), b"application/json".to_vec()));
            }
            if let Some((principal, secret)) = &self.auth {
                let token =
                    plateau_runtime::tls::encode_base64(format!("{principal}:{secret}").as_bytes());
                headers.push((
                    "authorization".into(),
                    format!("Basic {token}").into_bytes(),
                ));
            }
            let limits = plateau_security::client::Limits {
                connect: CONNECT_TIMEOUT,
                read: REQUEST_TIMEOUT,
                body_bytes_max: BODY_BYTES_MAX,
            };
            let answer = plateau_security::client::send(
                tls.clone(),
                addr,
                method.as_str(),
                path,
                &headers,
                bytes::Bytes::from(payload),
                limits,
            )
            .await
            .map_err(|e| e.to_string())?;
            let location = answer
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
            return Ok(Exchange {
                status: answer.status,
                location,
                text: String::from_utf8_lossy(&answer.body).into_owned(),
            });
        }
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some((principal, secret)) = &self.auth {
            request = request.basic_auth(principal, Some(secret));
        }
        if body.is_some() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload);
        }
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        Ok(Exchange {
            status: response.status().as_u16(),
            location,
            text: response.text().await.unwrap_or_default(),
        })
    }

    /// [`Api::send`], with error statuses turned into errors: 401/403 → unauthorized (exit
    /// 4), 404 → not found (exit 5, `not_found` says what), others → cluster error (exit 1).
    pub async fn call(
        &self,
        service: &Service,
        method: Method,
        path: &str,
        body: Option<&Value>,
        not_found: &str,
    ) -> Result<Value> {
        let what = format!("{method} {path} ({})", self.describe(service));
        let answer = self.send(service, method, path, body).await?;
        check(answer, &what, not_found)
    }

    /// GET `path` of `service`, checked.
    pub async fn get(&self, service: &Service, path: &str, not_found: &str) -> Result<Value> {
        self.call(service, Method::GET, path, None, not_found).await
    }

    /// The leading master's `/master/state`.
    pub async fn master_state(&self) -> Result<Value> {
        self.get(&Service::Master, "/master/state", "no /master/state")
            .await
    }
}

/// A TLS client configuration trusting the CA certificates of the PEM file `ca` alone
/// (ring, the workspace's one crypto provider).
pub fn tls_config(ca: &std::path::Path) -> std::result::Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let pem = std::fs::read(ca).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in the file".into());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The error of an answer, or its body.
pub fn check(answer: Answer, what: &str, not_found: &str) -> Result<Value> {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Ok(answer.body);
    }
    let message = message_of(&answer.body);
    Err(match status {
        401 => CliError::Unauthorized {
            what: what.to_string(),
            status,
            message,
            hint: "the cluster wants credentials: `plateau context add NAME --master ... --credentials FILE` (or --principal P --secret S)".into(),
        },
        403 => CliError::Unauthorized {
            what: what.to_string(),
            status,
            message,
            hint: "the context's principal is not allowed this action: ask for it in the cluster's ACLs, or use another principal".into(),
        },
        404 => CliError::NotFound(format!("{not_found} ({what}: {message})")),
        _ => CliError::Cluster(format!("{what} answered {status}: {message}")),
    })
}

/// The message of an error body: `message`, `error`, or the body itself.
pub fn message_of(body: &Value) -> String {
    for key in ["message", "error"] {
        if let Some(m) = body.get(key).and_then(Value::as_str) {
            let mut text = m.to_string();
            if let Some(details) = body.get("details").filter(|d| !d.is_null()) {
                text.push_str(&format!(" {details}"));
            }
            if let Some(field) = body.get("field").and_then(Value::as_str) {
                text.push_str(&format!(" (field {field})"));
            }
            return text;
        }
    }
    match body {
        Value::String(s) if s.is_empty() => "(empty body)".into(),
        Value::String(s) => s.chars().take(500).collect(),
        other => other.to_string().chars().take(500).collect(),
    }
}

/// Where a redirect leads: the Location's scheme and authority with our own path and query
/// (a master's redirect names only the leader's root or path).
fn redirected(location: &str, path: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}{path}")
}

/// The error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_keeps_the_request_path() {
        assert_eq!(
            redirected("http://127.0.0.2:5050/master/state", "/master/state?x=1"),
            "http://127.0.0.2:5050/master/state?x=1"
        );
        assert_eq!(
            redirected("https://m2:5050", "/master/maintenance/status"),
            "https://m2:5050/master/maintenance/status"
        );
    }

    #[test]
    fn error_statuses_become_exit_codes() {
        let answer = |status, body| Answer { status, body };
        let code = |a| check(a, "GET /x", "nothing").unwrap_err().exit_code();
        assert_eq!(code(answer(401, serde_json::json!({"message": "no"}))), 4);
        assert_eq!(code(answer(403, Value::Null)), 4);
        assert_eq!(
            code(answer(
                404,
                serde_json::json!({"message": "App '/a' does not exist"})
            )),
            5
        );
        assert_eq!(
            code(answer(
                422,
                serde_json::json!({"message": "bad", "details": []})
            )),
            1
        );
        assert!(check(answer(200, Value::Null), "GET /x", "n").is_ok());
    }
}
