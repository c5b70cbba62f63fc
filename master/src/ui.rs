//! What the web console (`plateau_webui`) asks of the master: a one-screen summary, pages of
//! the large lists, the last hour of the cluster's use, a stream of changes, and a proxy to
//! the agents, frameworks and services the master knows.
//!
//! | path | answer |
//! |---|---|
//! | `GET /ui/api/summary` | counts, resources, frameworks, roles, services ([`summary_json`]) |
//! | `GET /ui/api/history` | samples of the last hour, one every [`SAMPLE_INTERVAL`] |
//! | `GET /ui/api/agents?offset&limit&q&state&id` | a page of agents and their total |
//! | `GET /ui/api/tasks?offset&limit&framework_id&task_id&agent_id&state&q&order` | a page of tasks |
//! | `GET /ui/api/events` | Server-Sent Events: `summary`, `task`, `agent`, `framework` |
//! | `/ui/proxy/agent/{id}/{path}` | that agent's HTTP API |
//! | `/ui/proxy/framework/{id}/{path}` | the framework's `webui_url` |
//! | `/ui/proxy/marathon/{path}`, `/ui/proxy/chronos/{path}` | the framework of that name |
//! | `/ui/proxy/balancer/{path}` | the API the balancer announced |
//!
//! Any master answers: one that does not lead forwards the request to the leader, so the
//! console works from whichever master a browser reaches (a redirect would send the browser
//! to another origin, which its same-origin rules refuse). The proxies only reach addresses
//! the master knows from authenticated peers (slaves' and frameworks' certificates, the
//! balancer's), never one taken from the request.
//!
//! What the console sees but the core does not keep — the agents' real use
//! ([`SlaveUsageMessage`]), the history, the journal of changes the stream sends, the services
//! announced — lives in [`Console`], beside the core in the master process; it is not
//! replicated (a new leader starts a new history, and the services announce again).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use plateau_runtime::{ProcessRef, Upid};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::core::{Action, FrameworkStatus, MasterCore, Outgoing, Slave, SlaveStatus, Task};
use crate::ids::{FrameworkId, SlaveId, TaskId};
use crate::maintenance::MachineMode;
use crate::messages::{AnnounceServiceMessage, SlaveUsageMessage, TaskState};
use crate::process::MasterProcess;
use crate::resources::Resources;

/// How often the history takes a sample.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
pub const HISTORY_SAMPLES: usize = 360;
/// Changes kept for the event streams; a stream further behind gets a `resync`.
pub const JOURNAL_MAX: usize = 8192;
/// A service that has not announced itself for this long is forgotten.
pub const SERVICE_TTL: Duration = Duration::from_secs(30);
/// Largest page of agents or tasks.
pub const PAGE_MAX: usize = 1000;
/// Page size when none is asked for (Mesos' `/tasks` default).
pub const PAGE_DEFAULT: usize = 100;
/// How often an event stream looks for changes.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// Event streams open at once (each looks for changes every second).
pub const STREAMS_MAX: usize = 256;

/// Whether `path` is one of the console's files (`/` or `/ui/...` but not its API or proxy).
pub fn is_console_file(path: &str) -> bool {
    path == "/"
        || (path.starts_with("/ui/")
            && !path.starts_with("/ui/api/")
            && !path.starts_with("/ui/proxy/"))
}

/// A change the event streams report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A task's state or health changed.
    Task(FrameworkId, TaskId),
    /// An agent registered, re-registered or was lost.
    Agent(SlaveId),
    /// A framework registered, re-registered or was refused.
    Framework(FrameworkId),
}

/// One sample of the history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Calendar time, seconds since the Unix epoch.
    pub t: f64,
    /// CPUs of the active agents.
    pub cpus_total: f64,
    /// CPUs allocated to tasks.
    pub cpus_allocated: f64,
    /// CPUs the tasks use (from the agents' reports).
    pub cpus_used: f64,
    /// Memory of the active agents, MB.
    pub mem_total: f64,
    /// Memory allocated to tasks, MB.
    pub mem_allocated: f64,
    /// Memory the tasks use (resident), MB.
    pub mem_used: f64,
    /// Tasks running.
    pub tasks_running: u64,
}

/// An agent's last use report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentUsage {
    /// CPUs in use.
    pub cpus: f64,
    /// Resident memory, MB.
    pub mem_mb: f64,
}

/// A service that announced itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Its API's URL.
    pub url: String,
    /// Who announced it.
    pub from: Upid,
    /// When (monotonic).
    pub seen: Duration,
}

/// What the console sees beside the core (see the module docs).
#[derive(Debug, Default)]
pub struct Console {
    seq: u64,
    journal: VecDeque<(u64, Change)>,
    usage: BTreeMap<SlaveId, AgentUsage>,
    history: VecDeque<Sample>,
    next_sample: Option<Duration>,
    services: BTreeMap<String, Service>,
    /// The counts the event streams send, and when they were computed: once a second at most
    /// while streams are open, whatever their number (at 100,000 tasks a count takes a while).
    counts: Option<(Duration, Value)>,
}

impl Console {
    /// Notes what `action` tells of a change.
    pub fn observe(&mut self, action: &Action) {
        let Action::Send { message, .. } = action else {
            return;
        };
        let change = match message {
            Outgoing::StatusUpdate(m) => {
                Change::Task(m.framework_id.clone(), m.status.task_id.clone())
            }
            Outgoing::SlaveRegistered(m) => Change::Agent(m.slave_id.clone()),
            Outgoing::SlaveReregistered(m) => Change::Agent(m.slave_id.clone()),
            Outgoing::LostSlave(m) => Change::Agent(m.slave_id.clone()),
            Outgoing::FrameworkRegistered(m) => Change::Framework(m.framework_id.clone()),
            Outgoing::FrameworkReregistered(m) => Change::Framework(m.framework_id.clone()),
            _ => return,
        };
        // One LostSlave goes to every framework: note the change once.
        if self.journal.back().is_some_and(|(_, last)| *last == change) {
            return;
        }
        self.seq += 1;
        if self.journal.len() >= JOURNAL_MAX {
            self.journal.pop_front();
        }
        self.journal.push_back((self.seq, change));
    }

