//! Marathon's REST API v2 (actix-web): the paths, fields and status codes of Marathon 1.10
//! (`shared/reference/marathon-api.md`).
//!
//! Handlers reach the scheduler through [`ProcessRef::call`]: each request runs between two of
//! the scheduler's messages, so the API sees a consistent state, and every change is persisted
//! before the handler answers. App ids contain slashes, so everything under `/v2/apps/` goes
//! through one dispatcher that recognizes the suffixes `/restart`, `/tasks`, `/tasks/{taskId}`,
//! `/versions` and `/versions/{version}` before treating the rest as an app id.
//!
//! | path | methods |
//! |---|---|
//! | `/v2/apps` | GET (`embed`, `id`, `cmd`, `label`), POST (`force`) |
//! | `/v2/apps/{id}` | GET (`embed`), PUT/PATCH (`force`, `partialUpdate`), DELETE (`force`, default true) |
//! | `/v2/apps/{id}/restart` | POST |
//! | `/v2/apps/{id}/tasks[/{taskId}]` | GET, DELETE (`host`, `scale`, `wipe`, `force`) |
//! | `/v2/apps/{id}/versions[/{version}]` | GET |
//! | `/v2/tasks` | GET (`status`, `status[]`); `/v2/tasks/delete` POST |
//! | `/v2/deployments[/{id}]` | GET, DELETE (`force`) |
//! | `/v2/queue`, `/v2/queue/{id}/delay` | GET, DELETE |
//! | `/v2/info`, `/v2/leader`, `/ping`, `/metrics` | GET |
//! | `/v2/events` | GET, `Accept: text/event-stream` (`event_type`, `plan-format`) |
//!
//! Boolean query parameters are read case-insensitively (`True`, `TRUE`); anything else is
//! false. An unknown route answers 500 `{"message":"URI not found"}`, as Marathon does.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use plateau_runtime::{Node, ProcessRef};
use plateau_sdk::{Driver, Masters, SchedulerDriver};
use plateau_security::{RequireAuth, ServeOptions};
use serde_json::{json, Value};

use crate::error::Error;
use crate::events::Subscription;
use crate::limits::{API_ANSWER_WAIT, HTTP_BODY_BYTES_MAX};
use crate::proxy::{leader_proxy, LeaderProxy};
use crate::scheduler::{
    with_marathon, ApiAnswer, ApiCaller, ApiResponse, Embed, MarathonConfig, MarathonScheduler,
};
use crate::store::{MemoryStore, RedbStore, Store};

/// A handle on the Marathon process, for HTTP handlers.
pub type MarathonRef = ProcessRef<SchedulerDriver<MarathonScheduler>>;

/// Interval of the SSE heartbeat (a bare `\r\n`), as Marathon.
pub const EVENT_STREAM_HEARTBEAT: Duration = Duration::from_secs(10);

type Query = Vec<(String, String)>;

