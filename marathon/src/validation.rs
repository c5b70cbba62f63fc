//! Parsing and validation of app bodies, answering with Marathon's error bodies.
//!
//! Marathon 1.10 checks a body in three stages, and so does this module:
//!
//! 1. JSON syntax. Failure: **400** `{"message":"Invalid JSON","details":"<parser text>"}`
//!    (`details` is a string here).
//! 2. JSON types and the RAML constraints of `types/app.raml` (minimum, maximum, pattern,
//!    length, enum). Failure: **422** `{"message":"Invalid JSON","details":[{"path":"/cpus",
//!    "errors":["error.expected.jsnumber"]}]}` with Play JSON's error keys (`error.min`,
//!    `error.pattern`, `error.expected.int`, ...). Paths name array items as `/healthChecks(0)/path`.
//! 3. The app validators (`AppValidation.scala`, `SchedulingValidation.scala`). Failure: **422**
//!    `{"message":"Object is not valid","details":[{"path":"/","errors":["AppDefinition must
//!    either contain one of 'cmd' or 'args', and/or a 'container'."]}]}`, one entry per path.
//!
//! Unknown fields are ignored, as Marathon does; `null` counts as absent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::app::{
    canonical_path_id, legacy_docker_networks, path_id_errors, AppDefinition, AppUpdate,
    ContainerType, EnvValue, HealthCheckProtocol, Network, UnreachableStrategy, UpdateProvenance,
    UpgradeStrategy,
};
use crate::constraints::Constraint;
use crate::error::Error as CrateError;
use crate::limits;
use crate::time;

/// An HTTP error answer: status and JSON body, exactly as Marathon sends it.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("HTTP {status}: {body}")]
pub struct ApiError {
    /// HTTP status (400, 413 or 422 here).
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

impl ApiError {
    /// 400 for a body that is not JSON.
    pub fn invalid_json_syntax(details: &str) -> Self {
        Self {
            status: 400,
            body: json!({"message": "Invalid JSON", "details": details}),
        }
    }

    /// 422 for JSON of the wrong shape (stage 2).
    pub fn invalid_json(details: &Details) -> Self {
        Self {
            status: 422,
            body: json!({"message": "Invalid JSON", "details": details.to_json()}),
        }
    }

    /// 422 for a definition the validators refuse (stage 3).
    pub fn not_valid(details: &Details) -> Self {
        Self {
            status: 422,
            body: json!({"message": "Object is not valid", "details": details.to_json()}),
        }
    }

    /// 413 for a body over [`limits::APP_BODY_BYTES_MAX`].
    pub fn too_large(len: usize) -> Self {
        Self {
            status: 413,
            body: json!({"message": format!(
                "Request body of {len} bytes exceeds the limit of {} bytes",
                limits::APP_BODY_BYTES_MAX
            )}),
        }
    }
}

/// Error messages grouped by path, in first-seen order (one `details` entry per path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details {
    entries: Vec<(String, Vec<String>)>,
}

impl Details {
    /// Adds `message` under `path` (a message already there is not repeated).
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        match self.entries.iter_mut().find(|(p, _)| p == path) {
            Some((_, messages)) => {
                if !messages.contains(&message) {
                    messages.push(message);
                }
            }
            None => self.entries.push((path.to_string(), vec![message])),
        }
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The messages under `path`.
    pub fn get(&self, path: &str) -> Option<&[String]> {
        self.entries
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, m)| m.as_slice())
    }

    /// `[{"path": ..., "errors": [...]}, ...]`.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.entries
                .iter()
                .map(|(path, errors)| json!({"path": path, "errors": errors}))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: a small schema of app.raml, checked with Play JSON's error keys.

type CustomCheck = fn(&Value, &str, &mut Details);