    /// The sequence number of the latest change.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The changes after `seq`, or `None` when some of them are no longer kept.
    pub fn since(&self, seq: u64) -> Option<Vec<Change>> {
        let oldest = self.journal.front().map_or(self.seq + 1, |(s, _)| *s);
        if seq + 1 < oldest && seq < self.seq {
            return None;
        }
        Some(
            self.journal
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, c)| c.clone())
                .collect(),
        )
    }

    /// Keeps an agent's use report (only from that agent's own process).
    pub fn usage_report(&mut self, core: &MasterCore, from: &Upid, msg: &SlaveUsageMessage) {
        let Some(slave) = core.slaves().get(&msg.slave_id) else {
            return;
        };
        if slave.pid.as_ref() != Some(from) {
            return;
        }
        let finite = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
        self.usage.insert(
            msg.slave_id.clone(),
            AgentUsage {
                cpus: finite(msg.cpus_used),
                mem_mb: finite(msg.mem_used_mb),
            },
        );
    }

    /// An agent's last use report, if it is still registered.
    pub fn usage(&self, id: &SlaveId) -> Option<AgentUsage> {
        self.usage.get(id).copied()
    }

    /// Keeps a service's announcement (`kind` and `url` checked: short, and an HTTP URL).
    pub fn announce(&mut self, now: Duration, from: &Upid, msg: &AnnounceServiceMessage) {
        let kind_ok = !msg.kind.is_empty()
            && msg.kind.len() <= 32
            && msg
                .kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-');
        let url_ok = msg.url.len() <= 256
            && (msg.url.starts_with("http://") || msg.url.starts_with("https://"))
            && !msg.url.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20);
        if !kind_ok || !url_ok {
            tracing::debug!(%from, kind = %msg.kind, "announcement refused");
            return;
        }
        self.services.insert(
            msg.kind.clone(),
            Service {
                url: msg.url.trim_end_matches('/').to_string(),
                from: from.clone(),
                seen: now,
            },
        );
    }

    /// The service of `kind`, if it announced itself within [`SERVICE_TTL`] of `now`.
    pub fn service(&self, kind: &str, now: Duration) -> Option<&Service> {
        self.services
            .get(kind)
            .filter(|s| now.saturating_sub(s.seen) <= SERVICE_TTL)
    }

    /// Takes a sample when one is due (called at each tick of an acting master).
    pub fn tick(&mut self, core: &MasterCore, now: Duration) {
        if self.next_sample.is_some_and(|due| now < due) {
            return;
        }
        self.next_sample = Some(now + SAMPLE_INTERVAL);
        // Reports of agents that left go with them (a sample's work, not every tick's: the
        // totals count connected agents only anyway).
        self.usage.retain(|id, _| {
            core.slaves()
                .get(id)
                .is_some_and(|s| s.status == SlaveStatus::Connected)
        });
        self.services
            .retain(|_, s| now.saturating_sub(s.seen) <= SERVICE_TTL * 4);
        let totals = Totals::of(core, self);
        if self.history.len() >= HISTORY_SAMPLES {
            self.history.pop_front();
        }
        self.history.push_back(Sample {
            t: core.wall_secs(now),
            cpus_total: totals.total.cpus(),
            cpus_allocated: totals.allocated.cpus(),
            cpus_used: totals.used_cpus,
            mem_total: totals.total.mem_mb(),
            mem_allocated: totals.allocated.mem_mb(),
            mem_used: totals.used_mem_mb,
            tasks_running: totals.tasks.get("running").copied().unwrap_or(0),
        });
    }

    /// Computes the counts for the event streams again when they are older than
    /// [`STREAM_INTERVAL`] and a stream is open (called at each tick of an acting master).
    pub fn refresh_counts(&mut self, core: &MasterCore, now: Duration) {
        if STREAMS.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            self.counts = None;
            return;
        }
        if self
            .counts
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_sub(*at) < STREAM_INTERVAL)
        {
            return;
        }
        self.counts = Some((now, counts_json(core, self)));
    }

    /// The counts as last computed for the event streams.
    pub fn counts(&self) -> Option<&Value> {
        self.counts.as_ref().map(|(_, v)| v)
    }

    /// The history, oldest first.
    pub fn history(&self) -> &VecDeque<Sample> {
        &self.history
    }

    /// A full hour of made-up history ending at `now` (the console's benchmark): the
    /// cluster's totals, with a use that rises and falls.
    #[doc(hidden)]
    pub fn fill_history_for_bench(&mut self, core: &MasterCore, now: Duration) {
        let totals = Totals::of(core, self);
        self.history.clear();
        for i in 0..HISTORY_SAMPLES {
            let ago = SAMPLE_INTERVAL * (HISTORY_SAMPLES - i) as u32;
            let wave = 0.5 + 0.4 * ((i as f64) / 30.0).sin();
            self.history.push_back(Sample {
                t: core.wall_secs(now) - ago.as_secs_f64(),
                cpus_total: totals.total.cpus(),
                cpus_allocated: totals.allocated.cpus(),
                cpus_used: totals.allocated.cpus() * wave,
                mem_total: totals.total.mem_mb(),
                mem_allocated: totals.allocated.mem_mb(),
                mem_used: totals.allocated.mem_mb() * wave,
                tasks_running: totals.tasks.get("running").copied().unwrap_or(0),
            });
        }
        self.next_sample = Some(now + SAMPLE_INTERVAL);
    }
}

/// What an agent is, as the console names it.
pub fn agent_state(core: &MasterCore, slave: &Slave) -> &'static str {
    match slave.status {
        SlaveStatus::Connected => match core.slave_maintenance(slave) {
            Some((_, _, MachineMode::Draining)) => "draining",
            _ => "active",
        },
        SlaveStatus::Disconnected | SlaveStatus::Recovered => "disconnected",
        SlaveStatus::Unreachable => "unreachable",
    }
}

/// A task state's short name (`TASK_RUNNING` → `running`).
fn short_state(state: TaskState) -> String {
    state
        .as_str()
        .trim_start_matches("TASK_")
        .to_ascii_lowercase()
}

