//! The master's HTTP endpoints, with Mesos' paths and JSON field names:
//!
//! | path | answer |
//! |---|---|
//! | `/master/state`, `/state` | the cluster as the master sees it ([`state_json`]) |
//! | `/metrics/snapshot` | flat JSON of Mesos metric names ([`metrics_snapshot`]) |
//! | `/metrics` | the same values in Prometheus text format |
//! | `/health`, `/master/health` | 200, empty |
//! | `/version` | `{"version": "1.11.0", "build_date": ..., ...}` |
//! | `/master/redirect`, `/redirect` | 307 to the leading master |
//! | `GET /master/members` | a group's voters, learners, leader and term |
//! | `DELETE /master/members/{host:port}` | the leader removes that master from the voters (202) |
//! | `POST /master/teardown`, `/teardown` | form or query `frameworkId=ID`: the framework is removed, its tasks killed (200) |
//! | `GET`, `POST /master/maintenance/schedule` | the maintenance schedule; `POST` replaces it |
//! | `GET /master/maintenance/status` | draining machines with the frameworks' answers, DOWN machines |
//! | `POST /master/machine/down`, `/master/machine/up` | take machines (a JSON array of ids) down, bring them up |
//!
//! Maintenance (see `docs/maintenance.md`) uses Mesos' JSON: a machine id is
//! `{"hostname": .., "ip": ..}` (either may be left out), a time `{"nanoseconds": N}`. A
//! request that is not valid is answered 400 with `{"message": .., "field": ..}`; a valid one
//! 200 with an empty body.
//!
//! In a group of masters only the leader answers `/master/state`; the others answer it (and
//! `/state`) with a 307 redirect to the same path on the leader, as Mesos does, or 503 while no
//! leader is known. `/metrics/snapshot` answers everywhere: a master that does not lead reports
//! `master/elected` 0 and little else. A leader's HTTP is on its actor port, so its address is
//! `host:port` of its `Upid`.
//!
//! Handlers reach the master through [`ProcessRef::call`]: the JSON is built inside the
//! process, between two of its messages, so it is a consistent snapshot. Mount the routes with
//! [`configure`] on the binary's `HttpServer`.
//!
//! These are API types, not wire types: they are built as `serde_json::Value`s with Mesos'
//! names here and nowhere else.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix_web::{web, HttpMessage, HttpResponse};
use plateau_runtime::ProcessRef;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{json, Value};

use crate::core::{Framework, FrameworkStatus, MasterCore, Slave, SlaveStatus, Task};
use crate::maintenance::{
    MachineId, MachineMode, MaintenanceError, MaintenanceState, Unavailability, Window,
};
use crate::messages::TaskState;
use crate::process::{MaintenanceRequest, MasterProcess};
use crate::resources::Resources;

/// The Mesos version Plateau reports: clients parse it as dotted integers and enable features
/// by it.
pub const MESOS_VERSION: &str = "1.11.0";

/// What each request needs ([`plateau_security::Access`]), from its method and path only:
/// `/health` and `/master/health` are open (load balancers probe them), and so are the web
/// console's files (`/`, `/ui/...`: they hold no data); reading the state, the console's data
/// (`/ui/api/...`),
/// the metrics and the group's members is `get_endpoints` on the path; removing a member is
/// `update_members` on it; the maintenance endpoints are Mesos' `get_maintenance_schedules`,
/// `update_maintenance_schedules`, `get_maintenance_statuses`, `start_maintenances`
/// (`/machine/down`) and `stop_maintenances` (`/machine/up`), on any machine (the machines are
/// in the body); everything else needs credentials only. `/teardown` needs credentials here
/// and `teardown_frameworks` on the framework's principal, which only the master knows: it
/// decides in [`crate::core::MasterCore::teardown_framework`].
pub fn classify(method: &str, path: &str) -> plateau_security::Access {
    use plateau_security::{Access, Action};
    match (method, path) {
        (_, "/health" | "/master/health") => Access::Open,
        // The console's files hold no data: the console must load to ask for credentials.
        ("GET" | "HEAD", p) if crate::ui::is_console_file(p) => Access::Open,
        // The console's reads show what `/master/state` shows: `get_endpoints` on the path.
        // Its proxy needs credentials here; the target checks them (and its ACLs) again.
        ("GET" | "HEAD", p) if p.starts_with("/ui/api/") => {
            Access::Action(Action::GetEndpoints, Some(p.to_string()))
        }
        (
            "GET" | "HEAD",
            "/master/state" | "/state" | "/master/state.json" | "/state.json" | "/metrics"
            | "/metrics/snapshot" | "/master/members",
        ) => Access::Action(Action::GetEndpoints, Some(path.to_string())),
        ("GET" | "HEAD", "/master/maintenance/schedule") => {
            Access::Action(Action::GetMaintenanceSchedules, None)
        }
        (_, "/master/maintenance/schedule") => {
            Access::Action(Action::UpdateMaintenanceSchedules, None)
        }
        ("GET" | "HEAD", "/master/maintenance/status") => {
            Access::Action(Action::GetMaintenanceStatuses, None)
        }
        (_, "/master/machine/down") => Access::Action(Action::StartMaintenances, None),
        (_, "/master/machine/up") => Access::Action(Action::StopMaintenances, None),
        ("GET" | "HEAD", _) => Access::Authenticated,
        (_, p) => match p.strip_prefix("/master/members/") {
            Some(member) => Access::Action(Action::UpdateMembers, Some(member.to_string())),
            None => Access::Authenticated,
        },
    }
}