#[derive(Clone, Copy)]
enum Kind {
    Str {
        min_len: usize,
        max_len: usize,
        pattern: Option<fn(&str) -> bool>,
    },
    Num {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// An `int32` (or `int64` when `wide`).
    Int {
        min: Option<i64>,
        max: Option<i64>,
        wide: bool,
    },
    Bool,
    Arr(&'static Kind),
    Map(&'static Kind),
    Obj(&'static [Field]),
    Enum(&'static [&'static str]),
    Any,
    Custom(CustomCheck),
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

const STRING: Kind = Kind::Str {
    min_len: 0,
    max_len: usize::MAX,
    pattern: None,
};
const NON_EMPTY_STRING: Kind = Kind::Str {
    min_len: 1,
    max_len: usize::MAX,
    pattern: None,
};
const URI: Kind = Kind::Str {
    min_len: 1,
    max_len: 1024,
    pattern: None,
};
const PATH_ID: Kind = Kind::Str {
    min_len: 1,
    max_len: usize::MAX,
    pattern: Some(raml_path_id),
};
const NAME: Kind = Kind::Str {
    min_len: 1,
    max_len: 63,
    pattern: Some(raml_name),
};
const EXECUTOR: Kind = Kind::Str {
    min_len: 0,
    max_len: usize::MAX,
    pattern: Some(raml_executor),
};
const NUMBER: Kind = Kind::Num {
    min: None,
    max: None,
};
/// A resource scalar (`cpus`, `mem`, `disk`): what the master's resource model can hold.
const RESOURCE_NUMBER: Kind = Kind::Num {
    min: Some(0.0),
    max: Some(limits::RESOURCE_SCALAR_MAX),
};
/// A duration in seconds that a task's slave waits on (health checks, kill grace period).
const TASK_SECONDS: Kind = Kind::Int {
    min: Some(0),
    max: Some(limits::TASK_SECONDS_MAX),
    wide: false,
};
const NON_NEGATIVE_INT: Kind = Kind::Int {
    min: Some(0),
    max: None,
    wide: false,
};
const NON_NEGATIVE_LONG: Kind = Kind::Int {
    min: Some(0),
    max: None,
    wide: true,
};
const ANY_PORT: Kind = Kind::Int {
    min: Some(0),
    max: Some(65535),
    wide: false,
};
const HTTP_STATUS: Kind = Kind::Int {
    min: Some(100),
    max: Some(999),
    wide: false,
};
const BOOL: Kind = Kind::Bool;
const STRINGS: Kind = Kind::Arr(&STRING);
const LABELS: Kind = Kind::Map(&STRING);
const PROTOCOL: Kind = Kind::Enum(&["tcp", "udp", "udp,tcp", "tcp,udp"]);

const ARTIFACT: Kind = Kind::Obj(&[
    req("uri", URI),
    opt("extract", BOOL),
    opt("executable", BOOL),
    opt("cache", BOOL),
    opt("destPath", STRING),
]);

const PORT_DEFINITION: Kind = Kind::Obj(&[
    opt("port", ANY_PORT),
    opt("protocol", PROTOCOL),
    opt("name", NAME),
    opt("labels", LABELS),
]);

const PORT_MAPPING: Kind = Kind::Obj(&[
    opt("containerPort", ANY_PORT),
    opt("hostPort", ANY_PORT),
    opt("servicePort", ANY_PORT),
    opt("protocol", PROTOCOL),
    opt("name", NAME),
    opt("labels", LABELS),
    opt("networkNames", STRINGS),
]);

const DOCKER: Kind = Kind::Obj(&[
    req("image", STRING),
    opt("network", Kind::Enum(&["BRIDGE", "HOST", "USER", "NONE"])),
    opt(
        "parameters",
        Kind::Arr(&Kind::Obj(&[req("key", STRING), req("value", STRING)])),
    ),
    opt("privileged", BOOL),
    opt("forcePullImage", BOOL),
    opt("portMappings", Kind::Arr(&PORT_MAPPING)),
]);

const VOLUME: Kind = Kind::Obj(&[
    req("containerPath", STRING),
    opt("hostPath", STRING),
    opt("mode", Kind::Enum(&["RO", "RW"])),
    opt("persistent", Kind::Map(&Kind::Any)),
    opt("external", Kind::Map(&Kind::Any)),
]);

const CONTAINER: Kind = Kind::Obj(&[
    opt("type", Kind::Enum(&["DOCKER", "MESOS"])),
    opt("docker", DOCKER),
    opt("portMappings", Kind::Arr(&PORT_MAPPING)),
    opt("volumes", Kind::Arr(&VOLUME)),
]);

const HEALTH_CHECK: Kind = Kind::Obj(&[
    opt(
        "protocol",
        Kind::Enum(&[
            "HTTP",
            "HTTPS",
            "TCP",
            "COMMAND",
            "MESOS_HTTP",
            "MESOS_HTTPS",
            "MESOS_TCP",
        ]),
    ),
    opt("command", Kind::Obj(&[req("value", STRING)])),
    opt("gracePeriodSeconds", TASK_SECONDS),
    opt("intervalSeconds", TASK_SECONDS),
    opt("timeoutSeconds", TASK_SECONDS),
    opt("maxConsecutiveFailures", NON_NEGATIVE_INT),
    opt("delaySeconds", TASK_SECONDS),
    opt("path", STRING),
    opt("portIndex", ANY_PORT),
    opt("port", ANY_PORT),
    opt("ignoreHttp1xx", BOOL),
    opt("ipProtocol", Kind::Enum(&["IPv4", "IPv6"])),
]);

const READINESS_CHECK: Kind = Kind::Obj(&[
    opt("name", STRING),
    opt("protocol", Kind::Enum(&["HTTP", "HTTPS"])),
    opt("path", STRING),
    opt("portName", STRING),
    opt("intervalSeconds", NON_NEGATIVE_INT),
    opt("timeoutSeconds", NON_NEGATIVE_INT),
    opt("httpStatusCodesForReady", Kind::Arr(&HTTP_STATUS)),
    opt("preserveLastResponse", BOOL),
]);

const NETWORK: Kind = Kind::Obj(&[
    opt(
        "mode",
        Kind::Enum(&["host", "container", "container/bridge"]),
    ),
    opt("name", STRING),
    opt("labels", LABELS),
]);

const APP_FIELDS: &[Field] = &[
    opt("id", PATH_ID),
    opt("cmd", NON_EMPTY_STRING),
    opt("args", STRINGS),
    opt("user", STRING),
    opt("env", Kind::Custom(check_env)),
    opt("instances", NON_NEGATIVE_INT),
    opt(
        "cpus",
        Kind::Num {
            min: Some(0.001),
            max: Some(limits::RESOURCE_SCALAR_MAX),
        },
    ),
    opt("mem", RESOURCE_NUMBER),
    opt("disk", RESOURCE_NUMBER),
    opt("gpus", NON_NEGATIVE_INT),
    opt("executor", EXECUTOR),
    opt("constraints", Kind::Arr(&STRINGS)),
    opt("fetch", Kind::Arr(&ARTIFACT)),
    opt("uris", Kind::Arr(&URI)),
    opt("storeUrls", Kind::Arr(&NON_EMPTY_STRING)),
    opt("ports", Kind::Arr(&ANY_PORT)),
    opt("portDefinitions", Kind::Arr(&PORT_DEFINITION)),
    opt("requirePorts", BOOL),
    opt("backoffSeconds", NON_NEGATIVE_INT),
    opt(
        "backoffFactor",
        Kind::Num {
            min: Some(1.0),
            max: None,
        },
    ),
    opt("maxLaunchDelaySeconds", NON_NEGATIVE_INT),
    opt("container", CONTAINER),
    opt("healthChecks", Kind::Arr(&HEALTH_CHECK)),
    opt("readinessChecks", Kind::Arr(&READINESS_CHECK)),
    opt("dependencies", Kind::Arr(&PATH_ID)),
    // Bounds are checked by the validators, with the messages of the reference.
    opt(
        "upgradeStrategy",
        Kind::Obj(&[
            opt("minimumHealthCapacity", NUMBER),
            opt("maximumOverCapacity", NUMBER),
        ]),
    ),
    opt("labels", LABELS),
    opt("acceptedResourceRoles", STRINGS),
    opt("ipAddress", Kind::Map(&Kind::Any)),
    opt("version", Kind::Custom(check_timestamp)),
    opt("versionInfo", Kind::Any),
    opt(
        "residency",
        Kind::Obj(&[
            opt("relaunchEscalationTimeoutSeconds", NON_NEGATIVE_INT),
            opt(
                "taskLostBehavior",
                Kind::Enum(&["WAIT_FOREVER", "RELAUNCH_AFTER_TIMEOUT"]),
            ),
        ]),
    ),
    opt(
        "secrets",
        Kind::Map(&Kind::Obj(&[req("source", NON_EMPTY_STRING)])),
    ),
    opt("taskKillGracePeriodSeconds", TASK_SECONDS),
    opt("unreachableStrategy", Kind::Custom(check_unreachable)),
    opt(
        "killSelection",
        Kind::Enum(&["YOUNGEST_FIRST", "OLDEST_FIRST"]),
    ),
    opt("networks", Kind::Arr(&NETWORK)),
    opt("role", STRING),
    opt("tty", BOOL),
    opt("check", Kind::Any),
    opt("resourceLimits", Kind::Any),
];

fn raml_path_id(text: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^(/?((\.{2})|([a-z0-9][a-z0-9\-.]*[a-z0-9]+)|([a-z0-9]*))($|/))+$")
            .expect("RAML PathId pattern compiles")
    })
    .is_match(text)
}

fn raml_name(text: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("RAML Name pattern compiles")
    })
    .is_match(text)
}

