//! The job model of Chronos' REST API, its validation, and the dependency graph of jobs.
//!
//! - [`Job`] is the JSON object of `POST /scheduler/iso8601`, `POST /scheduler/dependency` and
//!   `GET /scheduler/jobs`, with exactly Chronos' field names, defaults and output order.
//! - [`Job::validate`] checks one job on its own and names the offending field in its error.
//! - [`JobGraph`] holds all jobs keyed by name with their dependency edges: it adds, replaces and
//!   removes jobs (checking unknown parents and cycles), answers parent and child lookups, decides
//!   which dependent jobs become due when a job finishes, and renders `/scheduler/graph/csv` and
//!   `/scheduler/graph/dot`. It is pure: the process persists what it returns.
//!
//! # Plateau's choices where Chronos is loose
//!
//! - **Kind of job.** A job with non-empty `parents` is dependent; a job with `schedule` (ISO 8601),
//!   `cron` or `calendar` (a systemd calendar expression; both Plateau extensions) is scheduled.
//!   Giving parents and a schedule, or more than one of `schedule`, `cron` and `calendar`, is an
//!   error. Giving none makes a one-shot job `R1/<now>/PT24H`, as Chronos 3.x
//!   does. An empty `parents` list counts as absent, but alone it is an error (Chronos answered
//!   500).
//! - **Cron time zone.** A `cron` job uses `scheduleTimeZone` for its zone (UTC when empty); there
//!   is no separate field. A `calendar` job too, unless its expression ends in a zone name
//!   (`Mon..Fri *-*-* 02:00 Europe/Berlin`), which wins.
//! - **`epsilon`** (Chronos 2.x, an ISO 8601 duration such as `PT60S`) is accepted and used for the
//!   job's catch-up window; absent means [`crate::schedule::DEFAULT_EPSILON`]. It is shown only
//!   when set. **`async`** (2.x) is accepted and ignored.
//! - **`uris` and `fetch`** may not both be given unless they name the same URIs (so a job read
//!   from `GET /jobs`, which fills both, can be posted back). [`Job::api_view`] fills each from
//!   the other, as `GET /jobs` does.
//! - **Unknown parents** are rejected (400) on create as well as on replace.
//!
//! # Dependent jobs
//!
//! Chronos' rule (`JobGraph.getExecutableChildren`), kept as is and persisted by Plateau: each
//! edge `parent → child` has a counter.
//! - A child with **one parent** is due after every success of that parent.
//! - For a child with **several parents**, a parent's success increments its edge counter, and the
//!   child is due when that counter equals the minimum over all the child's edges, that is, when
//!   every parent has succeeded at least once since the child last started.
//! - When the child starts, all its edge counters go back to 0 ([`JobGraph::handle_job_started`]).
//! - A parent that fails for good counts as a success when it has `softError: true`.
//! - A disabled child is never due (its counters still move, as in Chronos).
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::limits;
use crate::schedule::{CatchUp, Period, Schedule, ScheduleError};

/// Errors from validating jobs and changing the job graph. Messages start with the cause; the
/// field, when there is one, is [`JobError::field`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A field has a bad value.
    #[error("{message} (field '{field}')")]
    Invalid {
        /// The JSON name of the field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No job has this name (Chronos answers 400, not 404).
    #[error("Job '{0}' not found")]
    NotFound(String),
    /// A parent named in `parents` does not exist.
    #[error("parent job '{parent}' of '{job}' does not exist (field 'parents')")]
    UnknownParent {
        /// The job being added.
        job: String,
        /// The missing parent.
        parent: String,
    },
    /// The job's parents would close a dependency cycle.
    #[error("dependency cycle {} (field 'parents')", path.join(" -> "))]
    Cycle {
        /// The cycle, starting and ending at the job being added.
        path: Vec<String>,
    },
    /// The graph is full.
    #[error("too many jobs: at most {} are allowed", limits::JOBS_MAX)]
    TooManyJobs,
}

impl JobError {
    /// The JSON field the error is about, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            JobError::Invalid { field, .. } => Some(field),
            JobError::UnknownParent { .. } | JobError::Cycle { .. } => Some("parents"),
            JobError::NotFound(_) | JobError::TooManyJobs => None,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            field,
            message: message.into(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_retries() -> i64 {
    2
}

/// An environment variable of a job's task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    /// Variable name.
    pub name: String,
    /// Variable value.
    #[serde(default)]
    pub value: String,
}

/// A URI the Mesos fetcher downloads into the sandbox before the task starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    /// What to download.
    pub uri: String,
    /// Use the fetcher cache.
    #[serde(default)]
    pub cache: bool,
    /// Unpack archives.
    #[serde(default = "default_true")]
    pub extract: bool,
    /// Set the executable bit.
    #[serde(default)]
    pub executable: bool,
    /// File name in the sandbox (Chronos spells this field in snake case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

impl Fetch {
    fn from_uri(uri: &str) -> Fetch {
        Fetch {
            uri: uri.to_string(),
            cache: false,
            extract: true,
            executable: false,
            output_file: None,
        }
    }
}

/// Constraint operators Chronos knows. Others are dropped silently on input, as in Chronos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConstraintOperator {
    /// Some attribute with that name has a text value equal to the value.
    Equals,
    /// The attribute exists and the regex matches its whole value.
    Like,
    /// The attribute exists and the regex matches none of its values.
    Unlike,
}

