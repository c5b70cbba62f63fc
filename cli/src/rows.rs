//! Rows and columns of every listing, built from the cluster's own JSON (Mesos' `/master/state`,
//! Marathon's `/v2/apps`, Chronos' `/scheduler/jobs`...). Pure: no I/O, so each shape is
//! unit-tested on fixed JSON. The keys of a row are what `--json` prints: they are stable.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::output::{col, shown, wide, Column};

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `used/total`, numbers rounded to two decimals.
pub fn used_of(used: f64, total: f64) -> String {
    let round = |x: f64| {
        let text = format!("{x:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    format!("{}/{}", round(used), round(total))
}

/// The `ip:port` of a `name@ip:port` pid.
pub fn address_of_pid(pid: &str) -> Option<&str> {
    pid.split_once('@').map(|(_, a)| a)
}

/// Whether a Mesos task state is final.
pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_LOST"
            | "TASK_ERROR"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// Every task in a `/master/state` (`all`: finished ones too), with its framework's name.
pub fn master_tasks(state: &Value, all: bool) -> Vec<Value> {
    let hosts: BTreeMap<&str, &Value> = agents_in(state)
        .into_iter()
        .filter_map(|a| Some((a["id"].as_str()?, a)))
        .collect();
    let mut rows = Vec::new();
    let mut push = |task: &Value, framework: &str| {
        let state_name = str_of(&task["state"]);
        if !all && is_terminal(state_name) {
            return;
        }
        let agent = hosts.get(str_of(&task["slave_id"]));
        let started = task["statuses"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .find(|s| s["state"] == "TASK_RUNNING")
                    .or_else(|| s.first())
            })
            .map(|s| s["timestamp"].clone())
            .unwrap_or(Value::Null);
        rows.push(json!({
            "id": task["id"],
            "name": task["name"],
            "framework": framework,
            "framework_id": task["framework_id"],
            "agent_id": task["slave_id"],
            "host": agent.map(|a| a["hostname"].clone()).unwrap_or(Value::Null),
            "agent": agent
                .and_then(|a| address_of_pid(str_of(&a["pid"])))
                .map(Value::from)
                .unwrap_or(Value::Null),
            "state": task["state"],
            "healthy": task.get("healthy").cloned().unwrap_or(Value::Null),
            "cpus": task["resources"]["cpus"],
            "mem_mb": task["resources"]["mem"],
            "started": started,
        }));
    };
    for framework in state["frameworks"].as_array().into_iter().flatten() {
        let name = str_of(&framework["name"]);
        for key in ["tasks", "unreachable_tasks", "completed_tasks"] {
            if key == "completed_tasks" && !all {
                continue;
            }
            for task in framework[key].as_array().into_iter().flatten() {
                push(task, name);
            }
        }
    }
    for task in state["orphan_tasks"].as_array().into_iter().flatten() {
        push(task, "");
    }
    rows
}

/// The columns of `task list`.
pub const TASK_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("FRAMEWORK", "framework"),
    col("HOST", "host"),
    col("STATE", "state"),
    col("HEALTHY", "healthy"),
    wide("NAME", "name"),
    wide("AGENT", "agent"),
    wide("CPUS", "cpus"),
    wide("MEM", "mem_mb"),
];

/// Whether task row `task` belongs to Marathon app `app` (`/a/b` → ids `a_b.<uuid>`) or to
/// Chronos job `app` (ids `ct:<ms>:<attempt>:<job>:...`).
pub fn task_of(task: &Value, app: &str) -> bool {
    let id = str_of(&task["id"]);
    let prefix = format!("{}.", app.trim_start_matches('/').replace('/', "_"));
    id.starts_with(&prefix) || id.contains(&format!(":{app}:"))
}

/// Every agent of a `/master/state` (active, inactive, unreachable).
fn agents_in(state: &Value) -> Vec<&Value> {
    let mut agents: Vec<&Value> = state["slaves"].as_array().into_iter().flatten().collect();
    agents.extend(
        state["unreachable_slave_infos"]
            .as_array()
            .into_iter()
            .flatten(),
    );
    agents
}

