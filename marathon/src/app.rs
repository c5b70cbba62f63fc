//! The app definition as Marathon's JSON (`types/app.raml`, `raml/AppConversion.scala`), with
//! Marathon 1.10 defaults, app ID normalization and the partial-update merge of
//! `PUT /v2/apps/{id}`.
//!
//! [`AppDefinition`] serializes exactly the definition fields of `GET /v2/apps/{id}` (see
//! `shared/reference/marathon-api.md` §5.1): collections are always present (possibly empty),
//! absent optional values are omitted, and the legacy `ports`, `uris`, `ipAddress` keys and the
//! never-echoed `tty`, `check`, `resourceLimits` are not written. [`AppUpdate`] is the lenient
//! input form (every field optional, legacy fields accepted, unknown fields ignored); turn one
//! into a definition with [`AppDefinition::apply_update`] after [`crate::validation`] checked
//! its JSON types.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::constraints::Constraint;

/// Default `instances`.
pub const DEFAULT_INSTANCES: u32 = 1;
/// Default `cpus`.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Default `mem`, MiB.
pub const DEFAULT_MEM: f64 = 128.0;
/// Default `disk`, MiB.
pub const DEFAULT_DISK: f64 = 0.0;
/// Default `gpus`.
pub const DEFAULT_GPUS: u32 = 0;
/// Default `backoffSeconds`.
pub const DEFAULT_BACKOFF_SECONDS: u32 = 1;
/// Default `backoffFactor`.
pub const DEFAULT_BACKOFF_FACTOR: f64 = 1.15;
/// Default `maxLaunchDelaySeconds` (Marathon 1.9+; older releases used 3600).
pub const DEFAULT_MAX_LAUNCH_DELAY_SECONDS: u32 = 300;
/// Default `executor` (the command executor).
pub const DEFAULT_EXECUTOR: &str = "";
/// Name of the port definition Marathon adds when none is given.
pub const DEFAULT_PORT_NAME: &str = "default";

/// The regular expression every app or group ID segment must fully match (`PathId.scala`).
pub const PATH_ID_SEGMENT_PATTERN: &str = r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])|(\.|\.\.)$";

/// Last segments an app ID may not have: they clash with REST routes.
pub const RESERVED_PATH_KEYWORDS: [&str; 5] = ["restart", "tasks", "versions", ".", ".."];

/// Resolves an app or group ID against `base` (an absolute path such as `/` or `/prod`) the way
/// Marathon's `PathId.canonicalPath` does: a relative ID is appended to `base`, `.` segments are
/// dropped, `..` removes the previous segment (never above the root), empty segments vanish.
///
/// ```
/// use plateau_marathon::app::canonical_path_id;
/// assert_eq!(canonical_path_id("web", "/"), "/web");
/// assert_eq!(canonical_path_id("../db", "/prod/web"), "/prod/db");
/// assert_eq!(canonical_path_id("/a//b/./c/..", "/"), "/a/b");
/// ```
pub fn canonical_path_id(raw: &str, base: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let relative = !raw.starts_with('/');
    let base_segments = if relative {
        base.split('/')
    } else {
        "".split('/')
    };
    for segment in base_segments.chain(raw.split('/')) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

/// Marathon's validation messages for an ID already made canonical (empty when valid).
pub fn path_id_errors(canonical_id: &str) -> Vec<String> {
    let segment_re = path_id_segment_regex();
    let segments: Vec<&str> = canonical_id.split('/').filter(|s| !s.is_empty()).collect();
    let mut errors = Vec::new();
    if !segments.iter().all(|s| segment_re.is_match(s)) {
        errors.push(format!(
            "must fully match regular expression '{PATH_ID_SEGMENT_PATTERN}'"
        ));
    }
    if segments
        .last()
        .is_some_and(|last| RESERVED_PATH_KEYWORDS.contains(last))
    {
        errors.push(format!(
            "must not end with any of the following reserved keywords: {}",
            RESERVED_PATH_KEYWORDS.join(", ")
        ));
    }
    errors
}

fn path_id_segment_regex() -> &'static regex::Regex {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    // Java's Matcher.matches() needs the whole segment; anchor the alternation as a whole.
    RE.get_or_init(|| {
        regex::Regex::new(&format!(
            "^(?:{})$",
            PATH_ID_SEGMENT_PATTERN
                .trim_start_matches('^')
                .trim_end_matches('$')
        ))
        .expect("PATH_ID_SEGMENT_PATTERN compiles")
    })
}

/// An environment variable value: a string, or a reference to a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// A plain value.
    Value(String),
    /// `{"secret": "name"}`: the value of the app secret `name`.
    Secret {
        /// Name of an entry of the app's `secrets`.
        secret: String,
    },
}

/// An app secret: `{"source": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Where the secret store finds it.
    pub source: String,
}

