//! `.service` units (and Fleet's `[X-Fleet]` section) as Marathon apps, and the parts of a
//! service that a Chronos job shares with an app (command, environment, user, resources).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::exec::{parse_environment, shell_quote, CommandLine};
use crate::limits;
use crate::parse::{expand_specifiers, unescape_name, Entry, UnitFile, UnitName};
use crate::values::{parse_bool, parse_bytes, parse_percent, parse_timespan};
use crate::{Translation, UnitError};

/// What a service translation needs besides the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServiceOptions {
    /// Agents known at deploy time (those matching the unit's `MachineMetadata=`, if any): the
    /// `instances` of a `Global=true` unit, for Marathons without Plateau's one-per-agent label.
    /// Optional: without it `instances` is 1, which Plateau's Marathon ignores for such apps.
    pub agents: Option<u32>,
}

/// The label with which Plateau's Marathon runs one instance of an app on every agent that
/// matches its constraints (`marathon::scheduler::ONE_PER_AGENT_LABEL`).
pub const ONE_PER_AGENT_LABEL: &str = "PLATEAU_ONE_PER_AGENT";

/// Whether a service becomes a Marathon app or the command of a Chronos job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    App,
    Job,
}

/// How a directive is treated.
enum Class {
    /// Read by the translation.
    Translated,
    /// Accepted without effect; the reason goes to [`Translation::ignored`].
    Ignored(&'static str),
}

const DEPENDENCY_REASON: &str = "it ties the unit to other units on the same machine, which a \
    cluster task does not have; deploy them together in one app or as dependent jobs";

/// Classifies a directive of a service unit, or refuses it with a named error.
fn classify_service(entry: &Entry, mode: Mode) -> Result<Class, UnitError> {
    let key = entry.key.as_str();
    match entry.section.as_str() {
        "Unit" => match key {
            "Description" if mode == Mode::Job => Ok(Class::Translated),
            "Description" => Ok(Class::Ignored("a description only")),
            "Documentation" => Ok(Class::Ignored("documentation only")),
            "After" | "Before" => Ok(Class::Ignored(
                "ordering between units on one machine; Marathon starts the app on deploy",
            )),
            "Wants" => Ok(Class::Ignored("a weak dependency on the same machine")),
            "DefaultDependencies" => Ok(Class::Ignored("systemd's own boot ordering")),
            "Requires"
            | "Requisite"
            | "BindsTo"
            | "PartOf"
            | "Upholds"
            | "Conflicts"
            | "OnFailure"
            | "OnSuccess"
            | "PropagatesReloadTo"
            | "ReloadPropagatedFrom"
            | "JoinsNamespaceOf" => Err(entry.untranslatable(DEPENDENCY_REASON)),
            _ if key.starts_with("Condition") || key.starts_with("Assert") => Err(entry
                .untranslatable(
                    "conditions are checked on the machine; use constraints ([X-Fleet] \
                     MachineMetadata=) to choose machines",
                )),
            _ => Err(entry.untranslatable("not a [Unit] directive Plateau translates")),
        },
        "Install" => match key {
            "WantedBy" | "RequiredBy" | "UpheldBy" | "Alias" | "Also" | "DefaultInstance" => Ok(
                Class::Ignored("enabling at boot; the cluster starts the unit when it is deployed"),
            ),
            _ => Err(entry.untranslatable("not an [Install] directive")),
        },
        "Service" => match key {
            "Type" | "ExecStart" | "Environment" | "User" | "WorkingDirectory" | "Restart"
            | "MemoryMax" | "MemoryLimit" | "CPUQuota" => Ok(Class::Translated),
            "RestartSec" | "TimeoutStopSec" if mode == Mode::App => Ok(Class::Translated),
            "RestartSec" => Ok(Class::Ignored("Chronos retries a failed run at once")),
            "TimeoutStopSec" => Ok(Class::Ignored("Chronos kills a run at once")),
            "TimeoutStartSec" | "RuntimeMaxSec" if mode == Mode::Job => Ok(Class::Translated),
            "TimeoutStartSec" => Err(entry.untranslatable(
                "Marathon has no start timeout; give the app a health check instead",
            )),
            "RuntimeMaxSec" => Err(entry.untranslatable(
                "a Marathon app runs until stopped; a bounded run is a Chronos job \
                 (maxCompletionTime)",
            )),
            "RemainAfterExit" if mode == Mode::Job => {
                Ok(Class::Ignored("a job's run ends when its command exits"))
            }
            "EnvironmentFile" => Err(entry.untranslatable(
                "the file is on the machine, which a translation does not read; copy its \
                 assignments into Environment= lines",
            )),
            "Group" | "SupplementaryGroups" => Err(entry.untranslatable(
                "tasks run with the primary group of their user; there is no group field",
            )),
            "ExecStartPre" | "ExecStartPost" | "ExecStop" | "ExecStopPost" | "ExecReload"
            | "ExecCondition" => Err(entry.untranslatable(
                "a task runs one command; put the steps in one script run by ExecStart=",
            )),
            "CPUShares" | "CPUWeight" | "StartupCPUWeight" => Err(entry.untranslatable(
                "a relative CPU weight has no fixed size; give CPUQuota= (150% is 1.5 cpus)",
            )),
            "MemoryHigh" | "MemoryLow" | "MemoryMin" | "MemorySwapMax" => {
                Err(entry.untranslatable("only a hard limit (MemoryMax=) becomes mem"))
            }
            _ => Err(entry.untranslatable("not a [Service] directive Plateau translates")),
        },
        "X-Fleet" if mode == Mode::App => match key {
            "MachineMetadata" | "Conflicts" | "Global" => Ok(Class::Translated),
            "MachineID" => Err(entry.untranslatable(
                "Plateau agents have no machine IDs; pin with MachineMetadata= on an agent \
                 attribute (e.g. hostname) instead",
            )),
            "MachineOf" => Err(entry.untranslatable(
                "placing next to another unit needs that unit's host, unknown to Marathon at \
                 deploy time; deploy both in one app or pin both with MachineMetadata=",
            )),
            "Replaces" => {
                Err(entry.untranslatable("Marathon cannot move another unit off a machine"))
            }
            _ => Err(entry.untranslatable("not an [X-Fleet] directive")),
        },
        "X-Fleet" => Err(entry.untranslatable(
            "Fleet placement of a timer's service: give the job constraints instead",
        )),
        other => Err(entry.untranslatable(format!(
            "a .service unit has no [{other}] section Plateau translates"
        ))),
    }
}

/// Checks every directive of a service unit; returns the ignored ones' notes.
pub(crate) fn check_service(unit: &UnitFile, mode: Mode) -> Result<Vec<String>, UnitError> {
    let mut ignored = Vec::new();
    for entry in &unit.entries {
        if let Class::Ignored(reason) = classify_service(entry, mode)? {
            ignored.push(format!("{}: {reason}", entry.label()));
        }
    }
    Ok(ignored)
}

/// The parts of a service a task runs with.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServiceParts {
    /// One command line per `ExecStart=` (several only for `Type=oneshot` jobs).
    pub commands: Vec<CommandLine>,
    /// `WorkingDirectory=`.
    pub working_directory: Option<String>,
    /// `Environment=`, later assignments winning.
    pub environment: BTreeMap<String, String>,
    /// `User=`.
    pub user: Option<String>,
    /// `MemoryMax=` (or `MemoryLimit=`) in MiB.
    pub mem: Option<f64>,
    /// `CPUQuota=` as cpus.
    pub cpus: Option<f64>,
    /// `Restart=` (`None` when absent or reset).
    pub restart: Option<(String, Entry)>,
    /// `Type=` (`simple` when absent).
    pub kind: String,
}