fn query(req: &HttpRequest) -> Query {
    web::Query::<Query>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

fn param<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn params<'a>(q: &'a Query, names: &'a [&str]) -> impl Iterator<Item = &'a str> + 'a {
    q.iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

/// A boolean query parameter, case-insensitive; absent: `default`; any other value: false.
fn flag(q: &Query, name: &str, default: bool) -> bool {
    param(q, name).map_or(default, |v| v.eq_ignore_ascii_case("true"))
}

fn respond(r: ApiResponse) -> HttpResponse {
    let mut builder = HttpResponse::build(
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (name, value) in &r.headers {
        builder.insert_header((name.as_str(), value.as_str()));
    }
    match r.body {
        Some(body) => builder
            .content_type("application/json")
            .body(body.to_string()),
        None => builder.finish(),
    }
}

fn json_ok(body: Value) -> HttpResponse {
    respond(ApiResponse::json(200, body))
}

fn message(status: u16, text: &str) -> HttpResponse {
    respond(ApiResponse::message(status, text))
}

/// Runs `f` inside the scheduler; 503 when the process is gone.
async fn call<R: Send + 'static>(
    marathon: &MarathonRef,
    f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> R + Send + 'static,
) -> Result<R, HttpResponse> {
    marathon
        .call(move |p, ctx| with_marathon(p, ctx, f))
        .await
        .map_err(|e| message(503, &format!("Marathon is not running: {e}")))
}

/// Runs an API call inside the scheduler and answers once its writes are in the store: at
/// once for a single Marathon, after they commit for leader + standbys (see
/// [`MarathonScheduler::answer`]). A standby (the leadership moved since the proxy looked)
/// answers 503.
async fn call_response(
    marathon: &MarathonRef,
    f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> ApiResponse + Send + 'static,
) -> HttpResponse {
    let answer = call(marathon, move |s, d| {
        if !s.serves_api() {
            return ApiAnswer::Ready(ApiResponse::message(
                503,
                "This Marathon is not the leader (any more); try again",
            ));
        }
        let response = f(s, d);
        s.answer(d, response)
    })
    .await;
    match answer {
        Ok(ApiAnswer::Ready(r)) => respond(r),
        Ok(ApiAnswer::Pending(pending)) => {
            match tokio::time::timeout(API_ANSWER_WAIT, pending.wait()).await {
                Ok(r) => respond(r),
                Err(_) => message(
                    503,
                    "The change was not committed in time: its outcome is unknown",
                ),
            }
        }
        Err(e) => e,
    }
}

/// A read: `f`'s JSON with 200, through [`call_response`].
async fn call_json(
    marathon: &MarathonRef,
    f: impl FnOnce(&mut MarathonScheduler, &mut Driver<'_, '_>) -> Value + Send + 'static,
) -> HttpResponse {
    call_response(marathon, move |s, d| ApiResponse::json(200, f(s, d))).await
}

fn caller(req: &HttpRequest) -> ApiCaller {
    ApiCaller {
        client_ip: req
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        uri: req.uri().path().to_string(),
    }
}

fn embed(q: &Query) -> Embed {
    Embed::parse(params(q, &["embed"]))
}

async fn ping(req: HttpRequest) -> HttpResponse {
    let wants_json = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        HttpResponse::Ok()
            .content_type("application/json")
            .body("\"pong\"")
    } else {
        HttpResponse::Ok().content_type("text/plain").body("pong")
    }
}

async fn metrics(m: web::Data<MarathonRef>) -> HttpResponse {
    call_json(&m, |s, _| s.metrics_json()).await
}

/// Answered by every instance: `elected` says whether this one leads.
async fn info(m: web::Data<MarathonRef>) -> HttpResponse {
    match call(&m, |s, d| s.info_json(d.is_connected())).await {
        Ok(v) => json_ok(v),
        Err(e) => e,
    }
}

/// Answered by every instance: the leader's `host:port`, or 404 while none leads.
async fn leader(m: web::Data<MarathonRef>) -> HttpResponse {
    match call(&m, |s, _| s.leader()).await {
        Ok(Some(leader)) => json_ok(json!({"leader": leader})),
        Ok(None) => message(404, "There is no leader"),
        Err(e) => e,
    }
}

async fn list_apps(req: HttpRequest, m: web::Data<MarathonRef>) -> HttpResponse {
    let q = query(&req);
    let embed = embed(&q);
    let (id, cmd, label) = (
        param(&q, "id").map(str::to_string),
        param(&q, "cmd").map(str::to_string),
        param(&q, "label").map(str::to_string),
    );
    call_json(&m, move |s, _| {
        s.apps_json(embed, id.as_deref(), cmd.as_deref(), label.as_deref())
    })
    .await
}

async fn create_app(req: HttpRequest, body: web::Bytes, m: web::Data<MarathonRef>) -> HttpResponse {
    let q = query(&req);
    let force = flag(&q, "force", false);
    let caller = caller(&req);
    call_response(&m, move |s, d| s.create_app(d, &caller, &body, force)).await
}

