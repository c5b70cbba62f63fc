//! `.timer` units with their `.service` as Chronos jobs.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Map, Value};

use crate::parse::{expand_specifiers, unescape_name, Entry, UnitFile, UnitName};
use crate::service::{check_service, read_service, Mode};
use crate::values::{iso_seconds, parse_bool, parse_timespan};
use crate::{Translation, UnitError};

/// What a timer translation needs besides the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerOptions {
    /// The time of deployment: monotonic timers with a first delay (`OnActiveSec=`,
    /// `OnBootSec=`, `OnStartupSec=`) start this long after it. Without it such timers are
    /// refused; timers without a first delay start at once (an empty ISO start, which Chronos
    /// reads as "now").
    pub now: Option<DateTime<Utc>>,
}

const DELAY_KEYS: [&str; 3] = ["OnActiveSec", "OnBootSec", "OnStartupSec"];
const INTERVAL_KEYS: [&str; 2] = ["OnUnitActiveSec", "OnUnitInactiveSec"];

fn classify_timer(entry: &Entry) -> Result<Option<&'static str>, UnitError> {
    let key = entry.key.as_str();
    match entry.section.as_str() {
        "Unit" => match key {
            "Description" => Ok(None),
            "Documentation" => Ok(Some("documentation only")),
            "After" | "Before" | "Wants" | "DefaultDependencies" => {
                Ok(Some("ordering between units on one machine"))
            }
            _ if key.starts_with("Condition") || key.starts_with("Assert") => Err(entry
                .untranslatable("conditions are checked on the machine; give the job constraints")),
            _ => Err(entry.untranslatable("not a [Unit] directive Plateau translates")),
        },
        "Install" => match key {
            "WantedBy" | "RequiredBy" | "UpheldBy" | "Alias" | "Also" | "DefaultInstance" => Ok(
                Some("enabling at boot; Chronos schedules the job when it is added"),
            ),
            _ => Err(entry.untranslatable("not an [Install] directive")),
        },
        "Timer" => match key {
            "OnCalendar" | "OnActiveSec" | "OnBootSec" | "OnStartupSec" | "OnUnitActiveSec"
            | "OnUnitInactiveSec" | "Persistent" | "AccuracySec" | "RandomizedDelaySec"
            | "FixedRandomDelay" | "Unit" | "WakeSystem" | "OnClockChange" | "OnTimezoneChange" => {
                Ok(None)
            }
            "RemainAfterElapse" => Ok(Some("a Chronos job stays until deleted")),
            _ => Err(entry.untranslatable("not a [Timer] directive Plateau translates")),
        },
        other => Err(entry.untranslatable(format!(
            "a .timer unit has no [{other}] section Plateau translates"
        ))),
    }
}

/// A Chronos job name (`[\w.-]+`) from a unit name: `backup.timer` → `backup`,
/// `backup@db.timer` → `backup-db`.
fn job_name(name: &UnitName) -> Result<String, UnitError> {
    let stem = match name.instance.as_deref() {
        Some("") => {
            return Err(UnitError::UnitName {
                name: name.full.clone(),
                reason: "a template (name@.timer) needs an instance: add name@instance.timer"
                    .to_string(),
            })
        }
        Some(instance) => format!(
            "{}-{}",
            unescape_name(&name.prefix),
            unescape_name(instance)
        ),
        None => unescape_name(&name.prefix),
    };
    if stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        Ok(stem)
    } else {
        Err(UnitError::UnitName {
            name: name.full.clone(),
            reason: format!(
                "'{stem}' is not a Chronos job name (letters, digits, '_', '.' and '-')"
            ),
        })
    }
}

fn one_of<'a>(unit: &'a UnitFile, keys: &[&str]) -> Result<Option<&'a Entry>, UnitError> {
    let mut found: Vec<&Entry> = keys
        .iter()
        .flat_map(|key| unit.list("Timer", key))
        .collect();
    found.sort_by_key(|e| e.line);
    if let Some(second) = found.get(1) {
        return Err(second.untranslatable(format!(
            "a Chronos job has one schedule; {} is already given on line {}",
            found[0].key, found[0].line
        )));
    }
    Ok(found.first().copied())
}

fn positive_span(entry: &Entry) -> Result<Duration, UnitError> {
    let span = parse_timespan(&entry.value).map_err(|e| entry.invalid(e))?;
    if span.is_zero() {
        return Err(entry.invalid("a time span of 0"));
    }
    Ok(span)
}