fn raml_executor(text: &str) -> bool {
    // `^(//cmd)|(/?[^/]+(/[^/]+)*)|$`, matched against the whole string by Play.
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^(?:(//cmd)|(/?[^/]+(/[^/]+)*)|)$").expect("executor pattern compiles")
    })
    .is_match(text)
}

fn check_env(value: &Value, path: &str, details: &mut Details) {
    let Some(object) = value.as_object() else {
        details.push(path, "error.expected.jsobject");
        return;
    };
    for (name, entry) in object {
        let entry_path = format!("{path}/{name}");
        match entry {
            Value::String(_) | Value::Null => {}
            Value::Object(reference) if reference.get("secret").is_some_and(Value::is_string) => {}
            _ => details.push(&entry_path, "error.expected.jsstring"),
        }
    }
}

fn check_timestamp(value: &Value, path: &str, details: &mut Details) {
    match value.as_str() {
        Some(text) if time::parse_timestamp(text).is_ok() => {}
        Some(_) => details.push(path, "error.expected.date.isoformat"),
        None => details.push(path, "error.expected.jsstring"),
    }
}

const UNREACHABLE_ENABLED: Kind = Kind::Obj(&[
    opt("inactiveAfterSeconds", NON_NEGATIVE_LONG),
    opt("expungeAfterSeconds", NON_NEGATIVE_LONG),
]);

fn check_unreachable(value: &Value, path: &str, details: &mut Details) {
    match value {
        Value::String(text) if text == "disabled" => {}
        Value::Object(_) => check_kind(&UNREACHABLE_ENABLED, value, path, details),
        _ => details.push(path, "error.expected.jsobject"),
    }
}

fn check_fields(fields: &[Field], object: &Map<String, Value>, path: &str, details: &mut Details) {
    for field in fields {
        let field_path = format!("{path}/{}", field.name);
        match object.get(field.name) {
            None | Some(Value::Null) => {
                if field.required {
                    details.push(&field_path, "error.path.missing");
                }
            }
            Some(value) => check_kind(&field.kind, value, &field_path, details),
        }
    }
}

fn check_kind(kind: &Kind, value: &Value, path: &str, details: &mut Details) {
    match *kind {
        Kind::Any => {}
        Kind::Custom(check) => check(value, path, details),
        Kind::Bool => {
            if !value.is_boolean() {
                details.push(path, "error.expected.jsboolean");
            }
        }
        Kind::Str {
            min_len,
            max_len,
            pattern,
        } => match value.as_str() {
            None => details.push(path, "error.expected.jsstring"),
            Some(text) => {
                let chars = text.chars().count();
                if chars < min_len {
                    details.push(path, "error.minLength");
                } else if chars > max_len {
                    details.push(path, "error.maxLength");
                } else if pattern.is_some_and(|matches| !matches(text)) {
                    details.push(path, "error.pattern");
                }
            }
        },
        Kind::Num { min, max } => match value.as_f64() {
            None => details.push(path, "error.expected.jsnumber"),
            Some(number) => {
                if min.is_some_and(|min| number < min) {
                    details.push(path, "error.min");
                } else if max.is_some_and(|max| number > max) {
                    details.push(path, "error.max");
                }
            }
        },
        Kind::Int { min, max, wide } => {
            if !value.is_number() {
                details.push(path, "error.expected.jsnumber");
                return;
            }
            let (low, high) = if wide {
                (i64::MIN, i64::MAX)
            } else {
                (i64::from(i32::MIN), i64::from(i32::MAX))
            };
            // Play's Int reads refuse fractions and out-of-range values alike.
            let integer = value.as_i64().or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            });
            match integer.filter(|n| (low..=high).contains(n)) {
                None => details.push(
                    path,
                    if wide {
                        "error.expected.long"
                    } else {
                        "error.expected.int"
                    },
                ),
                Some(n) => {
                    if min.is_some_and(|min| n < min) {
                        details.push(path, "error.min");
                    } else if max.is_some_and(|max| n > max) {
                        details.push(path, "error.max");
                    }
                }
            }
        }
        Kind::Enum(literals) => {
            let known = value
                .as_str()
                .is_some_and(|text| literals.iter().any(|l| l.eq_ignore_ascii_case(text)));
            if !known {
                details.push(path, "error.unknown.enum.literal");
            }
        }
        Kind::Arr(item) => match value.as_array() {
            None => details.push(path, "error.expected.jsarray"),
            Some(items) => {
                for (index, element) in items.iter().enumerate() {
                    check_kind(item, element, &format!("{path}({index})"), details);
                }
            }
        },
        Kind::Map(entry) => match value.as_object() {
            None => details.push(path, "error.expected.jsobject"),
            Some(object) => {
                for (key, element) in object {
                    check_kind(entry, element, &format!("{path}/{key}"), details);
                }
            }
        },
        Kind::Obj(fields) => match value.as_object() {
            None => details.push(path, "error.expected.jsobject"),
            Some(object) => check_fields(fields, object, path, details),
        },
    }
}