/// Mounts the master's routes, answering through `master`.
pub fn configure(cfg: &mut web::ServiceConfig, master: ProcessRef<MasterProcess>) {
    // The console's API first: its files answer every other path under /ui/.
    crate::ui::configure(cfg);
    cfg.app_data(web::Data::new(master))
        .route("/master/state", web::get().to(state))
        .route("/state", web::get().to(state))
        .route("/master/state.json", web::get().to(state))
        .route("/metrics/snapshot", web::get().to(snapshot))
        .route("/metrics", web::get().to(prometheus))
        .route("/master/redirect", web::get().to(redirect))
        .route("/master/members", web::get().to(members))
        .route("/master/members/{member}", web::delete().to(remove_member))
        .route("/master/teardown", web::post().to(teardown))
        .route("/teardown", web::post().to(teardown))
        .route("/master/maintenance/schedule", web::get().to(get_schedule))
        .route(
            "/master/maintenance/schedule",
            web::post().to(post_schedule),
        )
        .route(
            "/master/maintenance/status",
            web::get().to(maintenance_status),
        )
        .route("/master/machine/down", web::post().to(machine_down))
        .route("/master/machine/up", web::post().to(machine_up))
        .route("/redirect", web::get().to(redirect))
        .route("/master/health", web::get().to(health))
        .route("/health", web::get().to(health))
        .route("/version", web::get().to(version))
        .configure(plateau_webui::configure_assets);
}

type Master = web::Data<ProcessRef<MasterProcess>>;

fn unavailable(message: String) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({ "message": message }))
}

/// What a master that does not lead answers: a redirect to the same path on the leader, or
/// 503 while none is known.
enum NotLeading {
    Redirect(String),
    NoLeader,
}

impl NotLeading {
    fn of(p: &MasterProcess, me: &plateau_runtime::Upid) -> Self {
        match p.leading_master(me) {
            Some(leader) => NotLeading::Redirect(format!("{}:{}", leader.host, leader.port)),
            None => NotLeading::NoLeader,
        }
    }

    fn answer(self, scheme: &str, path: &str) -> HttpResponse {
        match self {
            NotLeading::Redirect(leader) => HttpResponse::TemporaryRedirect()
                .insert_header(("Location", format!("{scheme}://{leader}{path}")))
                .finish(),
            NotLeading::NoLeader => unavailable("no leading master is known yet".into()),
        }
    }
}

async fn state(master: Master, request: actix_web::HttpRequest) -> HttpResponse {
    read_core(master, request, |p, core, now| {
        state_json(core, p.started_at(), now)
    })
    .await
}

/// `/master/redirect`: 307 to the leading master's root (itself when it leads).
async fn redirect(master: Master, request: actix_web::HttpRequest) -> HttpResponse {
    let answer = master
        .call(|p, ctx| match p.leading_master(ctx.self_upid()) {
            Some(leader) => NotLeading::Redirect(format!("{}:{}", leader.host, leader.port)),
            None => NotLeading::NoLeader,
        })
        .await;
    match answer {
        Ok(not_leading) => not_leading.answer(request.connection_info().scheme(), ""),
        Err(e) => unavailable(e.to_string()),
    }
}

/// `GET /master/members`.
async fn members(master: Master) -> HttpResponse {
    let answer = master
        .call(|p, ctx| {
            let replica = p.replica()?;
            let status = replica.status();
            let names = |v: &[plateau_runtime::Upid]| -> Vec<String> {
                v.iter().map(|u| format!("{}:{}", u.host, u.port)).collect()
            };
            Some(json!({
                "self": format!("{}:{}", ctx.self_upid().host, ctx.self_upid().port),
                "leader": p.leading_master(ctx.self_upid()).map(|l| format!("{}:{}", l.host, l.port)),
                "elected": p.is_elected(),
                "term": status.term,
                "voters": names(&status.voters),
                "learners": names(&status.learners),
                "last_applied": status.last_applied,
                "log_entries": replica.log_len(),
            }))
        })
        .await;
    match answer {
        Ok(Some(body)) => HttpResponse::Ok().json(body),
        Ok(None) => HttpResponse::NotFound()
            .json(json!({ "message": "this master runs alone (no --peers)" })),
        Err(e) => unavailable(e.to_string()),
    }
}

/// `POST /master/teardown` with `frameworkId=ID` as a form body (what Mesos' tools send) or
/// in the query: 200 once the framework is removed, 400 for a missing or unknown id, 403 when
/// the ACLs refuse the operator's principal (`teardown_frameworks`).
async fn teardown(
    master: Master,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    // A form body and a query string are the same encoding.
    let field = |text: &str| {
        web::Query::<BTreeMap<String, String>>::from_query(text)
            .ok()
            .and_then(|q| q.into_inner().remove("frameworkId"))
    };
    let id = field(request.query_string()).or_else(|| field(&String::from_utf8_lossy(&body)));
    let Some(id) = id.filter(|id| !id.is_empty()) else {
        return HttpResponse::BadRequest().json(
            json!({ "message": "frameworkId is required (form body or query)", "field": "frameworkId" }),
        );
    };
    let principal = request
        .extensions()
        .get::<plateau_security::middleware::Principal>()
        .map(|p| p.0.clone());
    let framework_id = crate::ids::FrameworkId::new(&id);
    let answer = master
        .call(
            move |p, ctx| match p.teardown(ctx, principal.as_deref(), &framework_id) {
                Some(outcome) => Ok(outcome),
                None => Err(NotLeading::of(p, ctx.self_upid())),
            },
        )
        .await;
    match answer {
        Ok(Ok(Ok(()))) => HttpResponse::Ok().finish(),
        Ok(Ok(Err(crate::core::TeardownRefused::Unauthorized))) => HttpResponse::Forbidden()
            .json(json!({ "message": "not allowed to tear down this framework" })),
        Ok(Ok(Err(crate::core::TeardownRefused::Unknown))) => HttpResponse::BadRequest().json(
            json!({ "message": format!("No framework found with specified ID: {id}"), "field": "frameworkId" }),
        ),
        Ok(Err(not_leading)) => {
            not_leading.answer(request.connection_info().scheme(), request.path())
        }
        Err(e) => unavailable(e.to_string()),
    }
}