impl ServiceParts {
    /// The command as one POSIX shell line: the commands joined with `&&` (a oneshot service
    /// stops at the first failing one), after `cd` to the working directory.
    pub fn shell_command(&self, exec_last: bool) -> String {
        let mut out = String::new();
        if let Some(dir) = &self.working_directory {
            out.push_str(&format!("cd {} && ", shell_quote(dir)));
        }
        let single = self.commands.len() == 1;
        let lines: Vec<String> = self.commands.iter().map(CommandLine::to_shell).collect();
        if exec_last && single && self.working_directory.is_some() {
            out.push_str("exec ");
        }
        out.push_str(&lines.join(" && "));
        out
    }
}

fn expanded(entry: &Entry, name: &UnitName) -> Result<String, UnitError> {
    expand_specifiers(entry, name)
}

/// Reads the task-related directives of a service unit.
pub(crate) fn read_service(
    unit: &UnitFile,
    name: &UnitName,
    mode: Mode,
) -> Result<ServiceParts, UnitError> {
    let mut parts = ServiceParts {
        kind: "simple".to_string(),
        ..ServiceParts::default()
    };
    if let Some(entry) = unit.last("Service", "Type") {
        let kind = entry.value.as_str();
        match (kind, mode) {
            ("simple" | "exec" | "idle", _) | ("oneshot", Mode::Job) => {}
            ("notify" | "notify-reload", _) => {
                return Err(entry.untranslatable(
                    "readiness notification (sd_notify) has no receiver in a task; use \
                     Type=exec and a readiness or health check",
                ))
            }
            ("oneshot", Mode::App) => {
                return Err(entry.untranslatable(
                    "a oneshot service exits when done, and Marathon would relaunch it forever; \
                     run it from a timer as a Chronos job",
                ))
            }
            ("forking", _) => {
                return Err(entry.untranslatable(
                    "the process daemonizes and its parent exits, so the task would end at \
                     once; run the program in the foreground with Type=exec",
                ))
            }
            ("dbus", _) => {
                return Err(entry.untranslatable("a task has no D-Bus system bus to wait on"))
            }
            (other, _) => return Err(entry.invalid(format!("unknown service type '{other}'"))),
        }
        parts.kind = kind.to_string();
    }
    let execs = unit.list("Service", "ExecStart");
    if execs.is_empty() {
        return Err(UnitError::Missing {
            section: "Service".to_string(),
            key: "ExecStart".to_string(),
            reason: "the command the task runs".to_string(),
        });
    }
    if execs.len() > 1 && parts.kind != "oneshot" {
        return Err(
            execs[1].invalid("only Type=oneshot services may have several ExecStart= lines")
        );
    }
    for entry in &execs {
        let value = expanded(entry, name)?;
        let trimmed = value.trim_start();
        if let Some(prefix) = trimmed.chars().next().filter(|c| "-@:+!|".contains(*c)) {
            let reason = match prefix {
                '-' => {
                    "'-' (ignore the exit status) has no equivalent: the task's status is \
                        its exit status"
                }
                '@' => "'@' (a different argv[0]) has no equivalent",
                ':' => "':' (no variable expansion) has no equivalent: write $$ for a literal $",
                '+' | '!' => "'+'/'!' (run with full privileges) has no equivalent in a task",
                _ => "'|' (run through the user's shell) has no equivalent",
            };
            return Err(entry.untranslatable(reason));
        }
        parts
            .commands
            .push(CommandLine::parse(&value).map_err(|e| entry.invalid(e))?);
    }
    if let Some(entry) = unit.last("Service", "WorkingDirectory") {
        let value = expanded(entry, name)?;
        if value.starts_with('-') || value == "~" {
            return Err(entry.untranslatable(
                "'-' (missing is fine) and '~' (the user's home) depend on the machine; give \
                 an absolute path",
            ));
        }
        if !value.starts_with('/') {
            return Err(entry.invalid(format!("'{value}' is not an absolute path")));
        }
        parts.working_directory = Some(value);
    }
    for entry in unit.list("Service", "Environment") {
        let value = expanded(entry, name)?;
        for (key, val) in parse_environment(&value).map_err(|e| entry.invalid(e))? {
            parts.environment.insert(key, val);
        }
    }
    if let Some(entry) = unit.last("Service", "User") {
        let value = expanded(entry, name)?;
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(entry.invalid(format!("'{value}' is not a user name")));
        }
        parts.user = Some(value);
    }
    let memory = unit
        .last("Service", "MemoryMax")
        .or_else(|| unit.last("Service", "MemoryLimit"));
    if let Some(entry) = memory {
        match parse_bytes(&entry.value).map_err(|e| entry.invalid(e))? {
            None => {
                return Err(entry.untranslatable(
                    "a task reserves a fixed amount of memory, which is also its limit; give a \
                     size such as 512M",
                ))
            }
            Some(bytes) if bytes < 1.0 => {
                return Err(entry.invalid("a memory limit of 0 bytes leaves nothing to run"))
            }
            Some(bytes) => parts.mem = Some(bytes / (1024.0 * 1024.0)),
        }
    }
    if let Some(entry) = unit.last("Service", "CPUQuota") {
        let cpus = parse_percent(&entry.value).map_err(|e| entry.invalid(e))?;
        if cpus <= 0.0 {
            return Err(entry.invalid("a CPU quota of 0% leaves nothing to run"));
        }
        parts.cpus = Some(cpus);
    }
    if let Some(entry) = unit.last("Service", "Restart") {
        parts.restart = Some((entry.value.clone(), entry.clone()));
    }
    Ok(parts)
}