/// Normalizes the enum literals Marathon reads case-insensitively to the case serde expects,
/// and drops `null`s (absent, for Marathon) from objects.
fn canonicalize_input(value: &mut Value) {
    fn upper(object: &mut Map<String, Value>, key: &str) {
        if let Some(Value::String(text)) = object.get_mut(key) {
            *text = text.to_ascii_uppercase();
        }
    }
    let Some(app) = value.as_object_mut() else {
        return;
    };
    app.retain(|_, v| !v.is_null());
    upper(app, "killSelection");
    if let Some(Value::String(text)) = app.get_mut("unreachableStrategy") {
        *text = text.to_ascii_lowercase();
    }
    if let Some(Value::Array(checks)) = app.get_mut("healthChecks") {
        for check in checks.iter_mut().filter_map(Value::as_object_mut) {
            check.retain(|_, v| !v.is_null());
            upper(check, "protocol");
            if let Some(Value::String(ip)) = check.get_mut("ipProtocol") {
                *ip = if ip.eq_ignore_ascii_case("ipv6") {
                    "IPv6"
                } else {
                    "IPv4"
                }
                .to_string();
            }
        }
    }
    if let Some(Value::Array(checks)) = app.get_mut("readinessChecks") {
        for check in checks.iter_mut().filter_map(Value::as_object_mut) {
            upper(check, "protocol");
        }
    }
    if let Some(Value::Array(networks)) = app.get_mut("networks") {
        for network in networks.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::String(mode)) = network.get_mut("mode") {
                *mode = mode.to_ascii_lowercase();
            }
        }
    }
    if let Some(Value::Object(container)) = app.get_mut("container") {
        container.retain(|_, v| !v.is_null());
        upper(container, "type");
        if let Some(Value::Object(docker)) = container.get_mut("docker") {
            docker.retain(|_, v| !v.is_null());
            upper(docker, "network");
        }
        if let Some(Value::Array(volumes)) = container.get_mut("volumes") {
            for volume in volumes.iter_mut().filter_map(Value::as_object_mut) {
                upper(volume, "mode");
            }
        }
    }
    for key in ["portDefinitions"] {
        if let Some(Value::Array(ports)) = app.get_mut(key) {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::String(protocol)) = port.get_mut("protocol") {
                    *protocol = protocol.to_ascii_lowercase();
                }
            }
        }
    }
    if let Some(Value::Object(residency)) = app.get_mut("residency") {
        upper(residency, "taskLostBehavior");
    }
}

/// Stages 1 and 2: parses a body into an [`AppUpdate`] (every field optional).
pub fn parse_app_update(body: &[u8]) -> Result<AppUpdate, ApiError> {
    if body.len() > limits::APP_BODY_BYTES_MAX {
        return Err(ApiError::too_large(body.len()));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError {
            status: 400,
            body: json!({
                "message": "Please specify data in JSON format",
                "details": "No content to map due to end-of-input"
            }),
        });
    }
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid_json_syntax(&e.to_string()))?;
    let mut details = Details::default();
    match value.as_object() {
        None => details.push("", "error.expected.jsobject"),
        Some(object) => check_fields(APP_FIELDS, object, "", &mut details),
    }
    if !details.is_empty() {
        return Err(ApiError::invalid_json(&details));
    }
    canonicalize_input(&mut value);
    serde_json::from_value(value).map_err(|e| {
        // The schema above mirrors AppUpdate; reaching this is a gap in it, reported plainly.
        let mut details = Details::default();
        details.push("/", e.to_string());
        ApiError::invalid_json(&details)
    })
}

// ---------------------------------------------------------------------------------------------
// Stage 3: the validators.

fn constraint_message(error: CrateError) -> String {
    match error {
        CrateError::InvalidConstraint { message } => message,
        other => other.to_string(),
    }
}

