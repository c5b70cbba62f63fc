//! Fuzz targets of Chronos' inputs: job JSON as `POST /scheduler/iso8601` and
//! `/scheduler/dependency` read it, ISO 8601 repeating intervals (`R5/2026-01-01T00:00:00Z/PT1H`),
//! periods (`epsilon`), cron expressions, systemd calendar expressions and time zones. Each is accepted or refused with an
//! error naming the field, never a panic; an accepted job can be launched (its resources pass
//! the master's checks) and scheduled (its instants can be computed); a schedule's text form
//! reads back as the same schedule.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use plateau_master::resources::Resources;
use plateau_runtime::fuzzing::fuzz_cases;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::job::{Job, JobError, JobGraph, TaskDefaults};
use crate::schedule::{due_instants, CatchUp, Period, Schedule};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn zone() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("UTC".to_string()),
        Just("Europe/Paris".to_string()),
        Just("America/New_York".to_string()),
        Just("Australia/Lord_Howe".to_string()),
        Just("+05:30".to_string()),
        Just("Nowhere/Land".to_string()),
        "\\PC{0,10}",
    ]
}

fn period_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "P([0-9]{1,12}[YMWD]){0,3}(T([0-9]{1,12}(\\.[0-9]{1,3})?[HMS]){0,3})?",
        Just("PT0S".to_string()),
        Just("PT1H".to_string()),
        Just("P1M".to_string()),
        Just("P99999999999Y".to_string()),
        Just("PT18446744073709551616S".to_string()),
        "\\PC{0,12}",
    ]
}

fn date_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("2026-01-01T00:00:00Z".to_string()),
        Just("2026-03-29T02:30:00".to_string()),
        Just("+262143-12-31T23:59:59Z".to_string()),
        Just("-262143-01-01T00:00:00Z".to_string()),
        Just("9999-12-31T23:59:59.999Z".to_string()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?",
        "\\PC{0,12}",
    ]
}

fn iso_text() -> impl Strategy<Value = String> {
    let repeat = prop_oneof![
        Just("R".to_string()),
        "R[0-9]{1,3}",
        Just("R18446744073709551616".to_string()),
        Just("R-1".to_string()),
        "\\PC{0,3}",
    ];
    prop_oneof![
        4 => (repeat, date_text(), period_text()).prop_map(|(r, d, p)| format!("{r}/{d}/{p}")),
        1 => "\\PC{0,40}",
    ]
}

fn cron_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("*".to_string()),
        "[0-9]{1,3}",
        "[0-9]{1,2}-[0-9]{1,2}",
        "\\*/[0-9]{1,3}",
        "[0-9]{1,2}(,[0-9]{1,2}){1,3}",
        Just("MON-FRI".to_string()),
        Just("L".to_string()),
        Just("?".to_string()),
        "\\PC{0,3}",
    ];
    prop_oneof![
        4 => proptest::collection::vec(field, 0..8).prop_map(|f| f.join(" ")),
        1 => prop_oneof![Just("@daily".to_string()), Just("@hourly".to_string()), "@\\PC{0,8}".prop_map(|s| s)],
        1 => "\\PC{0,30}",
    ]
}

fn calendar_text() -> impl Strategy<Value = String> {
    let field = |max: u32| {
        prop_oneof![
            Just("*".to_string()),
            (0..=max + 2).prop_map(|n| format!("{n:02}")),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{a}..{b}")),
            (0..=max, 0..=max).prop_map(|(a, r)| format!("{a}/{r}")),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{a},{b}")),
            "\\*/[0-9]{1,2}",
            "[ -~]{0,4}",
        ]
    };
    let weekdays = prop_oneof![
        Just(String::new()),
        Just("Mon..Fri ".to_string()),
        Just("Sat,Sun ".to_string()),
        Just("Fri..Mon ".to_string()),
        Just("tuesday ".to_string()),
        "[A-Za-z.,]{0,8} ",
    ];
    let year = prop_oneof![
        Just("*".to_string()),
        (1960u32..2210).prop_map(|y| y.to_string()),
        (0u32..100).prop_map(|y| format!("{y:02}")),
        Just("2024..2030/2".to_string()),
    ];
    let zone = prop_oneof![
        Just(String::new()),
        Just(" UTC".to_string()),
        Just(" Europe/Berlin".to_string()),
        Just(" America/New_York".to_string()),
        Just(" Australia/Lord_Howe".to_string()),
        Just(" Nowhere/Land".to_string()),
    ];
    let separator = prop_oneof![Just("-"), Just("~")];
    let expression = (
        weekdays,
        year,
        field(12),
        separator,
        field(31),
        field(23),
        field(59),
        field(59),
        zone,
    )
        .prop_map(|(w, y, mo, sep, d, h, mi, s, z)| format!("{w}{y}-{mo}{sep}{d} {h}:{mi}:{s}{z}"));
    prop_oneof![
        4 => expression,
        1 => prop_oneof![
            Just("daily".to_string()),
            Just("weekly Europe/Berlin".to_string()),
            Just("quarterly".to_string()),
            Just("*:0/15".to_string()),
            Just("Mon 02:30".to_string()),
        ],
        1 => "\\PC{0,40}",
    ]
}