/// `name` made a Marathon path segment: lower case, `\xNN` escapes undone, `_` `@` `:` and other
/// characters outside `[a-z0-9.-]` as `-`; it must then start and end with a letter or digit.
pub(crate) fn marathon_segment(text: &str, whole: &str) -> Result<String, UnitError> {
    let mapped: String = unescape_name(text)
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let ok = mapped.starts_with(|c: char| c.is_ascii_alphanumeric())
        && mapped.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !mapped.contains("..")
        && !mapped.contains(".-")
        && !mapped.contains("-.");
    if !ok {
        return Err(UnitError::UnitName {
            name: whole.to_string(),
            reason: format!(
                "'{mapped}' is not a Marathon id segment (lower-case letters, digits, '-' and \
                 '.', starting and ending with a letter or digit)"
            ),
        });
    }
    Ok(mapped)
}

/// The Marathon app id of a unit: `web.service` → `/web`, `web@blue.service` → `/web-blue`.
pub(crate) fn app_id(name: &UnitName) -> Result<String, UnitError> {
    match name.instance.as_deref() {
        Some("") => Err(UnitError::UnitName {
            name: name.full.clone(),
            reason: "a template (name@.service) needs an instance: deploy name@instance.service"
                .to_string(),
        }),
        Some(instance) => Ok(format!(
            "/{}-{}",
            marathon_segment(&name.prefix, &name.full)?,
            marathon_segment(instance, &name.full)?
        )),
        None => Ok(format!("/{}", marathon_segment(&name.prefix, &name.full)?)),
    }
}

