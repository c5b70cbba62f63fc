//! Chronos' REST API (actix-web), under both `/v1/scheduler` (Chronos 3.x) and `/scheduler`
//! (2.x), plus the unprefixed `/metrics` (Prometheus text) and `/ping`.
//!
//! | method, path (after the prefix) | answer |
//! |---|---|
//! | GET `/jobs` | 200, all jobs |
//! | GET `/jobs/search?name=&command=&any=&limit=10&offset=0` | 200, matching jobs |
//! | GET `/jobs/summary` | 200, `{"jobs":[{name,status,state,schedule,parents,disabled}]}` |
//! | GET `/job/{name}` | 200, the job |
//! | POST or PUT `/iso8601`, `/dependency` | 204: job created or replaced |
//! | PUT `/job/{name}?arguments=` | 204: run now |
//! | DELETE `/job/{name}` | 204: deleted |
//! | DELETE `/task/kill/{name}` | 204: its tasks killed |
//! | GET `/job/stat/{name}` | 200, histogram and task history |
//! | GET `/stats/{percentile}` | 200, `[{"jobNameLabel","time"}]` |
//! | GET `/graph/csv`, `/graph/dot` | 200, `text/plain` |
//! | GET `/leader` | 200, `{"leader":"host:port"}`: the leader's REST API (any instance answers) |
//!
//! Errors: `{"status":"Bad Request","message":"…","field":"…"}` with 400 for an invalid job
//! (the message and `field` name the field) **and for an unknown job name** — Chronos answers
//! 400, not 404, there, and its clients rely on it (`shared/reference/chronos-api.md` §1). A
//! stopped scheduler (after a store failure) answers 503. Nothing is stored on error; a
//! successful change is stored before the answer.
//!
//! Handlers reach the scheduler through [`ProcessRef::call`], between two of its messages, and
//! answer once every state write their call made (and every one before) is durable
//! ([`ChronosScheduler::reply_when_committed`]): at once with a local store, after the
//! coordination store committed it with the replicated state, so an answer never shows or
//! acknowledges a change that may not land. A leader deposed meanwhile answers 503.
//!
//! # Several instances
//!
//! With the state in the masters' coordination store ([`StateMode::Replicated`]) one instance
//! leads and the others stand by; a standby proxies every request under the prefixes to the
//! leader ([`crate::proxy`]). `/ping`, `/metrics` (with `chronos_leading`) and `/leader` are
//! answered by each instance itself.
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use plateau_runtime::node::NodeError;
use plateau_runtime::{Node, ProcessRef};
use plateau_sdk::{Driver, Masters};
use plateau_security::{RequireAuth, ServeOptions};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;

use crate::job::{Job, JobError};
use crate::limits;
use crate::proxy::{LeaderOnly, Proxy};
use crate::scheduler::{
    ApiError, ChronosConfig, ChronosProcess, ChronosScheduler, MetricsSnapshot, PostKind, Role,
};
use crate::stats::Percentile;
use crate::store::{RedbStore, StoreError};

/// A handle on the Chronos scheduler process.
pub type ChronosRef = ProcessRef<ChronosProcess>;

type Handle = web::Data<ChronosRef>;

/// This instance's advertised REST API address (`host:port`), for `/leader`.
#[derive(Debug, Clone)]
struct Advertised(String);

/// Mounts Chronos' routes, answering through `handle`; `advertised` is the `host:port` other
/// instances and clients reach this API at. A standby proxies the prefixed routes to the
/// leader ([`crate::proxy`]).
///
/// `https`: the leader serves HTTPS and a standby calls it with this client configuration.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    handle: ChronosRef,
    advertised: String,
    https: Option<std::sync::Arc<rustls::ClientConfig>>,
) {
    let proxy = Proxy::new(handle.clone(), advertised.clone(), https);
    cfg.app_data(web::Data::new(handle))
        .app_data(web::Data::new(Advertised(advertised)))
        .app_data(web::PayloadConfig::new(limits::HTTP_BODY_BYTES_MAX))
        // Before the scopes: every instance answers where the leader is.
        .route("/v1/scheduler/leader", web::get().to(leader))
        .route("/scheduler/leader", web::get().to(leader))
        .service(
            web::scope("/v1/scheduler")
                .wrap(LeaderOnly(proxy.clone()))
                .configure(routes),
        )
        .service(
            web::scope("/scheduler")
                .wrap(LeaderOnly(proxy))
                .configure(routes),
        )
        .route("/metrics", web::get().to(metrics))
        .route("/ping", web::get().to(ping));
}