/// What an accepted schedule must satisfy: instants come in order, its text reads back as the
/// same schedule, and catching up computes without panicking whatever the gap.
fn check_schedule(schedule: &Schedule, zone: &str, epsilon: Duration) -> Result<(), TestCaseError> {
    let mut last = None;
    for instant in schedule.instants_after(now()).take(5) {
        if let Some(previous) = last {
            prop_assert!(instant > previous, "{} after {}", instant, previous);
        }
        last = Some(instant);
    }
    let _ = schedule.last_before(now());
    let _ = schedule.first_at_or_after(now());
    if let Schedule::Iso(_) = schedule {
        let text = schedule.to_chronos_string();
        let back = Schedule::parse_iso(&text, zone, now());
        prop_assert!(back.is_ok(), "{:?} reads back as {:?}", text, back);
        prop_assert_eq!(back.unwrap().to_chronos_string(), text);
    }
    if let Schedule::Calendar(_) = schedule {
        let text = schedule.to_chronos_string();
        let back = Schedule::parse_calendar(&text, zone);
        prop_assert_eq!(back.as_ref(), Ok(schedule), "{:?}", text);
        // Consecutive runs invert: the run before a run is the previous one.
        let runs: Vec<_> = schedule.instants_after(now()).take(4).collect();
        for pair in runs.windows(2) {
            prop_assert_eq!(schedule.last_before(pair[1]), Some(pair[0]));
        }
    }
    for last_scheduled in [None, Some(now() - chrono::TimeDelta::days(400))] {
        for policy in [CatchUp::Once, CatchUp::All, CatchUp::Skip] {
            let due = due_instants(schedule, last_scheduled, now(), epsilon, policy, 16);
            prop_assert!(due.len() <= 16);
            for instant in &due {
                prop_assert!(*instant <= now());
                let _ = schedule.after_run(*instant);
            }
        }
    }
    Ok(())
}

fn base_job() -> Value {
    json!({
        "name": "nightly-report",
        "command": "echo report",
        "schedule": "R/2026-01-01T00:00:00Z/PT1H",
        "scheduleTimeZone": "Europe/Paris",
        "epsilon": "PT30M",
        "retries": 3,
        "cpus": 0.5,
        "mem": 256,
        "disk": 100,
        "owner": "ops@example.com",
        "environmentVariables": [{"name": "A", "value": "b"}],
        "arguments": ["x"],
        "uris": ["http://example.com/a.tgz"],
        "constraints": [["rack", "EQUALS", "r1"]],
        "catchUp": "all",
        "lastSuccess": "2026-02-01T00:00:00.000Z",
        "successCount": 4
    })
}

fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e300)),
        Just(json!(-1e300)),
        Just(json!(1e10)),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX)),
        Just(json!(0.5)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        Just(json!([["a", "LIKE", "("]])),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        iso_text().prop_map(Value::String),
        cron_text().prop_map(Value::String),
        calendar_text().prop_map(Value::String),
        period_text().prop_map(Value::String),
        "\\PC{0,16}".prop_map(Value::String),
    ]
}

