//! Standbys serve the REST API by proxying it to the leader, as Chronos' `RedirectFilter` did:
//! the same method, path, query, body, content type and `Authorization` go to the leader's
//! advertised address,
//! and its status, content type and body come back.
//!
//! [`LeaderOnly`] is an actix-web middleware around the API's scopes. For each request it asks
//! the scheduler process what it is ([`Role`]): the leader (or a single Chronos) serves the
//! request itself; a standby that knows the leader proxies it; a standby that does not (an
//! election is under way) answers 503. A proxied request carries [`PROXIED_BY_HEADER`]; a
//! standby that receives one answers 503 instead of proxying again, so that two instances with
//! stale ideas of the leader never bounce a request between them.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::http::{error_body, role_of, ChronosRef};
use crate::limits;
use crate::scheduler::Role;

/// Set on a request a standby proxies to the leader (its value: the standby's address).
pub const PROXIED_BY_HEADER: &str = "x-plateau-chronos-proxied-by";

/// What a request gets.
enum Route {
    /// This instance serves it.
    Serve,
    /// The leader at this address serves it.
    Forward(String),
    /// This answer (no leader to serve it).
    Answer(HttpResponse),
}

/// What the middleware needs: the scheduler process, this instance's advertised address and an
/// HTTP client for the leader.
#[derive(Clone)]
pub struct Proxy {
    handle: ChronosRef,
    advertised: String,
    client: reqwest::Client,
    /// With HTTPS: the client configuration trusting the cluster CA (the leader serves HTTPS
    /// too, all instances being started alike).
    https: Option<Arc<rustls::ClientConfig>>,
}

impl Proxy {
    /// A proxy for the instance at `advertised` (`host:port`) hosting `handle`.
    pub fn new(
        handle: ChronosRef,
        advertised: String,
        https: Option<Arc<rustls::ClientConfig>>,
    ) -> Proxy {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(limits::PROXY_TIMEOUT_MS))
            // No connection pool, as Marathon's proxy: a pooled connection to a leader killed
            // a moment ago may not look closed yet, and a request written to it is lost (502);
            // a fresh connection to a dead leader is refused at once.
            .pool_max_idle_per_host(0)
            .build()
            .expect("an HTTP client without TLS builds");
        Proxy {
            handle,
            advertised,
            client,
            https,
        }
    }

    /// Who serves `req`.
    fn route(&self, role: Role, req: &ServiceRequest) -> Route {
        match role {
            Role::Leader => Route::Serve,
            Role::Standby { leader: None } => Route::Answer(error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "no Chronos leader is elected yet: ask again in a few seconds",
                None,
            )),
            Role::Standby {
                leader: Some(leader),
            } => {
                if leader == self.advertised || req.headers().contains_key(PROXIED_BY_HEADER) {
                    // This instance was the leader a moment ago, or another standby thinks it
                    // leads: the leadership is moving.
                    Route::Answer(error_body(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "this Chronos ({}) is not the leader and the leadership is moving: ask again in a few seconds",
                            self.advertised
                        ),
                        None,
                    ))
                } else {
                    Route::Forward(leader)
                }
            }
        }
    }

    /// Sends `req` with `body` to the leader at `leader`; its answer, or 503 naming it.
    async fn forward(&self, leader: &str, req: &ServiceRequest, body: web::Bytes) -> HttpResponse {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Some(config) = &self.https {
            return self
                .forward_https(config.clone(), leader, path, req, body)
                .await;
        }
        let url = format!("http://{leader}{path}");
        let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut request = self
            .client
            .request(method, &url)
            .header(PROXIED_BY_HEADER, self.advertised.as_str())
            .body(body.to_vec());
        // The caller's credentials go along: the leader checks them again.
        for name in ["content-type", "accept", "authorization"] {
            if let Some(value) = req.headers().get(name) {
                request = request.header(name, value.as_bytes());
            }
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the Chronos leader at {leader} did not answer: {e}"),
                None,
            )
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return unavailable(&e),
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.as_bytes().to_vec());
        match response.bytes().await {
            Ok(bytes) => {
                let mut answer = HttpResponse::build(status);
                if let Some(content_type) = content_type {
                    answer.insert_header(("content-type", content_type));
                }
                answer.body(bytes.to_vec())
            }
            Err(e) => unavailable(&e),
        }
    }

    /// [`Proxy::forward`] to a leader serving HTTPS.
    async fn forward_https(
        &self,
        config: Arc<rustls::ClientConfig>,
        leader: &str,
        path: &str,
        req: &ServiceRequest,
        body: web::Bytes,
    ) -> HttpResponse {
        use plateau_security::client::{send, Limits};
        let mut headers = vec![(
            PROXIED_BY_HEADER.to_string(),
            self.advertised.as_bytes().to_vec(),
        )];
        // The caller's credentials go along: the leader checks them again.
        for name in ["content-type", "accept", "authorization"] {
            if let Some(value) = req.headers().get(name) {
                headers.push((name.to_string(), value.as_bytes().to_vec()));
            }
        }
        let timeout = Duration::from_millis(limits::PROXY_TIMEOUT_MS);
        let limits = Limits {
            connect: timeout,
            read: timeout,
            body_bytes_max: limits::PROXY_RESPONSE_BYTES_MAX,
        };
        let method = req.method().as_str();
        match send(config, leader, method, path, &headers, body, limits).await {
            Ok(answer) => {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = HttpResponse::build(status);
                if let Some((_, content_type)) = answer
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                {
                    response.insert_header(("content-type", content_type.clone()));
                }
                response.body(answer.body)
            }
            Err(e) => error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the Chronos leader at {leader} did not answer: {e}"),
                None,
            ),
        }
    }
}

/// The middleware (see the [module docs](self)).
pub struct LeaderOnly(pub Proxy);

impl<S, B> Transform<S, ServiceRequest> for LeaderOnly
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type InitError = ();
    type Transform = LeaderOnlyService<S>;
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(LeaderOnlyService {
            service: Rc::new(service),
            proxy: self.0.clone(),
        }))
    }
}

/// The middleware's service.
pub struct LeaderOnlyService<S> {
    service: Rc<S>,
    proxy: Proxy,
}

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for LeaderOnlyService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let proxy = self.proxy.clone();
        Box::pin(async move {
            let role = match proxy.handle.call(role_of).await {
                Ok(role) => role,
                Err(e) => {
                    let answer = error_body(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None);
                    return Ok(req.into_response(answer).map_into_right_body());
                }
            };
            let answer = match proxy.route(role, &req) {
                Route::Serve => return Ok(service.call(req).await?.map_into_left_body()),
                Route::Forward(leader) => match req.extract::<web::Bytes>().await {
                    Ok(body) => proxy.forward(&leader, &req, body).await,
                    Err(e) => error_body(StatusCode::BAD_REQUEST, &e.to_string(), None),
                },
                Route::Answer(answer) => answer,
            };
            Ok(req.into_response(answer).map_into_right_body())
        })
    }
}