/// What each request needs ([`plateau_security::Access`]), from its method and path only
/// (under `/scheduler` or `/v1/scheduler`):
///
/// | request | needs |
/// |---|---|
/// | `/ping` | nothing (load balancers probe it) |
/// | `GET /job/{name}`, `/job/stat/{name}` | `view_jobs` on `{name}` |
/// | `PUT /job/{name}` (run now), `DELETE /job/{name}`, `DELETE /task/kill/{name}` | `update_jobs` on `{name}` |
/// | `POST`/`PUT /iso8601`, `/dependency` (the name is in the body) | `update_jobs` on any job |
/// | `GET /jobs`, `/jobs/search`, `/jobs/summary`, `/stats/..`, `/graph/..` | `view_jobs` on any job |
/// | `GET /metrics` | `get_endpoints` on `/metrics` |
/// | anything else (`/scheduler/leader`) | credentials only |
pub fn classify(method: &str, path: &str) -> plateau_security::Access {
    use plateau_security::{Access, Action};
    let read = matches!(method, "GET" | "HEAD");
    if path == "/ping" {
        return Access::Open;
    }
    if path == "/metrics" && read {
        return Access::Action(Action::GetEndpoints, Some(path.to_string()));
    }
    let Some(rest) = path
        .strip_prefix("/v1/scheduler")
        .or_else(|| path.strip_prefix("/scheduler"))
    else {
        return Access::Authenticated;
    };
    let named = |action, name: &str| Access::Action(action, Some(name.to_string()));
    if let Some(name) = rest.strip_prefix("/job/stat/") {
        return named(Action::ViewJobs, name);
    }
    let action = if read {
        Action::ViewJobs
    } else {
        Action::UpdateJobs
    };
    if let Some(name) = rest
        .strip_prefix("/job/")
        .or_else(|| rest.strip_prefix("/task/kill/"))
    {
        return named(action, name);
    }
    match rest {
        "/leader" => Access::Authenticated,
        _ => Access::Action(action, None),
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/jobs", web::get().to(jobs))
        .route("/jobs/search", web::get().to(search))
        .route("/jobs/summary", web::get().to(summary))
        .route("/iso8601", web::post().to(post_iso8601))
        .route("/iso8601", web::put().to(post_iso8601))
        .route("/dependency", web::post().to(post_dependency))
        .route("/dependency", web::put().to(post_dependency))
        .route("/job/stat/{name}", web::get().to(job_stat))
        .route("/job/{name}", web::get().to(job))
        .route("/job/{name}", web::put().to(run_now))
        .route("/job/{name}", web::delete().to(delete_job))
        .route("/task/kill/{name}", web::delete().to(kill_tasks))
        .route("/stats/{percentile}", web::get().to(stats))
        .route("/graph/csv", web::get().to(graph_csv))
        .route("/graph/dot", web::get().to(graph_dot));
}

/// Chronos' error body: `{"status": <reason phrase>, "message", "field"?}`.
pub(crate) fn error_body(status: StatusCode, message: &str, field: Option<&str>) -> HttpResponse {
    let mut body = json!({
        "status": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    HttpResponse::build(status).json(body)
}

fn api_error(e: &ApiError) -> HttpResponse {
    let status = match e {
        ApiError::Invalid(_)
        | ApiError::NotFound(_)
        | ApiError::TooManyRuns
        | ApiError::TooLarge { .. } => StatusCode::BAD_REQUEST,
        ApiError::Stopped(_) | ApiError::NotLeader { .. } | ApiError::Unavailable(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    error_body(status, &e.to_string(), e.field())
}

fn gone(e: NodeError) -> HttpResponse {
    error_body(StatusCode::SERVICE_UNAVAILABLE, &e.to_string(), None)
}

/// Runs `f` in the scheduler process, then waits until every state write made so far is
/// durable ([`ChronosScheduler::reply_when_committed`]): `f`'s result, or the error that ended
/// the wait (deposed: 503), as an HTTP answer on error.
async fn answer<T: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&mut ChronosScheduler, &mut Driver<'_, '_>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, HttpResponse> {
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, ApiError>>();
    let called = handle
        .call(move |p, ctx| {
            let (s, mut d) = p.scheduler_and_driver(ctx);
            let result = f(s, &mut d);
            s.reply_when_committed(
                &d,
                Box::new(move |committed| {
                    let _ = tx.send(committed.and(result));
                }),
            );
        })
        .await;
    if let Err(e) = called {
        return Err(gone(e));
    }
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(api_error(&e)),
        Err(_) => Err(error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "the Chronos scheduler stopped before its state write committed",
            None,
        )),
    }
}

/// [`answer`] for reads: refused unless this instance serves the API.
async fn read<R: Send + 'static>(
    handle: &Handle,
    f: impl FnOnce(&ChronosScheduler) -> R + Send + 'static,
) -> Result<R, HttpResponse> {
    answer(handle, move |s, d| {
        s.check_serving(d)?;
        Ok(f(s))
    })
    .await
}

fn no_content<T>(result: Result<T, HttpResponse>) -> HttpResponse {
    match result {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(response) => response,
    }
}

fn json<T: serde::Serialize>(result: Result<T, HttpResponse>) -> HttpResponse {
    match result {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(response) => response,
    }
}

fn text(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn jobs(handle: Handle) -> HttpResponse {
    json(read(&handle, |s| s.jobs()).await)
}

/// Query of `/jobs/search`.
#[derive(Debug, Deserialize)]
struct SearchQuery {
    name: Option<String>,
    command: Option<String>,
    any: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

async fn search(handle: Handle, query: web::Query<SearchQuery>) -> HttpResponse {
    let q = query.into_inner();
    let answer = read(&handle, move |s| {
        s.search(
            q.name.as_deref(),
            q.command.as_deref(),
            q.any.as_deref(),
            q.offset.unwrap_or(0),
            q.limit.unwrap_or(10),
        )
    })
    .await;
    json(answer)
}

async fn summary(handle: Handle) -> HttpResponse {
    let answer = read(&handle, |s| {
        let jobs: Vec<serde_json::Value> = s
            .graph()
            .jobs()
            .map(|j| {
                json!({
                    "name": j.name,
                    "status": j.last_state().to_string(),
                    "state": s.current_state(&j.name).to_string(),
                    "schedule": j
                        .schedule
                        .clone()
                        .or(j.cron.clone())
                        .or(j.calendar.clone())
                        .unwrap_or_default(),
                    "parents": j.parents.clone().unwrap_or_default(),
                    "disabled": j.disabled,
                })
            })
            .collect();
        json!({ "jobs": jobs })
    })
    .await;
    json(answer)
}

async fn job(handle: Handle, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let lookup = name.clone();
    match read(&handle, move |s| s.job(&lookup)).await {
        Ok(Some(job)) => HttpResponse::Ok().json(job),
        Ok(None) => api_error(&ApiError::NotFound(name)),
        Err(response) => response,
    }
}

fn parse_job(body: &[u8]) -> Result<Job, Box<HttpResponse>> {
    serde_json::from_slice::<Job>(body).map_err(|e| {
        // serde names the field for missing and unknown-variant fields; say where otherwise.
        let message = format!("invalid job JSON: {e}");
        let field = e
            .to_string()
            .split('`')
            .nth(1)
            .map(str::to_string)
            .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric()));
        Box::new(error_body(
            StatusCode::BAD_REQUEST,
            &message,
            field.as_deref(),
        ))
    })
}

async fn post_job(handle: Handle, body: web::Bytes, kind: PostKind) -> HttpResponse {
    let job = match parse_job(&body) {
        Ok(job) => job,
        Err(response) => return *response,
    };
    let answer = answer(&handle, move |s, d| s.upsert_job(d, job, kind)).await;
    no_content(answer)
}

async fn post_iso8601(handle: Handle, body: web::Bytes) -> HttpResponse {
    post_job(handle, body, PostKind::Iso8601).await
}

async fn post_dependency(handle: Handle, body: web::Bytes) -> HttpResponse {
    post_job(handle, body, PostKind::Dependency).await
}

/// Query of `PUT /job/{name}`.
#[derive(Debug, Deserialize)]
struct RunNowQuery {
    arguments: Option<String>,
}

async fn run_now(
    handle: Handle,
    name: web::Path<String>,
    query: web::Query<RunNowQuery>,
) -> HttpResponse {
    let name = name.into_inner();
    let arguments = query.into_inner().arguments.unwrap_or_default();
    let answer = answer(&handle, move |s, d| s.run_now(d, &name, &arguments)).await;
    no_content(answer)
}

async fn delete_job(handle: Handle, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let answer = answer(&handle, move |s, d| s.delete_job(d, &name)).await;
    no_content(answer)
}

async fn kill_tasks(handle: Handle, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let answer = answer(&handle, move |s, d| s.kill_tasks(d, &name)).await;
    no_content(answer)
}

async fn job_stat(handle: Handle, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    let answer = answer(&handle, move |s, d| {
        s.check_serving(d)?;
        s.job_stat(&name)
    })
    .await;
    json(answer)
}

async fn stats(handle: Handle, which: web::Path<String>) -> HttpResponse {
    let which: Percentile = match which.parse() {
        Ok(p) => p,
        Err(message) => {
            return error_body(StatusCode::BAD_REQUEST, &message, Some("percentile"));
        }
    };
    json(read(&handle, move |s| s.stats(which)).await)
}

async fn graph_csv(handle: Handle) -> HttpResponse {
    match read(&handle, |s| s.graph_csv()).await {
        Ok(body) => text(body),
        Err(response) => response,
    }
}

async fn graph_dot(handle: Handle) -> HttpResponse {
    match read(&handle, |s| s.graph().graph_dot()).await {
        Ok(body) => text(body),
        Err(response) => response,
    }
}

async fn ping() -> HttpResponse {
    text("pong\n".to_string())
}

/// What the instance hosted by `process` is now.
pub(crate) fn role_of(
    process: &mut ChronosProcess,
    ctx: &mut plateau_runtime::Context<'_>,
) -> Role {
    let (s, d) = process.scheduler_and_driver(ctx);
    s.role(&d)
}

/// `GET /leader`: `{"leader":"host:port"}`, the REST API of the instance that leads (this one
/// with a store of its own); 503 while none is elected.
async fn leader(handle: Handle, advertised: web::Data<Advertised>) -> HttpResponse {
    match handle.call(role_of).await {
        Ok(Role::Leader) => HttpResponse::Ok().json(json!({ "leader": advertised.0 })),
        Ok(Role::Standby {
            leader: Some(leader),
        }) => HttpResponse::Ok().json(json!({ "leader": leader })),
        Ok(Role::Standby { leader: None }) => error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Chronos leader is elected yet",
            None,
        ),
        Err(e) => gone(e),
    }
}

/// The Prometheus text exposition of a metrics snapshot.
pub fn prometheus_text(m: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("chronos");
    let gauges: [(&str, &str, i64); 6] = [
        ("jobs", "Jobs defined", m.jobs as i64),
        (
            "runs_pending",
            "Runs waiting to be launched",
            m.runs_pending as i64,
        ),
        (
            "runs_active",
            "Runs launched or running",
            m.runs_active as i64,
        ),
        (
            "connected",
            "1 while registered with a master",
            i64::from(m.connected),
        ),
        (
            "leading",
            "1 while this instance leads (always with a store of its own)",
            i64::from(m.leading),
        ),
        (
            "stopped",
            "1 after a state store failure stopped the scheduler",
            i64::from(m.stopped),
        ),
    ];
    for (name, help, value) in gauges {
        let gauge: Gauge = Gauge::default();
        gauge.set(value);
        registry.register(name, help, gauge);
    }
    let c = m.counters;
    let counters: [(&str, &str, u64); 7] = [
        ("runs_created", "Runs created", c.runs_created),
        ("tasks_launched", "Tasks launched", c.tasks_launched),
        ("runs_succeeded", "Runs that succeeded", c.runs_succeeded),
        (
            "runs_failed",
            "Runs that failed after their retries",
            c.runs_failed,
        ),
        ("runs_killed", "Runs ended by a kill", c.runs_killed),
        ("retries", "Attempts retried", c.retries),
        (
            "instants_skipped",
            "Scheduled instants passed over",
            c.instants_skipped,
        ),
    ];
    for (name, help, value) in counters {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String does not fail");
    out
}

async fn metrics(handle: Handle) -> HttpResponse {
    match handle.call(|p, _| p.scheduler().metrics()).await {
        Ok(m) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(prometheus_text(&m)),
        Err(e) => gone(e),
    }
}

/// Failures of [`start`].
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The scheduler process could not be spawned.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The HTTP listener could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Where the scheduler's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateMode {
    /// A redb file in the work dir (`<work_dir>/chronos/state.redb`): one Chronos.
    Local,
    /// The masters' coordination store (the masters must run as a group): any number of
    /// instances, one leads and the others stand by and proxy their API to it.
    Replicated {
        /// How long a crashed leader keeps the leadership before a standby takes over.
        session_ttl: Duration,
    },
}

impl StateMode {
    /// Replicated when `masters` names a group of more than one master, else local (the
    /// default of `plateau chronos`).
    pub fn for_masters(masters: &Masters) -> StateMode {
        if masters.as_slice().len() > 1 {
            StateMode::Replicated {
                session_ttl: limits::LEADER_SESSION_TTL_DEFAULT,
            }
        } else {
            StateMode::Local
        }
    }
}

/// How to start Chronos on a node.
#[derive(Debug, Clone)]
pub struct StartConfig {
    /// The scheduler's settings.
    pub scheduler: ChronosConfig,
    /// The node's work directory: the local state is in `<work_dir>/chronos/state.redb`.
    pub work_dir: PathBuf,
    /// The masters (`master@host:5050` each): Chronos follows the one that leads.
    pub masters: Masters,
    /// HTTP address (Chronos' port is 4400; port 0 picks a free one).
    pub http_listen: SocketAddr,
    /// The scheduler process's name on the node (`chronos`).
    pub process_name: String,
    /// Where the state lives ([`StateMode::for_masters`] by default).
    pub state: StateMode,
    /// The host other instances and clients reach the REST API at (default: the node's host).
    pub advertised_host: Option<String>,
    /// Credentials, ACLs and HTTPS of the API (default: open, plain HTTP).
    pub security: ServeOptions,
}

impl StartConfig {
    /// Defaults: `chronos` on 0.0.0.0:4400. `masters` is one master (a `Upid`) or a
    /// [`Masters`] group; a group of more than one keeps the state in the masters'
    /// coordination store ([`StateMode::for_masters`]).
    pub fn new(work_dir: PathBuf, masters: impl Into<Masters>) -> StartConfig {
        let masters = masters.into();
        StartConfig {
            scheduler: ChronosConfig::default(),
            work_dir,
            state: StateMode::for_masters(&masters),
            masters,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4400)),
            process_name: "chronos".to_string(),
            advertised_host: None,
            security: ServeOptions::default(),
        }
    }
}