impl ConstraintOperator {
    fn as_str(self) -> &'static str {
        match self {
            ConstraintOperator::Equals => "EQUALS",
            ConstraintOperator::Like => "LIKE",
            ConstraintOperator::Unlike => "UNLIKE",
        }
    }
}

/// A placement constraint, `["attribute", "OPERATOR", "value"]` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Agent attribute (`hostname` is the agent's host name).
    pub attribute: String,
    /// How to compare.
    pub operator: ConstraintOperator,
    /// Value or regex.
    pub value: String,
}

fn serialize_constraints<S: Serializer>(
    constraints: &[Constraint],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let rows: Vec<[&str; 3]> = constraints
        .iter()
        .map(|c| [c.attribute.as_str(), c.operator.as_str(), c.value.as_str()])
        .collect();
    rows.serialize(serializer)
}

fn deserialize_constraints<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Constraint>, D::Error> {
    let rows = Vec::<Vec<String>>::deserialize(deserializer)?;
    let mut constraints = Vec::with_capacity(rows.len());
    for row in rows {
        let [attribute, operator, value]: [String; 3] = row.try_into().map_err(|_| {
            serde::de::Error::custom("constraints: each constraint is [attribute, OPERATOR, value]")
        })?;
        let operator = match operator.as_str() {
            "EQUALS" => ConstraintOperator::Equals,
            "LIKE" => ConstraintOperator::Like,
            "UNLIKE" => ConstraintOperator::Unlike,
            // Chronos drops operators it does not know.
            _ => continue,
        };
        constraints.push(Constraint {
            attribute,
            operator,
            value,
        });
    }
    Ok(constraints)
}

/// A key-value pair (Docker parameters, volume driver options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// Container runtime of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ContainerType {
    /// Docker (the default).
    #[default]
    #[serde(rename = "DOCKER")]
    Docker,
    /// The Mesos containerizer.
    #[serde(rename = "MESOS")]
    Mesos,
}

/// Container network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Host networking (the default).
    #[default]
    #[serde(rename = "HOST")]
    Host,
    /// Bridged networking.
    #[serde(rename = "BRIDGE")]
    Bridge,
    /// A user-defined network.
    #[serde(rename = "USER")]
    User,
}

/// Volume access mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VolumeMode {
    /// Read-only.
    #[serde(rename = "RO")]
    ReadOnly,
    /// Read-write (the default).
    #[default]
    #[serde(rename = "RW")]
    ReadWrite,
}

/// A volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Access mode.
    #[serde(default)]
    pub mode: VolumeMode,
    /// External (Docker volume driver) volume, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<serde_json::Value>,
}

/// A job's container. Chronos ignores a container without `image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `DOCKER` or `MESOS`.
    #[serde(rename = "type", default)]
    pub container_type: ContainerType,
    /// Image name.
    #[serde(default)]
    pub image: String,
    /// `HOST`, `BRIDGE` or `USER`.
    #[serde(default)]
    pub network: NetworkMode,
    /// Network name for `USER` networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_name: Option<String>,
    /// Network infos (names, port mappings, labels), kept as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<serde_json::Value>,
    /// Volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Pull the image even if present.
    #[serde(default)]
    pub force_pull_image: bool,
    /// `docker run` parameters.
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

/// A Chronos job, as posted and as `GET /scheduler/jobs` shows it.
///
/// Fields are declared in Chronos' output order, so serializing a job (after
/// [`Job::api_view`]) gives the same field order as Chronos. Scheduled jobs show `schedule` (or
/// `cron`) and `scheduleTimeZone`; dependent jobs show `parents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Unique name, matching `[\w.-]+`.
    pub name: String,
    /// Shell command (or executable when `shell` is false).
    #[serde(default)]
    pub command: String,
    /// Run through `/bin/sh -c` (default true).
    #[serde(default = "default_true")]
    pub shell: bool,
    /// Custom executor.
    #[serde(default)]
    pub executor: String,
    /// Flags for the custom executor.
    #[serde(default)]
    pub executor_flags: String,
    /// Opaque data for the custom executor.
    #[serde(default)]
    pub task_info_data: String,
    /// Retries after a failure (default 2).
    #[serde(default = "default_retries")]
    pub retries: i64,
    /// E-mail addresses notified of failures, comma-separated.
    #[serde(default)]
    pub owner: String,
    /// Owner's name.
    #[serde(default)]
    pub owner_name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Successful runs.
    #[serde(default)]
    pub success_count: i64,
    /// Failed runs (after retries).
    #[serde(default)]
    pub error_count: i64,
    /// Time of the last success (UTC, `2014-03-08T16:57:17.507Z`) or `""`.
    #[serde(default)]
    pub last_success: String,
    /// Time of the last failure or `""`.
    #[serde(default)]
    pub last_error: String,
    /// CPUs; 0 means the scheduler's default.
    #[serde(default)]
    pub cpus: f64,
    /// Disk in MB; 0 means the scheduler's default.
    #[serde(default)]
    pub disk: f64,
    /// Memory in MB; 0 means the scheduler's default.
    #[serde(default)]
    pub mem: f64,
    /// A disabled job never runs on its schedule or from its parents.
    #[serde(default)]
    pub disabled: bool,
    /// When it fails for good, its dependents run anyway.
    #[serde(default)]
    pub soft_error: bool,
    /// Enables the progress endpoint.
    #[serde(default)]
    pub data_processing_job_type: bool,
    /// Failures since the last success.
    #[serde(default)]
    pub errors_since_last_success: i64,
    /// URIs to fetch.
    #[serde(default)]
    pub fetch: Vec<Fetch>,
    /// URIs to fetch (deprecated form of `fetch`).
    #[serde(default)]
    pub uris: Vec<String>,
    /// Task environment.
    #[serde(default)]
    pub environment_variables: Vec<EnvironmentVariable>,
    /// argv when `shell` is false.
    #[serde(default)]
    pub arguments: Vec<String>,
    /// Goes to the front of the launch queue.
    #[serde(default)]
    pub high_priority: bool,
    /// User the task runs as; empty means the scheduler's `--user`.
    #[serde(default)]
    pub run_as_user: String,
    /// Allows overlapping runs.
    #[serde(default)]
    pub concurrent: bool,
    /// Kill a run after this many milliseconds; 0 is no limit.
    #[serde(default)]
    pub max_completion_time: i64,
    /// Container, shown only if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Placement constraints.
    #[serde(
        default,
        serialize_with = "serialize_constraints",
        deserialize_with = "deserialize_constraints"
    )]
    pub constraints: Vec<Constraint>,
    /// Catch-up window (Chronos 2.x), an ISO 8601 duration such as `PT60S`; shown only if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<String>,
    /// What to do with instants missed while the scheduler was down or the job was busy
    /// (Plateau extension): `"once"` (default), `"all"` or `"skip"`; see
    /// [`crate::scheduler`]. Shown only if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<String>,
    /// Chronos 2.x `async`: accepted, ignored, never shown.
    #[serde(default, rename = "async", skip_serializing)]
    pub async_ignored: bool,
    /// Parents of a dependent job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<Vec<String>>,
    /// ISO 8601 repeating interval of a scheduled job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Cron expression of a scheduled job (Plateau extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// systemd calendar expression (`OnCalendar=` syntax) of a scheduled job (Plateau
    /// extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// Zone of `schedule`, `cron` or `calendar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_time_zone: Option<String>,
}