/// A URI the Mesos fetcher downloads into the sandbox (`fetch[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// What to fetch.
    pub uri: String,
    /// Unpack archives (default true).
    #[serde(default = "default_true")]
    pub extract: bool,
    /// Mark executable (default false).
    #[serde(default)]
    pub executable: bool,
    /// Use the fetcher cache (default false).
    #[serde(default)]
    pub cache: bool,
    /// File name in the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_path: Option<String>,
}

impl Artifact {
    /// The artifact a legacy `uris` entry stands for: extracted when it names an archive,
    /// as Marathon's `FetchUri.isExtract` decides.
    pub fn from_legacy_uri(uri: &str) -> Self {
        const ARCHIVES: [&str; 7] = [
            ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip",
        ];
        Self {
            uri: uri.to_string(),
            extract: ARCHIVES.iter().any(|ext| uri.ends_with(ext)),
            executable: false,
            cache: false,
            dest_path: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// A port of a host-networked app (`portDefinitions[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortDefinition {
    /// Service port; 0 means "assign one" (from 10000..20000).
    #[serde(default)]
    pub port: u32,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Name, unique within the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels (read by balancers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl PortDefinition {
    /// The port Marathon gives an app that declares none: `{"port":0,"protocol":"tcp","name":"default"}`.
    pub fn default_port() -> Self {
        Self {
            port: 0,
            protocol: default_protocol(),
            name: Some(DEFAULT_PORT_NAME.to_string()),
            labels: BTreeMap::new(),
        }
    }

    /// A port from the legacy `ports` list.
    pub fn from_legacy_port(port: u32) -> Self {
        Self {
            port,
            protocol: default_protocol(),
            name: None,
            labels: BTreeMap::new(),
        }
    }
}

fn default_protocol() -> String {
    "tcp".to_string()
}

/// How a network is attached (`networks[].mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The agent's network.
    #[serde(rename = "host")]
    Host,
    /// A named container (CNI / user) network.
    #[serde(rename = "container")]
    Container,
    /// The Docker bridge.
    #[serde(rename = "container/bridge")]
    ContainerBridge,
}

/// One network of an app (`networks[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Attachment mode.
    pub mode: NetworkMode,
    /// Network name (container mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels passed to the network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// `{"mode":"host"}`, the default network of an app.
    pub fn host() -> Self {
        Self {
            mode: NetworkMode::Host,
            name: None,
            labels: BTreeMap::new(),
        }
    }
}

/// Health check protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthCheckProtocol {
    /// HTTP, run by the scheduler (deprecated since 1.4).
    Http,
    /// HTTPS without certificate checks, run by the scheduler.
    Https,
    /// TCP connect, run by the scheduler.
    Tcp,
    /// A command run by the agent.
    Command,
    /// HTTP run by the agent.
    MesosHttp,
    /// HTTPS run by the agent.
    MesosHttps,
    /// TCP run by the agent.
    MesosTcp,
}

impl HealthCheckProtocol {
    /// Parses a protocol name in any case (RAML enums are matched case-insensitively).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "HTTP" => Self::Http,
            "HTTPS" => Self::Https,
            "TCP" => Self::Tcp,
            "COMMAND" => Self::Command,
            "MESOS_HTTP" => Self::MesosHttp,
            "MESOS_HTTPS" => Self::MesosHttps,
            "MESOS_TCP" => Self::MesosTcp,
            _ => return None,
        })
    }

    /// True for the protocols that request a path.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Self::Http | Self::Https | Self::MesosHttp | Self::MesosHttps
        )
    }

    /// True for the protocols Marathon itself runs (HTTP, HTTPS, TCP).
    pub fn is_marathon_run(self) -> bool {
        matches!(self, Self::Http | Self::Https | Self::Tcp)
    }
}

/// `{"value": "..."}` of a COMMAND health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandCheck {
    /// Shell command; exit 0 means healthy.
    pub value: String,
}

/// A health check (`healthChecks[]`, `health-checks.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Protocol (default HTTP).
    #[serde(default = "default_hc_protocol")]
    pub protocol: HealthCheckProtocol,
    /// Command of a COMMAND check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandCheck>,
    /// Failures are ignored this long after start or until the first success (default 300).
    #[serde(default = "default_grace_period")]
    pub grace_period_seconds: u32,
    /// Time between checks (default 60).
    #[serde(default = "default_hc_interval")]
    pub interval_seconds: u32,
    /// A check slower than this fails (default 20).
    #[serde(default = "default_hc_timeout")]
    pub timeout_seconds: u32,
    /// Kill after this many failures in a row (default 3).
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u32,
    /// Wait before the first check (default 15).
    #[serde(default = "default_hc_delay")]
    pub delay_seconds: u32,
    /// Request path of HTTP checks (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Index into the app's ports (default 0 when `port` is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<u32>,
    /// A fixed port to check instead of `portIndex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Discard 1xx results (HTTP checks, default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_http1xx: Option<bool>,
    /// `IPv4` (default) or `IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_protocol: Option<String>,
}