/// The cluster's sums.
struct Totals {
    total: Resources,
    allocated: Resources,
    offered: Resources,
    used_cpus: f64,
    used_mem_mb: f64,
    agents: BTreeMap<&'static str, u64>,
    tasks: BTreeMap<String, u64>,
}

impl Totals {
    fn of(core: &MasterCore, console: &Console) -> Totals {
        let mut t = Totals {
            total: Resources::empty(),
            allocated: Resources::empty(),
            offered: Resources::empty(),
            used_cpus: 0.0,
            used_mem_mb: 0.0,
            agents: BTreeMap::new(),
            tasks: BTreeMap::new(),
        };
        for name in ["active", "disconnected", "unreachable", "draining"] {
            t.agents.insert(name, 0);
        }
        for slave in core.slaves().values() {
            *t.agents.entry(agent_state(core, slave)).or_default() += 1;
            if slave.status != SlaveStatus::Connected {
                continue;
            }
            t.total += &slave.info.resources;
            t.allocated += &core.slave_used(slave);
            t.offered += &core.offered(&slave.offers);
            if let Some(u) = console.usage(&slave.id) {
                t.used_cpus += u.cpus;
                t.used_mem_mb += u.mem_mb;
            }
        }
        for state in ["staging", "starting", "running", "killing", "unreachable"] {
            t.tasks.insert(state.to_string(), 0);
        }
        for task in core.tasks().values() {
            *t.tasks.entry(short_state(task.state)).or_default() += 1;
        }
        for f in core.frameworks().values() {
            for task in &f.completed_tasks {
                *t.tasks.entry(short_state(task.state)).or_default() += 1;
            }
        }
        t
    }

    fn counts_json(&self, core: &MasterCore) -> Value {
        let mut agents = json!({
            "total": core.slaves().len(),
            "down": core.maintenance().down.len(),
        });
        for (name, n) in &self.agents {
            agents[*name] = (*n).into();
        }
        let mut tasks = json!({ "total": core.tasks().len() });
        for (name, n) in &self.tasks {
            tasks[name.as_str()] = (*n).into();
        }
        json!({
            "agents": agents,
            "tasks": tasks,
            "resources": {
                "total": resources_short(&self.total),
                "allocated": resources_short(&self.allocated),
                "offered": resources_short(&self.offered),
                "used": { "cpus": self.used_cpus, "mem": self.used_mem_mb, "disk": 0.0 },
            },
            "offers": core.offers().len(),
        })
    }
}

fn resources_short(r: &Resources) -> Value {
    json!({ "cpus": r.cpus(), "mem": r.mem_mb(), "disk": r.disk_mb() })
}

/// The counts the event stream's `summary` events carry (a part of [`summary_json`]).
pub fn counts_json(core: &MasterCore, console: &Console) -> Value {
    Totals::of(core, console).counts_json(core)
}

/// Where a framework's web UI is, if it gave one that is an HTTP URL.
fn webui_url(info: &crate::messages::FrameworkInfo) -> Option<&str> {
    info.webui_url
        .as_deref()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
}

/// The active framework named `name` that gave a web UI (the newest registration wins).
pub fn framework_named<'a>(core: &'a MasterCore, name: &str) -> Option<&'a crate::core::Framework> {
    core.frameworks()
        .values()
        .filter(|f| f.info.name == name && webui_url(&f.info).is_some())
        .max_by(|a, b| {
            let active = |f: &crate::core::Framework| f.status == FrameworkStatus::Active;
            active(a).cmp(&active(b)).then(
                a.registered_time
                    .partial_cmp(&b.registered_time)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        })
}

/// The body of `GET /ui/api/summary`.
pub fn summary_json(
    core: &MasterCore,
    console: &Console,
    me: &str,
    started_at: Duration,
    now: Duration,
) -> Value {
    let totals = Totals::of(core, console);
    let mut v = totals.counts_json(core);
    let mut roles: BTreeMap<&str, (Vec<&str>, Resources)> = BTreeMap::new();
    // One pass over the tasks (not a lookup per task of each framework).
    let mut used_by: BTreeMap<&FrameworkId, Resources> = BTreeMap::new();
    for ((framework_id, _), task) in core.tasks() {
        if !task.state.is_terminal() && task.state != TaskState::Unreachable {
            *used_by.entry(framework_id).or_insert_with(Resources::empty) += &task.info.resources;
        }
    }
    let frameworks: Vec<Value> = core
        .frameworks()
        .values()
        .map(|f| {
            let used = used_by.remove(&f.id).unwrap_or_else(Resources::empty);
            let role = roles.entry(f.info.role.as_str()).or_default();
            role.0.push(f.id.as_str());
            role.1 += &used;
            json!({
                "id": f.id,
                "name": f.info.name,
                "role": f.info.role,
                "principal": f.info.principal,
                "active": f.status == FrameworkStatus::Active,
                "webui_url": webui_url(&f.info),
                "tasks": f.tasks.len(),
                "used_resources": resources_short(&used),
                "offers": f.offers.len(),
            })
        })
        .collect();
    let roles: Vec<Value> = roles
        .into_iter()
        .map(|(name, (frameworks, allocated))| {
            json!({ "name": name, "frameworks": frameworks, "allocated": resources_short(&allocated) })
        })
        .collect();
    let service = |name: &str| {
        framework_named(core, name)
            .map(|f| json!({ "framework_id": f.id, "url": webui_url(&f.info) }))
    };
    v["self"] = me.into();
    v["leader"] = me.into();
    v["elected"] = true.into();
    v["version"] = crate::http::MESOS_VERSION.into();
    v["uptime_secs"] = now.saturating_sub(started_at).as_secs_f64().into();
    v["frameworks"] = frameworks.into();
    v["roles"] = roles.into();
    v["services"] = json!({
        "marathon": service("marathon"),
        "chronos": service("chronos"),
        "balancer": console.service("balancer", now).map(|s| json!({ "url": s.url })),
    });
    v
}

/// The body of `GET /ui/api/history`.
pub fn history_json(console: &Console) -> Value {
    let samples: Vec<Value> = console
        .history()
        .iter()
        .map(|s| {
            json!({
                "t": s.t,
                "cpus_total": s.cpus_total,
                "cpus_allocated": s.cpus_allocated,
                "cpus_used": s.cpus_used,
                "mem_total": s.mem_total,
                "mem_allocated": s.mem_allocated,
                "mem_used": s.mem_used,
                "tasks_running": s.tasks_running,
            })
        })
        .collect();
    json!({ "interval_secs": SAMPLE_INTERVAL.as_secs(), "samples": samples })
}