/// What a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// On an ISO 8601 schedule.
    Iso,
    /// On a cron expression.
    Cron,
    /// On a systemd calendar expression.
    Calendar,
    /// After its parents.
    Dependent,
}

/// Outcome of a job's last finished run, for `/graph/csv` and `/jobs/summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastState {
    /// Never ran.
    Fresh,
    /// The last run succeeded.
    Success,
    /// The last run failed.
    Failure,
}

impl fmt::Display for LastState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LastState::Fresh => "fresh",
            LastState::Success => "success",
            LastState::Failure => "failure",
        })
    }
}

/// What a job is doing now (known to the process, not to the graph).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CurrentState {
    /// Nothing queued or running.
    #[default]
    Idle,
    /// A task waits for an offer.
    Queued,
    /// This many tasks run.
    Running(u32),
}

impl fmt::Display for CurrentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CurrentState::Idle => f.write_str("idle"),
            CurrentState::Queued => f.write_str("queued"),
            CurrentState::Running(n) => write!(f, "{n} running"),
        }
    }
}

/// Resource and user defaults the scheduler applies to jobs that leave them at 0 or empty
/// (Chronos' `--mesos_task_cpu`, `--mesos_task_mem`, `--mesos_task_disk`, `--user`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefaults {
    /// CPUs (0.1).
    pub cpus: f64,
    /// Memory in MB (128).
    pub mem: f64,
    /// Disk in MB (256).
    pub disk: f64,
    /// User (empty: none, the job's tasks run as the slave's default task user; Chronos'
    /// default is `root`).
    pub user: String,
}

impl Default for TaskDefaults {
    fn default() -> Self {
        TaskDefaults {
            cpus: 0.1,
            mem: 128.0,
            disk: 256.0,
            user: String::new(),
        }
    }
}