fn default_hc_protocol() -> HealthCheckProtocol {
    HealthCheckProtocol::Http
}
fn default_grace_period() -> u32 {
    300
}
fn default_hc_interval() -> u32 {
    60
}
fn default_hc_timeout() -> u32 {
    20
}
fn default_max_failures() -> u32 {
    3
}
fn default_hc_delay() -> u32 {
    15
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            protocol: default_hc_protocol(),
            command: None,
            grace_period_seconds: default_grace_period(),
            interval_seconds: default_hc_interval(),
            timeout_seconds: default_hc_timeout(),
            max_consecutive_failures: default_max_failures(),
            delay_seconds: default_hc_delay(),
            path: None,
            port_index: None,
            port: None,
            ignore_http1xx: None,
            ip_protocol: None,
        }
    }
}

impl HealthCheck {
    /// Fills the defaults Marathon shows on output: `path` `/` and `ignoreHttp1xx` false for HTTP
    /// checks, `portIndex` 0 when no `port`, `ipProtocol` `IPv4`, for all but COMMAND checks.
    pub fn normalize(&mut self) {
        if self.protocol == HealthCheckProtocol::Command {
            return;
        }
        if self.protocol.is_http() && self.path.is_none() {
            self.path = Some("/".to_string());
        }
        if matches!(
            self.protocol,
            HealthCheckProtocol::Http | HealthCheckProtocol::Https
        ) && self.ignore_http1xx.is_none()
        {
            self.ignore_http1xx = Some(false);
        }
        if self.port.is_none() && self.port_index.is_none() {
            self.port_index = Some(0);
        }
        if self.ip_protocol.is_none() {
            self.ip_protocol = Some("IPv4".to_string());
        }
    }
}

/// A readiness check (`readinessChecks[]`, at most one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessCheck {
    /// Name (default `readinessCheck`).
    #[serde(default = "default_rc_name")]
    pub name: String,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default = "default_rc_protocol")]
    pub protocol: String,
    /// Request path (default `/`).
    #[serde(default = "default_rc_path")]
    pub path: String,
    /// Name of the port to probe (default `http-api`).
    #[serde(default = "default_rc_port_name")]
    pub port_name: String,
    /// Time between probes (default 30).
    #[serde(default = "default_rc_interval")]
    pub interval_seconds: u32,
    /// Probe timeout, below the interval (default 10).
    #[serde(default = "default_rc_timeout")]
    pub timeout_seconds: u32,
    /// Status codes meaning ready (default `[200]`).
    #[serde(default = "default_ready_codes")]
    pub http_status_codes_for_ready: Vec<u16>,
    /// Keep the last response for `readinessCheckResults` (default false).
    #[serde(default)]
    pub preserve_last_response: bool,
}

fn default_rc_name() -> String {
    "readinessCheck".to_string()
}
fn default_rc_protocol() -> String {
    "HTTP".to_string()
}
fn default_rc_path() -> String {
    "/".to_string()
}
fn default_rc_port_name() -> String {
    "http-api".to_string()
}
fn default_rc_interval() -> u32 {
    30
}
fn default_rc_timeout() -> u32 {
    10
}
fn default_ready_codes() -> Vec<u16> {
    vec![200]
}

/// How deployments replace instances (`upgradeStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    /// Fraction of instances kept healthy during an upgrade, in [0, 1] (default 1).
    #[serde(default = "one")]
    pub minimum_health_capacity: f64,
    /// Fraction of extra instances allowed during an upgrade, in [0, 1] (default 1).
    #[serde(default = "one")]
    pub maximum_over_capacity: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        Self {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

impl UpgradeStrategy {
    /// The default for apps with persistent volumes (resident apps): `{0.5, 0}`.
    pub fn resident_default() -> Self {
        Self {
            minimum_health_capacity: 0.5,
            maximum_over_capacity: 0.0,
        }
    }
}

/// What to do with unreachable instances (`unreachableStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableStrategy {
    /// `"disabled"`: never replace.
    Disabled,
    /// Replace after `inactive_after_seconds`, expunge after `expunge_after_seconds`.
    Enabled {
        /// Seconds until a replacement is launched.
        inactive_after_seconds: u64,
        /// Seconds until the instance is forgotten.
        expunge_after_seconds: u64,
    },
}

impl Default for UnreachableStrategy {
    fn default() -> Self {
        Self::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnreachableEnabledJson {
    #[serde(default)]
    inactive_after_seconds: u64,
    #[serde(default)]
    expunge_after_seconds: u64,
}

impl Serialize for UnreachableStrategy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Disabled => serializer.serialize_str("disabled"),
            Self::Enabled {
                inactive_after_seconds,
                expunge_after_seconds,
            } => UnreachableEnabledJson {
                inactive_after_seconds,
                expunge_after_seconds,
            }
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for UnreachableStrategy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Enabled(UnreachableEnabledJson),
        }
        match Either::deserialize(deserializer)? {
            Either::Text(text) if text.eq_ignore_ascii_case("disabled") => Ok(Self::Disabled),
            Either::Text(text) => Err(serde::de::Error::custom(format!(
                "unknown unreachableStrategy {text:?}"
            ))),
            Either::Enabled(e) => Ok(Self::Enabled {
                inactive_after_seconds: e.inactive_after_seconds,
                expunge_after_seconds: e.expunge_after_seconds,
            }),
        }
    }
}