/// `DELETE /master/members/{host:port}`: the leader removes a master from the voters.
async fn remove_member(
    master: Master,
    path: web::Path<String>,
    request: actix_web::HttpRequest,
) -> HttpResponse {
    let member = path.into_inner();
    let Ok(target) = format!("master@{member}").parse::<plateau_runtime::Upid>() else {
        return HttpResponse::BadRequest()
            .json(json!({ "message": "member must be HOST:PORT", "field": "member" }));
    };
    let answer = master
        .call(move |p, ctx| {
            let Some(replica) = p.replica() else {
                return Err(None);
            };
            let voters = replica.status().voters.clone();
            if !voters.contains(&target) {
                return Ok(Err(format!("{member} is not a voting member")));
            }
            if !p.is_elected() {
                return Err(Some(NotLeading::of(p, ctx.self_upid())));
            }
            let rest: Vec<_> = voters.into_iter().filter(|v| *v != target).collect();
            if p.change_members(ctx, None, rest) {
                Ok(Ok(()))
            } else {
                Ok(Err("another membership change is under way".to_string()))
            }
        })
        .await;
    match answer {
        Ok(Ok(Ok(()))) => HttpResponse::Accepted().json(json!({ "message": "removing" })),
        Ok(Ok(Err(message))) => HttpResponse::Conflict().json(json!({ "message": message })),
        Ok(Err(Some(not_leading))) => {
            not_leading.answer(request.connection_info().scheme(), request.path())
        }
        Ok(Err(None)) => HttpResponse::NotFound()
            .json(json!({ "message": "this master runs alone (no --peers)" })),
        Err(e) => unavailable(e.to_string()),
    }
}

// ---- maintenance ---------------------------------------------------------------------------

fn bad_request(e: &MaintenanceError) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "message": e.to_string(), "field": e.field }))
}

/// A machine id as Mesos writes it: `{"hostname": .., "ip": ..}`, absent parts left out.
pub fn machine_id_json(m: &MachineId) -> Value {
    let mut v = json!({});
    if let Some(h) = &m.hostname {
        v["hostname"] = h.clone().into();
    }
    if let Some(ip) = &m.ip {
        v["ip"] = ip.clone().into();
    }
    v
}

/// An unavailability as Mesos writes it: `{"start": {"nanoseconds": N}, "duration": {..}}`.
pub fn unavailability_json(u: &Unavailability) -> Value {
    let mut v = json!({ "start": { "nanoseconds": u.start_nanos } });
    if let Some(d) = u.duration_nanos {
        v["duration"] = json!({ "nanoseconds": d });
    }
    v
}

/// The body of `GET /master/maintenance/schedule`.
pub fn schedule_json(state: &MaintenanceState) -> Value {
    let windows: Vec<Value> = state
        .windows
        .iter()
        .map(|w| {
            json!({
                "machine_ids": w.machine_ids.iter().map(machine_id_json).collect::<Vec<_>>(),
                "unavailability": unavailability_json(&w.unavailability),
            })
        })
        .collect();
    json!({ "windows": windows })
}

/// The body of `GET /master/maintenance/status`: each DRAINING machine with the answers of the
/// frameworks that got inverse offers for its slaves, and the DOWN machines.
pub fn maintenance_status_json(core: &MasterCore) -> Value {
    let state = core.maintenance();
    let mut draining = Vec::new();
    for (machine, _) in state.machines() {
        if state.mode(machine) != MachineMode::Draining {
            continue;
        }
        let statuses: Vec<Value> = core
            .inverse_offers()
            .iter()
            .filter(|((slave_id, _), _)| {
                core.slaves()
                    .get(slave_id)
                    .is_some_and(|s| machine.matches(&s.info.hostname, MasterCore::slave_ip(s)))
            })
            .map(|((slave_id, framework_id), entry)| {
                json!({
                    "agent_id": { "value": slave_id },
                    "framework_id": { "value": framework_id },
                    "status": entry.status.as_str(),
                })
            })
            .collect();
        draining.push(json!({ "id": machine_id_json(machine), "statuses": statuses }));
    }
    let down: Vec<Value> = state.down.iter().map(machine_id_json).collect();
    json!({ "draining_machines": draining, "down_machines": down })
}

fn field<'a>(v: &'a Value, name: &str, at: &str) -> Result<Option<&'a Value>, MaintenanceError> {
    match v {
        Value::Object(map) => Ok(map.get(name).filter(|x| !x.is_null())),
        _ => Err(MaintenanceError::new(at, "must be a JSON object")),
    }
}

/// A machine id from Mesos' JSON (`field` names it in errors).
pub fn parse_machine_id(v: &Value, at: &str) -> Result<MachineId, MaintenanceError> {
    let text = |name: &str| -> Result<Option<&str>, MaintenanceError> {
        match field(v, name, at)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(MaintenanceError::new(
                &format!("{at}.{name}"),
                "must be a string",
            )),
        }
    };
    let machine = MachineId::new(text("hostname")?, text("ip")?);
    machine.check(at)?;
    Ok(machine)
}

