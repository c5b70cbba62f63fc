//! The records Marathon keeps: apps with their versions, instances (one Mesos task each),
//! deployments as plans of steps, and the last task failure of each app.
//!
//! These are plain data (serde), persisted by [`crate::store`] as JSON and turned into
//! Marathon's API JSON here ([`Instance::task_json`], [`Deployment::to_json`]). Timestamps are
//! unix milliseconds (calendar time), formatted with [`crate::time::format_timestamp`].

use std::collections::BTreeMap;

use plateau_master::ids::{SlaveId, TaskId};
use plateau_master::messages::TaskState;
use plateau_master::resources::{AttributeValue, Attributes};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::app::AppDefinition;
use crate::constraints::{AttrValue, Placement};
use crate::time::format_timestamp;

/// Formats unix ms as Marathon's timestamp; out-of-range values (never produced here) as null.
pub fn ts(unix_ms: i64) -> Value {
    format_timestamp(unix_ms).map_or(Value::Null, Value::String)
}

/// An app: its current (target) definition and the versions kept for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// The current definition, with `version` and `versionInfo` set.
    pub app: AppDefinition,
    /// Earlier and current definitions by version timestamp (oldest first).
    pub versions: BTreeMap<String, AppDefinition>,
}

impl AppRecord {
    /// The version instances must have to count as "new" (the last config change).
    pub fn config_version(&self) -> &str {
        self.app
            .version_info
            .as_ref()
            .map(|v| v.last_config_change_at.as_str())
            .or(self.app.version.as_deref())
            .unwrap_or("")
    }
}

/// Health as reported by the slave (`healthCheckResults[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Latest verdict.
    pub alive: bool,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// First success, unix ms.
    pub first_success_ms: Option<i64>,
    /// Latest success, unix ms.
    pub last_success_ms: Option<i64>,
    /// Latest failure, unix ms.
    pub last_failure_ms: Option<i64>,
    /// Why the latest failure happened.
    pub last_failure_cause: Option<String>,
}

/// Readiness of an instance launched by a deployment of an app with a readiness check
/// (`readinessCheckResults[]`). Persisted with the instance, so a restarted Marathon does not
/// take a task that was never ready for a ready one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessRecord {
    /// The check's name.
    pub name: String,
    /// The task answered one of `httpStatusCodesForReady`; probing has stopped.
    pub ready: bool,
    /// The latest response, with `preserveLastResponse`.
    pub last_response: Option<crate::readiness::ReadinessResponse>,
}

impl ReadinessRecord {
    /// `readinessCheckResults[]` entry of `task_id`.
    pub fn to_json(&self, task_id: &TaskId) -> Value {
        let mut value = json!({"name": self.name, "taskId": task_id.as_str(), "ready": self.ready});
        if let Some(r) = &self.last_response {
            value["lastResponse"] = json!(r);
        }
        value
    }
}

/// One instance of an app: one Mesos task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Mesos task id (`foo_bar.<uuid>`).
    pub task_id: TaskId,
    /// App id (`/foo/bar`).
    pub app_id: String,
    /// App version it was launched with.
    pub version: String,
    /// Last config change of that version: instances with another one are replaced by a restart.
    pub config_version: String,
    /// Latest Mesos state.
    pub state: TaskState,
    /// Slave it runs on.
    pub slave_id: Option<SlaveId>,
    /// Slave host name.
    pub host: String,
    /// Slave attributes, for constraints.
    pub attributes: Attributes,
    /// Host ports, in `portDefinitions` order.
    pub ports: Vec<u32>,
    /// Service ports of the app version, paired with `ports`.
    pub service_ports: Vec<u32>,
    /// When the launch was decided, unix ms.
    pub staged_at_ms: i64,
    /// First TASK_RUNNING, unix ms.
    pub started_at_ms: Option<i64>,
    /// Whether it was launched with a health check.
    pub has_health_check: bool,
    /// Health, when it has a health check and a verdict came.
    pub health: Option<HealthRecord>,
    /// Marathon asked for it to be killed (so TASK_KILLED is expected, not a failure); unix ms
    /// of the (latest) request.
    pub kill_requested_ms: Option<i64>,
    /// Since when it is unreachable, unix ms.
    pub unreachable_since_ms: Option<i64>,
    /// Readiness, when a deployment launched it for an app with a readiness check.
    #[serde(default)]
    pub readiness: Option<ReadinessRecord>,
}

impl Instance {
    /// Marathon's instance id for this task (`foo_bar.instance-<uuid>`).
    pub fn instance_id(&self) -> String {
        match self.task_id.as_str().rsplit_once('.') {
            Some((app, uuid)) => format!("{app}.instance-{uuid}"),
            None => self.task_id.to_string(),
        }
    }

    /// True when the task has not ended.
    pub fn is_alive(&self) -> bool {
        !self.state.is_terminal() && self.state != TaskState::Unknown
    }