fn job_key() -> impl Strategy<Value = String> {
    let keys: Vec<String> = base_job()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .chain(
            [
                "cron",
                "calendar",
                "parents",
                "container",
                "fetch",
                "shell",
                "concurrent",
                "disabled",
                "maxCompletionTime",
                "highPriority",
                "errorCount",
            ]
            .map(String::from),
        )
        .collect();
    proptest::sample::select(keys)
}

fn damaged_job() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (job_key(), proptest::option::weighted(0.9, edge_value())),
        1..4,
    )
    .prop_map(|edits| {
        let mut job = base_job();
        let map = job.as_object_mut().unwrap();
        for (key, value) in edits {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        job
    })
}

/// A body through the path of `POST /scheduler/iso8601`: JSON into a `Job`, then the graph's
/// checks. An accepted job is launchable and schedulable.
fn check_job_body(body: &[u8]) -> Result<(), TestCaseError> {
    let Ok(job) = serde_json::from_slice::<Job>(body) else {
        return Ok(()); // a 400 naming the JSON problem
    };
    let mut graph = JobGraph::new();
    match graph.upsert(job.clone(), now()) {
        Err(JobError::Invalid { field, message }) => {
            prop_assert!(!field.is_empty() && !message.is_empty());
        }
        Err(other) => prop_assert!(
            other.field().is_some() || matches!(other, JobError::TooManyJobs),
            "{:?}",
            other
        ),
        Ok(_) => {
            let stored = graph.get(&job.name).expect("upserted").clone();
            let mut launched = stored.clone();
            launched.apply_defaults(&TaskDefaults::default());
            prop_assert!(
                Resources::new(launched.cpus, launched.mem, launched.disk).is_ok(),
                "cpus {} mem {} disk {} accepted but not launchable",
                launched.cpus,
                launched.mem,
                launched.disk
            );
            let epsilon = stored
                .epsilon_duration()
                .ok()
                .flatten()
                .unwrap_or(Duration::from_secs(60));
            if let Some(schedule) = graph.schedule(&job.name) {
                let zone = stored.schedule_time_zone.clone().unwrap_or_default();
                check_schedule(schedule, &zone, epsilon)?;
            }
            // What was stored reads back through the same path.
            let again = serde_json::to_vec(&stored).unwrap();
            let reread: Job = serde_json::from_slice(&again).unwrap();
            let mut other = JobGraph::new();
            prop_assert!(
                other.upsert(reread, now()).is_ok(),
                "{}",
                String::from_utf8_lossy(&again)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    #[test]
    fn fuzz_chronos_iso_schedule(text in iso_text(), zone in zone(), epsilon_secs in prop_oneof![Just(0u64), 1u64..100_000, Just(u64::MAX)]) {
        if let Ok(schedule) = Schedule::parse_iso(&text, &zone, now()) {
            check_schedule(&schedule, &zone, Duration::from_secs(epsilon_secs))?;
        }
    }

    #[test]
    fn fuzz_chronos_cron(text in cron_text(), zone in zone()) {
        if let Ok(schedule) = Schedule::parse_cron(&text, &zone) {
            check_schedule(&schedule, &zone, Duration::from_secs(60))?;
        }
    }

    #[test]
    fn fuzz_chronos_calendar(text in calendar_text(), zone in zone()) {
        if let Ok(schedule) = Schedule::parse_calendar(&text, &zone) {
            check_schedule(&schedule, &zone, Duration::from_secs(60))?;
        }
    }

    #[test]
    fn fuzz_chronos_period(text in period_text()) {
        if let Ok(period) = Period::parse(&text) {
            let printed = period.to_string();
            let back = Period::parse(&printed);
            prop_assert!(back.is_ok(), "{:?} printed as {:?}", text, printed);
            prop_assert_eq!(back.unwrap().to_duration(), period.to_duration());
        }
    }

    #[test]
    fn fuzz_chronos_job_random_bytes(body in proptest::collection::vec(any::<u8>(), 0..128)) {
        check_job_body(&body)?;
    }

    #[test]
    fn fuzz_chronos_job_damaged(job in damaged_job()) {
        check_job_body(&serde_json::to_vec(&job).unwrap())?;
    }
}

#[test]
fn fuzz_base_job_is_valid() {
    let job: Job = serde_json::from_value(base_job()).unwrap();
    JobGraph::new().upsert(job, now()).unwrap();
}