/// Checks a merged definition with Marathon's validators. `update` is the body it came from
/// (for the checks on legacy fields and on raw constraints), `provenance` what the merge took
/// from it.
pub fn validate_app(
    app: &AppDefinition,
    update: &AppUpdate,
    provenance: UpdateProvenance,
) -> Result<(), ApiError> {
    let mut d = Details::default();

    // ID.
    if app.id == "/" {
        d.push("/", "must not be root");
    }
    for message in path_id_errors(&app.id) {
        d.push("/id", message);
    }
    for (index, dependency) in app.dependencies.iter().enumerate() {
        for message in path_id_errors(&canonical_path_id(dependency, "/")) {
            d.push(&format!("/dependencies({index})"), message);
        }
    }

    // Command.
    let has_cmd = app.cmd.is_some();
    let has_args = !app.args.is_empty();
    let has_container_image = app.container.as_ref().is_some_and(|c| c.docker.is_some());
    if !((has_cmd ^ has_args) || (!(has_cmd && has_args) && has_container_image)) {
        d.push(
            "/",
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
        );
    }
    if app.cmd.as_ref().is_some_and(|cmd| cmd.chars().count() <= 1) {
        d.push("/", "must not be an empty string");
    }

    // Resources.
    if app.gpus > 0
        && app
            .container
            .as_ref()
            .is_some_and(|c| c.kind == ContainerType::Docker)
    {
        d.push("/", "GPU resources only work with the Mesos containerizer");
    }

    // Constraints, from the body so that the index names the bad one.
    if let Some(constraints) = &update.constraints {
        if constraints.len() > limits::CONSTRAINTS_PER_APP_MAX {
            d.push(
                "/constraints",
                format!(
                    "must have at most {} constraints",
                    limits::CONSTRAINTS_PER_APP_MAX
                ),
            );
        }
        for (index, parts) in constraints.iter().enumerate() {
            if let Err(error) = Constraint::from_parts(parts) {
                d.push(&format!("/constraints({index})"), constraint_message(error));
            }
        }
    }

    // Ports.
    let host = app.is_host_networking();
    if app.port_definitions.len() > limits::PORTS_PER_APP_MAX {
        d.push(
            "/portDefinitions",
            format!("must have at most {} ports", limits::PORTS_PER_APP_MAX),
        );
    }
    let names: Vec<&str> = app
        .port_definitions
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
        d.push("/portDefinitions", "Port names must be unique.");
    }
    let ports: Vec<u32> = app
        .port_definitions
        .iter()
        .map(|p| p.port)
        .filter(|&p| p != 0)
        .collect();
    if ports.iter().collect::<BTreeSet<_>>().len() != ports.len() {
        d.push("/portDefinitions", "Ports must be unique.");
    }
    if let Some(legacy) = &update.ports {
        let non_zero: Vec<u32> = legacy.iter().copied().filter(|&p| p != 0).collect();
        if non_zero.iter().collect::<BTreeSet<_>>().len() != non_zero.len() {
            d.push("/", "ports must be unique");
        }
        if let Some(definitions) = &update.port_definitions {
            let same: Vec<u32> = definitions.iter().map(|p| p.port).collect();
            if &same != legacy {
                d.push("/", "cannot specify both ports and port definitions");
            }
        }
    }
    if let Some(mappings) = app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref())
    {
        let names: Vec<&str> = mappings.iter().filter_map(|m| m.name.as_deref()).collect();
        if names.iter().collect::<BTreeSet<_>>().len() != names.len() {
            d.push("/container/portMappings", "Port names must be unique.");
        }
        if mappings.len() > limits::PORTS_PER_APP_MAX {
            d.push(
                "/container/portMappings",
                format!("must have at most {} ports", limits::PORTS_PER_APP_MAX),
            );
        }
    }
    if !host && provenance.port_definitions_given && !app.port_definitions.is_empty() {
        d.push("/", "portDefinitions are only allowed with host-networking");
    }
    let update_mappings = update.container.as_ref().is_some_and(|c| {
        c.port_mappings.as_ref().is_some_and(|m| !m.is_empty())
            || c.docker
                .as_ref()
                .and_then(|docker| docker.port_mappings.as_ref())
                .is_some_and(|m| !m.is_empty())
    });
    if host && provenance.networks_given && update_mappings {
        d.push("/", "portMappings are not allowed with host-networking");
    }

    // Networks, legacy ipAddress.
    if let Some(ip) = &update.ip_address {
        if update.networks.as_ref().is_some_and(|n| !n.is_empty()) {
            d.push("/", "must not specify both networks and ipAddress");
        }
        if update.ports.as_ref().is_some_and(|p| !p.is_empty())
            || update
                .port_definitions
                .as_ref()
                .is_some_and(|p| !p.is_empty())
        {
            d.push("/", "cannot specify both an IP address and port");
        }
        let docker = app
            .container
            .as_ref()
            .is_some_and(|c| c.kind == ContainerType::Docker);
        if docker && ip.get("discovery").is_some_and(|v| !v.is_null()) {
            d.push(
                "/ipAddress",
                "ipAddress/discovery is not allowed for Docker containers",
            );
        }
    }
    // Marathon refuses both forms together. Plateau echoes `docker.network` beside `networks`
    // on output, so a client that sends an app back unchanged must pass: only a contradiction
    // is refused.
    if let (Some(networks), Some(container)) = (&update.networks, &update.container) {
        if let Some(implied) = legacy_docker_networks(container, update.ip_address.as_ref()) {
            let modes = |n: &[Network]| n.iter().map(|n| n.mode).collect::<Vec<_>>();
            if modes(&implied) != modes(networks) {
                d.push(
                    "/",
                    "must not specify both container.docker.network and networks",
                );
            }
        }
    }

    // Container.
    if let Some(container) = &app.container {
        match (&container.docker, container.kind) {
            (None, ContainerType::Docker) => d.push("/container/docker", "not defined"),
            (Some(docker), _) if docker.image.is_empty() => {
                d.push("/container/docker/image", "must not be empty")
            }
            _ => {}
        }
    }
    let persistent = app
        .container
        .as_ref()
        .is_some_and(|c| c.has_persistent_volumes());
    if app.residency.is_some() != persistent {
        d.push(
            "/",
            "App must contain persistent volumes and define residency",
        );
    }

    // Health checks.
    if app.health_checks.len() > limits::HEALTH_CHECKS_PER_APP_MAX {
        d.push(
            "/healthChecks",
            format!(
                "must have at most {} health checks",
                limits::HEALTH_CHECKS_PER_APP_MAX
            ),
        );
    }
    let port_count = app.port_count();
    let docker = app
        .container
        .as_ref()
        .is_some_and(|c| c.kind == ContainerType::Docker);
    let mut mesos_checks = 0;
    for (index, check) in app.health_checks.iter().enumerate() {
        let path = format!("/healthChecks({index})");
        if check.command.is_none() && check.protocol.is_marathon_run() {
            let addressable = match check.port_index {
                Some(i) => (i as usize) < port_count,
                None => check.port.is_some() || port_count == 1,
            };
            if !addressable {
                d.push(&path, "Health check port indices must address an element of the ports array or container port mappings.");
            }
        }
        if check.protocol == HealthCheckProtocol::Command && check.command.is_none() {
            d.push(&format!("{path}/command"), "not defined");
        }
        let mesos_http = matches!(
            check.protocol,
            HealthCheckProtocol::MesosHttp
                | HealthCheckProtocol::MesosHttps
                | HealthCheckProtocol::MesosTcp
        );
        if check.ip_protocol.as_deref() == Some("IPv6") && !(mesos_http && docker) {
            d.push(&path, "IPv6 can only be used for container type DOCKER and Mesos http/https/tcp health checks");
        }
        if check.command.is_none() && !check.protocol.is_marathon_run() {
            mesos_checks += 1;
        }
    }
    if mesos_checks > 1 {
        d.push(
            "/",
            "AppDefinition can contain at most one Mesos health check",
        );
    }

    // Readiness checks.
    if app.readiness_checks.len() > 1 {
        d.push(
            "/readinessChecks",
            format!(
                "has size {}, expected 1 or less",
                app.readiness_checks.len()
            ),
        );
    }
    let port_names: BTreeSet<&str> = match app
        .container
        .as_ref()
        .and_then(|c| c.port_mappings.as_ref())
    {
        Some(mappings) if !host => mappings.iter().filter_map(|m| m.name.as_deref()).collect(),
        _ => names.iter().copied().collect(),
    };
    for (index, check) in app.readiness_checks.iter().enumerate() {
        if !port_names.contains(check.port_name.as_str()) {
            d.push(
                &format!("/readinessChecks({index})/portName"),
                format!(
                    "No port definition reference for portName {}",
                    check.port_name
                ),
            );
        }
        if check.protocol != "HTTP" {
            // Marathon probes HTTPS without verifying certificates; Plateau's prober speaks
            // plain HTTP only, and says so rather than pretend.
            d.push(
                &format!("/readinessChecks({index})/protocol"),
                format!(
                    "readiness checks over {} are not supported: use HTTP",
                    check.protocol
                ),
            );
        }
        if check.timeout_seconds >= check.interval_seconds {
            d.push(
                &format!("/readinessChecks({index})/timeoutSeconds"),
                format!(
                    "got {}, expected less than {}",
                    check.timeout_seconds, check.interval_seconds
                ),
            );
        }
    }

    // Upgrade strategy (messages as in shared/reference/marathon-api.md §2).
    let UpgradeStrategy {
        minimum_health_capacity,
        maximum_over_capacity,
    } = app.upgrade_strategy;
    for (name, value) in [
        ("minimumHealthCapacity", minimum_health_capacity),
        ("maximumOverCapacity", maximum_over_capacity),
    ] {
        let path = format!("/upgradeStrategy/{name}");
        if value > 1.0 {
            d.push(&path, "is greater than 1");
        } else if value < 0.0 || value.is_nan() {
            d.push(&path, "is less than 0");
        }
    }
    if app.residency.is_some() && maximum_over_capacity != 0.0 {
        d.push(
            "/upgradeStrategy/maximumOverCapacity",
            format!("got {maximum_over_capacity}, expected 0.0"),
        );
    }

    // Unreachable strategy.
    if let UnreachableStrategy::Enabled {
        inactive_after_seconds,
        expunge_after_seconds,
    } = app.unreachable_strategy
    {
        if inactive_after_seconds > expunge_after_seconds {
            d.push(
                "/unreachableStrategy",
                "inactiveAfterSeconds must be less or equal to expungeAfterSeconds",
            );
        }
        if app.residency.is_some() && update.unreachable_strategy.is_some() {
            d.push(
                "/",
                "unreachableStrategy must be disabled for resident tasks",
            );
        }
    }

    // Roles, fetch, env.
    if app
        .accepted_resource_roles
        .as_ref()
        .is_some_and(|roles| roles.is_empty())
    {
        d.push("/acceptedResourceRoles", "must not be empty");
    }
    if update.uris.as_ref().is_some_and(|u| !u.is_empty())
        && update.fetch.as_ref().is_some_and(|f| !f.is_empty())
    {
        d.push("/uris", "may not be set in conjunction with fetch");
    }
    for (name, value) in &app.env {
        if let EnvValue::Secret { secret } = value {
            if !app.secrets.contains_key(secret) {
                d.push(
                    &format!("/env/{name}"),
                    format!("references an undefined secret named {secret}"),
                );
            }
        }
    }

    if d.is_empty() {
        Ok(())
    } else {
        Err(ApiError::not_valid(&d))
    }
}

