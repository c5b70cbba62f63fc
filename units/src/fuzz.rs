//! Fuzz targets of the unit translation: hostile unit files and unit names are translated or
//! refused with an error, never a panic; what translates is a JSON object with the fields the
//! API needs.

use plateau_runtime::fuzzing::{edits, fuzz_cases, mutate};
use proptest::prelude::*;

use crate::{translate_service, translate_timer, ServiceOptions, TimerOptions, UnitFile};

const SERVICE: &str = "[Unit]\nDescription=Web %n\nAfter=network.target\n\n[Service]\n\
    Type=exec\nUser=www\nEnvironment=\"PORT=8080\" MODE=prod\nWorkingDirectory=/srv\n\
    ExecStart=/usr/bin/web --port ${PORT} \\\n  $MODE 'a b' \\x41\nRestart=always\n\
    RestartSec=5s\nMemoryMax=512M\nCPUQuota=150%\n\n[X-Fleet]\nMachineMetadata=rack=r1 rack=r2\n\
    Conflicts=web@*.service\nGlobal=true\n\n[Install]\nWantedBy=multi-user.target\n";

const TIMER: &str = "[Unit]\nDescription=Backup\n[Timer]\n\
    OnCalendar=Mon..Fri *-*-* 02:00 Europe/Berlin\nPersistent=true\nAccuracySec=1min\n\
    [Install]\nWantedBy=timers.target\n";

const ONESHOT: &str = "[Service]\nType=oneshot\nExecStart=/usr/bin/backup %i\n\
    ExecStart=/usr/bin/prune\nTimeoutStartSec=1h\n";

fn unit_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[Service]".to_string()),
        Just("[Unit]".to_string()),
        Just("[X-Fleet]".to_string()),
        Just("[Timer]".to_string()),
        "(ExecStart|Environment|User|MemoryMax|CPUQuota|Restart|RestartSec|Type|WorkingDirectory|MachineMetadata|Conflicts|Global|OnCalendar|OnUnitActiveSec|OnBootSec|AccuracySec|Persistent)=[ -~]{0,24}",
        "[ -~]{0,30}",
        "\\PC{0,20}",
        Just("ExecStart=/bin/a \\".to_string()),
        Just("# comment".to_string()),
    ];
    prop_oneof![
        4 => proptest::collection::vec(line, 0..12).prop_map(|l| l.join("\n")),
        1 => "\\PC{0,200}",
    ]
}

fn unit_name(suffix: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("web.{suffix}")),
        Just(format!("web@blue.{suffix}")),
        Just(format!("web@.{suffix}")),
        "[ -~]{0,12}".prop_map(move |s| format!("{s}.{suffix}")),
        "\\PC{0,16}",
    ]
}

fn check_service(name: &str, text: &str, agents: Option<u32>) -> Result<(), TestCaseError> {
    if let Ok(t) = translate_service(name, text, &ServiceOptions { agents }) {
        prop_assert!(t.json["id"].as_str().is_some_and(|id| id.starts_with('/')));
        prop_assert!(t.json["cmd"].is_string() != t.json["args"].is_array());
        prop_assert!(t.json["instances"].as_u64().is_some_and(|n| n >= 1));
    }
    Ok(())
}

fn check_timer(name: &str, timer: &str, service: &str) -> Result<(), TestCaseError> {
    let options = TimerOptions {
        now: Some(chrono::DateTime::UNIX_EPOCH),
    };
    if let Ok(t) = translate_timer(name, timer, service, &options) {
        prop_assert!(t.json["name"].is_string());
        prop_assert!(t.json["command"].is_string());
        prop_assert!(t.json["schedule"].is_string() != t.json["calendar"].is_string());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

    #[test]
    fn fuzz_units_parser(text in unit_text()) {
        if let Ok(unit) = UnitFile::parse(&text) {
            for entry in &unit.entries {
                prop_assert!(entry.line >= 1);
                prop_assert!(!entry.key.is_empty());
            }
        }
    }

    #[test]
    fn fuzz_units_service(name in unit_name("service"), text in unit_text(), agents in proptest::option::of(0u32..200_000)) {
        check_service(&name, &text, agents)?;
    }

    #[test]
    fn fuzz_units_service_damaged(edits in edits(1..8), agents in proptest::option::of(0u32..10)) {
        let damaged = mutate(SERVICE.as_bytes(), &edits);
        check_service("web@1.service", &String::from_utf8_lossy(&damaged), agents)?;
    }

    #[test]
    fn fuzz_units_timer(name in unit_name("timer"), timer in unit_text(), service in unit_text()) {
        check_timer(&name, &timer, &service)?;
    }

    #[test]
    fn fuzz_units_timer_damaged(timer_edits in edits(0..6), service_edits in edits(0..6)) {
        let timer = mutate(TIMER.as_bytes(), &timer_edits);
        let service = mutate(ONESHOT.as_bytes(), &service_edits);
        check_timer(
            "backup@db.timer",
            &String::from_utf8_lossy(&timer),
            &String::from_utf8_lossy(&service),
        )?;
    }
}

#[test]
fn fuzz_seeds_translate() {
    let t = translate_service(
        "web@1.service",
        SERVICE,
        &ServiceOptions { agents: Some(3) },
    )
    .unwrap();
    assert_eq!(t.json["instances"], 3);
    let t = translate_timer("backup@db.timer", TIMER, ONESHOT, &TimerOptions::default()).unwrap();
    assert_eq!(t.json["name"], "backup-db");
}