fn flag_must_be_off(unit: &UnitFile, key: &str, reason: &str) -> Result<(), UnitError> {
    if let Some(entry) = unit.last("Timer", key) {
        if parse_bool(&entry.value).map_err(|e| entry.invalid(e))? {
            return Err(entry.untranslatable(reason.to_string()));
        }
    }
    Ok(())
}

/// A timer and the service it starts as Chronos job JSON (`POST /scheduler/iso8601`). Timers
/// whose first run is a delay after deployment need the time: use [`translate_timer`].
pub fn timer_to_job(
    timer_name: &str,
    timer_text: &str,
    service_text: &str,
) -> Result<Value, UnitError> {
    translate_timer(
        timer_name,
        timer_text,
        service_text,
        &TimerOptions::default(),
    )
    .map(|t| t.json)
}

/// A timer and the service it starts as Chronos job JSON, with the directives accepted without
/// effect. See `docs/units.md` for the mapping.
pub fn translate_timer(
    timer_name: &str,
    timer_text: &str,
    service_text: &str,
    options: &TimerOptions,
) -> Result<Translation, UnitError> {
    let timer_unit_name = UnitName::parse(timer_name, "timer")?;
    let name = job_name(&timer_unit_name)?;
    let timer = UnitFile::parse(timer_text)?;
    let mut ignored = Vec::new();
    for entry in &timer.entries {
        if let Some(reason) = classify_timer(entry)? {
            ignored.push(format!("{}: {reason}", entry.label()));
        }
    }
    let service_name = match timer.last("Timer", "Unit") {
        Some(entry) => {
            let value = expand_specifiers(entry, &timer_unit_name)?;
            UnitName::parse(&value, "service").map_err(|e| {
                entry.invalid(format!("a timer of a Chronos job starts a .service: {e}"))
            })?
        }
        None => UnitName {
            full: format!("{}.service", timer_unit_name.without_suffix()),
            prefix: timer_unit_name.prefix.clone(),
            instance: timer_unit_name.instance.clone(),
            suffix: "service".to_string(),
        },
    };
    let service = UnitFile::parse(service_text)?;
    ignored.extend(check_service(&service, Mode::Job)?);
    let parts = read_service(&service, &service_name, Mode::Job)?;

    let mut job = Map::new();
    job.insert("name".to_string(), json!(name));
    job.insert("command".to_string(), json!(parts.shell_command(false)));
    job.insert("shell".to_string(), json!(true));

    // The schedule.
    let calendars = timer.list("Timer", "OnCalendar");
    if let Some(second) = calendars.get(1) {
        return Err(second.untranslatable(format!(
            "a Chronos job has one schedule; OnCalendar= is already given on line {}",
            calendars[0].line
        )));
    }
    let delay = one_of(&timer, &DELAY_KEYS)?;
    let interval = one_of(&timer, &INTERVAL_KEYS)?;
    if let Some(calendar) = calendars.first() {
        if let Some(other) = delay.or(interval) {
            return Err(other.untranslatable(format!(
                "a Chronos job has one schedule; OnCalendar= is already given on line {}",
                calendar.line
            )));
        }
        let value = expand_specifiers(calendar, &timer_unit_name)?;
        job.insert("calendar".to_string(), json!(value.trim()));
    } else {
        let start = match delay {
            None => String::new(),
            Some(entry) => {
                let span = positive_span(entry)?;
                let now = options.now.ok_or_else(|| {
                    entry.untranslatable(
                        "the first run is this long after deployment, which needs the time of \
                         deployment (TimerOptions::now)",
                    )
                })?;
                if entry.key != "OnActiveSec" {
                    ignored.push(format!(
                        "{}: counted from the job's deployment, not from a machine's boot",
                        entry.label()
                    ));
                }
                let start = TimeDelta::from_std(span)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| entry.invalid("too far in the future"))?;
                start.to_rfc3339_opts(SecondsFormat::Millis, true)
            }
        };
        let schedule = match interval {
            Some(entry) => {
                let period = positive_span(entry)?;
                if entry.key == "OnUnitInactiveSec" {
                    ignored.push(format!(
                        "{}: Chronos counts the interval from each run's start, not its end",
                        entry.label()
                    ));
                }
                format!("R/{start}/{}", iso_seconds(period))
            }
            None if delay.is_some() => format!("R1/{start}/P1D"),
            None => {
                return Err(UnitError::Missing {
                    section: "Timer".to_string(),
                    key: "OnCalendar".to_string(),
                    reason: "a schedule: OnCalendar=, or OnUnitActiveSec= with an optional \
                             OnActiveSec=/OnBootSec="
                        .to_string(),
                })
            }
        };
        job.insert("schedule".to_string(), json!(schedule));
    }
    let persistent = match timer.last("Timer", "Persistent") {
        Some(entry) => parse_bool(&entry.value).map_err(|e| entry.invalid(e))?,
        None => false,
    };
    job.insert(
        "catchUp".to_string(),
        json!(if persistent { "once" } else { "skip" }),
    );
    if let Some(entry) = timer.last("Timer", "AccuracySec") {
        job.insert(
            "epsilon".to_string(),
            json!(iso_seconds(positive_span(entry)?)),
        );
    }
    if let Some(entry) = timer.last("Timer", "RandomizedDelaySec") {
        if !parse_timespan(&entry.value)
            .map_err(|e| entry.invalid(e))?
            .is_zero()
        {
            return Err(entry.untranslatable(
                "Chronos runs a job at its scheduled instant, the same on every replica; use an \
                 OnCalendar= time of your choosing instead of a random delay",
            ));
        }
    }
    flag_must_be_off(
        &timer,
        "FixedRandomDelay",
        "Chronos has no random delay to fix",
    )?;
    flag_must_be_off(
        &timer,
        "WakeSystem",
        "Chronos does not wake suspended machines",
    )?;
    flag_must_be_off(
        &timer,
        "OnClockChange",
        "Chronos runs on its schedule, not on clock changes",
    )?;
    flag_must_be_off(
        &timer,
        "OnTimezoneChange",
        "Chronos runs on its schedule, not on time zone changes",
    )?;

    // Retries: a oneshot service is not restarted by default.
    let retries = match &parts.restart {
        None => 0,
        Some((value, entry)) => match value.as_str() {
            "no" => 0,
            "on-failure" | "on-abnormal" | "on-abort" | "on-watchdog" => {
                ignored.push(format!(
                    "{}: a failed run is retried twice (Chronos' default retries)",
                    entry.label()
                ));
                2
            }
            "always" | "on-success" => {
                return Err(entry.untranslatable(
                    "a job's run ends when its command succeeds; only failures are retried",
                ))
            }
            other => return Err(entry.invalid(format!("unknown restart policy '{other}'"))),
        },
    };
    job.insert("retries".to_string(), json!(retries));

    // Longest run: RuntimeMaxSec=, or TimeoutStartSec= of a oneshot service (its whole run).
    let mut limit: Option<Duration> = None;
    for key in ["TimeoutStartSec", "RuntimeMaxSec"] {
        let Some(entry) = service.last("Service", key) else {
            continue;
        };
        if key == "TimeoutStartSec" && parts.kind != "oneshot" {
            ignored.push(format!(
                "{}: bounds only the start of a non-oneshot service",
                entry.label()
            ));
            continue;
        }
        if entry.value == "infinity" {
            continue;
        }
        let span = positive_span(entry)?;
        limit = Some(limit.map_or(span, |l| l.min(span)));
    }
    if let Some(limit) = limit {
        let millis = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
        job.insert("maxCompletionTime".to_string(), json!(millis));
    }

    if let Some(cpus) = parts.cpus {
        job.insert("cpus".to_string(), json!(cpus));
    }
    if let Some(mem) = parts.mem {
        job.insert("mem".to_string(), json!(mem));
    }
    if let Some(user) = &parts.user {
        job.insert("runAsUser".to_string(), json!(user));
    }
    if !parts.environment.is_empty() {
        let variables: Vec<Value> = parts
            .environment
            .iter()
            .map(|(k, v)| json!({ "name": k, "value": v }))
            .collect();
        job.insert("environmentVariables".to_string(), Value::Array(variables));
    }
    let description = match timer.last("Unit", "Description") {
        Some(entry) => {
            if let Some(other) = service.last("Unit", "Description") {
                ignored.push(format!(
                    "{}: the timer's own Description= describes the job",
                    other.label()
                ));
            }
            Some(expand_specifiers(entry, &timer_unit_name)?)
        }
        None => match service.last("Unit", "Description") {
            Some(entry) => Some(expand_specifiers(entry, &service_name)?),
            None => None,
        },
    };
    if let Some(description) = description {
        job.insert("description".to_string(), json!(description));
    }
    Ok(Translation {
        json: Value::Object(job),
        ignored,
    })
}