/// `POST /v2/apps`: parses, fills Marathon's defaults, makes the ID canonical (relative IDs are
/// resolved against `/`) and validates. A `version` in the body is ignored, as Marathon does.
///
/// ```
/// use plateau_marathon::validation::parse_app;
/// let app = parse_app(br#"{"id": "web", "cmd": "python3 -m http.server $PORT0"}"#).unwrap();
/// assert_eq!(app.id, "/web");
/// assert_eq!(app.instances, 1);
///
/// let err = parse_app(br#"{"id": "web", "cmd": "serve", "cpus": "lots"}"#).unwrap_err();
/// assert_eq!(err.status, 422);
/// assert_eq!(err.body["details"][0]["path"], "/cpus");
/// assert_eq!(err.body["details"][0]["errors"][0], "error.expected.jsnumber");
/// ```
pub fn parse_app(body: &[u8]) -> Result<AppDefinition, ApiError> {
    let mut update = parse_app_update(body)?;
    let Some(raw_id) = update.id.clone() else {
        let mut details = Details::default();
        details.push("/id", "error.path.missing");
        return Err(ApiError::invalid_json(&details));
    };
    update.version = None;
    let base = AppDefinition {
        id: canonical_path_id(&raw_id, "/"),
        ..AppDefinition::default()
    };
    let (mut app, provenance) = base.apply_update(&update);
    app.version = None;
    validate_app(&app, &update, provenance)?;
    app.finish();
    Ok(app)
}

/// What a `PUT /v2/apps/{id}` body asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum AppPut {
    /// `{"version": "..."}`: roll back to that version (canonical timestamp).
    Rollback {
        /// Version to restore.
        version: String,
    },
    /// The new definition (no `version`: the caller stamps it).
    App(Box<AppDefinition>),
}

