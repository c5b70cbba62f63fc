//! Each command: its requests, its waits and what it prints.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{check, Api, Service};
use crate::context::{self, Context, Contexts};
use crate::error::{CliError, Result};
use crate::output::{self, pairs, print_json, print_rows, Column, Format, Progress, CLUSTER};
use crate::rows;
use crate::{
    AgentCommand, AppCommand, ClusterCommand, Command, ContextCommand, DeploymentCommand, Global,
    JobCommand, TaskCommand,
};

/// Between two polls of a wait.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Between two reads of a followed log.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes asked for in one `/files/read`.
const LOG_CHUNK_BYTES: usize = 64 * 1024;

/// The flags and the contexts of one command.
struct Env {
    global: Global,
    contexts: Contexts,
    path: PathBuf,
}

impl Env {
    fn new(global: Global) -> Result<Env> {
        let path = match &global.contexts_file {
            Some(p) => p.clone(),
            None => context::default_path()?,
        };
        let contexts = Contexts::load(&path)?;
        Ok(Env {
            global,
            contexts,
            path,
        })
    }

    fn format(&self) -> Format {
        self.global.format()
    }

    fn api(&self) -> Result<Api> {
        let (name, context) = self.contexts.select(self.global.context.as_deref())?;
        Api::new(&name, context)
    }

    fn apis(&self) -> Result<Vec<Api>> {
        if self.global.all_contexts {
            self.contexts
                .all()
                .into_iter()
                .map(|(name, context)| Api::new(&name, context))
                .collect()
        } else {
            Ok(vec![self.api()?])
        }
    }