/// Which instances go first when scaling down (`killSelection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KillSelection {
    /// Newest instances first (default).
    #[default]
    YoungestFirst,
    /// Oldest instances first.
    OldestFirst,
}

/// Settings of apps with local persistent volumes (`residency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Residency {
    /// Seconds before relaunching elsewhere (default 3600).
    #[serde(default = "default_relaunch_escalation")]
    pub relaunch_escalation_timeout_seconds: u32,
    /// `WAIT_FOREVER` (default) or `RELAUNCH_AFTER_TIMEOUT`.
    #[serde(default = "default_task_lost_behavior")]
    pub task_lost_behavior: String,
}

fn default_relaunch_escalation() -> u32 {
    3600
}
fn default_task_lost_behavior() -> String {
    "WAIT_FOREVER".to_string()
}

impl Default for Residency {
    fn default() -> Self {
        Self {
            relaunch_escalation_timeout_seconds: default_relaunch_escalation(),
            task_lost_behavior: default_task_lost_behavior(),
        }
    }
}

/// `versionInfo`: when the app was last scaled and last changed otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Timestamp of the last change of `instances` (or any change).
    pub last_scaling_at: String,
    /// Timestamp of the last change other than `instances`.
    pub last_config_change_at: String,
}

/// Container engine (`container.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerType {
    /// The Docker containerizer (default).
    #[default]
    Docker,
    /// The Mesos containerizer.
    Mesos,
}

/// A `docker` parameter (`--key=value` for `docker run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerParameter {
    /// Option name.
    pub key: String,
    /// Option value.
    pub value: String,
}

/// A container port mapping (`container.portMappings[]`, legacy `container.docker.portMappings[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port inside the container; 0 uses the host port.
    #[serde(default)]
    pub container_port: u32,
    /// Host port; 0 means "from the offer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    /// Service port; 0 means "assign one".
    #[serde(default)]
    pub service_port: u32,
    /// `tcp`, `udp` or `udp,tcp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Name, unique within the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels (read by balancers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The `docker` part of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerContainer {
    /// Image to run.
    #[serde(default)]
    pub image: String,
    /// Legacy network mode: `BRIDGE`, `HOST`, `USER` or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extra `docker run` options.
    #[serde(default)]
    pub parameters: Vec<DockerParameter>,
    /// Run privileged.
    #[serde(default)]
    pub privileged: bool,
    /// Pull the image even when present.
    #[serde(default)]
    pub force_pull_image: bool,
    /// Legacy location of port mappings; moved to `container.portMappings` on input.
    #[serde(default, skip_serializing)]
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// A container volume (`container.volumes[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Mount point in the container.
    #[serde(default)]
    pub container_path: String,
    /// Host directory (host volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RO` or `RW`.
    #[serde(default = "default_volume_mode")]
    pub mode: String,
    /// Local persistent volume settings, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<serde_json::Value>,
    /// External volume settings, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
}

fn default_volume_mode() -> String {
    "RW".to_string()
}

/// An app's container (`container`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Engine (default DOCKER).
    #[serde(rename = "type", default)]
    pub kind: ContainerType,
    /// Docker settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerContainer>,
    /// Port mappings (container networking only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mappings: Option<Vec<PortMapping>>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

impl Container {
    /// True when a volume is a local persistent volume.
    pub fn has_persistent_volumes(&self) -> bool {
        self.volumes.iter().any(|v| v.persistent.is_some())
    }
}

/// An app definition with every default filled in: what `GET /v2/apps/{id}` shows as the
/// definition part of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppDefinition {
    /// Absolute app ID (`/group/app`).
    pub id: String,
    /// Shell command (`/bin/sh -c cmd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Exec-form command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// User to run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment.
    pub env: BTreeMap<String, EnvValue>,
    /// Number of instances.
    pub instances: u32,
    /// CPU shares per instance.
    pub cpus: f64,
    /// Memory per instance, MiB.
    pub mem: f64,
    /// Disk per instance, MiB.
    pub disk: f64,
    /// GPUs per instance.
    pub gpus: u32,
    /// Executor (`""` = command executor, or `//cmd`, or a path).
    pub executor: String,
    /// Placement constraints.
    pub constraints: Vec<Constraint>,
    /// Artifacts to fetch.
    pub fetch: Vec<Artifact>,
    /// URLs for the artifact store.
    pub store_urls: Vec<String>,
    /// First launch delay after a failure, seconds.
    pub backoff_seconds: u32,
    /// Growth of the launch delay per failure.
    pub backoff_factor: f64,
    /// Cap of the launch delay, seconds.
    pub max_launch_delay_seconds: u32,
    /// Container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Health checks.
    pub health_checks: Vec<HealthCheck>,
    /// Readiness checks (at most one).
    pub readiness_checks: Vec<ReadinessCheck>,
    /// IDs of apps or groups this app depends on.
    pub dependencies: Vec<String>,
    /// Upgrade strategy.
    pub upgrade_strategy: UpgradeStrategy,
    /// Unreachable strategy.
    pub unreachable_strategy: UnreachableStrategy,
    /// Scale-down order.
    pub kill_selection: KillSelection,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Roles whose resources may be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_resource_roles: Option<Vec<String>>,
    /// Networks.
    pub networks: Vec<Network>,
    /// Ports (host networking).
    pub port_definitions: Vec<PortDefinition>,
    /// Host port = service port.
    pub require_ports: bool,
    /// Residency (persistent volumes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residency: Option<Residency>,
    /// Secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Seconds from SIGTERM to SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<u32>,
    /// Mesos role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Version timestamp.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Version details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
}