/// `PUT /v2/apps/{id}` (and `PATCH` with `partial_update = true`): parses the body and merges it
/// onto `existing` (fields present replace, others are kept) when `partial_update` is true, or
/// onto the defaults when false or when the app does not exist yet. The ID comes from the URL
/// (`url_id`, made canonical against `/`); an `id` in the body is ignored.
pub fn parse_app_put(
    body: &[u8],
    url_id: &str,
    existing: Option<&AppDefinition>,
    partial_update: bool,
) -> Result<AppPut, ApiError> {
    let update = parse_app_update(body)?;
    if let Some(version) = &update.version {
        if !update.is_rollback() {
            let mut details = Details::default();
            details.push(
                "/",
                "The 'version' field may only be combined with the 'id' field.",
            );
            return Err(ApiError::not_valid(&details));
        }
        let canonical = time::canonical_timestamp(version).map_err(|_| {
            let mut details = Details::default();
            details.push("/version", "error.expected.date.isoformat");
            ApiError::invalid_json(&details)
        })?;
        return Ok(AppPut::Rollback { version: canonical });
    }
    let id = canonical_path_id(url_id, "/");
    let base = match existing {
        Some(app) if partial_update => app.clone(),
        _ => AppDefinition::default(),
    };
    let base = AppDefinition {
        id: id.clone(),
        ..base
    };
    let (mut app, provenance) = base.apply_update(&update);
    app.id = id;
    validate_app(&app, &update, provenance)?;
    app.finish();
    Ok(AppPut::App(Box::new(app)))
}

/// Checks the JSON types of an arbitrary object against a field list; exposed for the group
/// endpoints, which embed apps. Returns the Play-style details (empty when fine).
pub fn check_app_json(value: &Value) -> Details {
    let mut details = Details::default();
    match value.as_object() {
        None => details.push("", "error.expected.jsobject"),
        Some(object) => check_fields(APP_FIELDS, object, "", &mut details),
    }
    details
}