/// Everything under `/v2/apps/`: the suffix routes first, then the app itself.
async fn apps_dispatch(
    req: HttpRequest,
    body: web::Bytes,
    m: web::Data<MarathonRef>,
) -> HttpResponse {
    let tail = req
        .match_info()
        .query("tail")
        .trim_end_matches('/')
        .to_string();
    let q = query(&req);
    let force = flag(&q, "force", false);
    let method = req.method().clone();
    if let Some(id) = tail.strip_suffix("/restart") {
        if method != Method::POST {
            return message(405, "Method not allowed");
        }
        let (id, caller) = (id.to_string(), caller(&req));
        return call_response(&m, move |s, d| s.restart_app(d, &caller, &id, force)).await;
    }
    if let Some((id, task)) = tail.rsplit_once("/tasks/") {
        let (id, task) = (id.to_string(), task.to_string());
        let (scale, wipe) = (flag(&q, "scale", false), flag(&q, "wipe", false));
        return match method {
            Method::DELETE => {
                call_response(&m, move |s, d| {
                    s.kill_app_tasks(d, &id, Some(&task), None, scale, wipe, force)
                })
                .await
            }
            _ => message(405, "Method not allowed"),
        };
    }
    if let Some(id) = tail.strip_suffix("/tasks") {
        let id = id.to_string();
        let (scale, wipe) = (flag(&q, "scale", false), flag(&q, "wipe", false));
        let host = param(&q, "host").map(str::to_string);
        return match method {
            Method::GET => call_response(&m, move |s, _| s.app_tasks(&id)).await,
            Method::DELETE => {
                call_response(&m, move |s, d| {
                    s.kill_app_tasks(d, &id, None, host.as_deref(), scale, wipe, force)
                })
                .await
            }
            _ => message(405, "Method not allowed"),
        };
    }
    if let Some((id, version)) = tail.rsplit_once("/versions/") {
        let (id, version) = (id.to_string(), version.to_string());
        return call_response(&m, move |s, _| s.version(&id, &version)).await;
    }
    if let Some(id) = tail.strip_suffix("/versions") {
        let id = id.to_string();
        return call_response(&m, move |s, _| s.versions(&id)).await;
    }
    let id = tail;
    match method {
        Method::GET => {
            let embed = embed(&q);
            call_response(&m, move |s, _| s.get_app(&id, embed)).await
        }
        Method::PUT | Method::PATCH => {
            let partial = method == Method::PATCH || flag(&q, "partialUpdate", true);
            let caller = caller(&req);
            let patch = method == Method::PATCH;
            call_response(&m, move |s, d| {
                let canonical = crate::app::canonical_path_id(&id, "/");
                if patch && !s.apps().contains_key(&canonical) {
                    return ApiResponse::message(404, format!("App '{canonical}' does not exist"));
                }
                s.put_app(d, &caller, &id, &body, force, partial)
            })
            .await
        }
        Method::DELETE => {
            let force = flag(&q, "force", true);
            call_response(&m, move |s, d| s.delete_app(d, &id, force)).await
        }
        _ => message(405, "Method not allowed"),
    }
}

async fn list_tasks(req: HttpRequest, m: web::Data<MarathonRef>) -> HttpResponse {
    let q = query(&req);
    let statuses: Vec<String> = params(&q, &["status", "status[]"])
        .map(str::to_string)
        .collect();
    call_json(&m, move |s, _| s.tasks_json(&statuses)).await
}

async fn delete_tasks(
    req: HttpRequest,
    body: web::Bytes,
    m: web::Data<MarathonRef>,
) -> HttpResponse {
    let q = query(&req);
    let (scale, wipe, force) = (
        flag(&q, "scale", false),
        flag(&q, "wipe", false),
        flag(&q, "force", false),
    );
    call_response(&m, move |s, d| s.kill_tasks(d, &body, scale, wipe, force)).await
}

async fn list_deployments(m: web::Data<MarathonRef>) -> HttpResponse {
    call_json(&m, |s, _| s.deployments_json()).await
}

async fn delete_deployment(req: HttpRequest, m: web::Data<MarathonRef>) -> HttpResponse {
    let id = req.match_info().query("id").to_string();
    let force = flag(&query(&req), "force", false);
    call_response(&m, move |s, d| s.delete_deployment(d, &id, force)).await
}

async fn queue(m: web::Data<MarathonRef>) -> HttpResponse {
    call_json(&m, |s, d| {
        let now = d.ctx().now().since_origin();
        s.queue_json(now)
    })
    .await
}

async fn queue_dispatch(req: HttpRequest, m: web::Data<MarathonRef>) -> HttpResponse {
    let tail = req.match_info().query("tail").to_string();
    match tail.strip_suffix("/delay") {
        Some(id) if req.method() == Method::DELETE => {
            let id = id.to_string();
            call_response(&m, move |s, d| s.reset_delay(d, &id)).await
        }
        _ => not_found().await,
    }
}