/// True when `name` fully matches Java's `[\w.-]+` (ASCII letters, digits, `_`, `.`, `-`).
pub fn is_valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Formats an instant as Chronos shows `lastSuccess`/`lastError`: UTC, milliseconds, `Z`.
pub fn format_timestamp(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Job {
    /// A job with this name and command and every other field at its default; no schedule or
    /// parents yet.
    pub fn new(name: &str, command: &str) -> Job {
        Job {
            name: name.to_string(),
            command: command.to_string(),
            shell: true,
            executor: String::new(),
            executor_flags: String::new(),
            task_info_data: String::new(),
            retries: default_retries(),
            owner: String::new(),
            owner_name: String::new(),
            description: String::new(),
            success_count: 0,
            error_count: 0,
            last_success: String::new(),
            last_error: String::new(),
            cpus: 0.0,
            disk: 0.0,
            mem: 0.0,
            disabled: false,
            soft_error: false,
            data_processing_job_type: false,
            errors_since_last_success: 0,
            fetch: Vec::new(),
            uris: Vec::new(),
            environment_variables: Vec::new(),
            arguments: Vec::new(),
            high_priority: false,
            run_as_user: String::new(),
            concurrent: false,
            max_completion_time: 0,
            container: None,
            constraints: Vec::new(),
            epsilon: None,
            catch_up: None,
            async_ignored: false,
            parents: None,
            schedule: None,
            cron: None,
            calendar: None,
            schedule_time_zone: None,
        }
    }

    /// The job's kind, by the rules in the module docs (assumes a validated job).
    pub fn kind(&self) -> JobKind {
        if self.parents.as_ref().is_some_and(|p| !p.is_empty()) {
            JobKind::Dependent
        } else if self.cron.is_some() {
            JobKind::Cron
        } else if self.calendar.is_some() {
            JobKind::Calendar
        } else {
            JobKind::Iso
        }
    }

    /// `fresh`, `success` or `failure`, from `lastSuccess` and `lastError` (the later one wins;
    /// equal times count as failure, as in Chronos).
    pub fn last_state(&self) -> LastState {
        match (self.last_success.is_empty(), self.last_error.is_empty()) {
            (true, true) => LastState::Fresh,
            (true, false) => LastState::Failure,
            (false, true) => LastState::Success,
            (false, false) => {
                let success = DateTime::parse_from_rfc3339(&self.last_success);
                let error = DateTime::parse_from_rfc3339(&self.last_error);
                let success_later = match (success, error) {
                    (Ok(s), Ok(e)) => s > e,
                    // Chronos' timestamps are UTC ISO strings, which sort as text.
                    _ => self.last_success > self.last_error,
                };
                if success_later {
                    LastState::Success
                } else {
                    LastState::Failure
                }
            }
        }
    }

    /// The job's epsilon, or `None` when it uses the scheduler default. Errors name `epsilon`.
    pub fn epsilon_duration(&self) -> Result<Option<std::time::Duration>, JobError> {
        let Some(text) = self.epsilon.as_deref().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let period = Period::parse(text).map_err(|e| JobError::invalid("epsilon", e))?;
        period.to_duration().map(Some).ok_or_else(|| {
            JobError::invalid(
                "epsilon",
                format!("epsilon '{text}' must be a fixed duration (no years or months)"),
            )
        })
    }

    /// The job's catch-up policy (`catchUp`): [`CatchUp::Once`] when absent. Errors name
    /// `catchUp`.
    pub fn catch_up_policy(&self) -> Result<CatchUp, JobError> {
        match self.catch_up.as_deref().map(str::trim) {
            None | Some("") | Some("once") => Ok(CatchUp::Once),
            Some("all") => Ok(CatchUp::All),
            Some("skip") => Ok(CatchUp::Skip),
            Some(other) => Err(JobError::invalid(
                "catchUp",
                format!("catchUp '{other}' must be \"once\", \"all\" or \"skip\""),
            )),
        }
    }

    /// Parses the job's schedule (`schedule`, `cron` or `calendar` in `scheduleTimeZone`); `None` for a
    /// dependent job. `now` stands in for an empty ISO start. Errors name the field.
    pub fn parse_schedule(&self, now: DateTime<Utc>) -> Result<Option<Schedule>, JobError> {
        let zone = self.schedule_time_zone.as_deref().unwrap_or("");
        let map = |field: &'static str| {
            move |e: ScheduleError| match e {
                ScheduleError::TimeZone(_) => JobError::invalid("scheduleTimeZone", e.to_string()),
                other => JobError::invalid(field, other.to_string()),
            }
        };
        match self.kind() {
            JobKind::Dependent => Ok(None),
            JobKind::Cron => Schedule::parse_cron(self.cron.as_deref().unwrap_or(""), zone)
                .map(Some)
                .map_err(map("cron")),
            JobKind::Calendar => {
                Schedule::parse_calendar(self.calendar.as_deref().unwrap_or(""), zone)
                    .map(Some)
                    .map_err(map("calendar"))
            }
            JobKind::Iso => Schedule::parse_iso(self.schedule.as_deref().unwrap_or(""), zone, now)
                .map(Some)
                .map_err(map("schedule")),
        }
    }

    /// Checks the job on its own (everything but the existence of parents and cycles, which need
    /// the graph), and returns the normalized job and its parsed schedule:
    /// - a job with neither schedule nor parents becomes `R1/<now>/PT24H`;
    /// - an empty start is replaced by `now` in the stored schedule string;
    /// - parents are de-duplicated (Chronos keeps a set), keeping their first order;
    /// - a scheduled job gets `scheduleTimeZone: ""` if absent; a dependent job shows no
    ///   schedule fields.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(Job, Option<Schedule>), JobError> {
        let mut job = self.clone();
        if !is_valid_job_name(&job.name) {
            return Err(JobError::invalid(
                "name",
                "the job's name is invalid. Allowed names: '([\\w\\.-]+)'",
            ));
        }
        if job.name.len() > limits::JOB_NAME_LEN_MAX {
            return Err(JobError::invalid(
                "name",
                format!(
                    "the job's name is longer than {} bytes",
                    limits::JOB_NAME_LEN_MAX
                ),
            ));
        }
        if job.command.len() > limits::COMMAND_LEN_MAX {
            return Err(JobError::invalid(
                "command",
                format!(
                    "the command is longer than {} bytes",
                    limits::COMMAND_LEN_MAX
                ),
            ));
        }
        for (field, value) in [
            ("owner", &job.owner),
            ("ownerName", &job.owner_name),
            ("description", &job.description),
            ("executor", &job.executor),
            ("executorFlags", &job.executor_flags),
            ("taskInfoData", &job.task_info_data),
            ("runAsUser", &job.run_as_user),
        ] {
            if value.len() > limits::JOB_TEXT_FIELD_LEN_MAX {
                return Err(JobError::invalid(
                    field,
                    format!("longer than {} bytes", limits::JOB_TEXT_FIELD_LEN_MAX),
                ));
            }
        }
        let container_lists = job.container.as_ref().map_or(0, |c| {
            c.volumes
                .len()
                .max(c.parameters.len())
                .max(c.network_infos.len())
        });
        for (field, len) in [
            ("arguments", job.arguments.len()),
            ("environmentVariables", job.environment_variables.len()),
            ("uris", job.uris.len()),
            ("fetch", job.fetch.len()),
            ("constraints", job.constraints.len()),
            ("container", container_lists),
        ] {
            if len > limits::JOB_LIST_FIELD_LEN_MAX {
                return Err(JobError::invalid(
                    field,
                    format!("more than {} entries", limits::JOB_LIST_FIELD_LEN_MAX),
                ));
            }
        }
        for (field, value) in [("cpus", job.cpus), ("mem", job.mem), ("disk", job.disk)] {
            if !value.is_finite() || value < 0.0 {
                return Err(JobError::invalid(
                    field,
                    format!("{field} must be a non-negative number, not {value}"),
                ));
            }
            // Above the master's resource model the job would be stored and never launched.
            if value > limits::RESOURCE_SCALAR_MAX {
                return Err(JobError::invalid(
                    field,
                    format!(
                        "{field} must be at most {}, not {value}",
                        limits::RESOURCE_SCALAR_MAX
                    ),
                ));
            }
        }
        for (field, value) in [
            ("retries", job.retries),
            ("maxCompletionTime", job.max_completion_time),
            ("successCount", job.success_count),
            ("errorCount", job.error_count),
            ("errorsSinceLastSuccess", job.errors_since_last_success),
        ] {
            if value < 0 {
                return Err(JobError::invalid(
                    field,
                    format!("{field} must not be negative, not {value}"),
                ));
            }
        }
        for (field, value) in [
            ("lastSuccess", &job.last_success),
            ("lastError", &job.last_error),
        ] {
            if !value.is_empty() && DateTime::parse_from_rfc3339(value).is_err() {
                return Err(JobError::invalid(
                    field,
                    format!(
                        "'{value}' is not an ISO 8601 timestamp such as 2014-03-08T16:57:17.507Z"
                    ),
                ));
            }
        }
        if job.environment_variables.iter().any(|v| v.name.is_empty()) {
            return Err(JobError::invalid(
                "environmentVariables",
                "every environment variable needs a name",
            ));
        }
        let fetch_uris: Vec<&str> = job.fetch.iter().map(|f| f.uri.as_str()).collect();
        let uris: Vec<&str> = job.uris.iter().map(String::as_str).collect();
        if !job.fetch.is_empty() && !job.uris.is_empty() && fetch_uris != uris {
            return Err(JobError::invalid(
                "fetch",
                format!(
                    "Tried to add both uri (deprecated) and fetch parameters on {}",
                    job.name
                ),
            ));
        }
        job.epsilon_duration()?;
        job.catch_up_policy()?;

        if let Some(parents) = &mut job.parents {
            if parents.len() > limits::PARENTS_PER_JOB_MAX {
                return Err(JobError::invalid(
                    "parents",
                    format!("more than {} parents", limits::PARENTS_PER_JOB_MAX),
                ));
            }
            let mut seen = BTreeSet::new();
            parents.retain(|p| seen.insert(p.clone()));
            if let Some(bad) = parents.iter().find(|p| !is_valid_job_name(p)) {
                return Err(JobError::invalid(
                    "parents",
                    format!("parent name '{bad}' is invalid"),
                ));
            }
            if parents.contains(&job.name) {
                return Err(JobError::Cycle {
                    path: vec![job.name.clone(), job.name.clone()],
                });
            }
        }
        let has_parents = job.parents.as_ref().is_some_and(|p| !p.is_empty());
        let has_schedule = job.schedule.as_ref().is_some_and(|s| !s.is_empty());
        let has_cron = job.cron.as_ref().is_some_and(|s| !s.is_empty());
        let has_calendar = job.calendar.as_ref().is_some_and(|s| !s.is_empty());
        if has_schedule && has_cron {
            return Err(JobError::invalid(
                "cron",
                "give either schedule (ISO 8601) or cron, not both",
            ));
        }
        if has_calendar && (has_schedule || has_cron) {
            return Err(JobError::invalid(
                "calendar",
                "give one of schedule (ISO 8601), cron and calendar (systemd), not several",
            ));
        }
        // A cron or calendar expression.
        let has_expression = has_cron || has_calendar;
        if has_parents && (has_schedule || has_expression) {
            return Err(JobError::invalid(
                "parents",
                "a job has either parents (dependent job) or a schedule, not both",
            ));
        }
        if job.parents.is_some() && !has_parents && !has_schedule && !has_expression {
            return Err(JobError::invalid(
                "parents",
                "a dependent job needs at least one parent",
            ));
        }
        if has_parents {
            job.schedule = None;
            job.cron = None;
            job.calendar = None;
            job.schedule_time_zone = None;
            return Ok((job, None));
        }
        job.parents = None;
        if !has_cron {
            job.cron = None;
        }
        if !has_calendar {
            job.calendar = None;
        }
        if !has_schedule {
            job.schedule = None;
        }
        if !has_schedule && !has_expression {
            // Chronos 3.x: a job with neither runs once, now.
            job.schedule = Some("R1//PT24H".to_string());
        }
        let schedule = job
            .parse_schedule(now)?
            .expect("a scheduled job parses to a schedule");
        if let (Some(text), Schedule::Iso(_)) = (&job.schedule, &schedule) {
            if text.split('/').nth(1).is_some_and(str::is_empty) {
                // Pin "now" so reloading the job does not move its start.
                job.schedule = Some(schedule.to_chronos_string());
            }
        }
        job.schedule_time_zone.get_or_insert_with(String::new);
        Ok((job, Some(schedule)))
    }

    /// The job as `GET /scheduler/jobs` shows it: `fetch` filled from `uris` or `uris` from
    /// `fetch`, so both are consistent.
    pub fn api_view(&self) -> Job {
        let mut job = self.clone();
        if job.fetch.is_empty() {
            job.fetch = job.uris.iter().map(|u| Fetch::from_uri(u)).collect();
        } else if job.uris.is_empty() {
            job.uris = job.fetch.iter().map(|f| f.uri.clone()).collect();
        }
        job
    }

    /// Fills 0 resources and an empty `runAsUser` from the scheduler's defaults, as Chronos does
    /// when it reads a job.
    pub fn apply_defaults(&mut self, defaults: &TaskDefaults) {
        if self.cpus == 0.0 {
            self.cpus = defaults.cpus;
        }
        if self.mem == 0.0 {
            self.mem = defaults.mem;
        }
        if self.disk == 0.0 {
            self.disk = defaults.disk;
        }
        if self.run_as_user.is_empty() {
            self.run_as_user = defaults.user.clone();
        }
    }

    /// Records a successful run finishing at `at`: `successCount++`, `errorsSinceLastSuccess = 0`,
    /// `lastSuccess = at`.
    pub fn record_success(&mut self, at: DateTime<Utc>) {
        self.success_count = self.success_count.saturating_add(1);
        self.errors_since_last_success = 0;
        self.last_success = format_timestamp(at);
    }

    /// Records a final failure (retries exhausted) at `at`: `errorCount++`,
    /// `errorsSinceLastSuccess++`, `lastError = at`.
    pub fn record_failure(&mut self, at: DateTime<Utc>) {
        self.error_count = self.error_count.saturating_add(1);
        self.errors_since_last_success = self.errors_since_last_success.saturating_add(1);
        self.last_error = format_timestamp(at);
    }
}