/// The agents of a `/master/state`; `draining` and `down` are host names from the
/// maintenance status.
pub fn agents(state: &Value, draining: &[String], down: &[String]) -> Vec<Value> {
    let tasks = master_tasks(state, false);
    let mut rows = Vec::new();
    for (agent, reachable) in state["slaves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| (a, true))
        .chain(
            state["unreachable_slave_infos"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a, false)),
        )
    {
        let id = str_of(&agent["id"]);
        let host = str_of(&agent["hostname"]);
        let status = if down.iter().any(|d| d == host) {
            "down"
        } else if draining.iter().any(|d| d == host) {
            "draining"
        } else if !reachable {
            "unreachable"
        } else if agent["active"] == true {
            "active"
        } else {
            "inactive"
        };
        let total = &agent["resources"];
        let used = &agent["used_resources"];
        rows.push(json!({
            "id": id,
            "hostname": host,
            "address": address_of_pid(str_of(&agent["pid"]))
                .map(str::to_string)
                .unwrap_or_else(|| format!("{host}:{}", agent["port"])),
            "state": status,
            "cpus_used": f64_of(&used["cpus"]),
            "cpus_total": f64_of(&total["cpus"]),
            "mem_used_mb": f64_of(&used["mem"]),
            "mem_total_mb": f64_of(&total["mem"]),
            "disk_used_mb": f64_of(&used["disk"]),
            "disk_total_mb": f64_of(&total["disk"]),
            "tasks": tasks.iter().filter(|t| t["agent_id"] == id).count(),
            "attributes": agent["attributes"],
        }));
    }
    rows
}

fn cpus_cell(row: &Value) -> String {
    used_of(f64_of(&row["cpus_used"]), f64_of(&row["cpus_total"]))
}

fn mem_cell(row: &Value) -> String {
    used_of(f64_of(&row["mem_used_mb"]), f64_of(&row["mem_total_mb"]))
}

fn disk_cell(row: &Value) -> String {
    used_of(f64_of(&row["disk_used_mb"]), f64_of(&row["disk_total_mb"]))
}

/// The columns of `agent list`.
pub const AGENT_COLUMNS: &[Column] = &[
    col("HOSTNAME", "hostname"),
    col("STATE", "state"),
    col("TASKS", "tasks"),
    shown("CPUS", "cpus_used", cpus_cell),
    shown("MEM (MB)", "mem_used_mb", mem_cell),
    shown("DISK (MB)", "disk_used_mb", disk_cell).wide(),
    wide("ADDRESS", "address"),
    wide("ID", "id"),
    wide("ATTRIBUTES", "attributes"),
];