    /// True when Marathon asked for it to be killed.
    pub fn is_killing(&self) -> bool {
        self.kill_requested_ms.is_some()
    }

    /// Running, healthy when it has a health check, and ready when a deployment waits for its
    /// readiness check: counts toward healthy capacity.
    pub fn is_ready(&self) -> bool {
        self.state == TaskState::Running
            && !self.is_killing()
            && (!self.has_health_check || self.health.as_ref().is_some_and(|h| h.alive))
            && self.readiness.as_ref().is_none_or(|r| r.ready)
    }

    /// Running, not being killed, and waiting for its readiness check to pass.
    pub fn awaits_readiness(&self) -> bool {
        self.state == TaskState::Running
            && !self.is_killing()
            && self.readiness.as_ref().is_some_and(|r| !r.ready)
    }

    /// True while staging or starting.
    pub fn is_staged(&self) -> bool {
        matches!(self.state, TaskState::Staging | TaskState::Starting)
    }

    /// Where it runs, for constraints.
    pub fn placement(&self) -> Placement {
        let mut placement = Placement::on_host(&self.host);
        for (name, value) in self.attributes.iter() {
            placement
                .attributes
                .insert(name.to_string(), attr_value(value));
        }
        placement
    }

    /// Marathon's task condition name (for `instance_changed_event`).
    pub fn condition(&self) -> &'static str {
        condition(self.state)
    }

    /// The task JSON of `GET /v2/apps/{id}/tasks` (§5.2).
    pub fn task_json(&self) -> Value {
        let health: Vec<Value> = self
            .health
            .iter()
            .map(|h| {
                json!({
                    "alive": h.alive,
                    "consecutiveFailures": h.consecutive_failures,
                    "firstSuccess": h.first_success_ms.map_or(Value::Null, ts),
                    "lastSuccess": h.last_success_ms.map_or(Value::Null, ts),
                    "lastFailure": h.last_failure_ms.map_or(Value::Null, ts),
                    "lastFailureCause": h.last_failure_cause,
                    "taskId": self.task_id.as_str(),
                    "instanceId": self.instance_id(),
                })
            })
            .collect();
        let mut task = json!({
            "id": self.task_id.as_str(),
            "appId": self.app_id,
            "host": self.host,
            "state": self.state.as_str(),
            "ports": self.ports,
            "servicePorts": self.service_ports,
            "ipAddresses": [{"ipAddress": self.host, "protocol": "IPv4"}],
            "healthCheckResults": health,
            "localVolumes": [],
            "role": "*",
        });
        if let Some(slave) = &self.slave_id {
            task["slaveId"] = json!(slave.as_str());
        }
        if self.is_alive() && self.state != TaskState::Unreachable {
            task["stagedAt"] = ts(self.staged_at_ms);
            task["version"] = json!(self.version);
            if let Some(started) = self.started_at_ms {
                task["startedAt"] = ts(started);
            }
        } else {
            task["ports"] = json!([]);
        }
        task
    }
}

/// Marathon's condition name of a Mesos state.
pub fn condition(state: TaskState) -> &'static str {
    match state {
        TaskState::Staging => "Staging",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Killing => "Killing",
        TaskState::Finished => "Finished",
        TaskState::Failed => "Failed",
        TaskState::Killed => "Killed",
        TaskState::Error => "Error",
        TaskState::Lost | TaskState::Unreachable => "Unreachable",
        TaskState::Dropped => "Dropped",
        TaskState::Gone | TaskState::GoneByOperator => "Gone",
        TaskState::Unknown => "Unknown",
    }
}

/// A master attribute value as a constraint value.
pub fn attr_value(value: &AttributeValue) -> AttrValue {
    match value {
        AttributeValue::Scalar(v) => AttrValue::Scalar(*v),
        AttributeValue::Text(t) => AttrValue::Text(t.clone()),
    }
}

/// `lastTaskFailure` of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// App id.
    pub app_id: String,
    /// Host of the task.
    pub host: String,
    /// Status message.
    pub message: String,
    /// Mesos state name.
    pub state: String,
    /// Task id.
    pub task_id: String,
    /// When, unix ms.
    pub timestamp_ms: i64,
    /// App version of the task.
    pub version: String,
    /// Slave id.
    pub slave_id: Option<String>,
}

impl TaskFailure {
    /// The `lastTaskFailure` JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "appId": self.app_id,
            "host": self.host,
            "message": self.message,
            "state": self.state,
            "taskId": self.task_id,
            "timestamp": ts(self.timestamp_ms),
            "version": self.version,
            "slaveId": self.slave_id,
        })
    }
}

/// What a deployment does to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    /// A new app: start its instances.
    StartApplication,
    /// A deleted app: kill its instances.
    StopApplication,
    /// Only `instances` changed.
    ScaleApplication,
    /// The configuration changed (or a restart was asked): rolling replacement.
    RestartApplication,
}

