//! The actix-web middleware that puts a [`Guard`] in front of an API: refused requests get a
//! 401 (with `WWW-Authenticate`) or 403 and a JSON body, and never reach a handler; every
//! change and every refusal leaves an audit line.
//!
//! ```no_run
//! # use std::sync::Arc;
//! use plateau_security::{Access, Guard, Policy, RequireAuth};
//! fn classify(_method: &str, _path: &str) -> Access { Access::Authenticated }
//! let guard = Guard::new("example", Arc::new(Policy::open()), classify);
//! let app = actix_web::App::new().wrap(RequireAuth::new(guard));
//! ```
//!
//! Wrap it outermost (the last `.wrap`), so that it also guards what other middleware does
//! (a standby's proxy to its leader).

use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use actix_web::http::StatusCode;
use actix_web::{HttpMessage as _, HttpResponse};
use futures_util::future::LocalBoxFuture;

use crate::guard::{Guard, Outcome, WWW_AUTHENTICATE as CHALLENGE};

/// The principal a request was authenticated as, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// The middleware factory: `App::new().wrap(RequireAuth::new(guard))`.
#[derive(Clone)]
pub struct RequireAuth {
    guard: Rc<Guard>,
}

impl RequireAuth {
    /// Guard an API with `guard`.
    pub fn new(guard: Guard) -> RequireAuth {
        RequireAuth {
            guard: Rc::new(guard),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireAuth
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireAuthService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireAuthService {
            service: Rc::new(service),
            guard: self.guard.clone(),
        }))
    }
}

/// The middleware around one service (made by [`RequireAuth`]).
pub struct RequireAuthService<S> {
    service: Rc<S>,
    guard: Rc<Guard>,
}

impl<S, B> Service<ServiceRequest> for RequireAuthService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let decision = self.guard.decide(
            req.method().as_str(),
            req.path(),
            req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes),
        );
        let component = self.guard.component();
        let method = req.method().as_str().to_string();
        if let Some((status, body)) = decision.rejection() {
            decision.audit(component, &method, status);
            let mut response =
                HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN));
            response.insert_header((CONTENT_TYPE, "application/json"));
            // A script's request (the web console sends `X-Requested-With`) gets no challenge:
            // the browser would put up its own password box in front of the console's form.
            let from_script = req.headers().contains_key("x-requested-with");
            if decision.outcome == Outcome::Unauthenticated && !from_script {
                response.insert_header((WWW_AUTHENTICATE, CHALLENGE));
            }
            let response = response.body(body);
            return Box::pin(async move { Ok(req.into_response(response).map_into_right_body()) });
        }
        if let Some(p) = &decision.principal {
            req.extensions_mut().insert(Principal(p.clone()));
        }
        let service = self.service.clone();
        Box::pin(async move {
            let response = service.call(req).await?;
            decision.audit(component, &method, response.status().as_u16());
            Ok(response.map_into_left_body())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use actix_web::{test, web, App, HttpResponse};

    use super::*;
    use crate::acls::Action;
    use crate::credentials::basic_header;
    use crate::guard::Access;

    fn classify(method: &str, path: &str) -> Access {
        match path.strip_prefix("/v2/apps") {
            Some(id) if method == "GET" => Access::Action(Action::ViewApps, Some(id.to_string())),
            Some(id) => Access::Action(Action::UpdateApps, Some(id.to_string())),
            None if path == "/ping" => Access::Open,
            None => Access::Authenticated,
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_rt::test]
    async fn refused_and_allowed_changes_are_answered_and_audited() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let policy = crate::guard::tests::test_policy();
        let guard = Guard::new("marathon", Arc::new(policy), classify);
        let app = test::init_service(
            App::new()
                .wrap(RequireAuth::new(guard))
                .route(
                    "/ping",
                    web::get().to(|| async { HttpResponse::Ok().body("pong") }),
                )
                .route(
                    "/v2/apps/{id:.*}",
                    web::route().to(|req: actix_web::HttpRequest| async move {
                        let who = req.extensions().get::<Principal>().cloned();
                        HttpResponse::Ok().body(who.map(|p| p.0).unwrap_or_default())
                    }),
                ),
        )
        .await;
        let send = |method: actix_web::http::Method, path: &str, auth: Option<String>| {
            let mut r = test::TestRequest::default().method(method).uri(path);
            if let Some(a) = auth {
                r = r.insert_header((AUTHORIZATION, a));
            }
            r.to_request()
        };
        use actix_web::http::Method;

        let res = test::call_service(&app, send(Method::GET, "/ping", None)).await;
        assert_eq!(res.status(), 200);

        let res = test::call_service(&app, send(Method::PUT, "/v2/apps/web", None)).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers().get(WWW_AUTHENTICATE).unwrap(), CHALLENGE);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert!(body["message"].as_str().unwrap().contains("authentication"));
        // A script's request (the web console's) is refused the same, without the challenge.
        let script = test::TestRequest::default()
            .method(Method::PUT)
            .uri("/v2/apps/web")
            .insert_header(("X-Requested-With", "XMLHttpRequest"))
            .to_request();
        let res = test::call_service(&app, script).await;
        assert_eq!(res.status(), 401);
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());

        let res = test::call_service(
            &app,
            send(
                Method::PUT,
                "/v2/apps/web",
                Some(basic_header("ci", "wrong")),
            ),
        )
        .await;
        assert_eq!(res.status(), 401);

        let res = test::call_service(
            &app,
            send(Method::PUT, "/v2/apps/web", Some(basic_header("ci", "a"))),
        )
        .await;
        assert_eq!(res.status(), 403);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert!(body["message"].as_str().unwrap().contains("'ci'"));

        let res = test::call_service(
            &app,
            send(Method::PUT, "/v2/apps/web", Some("Bearer b".into())),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(test::read_body(res).await, "ops");

        let res = test::call_service(
            &app,
            send(Method::GET, "/v2/apps/web", Some(basic_header("ci", "a"))),
        )
        .await;
        assert_eq!(
            res.status(),
            200,
            "reads are allowed by the permissive default"
        );

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l: &serde_json::Value| l["target"] == "audit")
            .collect();
        let fields: Vec<(String, String, String, u64)> = lines
            .iter()
            .map(|l| {
                let f = &l["fields"];
                (
                    f["principal"].as_str().unwrap().to_string(),
                    f["decision"].as_str().unwrap().to_string(),
                    f["object"].as_str().unwrap().to_string(),
                    f["status"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("-".into(), "unauthenticated".into(), "/web".into(), 401),
                ("-".into(), "unauthenticated".into(), "/web".into(), 401),
                ("-".into(), "unauthenticated".into(), "/web".into(), 401),
                ("ci".into(), "denied".into(), "/web".into(), 403),
                ("ops".into(), "allowed".into(), "/web".into(), 200),
            ],
            "one line per change and per refusal, none for the allowed read or /ping: {text}"
        );
        for l in &lines {
            assert_eq!(l["fields"]["method"], "PUT");
            assert_eq!(l["fields"]["path"], "/v2/apps/web");
            assert_eq!(l["fields"]["action"], "update_apps");
            assert_eq!(l["fields"]["component"], "marathon");
        }
    }
}
