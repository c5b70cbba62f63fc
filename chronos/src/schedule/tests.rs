use super::*;
use proptest::prelude::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad test instant {text}: {e}"))
        .to_utc()
}

fn now() -> DateTime<Utc> {
    utc("2024-01-01T00:00:00Z")
}

fn iso(schedule: &str, zone: &str) -> Schedule {
    Schedule::parse_iso(schedule, zone, now()).unwrap_or_else(|e| panic!("{schedule}: {e}"))
}

fn cron(expression: &str, zone: &str) -> Schedule {
    Schedule::parse_cron(expression, zone).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

fn take(schedule: &Schedule, after: &str, n: usize) -> Vec<String> {
    schedule
        .instants_after(utc(after))
        .take(n)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect()
}

// ---------------------------------------------------------------- periods

#[test]
fn period_parses_every_field_and_prints_back() {
    let p = Period::parse("P1Y2M3W10DT2H30M5.25S").unwrap();
    assert_eq!(
        p,
        Period {
            years: 1,
            months: 2,
            weeks: 3,
            days: 10,
            hours: 2,
            minutes: 30,
            seconds: 5,
            nanos: 250_000_000
        }
    );
    assert_eq!(p.to_string(), "P1Y2M3W10DT2H30M5.25S");
    for text in ["PT10S", "PT1H", "P1D", "P1M", "P1W", "PT60M", "P1DT12H"] {
        assert_eq!(Period::parse(text).unwrap().to_string(), text);
    }
}

#[test]
fn period_rejects_malformed_text() {
    for text in [
        "",
        "P",
        "1D",
        "PT",
        "P1DT",
        "PD",
        "P1H",
        "PT1D",
        "P1D1Y",
        "P1.5D",
        "PT1S2M",
        "P-1D",
        "P1X",
        "PT1",
        "P99999999999D",
    ] {
        assert!(Period::parse(text).is_err(), "{text:?} should not parse");
    }
}

#[test]
fn period_to_duration_refuses_calendar_months() {
    assert_eq!(
        Period::parse("PT60S").unwrap().to_duration(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        Period::parse("P1DT1S").unwrap().to_duration(),
        Some(Duration::from_secs(86_401))
    );
    assert_eq!(Period::parse("P1M").unwrap().to_duration(), None);
}

// ---------------------------------------------------------------- ISO parsing

#[test]
fn iso_counts_runs_and_respects_start() {
    let s = iso("R3/2014-03-08T20:00:00.000Z/PT2M", "");
    assert_eq!(s.remaining(), Some(3));
    assert_eq!(
        take(&s, "2000-01-01T00:00:00Z", 10),
        [
            "2014-03-08T20:00:00Z",
            "2014-03-08T20:02:00Z",
            "2014-03-08T20:04:00Z"
        ]
    );
    // Strictly after: an instant equal to `after` is not returned.
    assert_eq!(
        s.next_after(utc("2014-03-08T20:02:00Z")),
        Some(utc("2014-03-08T20:04:00Z"))
    );
}

#[test]
fn iso_repetition_forms() {
    assert_eq!(iso("R/2014-03-08T20:00:00Z/PT1M", "").remaining(), None);
    assert_eq!(iso("R-1/2014-03-08T20:00:00Z/PT1M", "").remaining(), None);
    let never = iso("R0/2014-03-08T20:00:00Z/PT1M", "");
    assert!(never.is_exhausted());
    assert_eq!(never.next_after(utc("2000-01-01T00:00:00Z")), None);
    assert_eq!(
        due_instants(
            &never,
            None,
            utc("2015-01-01T00:00:00Z"),
            DEFAULT_EPSILON,
            CatchUp::All,
            10
        ),
        Vec::<DateTime<Utc>>::new()
    );
}

#[test]
fn iso_empty_start_means_now() {
    let s = Schedule::parse_iso("R2//PT1H", "", utc("2024-05-05T10:00:00Z")).unwrap();
    assert_eq!(
        take(&s, "2024-05-05T09:00:00Z", 5),
        ["2024-05-05T10:00:00Z", "2024-05-05T11:00:00Z"]
    );
}

#[test]
fn iso_accepts_offsets_and_short_forms() {
    let cases = [
        ("R1/2014-03-08T20:00:00+01:00/PT1S", "2014-03-08T19:00:00Z"),
        ("R1/2014-03-08T20:00:00+0100/PT1S", "2014-03-08T19:00:00Z"),
        ("R1/2014-03-08T20:00Z/PT1S", "2014-03-08T20:00:00Z"),
        ("R1/2014-03-08T20:00:00.5Z/PT1S", "2014-03-08T20:00:00.500Z"),
        ("R1/2014-03-08T20:00:00/PT1S", "2014-03-08T20:00:00Z"),
    ];
    for (schedule, first) in cases {
        let s = iso(schedule, "");
        assert_eq!(
            s.next_after(utc("2000-01-01T00:00:00Z")),
            Some(utc(first)),
            "{schedule}"
        );
    }
}

#[test]
fn iso_rejects_bad_schedules_with_chronos_messages() {
    for bad in [
        "",
        "R/PT1M",
        "X/2014-03-08T20:00:00Z/PT1M",
        "R1/garbage/PT1M",
        "R1/2014-03-08T20:00:00Z/P",
        "R1/2014-03-08T20:00:00Z/PT0S",
        "R1/2014-03-08T20:00:00Z/PT1M/extra",
    ] {
        let err = Schedule::parse_iso(bad, "", now()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("Cannot parse schedule '{bad}'")),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        Schedule::parse_iso("R1/1969-12-31T23:59:59Z/PT1M", "", now()).unwrap_err(),
        ScheduleError::BeforeEpoch("1969-12-31T23:59:59Z".to_string())
    );
    assert!(matches!(
        Schedule::parse_iso("R1/2014-03-08T20:00:00Z/PT1M", "Mars/Olympus", now()),
        Err(ScheduleError::TimeZone(_))
    ));
}

#[test]
fn schedule_time_zone_keeps_wall_clock_and_replaces_zone() {
    // The reference example: 18:32 with PST runs at 18:32 Pacific.
    let s = iso("R/2014-10-10T18:32:00Z/PT60M", "PST");
    assert_eq!(
        s.next_after(utc("2014-10-10T00:00:00Z")),
        Some(utc("2014-10-11T01:32:00Z"))
    );
    assert_eq!(s.zone(), Zone::Named(chrono_tz::America::Los_Angeles));
    assert_eq!(
        s.to_chronos_string(),
        "R/2014-10-10T18:32:00.000-07:00/PT60M"
    );
}

#[test]
fn java_aliases_and_tz_names_parse() {
    assert_eq!(
        Zone::parse("America/New_York").unwrap(),
        Zone::Named(chrono_tz::America::New_York)
    );
    assert_eq!(
        Zone::parse("CST").unwrap(),
        Zone::Named(chrono_tz::America::Chicago)
    );
    assert_eq!(Zone::parse("EST").unwrap(), Zone::Named(chrono_tz::EST));
    assert!(Zone::parse("Nowhere/Land").is_err());
}

// ---------------------------------------------------------------- calendar arithmetic

#[test]
fn months_are_calendar_months_from_the_start_without_drift() {
    let s = iso("R/2024-01-31T12:00:00Z/P1M", "");
    assert_eq!(
        take(&s, "2024-01-01T00:00:00Z", 4),
        [
            "2024-01-31T12:00:00Z",
            "2024-02-29T12:00:00Z",
            "2024-03-31T12:00:00Z",
            "2024-04-30T12:00:00Z"
        ]
    );
}

#[test]
fn days_keep_local_time_across_dst_while_hours_are_exact() {
    // P1D in Berlin keeps 12:00 local: 11:00Z in winter, 10:00Z in summer.
    let daily = iso("R/2024-03-30T12:00:00+01:00/P1D", "Europe/Berlin");
    assert_eq!(
        take(&daily, "2024-03-30T00:00:00Z", 2),
        ["2024-03-30T11:00:00Z", "2024-03-31T10:00:00Z"]
    );
    // PT24H is exact elapsed time: 13:00 local after the change.
    let exact = iso("R/2024-03-30T12:00:00+01:00/PT24H", "Europe/Berlin");
    assert_eq!(
        take(&exact, "2024-03-30T00:00:00Z", 2),
        ["2024-03-30T11:00:00Z", "2024-03-31T11:00:00Z"]
    );
}

// ---------------------------------------------------------------- DST rules

const NY: &str = "America/New_York";

#[test]
fn spring_forward_skipped_time_runs_once_shifted_by_the_gap() {
    // 2024-03-10: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist.
    let expected = [
        "2024-03-09T07:30:00Z", // 02:30 EST
        "2024-03-10T07:30:00Z", // 03:30 EDT: 02:30 shifted forward by the one-hour gap
        "2024-03-11T06:30:00Z", // 02:30 EDT
    ];
    let daily = iso("R/2024-03-09T02:30:00-05:00/P1D", NY);
    assert_eq!(take(&daily, "2024-03-09T00:00:00Z", 3), expected);
    let cron_daily = cron("30 2 * * *", NY);
    assert_eq!(take(&cron_daily, "2024-03-09T00:00:00Z", 3), expected);
}

#[test]
fn fall_back_repeated_time_runs_once_at_its_first_occurrence() {
    // 2024-11-03: 02:00 EDT falls back to 01:00 EST, so 01:30 happens twice.
    let expected = [
        "2024-11-02T05:30:00Z", // 01:30 EDT
        "2024-11-03T05:30:00Z", // 01:30 EDT, the first pass; 06:30Z (EST) does not run
        "2024-11-04T06:30:00Z", // 01:30 EST
    ];
    let daily = iso("R/2024-11-02T01:30:00-04:00/P1D", NY);
    assert_eq!(take(&daily, "2024-11-02T00:00:00Z", 3), expected);
    let cron_daily = cron("30 1 * * *", NY);
    assert_eq!(take(&cron_daily, "2024-11-02T00:00:00Z", 3), expected);
    // Even asked from inside the repeated hour, the second pass is not offered.
    assert_eq!(
        cron_daily.next_after(utc("2024-11-03T05:30:00Z")),
        Some(utc("2024-11-04T06:30:00Z"))
    );
    assert_eq!(
        daily.next_after(utc("2024-11-03T05:30:00Z")),
        Some(utc("2024-11-04T06:30:00Z"))
    );
}

#[test]
fn interval_schedules_run_on_both_passes_of_a_repeated_hour() {
    let hourly_cron = cron("30 * * * *", NY);
    let hourly_iso = iso("R/2024-11-03T00:30:00-04:00/PT1H", NY);
    let expected = [
        "2024-11-03T04:30:00Z", // 00:30 EDT
        "2024-11-03T05:30:00Z", // 01:30 EDT
        "2024-11-03T06:30:00Z", // 01:30 EST
        "2024-11-03T07:30:00Z", // 02:30 EST
    ];
    assert_eq!(take(&hourly_cron, "2024-11-03T04:00:00Z", 4), expected);
    assert_eq!(take(&hourly_iso, "2024-11-03T04:00:00Z", 4), expected);
    // Asked from the first pass, the cron search still finds the second pass's times.
    let quarter = cron("*/15 * * * *", NY);
    assert_eq!(
        take(&quarter, "2024-11-03T05:50:00Z", 3),
        [
            "2024-11-03T06:00:00Z",
            "2024-11-03T06:15:00Z",
            "2024-11-03T06:30:00Z"
        ]
    );
}

#[test]
fn interval_cron_skips_wall_clock_times_that_do_not_exist() {
    let quarter = cron("*/15 * * * *", NY);
    assert_eq!(
        take(&quarter, "2024-03-10T06:40:00Z", 3),
        [
            "2024-03-10T06:45:00Z", // 01:45 EST
            "2024-03-10T07:00:00Z", // 03:00 EDT
            "2024-03-10T07:15:00Z"
        ]
    );
}

#[test]
fn written_start_in_a_repeated_hour_can_pick_the_second_pass() {
    let second = iso("R1/2024-11-03T01:30:00-05:00/PT1H", NY);
    assert_eq!(
        second.next_after(utc("2024-11-01T00:00:00Z")),
        Some(utc("2024-11-03T06:30:00Z"))
    );
    let first = iso("R1/2024-11-03T01:30:00-04:00/PT1H", NY);
    assert_eq!(
        first.next_after(utc("2024-11-01T00:00:00Z")),
        Some(utc("2024-11-03T05:30:00Z"))
    );
}

// ---------------------------------------------------------------- rewriting after runs

#[test]
fn after_run_rewrites_start_and_count_like_chronos() {
    let s = iso("R5/2014-03-08T20:00:00.000Z/PT2M", "");
    assert_eq!(s.to_chronos_string(), "R5/2014-03-08T20:00:00.000Z/PT2M");
    let s = s.after_run(utc("2014-03-08T20:00:00Z"));
    assert_eq!(s.to_chronos_string(), "R4/2014-03-08T20:02:00.000Z/PT2M");
    // A run late by several periods still drops the count by one only.
    let s = s.after_run(utc("2014-03-08T20:07:00Z"));
    assert_eq!(s.to_chronos_string(), "R3/2014-03-08T20:08:00.000Z/PT2M");
    let s = s
        .after_run(utc("2014-03-08T20:08:00Z"))
        .after_run(utc("2014-03-08T20:10:00Z"))
        .after_run(utc("2014-03-08T20:12:00Z"));
    assert!(s.is_exhausted());
    assert_eq!(
        s.after_run(utc("2014-03-08T20:14:00Z")).remaining(),
        Some(0)
    );
    let unbounded = iso("R/2014-03-08T20:00:00Z/PT2M", "").after_run(utc("2014-03-08T20:00:00Z"));
    assert_eq!(
        unbounded.to_chronos_string(),
        "R/2014-03-08T20:02:00.000Z/PT2M"
    );
}

#[test]
fn rewritten_start_keeps_the_nominal_wall_clock_time_through_dst() {
    let s = iso("R5/2024-03-09T02:30:00-05:00/P1D", NY);
    let s = s.after_run(utc("2024-03-09T07:30:00Z"));
    // 02:30 does not exist on 03-10: written with the pre-gap offset it denotes 03:30 EDT.
    assert_eq!(
        s.to_chronos_string(),
        "R4/2024-03-10T02:30:00.000-05:00/P1D"
    );
    let reparsed = iso(&s.to_chronos_string(), NY);
    assert_eq!(
        take(&reparsed, "2024-03-09T12:00:00Z", 2),
        ["2024-03-10T07:30:00Z", "2024-03-11T06:30:00Z"]
    );
    let s = s.after_run(utc("2024-03-10T07:30:00Z"));
    assert_eq!(
        s.to_chronos_string(),
        "R3/2024-03-11T02:30:00.000-04:00/P1D"
    );
}

#[test]
fn rewritten_start_in_the_second_pass_reparses_to_the_same_instant() {
    let s = iso("R/2024-11-03T00:30:00-04:00/PT1H", NY);
    let s = s.after_run(utc("2024-11-03T05:30:00Z"));
    assert_eq!(
        s.to_chronos_string(),
        "R/2024-11-03T01:30:00.000-05:00/PT1H"
    );
    let reparsed = iso(&s.to_chronos_string(), NY);
    assert_eq!(
        reparsed.next_after(utc("2024-11-03T05:30:00Z")),
        Some(utc("2024-11-03T06:30:00Z"))
    );
}

// ---------------------------------------------------------------- cron

#[test]
fn cron_rejects_other_than_five_fields() {
    for bad in ["* * * *", "0 * * * * *", "61 * * * *", "", "a b c d e"] {
        assert!(
            matches!(
                Schedule::parse_cron(bad, ""),
                Err(ScheduleError::Cron { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(Schedule::parse_cron("@daily", "UTC").is_ok());
    assert!(matches!(
        Schedule::parse_cron("* * * * *", "Atlantis/Capital"),
        Err(ScheduleError::TimeZone(_))
    ));
}

#[test]
fn cron_weekdays_and_last_day_in_a_zone() {
    let s = cron("0 9 * * MON-FRI", "Asia/Tokyo");
    // 2024-01-05 is a Friday: next runs Fri 09:00 JST (00:00Z), then Mon.
    assert_eq!(
        take(&s, "2024-01-04T12:00:00Z", 2),
        ["2024-01-05T00:00:00Z", "2024-01-08T00:00:00Z"]
    );
    assert_eq!(s.to_chronos_string(), "0 9 * * MON-FRI");
    assert_eq!(s.remaining(), None);
    assert_eq!(s.after_run(utc("2024-01-05T00:00:00Z")), s);
}

#[test]
fn last_before_finds_previous_instants() {
    let c = cron("30 1 * * *", NY);
    assert_eq!(
        c.last_before(utc("2024-11-04T00:00:00Z")),
        Some(utc("2024-11-03T05:30:00Z"))
    );
    let i = iso("R/2024-11-01T01:30:00-04:00/P1D", NY);
    assert_eq!(
        i.last_before(utc("2024-11-04T00:00:00Z")),
        Some(utc("2024-11-03T05:30:00Z"))
    );
    assert_eq!(i.last_before(utc("2024-11-01T05:30:00Z")), None);
    let bounded = iso("R2/2024-11-01T01:30:00-04:00/P1D", NY);
    assert_eq!(
        bounded.last_before(utc("2025-01-01T00:00:00Z")),
        Some(utc("2024-11-02T05:30:00Z"))
    );
}

// ---------------------------------------------------------------- catch-up

fn minutely() -> Schedule {
    iso("R/2024-01-01T00:00:00Z/PT1M", "")
}

#[test]
fn due_instants_on_time_runs_whatever_the_policy() {
    for policy in [CatchUp::Once, CatchUp::All, CatchUp::Skip] {
        let due = due_instants(
            &minutely(),
            Some(utc("2024-01-01T00:09:00Z")),
            utc("2024-01-01T00:10:30Z"),
            DEFAULT_EPSILON,
            policy,
            100,
        );
        assert_eq!(due, [utc("2024-01-01T00:10:00Z")], "{policy:?}");
    }
}

#[test]
fn due_instants_after_an_outage_follow_the_policy() {
    let last = Some(utc("2024-01-01T00:00:00Z"));
    // Down from 00:00:30 to 00:05:30: 00:01..00:05 were missed; 00:05 is within epsilon.
    let now = utc("2024-01-01T00:05:30Z");
    let run = |policy| due_instants(&minutely(), last, now, DEFAULT_EPSILON, policy, 100);
    assert_eq!(run(CatchUp::Skip), [utc("2024-01-01T00:05:00Z")]);
    assert_eq!(run(CatchUp::Once), [utc("2024-01-01T00:05:00Z")]);
    assert_eq!(run(CatchUp::All).len(), 5);
    // With no instant on time, Once runs only the latest missed one and Skip nothing.
    let now = utc("2024-01-01T00:06:59Z");
    let once = due_instants(&minutely(), last, now, DEFAULT_EPSILON, CatchUp::Once, 100);
    assert_eq!(once, [utc("2024-01-01T00:06:00Z")]);
    let now = utc("2024-01-01T00:07:30Z");
    let skip = due_instants(&minutely(), last, now, Duration::ZERO, CatchUp::Skip, 100);
    assert!(skip.is_empty());
    let once = due_instants(&minutely(), last, now, Duration::ZERO, CatchUp::Once, 100);
    assert_eq!(once, [utc("2024-01-01T00:07:00Z")]);
}

#[test]
fn due_instants_are_bounded_by_max_and_by_the_run_count() {
    let now = utc("2024-01-02T00:00:00Z");
    let all = due_instants(&minutely(), None, now, DEFAULT_EPSILON, CatchUp::All, 7);
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], utc("2024-01-01T00:00:00Z"));
    let three = iso("R3/2024-01-01T00:00:00Z/PT1M", "");
    let all = due_instants(&three, None, now, DEFAULT_EPSILON, CatchUp::All, 100);
    assert_eq!(all.len(), 3);
    // Passed-over instants are not counted: Once runs the latest missed instant, past the first 3.
    let late = utc("2024-01-02T00:00:30Z");
    let once = due_instants(
        &three,
        None,
        late,
        Duration::from_secs(10),
        CatchUp::Once,
        100,
    );
    assert_eq!(once, [utc("2024-01-02T00:00:00Z")]);
    let huge = due_instants(
        &minutely(),
        None,
        now,
        DEFAULT_EPSILON,
        CatchUp::All,
        usize::MAX,
    );
    assert_eq!(huge.len(), 1441.min(limits::DUE_INSTANTS_MAX));
}

#[test]
fn due_instants_for_cron_owe_nothing_from_before_it_was_known() {
    let every_minute = cron("* * * * *", "UTC");
    let now = utc("2024-01-01T12:00:30Z");
    let due = due_instants(&every_minute, None, now, DEFAULT_EPSILON, CatchUp::All, 100);
    // 11:59:00 is before now - epsilon (11:59:30): not owed; 12:00:00 is on time.
    assert_eq!(due, [utc("2024-01-01T12:00:00Z")]);
    let after_outage = due_instants(
        &every_minute,
        Some(utc("2024-01-01T11:00:00Z")),
        now,
        DEFAULT_EPSILON,
        CatchUp::Once,
        100,
    );
    assert_eq!(after_outage, [utc("2024-01-01T12:00:00Z")]);
}

#[test]
fn catch_up_loop_runs_each_instant_once() {
    // Drive the documented caller loop through an outage with All: every instant runs once.
    let mut schedule = iso("R10/2024-01-01T00:00:00Z/PT1M", "");
    let mut last = None;
    let now = utc("2024-01-01T00:20:00Z");
    let mut ran = Vec::new();
    loop {
        let due = due_instants(&schedule, last, now, DEFAULT_EPSILON, CatchUp::All, 3);
        if due.is_empty() {
            break;
        }
        for t in due {
            schedule = schedule.after_run(t);
            last = Some(t);
            ran.push(t);
        }
    }
    assert_eq!(ran.len(), 10);
    assert!(schedule.is_exhausted());
}

// ---------------------------------------------------------------- properties

const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Chatham",
];

fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 .. 2040-01-01
    (946_684_800i64..2_208_988_800i64).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

fn any_period() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..100).prop_map(|n| format!("PT{n}S")),
        (1u32..200).prop_map(|n| format!("PT{n}M")),
        (1u32..50).prop_map(|n| format!("PT{n}H")),
        (1u32..40).prop_map(|n| format!("P{n}D")),
        (1u32..5).prop_map(|n| format!("P{n}W")),
        (1u32..25).prop_map(|n| format!("P{n}M")),
        (1u32..3).prop_map(|n| format!("P{n}Y")),
        (1u32..3, 1u32..23).prop_map(|(d, h)| format!("P{d}DT{h}H")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn iso_instants_strictly_increase_and_count_is_honoured(
        start in any_instant(),
        period in any_period(),
        count in 0u64..20,
        zone in proptest::sample::select(ZONES),
        after in any_instant(),
    ) {
        let text = format!("R{count}/{}/{period}", start.to_rfc3339());
        let schedule = Schedule::parse_iso(&text, zone, now()).unwrap();
        let all: Vec<_> = schedule.instants_after(DateTime::UNIX_EPOCH).take(100).collect();
        prop_assert_eq!(all.len() as u64, count);
        prop_assert!(all.windows(2).all(|w| w[0] < w[1]));
        if let Some(next) = schedule.next_after(after) {
            prop_assert!(next > after);
            // Nothing planned lies strictly between `after` and `next`.
            prop_assert!(!all.iter().any(|t| *t > after && *t < next));
        }
    }

    #[test]
    fn unbounded_next_after_strictly_increases(
        start in any_instant(),
        period in any_period(),
        zone in proptest::sample::select(ZONES),
        after in any_instant(),
    ) {
        let text = format!("R/{}/{period}", start.to_rfc3339());
        let schedule = Schedule::parse_iso(&text, zone, now()).unwrap();
        let mut previous = after;
        for t in schedule.instants_after(after).take(30) {
            prop_assert!(t > previous);
            previous = t;
        }
    }

    #[test]
    fn after_run_starts_at_the_next_instant(
        start in any_instant(),
        period in any_period(),
        zone in proptest::sample::select(ZONES),
        steps in 0usize..10,
    ) {
        let text = format!("R/{}/{period}", start.to_rfc3339());
        let schedule = Schedule::parse_iso(&text, zone, now()).unwrap();
        let instants: Vec<_> = schedule.instants_after(DateTime::UNIX_EPOCH).take(steps + 2).collect();
        let mut rewritten = schedule.clone();
        for t in &instants[..=steps] {
            rewritten = rewritten.after_run(*t);
        }
        let first = rewritten.first_at_or_after(DateTime::UNIX_EPOCH);
        prop_assert_eq!(first, Some(instants[steps + 1]));
        // The shown string reparses to the same next instant (calendar or exact periods alike).
        let reparsed = Schedule::parse_iso(&rewritten.to_chronos_string(), zone, now()).unwrap();
        prop_assert_eq!(reparsed.first_at_or_after(DateTime::UNIX_EPOCH), first);
    }

    #[test]
    fn cron_and_iso_agree_on_daily_schedules(
        hour in 0u32..24,
        minute in 0u32..60,
        zone in proptest::sample::select(ZONES),
        day in 0i64..(365 * 3),
    ) {
        let day0 = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + TimeDelta::days(day);
        let local = day0.and_hms_opt(hour, minute, 0).unwrap();
        // Write the start with its own correct offset, as a client would.
        let parsed_zone = Zone::parse(zone).unwrap();
        let offset = parsed_zone.written_offset(local, None);
        let start = format_start(local, offset);
        let daily_iso = Schedule::parse_iso(&format!("R/{start}/P1D"), zone, now()).unwrap();
        let daily_cron = Schedule::parse_cron(&format!("{minute} {hour} * * *"), zone).unwrap();
        let first = daily_iso.first_at_or_after(DateTime::UNIX_EPOCH).unwrap();
        let before = first - TimeDelta::seconds(1);
        let from_iso: Vec<_> = daily_iso.instants_after(before).take(40).collect();
        let from_cron: Vec<_> = daily_cron.instants_after(before).take(40).collect();
        prop_assert_eq!(from_iso, from_cron);
    }

    #[test]
    fn cron_next_after_strictly_increases_and_last_before_inverts_it(
        pattern in proptest::sample::select(&["*/7 * * * *", "30 1 * * *", "0 2 * * SUN", "15 */3 * * *", "0 0 L * *"][..]),
        zone in proptest::sample::select(ZONES),
        after in any_instant(),
    ) {
        let schedule = Schedule::parse_cron(pattern, zone).unwrap();
        let instants: Vec<_> = schedule.instants_after(after).take(20).collect();
        prop_assert_eq!(instants.len(), 20);
        prop_assert!(instants[0] > after);
        prop_assert!(instants.windows(2).all(|w| w[0] < w[1]));
        for pair in instants.windows(2) {
            prop_assert_eq!(schedule.last_before(pair[1]), Some(pair[0]));
        }
    }

    #[test]
    fn due_instants_lie_in_the_due_window(
        last_offset in 0i64..100_000,
        now_offset in 0i64..200_000,
        epsilon_s in 0u64..3_600,
        period in any_period(),
        policy in proptest::sample::select(&[CatchUp::Once, CatchUp::All, CatchUp::Skip][..]),
        max in 0usize..50,
    ) {
        let start = utc("2024-01-01T00:00:00Z");
        let schedule = Schedule::parse_iso(&format!("R/{}/{period}", start.to_rfc3339()), "Europe/Berlin", now()).unwrap();
        let last = start + TimeDelta::seconds(last_offset);
        let now = last + TimeDelta::seconds(now_offset);
        let epsilon = Duration::from_secs(epsilon_s);
        let due = due_instants(&schedule, Some(last), now, epsilon, policy, max);
        prop_assert!(due.len() <= max);
        prop_assert!(due.windows(2).all(|w| w[0] < w[1]));
        for t in &due {
            prop_assert!(*t > last && *t <= now);
        }
        let on_time_from = now - TimeDelta::from_std(epsilon).unwrap();
        match policy {
            CatchUp::Skip => prop_assert!(due.iter().all(|t| *t >= on_time_from)),
            CatchUp::Once => prop_assert!(due.iter().filter(|t| **t < on_time_from).count() <= 1),
            CatchUp::All => {
                let expected: Vec<_> = schedule.instants_after(last).take_while(|t| *t <= now).take(max).collect();
                prop_assert_eq!(&due, &expected);
            }
        }
    }
}

#[test]
fn impossible_cron_dates_have_no_next_instant() {
    match Schedule::parse_cron("0 0 30 2 *", "UTC") {
        Ok(s) => {
            assert_eq!(s.next_after(utc("2024-01-01T00:00:00Z")), None);
            assert_eq!(s.last_before(utc("2024-01-01T00:00:00Z")), None);
        }
        Err(e) => assert!(matches!(e, ScheduleError::Cron { .. })),
    }
}

// ---------------------------------------------------------------- systemd calendar expressions

fn calendar(expression: &str, zone: &str) -> Schedule {
    Schedule::parse_calendar(expression, zone).unwrap_or_else(|e| panic!("{expression}: {e}"))
}

#[test]
fn calendar_weekdays_dates_and_times() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "Mon..Fri *-*-* 02:00",
            "2024-01-05T12:00:00Z",
            &["2024-01-08T02:00:00Z", "2024-01-09T02:00:00Z"],
        ),
        (
            "Sat,Sun 10:00",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-06T10:00:00Z",
                "2024-01-07T10:00:00Z",
                "2024-01-13T10:00:00Z",
            ],
        ),
        (
            "*-02~01",
            "2024-01-01T00:00:00Z",
            &["2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z"],
        ),
        (
            "Mon *-05~07/1",
            "2024-01-01T00:00:00Z",
            &["2024-05-27T00:00:00Z", "2025-05-26T00:00:00Z"],
        ),
        (
            "*-*-01/7 04:00",
            "2024-02-01T05:00:00Z",
            &[
                "2024-02-08T04:00:00Z",
                "2024-02-15T04:00:00Z",
                "2024-02-22T04:00:00Z",
                "2024-02-29T04:00:00Z",
                "2024-03-01T04:00:00Z",
            ],
        ),
        (
            "*:0/15",
            "2024-01-01T00:50:00Z",
            &["2024-01-01T01:00:00Z", "2024-01-01T01:15:00Z"],
        ),
        (
            "12-25 08:00",
            "2024-01-01T00:00:00Z",
            &["2024-12-25T08:00:00Z", "2025-12-25T08:00:00Z"],
        ),
        (
            "26-03-29 12:00",
            "2024-01-01T00:00:00Z",
            &["2026-03-29T12:00:00Z"],
        ),
        (
            "2024-06-01..03 00:00:00.000",
            "2024-01-01T00:00:00Z",
            &[
                "2024-06-01T00:00:00Z",
                "2024-06-02T00:00:00Z",
                "2024-06-03T00:00:00Z",
            ],
        ),
        (
            "*-*-* 08..10:30:15,45",
            "2024-01-01T00:00:00Z",
            &[
                "2024-01-01T08:30:15Z",
                "2024-01-01T08:30:45Z",
                "2024-01-01T09:30:15Z",
            ],
        ),
        (
            "monday 2024-*-* 9:5",
            "2024-01-01T09:05:00Z",
            &["2024-01-08T09:05:00Z"],
        ),
    ];
    for (expression, after, expected) in cases {
        let schedule = calendar(expression, "");
        assert_eq!(
            take(&schedule, after, expected.len() + 1)[..expected.len()],
            **expected,
            "{expression}"
        );
    }
    // Bounded: nothing after the last matching year.
    assert_eq!(
        take(&calendar("26-03-29 12:00", ""), "2024-01-01T00:00:00Z", 3).len(),
        1
    );
}