/// A page request (`offset`, `limit`) and the filters of both lists.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// First entry (0-based).
    pub offset: Option<usize>,
    /// Entries at most ([`PAGE_DEFAULT`], at most [`PAGE_MAX`]).
    pub limit: Option<usize>,
    /// Text the entry's id, name or host name contains (case-insensitive).
    pub q: Option<String>,
    /// Agents: `active`, `disconnected`, `unreachable`, `draining`; tasks: `TASK_RUNNING`...
    pub state: Option<String>,
    /// One agent.
    pub id: Option<String>,
    /// Tasks of this framework.
    pub framework_id: Option<String>,
    /// This task (with `framework_id`).
    pub task_id: Option<String>,
    /// Tasks on this agent.
    pub agent_id: Option<String>,
    /// `asc` (default) or `des`.
    pub order: Option<String>,
}

/// Why a page was not given: the status and the message.
#[derive(Debug, PartialEq, Eq)]
pub struct PageError {
    /// HTTP status.
    pub status: u16,
    /// What the client did wrong.
    pub message: String,
    /// The parameter at fault.
    pub field: Option<&'static str>,
}

impl PageError {
    fn bad(field: &'static str, message: impl Into<String>) -> Self {
        PageError {
            status: 400,
            message: message.into(),
            field: Some(field),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        PageError {
            status: 404,
            message: message.into(),
            field: None,
        }
    }
}

impl PageQuery {
    fn window(&self) -> Result<(usize, usize), PageError> {
        let limit = self.limit.unwrap_or(PAGE_DEFAULT);
        if limit > PAGE_MAX {
            return Err(PageError::bad(
                "limit",
                format!("limit must be at most {PAGE_MAX}"),
            ));
        }
        Ok((self.offset.unwrap_or(0), limit))
    }

    fn descending(&self) -> Result<bool, PageError> {
        match self.order.as_deref() {
            None | Some("asc") => Ok(false),
            Some("des") => Ok(true),
            Some(_) => Err(PageError::bad("order", "order must be asc or des")),
        }
    }

    fn needle(&self) -> Option<String> {
        self.q
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(str::to_ascii_lowercase)
    }
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_ascii_lowercase().contains(needle)
}

/// An agent as the console shows it: Mesos' slave JSON, its state, rack, tasks running, the
/// address of its HTTP API, and its real use when it reported one.
fn agent_json(core: &MasterCore, console: &Console, slave: &Slave) -> Value {
    let mut v = crate::http::slave_json(core, slave);
    v["state"] = agent_state(core, slave).into();
    v["rack"] = slave
        .info
        .attributes
        .get("rack")
        .map(|r| Value::from(r.to_string()))
        .unwrap_or(Value::Null);
    let running = slave
        .tasks
        .iter()
        .filter_map(|k| core.tasks().get(k))
        .filter(|t| t.state == TaskState::Running)
        .count();
    v["tasks_running"] = running.into();
    v["tasks"] = slave.tasks.len().into();
    v["http"] = slave
        .pid
        .as_ref()
        .map(|p| Value::from(format!("{}:{}", p.host, p.port)))
        .unwrap_or(Value::Null);
    if let Some(u) = console.usage(&slave.id) {
        v["usage"] = json!({ "cpus": u.cpus, "mem": u.mem_mb });
    }
    v
}

/// The body of `GET /ui/api/agents`.
pub fn agents_page(
    core: &MasterCore,
    console: &Console,
    query: &PageQuery,
) -> Result<Value, PageError> {
    if let Some(id) = &query.id {
        let slave = core
            .slaves()
            .get(&SlaveId::new(id))
            .ok_or_else(|| PageError::not_found(format!("no agent {id}")))?;
        return Ok(json!({ "agents": [agent_json(core, console, slave)], "total": 1 }));
    }
    let (offset, limit) = query.window()?;
    if let Some(state) = query.state.as_deref() {
        if !["active", "disconnected", "unreachable", "draining"].contains(&state) {
            return Err(PageError::bad(
                "state",
                "state must be active, disconnected, unreachable or draining",
            ));
        }
    }
    let needle = query.needle();
    let matching = core.slaves().values().filter(|s| {
        query
            .state
            .as_deref()
            .is_none_or(|st| agent_state(core, s) == st)
            && needle.as_deref().is_none_or(|n| {
                contains(s.id.as_str(), n)
                    || contains(&s.info.hostname, n)
                    || s.info
                        .attributes
                        .iter()
                        .any(|(_, v)| contains(&v.to_string(), n))
            })
    });
    let mut total = 0usize;
    let mut agents = Vec::new();
    let ordered: Box<dyn Iterator<Item = &Slave>> = if query.descending()? {
        Box::new(matching.collect::<Vec<_>>().into_iter().rev())
    } else {
        Box::new(matching)
    };
    for slave in ordered {
        if total >= offset && agents.len() < limit {
            agents.push(agent_json(core, console, slave));
        }
        total += 1;
    }
    Ok(json!({ "agents": agents, "total": total }))
}

/// A task as the console shows it: Mesos' task JSON with its framework's name and its agent's
/// host name.
fn console_task_json(core: &MasterCore, task: &Task, role: &str) -> Value {
    let mut v = crate::http::task_json(task, role);
    v["framework_name"] = core
        .frameworks()
        .get(&task.framework_id)
        .map(|f| Value::from(f.info.name.clone()))
        .unwrap_or(Value::Null);
    v["agent_hostname"] = core
        .slaves()
        .get(&task.slave_id)
        .map(|s| Value::from(s.info.hostname.clone()))
        .unwrap_or(Value::Null);
    v
}

/// The body of `GET /ui/api/tasks`: the master's tasks (then its frameworks' completed ones)
/// that match, a page of them.
pub fn tasks_page(core: &MasterCore, query: &PageQuery) -> Result<Value, PageError> {
    let role = |f: &FrameworkId| {
        core.frameworks()
            .get(f)
            .map_or("*".to_string(), |f| f.info.role.clone())
    };
    if let Some(task_id) = &query.task_id {
        let Some(framework_id) = &query.framework_id else {
            return Err(PageError::bad(
                "framework_id",
                "framework_id is required with task_id",
            ));
        };
        let key = (FrameworkId::new(framework_id), TaskId::new(task_id));
        let task = core
            .tasks()
            .get(&key)
            .map(|t| t.as_ref())
            .or_else(|| {
                core.frameworks()
                    .get(&key.0)
                    .and_then(|f| {
                        f.completed_tasks
                            .iter()
                            .rev()
                            .find(|t| t.info.task_id == key.1)
                    })
                    .map(|t| t.as_ref())
            })
            .ok_or_else(|| {
                PageError::not_found(format!("no task {task_id} of framework {framework_id}"))
            })?;
        return Ok(json!({ "tasks": [console_task_json(core, task, &role(&key.0))], "total": 1 }));
    }
    let (offset, limit) = query.window()?;
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            TaskState::ALL
                .iter()
                .copied()
                .find(|t| t.as_str() == s)
                .ok_or_else(|| PageError::bad("state", format!("unknown task state {s}")))?,
        ),
    };
    let framework = query.framework_id.as_deref().map(FrameworkId::new);
    let agent = query.agent_id.as_deref().map(SlaveId::new);
    let needle = query.needle();
    let keep = |t: &Task| {
        framework.as_ref().is_none_or(|f| &t.framework_id == f)
            && agent.as_ref().is_none_or(|a| &t.slave_id == a)
            && state.is_none_or(|s| t.state == s)
            && needle
                .as_deref()
                .is_none_or(|n| contains(t.info.task_id.as_str(), n) || contains(&t.info.name, n))
    };
    let live = core.tasks().values().map(|t| t.as_ref());
    let completed = core
        .frameworks()
        .values()
        .filter(|f| framework.as_ref().is_none_or(|id| &f.id == id))
        .flat_map(|f| f.completed_tasks.iter().map(|t| t.as_ref()));
    let matching = live.chain(completed).filter(|t| keep(t));
    let ordered: Box<dyn Iterator<Item = &Task>> = if query.descending()? {
        Box::new(matching.collect::<Vec<_>>().into_iter().rev())
    } else {
        Box::new(matching)
    };
    let mut total = 0usize;
    let mut tasks = Vec::new();
    for task in ordered {
        if total >= offset && tasks.len() < limit {
            tasks.push(console_task_json(core, task, &role(&task.framework_id)));
        }
        total += 1;
    }
    Ok(json!({ "tasks": tasks, "total": total }))
}