/// The one row of `cluster status`.
pub fn cluster(state: &Value, draining: &[String], down: &[String]) -> Value {
    let agents = agents(state, draining, down);
    let count = |s: &str| agents.iter().filter(|a| a["state"] == s).count();
    let sum = |key: &str| agents.iter().map(|a| f64_of(&a[key])).sum::<f64>();
    let frameworks: Vec<Value> = state["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["name"].clone())
        .collect();
    let leader = state["leader_info"]["hostname"]
        .as_str()
        .map(|h| format!("{h}:{}", state["leader_info"]["port"]))
        .or_else(|| {
            state["leader"]
                .as_str()
                .and_then(address_of_pid)
                .map(str::to_string)
        });
    json!({
        "leader": leader,
        "version": state["version"],
        "agents_active": count("active"),
        "agents_inactive": count("inactive"),
        "agents_unreachable": count("unreachable"),
        "agents_draining": count("draining"),
        "agents_down": count("down"),
        "cpus_used": sum("cpus_used"),
        "cpus_total": sum("cpus_total"),
        "mem_used_mb": sum("mem_used_mb"),
        "mem_total_mb": sum("mem_total_mb"),
        "disk_used_mb": sum("disk_used_mb"),
        "disk_total_mb": sum("disk_total_mb"),
        "tasks": master_tasks(state, false).len(),
        "frameworks": frameworks,
    })
}

/// The columns of `cluster status`.
pub const CLUSTER_COLUMNS: &[Column] = &[
    col("LEADER", "leader"),
    col("AGENTS", "agents_active"),
    col("UNREACHABLE", "agents_unreachable"),
    col("DRAINING", "agents_draining"),
    shown("CPUS", "cpus_used", cpus_cell),
    shown("MEM (MB)", "mem_used_mb", mem_cell),
    shown("DISK (MB)", "disk_used_mb", disk_cell).wide(),
    col("TASKS", "tasks"),
    col("FRAMEWORKS", "frameworks"),
    wide("DOWN", "agents_down"),
    wide("VERSION", "version"),
];

/// The rows of Marathon's `/v2/apps`.
pub fn apps(body: &Value) -> Vec<Value> {
    body["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(app)
        .collect()
}

/// One app's row.
pub fn app(app: &Value) -> Value {
    json!({
        "id": app["id"],
        "instances": app["instances"],
        "running": app["tasksRunning"].as_u64().unwrap_or(0),
        "staged": app["tasksStaged"].as_u64().unwrap_or(0),
        "healthy": app["tasksHealthy"].as_u64().unwrap_or(0),
        "unhealthy": app["tasksUnhealthy"].as_u64().unwrap_or(0),
        "health_checks": app["healthChecks"].as_array().map_or(0, Vec::len),
        "cpus": app["cpus"],
        "mem_mb": app["mem"],
        "deployments": app["deployments"]
            .as_array()
            .map(|d| d.iter().map(|d| d["id"].clone()).collect::<Vec<_>>())
            .unwrap_or_default(),
        "cmd": app["cmd"],
        "version": app["version"],
    })
}

fn running_cell(row: &Value) -> String {
    format!("{}/{}", row["running"], row["instances"])
}

fn healthy_cell(row: &Value) -> String {
    if row["health_checks"] == 0 {
        "-".into()
    } else {
        format!("{}/{}", row["healthy"], row["instances"])
    }
}

fn deploying_cell(row: &Value) -> String {
    match row["deployments"].as_array() {
        Some(d) if !d.is_empty() => "yes".into(),
        _ => "-".into(),
    }
}

/// The columns of `app list`.
pub const APP_COLUMNS: &[Column] = &[
    col("ID", "id"),
    shown("RUNNING", "running", running_cell),
    shown("HEALTHY", "healthy", healthy_cell),
    col("CPUS", "cpus"),
    col("MEM", "mem_mb"),
    shown("DEPLOYING", "deployments", deploying_cell),
    wide("CMD", "cmd"),
    wide("VERSION", "version"),
];

/// The rows of Marathon's `/v2/deployments`.
pub fn deployments(body: &Value) -> Vec<Value> {
    body.as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let actions: Vec<String> = d["currentActions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| format!("{} {}", str_of(&a["action"]), str_of(&a["app"])))
                .collect();
            json!({
                "id": d["id"],
                "apps": d["affectedApps"],
                "current_step": d["currentStep"],
                "total_steps": d["totalSteps"],
                "actions": actions,
                "version": d["version"],
            })
        })
        .collect()
}

fn step_cell(row: &Value) -> String {
    format!("{}/{}", row["current_step"], row["total_steps"])
}

/// The columns of `deployment list`.
pub const DEPLOYMENT_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("APPS", "apps"),
    shown("STEP", "current_step", step_cell),
    col("ACTIONS", "actions"),
    wide("VERSION", "version"),
];

/// The rows of Chronos' `/scheduler/jobs`.
pub fn jobs(body: &Value) -> Vec<Value> {
    body.as_array().into_iter().flatten().map(job).collect()
}

/// One job's row.
pub fn job(job: &Value) -> Value {
    let last_success = str_of(&job["lastSuccess"]);
    let last_error = str_of(&job["lastError"]);
    // ISO 8601 timestamps in UTC compare as text.
    let status = if job["disabled"] == true {
        "disabled"
    } else if last_success.is_empty() && last_error.is_empty() {
        "fresh"
    } else if last_success >= last_error {
        "success"
    } else {
        "failure"
    };
    json!({
        "name": job["name"],
        "schedule": job["schedule"],
        "parents": job["parents"].as_array().cloned().unwrap_or_default(),
        "status": status,
        "disabled": job["disabled"] == true,
        "success_count": job["successCount"].as_u64().unwrap_or(0),
        "error_count": job["errorCount"].as_u64().unwrap_or(0),
        "last_success": job["lastSuccess"],
        "last_error": job["lastError"],
        "command": job["command"],
        "owner": job["owner"],
    })
}

fn schedule_cell(row: &Value) -> String {
    match row["parents"].as_array() {
        Some(p) if !p.is_empty() => {
            let names: Vec<&str> = p.iter().map(str_of).collect();
            format!("after {}", names.join(","))
        }
        _ => crate::output::cell(&row["schedule"]),
    }
}

/// The columns of `job list`.
pub const JOB_COLUMNS: &[Column] = &[
    col("NAME", "name"),
    shown("SCHEDULE", "schedule", schedule_cell),
    col("STATUS", "status"),
    col("SUCCESSES", "success_count"),
    col("ERRORS", "error_count"),
    wide("LAST SUCCESS", "last_success"),
    wide("LAST ERROR", "last_error"),
    wide("COMMAND", "command"),
];