/// Groups of messages by path, for tests and callers that merge several validations.
pub fn details_by_path(error: &ApiError) -> BTreeMap<String, Vec<String>> {
    error.body["details"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let path = e["path"].as_str()?.to_string();
                    let errors = e["errors"]
                        .as_array()?
                        .iter()
                        .filter_map(|m| m.as_str().map(str::to_string))
                        .collect();
                    Some((path, errors))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Fuzz targets of the app JSON API: arbitrary bytes, arbitrary JSON values and damaged valid
/// definitions go through the same functions the HTTP handlers call (`POST /v2/apps`,
/// `PUT`/`PATCH /v2/apps/{id}`). Each gives an app or a 4xx error whose body names what is
/// wrong, never a panic; an app that is accepted can be launched (its numbers pass the
/// master's checks at the edge) and its JSON form reads back as the same app.
#[cfg(test)]
mod fuzz {
    use super::*;
    use plateau_master::limits::TASK_DURATION_MAX;
    use plateau_master::resources::Resources;
    use plateau_runtime::fuzzing::fuzz_cases;
    use proptest::prelude::*;

    fn base_app() -> Value {
        json!({
            "id": "/prod/web",
            "cmd": "python3 -m http.server $PORT0",
            "instances": 3,
            "cpus": 0.5,
            "mem": 128,
            "disk": 10,
            "env": {"A": "b", "S": {"secret": "s1"}},
            "secrets": {"s1": {"source": "/db/password"}},
            "labels": {"team": "x"},
            "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"]],
            "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
            "backoffSeconds": 1,
            "backoffFactor": 1.15,
            "maxLaunchDelaySeconds": 300,
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                              "gracePeriodSeconds": 30, "intervalSeconds": 10,
                              "timeoutSeconds": 5, "maxConsecutiveFailures": 3}],
            "readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/ready",
                                 "portName": "http", "intervalSeconds": 30,
                                 "timeoutSeconds": 10}],
            "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
            "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120},
            "taskKillGracePeriodSeconds": 5,
            "killSelection": "YOUNGEST_FIRST",
            "dependencies": ["/prod/db"],
            "user": "nobody"
        })
    }

    /// Numbers where validators tend to break: zero, signs, fractions, the edges of the
    /// integer types, and magnitudes no resource or duration can have.
    fn edge_number() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(0)),
            Just(json!(-1)),
            Just(json!(0.0001)),
            Just(json!(1.5)),
            Just(json!(2147483647)),
            Just(json!(2147483648_i64)),
            Just(json!(4294967295_u64)),
            Just(json!(-2147483649_i64)),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(1e9)),
            Just(json!(1e10)),
            Just(json!(1e300)),
            Just(json!(-1e300)),
            Just(json!(f64::MIN_POSITIVE)),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
        ]
    }

    fn arb_key() -> impl Strategy<Value = String> {
        let names: Vec<String> = APP_FIELDS.iter().map(|f| f.name.to_string()).collect();
        prop_oneof![
            4 => proptest::sample::select(names),
            1 => "[a-zA-Z]{0,8}",
        ]
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            edge_number(),
            "\\PC{0,12}".prop_map(Value::String),
            Just(json!("/prod/web")),
            Just(json!("HTTP")),
        ];
        leaf.prop_recursive(3, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(arb_key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every JSON pointer inside `value`.
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    let path = format!("{at}/{key}");
                    out.push(path.clone());
                    pointers(inner, path, out);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    let path = format!("{at}/{index}");
                    out.push(path.clone());
                    pointers(inner, path, out);
                }
            }
            _ => {}
        }
    }

    /// `base_app()` with the values at a few places replaced by arbitrary JSON (or removed).
    fn damaged_app() -> impl Strategy<Value = Value> {
        let mut paths = Vec::new();
        pointers(&base_app(), String::new(), &mut paths);
        proptest::collection::vec(
            (
                proptest::sample::select(paths),
                proptest::option::weighted(0.9, arb_json()),
            ),
            1..4,
        )
        .prop_map(|edits| {
            let mut app = base_app();
            for (path, value) in edits {
                match value {
                    Some(value) => {
                        if let Some(slot) = app.pointer_mut(&path) {
                            *slot = value;
                        }
                    }
                    None => {
                        let (parent, key) = path.rsplit_once('/').unwrap();
                        match app.pointer_mut(parent) {
                            Some(Value::Object(map)) => {
                                map.remove(key);
                            }
                            Some(Value::Array(items)) => {
                                if let Ok(i) = key.parse::<usize>() {
                                    if i < items.len() {
                                        items.remove(i);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            app
        })
    }

    fn check_error(error: &ApiError) -> Result<(), TestCaseError> {
        prop_assert!((400..500).contains(&error.status), "{:?}", error);
        prop_assert!(error.body["message"].is_string(), "{:?}", error);
        if error.status == 422 {
            let details = error.body["details"].as_array();
            prop_assert!(details.is_some_and(|d| !d.is_empty()), "{:?}", error);
            for detail in details.unwrap() {
                prop_assert!(detail["path"].is_string(), "{:?}", error);
                prop_assert!(
                    detail["errors"].as_array().is_some_and(|e| !e.is_empty()),
                    "{:?}",
                    error
                );
            }
        }
        Ok(())
    }

    /// What an accepted app must satisfy: its numbers pass the master's edge (resources,
    /// durations), and its JSON reads back as the same app.
    fn check_app(app: &AppDefinition) -> Result<(), TestCaseError> {
        prop_assert!(
            Resources::new(app.cpus, app.mem, app.disk).is_ok(),
            "cpus {} mem {} disk {} accepted but not launchable",
            app.cpus,
            app.mem,
            app.disk
        );
        let max = TASK_DURATION_MAX.as_secs();
        for hc in &app.health_checks {
            for secs in [
                hc.delay_seconds,
                hc.interval_seconds,
                hc.timeout_seconds,
                hc.grace_period_seconds,
            ] {
                prop_assert!(
                    u64::from(secs) <= max,
                    "health check of {} s accepted",
                    secs
                );
            }
        }
        if let Some(secs) = app.task_kill_grace_period_seconds {
            prop_assert!(
                u64::from(secs) <= max,
                "kill grace period of {} s accepted",
                secs
            );
        }
        prop_assert!(app.instances <= limits::INSTANCES_PER_APP_MAX || app.instances > 0);
        Ok(())
    }

    fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
        match parse_app(body) {
            Ok(app) => check_app(&app)?,
            Err(e) => check_error(&e)?,
        }
        let existing = parse_app(&serde_json::to_vec(&base_app()).unwrap()).unwrap();
        for (existing, partial) in [
            (None, false),
            (Some(&existing), true),
            (Some(&existing), false),
        ] {
            match parse_app_put(body, "/prod/web", existing, partial) {
                Ok(AppPut::App(app)) => check_app(&app)?,
                Ok(AppPut::Rollback { version }) => prop_assert!(!version.is_empty()),
                Err(e) => check_error(&e)?,
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        /// Arbitrary bytes as an app body.
        #[test]
        fn fuzz_marathon_app_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..128)) {
            check_body(&body)?;
        }

        /// Arbitrary JSON values (objects with the app's field names) as an app body.
        #[test]
        fn fuzz_marathon_app_json_values(value in arb_json()) {
            check_body(&serde_json::to_vec(&value).unwrap())?;
        }

        /// A full valid definition with a few values replaced by arbitrary JSON or removed.
        #[test]
        fn fuzz_marathon_app_damaged_definitions(value in damaged_app()) {
            check_body(&serde_json::to_vec(&value).unwrap())?;
        }
    }

    #[test]
    fn fuzz_base_app_is_valid() {
        let app = parse_app(&serde_json::to_vec(&base_app()).unwrap()).unwrap();
        assert_eq!(app.health_checks.len(), 1);
    }
}

/// Numbers the fuzz suite found accepted but unusable, kept as plain regression cases.
#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    fn paths(body: Value) -> BTreeMap<String, Vec<String>> {
        let error = parse_app(&serde_json::to_vec(&body).unwrap()).unwrap_err();
        assert_eq!(error.status, 422, "{:?}", error.body);
        details_by_path(&error)
    }

    #[test]
    fn fuzz_regression_resource_numbers_beyond_the_master_model_are_refused() {
        // Found by fuzz_marathon_app_json_values: {"cpus": 1000000001} was accepted and then
        // never launched (the master's resources hold at most 1e9).
        for field in ["cpus", "mem", "disk"] {
            for value in [json!(1_000_000_001), json!(1e300)] {
                let got = paths(json!({"id": "a", "cmd": "xx", field: value}));
                assert_eq!(
                    got.get(&format!("/{field}")).map(Vec::as_slice),
                    Some(&["error.max".to_string()][..]),
                    "{field}={value}"
                );
            }
            let got = paths(json!({"id": "a", "cmd": "xx", field: -1}));
            assert_eq!(
                got.get(&format!("/{field}")).map(Vec::as_slice),
                Some(&["error.min".to_string()][..]),
                "{field}"
            );
        }
        assert!(
            parse_app(br#"{"id": "a", "cmd": "xx", "cpus": 1000000000, "mem": 1000000000}"#)
                .is_ok()
        );
    }

    #[test]
    fn fuzz_regression_task_durations_beyond_the_master_limit_are_refused() {
        let year = limits::TASK_SECONDS_MAX;
        for field in [
            "gracePeriodSeconds",
            "intervalSeconds",
            "timeoutSeconds",
            "delaySeconds",
        ] {
            let got = paths(
                json!({"id": "a", "cmd": "xx", "healthChecks": [{"protocol": "TCP", field: year + 1}]}),
            );
            assert_eq!(
                got.get(&format!("/healthChecks(0)/{field}"))
                    .map(Vec::as_slice),
                Some(&["error.max".to_string()][..]),
                "{field}"
            );
        }
        let got = paths(json!({"id": "a", "cmd": "xx", "taskKillGracePeriodSeconds": year + 1}));
        assert!(got.contains_key("/taskKillGracePeriodSeconds"), "{got:?}");
        assert!(parse_app(
            &serde_json::to_vec(
                &json!({"id": "a", "cmd": "xx", "taskKillGracePeriodSeconds": year})
            )
            .unwrap()
        )
        .is_ok());
    }
}