/// The events of `changes` as SSE frames (the entries the core still holds).
pub fn change_frames(core: &MasterCore, changes: &[Change], out: &mut String) {
    use std::fmt::Write as _;
    for change in changes {
        let (event, data) = match change {
            Change::Task(f, t) => {
                let key = (f.clone(), t.clone());
                let task = core.tasks().get(&key).map(|t| t.as_ref()).or_else(|| {
                    core.frameworks()
                        .get(f)
                        .and_then(|fw| {
                            fw.completed_tasks
                                .iter()
                                .rev()
                                .find(|c| &c.info.task_id == t)
                        })
                        .map(|t| t.as_ref())
                });
                let Some(task) = task else { continue };
                let last = task.statuses.back();
                let mut data = json!({
                    "framework_id": f,
                    "task_id": t,
                    "agent_id": task.slave_id,
                    "state": task.state.as_str(),
                    "timestamp": last.map(|s| s.timestamp),
                });
                if let Some(h) = last.and_then(|s| s.healthy) {
                    data["healthy"] = h.into();
                }
                ("task", data)
            }
            Change::Agent(id) => {
                let data = match core.slaves().get(id) {
                    Some(s) => {
                        json!({ "id": id, "hostname": s.info.hostname, "state": agent_state(core, s) })
                    }
                    None => json!({ "id": id, "hostname": null, "state": "removed" }),
                };
                ("agent", data)
            }
            Change::Framework(id) => {
                let data = match core.frameworks().get(id) {
                    Some(f) => {
                        json!({ "id": id, "name": f.info.name, "active": f.status == FrameworkStatus::Active })
                    }
                    None => json!({ "id": id, "name": null, "active": false }),
                };
                ("framework", data)
            }
        };
        let _ = write!(out, "event: {event}\ndata: {data}\n\n");
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

type Master = web::Data<ProcessRef<MasterProcess>>;

/// Mounts the console's API and proxy routes (the master's `ProcessRef` is app data already).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui/api/summary", web::get().to(summary))
        .route("/ui/api/history", web::get().to(history))
        .route("/ui/api/agents", web::get().to(agents))
        .route("/ui/api/tasks", web::get().to(tasks))
        .route("/ui/api/events", web::get().to(events))
        .route("/ui/proxy/{kind}/{rest:.*}", web::route().to(proxy));
}

fn error_json(status: u16, message: &str, field: Option<&str>) -> HttpResponse {
    let mut body = json!({ "message": message });
    if let Some(f) = field {
        body["field"] = f.into();
    }
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(body)
}

/// What a read of the console's data gave.
enum Read<T> {
    Here(T),
    /// This master does not lead: forward to the leader (`host:port`).
    Leader(String),
    NoLeader,
    Failed,
}

async fn read<T: Send + 'static>(
    master: &Master,
    f: impl FnOnce(&MasterProcess, &MasterCore, &Upid, Duration) -> T + Send + 'static,
) -> Read<T> {
    let answer = master
        .call(move |p, ctx| match p.try_core() {
            Some(core) => Read::Here(f(p, core, ctx.self_upid(), ctx.now().since_origin())),
            None if p.replica().is_some() => match p.leading_master(ctx.self_upid()) {
                Some(l) => Read::Leader(format!("{}:{}", l.host, l.port)),
                None => Read::NoLeader,
            },
            None => Read::Failed,
        })
        .await;
    answer.unwrap_or(Read::Failed)
}