/// A running Chronos: the scheduler process and its HTTP server.
#[derive(Clone)]
pub struct Started {
    /// The scheduler process.
    pub scheduler: ChronosRef,
    /// The HTTP server (stop it with `server.stop(true).await`).
    pub server: ServerHandle,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where other instances and clients reach the REST API (`host:port`).
    pub advertised: String,
}

/// Opens the state (a redb file under `config.work_dir`, or the masters' coordination store),
/// spawns the scheduler on `node` and serves the API. Must be called inside the node's actix
/// system.
pub fn start(node: &Node, config: StartConfig) -> Result<Started, StartError> {
    let bind_error = |source| StartError::Bind {
        addr: config.http_listen,
        source,
    };
    let listener = TcpListener::bind(config.http_listen).map_err(bind_error)?;
    let http_addr = listener.local_addr().map_err(bind_error)?;
    let host = config
        .advertised_host
        .clone()
        .unwrap_or_else(|| node.addr().host.to_string());
    let advertised = format!("{host}:{}", http_addr.port());
    let mut scheduler_config = config.scheduler;
    if scheduler_config.hostname.is_empty() {
        scheduler_config.hostname = node.addr().host.to_string();
    }
    if scheduler_config.webui_url.is_none() {
        let scheme = if config.security.tls.is_some() {
            "https"
        } else {
            "http"
        };
        scheduler_config.webui_url = Some(format!("{scheme}://{advertised}"));
    }
    let scheduler = match config.state {
        StateMode::Local => {
            let store = RedbStore::open_in(&config.work_dir)?;
            ChronosScheduler::new(scheduler_config, Box::new(store))?
        }
        StateMode::Replicated { session_ttl } => {
            ChronosScheduler::replicated(scheduler_config, &advertised, session_ttl)
        }
    };
    let handle = node.spawn(&config.process_name, scheduler.into_driver(config.masters))?;
    let app_handle = handle.clone();
    let app_advertised = advertised.clone();
    let guard = config.security.guard("chronos", classify);
    let client_tls = config.security.client_tls.clone();
    let server = HttpServer::new(move || {
        let (h, a, t) = (
            app_handle.clone(),
            app_advertised.clone(),
            client_tls.clone(),
        );
        App::new()
            // Outermost: a standby refuses before it forwards anything to the leader.
            .wrap(RequireAuth::new(guard.clone()))
            .configure(move |cfg| configure(cfg, h, a, t))
    })
    .workers(1)
    // The binary owns signal handling.
    .disable_signals();
    let server = plateau_security::server::listen(server, listener, &config.security)
        .map_err(bind_error)?
        .run();
    let server_handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(Started {
        scheduler: handle,
        server: server_handle,
        http_addr,
        advertised,
    })
}

/// Maps a [`JobError`] to its HTTP answer (for callers mounting their own routes).
pub fn job_error_response(e: JobError) -> HttpResponse {
    api_error(&ApiError::Invalid(e))
}