fn parse_nanos(v: &Value, at: &str) -> Result<i64, MaintenanceError> {
    match field(v, "nanoseconds", at)? {
        Some(n) => n.as_i64().ok_or_else(|| {
            MaintenanceError::new(&format!("{at}.nanoseconds"), "must be an integer")
        }),
        None => Err(MaintenanceError::new(
            &format!("{at}.nanoseconds"),
            "is required",
        )),
    }
}

/// A schedule from Mesos' JSON: `{"windows": [{"machine_ids": [..], "unavailability": ..}]}`
/// (`{}` is the empty schedule).
pub fn parse_schedule(body: &Value) -> Result<Vec<Window>, MaintenanceError> {
    let Some(windows) = field(body, "windows", "body")? else {
        return Ok(Vec::new());
    };
    let Value::Array(windows) = windows else {
        return Err(MaintenanceError::new("windows", "must be an array"));
    };
    if windows.len() > crate::limits::MAINTENANCE_WINDOWS_MAX {
        return Err(MaintenanceError::new(
            "windows",
            format!(
                "more than {} windows",
                crate::limits::MAINTENANCE_WINDOWS_MAX
            ),
        ));
    }
    let mut out = Vec::with_capacity(windows.len());
    for (i, w) in windows.iter().enumerate() {
        let at = format!("windows[{i}]");
        let machines = match field(w, "machine_ids", &at)? {
            Some(Value::Array(list)) => list,
            Some(_) => {
                return Err(MaintenanceError::new(
                    &format!("{at}.machine_ids"),
                    "must be an array",
                ))
            }
            None => {
                return Err(MaintenanceError::new(
                    &format!("{at}.machine_ids"),
                    "is required",
                ))
            }
        };
        if machines.len() > crate::limits::MAINTENANCE_MACHINES_MAX {
            return Err(MaintenanceError::new(
                &format!("{at}.machine_ids"),
                "too many machines",
            ));
        }
        let machine_ids = machines
            .iter()
            .enumerate()
            .map(|(j, m)| parse_machine_id(m, &format!("{at}.machine_ids[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let u_at = format!("{at}.unavailability");
        let Some(u) = field(w, "unavailability", &at)? else {
            return Err(MaintenanceError::new(&u_at, "is required"));
        };
        let start = field(u, "start", &u_at)?
            .ok_or_else(|| MaintenanceError::new(&format!("{u_at}.start"), "is required"))?;
        let start_nanos = parse_nanos(start, &format!("{u_at}.start"))?;
        let duration_nanos = match field(u, "duration", &u_at)? {
            Some(d) => Some(parse_nanos(d, &format!("{u_at}.duration"))?),
            None => None,
        };
        out.push(Window {
            machine_ids,
            unavailability: Unavailability {
                start_nanos,
                duration_nanos,
            },
        });
    }
    Ok(out)
}

/// The body of `/machine/down` and `/machine/up`: a JSON array of machine ids.
pub fn parse_machine_list(body: &Value) -> Result<Vec<MachineId>, MaintenanceError> {
    let Value::Array(list) = body else {
        return Err(MaintenanceError::new(
            "body",
            "must be a JSON array of machine ids",
        ));
    };
    if list.len() > crate::limits::MAINTENANCE_MACHINES_MAX {
        return Err(MaintenanceError::new("body", "too many machines"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| parse_machine_id(m, &format!("machine_ids[{i}]")))
        .collect()
}

fn parse_body(body: &[u8]) -> Result<Value, MaintenanceError> {
    serde_json::from_slice(body)
        .map_err(|e| MaintenanceError::new("body", format!("not valid JSON: {e}")))
}

/// Feeds a maintenance request to the leading master: 200 (empty body) when done, 400 when
/// invalid, a redirect from a master that does not lead.
async fn maintenance_call(
    master: Master,
    request: actix_web::HttpRequest,
    maintenance: MaintenanceRequest,
) -> HttpResponse {
    let answer = master
        .call(move |p, ctx| match p.handle_maintenance(ctx, maintenance) {
            Some(result) => Ok(result),
            None if p.replica().is_some() => Err(Some(NotLeading::of(p, ctx.self_upid()))),
            None => Err(None),
        })
        .await;
    match answer {
        Ok(Ok(Ok(()))) => HttpResponse::Ok().finish(),
        Ok(Ok(Err(e))) => bad_request(&e),
        Ok(Err(Some(not_leading))) => {
            not_leading.answer(request.connection_info().scheme(), request.path())
        }
        Ok(Err(None)) => unavailable("the master stopped after a registry failure".into()),
        Err(e) => unavailable(e.to_string()),
    }
}

/// Answers a read of the leading master's core with `f` (given the process, its core and the
/// monotonic time), or redirects to the leader.
async fn read_core(
    master: Master,
    request: actix_web::HttpRequest,
    f: impl FnOnce(&MasterProcess, &MasterCore, Duration) -> Value + Send + 'static,
) -> HttpResponse {
    let answer = master
        .call(move |p, ctx| match p.try_core() {
            Some(core) => Ok(f(p, core, ctx.now().since_origin())),
            None if p.replica().is_some() => Err(Some(NotLeading::of(p, ctx.self_upid()))),
            None => Err(None),
        })
        .await;
    match answer {
        Ok(Ok(body)) => HttpResponse::Ok().json(body),
        Ok(Err(Some(not_leading))) => {
            not_leading.answer(request.connection_info().scheme(), request.path())
        }
        Ok(Err(None)) => unavailable("the master stopped after a registry failure".into()),
        Err(e) => unavailable(e.to_string()),
    }
}

/// `GET /master/maintenance/schedule`.
async fn get_schedule(master: Master, request: actix_web::HttpRequest) -> HttpResponse {
    read_core(master, request, |_, core, _| {
        schedule_json(core.maintenance())
    })
    .await
}

/// `GET /master/maintenance/status`.
async fn maintenance_status(master: Master, request: actix_web::HttpRequest) -> HttpResponse {
    read_core(master, request, |_, core, _| maintenance_status_json(core)).await
}

/// `POST /master/maintenance/schedule`.
async fn post_schedule(
    master: Master,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match parse_body(&body).and_then(|v| parse_schedule(&v)) {
        Ok(windows) => {
            maintenance_call(master, request, MaintenanceRequest::Schedule(windows)).await
        }
        Err(e) => bad_request(&e),
    }
}

/// `POST /master/machine/down`.
async fn machine_down(
    master: Master,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match parse_body(&body).and_then(|v| parse_machine_list(&v)) {
        Ok(machines) => maintenance_call(master, request, MaintenanceRequest::Down(machines)).await,
        Err(e) => bad_request(&e),
    }
}

/// `POST /master/machine/up`.
async fn machine_up(
    master: Master,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    match parse_body(&body).and_then(|v| parse_machine_list(&v)) {
        Ok(machines) => maintenance_call(master, request, MaintenanceRequest::Up(machines)).await,
        Err(e) => bad_request(&e),
    }
}

async fn snapshot(master: Master) -> HttpResponse {
    let answer = master
        .call(|p, ctx| {
            let now = ctx.now().since_origin();
            match p.try_core() {
                Some(core) => Some(metrics_snapshot(core, p.started_at(), now)),
                None if p.replica().is_some() => Some(standby_metrics(p, now)),
                None => None,
            }
        })
        .await;
    match answer {
        Ok(Some(map)) => HttpResponse::Ok().json(map),
        Ok(None) => unavailable("the master stopped after a registry failure".into()),
        Err(e) => unavailable(e.to_string()),
    }
}

/// The metrics of a group member that does not lead.
pub fn standby_metrics(p: &MasterProcess, now: Duration) -> BTreeMap<String, f64> {
    let mut map = BTreeMap::new();
    map.insert("master/elected".to_string(), 0.0);
    map.insert(
        "master/uptime_secs".to_string(),
        now.saturating_sub(p.started_at()).as_secs_f64(),
    );
    if let Some(replica) = p.replica() {
        let status = replica.status();
        map.insert("replica/term".to_string(), status.term as f64);
        map.insert(
            "replica/last_applied".to_string(),
            status.last_applied.unwrap_or(0) as f64,
        );
    }
    map
}

async fn prometheus(master: Master) -> HttpResponse {
    let answer = master
        .call(|p, ctx| {
            let now = ctx.now().since_origin();
            let map = match p.try_core() {
                Some(core) => metrics_snapshot(core, p.started_at(), now),
                None if p.replica().is_some() => standby_metrics(p, now),
                None => return None,
            };
            Some(p.prometheus_mut().encode(&map))
        })
        .await;
    match answer {
        Ok(Some(Ok(text))) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Ok(Some(Err(e))) => HttpResponse::InternalServerError().json(json!({ "message": e })),
        Ok(None) => unavailable("the master stopped after a registry failure".into()),
        Err(e) => unavailable(e.to_string()),
    }
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn version() -> HttpResponse {
    HttpResponse::Ok().json(version_json())
}

/// The body of `/version`.
pub fn version_json() -> Value {
    json!({
        "version": MESOS_VERSION,
        "build_date": option_env!("PLATEAU_BUILD_DATE").unwrap_or("unknown"),
        "build_time": 0.0,
        "build_user": "plateau",
        "git_tag": format!("plateau-{}", env!("CARGO_PKG_VERSION")),
    })
}

/// The Prometheus registry of one master, fed from [`metrics_snapshot`] on each scrape. Not
/// global: simulated masters in one process do not share it.
#[derive(Debug, Default)]
pub struct PrometheusMetrics {
    registry: prometheus_client::registry::Registry,
    gauges: BTreeMap<String, Gauge<f64, AtomicU64>>,
}

impl PrometheusMetrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the gauges to `snapshot` (`master/slaves_active` becomes `master_slaves_active`)
    /// and returns the text exposition.
    pub fn encode(&mut self, snapshot: &BTreeMap<String, f64>) -> Result<String, String> {
        for (name, value) in snapshot {
            let gauge = self.gauges.entry(name.clone()).or_insert_with(|| {
                let gauge = Gauge::<f64, AtomicU64>::default();
                let prom_name: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                self.registry
                    .register(prom_name, format!("Mesos metric {name}"), gauge.clone());
                gauge
            });
            gauge.set(*value);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

fn resources_json(r: &Resources) -> Value {
    let mut v = r.to_json();
    if let Value::Object(map) = &mut v {
        map.insert("gpus".into(), 0.0.into());
    }
    v
}

pub(crate) fn task_json(task: &Task, role: &str) -> Value {
    let statuses: Vec<Value> = task
        .statuses
        .iter()
        .map(|s| {
            let mut v = json!({ "state": s.state.as_str(), "timestamp": s.timestamp });
            if let Some(h) = s.healthy {
                v["healthy"] = h.into();
            }
            if let Some(m) = s.message.as_deref().filter(|m| !m.is_empty()) {
                v["message"] = m.into();
            }
            v
        })
        .collect();
    let mut v = json!({
        "id": task.info.task_id,
        "name": task.info.name,
        "framework_id": task.framework_id,
        "executor_id": "",
        "slave_id": task.slave_id,
        "state": task.state.as_str(),
        "resources": resources_json(&task.info.resources),
        "role": role,
        "statuses": statuses,
    });
    if !task.info.labels.is_empty() {
        let labels: Vec<Value> = task
            .info
            .labels
            .iter()
            .map(|(k, val)| json!({ "key": k, "value": val }))
            .collect();
        v["labels"] = labels.into();
    }
    if let Some(healthy) = task.statuses.back().and_then(|s| s.healthy) {
        v["healthy"] = healthy.into();
    }
    v
}

pub(crate) fn slave_json(core: &MasterCore, slave: &Slave) -> Value {
    let used = core.slave_used(slave);
    let offered = core.offered(&slave.offers);
    let mut v = json!({
        "id": slave.id,
        "pid": slave.pid.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "hostname": slave.info.hostname,
        "port": slave.info.port,
        "resources": resources_json(&slave.info.resources),
        "used_resources": resources_json(&used),
        "offered_resources": resources_json(&offered),
        "reserved_resources": {},
        "unreserved_resources": resources_json(&slave.info.resources),
        "attributes": slave.info.attributes.to_json(),
        "active": slave.status == SlaveStatus::Connected,
        "deactivated": slave.status != SlaveStatus::Connected,
        "registered_time": slave.registered_time.unwrap_or(0.0),
        "reregistered_time": slave.reregistered_time,
        "unreachable_time": slave.unreachable_time,
        "version": MESOS_VERSION,
        "capabilities": [],
    });
    // Maintenance: Mesos 1.x shows a draining slave's window as `unavailability`; the mode
    // is shown too (`UP` or `DRAINING`: DOWN slaves are removed).
    match core.slave_maintenance(slave) {
        Some((_, unavailability, mode)) => {
            v["unavailability"] = unavailability_json(&unavailability);
            v["maintenance_mode"] = mode.as_str().into();
        }
        None => v["maintenance_mode"] = MachineMode::Up.as_str().into(),
    }
    v
}

fn framework_json(core: &MasterCore, f: &Framework) -> Value {
    let mut tasks = Vec::new();
    let mut unreachable_tasks = Vec::new();
    let mut used = Resources::empty();
    for task_id in &f.tasks {
        if let Some(task) = core.tasks().get(&(f.id.clone(), task_id.clone())) {
            if task.state == TaskState::Unreachable {
                unreachable_tasks.push(task_json(task, &f.info.role));
            } else {
                if !task.state.is_terminal() {
                    used += &task.info.resources;
                }
                tasks.push(task_json(task, &f.info.role));
            }
        }
    }
    let completed: Vec<Value> = f
        .completed_tasks
        .iter()
        .map(|t| task_json(t, &f.info.role))
        .collect();
    let offers: Vec<Value> = f
        .offers
        .iter()
        .filter_map(|id| core.offers().get(id))
        .map(|e| {
            json!({
                "id": e.offer.id,
                "framework_id": e.offer.framework_id,
                "slave_id": e.offer.slave_id,
                "hostname": e.offer.hostname,
                "resources": resources_json(&e.offer.resources),
            })
        })
        .collect();
    let offered = core.offered(&f.offers);
    json!({
        "id": f.id,
        "name": f.info.name,
        "pid": f.pid.as_ref().map(|p| p.to_string()),
        "hostname": f.info.hostname,
        "user": f.info.user,
        "role": f.info.role,
        "principal": f.info.principal,
        "webui_url": f.info.webui_url.clone().unwrap_or_default(),
        "active": f.status == FrameworkStatus::Active,
        "connected": f.status == FrameworkStatus::Active,
        "recovered": f.status == FrameworkStatus::Recovered,
        "checkpoint": f.info.checkpoint,
        "failover_timeout": f.info.failover_timeout_secs,
        "registered_time": f.registered_time.unwrap_or(0.0),
        "reregistered_time": f.reregistered_time,
        "unregistered_time": f.unregistered_time.unwrap_or(0.0),
        "capabilities": [],
        "resources": resources_json(&(used.clone() + &offered)),
        "used_resources": resources_json(&used),
        "offered_resources": resources_json(&offered),
        "tasks": tasks,
        "unreachable_tasks": unreachable_tasks,
        "completed_tasks": completed,
        "offers": offers,
        "executors": [],
    })
}

/// The body of `/master/state` at monotonic `now`, for a master started at `started_at`.
///
/// Mesos' shape (see `mesos-http-api.md` §9). Besides Mesos' fields: `unreachable_slaves` is
/// Mesos' count, and `unreachable_slave_infos` lists those slaves (Mesos lists them nowhere).
pub fn state_json(core: &MasterCore, started_at: Duration, now: Duration) -> Value {
    let mut slaves = Vec::new();
    let mut recovered_slaves = Vec::new();
    let mut unreachable = Vec::new();
    let (mut activated, mut deactivated) = (0u64, 0u64);
    for slave in core.slaves().values() {
        match slave.status {
            SlaveStatus::Connected => {
                activated += 1;
                slaves.push(slave_json(core, slave));
            }
            SlaveStatus::Disconnected => {
                deactivated += 1;
                slaves.push(slave_json(core, slave));
            }
            SlaveStatus::Unreachable => unreachable.push(json!({
                "id": slave.id,
                "hostname": slave.info.hostname,
                "port": slave.info.port,
                "resources": resources_json(&slave.info.resources),
                "attributes": slave.info.attributes.to_json(),
                "unreachable_time": slave.unreachable_time,
            })),
            SlaveStatus::Recovered => recovered_slaves.push(json!({
                "id": slave.id,
                "hostname": slave.info.hostname,
                "port": slave.info.port,
                "resources": resources_json(&slave.info.resources),
                "attributes": slave.info.attributes.to_json(),
            })),
        }
    }
    let frameworks: Vec<Value> = core
        .frameworks()
        .values()
        .map(|f| framework_json(core, f))
        .collect();
    let completed: Vec<Value> = core
        .completed_frameworks()
        .iter()
        .map(|f| framework_json(core, f))
        .collect();
    let orphans: Vec<Value> = core
        .tasks()
        .iter()
        .filter(|((f, _), _)| !core.frameworks().contains_key(f))
        .map(|(_, t)| task_json(t, "*"))
        .collect();
    let pid = core.upid().to_string();
    let hostname = if core.config().hostname.is_empty() {
        core.upid().host.to_string()
    } else {
        core.config().hostname.clone()
    };
    let start_time = core.wall_secs(started_at);
    let config = core.config();
    json!({
        "version": MESOS_VERSION,
        "git_tag": format!("plateau-{}", env!("CARGO_PKG_VERSION")),
        "build_date": option_env!("PLATEAU_BUILD_DATE").unwrap_or("unknown"),
        "build_time": 0.0,
        "build_user": "plateau",
        "start_time": start_time,
        "elected_time": start_time,
        "id": core.run_id(),
        "pid": pid,
        "hostname": hostname,
        "leader": pid,
        "leader_info": {
            "id": core.run_id(),
            "pid": pid,
            "hostname": hostname,
            "port": core.upid().port,
            "version": MESOS_VERSION,
        },
        "capabilities": [],
        "activated_slaves": activated,
        "deactivated_slaves": deactivated,
        "unreachable_slaves": unreachable.len(),
        "unreachable_slave_infos": unreachable,
        "slaves": slaves,
        "recovered_slaves": recovered_slaves,
        "frameworks": frameworks,
        "completed_frameworks": completed,
        "orphan_tasks": orphans,
        "unregistered_frameworks": [],
        "flags": {
            "agent_ping_timeout": format!("{}secs", config.agent_timeout.as_secs_f64()),
            "allocation_interval": format!("{}secs", config.allocation_interval.as_secs_f64()),
            "heartbeat_interval": format!("{}secs", config.heartbeat_interval.as_secs_f64()),
        },
        "uptime_secs": now.saturating_sub(started_at).as_secs_f64(),
    })
}

/// The flat metrics of `/metrics/snapshot` (Mesos names), at monotonic `now`.
pub fn metrics_snapshot(
    core: &MasterCore,
    started_at: Duration,
    now: Duration,
) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut put = |name: &str, value: f64| {
        m.insert(name.to_string(), value);
    };
    put("master/elected", 1.0);
    put(
        "master/uptime_secs",
        now.saturating_sub(started_at).as_secs_f64(),
    );
    let count_slaves = |status: SlaveStatus| {
        core.slaves()
            .values()
            .filter(|s| s.status == status)
            .count() as f64
    };
    let connected = count_slaves(SlaveStatus::Connected);
    put("master/slaves_active", connected);
    put("master/slaves_connected", connected);
    put(
        "master/slaves_disconnected",
        count_slaves(SlaveStatus::Disconnected) + count_slaves(SlaveStatus::Recovered),
    );
    put(
        "master/slaves_inactive",
        count_slaves(SlaveStatus::Disconnected),
    );
    put(
        "master/slaves_unreachable",
        count_slaves(SlaveStatus::Unreachable),
    );
    let counters = core.counters();
    put(
        "master/slave_registrations",
        counters.slave_registrations as f64,
    );
    put(
        "master/slave_reregistrations",
        counters.slave_reregistrations as f64,
    );
    put("master/slave_removals", counters.slave_removals as f64);
    put(
        "master/slave_unreachable_completed",
        counters.slave_unreachable_completed as f64,
    );
    let count_frameworks = |status: FrameworkStatus| {
        core.frameworks()
            .values()
            .filter(|f| f.status == status)
            .count() as f64
    };
    let active = count_frameworks(FrameworkStatus::Active);
    put("master/frameworks_active", active);
    put("master/frameworks_connected", active);
    put(
        "master/frameworks_disconnected",
        count_frameworks(FrameworkStatus::Disconnected)
            + count_frameworks(FrameworkStatus::Recovered),
    );
    put("master/frameworks_inactive", 0.0);

    let mut by_state: BTreeMap<TaskState, f64> = BTreeMap::new();
    for task in core.tasks().values() {
        *by_state.entry(task.state).or_default() += 1.0;
    }
    for (name, state) in [
        ("staging", TaskState::Staging),
        ("starting", TaskState::Starting),
        ("running", TaskState::Running),
        ("killing", TaskState::Killing),
        ("unreachable", TaskState::Unreachable),
    ] {
        put(
            &format!("master/tasks_{name}"),
            by_state.get(&state).copied().unwrap_or(0.0),
        );
    }
    for (name, state) in [
        ("finished", TaskState::Finished),
        ("failed", TaskState::Failed),
        ("killed", TaskState::Killed),
        ("lost", TaskState::Lost),
        ("error", TaskState::Error),
        ("dropped", TaskState::Dropped),
        ("gone", TaskState::Gone),
    ] {
        let n = counters.tasks_terminal.get(&state).copied().unwrap_or(0);
        put(&format!("master/tasks_{name}"), n as f64);
    }

    let total = core.allocator().total();
    let mut used = Resources::empty();
    for slave in core.slaves().values().filter(|s| s.is_in_allocator()) {
        used += core.slave_used(slave);
    }
    for (name, t, u) in [
        ("cpus", total.cpus(), used.cpus()),
        ("mem", total.mem_mb(), used.mem_mb()),
        ("disk", total.disk_mb(), used.disk_mb()),
        ("gpus", 0.0, 0.0),
    ] {
        put(&format!("master/{name}_total"), t);
        put(&format!("master/{name}_used"), u);
        put(
            &format!("master/{name}_percent"),
            if t > 0.0 { u / t } else { 0.0 },
        );
    }
    put("master/outstanding_offers", core.offers().len() as f64);
    put("master/dropped_messages", counters.dropped_messages as f64);
    put(
        "master/messages_launch_tasks_offers_accepted",
        counters.offers_accepted as f64,
    );
    put(
        "master/messages_decline_offers",
        counters.offers_declined as f64,
    );
    put("master/offers_sent", counters.offers_sent as f64);
    put("master/offers_rescinded", counters.offers_rescinded as f64);
    put(
        "allocator/mesos/allocation_runs",
        counters.allocation_runs as f64,
    );
    m
}

#[cfg(test)]
mod maintenance_json_tests {
    use super::*;

    #[test]
    fn schedules_parse_from_mesos_json_and_print_back() {
        let body = json!({"windows": [{
            "machine_ids": [{"hostname": "Host-A", "ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "unavailability": {"start": {"nanoseconds": 5}, "duration": {"nanoseconds": 7}},
        }]});
        let windows = parse_schedule(&body).unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!(
            windows[0].machine_ids[0].hostname.as_deref(),
            Some("host-a")
        );
        assert_eq!(windows[0].machine_ids[1].hostname, None);
        assert_eq!(windows[0].unavailability.duration_nanos, Some(7));
        let state = MaintenanceState::default().with_schedule(windows).unwrap();
        let printed = schedule_json(&state);
        assert_eq!(
            printed["windows"][0]["machine_ids"][1],
            json!({"ip": "10.0.0.2"})
        );
        assert_eq!(
            printed["windows"][0]["unavailability"],
            json!({"start": {"nanoseconds": 5}, "duration": {"nanoseconds": 7}})
        );
        assert!(parse_schedule(&json!({})).unwrap().is_empty());
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let field = |v: Value| parse_schedule(&v).unwrap_err().field;
        assert_eq!(field(json!({"windows": 3})), "windows");
        assert_eq!(
            field(json!({"windows": [{"unavailability": {"start": {"nanoseconds": 1}}}]})),
            "windows[0].machine_ids"
        );
        assert_eq!(
            field(json!({"windows": [{"machine_ids": [{"ip": "x"}],
                "unavailability": {"start": {"nanoseconds": 1}}}]})),
            "windows[0].machine_ids[0].ip"
        );
        assert_eq!(
            field(json!({"windows": [{"machine_ids": [{"ip": "10.0.0.1"}],
                "unavailability": {"start": {"nanoseconds": "soon"}}}]})),
            "windows[0].unavailability.start.nanoseconds"
        );
        assert_eq!(
            field(json!({"windows": [{"machine_ids": [{"hostname": 1}],
                "unavailability": {"start": {"nanoseconds": 1}}}]})),
            "windows[0].machine_ids[0].hostname"
        );
        assert_eq!(
            parse_machine_list(&json!({"hostname": "a"}))
                .unwrap_err()
                .field,
            "body"
        );
        assert_eq!(
            parse_machine_list(&json!([{"hostname": "a"}, {}]))
                .unwrap_err()
                .field,
            "machine_ids[1]"
        );
        assert_eq!(parse_body(b"{").unwrap_err().field, "body");
    }

    #[test]
    fn maintenance_paths_are_classified_as_mesos_actions() {
        use plateau_security::{Access, Action};
        let action = |m, p| match classify(m, p) {
            Access::Action(a, _) => Some(a),
            _ => None,
        };
        assert_eq!(
            action("GET", "/master/maintenance/schedule"),
            Some(Action::GetMaintenanceSchedules)
        );
        assert_eq!(
            action("POST", "/master/maintenance/schedule"),
            Some(Action::UpdateMaintenanceSchedules)
        );
        assert_eq!(
            action("GET", "/master/maintenance/status"),
            Some(Action::GetMaintenanceStatuses)
        );
        assert_eq!(
            action("POST", "/master/machine/down"),
            Some(Action::StartMaintenances)
        );
        assert_eq!(
            action("POST", "/master/machine/up"),
            Some(Action::StopMaintenances)
        );
    }

    #[test]
    fn the_console_files_are_open_its_data_is_get_endpoints_its_proxy_needs_credentials() {
        use plateau_security::{Access, Action};
        assert!(matches!(classify("GET", "/"), Access::Open));
        assert!(matches!(classify("GET", "/ui/app.js"), Access::Open));
        assert!(matches!(
            classify("POST", "/ui/app.js"),
            Access::Authenticated
        ));
        match classify("GET", "/ui/api/summary") {
            Access::Action(Action::GetEndpoints, Some(p)) => assert_eq!(p, "/ui/api/summary"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify("POST", "/ui/proxy/marathon/v2/apps"),
            Access::Authenticated
        ));
        assert!(matches!(
            classify("GET", "/ui/proxy/agent/S1/files/read"),
            Access::Authenticated
        ));
    }
}