/// Glob matching as fnmatch(3) without brackets: `*` any run, `?` one character.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A value as a regular expression matching it literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn push_unique(constraints: &mut Vec<Value>, constraint: Value) {
    if !constraints.contains(&constraint) {
        constraints.push(constraint);
    }
}

/// A service unit as Marathon app JSON (`POST /v2/apps`).
pub fn service_to_app(unit_name: &str, text: &str) -> Result<Value, UnitError> {
    translate_service(unit_name, text, &ServiceOptions::default()).map(|t| t.json)
}

/// A service unit as Marathon app JSON, with the directives accepted without effect. See
/// `docs/units.md` for the mapping.
pub fn translate_service(
    unit_name: &str,
    text: &str,
    options: &ServiceOptions,
) -> Result<Translation, UnitError> {
    let name = UnitName::parse(unit_name, "service")?;
    let id = app_id(&name)?;
    let unit = UnitFile::parse(text)?;
    let mut ignored = check_service(&unit, Mode::App)?;
    let parts = read_service(&unit, &name, Mode::App)?;

    let mut app = Map::new();
    app.insert("id".to_string(), json!(id));
    let single = parts.commands.len() == 1;
    match parts.commands[0].literal_args() {
        Some(args) if single && parts.working_directory.is_none() => {
            app.insert("args".to_string(), json!(args));
        }
        _ => {
            app.insert("cmd".to_string(), json!(parts.shell_command(true)));
        }
    }
    match &parts.restart {
        None => ignored.push(
            "[Service] Restart= (absent; systemd's default is no): Marathon relaunches every \
             task that ends"
                .to_string(),
        ),
        Some((value, entry)) => {
            match value.as_str() {
                "always" => {}
                "on-failure" | "on-abnormal" | "on-abort" | "on-watchdog" | "on-success" => ignored
                    .push(format!(
                        "{}: Marathon relaunches every task that ends, whatever its exit status",
                        entry.label()
                    )),
                "no" => return Err(entry.untranslatable(
                    "Marathon relaunches every task that ends; a command that must run once is \
                     a Chronos job (a .timer unit)",
                )),
                other => return Err(entry.invalid(format!("unknown restart policy '{other}'"))),
            }
        }
    }
    if let Some(entry) = unit.last("Service", "RestartSec") {
        let delay = parse_timespan(&entry.value).map_err(|e| entry.invalid(e))?;
        app.insert(
            "backoffSeconds".to_string(),
            json!(seconds_up(delay, entry)?),
        );
    }
    if let Some(entry) = unit.last("Service", "TimeoutStopSec") {
        let grace = parse_timespan(&entry.value).map_err(|e| entry.invalid(e))?;
        app.insert(
            "taskKillGracePeriodSeconds".to_string(),
            json!(seconds_up(grace, entry)?),
        );
    }
    if let Some(user) = &parts.user {
        app.insert("user".to_string(), json!(user));
    }
    if !parts.environment.is_empty() {
        app.insert("env".to_string(), json!(parts.environment));
    }
    if let Some(cpus) = parts.cpus {
        app.insert("cpus".to_string(), json!(cpus));
    }
    if let Some(mem) = parts.mem {
        app.insert("mem".to_string(), json!(mem));
    }

    // [X-Fleet]
    let mut constraints: Vec<Value> = Vec::new();
    let mut metadata: Vec<(String, Vec<String>)> = Vec::new();
    for entry in unit.list("X-Fleet", "MachineMetadata") {
        let value = expanded(entry, &name)?;
        let words = crate::exec::split_words(&value).map_err(|e| entry.invalid(e))?;
        for word in words {
            let Some((key, val)) = word
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            else {
                return Err(entry.invalid(format!("'{word}' is not key=value")));
            };
            match metadata.iter_mut().find(|(k, _)| k == key) {
                Some((_, values)) => {
                    if !values.iter().any(|v| v == val) {
                        values.push(val.to_string());
                    }
                }
                None => metadata.push((key.to_string(), vec![val.to_string()])),
            }
        }
    }
    for (key, values) in &metadata {
        let pattern = values
            .iter()
            .map(|v| regex_escape(v))
            .collect::<Vec<_>>()
            .join("|");
        push_unique(&mut constraints, json!([key, "LIKE", pattern]));
    }
    for entry in unit.list("X-Fleet", "Conflicts") {
        let value = expanded(entry, &name)?;
        for pattern in crate::exec::split_words(&value).map_err(|e| entry.invalid(e))? {
            if !glob_match(&pattern, &name.full) {
                return Err(entry.untranslatable(format!(
                    "Fleet keeps this unit off machines running '{pattern}'; Marathon knows \
                     only this app's own instances (a pattern matching {} becomes hostname \
                     UNIQUE)",
                    name.full
                )));
            }
            if pattern != name.full {
                ignored.push(format!(
                    "{}: '{pattern}' matches this unit, so its instances are kept apart \
                     (hostname UNIQUE); other units matching it are other apps and are not",
                    entry.label()
                ));
            }
            push_unique(&mut constraints, json!(["hostname", "UNIQUE"]));
        }
    }
    let mut instances = 1u32;
    if let Some(entry) = unit.last("X-Fleet", "Global") {
        if parse_bool(&entry.value).map_err(|e| entry.invalid(e))? {
            // Plateau's Marathon runs one instance on every matching agent, joining ones
            // included, for apps with this label; `instances` then only matters elsewhere.
            app.insert("labels".to_string(), json!({ ONE_PER_AGENT_LABEL: "true" }));
            if let Some(agents) = options.agents {
                if agents == 0 || agents > limits::GLOBAL_INSTANCES_MAX {
                    return Err(entry.invalid(format!(
                        "{agents} agents: a global unit needs between 1 and {} agents",
                        limits::GLOBAL_INSTANCES_MAX
                    )));
                }
                instances = agents;
            }
            push_unique(&mut constraints, json!(["hostname", "UNIQUE"]));
        }
    }
    app.insert("instances".to_string(), json!(instances));
    if !constraints.is_empty() {
        app.insert("constraints".to_string(), Value::Array(constraints));
    }
    Ok(Translation {
        json: Value::Object(app),
        ignored,
    })
}

/// A time span in whole seconds, rounded up, for Marathon's integer fields.
fn seconds_up(span: std::time::Duration, entry: &Entry) -> Result<u32, UnitError> {
    let seconds = span.as_secs() + u64::from(span.subsec_nanos() > 0);
    u32::try_from(seconds).map_err(|_| entry.invalid("longer than Marathon's seconds fields hold"))
}