/// The rows of Chronos' `/scheduler/job/stat/{name}`, newest first.
pub fn history(body: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = body["taskStatHistory"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            json!({
                "task_id": t["taskId"],
                "status": t["status"],
                "start": t["startTime"],
                "end": t["endTime"],
                "duration": t["duration"],
                "agent_id": t["slaveId"],
            })
        })
        .collect();
    rows.reverse();
    rows
}

/// The columns of `job history`.
pub const HISTORY_COLUMNS: &[Column] = &[
    col("TASK", "task_id"),
    col("STATUS", "status"),
    col("START", "start"),
    col("END", "end"),
    col("DURATION", "duration"),
    wide("AGENT", "agent_id"),
];

/// The columns of `app versions`.
pub const VERSION_COLUMNS: &[Column] = &[col("VERSION", "version")];

fn current_cell(row: &Value) -> String {
    str_of(&row["current"]).to_string()
}

/// The columns of `context list`.
pub const CONTEXT_COLUMNS: &[Column] = &[
    shown("CURRENT", "current", current_cell),
    col("NAME", "name"),
    col("MASTERS", "masters"),
    col("MARATHON", "marathon"),
    col("CHRONOS", "chronos"),
    col("PRINCIPAL", "principal"),
    wide("CA", "ca"),
];

/// One task's usage between two `/monitor/statistics` samples `seconds` apart.
pub fn usage(before: &Value, after: &Value, seconds: f64) -> BTreeMap<String, Value> {
    let cpu_time = |s: &Value| {
        f64_of(&s["statistics"]["cpus_user_time_secs"])
            + f64_of(&s["statistics"]["cpus_system_time_secs"])
    };
    let earlier: BTreeMap<&str, &Value> = before
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["executor_id"].as_str()?, e)))
        .collect();
    after
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let id = e["executor_id"].as_str()?;
            let cpus = match earlier.get(id) {
                Some(b) if seconds > 0.0 => ((cpu_time(e) - cpu_time(b)) / seconds).max(0.0),
                _ => 0.0,
            };
            let stats = &e["statistics"];
            Some((
                id.to_string(),
                json!({
                    "task": id,
                    "cpus_used": (cpus * 1000.0).round() / 1000.0,
                    "cpus_limit": stats["cpus_limit"],
                    "mem_rss_mb": (f64_of(&stats["mem_rss_bytes"]) / 1_048_576.0 * 10.0).round() / 10.0,
                    "mem_limit_mb": (f64_of(&stats["mem_limit_bytes"]) / 1_048_576.0).round(),
                    "processes": stats["processes"],
                }),
            ))
        })
        .collect()
}

/// The columns of `top`'s agent table.
pub const TOP_AGENT_COLUMNS: &[Column] = &[
    col("AGENT", "hostname"),
    col("TASKS", "tasks"),
    shown("CPU (USED/TOTAL)", "cpus_used", cpus_cell),
    shown("MEM RSS (MB)", "mem_used_mb", mem_cell),
];