async fn events(req: HttpRequest, m: web::Data<MarathonRef>) -> HttpResponse {
    let accepts = req
        .headers()
        .get_all("accept")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if !accepts {
        return message(405, "Only text/event-stream is supported (Accept header)");
    }
    let q = query(&req);
    let subscription = Subscription {
        event_types: params(&q, &["event_type"]).map(str::to_string).collect(),
        light_plans: param(&q, "plan-format").is_some_and(|v| v.eq_ignore_ascii_case("light")),
    };
    let remote = req.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let rx = match call(&m, move |s, d| {
        if !s.serves_api() {
            return Err("This Marathon is not the leader (any more); try again");
        }
        s.attach_event_stream(d, subscription, &remote)
            .ok_or("too many event stream subscribers")
    })
    .await
    {
        Ok(Ok(rx)) => rx,
        Ok(Err(why)) => return message(503, why),
        Err(e) => return e,
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        tokio::select! {
            biased;
            frame = rx.recv() => frame.map(|f| (Ok::<Bytes, Infallible>(f), rx)),
            _ = tokio::time::sleep(EVENT_STREAM_HEARTBEAT) => Some((Ok(Bytes::from_static(b"\r\n")), rx)),
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream;charset=UTF-8")
        .insert_header(("Cache-Control", "no-cache"))
        .force_close()
        .streaming(stream)
}

async fn not_found() -> HttpResponse {
    message(500, "URI not found")
}

/// What each request needs ([`plateau_security::Access`]), from its method and path only:
///
/// | request | needs |
/// |---|---|
/// | `/ping` | nothing (load balancers probe it) |
/// | `GET /v2/apps/{id}[/tasks, /versions...]` | `view_apps` on `/{id}` |
/// | `PUT`, `PATCH`, `DELETE /v2/apps/{id}`, `POST /v2/apps/{id}/restart` | `update_apps` on `/{id}` |
/// | `DELETE /v2/apps/{id}/tasks[/{task}]` | `kill_tasks` on `/{id}` |
/// | `POST /v2/apps` (the id is in the body) | `update_apps` on any app |
/// | `POST /v2/tasks/delete` | `kill_tasks` on any app |
/// | `DELETE /v2/deployments/{id}` | `update_apps` on any app |
/// | `DELETE /v2/queue/{id}/delay` | `update_apps` on `/{id}` |
/// | `GET /v2/apps`, `/v2/tasks`, `/v2/deployments`, `/v2/queue`, `/v2/events` | `view_apps` on any app |
/// | `GET /metrics` | `get_endpoints` on `/metrics` |
/// | anything else (`/v2/info`, `/v2/leader`) | credentials only |
pub fn classify(method: &str, path: &str) -> plateau_security::Access {
    use plateau_security::{Access, Action};
    let read = matches!(method, "GET" | "HEAD");
    if path == "/ping" {
        return Access::Open;
    }
    if path == "/metrics" && read {
        return Access::Action(Action::GetEndpoints, Some(path.to_string()));
    }
    if let Some(tail) = path.strip_prefix("/v2/apps/") {
        let (id, kill) = if let Some(id) = tail.strip_suffix("/restart") {
            (id, false)
        } else if let Some((id, _task)) = tail.rsplit_once("/tasks/") {
            (id, true)
        } else if let Some(id) = tail.strip_suffix("/tasks") {
            (id, true)
        } else if let Some((id, _)) = tail.rsplit_once("/versions/") {
            (id, false)
        } else if let Some(id) = tail.strip_suffix("/versions") {
            (id, false)
        } else {
            (tail, false)
        };
        let id = Some(format!("/{id}"));
        return match (read, kill) {
            (true, _) => Access::Action(Action::ViewApps, id),
            (false, true) => Access::Action(Action::KillTasks, id),
            (false, false) => Access::Action(Action::UpdateApps, id),
        };
    }
    if let Some(id) = path
        .strip_prefix("/v2/queue/")
        .and_then(|t| t.strip_suffix("/delay"))
    {
        if !read {
            return Access::Action(Action::UpdateApps, Some(format!("/{id}")));
        }
    }
    match path {
        "/v2/apps" | "/v2/tasks" | "/v2/deployments" | "/v2/queue" | "/v2/events" if read => {
            Access::Action(Action::ViewApps, None)
        }
        "/v2/apps" => Access::Action(Action::UpdateApps, None),
        "/v2/tasks/delete" => Access::Action(Action::KillTasks, None),
        p if p.starts_with("/v2/deployments/") && !read => Access::Action(Action::UpdateApps, None),
        p if p.starts_with("/v2/queue/") && read => Access::Action(Action::ViewApps, None),
        _ => Access::Authenticated,
    }
}

/// Registers Marathon's routes on `cfg`, serving `marathon`.
pub fn configure(cfg: &mut web::ServiceConfig, marathon: MarathonRef) {
    cfg.app_data(web::Data::new(marathon))
        .app_data(web::PayloadConfig::new(HTTP_BODY_BYTES_MAX))
        .route("/ping", web::get().to(ping))
        .route("/metrics", web::get().to(metrics))
        .route("/v2/info", web::get().to(info))
        .route("/v2/leader", web::get().to(leader))
        .route("/v2/apps", web::get().to(list_apps))
        .route("/v2/apps", web::post().to(create_app))
        .route("/v2/apps/{tail:.*}", web::route().to(apps_dispatch))
        .route("/v2/tasks", web::get().to(list_tasks))
        .route("/v2/tasks/delete", web::post().to(delete_tasks))
        .route("/v2/deployments", web::get().to(list_deployments))
        .route("/v2/deployments/{id}", web::delete().to(delete_deployment))
        .route("/v2/queue", web::get().to(queue))
        .route("/v2/queue/{tail:.*}", web::route().to(queue_dispatch))
        .route("/v2/events", web::get().to(events))
        .default_service(web::to(not_found));
}

/// Serves the API on `listener` (already bound) with `workers` worker threads; the server
/// runs on the current actix system until stopped through the returned handle. With `proxy`
/// (leader + standbys) requests go through the leader proxy ([`crate::proxy`]). Every request
/// first passes the guard of `security` ([`classify`]), which forwards nothing it refuses.
pub fn serve(
    listener: TcpListener,
    marathon: MarathonRef,
    workers: usize,
    proxy: Option<LeaderProxy>,
    security: &ServeOptions,
) -> Result<ServerHandle, Error> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let guard = security.guard("marathon", classify);
    let server = HttpServer::new(move || {
        let marathon = marathon.clone();
        let proxy = proxy.clone();
        App::new()
            .wrap(actix_web::middleware::from_fn(leader_proxy))
            // Outermost: a standby refuses before it forwards anything to the leader.
            .wrap(RequireAuth::new(guard.clone()))
            .configure(move |cfg| {
                if let Some(proxy) = proxy {
                    cfg.app_data(web::Data::new(proxy));
                }
                configure(cfg, marathon)
            })
    })
    .workers(workers.max(1))
    .shutdown_timeout(5)
    .disable_signals();
    let server = plateau_security::server::listen(server, listener, security)
        .map_err(|e| Error::Http {
            addr,
            message: e.to_string(),
        })?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

/// How to start Marathon on a node.
#[derive(Debug, Clone)]
pub struct StartConfig {
    /// Marathon's settings.
    pub marathon: MarathonConfig,
    /// The masters (`master@host:5050` each): Marathon follows the one that leads.
    pub masters: Masters,
    /// Work dir: the state goes to `<work_dir>/marathon/state.redb`; `None` keeps it in memory.
    pub work_dir: Option<PathBuf>,
    /// Where the HTTP API listens (default port 8080).
    pub http_listen: SocketAddr,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Name of the scheduler process on the node.
    pub process_name: String,
    /// Credentials, ACLs and HTTPS of the API (default: open, plain HTTP).
    pub security: ServeOptions,
}

/// A running Marathon: the scheduler process and its HTTP server.
pub struct MarathonServer {
    /// The scheduler process.
    pub process: MarathonRef,
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// Stops the HTTP server.
    pub http: ServerHandle,
}

/// Starts Marathon on `node` (inside its actix system): opens the store, spawns the
/// scheduler (which registers with the master) and serves the API.
///
/// With `config.marathon.ha` it is one of several: no local store; the scheduler campaigns
/// for the leadership among the masters (a group) and keeps its state there, and the API
/// proxies to the leader while this instance stands by.
pub fn start(node: &Node, config: StartConfig) -> Result<MarathonServer, Error> {
    let (driver, proxy) = if config.marathon.ha {
        let ttl = config.marathon.session_ttl;
        let proxy = LeaderProxy::new(
            format!("{}:{}", config.marathon.hostname, config.marathon.http_port),
            config.security.client_tls.clone(),
        );
        let driver =
            MarathonScheduler::driver_with_leader_election(config.marathon, config.masters, ttl);
        (driver, Some(proxy))
    } else {
        let store: Box<dyn Store> = match &config.work_dir {
            Some(dir) => Box::new(RedbStore::open_in(dir)?),
            None => Box::new(MemoryStore::new()),
        };
        let driver = MarathonScheduler::driver(config.marathon, store, config.masters)?;
        (driver, None)
    };
    let process = node
        .spawn(&config.process_name, driver)
        .map_err(|e| Error::Spawn(e.to_string()))?;
    let listener = TcpListener::bind(config.http_listen).map_err(|e| Error::Http {
        addr: config.http_listen.to_string(),
        message: e.to_string(),
    })?;
    let addr = listener.local_addr().map_err(|e| Error::Http {
        addr: config.http_listen.to_string(),
        message: e.to_string(),
    })?;
    let http = serve(
        listener,
        process.clone(),
        config.http_workers,
        proxy,
        &config.security,
    )?;
    Ok(MarathonServer {
        process,
        addr,
        http,
    })
}