#[test]
fn calendar_shorthands() {
    let after = "2024-01-10T10:20:30Z";
    for (shorthand, first) in [
        ("minutely", "2024-01-10T10:21:00Z"),
        ("hourly", "2024-01-10T11:00:00Z"),
        ("daily", "2024-01-11T00:00:00Z"),
        ("weekly", "2024-01-15T00:00:00Z"),
        ("monthly", "2024-02-01T00:00:00Z"),
        ("quarterly", "2024-04-01T00:00:00Z"),
        ("semiannually", "2024-07-01T00:00:00Z"),
        ("yearly", "2025-01-01T00:00:00Z"),
        ("annually", "2025-01-01T00:00:00Z"),
    ] {
        assert_eq!(
            take(&calendar(shorthand, "UTC"), after, 1),
            [first],
            "{shorthand}"
        );
    }
}

#[test]
fn calendar_rejects_bad_expressions_naming_the_cause() {
    for (expression, fragment) in [
        ("", "empty"),
        ("Funday", "not a weekday"),
        ("Fri..Mon", "backwards"),
        ("*-13-01", "outside"),
        ("*-02-30", "matches no date"),
        ("25:00", "outside"),
        ("*:*:00.5", "fractional"),
        ("*:0/0", "repetition 0"),
        ("2200-01-01", "outside"),
        ("*-*-* 02:00 Mars/Base", "expected"),
        ("*-*-* 02:00:00:00", "not hour:minute"),
        ("1-2-3-4", "too many parts"),
    ] {
        match Schedule::parse_calendar(expression, "") {
            Err(e @ ScheduleError::Calendar { .. }) => {
                assert!(e.to_string().contains(fragment), "{expression}: {e}")
            }
            other => panic!("{expression}: {other:?}"),
        }
    }
    let long = format!("*-*-* {}", "0,".repeat(200));
    assert!(Schedule::parse_calendar(&long, "").is_err());
    assert!(matches!(
        Schedule::parse_calendar("daily", "Nowhere/Land"),
        Err(ScheduleError::TimeZone(_))
    ));
}

