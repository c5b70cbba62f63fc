//! How every actix-web API is served: its [`Policy`], HTTPS or not, and the same server
//! limits (header-read, idle and disconnect timeouts, connection limit) from [`crate::limits`].

use std::net::TcpListener;
use std::sync::Arc;

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Response, Service, ServiceFactory};
use actix_web::Error as ActixError;
use actix_web::HttpServer;

use crate::guard::{Classifier, Guard, Policy};
use crate::limits::{
    HTTP_CONNECTIONS_PER_WORKER_MAX, HTTP_DISCONNECT_TIMEOUT, HTTP_HEADER_READ_TIMEOUT,
    HTTP_IDLE_TIMEOUT,
};

/// The security settings of one HTTP API: who may call what, and TLS.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Credentials and ACLs (the default: open, everything allowed).
    pub policy: Arc<Policy>,
    /// Serve HTTPS with this configuration (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With `tls`: how this instance calls the API of another instance of its kind over
    /// HTTPS (a standby proxying to its leader), trusting only the cluster CA.
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("policy", &self.policy)
            .field("https", &self.tls.is_some())
            .finish()
    }
}

impl ServeOptions {
    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The guard for `component`'s routes, classified by `classify`.
    pub fn guard(&self, component: &'static str, classify: Classifier) -> Guard {
        Guard::new(component, self.policy.clone(), classify)
    }
}

/// Apply the server limits to `server` and serve on `listener`, with TLS when `options` has it.
pub fn listen<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    listener: TcpListener,
    options: &ServeOptions,
) -> std::io::Result<HttpServer<F, I, S, B>>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<ActixError> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let server = server
        .client_request_timeout(HTTP_HEADER_READ_TIMEOUT)
        .client_disconnect_timeout(HTTP_DISCONNECT_TIMEOUT)
        .tls_handshake_timeout(HTTP_HEADER_READ_TIMEOUT)
        .keep_alive(HTTP_IDLE_TIMEOUT)
        .max_connections(HTTP_CONNECTIONS_PER_WORKER_MAX);
    match &options.tls {
        Some(tls) => server.listen_rustls_0_23(listener, (**tls).clone()),
        None => server.listen(listener),
    }
}