impl Default for AppDefinition {
    fn default() -> Self {
        Self {
            id: String::new(),
            cmd: None,
            args: Vec::new(),
            user: None,
            env: BTreeMap::new(),
            instances: DEFAULT_INSTANCES,
            cpus: DEFAULT_CPUS,
            mem: DEFAULT_MEM,
            disk: DEFAULT_DISK,
            gpus: DEFAULT_GPUS,
            executor: DEFAULT_EXECUTOR.to_string(),
            constraints: Vec::new(),
            fetch: Vec::new(),
            store_urls: Vec::new(),
            backoff_seconds: DEFAULT_BACKOFF_SECONDS,
            backoff_factor: DEFAULT_BACKOFF_FACTOR,
            max_launch_delay_seconds: DEFAULT_MAX_LAUNCH_DELAY_SECONDS,
            container: None,
            health_checks: Vec::new(),
            readiness_checks: Vec::new(),
            dependencies: Vec::new(),
            upgrade_strategy: UpgradeStrategy::default(),
            unreachable_strategy: UnreachableStrategy::default(),
            kill_selection: KillSelection::default(),
            labels: BTreeMap::new(),
            accepted_resource_roles: None,
            networks: vec![Network::host()],
            port_definitions: vec![PortDefinition::default_port()],
            require_ports: false,
            residency: None,
            secrets: BTreeMap::new(),
            task_kill_grace_period_seconds: None,
            role: None,
            version: None,
            version_info: None,
        }
    }
}

/// The input form of an app (`POST /v2/apps` body, `PUT`/`PATCH /v2/apps/{id}` body): every
/// field optional, legacy fields accepted, unknown fields ignored. Constraints are kept raw so
/// that validation can name the bad one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)] // Field meanings are those of AppDefinition.
pub struct AppUpdate {
    pub id: Option<String>,
    pub cmd: Option<String>,
    pub args: Option<Vec<String>>,
    pub user: Option<String>,
    pub env: Option<BTreeMap<String, EnvValue>>,
    pub instances: Option<u32>,
    pub cpus: Option<f64>,
    pub mem: Option<f64>,
    pub disk: Option<f64>,
    pub gpus: Option<u32>,
    pub executor: Option<String>,
    pub constraints: Option<Vec<Vec<String>>>,
    pub fetch: Option<Vec<Artifact>>,
    /// Legacy form of `fetch`.
    pub uris: Option<Vec<String>>,
    pub store_urls: Option<Vec<String>>,
    pub backoff_seconds: Option<u32>,
    pub backoff_factor: Option<f64>,
    pub max_launch_delay_seconds: Option<u32>,
    pub container: Option<Container>,
    pub health_checks: Option<Vec<HealthCheck>>,
    pub readiness_checks: Option<Vec<ReadinessCheck>>,
    pub dependencies: Option<Vec<String>>,
    pub upgrade_strategy: Option<UpgradeStrategy>,
    pub unreachable_strategy: Option<UnreachableStrategy>,
    pub kill_selection: Option<KillSelection>,
    pub labels: Option<BTreeMap<String, String>>,
    pub accepted_resource_roles: Option<Vec<String>>,
    pub networks: Option<Vec<Network>>,
    /// Legacy IP-per-task form of `networks`.
    pub ip_address: Option<serde_json::Value>,
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Legacy form of `portDefinitions`.
    pub ports: Option<Vec<u32>>,
    pub require_ports: Option<bool>,
    pub residency: Option<Residency>,
    pub secrets: Option<BTreeMap<String, Secret>>,
    pub task_kill_grace_period_seconds: Option<u32>,
    pub role: Option<String>,
    /// On `PUT`, a version alone (with at most `id`) asks for a rollback.
    pub version: Option<String>,
}

impl AppUpdate {
    /// True when only `version` (and maybe `id`) is set: `PUT /v2/apps/{id}` with
    /// `{"version": "..."}` rolls the app back to that version.
    pub fn is_rollback(&self) -> bool {
        self.version.is_some() && {
            let without = AppUpdate {
                id: None,
                version: None,
                ..self.clone()
            };
            without == AppUpdate::default()
        }
    }
}