/// The columns of `top`'s task table.
pub const TOP_TASK_COLUMNS: &[Column] = &[
    col("TASK", "task"),
    col("AGENT", "hostname"),
    col("CPU", "cpus_used"),
    col("CPU LIMIT", "cpus_limit"),
    col("MEM RSS (MB)", "mem_rss_mb"),
    col("MEM LIMIT (MB)", "mem_limit_mb"),
    wide("PROCESSES", "processes"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::table;

    fn state() -> Value {
        json!({
            "version": "1.11.0",
            "leader": "master@127.0.0.1:5050",
            "leader_info": {"hostname": "127.0.0.1", "port": 5050},
            "slaves": [
                {"id": "S1", "pid": "slave(1)@127.0.0.2:5051", "hostname": "127.0.0.2", "port": 5051,
                 "active": true, "resources": {"cpus": 2.0, "mem": 1000.0, "disk": 500.0},
                 "used_resources": {"cpus": 0.5, "mem": 64.0, "disk": 0.0}, "attributes": {"rack": "r1"}},
                {"id": "S2", "pid": "slave(1)@127.0.0.3:5051", "hostname": "127.0.0.3", "port": 5051,
                 "active": true, "resources": {"cpus": 2.0, "mem": 1000.0, "disk": 500.0},
                 "used_resources": {"cpus": 0.0, "mem": 0.0, "disk": 0.0}}
            ],
            "unreachable_slave_infos": [
                {"id": "S3", "hostname": "127.0.0.4", "port": 5051,
                 "resources": {"cpus": 1.0, "mem": 500.0, "disk": 100.0}}
            ],
            "frameworks": [
                {"name": "marathon", "id": "F1", "tasks": [
                    {"id": "hello.1", "name": "hello", "framework_id": "F1", "slave_id": "S1",
                     "state": "TASK_RUNNING", "resources": {"cpus": 0.5, "mem": 64.0},
                     "statuses": [{"state": "TASK_RUNNING", "timestamp": 10.5}], "healthy": true}
                 ], "completed_tasks": [
                    {"id": "hello.0", "name": "hello", "framework_id": "F1", "slave_id": "S1",
                     "state": "TASK_KILLED", "resources": {"cpus": 0.5, "mem": 64.0}, "statuses": []}
                 ]},
                {"name": "chronos", "id": "F2", "tasks": []}
            ],
            "orphan_tasks": []
        })
    }

    #[test]
    fn cluster_status_sums_agents_and_counts_states() {
        let row = cluster(&state(), &["127.0.0.3".into()], &[]);
        assert_eq!(row["leader"], "127.0.0.1:5050");
        assert_eq!(row["agents_active"], 1);
        assert_eq!(row["agents_draining"], 1);
        assert_eq!(row["agents_unreachable"], 1);
        assert_eq!(row["cpus_total"], 5.0);
        assert_eq!(row["tasks"], 1);
        let text = table(CLUSTER_COLUMNS, &[row], false);
        assert!(text.contains("0.5/5"), "{text}");
        assert!(text.contains("marathon,chronos"), "{text}");
    }

    #[test]
    fn agents_and_tasks_come_from_the_master_state() {
        let rows = agents(&state(), &[], &[]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["address"], "127.0.0.2:5051");
        assert_eq!(rows[0]["tasks"], 1);
        assert_eq!(rows[2]["state"], "unreachable");
        let text = table(AGENT_COLUMNS, &rows, false);
        assert!(text.lines().nth(1).unwrap().contains("0.5/2"), "{text}");
        let tasks = master_tasks(&state(), false);
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0]["host"], "127.0.0.2");
        assert_eq!(tasks[0]["agent"], "127.0.0.2:5051");
        assert_eq!(tasks[0]["started"], 10.5);
        assert!(task_of(&tasks[0], "/hello"));
        assert!(!task_of(&tasks[0], "/hell"));
        assert_eq!(master_tasks(&state(), true).len(), 2);
    }

    #[test]
    fn apps_show_running_over_wanted() {
        let body = json!({"apps": [{"id": "/hello", "instances": 3, "tasksRunning": 2,
            "tasksHealthy": 0, "cpus": 0.1, "mem": 16.0, "deployments": [{"id": "d1"}],
            "cmd": "sleep 600", "version": "v"}]});
        let rows = apps(&body);
        assert_eq!(rows[0]["running"], 2);
        let text = table(APP_COLUMNS, &rows, false);
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains("2/3") && line.contains("yes"), "{text}");
    }

    #[test]
    fn jobs_say_after_parents_and_their_last_state() {
        let body = json!([
            {"name": "a", "schedule": "R/2026-01-01T00:00:00Z/PT10S", "parents": [],
             "lastSuccess": "2026-01-01T00:00:10.000Z", "lastError": "", "successCount": 1},
            {"name": "b", "schedule": "", "parents": ["a"], "lastSuccess": "",
             "lastError": "2026-01-01T00:00:11.000Z", "errorCount": 2}
        ]);
        let rows = jobs(&body);
        assert_eq!(rows[0]["status"], "success");
        assert_eq!(rows[1]["status"], "failure");
        let text = table(JOB_COLUMNS, &rows, false);
        assert!(text.contains("after a"), "{text}");
    }

    #[test]
    fn usage_is_the_cpu_time_rate_between_samples() {
        let sample = |t: f64| {
            json!([{"executor_id": "t1", "statistics": {"cpus_user_time_secs": t,
                "cpus_system_time_secs": 0.0, "mem_rss_bytes": 10_485_760.0,
                "mem_limit_bytes": 33_554_432.0, "cpus_limit": 0.1, "processes": 2}}])
        };
        let usage = usage(&sample(1.0), &sample(1.5), 2.0);
        assert_eq!(usage["t1"]["cpus_used"], 0.25);
        assert_eq!(usage["t1"]["mem_rss_mb"], 10.0);
        assert_eq!(usage["t1"]["mem_limit_mb"], 32.0);
    }
}