#[test]
fn calendar_trailing_zone_overrides_schedule_time_zone() {
    let schedule = calendar("daily Asia/Tokyo", "Europe/Berlin");
    assert_eq!(schedule.zone(), Zone::Named(chrono_tz::Asia::Tokyo));
    assert_eq!(
        take(&schedule, "2024-01-01T00:00:00Z", 1),
        ["2024-01-01T15:00:00Z"]
    );
    let schedule = calendar("  Mon..Fri *-*-* 02:00 UTC ", "America/New_York");
    assert_eq!(schedule.zone(), Zone::UTC);
    assert_eq!(schedule.to_chronos_string(), "Mon..Fri *-*-* 02:00 UTC");
    let schedule = calendar("daily", "Europe/Berlin");
    assert_eq!(schedule.zone(), Zone::Named(chrono_tz::Europe::Berlin));
    assert_eq!(schedule.to_chronos_string(), "daily");
    assert_eq!(schedule.after_run(utc("2024-01-01T00:00:00Z")), schedule);
    assert_eq!(schedule.remaining(), None);
}

/// Hand-computed runs across the 2024 transitions. Europe/Berlin: 2024-03-31 02:00 CET → 03:00
/// CEST (01:00Z), 2024-10-27 03:00 CEST → 02:00 CET (01:00Z). America/New_York: 2024-03-10
/// 02:00 EST → 03:00 EDT (07:00Z), 2024-11-03 02:00 EDT → 01:00 EST (06:00Z).
#[test]
fn calendar_across_dst_changes_skips_missing_times_and_runs_repeated_ones_once() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        // Berlin, spring forward: 02:30 does not exist on 03-31 and does not run.
        (
            "*-*-* 02:30",
            "Europe/Berlin",
            "2024-03-29T12:00:00Z",
            &[
                "2024-03-30T01:30:00Z",
                "2024-04-01T00:30:00Z",
                "2024-04-02T00:30:00Z",
            ],
        ),
        // Berlin, fall back: 02:30 happens twice on 10-27 and runs at the first (CEST).
        (
            "*-*-* 02:30 Europe/Berlin",
            "",
            "2024-10-25T12:00:00Z",
            &[
                "2024-10-26T00:30:00Z",
                "2024-10-27T00:30:00Z",
                "2024-10-28T01:30:00Z",
            ],
        ),
        // Berlin, hourly at :15 through the gap: 02:15 is skipped.
        (
            "*:15",
            "Europe/Berlin",
            "2024-03-30T23:30:00Z",
            &[
                "2024-03-31T00:15:00Z",
                "2024-03-31T01:15:00Z",
                "2024-03-31T02:15:00Z",
            ],
        ),
        // Berlin, hourly at :15 through the fold: 02:15 runs once, in CEST.
        (
            "*:15",
            "Europe/Berlin",
            "2024-10-26T23:00:00Z",
            &[
                "2024-10-26T23:15:00Z",
                "2024-10-27T00:15:00Z",
                "2024-10-27T02:15:00Z",
            ],
        ),
        // New York, spring forward.
        (
            "*-*-* 02:30",
            "America/New_York",
            "2024-03-08T12:00:00Z",
            &["2024-03-09T07:30:00Z", "2024-03-11T06:30:00Z"],
        ),
        // New York, fall back: 01:30 runs at 01:30 EDT only.
        (
            "*-*-* 01:30 America/New_York",
            "UTC",
            "2024-11-02T12:00:00Z",
            &["2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
        ),
        // New York, weekdays at 01:30 on the Monday after the change: EST.
        (
            "Mon 01:30",
            "America/New_York",
            "2024-11-02T12:00:00Z",
            &["2024-11-04T06:30:00Z"],
        ),
    ];
    for (expression, zone, after, expected) in cases {
        let schedule = calendar(expression, zone);
        assert_eq!(
            take(&schedule, after, expected.len()),
            **expected,
            "{expression} in {zone}"
        );
    }
    // From inside the second pass of New York's repeated hour (01:10 EST = 06:10Z), the run of
    // 01:50 already happened (01:50 EDT = 05:50Z) and the next is 02:50 EST.
    let schedule = calendar("*:50", "America/New_York");
    let inside = utc("2024-11-03T06:10:00Z");
    assert_eq!(
        schedule.last_before(inside),
        Some(utc("2024-11-03T05:50:00Z"))
    );
    assert_eq!(
        schedule.next_after(inside),
        Some(utc("2024-11-03T07:50:00Z"))
    );
    // The cron kind shifts a skipped fixed time forward; the calendar kind, like systemd, does
    // not run it.
    let cron_runs = take(
        &cron("30 2 * * *", "America/New_York"),
        "2024-03-10T00:00:00Z",
        1,
    );
    assert_eq!(cron_runs, ["2024-03-10T07:30:00Z"]);
}