/// One job in the graph with its parsed schedule.
#[derive(Debug, Clone)]
struct Entry {
    job: Job,
    schedule: Option<Schedule>,
}

/// Whether [`JobGraph::upsert`] created or replaced a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new name.
    Created,
    /// An existing job was replaced.
    Replaced,
}

/// What [`JobGraph::remove`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The removed job.
    pub job: Job,
    /// Children that were rewired (inherited the parents, or took over the schedule), in name
    /// order. The process persists them.
    pub rewired: Vec<String>,
}

/// How a run of a job ended, for deciding its dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The task finished.
    Success,
    /// The task failed after its retries.
    Failure,
}

/// All jobs keyed by name, with their dependency edges and edge counters. Pure: no I/O.
///
/// Invariants (checked by [`JobGraph::check_invariants`] in tests): every parent named by a job
/// exists; `children` is exactly the reverse of `parents`; the edges form a DAG; a counter exists
/// exactly for each edge.
#[derive(Debug, Clone, Default)]
pub struct JobGraph {
    jobs: BTreeMap<String, Entry>,
    /// parent → children.
    children: BTreeMap<String, BTreeSet<String>>,
    /// (parent, child) → successes of the parent since the child last started.
    edge_counts: BTreeMap<(String, String), u64>,
}

impl JobGraph {
    /// An empty graph.
    pub fn new() -> JobGraph {
        JobGraph::default()
    }

    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True when there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The job with this name.
    pub fn get(&self, name: &str) -> Option<&Job> {
        self.jobs.get(name).map(|e| &e.job)
    }