/// What [`AppDefinition::apply_update`] took from the update, for validation and normalization.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateProvenance {
    /// `portDefinitions` (or legacy `ports`) came from the update.
    pub port_definitions_given: bool,
    /// `networks` came from the update (not derived from legacy fields).
    pub networks_given: bool,
}

/// The networks a legacy `container.docker.network` stands for (None when not set).
pub(crate) fn legacy_docker_networks(
    container: &Container,
    ip_address: Option<&serde_json::Value>,
) -> Option<Vec<Network>> {
    let network = container.docker.as_ref()?.network.as_deref()?;
    let name = ip_address
        .and_then(|ip| ip.get("networkName"))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    Some(match network.to_ascii_uppercase().as_str() {
        "BRIDGE" => vec![Network {
            mode: NetworkMode::ContainerBridge,
            name: None,
            labels: BTreeMap::new(),
        }],
        "USER" => vec![Network {
            mode: NetworkMode::Container,
            name,
            labels: BTreeMap::new(),
        }],
        "NONE" => Vec::new(),
        _ => vec![Network::host()],
    })
}

fn ip_address_networks(ip_address: &serde_json::Value) -> Vec<Network> {
    let name = ip_address
        .get("networkName")
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let labels = ip_address
        .get("labels")
        .and_then(|l| l.as_object())
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    vec![Network {
        mode: NetworkMode::Container,
        name,
        labels,
    }]
}

impl AppDefinition {
    /// True when every network is `host` (or there is none).
    pub fn is_host_networking(&self) -> bool {
        self.networks.iter().all(|n| n.mode == NetworkMode::Host)
    }

    /// Applies an update: every field present in `update` replaces the current value, the
    /// others are kept (`PUT /v2/apps/{id}` with `partialUpdate=true`, and `PATCH`). Start from
    /// [`AppDefinition::default`] to create an app. The ID is not changed here: set it first
    /// (from the body for `POST`, from the URL for `PUT`). Constraints that are invalid are
    /// dropped here; run [`crate::validation`] first to refuse them.
    ///
    /// Setting `cmd` without `args` clears `args`, and the other way round, so that a client can
    /// switch between the two forms with a partial update.
    pub fn apply_update(&self, update: &AppUpdate) -> (AppDefinition, UpdateProvenance) {
        let mut app = self.clone();
        let mut provenance = UpdateProvenance::default();
        match (&update.cmd, &update.args) {
            (Some(cmd), None) => {
                app.cmd = Some(cmd.clone());
                app.args.clear();
            }
            (None, Some(args)) => {
                app.args = args.clone();
                app.cmd = None;
            }
            (Some(cmd), Some(args)) => {
                app.cmd = Some(cmd.clone());
                app.args = args.clone();
            }
            (None, None) => {}
        }
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(value) = &update.$field {
                    app.$field = value.clone();
                }
            )*};
        }
        take!(
            env,
            instances,
            cpus,
            mem,
            disk,
            gpus,
            executor,
            fetch,
            store_urls,
            backoff_seconds,
            backoff_factor,
            max_launch_delay_seconds,
            health_checks,
            readiness_checks,
            dependencies,
            upgrade_strategy,
            unreachable_strategy,
            kill_selection,
            labels,
            require_ports,
            secrets
        );
        if let Some(user) = &update.user {
            app.user = Some(user.clone());
        }
        if let Some(grace) = update.task_kill_grace_period_seconds {
            app.task_kill_grace_period_seconds = Some(grace);
        }
        if let Some(role) = &update.role {
            app.role = Some(role.clone());
        }
        if let Some(roles) = &update.accepted_resource_roles {
            app.accepted_resource_roles = Some(roles.clone());
        }
        if let Some(residency) = &update.residency {
            app.residency = Some(residency.clone());
        }
        if let Some(constraints) = &update.constraints {
            app.constraints = constraints
                .iter()
                .filter_map(|parts| Constraint::from_parts(parts).ok())
                .collect();
        }
        if let Some(uris) = &update.uris {
            if update.fetch.is_none() {
                app.fetch = uris.iter().map(|u| Artifact::from_legacy_uri(u)).collect();
            }
        }
        if let Some(container) = &update.container {
            let mut container = container.clone();
            // Legacy docker.portMappings move up to container.portMappings.
            if let Some(docker) = container.docker.as_mut() {
                if let Some(mappings) = docker.port_mappings.take() {
                    if container.port_mappings.is_none() {
                        container.port_mappings = Some(mappings);
                    }
                }
            }
            app.container = Some(container);
        }
        // Networks: explicit, else derived from legacy docker.network / ipAddress.
        if let Some(networks) = &update.networks {
            app.networks = networks.clone();
            provenance.networks_given = true;
        } else if let Some(derived) = update
            .container
            .as_ref()
            .and_then(|c| legacy_docker_networks(c, update.ip_address.as_ref()))
        {
            app.networks = derived;
        } else if let Some(ip) = &update.ip_address {
            app.networks = ip_address_networks(ip);
        }
        if let Some(definitions) = &update.port_definitions {
            app.port_definitions = definitions.clone();
            provenance.port_definitions_given = true;
        } else if let Some(ports) = &update.ports {
            app.port_definitions = ports
                .iter()
                .map(|&p| PortDefinition::from_legacy_port(p))
                .collect();
            provenance.port_definitions_given = true;
        }
        if let Some(version) = &update.version {
            app.version = Some(version.clone());
        }
        app.normalize(provenance);
        (app, provenance)
    }

    /// Marathon's normalization after a merge: port definitions only with host networking,
    /// port mappings only with container networking, health check defaults, resident defaults.
    fn normalize(&mut self, provenance: UpdateProvenance) {
        let host = self.is_host_networking();
        if !host && !provenance.port_definitions_given {
            self.port_definitions.clear();
        }
        if let Some(container) = self.container.as_mut() {
            if host {
                container.port_mappings = None;
            }
        }
        let persistent = self
            .container
            .as_ref()
            .is_some_and(Container::has_persistent_volumes);
        if persistent && self.residency.is_none() {
            self.residency = Some(Residency::default());
        }
    }

    /// Fills output defaults that depend on validation having passed (health check `portIndex`).
    pub fn finish(&mut self) {
        for check in &mut self.health_checks {
            check.normalize();
        }
    }

    /// Number of ports (port definitions, or container port mappings with container networking).
    pub fn port_count(&self) -> usize {
        match self
            .container
            .as_ref()
            .and_then(|c| c.port_mappings.as_ref())
        {
            Some(mappings) if !self.is_host_networking() => mappings.len(),
            _ => self.port_definitions.len(),
        }
    }
}