impl ActionKind {
    /// Marathon's action name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::StartApplication => "StartApplication",
            ActionKind::StopApplication => "StopApplication",
            ActionKind::ScaleApplication => "ScaleApplication",
            ActionKind::RestartApplication => "RestartApplication",
        }
    }
}

/// One action of a deployment step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentAction {
    /// What.
    pub action: ActionKind,
    /// On which app.
    pub app: String,
}

/// A deployment: a plan of steps, each a set of concurrent actions; the next step starts when
/// the current one is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Deployment id (uuid).
    pub id: String,
    /// Version of the change (a timestamp).
    pub version: String,
    /// The steps.
    pub steps: Vec<Vec<DeploymentAction>>,
    /// Index of the step in progress (0-based; `steps.len()` when done).
    pub current_step: usize,
    /// Affected apps before the change (`None`: did not exist), for rollback.
    pub original: BTreeMap<String, Option<AppDefinition>>,
    /// Creation order, to list deployments oldest first.
    pub sequence: u64,
}

impl Deployment {
    /// Apps this deployment changes.
    pub fn affected_apps(&self) -> Vec<String> {
        let mut apps: Vec<String> = self.steps.iter().flatten().map(|a| a.app.clone()).collect();
        apps.sort();
        apps.dedup();
        apps
    }

    /// True when it changes `app_id`.
    pub fn affects(&self, app_id: &str) -> bool {
        self.steps.iter().flatten().any(|a| a.app == app_id)
    }

    /// The actions of the step in progress.
    pub fn current_actions(&self) -> &[DeploymentAction] {
        self.steps
            .get(self.current_step)
            .map_or(&[][..], Vec::as_slice)
    }

    fn steps_json(&self) -> Value {
        Value::Array(
            self.steps
                .iter()
                .map(|step| json!({"actions": actions_json(step)}))
                .collect(),
        )
    }

    /// The light plan `{id, version, steps}` of deployment events.
    pub fn plan_json(&self) -> Value {
        json!({"id": self.id, "version": self.version, "steps": self.steps_json()})
    }

    /// The Deployment JSON of `GET /v2/deployments` (§5.4); `readiness` gives each current
    /// action's `readinessCheckResults` (by app id).
    pub fn to_json(&self, readiness: &dyn Fn(&str) -> Vec<Value>) -> Value {
        let current: Vec<Value> = self
            .current_actions()
            .iter()
            .map(|a| {
                json!({"action": a.action.as_str(), "app": a.app,
                       "readinessCheckResults": readiness(&a.app)})
            })
            .collect();
        json!({
            "id": self.id,
            "version": self.version,
            "affectedApps": self.affected_apps(),
            "affectedPods": [],
            "steps": self.steps_json(),
            "currentActions": current,
            "currentStep": (self.current_step + 1).min(self.steps.len()),
            "totalSteps": self.steps.len(),
        })
    }
}

/// Actions as JSON.
pub fn actions_json(actions: &[DeploymentAction]) -> Vec<Value> {
    actions
        .iter()
        .map(|a| json!({"action": a.action.as_str(), "app": a.app}))
        .collect()
}

/// The Mesos task id of a new instance of `app_id`: the path without the leading `/`, `/`
/// replaced by `_`, a dot, and a uuid (Marathon's legacy form `<app>.<uuid>`).
pub fn task_id_for(app_id: &str, uuid: &str) -> TaskId {
    TaskId::new(format!(
        "{}.{uuid}",
        app_id.trim_start_matches('/').replace('/', "_")
    ))
}

/// The app id a task id belongs to (`foo_bar.<uuid>` → `/foo/bar`), if it has that shape.
/// App id segments never contain `_`, so the mapping is exact.
pub fn app_id_of_task(task_id: &str) -> Option<String> {
    let (app, uuid) = task_id.rsplit_once('.')?;
    let uuid = uuid.strip_prefix("instance-").unwrap_or(uuid);
    if app.is_empty() || uuid.len() != 36 {
        return None;
    }
    let app = app.split("._app").next().unwrap_or(app);
    Some(format!("/{}", app.replace('_', "/")))
}

/// Formats 16 random bytes as an RFC 4122 version 4 uuid.
pub fn uuid_from_bytes(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_to_app_ids() {
        let uuid = uuid_from_bytes([7; 16]);
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        let id = task_id_for("/foo/bar", &uuid);
        assert_eq!(id.as_str(), format!("foo_bar.{uuid}"));
        assert_eq!(app_id_of_task(id.as_str()).as_deref(), Some("/foo/bar"));
        let dotted = task_id_for("/web-1.v2", &uuid);
        assert_eq!(
            app_id_of_task(dotted.as_str()).as_deref(),
            Some("/web-1.v2")
        );
        assert_eq!(app_id_of_task("nonsense"), None);
        assert_eq!(app_id_of_task("a.short"), None);
    }
}