    /// The parsed schedule of a scheduled job.
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.jobs.get(name).and_then(|e| e.schedule.as_ref())
    }

    /// All jobs in name order.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().map(|e| &e.job)
    }

    /// Parents of a job (empty for scheduled jobs).
    pub fn parents(&self, name: &str) -> Result<&[String], JobError> {
        let entry = self
            .jobs
            .get(name)
            .ok_or_else(|| JobError::NotFound(name.to_string()))?;
        Ok(entry.job.parents.as_deref().unwrap_or(&[]))
    }

    /// Children of a job, in name order.
    pub fn children(&self, name: &str) -> Vec<&str> {
        self.children
            .get(name)
            .map(|c| c.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Validates `job` (see [`Job::validate`]), checks that its parents exist and that it closes
    /// no cycle, then creates it or replaces the job of the same name (rewiring its edges; the
    /// counters of kept edges survive). `now` stands in for an empty ISO start.
    pub fn upsert(&mut self, job: Job, now: DateTime<Utc>) -> Result<Upserted, JobError> {
        let (job, schedule) = job.validate(now)?;
        let exists = self.jobs.contains_key(&job.name);
        if !exists && self.jobs.len() >= limits::JOBS_MAX {
            return Err(JobError::TooManyJobs);
        }
        let parents = job.parents.clone().unwrap_or_default();
        for parent in &parents {
            if !self.jobs.contains_key(parent) {
                return Err(JobError::UnknownParent {
                    job: job.name.clone(),
                    parent: parent.clone(),
                });
            }
        }
        for parent in &parents {
            if let Some(mut path) = self.path(&job.name, parent) {
                // job → … → parent, and the new edge parent → job closes it.
                path.push(job.name.clone());
                return Err(JobError::Cycle { path });
            }
        }
        let name = job.name.clone();
        let kept_counts: BTreeMap<String, u64> = parents
            .iter()
            .filter_map(|p| Some((p.clone(), self.edge_count(p, &name)?)))
            .collect();
        self.detach_parents(&name);
        for parent in &parents {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(name.clone());
            let count = kept_counts.get(parent).copied().unwrap_or(0);
            self.edge_counts
                .insert((parent.clone(), name.clone()), count);
        }
        self.jobs.insert(name, Entry { job, schedule });
        Ok(if exists {
            Upserted::Replaced
        } else {
            Upserted::Created
        })
    }

    /// Removes the edges from a job's current parents (keeps the job itself).
    fn detach_parents(&mut self, name: &str) {
        let Some(entry) = self.jobs.get(name) else {
            return;
        };
        for parent in entry.job.parents.clone().unwrap_or_default() {
            if let Some(children) = self.children.get_mut(&parent) {
                children.remove(name);
                if children.is_empty() {
                    self.children.remove(&parent);
                }
            }
            self.edge_counts.remove(&(parent, name.to_string()));
        }
    }

    /// A path `from → … → to` along child edges, if any (breadth-first, by name order).
    fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = vec![to.to_string()];
                let mut cursor = to;
                while let Some(previous) = came_from.get(cursor) {
                    path.push(previous.to_string());
                    cursor = previous;
                }
                path.reverse();
                return Some(path);
            }
            for child in self.children.get(node).into_iter().flatten() {
                if seen.insert(child.as_str()) {
                    came_from.insert(child.as_str(), node);
                    queue.push_back(child.as_str());
                }
            }
        }
        None
    }

    /// Removes a job. Its children are rewired as in Chronos: if the removed job was dependent,
    /// its children inherit its parents; if it was scheduled, each child becomes a scheduled job
    /// with its schedule and time zone (dropping any other parents).
    pub fn remove(&mut self, name: &str) -> Result<Removed, JobError> {
        if !self.jobs.contains_key(name) {
            return Err(JobError::NotFound(name.to_string()));
        }
        self.detach_parents(name);
        let removed = self.jobs.remove(name).expect("checked above");
        let children: Vec<String> = self
            .children
            .remove(name)
            .map(|c| c.into_iter().collect())
            .unwrap_or_default();
        for child in &children {
            self.edge_counts.remove(&(name.to_string(), child.clone()));
            let mut entry = self.jobs.get(child).expect("children exist").clone();
            match &removed.job.parents {
                Some(grandparents) if !grandparents.is_empty() => {
                    let mut parents: Vec<String> = entry
                        .job
                        .parents
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|p| p != name)
                        .collect();
                    for grandparent in grandparents {
                        if !parents.contains(grandparent) {
                            parents.push(grandparent.clone());
                        }
                    }
                    for parent in &parents {
                        self.children
                            .entry(parent.clone())
                            .or_default()
                            .insert(child.clone());
                        self.edge_counts
                            .entry((parent.clone(), child.clone()))
                            .or_insert(0);
                    }
                    entry.job.parents = Some(parents);
                }
                _ => {
                    self.detach_parents(child);
                    entry.job.parents = None;
                    entry.job.schedule = removed.job.schedule.clone();
                    entry.job.cron = removed.job.cron.clone();
                    entry.job.calendar = removed.job.calendar.clone();
                    entry.job.schedule_time_zone = removed.job.schedule_time_zone.clone();
                    entry.schedule = removed.schedule.clone();
                }
            }
            self.jobs.insert(child.clone(), entry);
        }
        Ok(Removed {
            job: removed.job,
            rewired: children,
        })
    }

    /// Replaces the parsed schedule of a scheduled job (after [`Schedule::after_run`]) and the
    /// `schedule` string shown for it.
    pub fn set_schedule(&mut self, name: &str, schedule: Schedule) -> Result<(), JobError> {
        let entry = self
            .jobs
            .get_mut(name)
            .ok_or_else(|| JobError::NotFound(name.to_string()))?;
        if entry.schedule.is_none() {
            return Err(JobError::invalid(
                "schedule",
                format!("job '{name}' is dependent and has no schedule"),
            ));
        }
        if matches!(schedule, Schedule::Iso(_)) {
            entry.job.schedule = Some(schedule.to_chronos_string());
        }
        entry.schedule = Some(schedule);
        Ok(())
    }

    /// Sets `disabled` (a finished `R0` job, or too many failures).
    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<(), JobError> {
        self.entry_mut(name)?.job.disabled = disabled;
        Ok(())
    }

    /// Records a successful run of a job at `at` (counters and `lastSuccess`).
    pub fn record_success(&mut self, name: &str, at: DateTime<Utc>) -> Result<(), JobError> {
        self.entry_mut(name)?.job.record_success(at);
        Ok(())
    }

    /// Records a final failure of a job at `at` (counters and `lastError`).
    pub fn record_failure(&mut self, name: &str, at: DateTime<Utc>) -> Result<(), JobError> {
        self.entry_mut(name)?.job.record_failure(at);
        Ok(())
    }

    fn entry_mut(&mut self, name: &str) -> Result<&mut Entry, JobError> {
        self.jobs
            .get_mut(name)
            .ok_or_else(|| JobError::NotFound(name.to_string()))
    }

    /// The dependents that become due because a run of `name` ended with `outcome`, in name order
    /// (see the module docs). Updates the edge counters.
    pub fn handle_run_finished(
        &mut self,
        name: &str,
        outcome: RunOutcome,
    ) -> Result<Vec<String>, JobError> {
        let job = self
            .get(name)
            .ok_or_else(|| JobError::NotFound(name.to_string()))?;
        if outcome == RunOutcome::Failure && !job.soft_error {
            return Ok(Vec::new());
        }
        let mut due = Vec::new();
        for child in self
            .children(name)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
        {
            let parents = self.parents(&child)?.to_vec();
            let is_due = if parents.len() == 1 {
                true
            } else {
                let count = self
                    .edge_counts
                    .entry((name.to_string(), child.clone()))
                    .or_insert(0);
                *count = count.saturating_add(1);
                let count = *count;
                let min = parents
                    .iter()
                    .map(|p| {
                        self.edge_counts
                            .get(&(p.clone(), child.clone()))
                            .copied()
                            .unwrap_or(0)
                    })
                    .min()
                    .unwrap_or(0);
                count == min
            };
            if is_due && !self.get(&child).is_some_and(|c| c.disabled) {
                due.push(child);
            }
        }
        Ok(due)
    }

    /// A job started (or was marked successful): its parent edge counters go back to 0.
    pub fn handle_job_started(&mut self, name: &str) -> Result<(), JobError> {
        for parent in self.parents(name)?.to_vec() {
            self.edge_counts.insert((parent, name.to_string()), 0);
        }
        Ok(())
    }

    /// The counter of edge `parent → child`, if that edge exists.
    pub fn edge_count(&self, parent: &str, child: &str) -> Option<u64> {
        self.edge_counts
            .get(&(parent.to_string(), child.to_string()))
            .copied()
    }

    /// Restores an edge counter from persisted state. Errors if the edge does not exist.
    pub fn set_edge_count(
        &mut self,
        parent: &str,
        child: &str,
        count: u64,
    ) -> Result<(), JobError> {
        match self
            .edge_counts
            .get_mut(&(parent.to_string(), child.to_string()))
        {
            Some(c) => {
                *c = count;
                Ok(())
            }
            None => Err(JobError::NotFound(format!("{parent} -> {child}"))),
        }
    }

    /// All jobs in an order where every parent comes before its children (ties by name).
    /// An error means the graph holds a cycle, which `upsert` never lets in.
    pub fn topological_order(&self) -> Result<Vec<String>, JobError> {
        let mut indegree: BTreeMap<&str, usize> = self
            .jobs
            .iter()
            .map(|(name, e)| (name.as_str(), e.job.parents.as_ref().map_or(0, Vec::len)))
            .collect();
        let mut ready: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut order = Vec::with_capacity(self.jobs.len());
        while let Some(node) = ready.pop_first() {
            order.push(node.to_string());
            for child in self.children.get(node).into_iter().flatten() {
                let d = indegree.get_mut(child.as_str()).expect("children exist");
                *d -= 1;
                if *d == 0 {
                    ready.insert(child.as_str());
                }
            }
        }
        if order.len() == self.jobs.len() {
            Ok(order)
        } else {
            let stuck: Vec<String> = indegree
                .into_iter()
                .filter(|(_, d)| *d > 0)
                .map(|(n, _)| n.to_string())
                .collect();
            Err(JobError::Cycle { path: stuck })
        }
    }

    /// `/scheduler/graph/csv`: `node,<name>,<lastState>,<currentState>` per job (name order),
    /// then `link,<parent>,<child>` per edge (parent, then child order), each line ending in `\n`.
    pub fn graph_csv(&self, current: impl Fn(&str) -> CurrentState) -> String {
        let mut out = String::new();
        for (name, entry) in &self.jobs {
            out.push_str(&format!(
                "node,{name},{},{}\n",
                entry.job.last_state(),
                current(name)
            ));
        }
        for (parent, child) in self.edge_counts.keys() {
            out.push_str(&format!("link,{parent},{child}\n"));
        }
        out
    }

    /// `/scheduler/graph/dot`: a Graphviz digraph of the jobs and edges.
    pub fn graph_dot(&self) -> String {
        let mut out = String::from("digraph G {\n");
        for name in self.jobs.keys() {
            out.push_str(&format!("  \"{name}\";\n"));
        }
        for (parent, child) in self.edge_counts.keys() {
            out.push_str(&format!("  \"{parent}\" -> \"{child}\";\n"));
        }
        out.push_str("}\n");
        out
    }

    /// Checks the structural invariants; for tests and debug assertions.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut expected_children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut expected_edges = BTreeSet::new();
        for (name, entry) in &self.jobs {
            if *name != entry.job.name {
                return Err(format!("job keyed {name} is named {}", entry.job.name));
            }
            for parent in entry.job.parents.iter().flatten() {
                if !self.jobs.contains_key(parent) {
                    return Err(format!("{name} names missing parent {parent}"));
                }
                expected_children
                    .entry(parent.clone())
                    .or_default()
                    .insert(name.clone());
                expected_edges.insert((parent.clone(), name.clone()));
            }
            if entry.schedule.is_some() == (entry.job.kind() == JobKind::Dependent) {
                return Err(format!("{name}: schedule and kind disagree"));
            }
        }
        if expected_children != self.children {
            return Err("children index out of sync".to_string());
        }
        let edges: BTreeSet<_> = self.edge_counts.keys().cloned().collect();
        if edges != expected_edges {
            return Err("edge counters out of sync".to_string());
        }
        self.topological_order()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