    /// A listing: `fetch` per context (each of them with `--all-contexts`, rows tagged with a
    /// `cluster` key and a CLUSTER column first). With several contexts, one that fails is
    /// reported and the others are still shown; the exit code is the first failure's.
    async fn list(
        &self,
        columns: &[Column],
        fetch: impl AsyncFn(&Api) -> Result<Vec<Value>>,
    ) -> Result<()> {
        let many = self.global.all_contexts;
        let mut rows = Vec::new();
        let mut failed = None;
        for api in self.apis()? {
            match fetch(&api).await {
                Ok(found) => rows.extend(found.into_iter().map(|mut row| {
                    if many {
                        if let Some(object) = row.as_object_mut() {
                            object.insert("cluster".into(), Value::from(api.name.clone()));
                        }
                    }
                    row
                })),
                Err(e) if many => {
                    eprintln!("context '{}': {e}", api.name);
                    failed.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let columns: Vec<Column> = if many {
            std::iter::once(CLUSTER)
                .chain(columns.iter().copied())
                .collect()
        } else {
            columns.to_vec()
        };
        print_rows(self.format(), &columns, &rows);
        failed.map_or(Ok(()), Err)
    }
}

/// The deadline of a wait of `timeout` from now.
fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + timeout // determinism-ok: operator CLI, real time only
}

fn past(deadline: tokio::time::Instant) -> bool {
    tokio::time::Instant::now() >= deadline // determinism-ok: operator CLI, real time only
}

/// `value` percent-encoded for a query string or a path segment.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Carry out `command`.
pub async fn run(command: Command, root: clap::Command) -> Result<()> {
    match command {
        Command::Completions { shell } => {
            let mut root = root;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut root, "plateau", &mut script);
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
        Command::Context { global, command } => context_command(&Env::new(global)?, command),
        Command::Cluster {
            global,
            command: ClusterCommand::Status,
        } => {
            let env = Env::new(global)?;
            env.list(rows::CLUSTER_COLUMNS, async |api: &Api| {
                let state = api.master_state().await?;
                let (draining, down) = maintenance(api).await;
                Ok(vec![rows::cluster(&state, &draining, &down)])
            })
            .await
        }
        Command::Agent { global, command } => agent_command(&Env::new(global)?, command).await,
        Command::App { global, command } => app_command(&Env::new(global)?, command).await,
        Command::Deployment { global, command } => {
            deployment_command(&Env::new(global)?, command).await
        }
        Command::Task { global, command } => task_command(&Env::new(global)?, command).await,
        Command::Job { global, command } => job_command(&Env::new(global)?, command).await,
        Command::Top {
            global,
            once,
            interval,
        } => top(&Env::new(global)?, once, interval).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Contexts

fn context_command(env: &Env, command: ContextCommand) -> Result<()> {
    let mut contexts = env.contexts.clone();
    match command {
        ContextCommand::Add {
            name,
            master,
            marathon,
            chronos,
            credentials,
            principal,
            secret,
            ca,
            use_it,
        } => {
            context::check_name(&name)?;
            let masters: Vec<String> = master
                .iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            if masters.is_empty() {
                return Err(CliError::Usage(
                    "--master: name at least one HOST:PORT".into(),
                ));
            }
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            let credentials = credentials.map(absolute);
            if let Some(path) = &credentials {
                context::read_credentials(path)?;
            }
            let ca = ca.map(absolute);
            if let Some(path) = &ca {
                crate::client::tls_config(path)
                    .map_err(|e| CliError::Usage(format!("--ca {}: {e}", path.display())))?;
            }
            let replaced = contexts.contexts.insert(
                name.clone(),
                Context {
                    masters,
                    marathon,
                    chronos,
                    credentials,
                    principal,
                    secret,
                    ca,
                },
            );
            let in_use = use_it || contexts.current.is_none();
            if in_use {
                contexts.current = Some(name.clone());
            }
            contexts.save(&env.path)?;
            let verb = if replaced.is_some() {
                "replaced"
            } else {
                "added"
            };
            let tail = if in_use { ", in use" } else { "" };
            eprintln!("context '{name}' {verb}{tail} ({})", env.path.display());
            Ok(())
        }
        ContextCommand::Use { name } => {
            if !contexts.contexts.contains_key(&name) {
                return Err(CliError::NotFound(format!(
                    "no context named '{name}'; `plateau context list` shows them"
                )));
            }
            contexts.current = Some(name.clone());
            contexts.save(&env.path)?;
            eprintln!("using context '{name}'");
            Ok(())
        }
        ContextCommand::Rm { name } => {
            if contexts.contexts.remove(&name).is_none() {
                return Err(CliError::NotFound(format!(
                    "no context named '{name}'; `plateau context list` shows them"
                )));
            }
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save(&env.path)?;
            eprintln!("context '{name}' removed");
            Ok(())
        }
        ContextCommand::List => {
            let current = contexts
                .select(env.global.context.as_deref())
                .ok()
                .map(|(n, _)| n);
            let rows: Vec<Value> = contexts
                .all()
                .into_iter()
                .map(|(name, c)| {
                    json!({
                        "current": if current.as_deref() == Some(name.as_str()) { "*" } else { "" },
                        "name": name,
                        "masters": c.masters,
                        "marathon": c.marathon_url(),
                        "chronos": c.chronos_url(),
                        "principal": c.principal_name(),
                        "ca": c.ca.as_ref().map(|p| p.display().to_string()),
                    })
                })
                .collect();
            print_rows(env.format(), rows::CONTEXT_COLUMNS, &rows);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

/// Host names (and IPs) of the machines draining and down, from the master's maintenance
/// status; none when the master has no maintenance endpoints or does not answer.
async fn maintenance(api: &Api) -> (Vec<String>, Vec<String>) {
    let Ok(status) = api
        .get(&Service::Master, "/master/maintenance/status", "")
        .await
    else {
        return (Vec::new(), Vec::new());
    };
    let names = |key: &str| -> Vec<String> {
        status[key]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| {
                let id = if m.get("id").is_some() { &m["id"] } else { m };
                [id["hostname"].as_str(), id["ip"].as_str()]
            })
            .flatten()
            .map(str::to_string)
            .collect()
    };
    (names("draining_machines"), names("down_machines"))
}

/// The agent row named by `name` (host name, IP, HOST:PORT or id).
fn find_agent(agents: &[Value], name: &str) -> Result<Value> {
    agents
        .iter()
        .find(|a| {
            a["hostname"] == name
                || a["id"] == name
                || a["address"] == name
                || a["address"]
                    .as_str()
                    .and_then(|addr| addr.rsplit_once(':'))
                    .is_some_and(|(ip, _)| ip == name)
        })
        .cloned()
        .ok_or_else(|| {
            let known: Vec<String> = agents
                .iter()
                .map(|a| output::cell(&a["hostname"]))
                .collect();
            CliError::NotFound(format!(
                "no agent '{name}' (known: {}); `plateau agent list` shows them",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
}

/// The machine id (Mesos' `{hostname, ip}`) of an agent row.
fn machine_id(agent: &Value) -> Value {
    let hostname = agent["hostname"].as_str().unwrap_or("");
    let ip = agent["address"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .map_or(hostname, |(ip, _)| ip);
    json!({"hostname": hostname, "ip": ip})
}

async fn agent_command(env: &Env, command: AgentCommand) -> Result<()> {
    match command {
        AgentCommand::List => {
            env.list(rows::AGENT_COLUMNS, async |api: &Api| {
                let state = api.master_state().await?;
                let (draining, down) = maintenance(api).await;
                Ok(rows::agents(&state, &draining, &down))
            })
            .await
        }
        AgentCommand::Show { agent } => {
            let api = env.api()?;
            let state = api.master_state().await?;
            let (draining, down) = maintenance(&api).await;
            let row = find_agent(&rows::agents(&state, &draining, &down), &agent)?;
            let tasks: Vec<Value> = rows::master_tasks(&state, false)
                .into_iter()
                .filter(|t| t["agent_id"] == row["id"])
                .collect();
            if env.format() == Format::Json {
                print_json(&json!({"agent": row, "tasks": tasks}));
                return Ok(());
            }
            let text = |k: &str| output::cell(&row[k]);
            outln!(
                "{}",
                pairs(&[
                    ("Hostname", text("hostname")),
                    ("Address", text("address")),
                    ("ID", text("id")),
                    ("State", text("state")),
                    (
                        "CPUs",
                        rows::used_of(
                            row["cpus_used"].as_f64().unwrap_or(0.0),
                            row["cpus_total"].as_f64().unwrap_or(0.0)
                        )
                    ),
                    (
                        "Mem (MB)",
                        rows::used_of(
                            row["mem_used_mb"].as_f64().unwrap_or(0.0),
                            row["mem_total_mb"].as_f64().unwrap_or(0.0)
                        )
                    ),
                    (
                        "Disk (MB)",
                        rows::used_of(
                            row["disk_used_mb"].as_f64().unwrap_or(0.0),
                            row["disk_total_mb"].as_f64().unwrap_or(0.0)
                        )
                    ),
                    ("Attributes", text("attributes")),
                    ("Tasks", text("tasks")),
                ])
            );
            if !tasks.is_empty() {
                outln!();
                outln!(
                    "{}",
                    output::table(rows::TASK_COLUMNS, &tasks, env.format() == Format::Wide)
                );
            }
            Ok(())
        }
        AgentCommand::Drain { agent, deadline } => drain(env, &agent, deadline).await,
        AgentCommand::Up { agent } => {
            let api = env.api()?;
            let state = api.master_state().await?;
            let machine = match find_agent(&rows::agents(&state, &[], &[]), &agent) {
                Ok(row) => machine_id(&row),
                // A machine that is down may be gone from the master's agents.
                Err(_) => json!({"hostname": agent, "ip": agent}),
            };
            api.call(
                &Service::Master,
                Method::POST,
                "/master/machine/up",
                Some(&json!([machine])),
                &format!("the master does not know machine '{agent}' as down"),
            )
            .await?;
            if env.format() == Format::Json {
                print_json(&json!({"agent": agent, "up": true}));
            } else {
                eprintln!("agent {agent} is up: it gets tasks again");
            }
            Ok(())
        }
    }
}

/// `agent drain`: a maintenance window from now for `deadline` (added to the master's schedule,
/// the machine taken out of any other window), progress as the count of tasks left on the
/// agent until none or the deadline, then the machine is marked down.
async fn drain(env: &Env, name: &str, deadline: Duration) -> Result<()> {
    let api = env.api()?;
    let state = api.master_state().await?;
    let agent = find_agent(&rows::agents(&state, &[], &[]), name)?;
    let machine = machine_id(&agent);
    let schedule = api
        .get(
            &Service::Master,
            "/master/maintenance/schedule",
            "the master has no maintenance endpoints (/master/maintenance/schedule)",
        )
        .await?;
    let mut windows: Vec<Value> = Vec::new();
    for window in schedule["windows"].as_array().into_iter().flatten() {
        let mut window = window.clone();
        if let Some(ids) = window["machine_ids"].as_array_mut() {
            ids.retain(|id| id["hostname"] != machine["hostname"]);
            if ids.is_empty() {
                continue;
            }
        }
        windows.push(window);
    }
    let now_ns = std::time::SystemTime::now() // determinism-ok: a maintenance window starts at the operator's now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    windows.push(json!({
        "machine_ids": [machine],
        "unavailability": {
            "start": {"nanoseconds": now_ns},
            "duration": {"nanoseconds": deadline.as_nanos() as u64},
        },
    }));
    api.call(
        &Service::Master,
        Method::POST,
        "/master/maintenance/schedule",
        Some(&json!({"windows": windows})),
        "the master has no maintenance endpoints (/master/maintenance/schedule)",
    )
    .await?;
    let host = agent["hostname"].as_str().unwrap_or(name).to_string();
    if env.global.no_wait {
        if env.format() == Format::Json {
            print_json(&json!({"agent": host, "draining": true, "down": false}));
        } else {
            eprintln!("agent {host} is draining; `plateau agent list` shows it, `plateau agent drain {host}` again waits for it");
        }
        return Ok(());
    }
    let agent_id = agent["id"].clone();
    let tasks_left = async || -> Result<usize> {
        let state = api.master_state().await?;
        Ok(rows::master_tasks(&state, false)
            .iter()
            .filter(|t| t["agent_id"] == agent_id)
            .count())
    };
    let initial = tasks_left().await?;
    let mut progress = Progress::new(&format!("draining {host}"), initial as u64);
    let until = deadline_after(deadline);
    let left = loop {
        let left = tasks_left().await?;
        progress.update(
            initial.saturating_sub(left) as u64,
            initial as u64,
            &format!("{left} tasks left on {host}"),
        );
        if left == 0 || past(until) {
            break left;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    api.call(
        &Service::Master,
        Method::POST,
        "/master/machine/down",
        Some(&json!([machine])),
        "the master has no maintenance endpoints (/master/machine/down)",
    )
    .await?;
    if left == 0 {
        progress.finish(&format!("agent {host} drained: no task left; marked down"));
    } else {
        progress.finish(&format!(
            "agent {host}: the deadline passed with {left} tasks left; marked down (those tasks are killed)"
        ));
    }
    if env.format() == Format::Json {
        print_json(&json!({"agent": host, "tasks_left": left, "down": true}));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Apps and deployments

/// An app id with its leading slash.
fn app_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

fn no_app(id: &str) -> String {
    format!("no app '{id}'; `plateau app list` shows the apps")
}

fn force_query(force: bool) -> &'static str {
    if force {
        "?force=true"
    } else {
        ""
    }
}

/// The deployment id in Marathon's answer to a change.
fn deployment_of(answer: &Value) -> Option<String> {
    answer["deploymentId"]
        .as_str()
        .or_else(|| answer["deployments"][0]["id"].as_str())
        .map(str::to_string)
}

/// What a file holds: its JSON (a systemd unit is not read here yet).
fn read_definition(file: &Path, what: &str) -> Result<Value> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("reading {}: {e}", path.display())))
    };
    let name = || {
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let translation = match file.extension().and_then(|e| e.to_str()) {
        Some("json") | None => {
            let text = read(file)?;
            return serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", file.display())));
        }
        // A systemd service unit (with Fleet's [X-Fleet]) as a Marathon app.
        Some("service") if what == APP => plateau_units::translate_service(
            &name(),
            &read(file)?,
            &plateau_units::ServiceOptions::default(),
        ),
        // A systemd timer, with the service it starts, as a Chronos job.
        Some("timer") if what == JOB => {
            let timer = read(file)?;
            let service_name = plateau_units::UnitFile::parse(&timer)
                .ok()
                .and_then(|unit| unit.last("Timer", "Unit").map(|e| e.value.clone()))
                .unwrap_or_else(|| name().replace(".timer", ".service"));
            let service_path = file.with_file_name(&service_name);
            let service = read(&service_path)?;
            let options = plateau_units::TimerOptions {
                // Timers with a first delay start counting now.
                now: Some(chrono::Utc::now()), // determinism-ok: the operator's CLI, not the cluster
            };
            plateau_units::translate_timer(&name(), &timer, &service, &options)
        }
        Some(unit @ ("service" | "timer")) => {
            return Err(CliError::Usage(format!(
                "{}: a .{unit} unit is not a {what}: give a .service to `app deploy`, a .timer (beside its .service) to `job add`",
                file.display()
            )));
        }
        Some(other) => {
            return Err(CliError::Usage(format!(
                "{}: unknown file type .{other}; give a {what} JSON file (.json) or a systemd unit",
                file.display()
            )))
        }
    };
    let translation =
        translation.map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    for line in &translation.ignored {
        eprintln!("note: not translated: {line}");
    }
    Ok(translation.json)
}

/// What `read_definition` reads for `app deploy` and `job add`.
const APP: &str = "Marathon app";
const JOB: &str = "Chronos job";

async fn app_command(env: &Env, command: AppCommand) -> Result<()> {
    match command {
        AppCommand::List => {
            env.list(rows::APP_COLUMNS, async |api: &Api| {
                let body = api
                    .get(&Service::Marathon, "/v2/apps", "Marathon has no /v2/apps")
                    .await?;
                Ok(rows::apps(&body))
            })
            .await
        }
        AppCommand::Show { id } => {
            let api = env.api()?;
            let id = app_id(&id);
            let body = api
                .get(
                    &Service::Marathon,
                    &format!("/v2/apps{}?embed=app.tasks", encode(&id)),
                    &no_app(&id),
                )
                .await?;
            let app = &body["app"];
            if env.format() == Format::Json {
                print_json(app);
                return Ok(());
            }
            let row = rows::app(app);
            let text = |k: &str| output::cell(&row[k]);
            outln!(
                "{}",
                pairs(&[
                    ("ID", text("id")),
                    ("Command", text("cmd")),
                    ("Instances", text("instances")),
                    ("Running", text("running")),
                    ("Healthy", text("healthy")),
                    ("CPUs", text("cpus")),
                    ("Mem (MB)", text("mem_mb")),
                    ("Version", text("version")),
                    ("Deployments", text("deployments")),
                ])
            );
            let tasks: Vec<Value> = app["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    json!({"id": t["id"], "host": t["host"], "ports": t["ports"],
                           "state": t["state"], "started": t["startedAt"]})
                })
                .collect();
            if !tasks.is_empty() {
                outln!();
                let columns = [
                    output::col("TASK", "id"),
                    output::col("HOST", "host"),
                    output::col("PORTS", "ports"),
                    output::col("STATE", "state"),
                    output::col("STARTED", "started"),
                ];
                outln!("{}", output::table(&columns, &tasks, false));
            }
            Ok(())
        }
        AppCommand::Deploy { file, force } => {
            let api = env.api()?;
            let definition = read_definition(&file, APP)?;
            let Some(id) = definition["id"].as_str().map(app_id) else {
                return Err(CliError::Usage(format!(
                    "{}: field \"id\" is missing (an app id such as \"/hello\")",
                    file.display()
                )));
            };
            let exists = api
                .send(
                    &Service::Marathon,
                    Method::GET,
                    &format!("/v2/apps{}", encode(&id)),
                    None,
                )
                .await?;
            let (method, path) = match exists.status {
                404 => (Method::POST, format!("/v2/apps{}", force_query(force))),
                _ => {
                    check(exists, &format!("GET /v2/apps{id}"), &no_app(&id))?;
                    (
                        Method::PUT,
                        format!("/v2/apps{}{}", encode(&id), force_query(force)),
                    )
                }
            };
            change_app(env, &api, &id, method, &path, Some(&definition), false).await
        }
        AppCommand::Scale {
            id,
            instances,
            force,
        } => {
            let api = env.api()?;
            let id = app_id(&id);
            let path = format!("/v2/apps{}{}", encode(&id), force_query(force));
            // An unknown app must not be created by a PUT: ask first.
            api.get(
                &Service::Marathon,
                &format!("/v2/apps{}", encode(&id)),
                &no_app(&id),
            )
            .await?;
            let body = json!({"instances": instances});
            change_app(env, &api, &id, Method::PUT, &path, Some(&body), false).await
        }
        AppCommand::Restart { id, force } => {
            let api = env.api()?;
            let id = app_id(&id);
            let path = format!("/v2/apps{}/restart{}", encode(&id), force_query(force));
            change_app(env, &api, &id, Method::POST, &path, None, false).await
        }
        AppCommand::Rm { id, force } => {
            let api = env.api()?;
            let id = app_id(&id);
            let path = format!("/v2/apps{}{}", encode(&id), force_query(force));
            change_app(env, &api, &id, Method::DELETE, &path, None, true).await
        }
        AppCommand::Versions { id } => {
            let id = app_id(&id);
            let path = format!("/v2/apps{}/versions", encode(&id));
            env.list(rows::VERSION_COLUMNS, async |api: &Api| {
                let body = api.get(&Service::Marathon, &path, &no_app(&id)).await?;
                Ok(versions(&body)
                    .into_iter()
                    .map(|v| json!({"version": v}))
                    .collect())
            })
            .await
        }
        AppCommand::Rollback { id, to, force } => {
            let api = env.api()?;
            let id = app_id(&id);
            let body = api
                .get(
                    &Service::Marathon,
                    &format!("/v2/apps{}/versions", encode(&id)),
                    &no_app(&id),
                )
                .await?;
            let known = versions(&body);
            let target = match to {
                Some(v) => v,
                None => known.get(1).cloned().ok_or_else(|| {
                    CliError::Usage(format!(
                        "app '{id}' has a single version: nothing to roll back to"
                    ))
                })?,
            };
            let answer = api
                .call(
                    &Service::Marathon,
                    Method::PUT,
                    &format!("/v2/apps{}{}", encode(&id), force_query(force)),
                    Some(&json!({"version": target})),
                    &format!("app '{id}' has no version '{target}'; `plateau app versions {id}` lists them"),
                )
                .await?;
            eprintln!("rolling {id} back to {target}");
            finish_change(env, &api, &id, deployment_of(&answer), false).await
        }
    }
}

/// The versions in a `/versions` answer, newest first.
fn versions(body: &Value) -> Vec<String> {
    let mut all: Vec<String> = body["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    // ISO 8601 timestamps in UTC sort as text.
    all.sort_by(|a, b| b.cmp(a));
    all
}

/// Send a change of app `id` to Marathon (an unknown app is "not found"), then
/// [`finish_change`].
async fn change_app(
    env: &Env,
    api: &Api,
    id: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    removing: bool,
) -> Result<()> {
    let answer = api
        .call(&Service::Marathon, method, path, body, &no_app(id))
        .await?;
    finish_change(env, api, id, deployment_of(&answer), removing).await
}

/// After a change of app `id`: with `--no-wait` say which deployment started; else follow it to
/// its end (`removing`: until the app is gone).
async fn finish_change(
    env: &Env,
    api: &Api,
    id: &str,
    deployment: Option<String>,
    removing: bool,
) -> Result<()> {
    let json_out = env.format() == Format::Json;
    let Some(deployment) = deployment else {
        if json_out {
            print_json(&json!({"app": id, "deployment": null}));
        } else {
            eprintln!("{id}: nothing to deploy");
        }
        return Ok(());
    };
    if env.global.no_wait {
        if json_out {
            print_json(&json!({"app": id, "deployment": deployment}));
        } else {
            eprintln!("{id}: deployment {deployment} started; `plateau deployment watch {deployment}` follows it");
        }
        return Ok(());
    }
    let final_row = wait_deployment(api, id, &deployment, env.global.timeout, removing).await?;
    if json_out {
        print_json(&json!({"app": id, "deployment": deployment, "done": true, "state": final_row}));
    }
    Ok(())
}

/// "3/5 healthy" (apps with health checks) or "3/5 running".
fn count_message(row: &Value) -> (u64, u64, String) {
    let instances = row["instances"].as_u64().unwrap_or(0);
    let (n, what) = if row["health_checks"].as_u64().unwrap_or(0) > 0 {
        (row["healthy"].as_u64().unwrap_or(0), "healthy")
    } else {
        (row["running"].as_u64().unwrap_or(0), "running")
    };
    (n, instances, format!("{n}/{instances} {what}"))
}

/// Follow deployment `deployment` of app `id` until Marathon no longer lists it (and, when
/// `removing`, the app is gone), showing the count of running (healthy) instances.
async fn wait_deployment(
    api: &Api,
    id: &str,
    deployment: &str,
    timeout: Duration,
    removing: bool,
) -> Result<Value> {
    let until = deadline_after(timeout);
    let title = if removing {
        format!("removing {id}")
    } else {
        format!("deploying {id}")
    };
    let mut progress = Progress::new(&title, 1);
    let app_path = format!("/v2/apps{}", encode(id));
    let mut last = Value::Null;
    loop {
        let listed = api
            .get(
                &Service::Marathon,
                "/v2/deployments",
                "Marathon has no /v2/deployments",
            )
            .await?;
        let running = listed
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["id"] == deployment));
        let app = api
            .send(&Service::Marathon, Method::GET, &app_path, None)
            .await?;
        let gone = app.status == 404;
        if app.status == 200 {
            last = rows::app(&app.body["app"]);
            let (n, total, message) = count_message(&last);
            progress.update(n, total, &message);
        } else if gone {
            progress.update(1, 1, "app removed");
        }
        if !running && (!removing || gone) {
            break;
        }
        if past(until) {
            let (_, _, message) = count_message(&last);
            progress.finish(&format!("{id}: deployment {deployment} still running"));
            return Err(CliError::Cluster(format!(
                "deployment {deployment} of {id} did not finish within {}s ({message}); `plateau deployment list` shows it, `plateau deployment cancel {deployment}` stops it",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    if removing {
        progress.finish(&format!("removed {id}"));
    } else {
        let (_, _, message) = count_message(&last);
        progress.finish(&format!("deployed {id}: {message}"));
    }
    Ok(last)
}

async fn deployment_command(env: &Env, command: DeploymentCommand) -> Result<()> {
    match command {
        DeploymentCommand::List => {
            env.list(rows::DEPLOYMENT_COLUMNS, async |api: &Api| {
                let body = api
                    .get(
                        &Service::Marathon,
                        "/v2/deployments",
                        "Marathon has no /v2/deployments",
                    )
                    .await?;
                Ok(rows::deployments(&body))
            })
            .await
        }
        DeploymentCommand::Watch { id } => {
            let api = env.api()?;
            let until = deadline_after(env.global.timeout);
            let mut progress: Option<Progress> = None;
            loop {
                let body = api
                    .get(
                        &Service::Marathon,
                        "/v2/deployments",
                        "Marathon has no /v2/deployments",
                    )
                    .await?;
                let found = rows::deployments(&body).into_iter().find(|d| d["id"] == id);
                let Some(row) = found else {
                    return match progress {
                        None => Err(CliError::NotFound(format!(
                            "no deployment '{id}' in progress; `plateau deployment list` shows them"
                        ))),
                        Some(p) => {
                            p.finish(&format!("deployment {id} finished"));
                            Ok(())
                        }
                    };
                };
                let total = row["total_steps"].as_u64().unwrap_or(1);
                let step = row["current_step"].as_u64().unwrap_or(0);
                let message = format!("step {step}/{total}: {}", output::cell(&row["actions"]));
                progress
                    .get_or_insert_with(|| Progress::new(&format!("deployment {id}"), total))
                    .update(step, total, &message);
                if past(until) {
                    return Err(CliError::Cluster(format!(
                        "deployment {id} still running after {}s ({message})",
                        env.global.timeout.as_secs()
                    )));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        DeploymentCommand::Cancel { id, force } => {
            let api = env.api()?;
            let answer = api
                .call(
                    &Service::Marathon,
                    Method::DELETE,
                    &format!("/v2/deployments/{}{}", encode(&id), force_query(force)),
                    None,
                    &format!(
                        "no deployment '{id}' in progress; `plateau deployment list` shows them"
                    ),
                )
                .await?;
            if env.format() == Format::Json {
                print_json(
                    &json!({"deployment": id, "canceled": true, "rollback": deployment_of(&answer)}),
                );
            } else {
                match deployment_of(&answer) {
                    Some(rollback) => eprintln!(
                        "deployment {id} canceled; rollback deployment {rollback} started"
                    ),
                    None => eprintln!("deployment {id} stopped"),
                }
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

fn no_task(id: &str) -> CliError {
    CliError::NotFound(format!(
        "no task '{id}'; `plateau task list --all` shows the tasks"
    ))
}

async fn find_task(api: &Api, id: &str) -> Result<Value> {
    let state = api.master_state().await?;
    rows::master_tasks(&state, true)
        .into_iter()
        .rev()
        .find(|t| t["id"] == id)
        .ok_or_else(|| no_task(id))
}

async fn task_command(env: &Env, command: TaskCommand) -> Result<()> {
    match command {
        TaskCommand::List { all, app } => {
            env.list(rows::TASK_COLUMNS, async |api: &Api| {
                let state = api.master_state().await?;
                Ok(rows::master_tasks(&state, all)
                    .into_iter()
                    .filter(|t| app.as_deref().is_none_or(|a| rows::task_of(t, a)))
                    .collect())
            })
            .await
        }
        TaskCommand::Show { id } => {
            let api = env.api()?;
            let task = find_task(&api, &id).await?;
            if env.format() == Format::Json {
                print_json(&task);
                return Ok(());
            }
            let text = |k: &str| output::cell(&task[k]);
            outln!(
                "{}",
                pairs(&[
                    ("ID", text("id")),
                    ("Name", text("name")),
                    ("Framework", text("framework")),
                    ("State", text("state")),
                    ("Healthy", text("healthy")),
                    ("Host", text("host")),
                    ("Agent", text("agent")),
                    ("Agent ID", text("agent_id")),
                    ("CPUs", text("cpus")),
                    ("Mem (MB)", text("mem_mb")),
                    ("Started", text("started")),
                ])
            );
            Ok(())
        }
        TaskCommand::Kill { id, scale } => {
            let api = env.api()?;
            let task = find_task(&api, &id).await?;
            match task["framework"].as_str().unwrap_or("") {
                "marathon" => {
                    let path = if scale {
                        "/v2/tasks/delete?scale=true"
                    } else {
                        "/v2/tasks/delete"
                    };
                    api.call(
                        &Service::Marathon,
                        Method::POST,
                        path,
                        Some(&json!({"ids": [id]})),
                        &format!("Marathon does not know task '{id}'"),
                    )
                    .await?;
                }
                "chronos" => {
                    let job = id.split(':').nth(3).unwrap_or("").to_string();
                    if job.is_empty() {
                        return Err(CliError::Usage(format!(
                            "task '{id}' does not name its Chronos job"
                        )));
                    }
                    api.call(
                        &Service::Chronos,
                        Method::DELETE,
                        &format!("/scheduler/task/kill/{}", encode(&job)),
                        None,
                        &format!("no job '{job}'"),
                    )
                    .await?;
                    eprintln!("Chronos kills every running task of job '{job}'");
                }
                other => {
                    return Err(CliError::Usage(format!(
                        "task '{id}' belongs to framework '{other}': kill it through that framework"
                    )))
                }
            }
            if env.format() == Format::Json {
                print_json(&json!({"task": id, "killed": true}));
            } else {
                eprintln!("task {id}: kill sent");
            }
            Ok(())
        }
        TaskCommand::Logs {
            id,
            follow,
            stderr,
            tail_bytes,
        } => logs(env, &id, follow, stderr, tail_bytes).await,
    }
}

/// The sandbox directory and state of task `id` in an agent's `/state`.
fn sandbox_of(state: &Value, id: &str) -> Option<(String, String)> {
    state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| {
            f["executors"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(f["completed_executors"].as_array().into_iter().flatten())
        })
        .find(|e| {
            e["id"] == id
                || e["tasks"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["id"] == id))
        })
        .and_then(|e| {
            let directory = e["directory"].as_str()?.to_string();
            let state = e["tasks"][0]["state"].as_str().unwrap_or("").to_string();
            Some((directory, state))
        })
}

/// `task logs`: the task's stdout (stderr) through its agent's `/files/read`, from the start
/// (or the last `tail_bytes`); with `follow`, read on every 200 ms until the task ended and
/// everything was printed.
async fn logs(
    env: &Env,
    id: &str,
    follow: bool,
    stderr: bool,
    tail_bytes: Option<u64>,
) -> Result<()> {
    let api = env.api()?;
    let task = find_task(&api, id).await?;
    let Some(address) = task["agent"].as_str() else {
        return Err(CliError::Cluster(format!(
            "the master knows no agent for task '{id}' (its agent may be unreachable)"
        )));
    };
    let agent = Service::Agent(api.agent_url(address));
    let state = api.get(&agent, "/state", "the agent has no /state").await?;
    let Some((directory, _)) = sandbox_of(&state, id) else {
        return Err(CliError::NotFound(format!(
            "agent {address} keeps no sandbox for task '{id}' (it was removed)"
        )));
    };
    let file = if stderr { "stderr" } else { "stdout" };
    let path = format!("{}/{file}", directory.trim_end_matches('/'));
    let read = |offset: i64, length: usize| {
        let query = format!(
            "/files/read?path={}&offset={offset}&length={length}",
            encode(&path)
        );
        let agent = agent.clone();
        let api = &api;
        async move {
            api.get(&agent, &query, &format!("no {file} for task '{id}' yet"))
                .await
        }
    };
    let mut offset: u64 = match tail_bytes {
        Some(tail) => {
            let size = read(-1, 0).await?["offset"].as_u64().unwrap_or(0);
            size.saturating_sub(tail)
        }
        None => 0,
    };
    let mut out = std::io::stdout().lock();
    let mut polls: u64 = 0;
    let mut ended = false;
    loop {
        let chunk = match read(offset as i64, LOG_CHUNK_BYTES).await {
            Ok(chunk) => chunk,
            // The sandbox went with the task while following: what was there is printed.
            Err(CliError::NotFound(_)) if follow && offset > 0 => break,
            Err(e) => return Err(e),
        };
        let data = chunk["data"].as_str().unwrap_or("");
        if !data.is_empty() {
            if out
                .write_all(data.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                // Whoever read our output went away (`| head`): done.
                return Ok(());
            }
            offset += data.len() as u64;
            if data.len() >= LOG_CHUNK_BYTES {
                continue;
            }
        }
        if !follow || ended {
            break;
        }
        polls += 1;
        // Every 2 s: has the task ended? Then one last read, and done.
        if polls >= 10 {
            polls = 0;
            let state = api.get(&agent, "/state", "the agent has no /state").await?;
            ended = match sandbox_of(&state, id) {
                Some((_, task_state)) => rows::is_terminal(&task_state),
                None => true,
            };
            if ended {
                continue;
            }
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Jobs

fn no_job(name: &str) -> String {
    format!("no job '{name}'; `plateau job list` shows the jobs")
}

/// Job `name` as `/scheduler/jobs` lists it. Chronos answers 400, not 404, for an unknown
/// job name (as the original does): the listing tells the two apart.
async fn existing_job(api: &Api, name: &str) -> Result<Value> {
    let jobs = api
        .get(
            &Service::Chronos,
            "/scheduler/jobs",
            "Chronos has no /scheduler/jobs",
        )
        .await?;
    jobs.as_array()
        .into_iter()
        .flatten()
        .find(|j| j["name"] == name)
        .cloned()
        .ok_or_else(|| CliError::NotFound(no_job(name)))
}

async fn job_command(env: &Env, command: JobCommand) -> Result<()> {
    match command {
        JobCommand::List => {
            env.list(rows::JOB_COLUMNS, async |api: &Api| {
                let body = api
                    .get(
                        &Service::Chronos,
                        "/scheduler/jobs",
                        "Chronos has no /scheduler/jobs",
                    )
                    .await?;
                Ok(rows::jobs(&body))
            })
            .await
        }
        JobCommand::Show { name } => {
            let api = env.api()?;
            let job = existing_job(&api, &name).await?;
            if env.format() == Format::Json {
                print_json(&job);
                return Ok(());
            }
            let row = rows::job(&job);
            let text = |k: &str| output::cell(&row[k]);
            outln!(
                "{}",
                pairs(&[
                    ("Name", text("name")),
                    ("Command", text("command")),
                    ("Schedule", text("schedule")),
                    ("Parents", text("parents")),
                    ("Status", text("status")),
                    ("Successes", text("success_count")),
                    ("Errors", text("error_count")),
                    ("Last success", text("last_success")),
                    ("Last error", text("last_error")),
                    ("Owner", text("owner")),
                ])
            );
            Ok(())
        }
        JobCommand::Add { file } => {
            let api = env.api()?;
            let job = read_definition(&file, JOB)?;
            let Some(name) = job["name"].as_str().map(str::to_string) else {
                return Err(CliError::Usage(format!(
                    "{}: field \"name\" is missing",
                    file.display()
                )));
            };
            let dependent = job["parents"].as_array().is_some_and(|p| !p.is_empty());
            let path = if dependent {
                "/scheduler/dependency"
            } else {
                "/scheduler/iso8601"
            };
            api.call(
                &Service::Chronos,
                Method::POST,
                path,
                Some(&job),
                "Chronos has no such endpoint",
            )
            .await?;
            if env.format() == Format::Json {
                print_json(&json!({"job": name, "added": true}));
            } else {
                eprintln!("job '{name}' added");
            }
            Ok(())
        }
        JobCommand::Run { name } => {
            let api = env.api()?;
            let path = format!("/scheduler/job/{}", encode(&name));
            let before = existing_job(&api, &name).await?;
            let runs = |job: &Value| {
                job["successCount"].as_u64().unwrap_or(0) + job["errorCount"].as_u64().unwrap_or(0)
            };
            api.call(&Service::Chronos, Method::PUT, &path, None, &no_job(&name))
                .await?;
            if env.global.no_wait {
                if env.format() == Format::Json {
                    print_json(&json!({"job": name, "started": true}));
                } else {
                    eprintln!("job '{name}' started; `plateau job history {name}` shows its runs");
                }
                return Ok(());
            }
            let until = deadline_after(env.global.timeout);
            let mut progress = Progress::new(&format!("running {name}"), 1);
            let after = loop {
                let job = existing_job(&api, &name).await?;
                if runs(&job) > runs(&before) {
                    break job;
                }
                progress.update(0, 1, &format!("job '{name}' running"));
                if past(until) {
                    return Err(CliError::Cluster(format!(
                        "job '{name}' did not finish within {}s; `plateau job history {name}` shows its runs",
                        env.global.timeout.as_secs()
                    )));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            };
            let row = rows::job(&after);
            let succeeded = after["successCount"].as_u64() > before["successCount"].as_u64();
            if succeeded {
                progress.finish(&format!("job '{name}' ran: success"));
            } else {
                progress.finish(&format!("job '{name}' ran: failure"));
            }
            if env.format() == Format::Json {
                print_json(&json!({"job": name, "success": succeeded, "state": row}));
            }
            if succeeded {
                Ok(())
            } else {
                Err(CliError::Cluster(format!(
                    "job '{name}' failed; `plateau job history {name}` shows its runs"
                )))
            }
        }
        JobCommand::Rm { name } => {
            let api = env.api()?;
            existing_job(&api, &name).await?;
            api.call(
                &Service::Chronos,
                Method::DELETE,
                &format!("/scheduler/job/{}", encode(&name)),
                None,
                &no_job(&name),
            )
            .await?;
            if env.format() == Format::Json {
                print_json(&json!({"job": name, "deleted": true}));
            } else {
                eprintln!("job '{name}' deleted");
            }
            Ok(())
        }
        JobCommand::History { name } => {
            let path = format!("/scheduler/job/stat/{}", encode(&name));
            env.list(rows::HISTORY_COLUMNS, async |api: &Api| {
                existing_job(api, &name).await?;
                let body = api.get(&Service::Chronos, &path, &no_job(&name)).await?;
                Ok(rows::history(&body))
            })
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Top

/// One sample of a cluster: agent rows and task rows.
async fn sample(api: &Api, interval: Duration) -> Result<(Vec<Value>, Vec<Value>)> {
    let state = api.master_state().await?;
    let agents: Vec<Value> = rows::agents(&state, &[], &[])
        .into_iter()
        .filter(|a| a["state"] != "unreachable")
        .collect();
    let statistics = async |agent: &Value| -> Value {
        let url = api.agent_url(agent["address"].as_str().unwrap_or(""));
        api.get(&Service::Agent(url), "/monitor/statistics", "")
            .await
            .unwrap_or(Value::Array(Vec::new()))
    };
    let mut before = Vec::new();
    for agent in &agents {
        before.push(statistics(agent).await);
    }
    tokio::time::sleep(interval).await;
    let mut agent_rows = Vec::new();
    let mut task_rows = Vec::new();
    for (agent, before) in agents.iter().zip(before) {
        let after = statistics(agent).await;
        let usage = rows::usage(&before, &after, interval.as_secs_f64());
        let cpus: f64 = usage.values().filter_map(|u| u["cpus_used"].as_f64()).sum();
        let mem: f64 = usage
            .values()
            .filter_map(|u| u["mem_rss_mb"].as_f64())
            .sum();
        agent_rows.push(json!({
            "hostname": agent["hostname"],
            "tasks": usage.len(),
            "cpus_used": (cpus * 1000.0).round() / 1000.0,
            "cpus_total": agent["cpus_total"],
            "mem_used_mb": (mem * 10.0).round() / 10.0,
            "mem_total_mb": agent["mem_total_mb"],
        }));
        for (_, mut row) in usage {
            if let Some(o) = row.as_object_mut() {
                o.insert("hostname".into(), agent["hostname"].clone());
            }
            task_rows.push(row);
        }
    }
    Ok((agent_rows, task_rows))
}

async fn top(env: &Env, once: bool, interval: f64) -> Result<()> {
    if !(0.1..=3600.0).contains(&interval) {
        return Err(CliError::Usage(
            "--interval: between 0.1 and 3600 seconds".into(),
        ));
    }
    let interval = Duration::from_secs_f64(interval);
    let apis = env.apis()?;
    let many = env.global.all_contexts;
    let live = !once && env.format() != Format::Json && std::io::stdout().is_terminal();
    loop {
        let mut agents = Vec::new();
        let mut tasks = Vec::new();
        for api in &apis {
            let (a, t) = sample(api, interval).await?;
            let tag = |mut rows: Vec<Value>| -> Vec<Value> {
                if many {
                    for row in &mut rows {
                        if let Some(o) = row.as_object_mut() {
                            o.insert("cluster".into(), Value::from(api.name.clone()));
                        }
                    }
                }
                rows
            };
            agents.extend(tag(a));
            tasks.extend(tag(t));
        }
        if env.format() == Format::Json {
            print_json(&json!({"agents": agents, "tasks": tasks}));
            return Ok(());
        }
        let with_cluster = |columns: &[Column]| -> Vec<Column> {
            if many {
                std::iter::once(CLUSTER)
                    .chain(columns.iter().copied())
                    .collect()
            } else {
                columns.to_vec()
            }
        };
        let wide = env.format() == Format::Wide;
        let text = format!(
            "{}\n\n{}",
            output::table(&with_cluster(rows::TOP_AGENT_COLUMNS), &agents, wide),
            output::table(&with_cluster(rows::TOP_TASK_COLUMNS), &tasks, wide)
        );
        if live {
            // Clear the screen and go home (ANSI), then the new sample.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "\x1b[2J\x1b[H{text}");
            let _ = out.flush();
        } else {
            outln!("{text}");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("/w/a b/stdout"), "/w/a%20b/stdout");
        assert_eq!(encode("x&y=z"), "x%26y%3Dz");
    }

    #[test]
    fn the_sandbox_of_a_task_comes_from_the_agent_state() {
        let state = json!({"frameworks": [{"executors": [
            {"id": "t1", "directory": "/w/t1", "tasks": [{"id": "t1", "state": "TASK_RUNNING"}]}
        ]}]});
        assert_eq!(
            sandbox_of(&state, "t1"),
            Some(("/w/t1".into(), "TASK_RUNNING".into()))
        );
        assert_eq!(sandbox_of(&state, "t2"), None);
    }

    #[test]
    fn systemd_units_become_apps_and_jobs_and_what_cannot_be_translated_is_a_usage_error() {
        let dir = std::env::temp_dir().join(format!("plateau-cli-units-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let web = write(
            "web.service",
            "[Unit]\nDescription=Web\n[Service]\nExecStart=/usr/bin/web --port 80\nMemoryMax=128M\n",
        );
        let app = read_definition(&web, APP).unwrap();
        assert_eq!(app["id"], "/web");
        assert_eq!(app["mem"], 128.0);
        write(
            "backup.service",
            "[Service]\nType=oneshot\nExecStart=/usr/bin/backup\n",
        );
        let timer = write("backup.timer", "[Timer]\nOnCalendar=daily\n");
        let job = read_definition(&timer, JOB).unwrap();
        assert_eq!(job["calendar"], "daily");
        assert_eq!(job["name"], "backup");
        let no = write("no.service", "[Service]\nExecStart=/a\nRestart=no\n");
        let e = read_definition(&no, APP).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::USAGE);
        assert!(e.to_string().contains("Restart"), "{e}");
        let e = read_definition(&web, JOB).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::USAGE);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn versions_are_newest_first() {
        let body = json!({"versions": ["2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"]});
        assert_eq!(versions(&body)[0], "2026-02-01T00:00:00.000Z");
    }
}