/// Answers a console read: here when this master leads, else from the leader.
async fn answer(
    master: Master,
    request: HttpRequest,
    body: web::Bytes,
    f: impl FnOnce(&MasterProcess, &MasterCore, &Upid, Duration) -> Result<Value, PageError>
        + Send
        + 'static,
) -> HttpResponse {
    match read(&master, f).await {
        Read::Here(Ok(v)) => HttpResponse::Ok().json(v),
        Read::Here(Err(e)) => error_json(e.status, &e.message, e.field),
        Read::Leader(leader) => forward_to_leader(&request, body, &leader).await,
        Read::NoLeader => error_json(503, "no leading master is known yet", None),
        Read::Failed => error_json(503, "the master stopped after a registry failure", None),
    }
}

async fn forward_to_leader(request: &HttpRequest, body: web::Bytes, leader: &str) -> HttpResponse {
    let client = proxy_client(request);
    let scheme = request.connection_info().scheme().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    client
        .forward(request, body, &format!("{scheme}://{leader}"), &path)
        .await
}

/// The server's proxy client (app data: `plateau::serve` gives one with the cluster's TLS
/// client configuration), or a plain HTTP one.
fn proxy_client(request: &HttpRequest) -> plateau_webui::proxy::Client {
    request
        .app_data::<plateau_webui::proxy::Client>()
        .cloned()
        .unwrap_or_else(|| plateau_webui::proxy::Client::new(None))
}

fn addr(upid: &Upid) -> String {
    format!("{}:{}", upid.host, upid.port)
}

async fn summary(master: Master, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    answer(master, request, body, |p, core, me, now| {
        Ok(summary_json(
            core,
            p.console(),
            &addr(me),
            p.started_at(),
            now,
        ))
    })
    .await
}

async fn history(master: Master, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    answer(master, request, body, |p, _, _, _| {
        Ok(history_json(p.console()))
    })
    .await
}

async fn agents(
    master: Master,
    request: HttpRequest,
    body: web::Bytes,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    answer(master, request, body, move |p, core, _, _| {
        agents_page(core, p.console(), &query)
    })
    .await
}

async fn tasks(
    master: Master,
    request: HttpRequest,
    body: web::Bytes,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let query = query.into_inner();
    answer(master, request, body, move |_, core, _, _| {
        tasks_page(core, &query)
    })
    .await
}

/// Event streams open now.
static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts an open stream until dropped.
struct StreamSlot;