/// Instance counts shown with every app in `GET /v2/apps` and `GET /v2/apps/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppCounts {
    /// Staged tasks.
    pub tasks_staged: u32,
    /// Running tasks.
    pub tasks_running: u32,
    /// Tasks with all health checks passing.
    pub tasks_healthy: u32,
    /// Tasks with a failing health check.
    pub tasks_unhealthy: u32,
}

/// `{"id": "<deployment uuid>"}` in an app's `deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRef {
    /// Deployment ID.
    pub id: String,
}

/// An app as `GET /v2/apps` lists it: the definition, the counts and the deployments. Embeds
/// (`tasks`, `lastTaskFailure`, ...) are added by the HTTP layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppWithStatus<'a> {
    /// The definition fields.
    #[serde(flatten)]
    pub app: &'a AppDefinition,
    /// The counts.
    #[serde(flatten)]
    pub counts: AppCounts,
    /// Running deployments that touch the app.
    pub deployments: Vec<DeploymentRef>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_ids_are_made_canonical() {
        assert_eq!(canonical_path_id("app", "/"), "/app");
        assert_eq!(canonical_path_id("/grp/app", "/"), "/grp/app");
        assert_eq!(canonical_path_id("./app", "/grp"), "/grp/app");
        assert_eq!(canonical_path_id("../../../x", "/a/b"), "/x");
        assert_eq!(canonical_path_id("", "/"), "/");
    }

    #[test]
    fn path_id_validation() {
        assert!(path_id_errors("/prod/web-1.v2").is_empty());
        assert!(path_id_errors("/a/b.c/d-e").is_empty());
        assert_eq!(path_id_errors("/Web").len(), 1);
        assert_eq!(path_id_errors("/-web").len(), 1);
        assert_eq!(path_id_errors("/web-").len(), 1);
        assert_eq!(path_id_errors("/a..b").len(), 1);
        assert_eq!(path_id_errors("/a b").len(), 1);
        assert_eq!(
            path_id_errors("/grp/tasks"),
            vec!["must not end with any of the following reserved keywords: restart, tasks, versions, ., .."]
        );
    }

    #[test]
    fn default_app_serializes_like_marathon() {
        let app = AppDefinition {
            id: "/sleep".into(),
            cmd: Some("sleep 100".into()),
            ..AppDefinition::default()
        };
        let json = serde_json::to_value(&app).unwrap();
        assert_eq!(
            json,
            json!({
                "id": "/sleep",
                "cmd": "sleep 100",
                "env": {},
                "instances": 1,
                "cpus": 1.0,
                "mem": 128.0,
                "disk": 0.0,
                "gpus": 0,
                "executor": "",
                "constraints": [],
                "fetch": [],
                "storeUrls": [],
                "backoffSeconds": 1,
                "backoffFactor": 1.15,
                "maxLaunchDelaySeconds": 300,
                "healthChecks": [],
                "readinessChecks": [],
                "dependencies": [],
                "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
                "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
                "killSelection": "YOUNGEST_FIRST",
                "labels": {},
                "networks": [{"mode": "host"}],
                "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "default"}],
                "requirePorts": false,
                "secrets": {}
            })
        );
        let back: AppDefinition = serde_json::from_value(json).unwrap();
        assert_eq!(back, app);
    }

    #[test]
    fn unreachable_strategy_forms() {
        let disabled: UnreachableStrategy = serde_json::from_value(json!("disabled")).unwrap();
        assert_eq!(disabled, UnreachableStrategy::Disabled);
        assert_eq!(serde_json::to_value(disabled).unwrap(), json!("disabled"));
        let enabled: UnreachableStrategy =
            serde_json::from_value(json!({"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}))
                .unwrap();
        assert_eq!(
            enabled,
            UnreachableStrategy::Enabled {
                inactive_after_seconds: 60,
                expunge_after_seconds: 120
            }
        );
    }

    #[test]
    fn health_check_defaults() {
        let mut hc: HealthCheck = serde_json::from_value(json!({})).unwrap();
        hc.normalize();
        assert_eq!(
            serde_json::to_value(&hc).unwrap(),
            json!({
                "protocol": "HTTP",
                "gracePeriodSeconds": 300,
                "intervalSeconds": 60,
                "timeoutSeconds": 20,
                "maxConsecutiveFailures": 3,
                "delaySeconds": 15,
                "path": "/",
                "portIndex": 0,
                "ignoreHttp1xx": false,
                "ipProtocol": "IPv4"
            })
        );
        let mut tcp: HealthCheck =
            serde_json::from_value(json!({"protocol": "TCP", "port": 8080})).unwrap();
        tcp.normalize();
        assert_eq!(tcp.path, None);
        assert_eq!(tcp.port_index, None);
        let mut command: HealthCheck =
            serde_json::from_value(json!({"protocol": "COMMAND", "command": {"value": "true"}}))
                .unwrap();
        command.normalize();
        assert_eq!(command.port_index, None);
        assert_eq!(command.ip_protocol, None);
    }

    #[test]
    fn partial_update_replaces_only_given_fields() {
        let mut base = AppDefinition {
            id: "/web".into(),
            cmd: Some("serve".into()),
            instances: 3,
            ..AppDefinition::default()
        };
        base.labels.insert("owner".into(), "ops".into());
        let update: AppUpdate = serde_json::from_value(json!({"instances": 5})).unwrap();
        let (scaled, _) = base.apply_update(&update);
        assert_eq!(scaled.instances, 5);
        assert_eq!(scaled.cmd.as_deref(), Some("serve"));
        assert_eq!(scaled.labels, base.labels);

        let update: AppUpdate =
            serde_json::from_value(json!({"args": ["serve", "--port", "80"]})).unwrap();
        let (exec_form, _) = base.apply_update(&update);
        assert_eq!(exec_form.cmd, None);
        assert_eq!(exec_form.args.len(), 3);

        let update: AppUpdate = serde_json::from_value(json!({"labels": {}})).unwrap();
        assert!(base.apply_update(&update).0.labels.is_empty());
    }

    #[test]
    fn legacy_fields_are_converted() {
        let update: AppUpdate = serde_json::from_value(json!({
            "ports": [8080, 0],
            "uris": ["https://example.com/app.tgz", "https://example.com/run.sh"]
        }))
        .unwrap();
        let (app, provenance) = AppDefinition::default().apply_update(&update);
        assert!(provenance.port_definitions_given);
        assert_eq!(
            app.port_definitions,
            vec![
                PortDefinition::from_legacy_port(8080),
                PortDefinition::from_legacy_port(0)
            ]
        );
        assert!(app.fetch[0].extract);
        assert!(!app.fetch[1].extract);
        let json = serde_json::to_value(&app).unwrap();
        assert!(json.get("ports").is_none());
        assert!(json.get("uris").is_none());
    }

    #[test]
    fn docker_bridge_moves_port_mappings_and_drops_port_definitions() {
        let update: AppUpdate = serde_json::from_value(json!({
            "container": {
                "type": "DOCKER",
                "docker": {
                    "image": "nginx",
                    "network": "BRIDGE",
                    "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]
                }
            }
        }))
        .unwrap();
        let (app, _) = AppDefinition::default().apply_update(&update);
        assert!(!app.is_host_networking());
        assert!(app.port_definitions.is_empty());
        let container = app.container.as_ref().unwrap();
        assert_eq!(
            container.port_mappings.as_ref().unwrap()[0].container_port,
            80
        );
        let json = serde_json::to_value(&app).unwrap();
        assert!(json["container"]["docker"].get("portMappings").is_none());
        assert_eq!(json["container"]["portMappings"][0]["containerPort"], 80);
        assert_eq!(json["networks"], json!([{"mode": "container/bridge"}]));
    }

    #[test]
    fn rollback_is_version_alone() {
        let rollback: AppUpdate =
            serde_json::from_value(json!({"id": "/x", "version": "2015-09-25T15:13:48.343Z"}))
                .unwrap();
        assert!(rollback.is_rollback());
        let not: AppUpdate =
            serde_json::from_value(json!({"version": "2015-09-25T15:13:48.343Z", "instances": 2}))
                .unwrap();
        assert!(!not.is_rollback());
    }
}