#[test]
fn due_instants_for_calendar_owe_nothing_from_before_it_was_known() {
    let schedule = calendar("*:*:00", "UTC");
    let epsilon = Duration::from_secs(90);
    let now = utc("2024-01-01T12:00:30Z");
    // Only what lies in the epsilon window before now (11:59:00 on).
    let due = due_instants(&schedule, None, now, epsilon, CatchUp::All, 100);
    assert_eq!(
        due,
        [utc("2024-01-01T11:59:00Z"), utc("2024-01-01T12:00:00Z")]
    );
    // An hour later, catching up once runs the on-time instants only.
    let later = now + TimeDelta::hours(1);
    let last = Some(utc("2024-01-01T12:00:00Z"));
    let due = due_instants(&schedule, last, later, epsilon, CatchUp::Once, 100);
    assert_eq!(
        due,
        [utc("2024-01-01T12:59:00Z"), utc("2024-01-01T13:00:00Z")]
    );
    let due = due_instants(&schedule, last, later, epsilon, CatchUp::All, 1_000);
    assert_eq!(due.len(), 60);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn calendar_next_after_strictly_increases_and_last_before_inverts_it(
        expression in proptest::sample::select(&[
            "*:0/7", "*-*-* 01:30", "Sun 02:00", "*-*-* 0/3:15", "*-*~01", "Mon..Fri 02:30:30",
            "*:*:0/20", "*-02-29 12:00", "quarterly",
        ][..]),
        zone in proptest::sample::select(ZONES),
        after in any_instant(),
    ) {
        let schedule = Schedule::parse_calendar(expression, zone).unwrap();
        let instants: Vec<_> = schedule.instants_after(after).take(20).collect();
        prop_assert_eq!(instants.len(), 20);
        prop_assert!(instants[0] > after);
        prop_assert!(instants.windows(2).all(|w| w[0] < w[1]));
        prop_assert_eq!(schedule.last_before(instants[0]).is_none_or(|t| t <= after), true);
        for pair in instants.windows(2) {
            prop_assert_eq!(schedule.last_before(pair[1]), Some(pair[0]));
            // Nothing runs strictly between two consecutive runs.
            let middle = pair[0] + (pair[1] - pair[0]) / 2;
            prop_assert_eq!(schedule.next_after(middle), Some(pair[1]));
        }
    }
}