impl StreamSlot {
    fn take() -> Option<StreamSlot> {
        use std::sync::atomic::Ordering;
        let taken = STREAMS.fetch_add(1, Ordering::Relaxed);
        if taken >= STREAMS_MAX {
            STREAMS.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(StreamSlot)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        STREAMS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where a stream stands: the last change sent, the last counts sent.
struct Cursor {
    master: Master,
    seq: Option<u64>,
    counts: Value,
    _slot: StreamSlot,
}

/// One look for changes: the frames to send (maybe none), or `None` when the stream must end
/// (this master no longer leads: the console reconnects and is forwarded).
async fn poll_changes(cursor: &mut Cursor) -> Option<String> {
    let seq = cursor.seq;
    let previous = cursor.counts.clone();
    let answer = read(&cursor.master, move |p, core, _, _| {
        let console = p.console();
        let counts = match console.counts() {
            Some(c) => c.clone(),
            None => counts_json(core, console),
        };
        let mut out = String::new();
        let latest = console.seq();
        match seq.map(|s| console.since(s)) {
            None => {}
            Some(Some(changes)) => change_frames(core, &changes, &mut out),
            Some(None) => out.push_str("event: resync\ndata: {}\n\n"),
        }
        if counts != previous {
            out.push_str(&format!("event: summary\ndata: {counts}\n\n"));
        }
        (out, latest, counts)
    })
    .await;
    match answer {
        Read::Here((out, latest, counts)) => {
            cursor.seq = Some(latest);
            cursor.counts = counts;
            Some(out)
        }
        _ => None,
    }
}

async fn events(master: Master, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    // A follower forwards the stream to the leader.
    if let Read::Leader(leader) = read(&master, |_, _, _, _| ()).await {
        return forward_to_leader(&request, body, &leader).await;
    }
    let Some(slot) = StreamSlot::take() else {
        return error_json(503, "too many console event streams", None);
    };
    let cursor = Cursor {
        master,
        seq: None,
        counts: Value::Null,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold((cursor, true), |(mut cursor, first)| async move {
        if !first {
            tokio::time::sleep(STREAM_INTERVAL).await;
        }
        let frames = poll_changes(&mut cursor).await?;
        // A comment line keeps the connection (and proxies) alive when nothing changed.
        let frames = if frames.is_empty() {
            ":\n\n".to_string()
        } else {
            frames
        };
        Some((
            Ok::<_, std::convert::Infallible>(web::Bytes::from(frames)),
            (cursor, false),
        ))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}

/// Where a proxy request goes: the base URL of the target.
fn proxy_target(
    core: &MasterCore,
    console: &Console,
    kind: &str,
    id: &str,
    scheme: &str,
    now: Duration,
) -> Result<String, String> {
    match kind {
        "agent" => {
            let slave = core
                .slaves()
                .get(&SlaveId::new(id))
                .ok_or_else(|| format!("no agent {id}"))?;
            let pid = slave
                .pid
                .as_ref()
                .ok_or_else(|| format!("agent {id} has not registered with this master"))?;
            Ok(format!("{scheme}://{}", addr(pid)))
        }
        "framework" => core
            .frameworks()
            .get(&FrameworkId::new(id))
            .and_then(|f| webui_url(&f.info))
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("no framework {id} with a web UI")),
        "marathon" | "chronos" => framework_named(core, kind)
            .and_then(|f| webui_url(&f.info))
            .map(|u| u.trim_end_matches('/').to_string())
            .ok_or_else(|| format!("no {kind} is registered with the master")),
        "balancer" => console
            .service("balancer", now)
            .map(|s| s.url.clone())
            .ok_or_else(|| "no balancer has announced itself to the master".to_string()),
        _ => Err(format!("no proxy of kind {kind}")),
    }
}

/// `/ui/proxy/{kind}/{rest}`: `agent/{id}/{path}`, `framework/{id}/{path}`, or
/// `{marathon,chronos,balancer}/{path}`.
async fn proxy(master: Master, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let kind = request.match_info().query("kind").to_string();
    let rest = request.match_info().query("rest").to_string();
    let (id, path) = match kind.as_str() {
        "agent" | "framework" => match rest.split_once('/') {
            Some((id, path)) => (id.to_string(), format!("/{path}")),
            None => (rest.clone(), "/".to_string()),
        },
        _ => (String::new(), format!("/{rest}")),
    };
    let scheme = request.connection_info().scheme().to_string();
    let target = {
        let (kind, scheme) = (kind.clone(), scheme.clone());
        read(&master, move |p, core, _, now| {
            proxy_target(core, p.console(), &kind, &id, &scheme, now)
        })
        .await
    };
    let base = match target {
        Read::Here(Ok(base)) => base,
        Read::Here(Err(message)) => return error_json(404, &message, None),
        Read::Leader(leader) => return forward_to_leader(&request, body, &leader).await,
        Read::NoLeader => return error_json(503, "no leading master is known yet", None),
        Read::Failed => {
            return error_json(503, "the master stopped after a registry failure", None)
        }
    };
    let path_and_query = match request.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let client = proxy_client(&request);
    client.forward(&request, body, &base, &path_and_query).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{synthetic_cluster, SyntheticCluster};
    use crate::core::MasterConfig;

    fn cluster(agents: usize, tasks: usize) -> MasterCore {
        let config = MasterConfig {
            agent_timeout: Duration::from_secs(86_400),
            ..Default::default()
        };
        synthetic_cluster(
            &SyntheticCluster {
                agents,
                tasks,
                frameworks: 3,
            },
            config,
            "master@127.0.0.1:5050".parse().unwrap(),
            1_000_000.0,
        )
    }

    fn query(text: &str) -> PageQuery {
        web::Query::<PageQuery>::from_query(text)
            .unwrap()
            .into_inner()
    }

    #[test]
    fn the_summary_counts_agents_tasks_resources_and_names_the_frameworks() {
        let core = cluster(50, 500);
        let console = Console::default();
        let v = summary_json(
            &core,
            &console,
            "127.0.0.1:5050",
            Duration::ZERO,
            Duration::from_secs(3),
        );
        assert_eq!(v["agents"]["total"], 50);
        assert_eq!(v["agents"]["active"], 50);
        assert_eq!(v["tasks"]["running"], 500);
        assert_eq!(v["resources"]["total"]["cpus"], 50.0 * 24.0);
        let allocated = v["resources"]["allocated"]["cpus"].as_f64().unwrap();
        assert!((allocated - 50.0).abs() < 1e-6, "{allocated}");
        let names: Vec<&str> = v["frameworks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"marathon") && names.contains(&"chronos"));
        assert_eq!(v["roles"][0]["name"], "*");
        assert_eq!(v["uptime_secs"], 3.0);
        // No framework gave a web UI, no balancer announced itself.
        assert!(v["services"]["marathon"].is_null());
        assert!(v["services"]["balancer"].is_null());
    }

    #[test]
    fn agents_come_by_page_with_their_total_and_filters() {
        let core = cluster(120, 600);
        let console = Console::default();
        let page = agents_page(&core, &console, &query("offset=100&limit=50")).unwrap();
        assert_eq!(page["total"], 120);
        assert_eq!(page["agents"].as_array().unwrap().len(), 20);
        let first = &page["agents"][0];
        assert_eq!(first["state"], "active");
        assert_eq!(first["tasks_running"], 5);
        assert!(first["rack"].as_str().unwrap().starts_with('r'));
        // The filter matches the host name and the attributes.
        let one = agents_page(&core, &console, &query("q=agent-7.bench")).unwrap();
        assert_eq!(one["total"], 1);
        let rack = agents_page(&core, &console, &query("q=r39&limit=1000")).unwrap();
        assert_eq!(rack["total"], 3, "agents 39, 79 and 119 are on rack r39");
        let none = agents_page(&core, &console, &query("state=unreachable")).unwrap();
        assert_eq!(none["total"], 0);
        let id = first["id"].as_str().unwrap();
        let by_id = agents_page(&core, &console, &query(&format!("id={id}"))).unwrap();
        assert_eq!(by_id["agents"][0]["id"], id);
        // Bad requests name the parameter; an unknown agent is 404.
        let e = agents_page(&core, &console, &query("limit=5000")).unwrap_err();
        assert_eq!((e.status, e.field), (400, Some("limit")));
        let e = agents_page(&core, &console, &query("state=sleepy")).unwrap_err();
        assert_eq!((e.status, e.field), (400, Some("state")));
        let e = agents_page(&core, &console, &query("id=nope")).unwrap_err();
        assert_eq!(e.status, 404);
    }

    #[test]
    fn tasks_come_by_page_by_framework_agent_state_and_one_by_id() {
        let core = cluster(20, 200);
        let all = tasks_page(&core, &query("limit=10")).unwrap();
        assert_eq!(all["total"], 200);
        assert_eq!(all["tasks"].as_array().unwrap().len(), 10);
        let task = &all["tasks"][0];
        assert_eq!(task["state"], "TASK_RUNNING");
        assert!(task["agent_hostname"].as_str().unwrap().ends_with(".bench"));
        let framework = task["framework_id"].as_str().unwrap().to_string();
        let agent = task["slave_id"].as_str().unwrap().to_string();
        let of_framework = tasks_page(
            &core,
            &query(&format!("framework_id={framework}&limit=1000")),
        )
        .unwrap();
        let n = of_framework["total"].as_u64().unwrap();
        assert!((66..=67).contains(&n), "{n}");
        let on_agent = tasks_page(&core, &query(&format!("agent_id={agent}"))).unwrap();
        assert_eq!(on_agent["total"], 10);
        let staging = tasks_page(&core, &query("state=TASK_STAGING")).unwrap();
        assert_eq!(staging["total"], 0);
        let id = task["id"].as_str().unwrap();
        let one = tasks_page(
            &core,
            &query(&format!("framework_id={framework}&task_id={id}")),
        )
        .unwrap();
        assert_eq!(one["tasks"][0]["id"], id);
        let asc = tasks_page(&core, &query("limit=1")).unwrap();
        let des = tasks_page(&core, &query("limit=1&order=des")).unwrap();
        assert_ne!(asc["tasks"][0]["id"], des["tasks"][0]["id"]);
        let e = tasks_page(&core, &query("task_id=x")).unwrap_err();
        assert_eq!((e.status, e.field), (400, Some("framework_id")));
        let e = tasks_page(&core, &query("state=RUNNING")).unwrap_err();
        assert_eq!((e.status, e.field), (400, Some("state")));
        let e = tasks_page(&core, &query("order=up")).unwrap_err();
        assert_eq!((e.status, e.field), (400, Some("order")));
    }

    #[test]
    fn the_journal_keeps_changes_in_order_and_says_when_a_reader_fell_behind() {
        use crate::messages::{LostSlaveMessage, SlaveRegisteredMessage};
        let mut console = Console::default();
        let to: Upid = "x@127.0.0.1:1".parse().unwrap();
        let lost = |id: &str| Action::Send {
            to: to.clone(),
            message: Outgoing::LostSlave(LostSlaveMessage {
                slave_id: SlaveId::new(id),
            }),
        };
        console.observe(&lost("a"));
        // The same LostSlave to every framework is one change.
        console.observe(&lost("a"));
        console.observe(&Action::Send {
            to: to.clone(),
            message: Outgoing::SlaveRegistered(SlaveRegisteredMessage {
                slave_id: SlaveId::new("b"),
                heartbeat_interval_ms: 1000,
            }),
        });
        console.observe(&Action::Link(to.clone()));
        assert_eq!(console.seq(), 2);
        assert_eq!(
            console.since(0).unwrap(),
            vec![
                Change::Agent(SlaveId::new("a")),
                Change::Agent(SlaveId::new("b"))
            ]
        );
        assert_eq!(console.since(1).unwrap().len(), 1);
        assert!(console.since(2).unwrap().is_empty());
        for i in 0..JOURNAL_MAX + 10 {
            console.observe(&lost(&format!("s{i}")));
        }
        assert!(
            console.since(1).is_none(),
            "a reader 10 changes behind the kept ones resyncs"
        );
        assert_eq!(console.since(console.seq() - 5).unwrap().len(), 5);
    }

    #[test]
    fn history_samples_every_interval_and_keeps_one_hour() {
        let core = cluster(10, 40);
        let mut console = Console::default();
        let mut now = Duration::ZERO;
        for _ in 0..(HISTORY_SAMPLES + 50) * 10 {
            console.tick(&core, now);
            now += Duration::from_secs(1);
        }
        let history = console.history();
        assert_eq!(history.len(), HISTORY_SAMPLES);
        let step = history[1].t - history[0].t;
        assert!(
            (step - SAMPLE_INTERVAL.as_secs_f64()).abs() < 1e-6,
            "{step}"
        );
        assert_eq!(history.back().unwrap().tasks_running, 40);
        assert!((history.back().unwrap().cpus_allocated - 4.0).abs() < 1e-6);
        let v = history_json(&console);
        assert_eq!(v["samples"].as_array().unwrap().len(), HISTORY_SAMPLES);
    }

    #[test]
    fn usage_counts_only_from_the_agent_itself_and_announcements_are_checked() {
        let core = cluster(2, 2);
        let mut console = Console::default();
        let slave = core.slaves().values().next().unwrap();
        let own = slave.pid.clone().unwrap();
        let other: Upid = "slave(1)@10.9.9.9:5051".parse().unwrap();
        let report = SlaveUsageMessage {
            slave_id: slave.id.clone(),
            cpus_used: 1.5,
            mem_used_mb: 100.0,
            tasks: 1,
        };
        console.usage_report(&core, &other, &report);
        assert!(
            console.usage(&slave.id).is_none(),
            "another node cannot report for it"
        );
        console.usage_report(&core, &own, &report);
        assert_eq!(console.usage(&slave.id).unwrap().cpus, 1.5);
        let counts = counts_json(&core, &console);
        assert_eq!(counts["resources"]["used"]["cpus"], 1.5);
        let balancer: Upid = "balancer@127.0.0.1:9090".parse().unwrap();
        let now = Duration::from_secs(100);
        for (kind, url) in [
            ("balancer", "javascript:alert(1)"),
            ("Balancer!", "http://127.0.0.1:9090"),
            ("balancer", "http://a b"),
        ] {
            console.announce(
                now,
                &balancer,
                &AnnounceServiceMessage {
                    kind: kind.into(),
                    url: url.into(),
                },
            );
        }
        assert!(console.service("balancer", now).is_none());
        console.announce(
            now,
            &balancer,
            &AnnounceServiceMessage {
                kind: "balancer".into(),
                url: "http://127.0.0.1:9090/".into(),
            },
        );
        assert_eq!(
            console.service("balancer", now).unwrap().url,
            "http://127.0.0.1:9090"
        );
        assert!(console
            .service("balancer", now + SERVICE_TTL + Duration::from_secs(1))
            .is_none());
    }

    #[test]
    fn change_frames_are_server_sent_events_with_the_current_state() {
        let core = cluster(2, 4);
        let (key, _) = core.tasks().iter().next().unwrap();
        let mut out = String::new();
        change_frames(
            &core,
            &[
                Change::Task(key.0.clone(), key.1.clone()),
                Change::Agent(SlaveId::new("gone")),
            ],
            &mut out,
        );
        let frames: Vec<&str> = out.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].starts_with("event: task\ndata: {"));
        let data: Value = serde_json::from_str(frames[0].split_once("data: ").unwrap().1).unwrap();
        assert_eq!(data["state"], "TASK_RUNNING");
        assert!(frames[1].contains("\"state\":\"removed\""));
    }

    #[test]
    fn only_the_console_files_are_open() {
        for open in ["/", "/ui/app.js", "/ui/vendor/uPlot.iife.min.js"] {
            assert!(is_console_file(open), "{open}");
        }
        for closed in [
            "/ui/api/summary",
            "/ui/proxy/agent/x/state",
            "/master/state",
            "/uix",
        ] {
            assert!(!is_console_file(closed), "{closed}");
        }
    }
}
