//! Unit tests: one or more per directive, translated and refused.

use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::exec::{parse_environment, split_words, CommandLine};
use crate::values::{parse_bytes, parse_timespan};
use crate::*;

fn app(name: &str, text: &str) -> serde_json::Value {
    service_to_app(name, text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn app_err(name: &str, text: &str) -> UnitError {
    match service_to_app(name, text) {
        Ok(json) => panic!("{name} translated to {json}"),
        Err(e) => e,
    }
}

/// The (section, key, line) an error names.
fn named(error: &UnitError) -> (String, String, usize) {
    match error {
        UnitError::Untranslatable {
            section, key, line, ..
        }
        | UnitError::Invalid {
            section, key, line, ..
        }
        | UnitError::Specifier {
            section, key, line, ..
        } => (section.clone(), key.clone(), *line),
        UnitError::Missing { section, key, .. } => (section.clone(), key.clone(), 0),
        other => panic!("not an error about a directive: {other:?}"),
    }
}

fn names(error: &UnitError, section: &str, key: &str, line: usize) {
    assert_eq!(
        named(error),
        (section.to_string(), key.to_string(), line),
        "{error}"
    );
    let text = error.to_string();
    assert!(text.contains(&format!("[{section}] {key}=")), "{text}");
}

// ---- unit-file syntax ----

#[test]
fn parser_reads_sections_comments_continuations_and_repeats() {
    let text = "# comment\n; other comment\n\n[Unit]\nDescription = My  web \n[Service]\n\
                ExecStart=/bin/echo a \\\n# inside\n  b\nEnvironment=A=1\nEnvironment=\n\
                Environment=B=2\n";
    let unit = UnitFile::parse(text).unwrap();
    assert_eq!(unit.last("Unit", "Description").unwrap().value, "My  web");
    let exec = unit.last("Service", "ExecStart").unwrap();
    assert_eq!(exec.value, "/bin/echo a    b");
    assert_eq!(exec.line, 7);
    let env: Vec<&str> = unit
        .list("Service", "Environment")
        .iter()
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(env, ["B=2"], "the empty assignment reset the list");
}

#[test]
fn parser_errors_name_the_line() {
    let cases = [
        ("ExecStart=/bin/true\n", 1, "before any [Section]"),
        ("[Service]\nnot an assignment\n", 2, "Key=Value"),
        ("[Service\n", 1, "does not end"),
        ("[Service]\n=value\n", 2, "bad key"),
    ];
    for (text, line, fragment) in cases {
        match UnitFile::parse(text) {
            Err(UnitError::Syntax { line: l, message }) => {
                assert_eq!(l, line, "{text:?}");
                assert!(message.contains(fragment), "{message}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn words_unquote_and_unescape_like_systemd() {
    assert_eq!(
        split_words(r#"/bin/echo "a b" 'c d' e\tf "x\"y" a"b c"d \x41\101\u00e9"#).unwrap(),
        ["/bin/echo", "a b", "c d", "e\tf", "x\"y", "ab cd", "AAé"]
    );
    assert!(split_words("\"open").unwrap_err().contains("unterminated"));
    assert!(split_words("bad\\q")
        .unwrap_err()
        .contains("unknown escape"));
    assert!(split_words("trailing\\").is_err());
    assert!(split_words("nul\\x00").unwrap_err().contains("NUL"));
}

#[test]
fn command_variables_and_shell_form() {
    let line = CommandLine::parse("/bin/app --port ${PORT} $FLAGS $$HOME 'it''s'").unwrap();
    assert!(line.has_variables());
    assert_eq!(line.literal_args(), None);
    assert_eq!(
        line.to_shell(),
        "/bin/app --port \"${PORT}\" $FLAGS '$HOME' its"
    );
    let plain = CommandLine::parse("/bin/echo 'hello world' it\\'s").unwrap();
    assert_eq!(
        plain.literal_args().unwrap(),
        ["/bin/echo", "hello world", "it's"]
    );
    assert_eq!(plain.to_shell(), "/bin/echo 'hello world' 'it'\\''s'");
    assert!(CommandLine::parse("/bin/a ; /bin/b").is_err());
    assert!(CommandLine::parse("/bin/a ${1X}").is_err());
}

#[test]
fn environment_assignments() {
    assert_eq!(
        parse_environment(r#"A=1 "B=two words" C="x y" D="#).unwrap(),
        [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two words".to_string()),
            ("C".to_string(), "x y".to_string()),
            ("D".to_string(), String::new()),
        ]
    );
    assert!(parse_environment("NOEQUALS").is_err());
    assert!(parse_environment("=x").is_err());
}

#[test]
fn sizes_and_time_spans() {
    assert_eq!(parse_bytes("512M").unwrap(), Some(512.0 * 1024.0 * 1024.0));
    assert_eq!(parse_bytes("1.5G").unwrap(), Some(1.5 * 1024f64.powi(3)));
    assert_eq!(parse_bytes("2048").unwrap(), Some(2048.0));
    assert_eq!(parse_bytes("infinity").unwrap(), None);
    assert!(parse_bytes("50%").is_err());
    assert!(parse_bytes("12Q").is_err());
    assert_eq!(parse_timespan("1min 30s").unwrap().as_secs(), 90);
    assert_eq!(parse_timespan("2h30m").unwrap().as_secs(), 9_000);
    assert_eq!(parse_timespan("5").unwrap().as_secs(), 5);
    assert_eq!(parse_timespan("500ms").unwrap().as_millis(), 500);
    assert_eq!(parse_timespan("1w").unwrap().as_secs(), 604_800);
    assert!(parse_timespan("infinity").is_err());
    assert!(parse_timespan("3 fortnights").is_err());
    assert!(parse_timespan("").is_err());
}

// ---- service → app ----

#[test]
fn minimal_service_becomes_an_app_with_args() {
    let json = app(
        "web.service",
        "[Unit]\nDescription=Web\nAfter=network.target\n[Service]\nExecStart=/usr/bin/web -p 80\nRestart=always\n[Install]\nWantedBy=multi-user.target\n",
    );
    assert_eq!(
        json,
        json!({"id": "/web", "args": ["/usr/bin/web", "-p", "80"], "instances": 1})
    );
    let translation = translate_service(
        "web.service",
        "[Unit]\nAfter=x\n[Service]\nExecStart=/a\n",
        &ServiceOptions::default(),
    )
    .unwrap();
    assert_eq!(translation.ignored.len(), 2, "{:?}", translation.ignored);
    assert!(translation.ignored[0].starts_with("[Unit] After= (line 2)"));
    assert!(translation.ignored[1].contains("Restart= (absent"));
}

#[test]
fn app_ids_from_unit_names() {
    let text = "[Service]\nExecStart=/a\n";
    assert_eq!(app("web@blue.service", text)["id"], "/web-blue");
    assert_eq!(app("My_App.service", text)["id"], "/my-app");
    assert_eq!(app("api.v2.service", text)["id"], "/api.v2");
    assert_eq!(app("web@a\\x2db.service", text)["id"], "/web-a-b");
    for bad in [
        "web@.service",
        "web.timer",
        "_x.service",
        "@x.service",
        "a b.service",
    ] {
        assert!(
            matches!(service_to_app(bad, text), Err(UnitError::UnitName { .. })),
            "{bad}"
        );
    }
}

#[test]
fn specifiers_expand_or_are_named() {
    let json = app(
        "worker@eu.service",
        "[Service]\nExecStart=/bin/w %i %I %n %N %p 100%%\nEnvironment=REGION=%i\n",
    );
    assert_eq!(
        json["args"],
        json!([
            "/bin/w",
            "eu",
            "eu",
            "worker@eu.service",
            "worker@eu",
            "worker",
            "100%"
        ])
    );
    assert_eq!(json["env"]["REGION"], "eu");
    let error = app_err("worker.service", "[Service]\nExecStart=/bin/w %H\n");
    names(&error, "Service", "ExecStart", 2);
    assert!(matches!(error, UnitError::Specifier { specifier: 'H', .. }));
    let error = app_err("worker.service", "[Service]\nExecStart=/bin/w %i\n");
    assert!(
        matches!(error, UnitError::Specifier { specifier: 'i', .. }),
        "{error}"
    );
}

#[test]
fn exec_start_with_variables_becomes_cmd() {
    let json = app(
        "web.service",
        "[Service]\nEnvironment=\"PORT=8080\" FLAGS=-v\nExecStart=/usr/bin/web --port ${PORT} $FLAGS\n",
    );
    assert_eq!(json["cmd"], "/usr/bin/web --port \"${PORT}\" $FLAGS");
    assert!(json.get("args").is_none());
    assert_eq!(json["env"], json!({"PORT": "8080", "FLAGS": "-v"}));
}

#[test]
fn exec_start_errors() {
    let error = app_err("a.service", "[Service]\nType=simple\n");
    names(&error, "Service", "ExecStart", 0);
    for prefix in ["-", "@", ":", "+", "!", "!!"] {
        let error = app_err(
            "a.service",
            &format!("[Service]\nExecStart={prefix}/bin/a\n"),
        );
        names(&error, "Service", "ExecStart", 2);
        assert!(matches!(error, UnitError::Untranslatable { .. }), "{error}");
    }
    let error = app_err(
        "a.service",
        "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n",
    );
    names(&error, "Service", "ExecStart", 3);
    let error = app_err("a.service", "[Service]\nExecStart=/bin/a \"open\n");
    names(&error, "Service", "ExecStart", 2);
    // An empty ExecStart= resets the list.
    assert_eq!(
        app(
            "a.service",
            "[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n"
        )["args"],
        json!(["/bin/b"])
    );
}

#[test]
fn working_directory_becomes_cd_in_cmd() {
    let json = app(
        "a.service",
        "[Service]\nWorkingDirectory=/srv/my app\nExecStart=/bin/a x\n",
    );
    assert_eq!(json["cmd"], "cd '/srv/my app' && exec /bin/a x");
    for (value, untranslatable) in [("-/srv", true), ("~", true), ("srv", false)] {
        let error = app_err(
            "a.service",
            &format!("[Service]\nExecStart=/a\nWorkingDirectory={value}\n"),
        );
        names(&error, "Service", "WorkingDirectory", 3);
        assert_eq!(
            matches!(error, UnitError::Untranslatable { .. }),
            untranslatable,
            "{error}"
        );
    }
}

#[test]
fn user_environment_memory_and_cpu() {
    let json = app(
        "a.service",
        "[Service]\nExecStart=/a\nUser=www\nEnvironment=A=1 B=2\nEnvironment=A=3\n\
         MemoryLimit=1G\nMemoryMax=512M\nCPUQuota=150%\n",
    );
    assert_eq!(json["user"], "www");
    assert_eq!(json["env"], json!({"A": "3", "B": "2"}));
    assert_eq!(json["mem"], 512.0);
    assert_eq!(json["cpus"], 1.5);
    assert_eq!(
        app("a.service", "[Service]\nExecStart=/a\nMemoryLimit=2G\n")["mem"],
        2048.0
    );
    assert_eq!(
        app("a.service", "[Service]\nExecStart=/a\nMemoryMax=1T\n")["mem"],
        1024.0 * 1024.0
    );
    for (text, key, untranslatable) in [
        ("MemoryMax=infinity", "MemoryMax", true),
        ("MemoryMax=50%", "MemoryMax", false),
        ("MemoryMax=0", "MemoryMax", false),
        ("CPUQuota=1.5", "CPUQuota", false),
        ("CPUQuota=0%", "CPUQuota", false),
        ("User=a b", "User", false),
        ("Environment=NOEQUALS", "Environment", false),
        ("EnvironmentFile=/etc/default/a", "EnvironmentFile", true),
        ("Group=www", "Group", true),
        ("CPUWeight=100", "CPUWeight", true),
        ("MemoryHigh=1G", "MemoryHigh", true),
        ("ExecStartPre=/bin/prep", "ExecStartPre", true),
        ("ExecStop=/bin/stop", "ExecStop", true),
        ("LimitNOFILE=1024", "LimitNOFILE", true),
        ("TimeoutStartSec=5", "TimeoutStartSec", true),
        ("RuntimeMaxSec=5", "RuntimeMaxSec", true),
    ] {
        let error = app_err("a.service", &format!("[Service]\nExecStart=/a\n{text}\n"));
        names(&error, "Service", key, 3);
        assert_eq!(
            matches!(error, UnitError::Untranslatable { .. }),
            untranslatable,
            "{error}"
        );
    }
}

#[test]
fn service_types() {
    for ok in ["simple", "exec", "idle"] {
        app(
            "a.service",
            &format!("[Service]\nType={ok}\nExecStart=/a\n"),
        );
    }
    for refused in ["oneshot", "forking", "notify", "dbus"] {
        let error = app_err(
            "a.service",
            &format!("[Service]\nType={refused}\nExecStart=/a\n"),
        );
        names(&error, "Service", "Type", 2);
        assert!(matches!(error, UnitError::Untranslatable { .. }), "{error}");
    }
    let error = app_err("a.service", "[Service]\nType=weird\nExecStart=/a\n");
    assert!(matches!(error, UnitError::Invalid { .. }), "{error}");
}

#[test]
fn restart_policies() {
    let text = |restart: &str| format!("[Service]\nExecStart=/a\nRestart={restart}\n");
    let t = translate_service("a.service", &text("always"), &ServiceOptions::default()).unwrap();
    assert!(t.ignored.is_empty(), "{:?}", t.ignored);
    let t =
        translate_service("a.service", &text("on-failure"), &ServiceOptions::default()).unwrap();
    assert_eq!(t.ignored.len(), 1);
    assert!(t.ignored[0].contains("[Service] Restart= (line 3)"));
    let error = app_err("a.service", &text("no"));
    names(&error, "Service", "Restart", 3);
    assert!(error.to_string().contains("Chronos job"), "{error}");
    assert!(matches!(
        app_err("a.service", &text("sometimes")),
        UnitError::Invalid { .. }
    ));
    let json = app(
        "a.service",
        "[Service]\nExecStart=/a\nRestartSec=1min 500ms\nTimeoutStopSec=30\n",
    );
    assert_eq!(json["backoffSeconds"], 61);
    assert_eq!(json["taskKillGracePeriodSeconds"], 30);
    names(
        &app_err("a.service", "[Service]\nExecStart=/a\nRestartSec=soon\n"),
        "Service",
        "RestartSec",
        3,
    );
}

#[test]
fn unit_and_install_sections() {
    let t = translate_service(
        "a.service",
        "[Unit]\nDescription=x\nDocumentation=man:a\nAfter=b\nBefore=c\nWants=d\n[Service]\nExecStart=/a\nRestart=always\n[Install]\nWantedBy=multi-user.target\nAlias=b.service\n",
        &ServiceOptions::default(),
    )
    .unwrap();
    assert_eq!(t.ignored.len(), 7, "{:?}", t.ignored);
    for (text, key) in [
        ("Requires=db.service", "Requires"),
        ("BindsTo=db.service", "BindsTo"),
        ("ConditionPathExists=/x", "ConditionPathExists"),
        ("StartLimitBurst=3", "StartLimitBurst"),
    ] {
        let error = app_err(
            "a.service",
            &format!("[Unit]\n{text}\n[Service]\nExecStart=/a\n"),
        );
        names(&error, "Unit", key, 2);
    }
    let error = app_err(
        "a.service",
        "[Service]\nExecStart=/a\n[Socket]\nListenStream=80\n",
    );
    names(&error, "Socket", "ListenStream", 4);
    let error = app_err("a.service", "[Service]\nExecStart=/a\n[Install]\nBogus=1\n");
    names(&error, "Install", "Bogus", 4);
}

// ---- [X-Fleet] ----

#[test]
fn fleet_machine_metadata_becomes_like_constraints() {
    let json = app(
        "a.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nMachineMetadata=rack=r1\n\
         MachineMetadata=\"region=us-east\" rack=r2.x\nMachineMetadata=rack=r1\n",
    );
    assert_eq!(
        json["constraints"],
        json!([["rack", "LIKE", "r1|r2\\.x"], ["region", "LIKE", "us-east"]])
    );
    let error = app_err(
        "a.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nMachineMetadata=rack\n",
    );
    names(&error, "X-Fleet", "MachineMetadata", 4);
}

#[test]
fn fleet_conflicts_on_itself_become_unique() {
    let json = app(
        "web@1.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nConflicts=web@*.service\n",
    );
    assert_eq!(json["constraints"], json!([["hostname", "UNIQUE"]]));
    let t = translate_service(
        "web.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nConflicts=web.service\n",
        &ServiceOptions::default(),
    )
    .unwrap();
    assert_eq!(t.json["constraints"], json!([["hostname", "UNIQUE"]]));
    let error = app_err(
        "web.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nConflicts=db*.service\n",
    );
    names(&error, "X-Fleet", "Conflicts", 4);
    assert!(matches!(error, UnitError::Untranslatable { .. }));
}

#[test]
fn fleet_global_runs_one_instance_on_every_agent() {
    let text = "[Service]\nExecStart=/a\n[X-Fleet]\nGlobal=true\nConflicts=a.service\n";
    let json = app("a.service", text);
    assert_eq!(json["labels"], json!({"PLATEAU_ONE_PER_AGENT": "true"}));
    assert_eq!(json["instances"], 1);
    assert_eq!(json["constraints"], json!([["hostname", "UNIQUE"]]));
    let t = translate_service("a.service", text, &ServiceOptions { agents: Some(7) }).unwrap();
    assert_eq!(t.json["instances"], 7);
    assert_eq!(t.json["labels"], json!({"PLATEAU_ONE_PER_AGENT": "true"}));
    let error =
        translate_service("a.service", text, &ServiceOptions { agents: Some(0) }).unwrap_err();
    names(&error, "X-Fleet", "Global", 4);
    names(
        &app_err(
            "a.service",
            "[Service]\nExecStart=/a\n[X-Fleet]\nGlobal=sometimes\n",
        ),
        "X-Fleet",
        "Global",
        4,
    );
    let json = app(
        "a.service",
        "[Service]\nExecStart=/a\n[X-Fleet]\nGlobal=false\n",
    );
    assert_eq!(json["instances"], 1);
    assert!(json.get("constraints").is_none());
    assert!(json.get("labels").is_none());
}

#[test]
fn fleet_refusals() {
    for (line, key) in [
        ("MachineID=abc", "MachineID"),
        ("MachineOf=db.service", "MachineOf"),
        ("Replaces=old.service", "Replaces"),
        ("Unknown=1", "Unknown"),
    ] {
        let error = app_err(
            "a.service",
            &format!("[Service]\nExecStart=/a\n[X-Fleet]\n{line}\n"),
        );
        names(&error, "X-Fleet", key, 4);
    }
}

// ---- timer → job ----

fn job(timer: &str, service: &str) -> serde_json::Value {
    timer_to_job("backup.timer", timer, service).unwrap_or_else(|e| panic!("{e}"))
}

fn job_err(timer: &str, service: &str) -> UnitError {
    match timer_to_job("backup.timer", timer, service) {
        Ok(json) => panic!("translated to {json}"),
        Err(e) => e,
    }
}

const ONESHOT: &str = "[Service]\nType=oneshot\nExecStart=/usr/bin/backup --all\n";

#[test]
fn calendar_timer_becomes_a_calendar_job() {
    let json = job(
        "[Unit]\nDescription=Nightly backup\n[Timer]\nOnCalendar=Mon..Fri *-*-* 02:00 Europe/Berlin\nPersistent=true\nAccuracySec=5min\n[Install]\nWantedBy=timers.target\n",
        "[Service]\nType=oneshot\nExecStart=/usr/bin/backup --all\nExecStart=/usr/bin/prune\nUser=backup\nEnvironment=DEST=/mnt\nMemoryMax=256M\nCPUQuota=50%\nTimeoutStartSec=1h\n",
    );
    assert_eq!(
        json,
        json!({
            "name": "backup",
            "command": "/usr/bin/backup --all && /usr/bin/prune",
            "shell": true,
            "calendar": "Mon..Fri *-*-* 02:00 Europe/Berlin",
            "catchUp": "once",
            "epsilon": "PT300S",
            "retries": 0,
            "maxCompletionTime": 3_600_000,
            "cpus": 0.5,
            "mem": 256.0,
            "runAsUser": "backup",
            "environmentVariables": [{"name": "DEST", "value": "/mnt"}],
            "description": "Nightly backup",
        })
    );
    assert_eq!(
        job("[Timer]\nOnCalendar=daily\n", ONESHOT)["catchUp"],
        "skip",
        "Persistent= defaults to false"
    );
}

#[test]
fn monotonic_timers_become_iso_schedules() {
    assert_eq!(
        job("[Timer]\nOnUnitActiveSec=1h\n", ONESHOT)["schedule"],
        "R//PT3600S"
    );
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let t = translate_timer(
        "backup.timer",
        "[Timer]\nOnBootSec=15min\nOnUnitActiveSec=1d\n",
        ONESHOT,
        &TimerOptions { now: Some(now) },
    )
    .unwrap();
    assert_eq!(t.json["schedule"], "R/2026-01-01T00:15:00.000Z/PT86400S");
    assert!(
        t.ignored.iter().any(|i| i.contains("OnBootSec=")),
        "{:?}",
        t.ignored
    );
    let t = translate_timer(
        "backup.timer",
        "[Timer]\nOnActiveSec=30s\n",
        ONESHOT,
        &TimerOptions { now: Some(now) },
    )
    .unwrap();
    assert_eq!(t.json["schedule"], "R1/2026-01-01T00:00:30.000Z/P1D");
    let error = job_err("[Timer]\nOnBootSec=15min\nOnUnitActiveSec=1d\n", ONESHOT);
    names(&error, "Timer", "OnBootSec", 2);
    let t = translate_timer(
        "backup.timer",
        "[Timer]\nOnUnitInactiveSec=10min\n",
        ONESHOT,
        &TimerOptions::default(),
    )
    .unwrap();
    assert_eq!(t.json["schedule"], "R//PT600S");
    assert_eq!(t.ignored.len(), 1);
}

#[test]
fn timer_schedule_errors() {
    names(
        &job_err("[Timer]\nPersistent=true\n", ONESHOT),
        "Timer",
        "OnCalendar",
        0,
    );
    names(
        &job_err("[Timer]\nOnCalendar=daily\nOnCalendar=weekly\n", ONESHOT),
        "Timer",
        "OnCalendar",
        3,
    );
    names(
        &job_err("[Timer]\nOnCalendar=daily\nOnUnitActiveSec=1h\n", ONESHOT),
        "Timer",
        "OnUnitActiveSec",
        3,
    );
    names(
        &job_err(
            "[Timer]\nOnUnitActiveSec=1h\nOnUnitInactiveSec=1h\n",
            ONESHOT,
        ),
        "Timer",
        "OnUnitInactiveSec",
        3,
    );
    names(
        &job_err("[Timer]\nOnUnitActiveSec=0\n", ONESHOT),
        "Timer",
        "OnUnitActiveSec",
        2,
    );
    // An empty OnCalendar= resets the list.
    assert_eq!(
        job(
            "[Timer]\nOnCalendar=daily\nOnCalendar=\nOnCalendar=weekly\n",
            ONESHOT
        )["calendar"],
        "weekly"
    );
}

#[test]
fn timer_directives_refused_or_mapped() {
    for (line, key) in [
        ("RandomizedDelaySec=10min", "RandomizedDelaySec"),
        ("WakeSystem=true", "WakeSystem"),
        ("FixedRandomDelay=yes", "FixedRandomDelay"),
        ("OnClockChange=true", "OnClockChange"),
        ("OnTimezoneChange=true", "OnTimezoneChange"),
        ("Persistent=maybe", "Persistent"),
        ("AccuracySec=fast", "AccuracySec"),
        ("Bogus=1", "Bogus"),
    ] {
        let error = job_err(&format!("[Timer]\nOnCalendar=daily\n{line}\n"), ONESHOT);
        names(&error, "Timer", key, 3);
    }
    job(
        "[Timer]\nOnCalendar=daily\nRandomizedDelaySec=0\nWakeSystem=false\nRemainAfterElapse=yes\n",
        ONESHOT,
    );
    let error = job_err("[Timer]\nOnCalendar=daily\nUnit=other.socket\n", ONESHOT);
    names(&error, "Timer", "Unit", 3);
}

#[test]
fn timer_service_rules() {
    let timer = "[Timer]\nOnCalendar=hourly\n";
    assert_eq!(
        job(timer, "[Service]\nExecStart=/a\nRestart=on-failure\n")["retries"],
        2
    );
    names(
        &job_err(timer, "[Service]\nExecStart=/a\nRestart=always\n"),
        "Service",
        "Restart",
        3,
    );
    names(
        &job_err(timer, "[Service]\nExecStart=/a\nExecStart=/b\n"),
        "Service",
        "ExecStart",
        3,
    );
    names(
        &job_err(timer, "[Service]\nType=forking\nExecStart=/a\n"),
        "Service",
        "Type",
        2,
    );
    names(
        &job_err(timer, "[Service]\nType=oneshot\n"),
        "Service",
        "ExecStart",
        0,
    );
    names(
        &job_err(timer, "[Service]\nExecStart=/a\n[X-Fleet]\nGlobal=true\n"),
        "X-Fleet",
        "Global",
        4,
    );
    let json = job(
        timer,
        "[Unit]\nDescription=From the service\n[Service]\nWorkingDirectory=/srv\nExecStart=/a ${X}\nRuntimeMaxSec=90\n",
    );
    assert_eq!(json["command"], "cd /srv && /a \"${X}\"");
    assert_eq!(json["maxCompletionTime"], 90_000);
    assert_eq!(json["description"], "From the service");
}

#[test]
fn timer_names_and_instances() {
    let json = timer_to_job(
        "backup@db.timer",
        "[Timer]\nOnCalendar=daily\n",
        "[Service]\nType=oneshot\nExecStart=/usr/bin/backup %i %n\n",
    )
    .unwrap();
    assert_eq!(json["name"], "backup-db");
    assert_eq!(json["command"], "/usr/bin/backup db backup@db.service");
    let json = timer_to_job(
        "nightly.timer",
        "[Timer]\nOnCalendar=daily\nUnit=backup@all.service\n",
        "[Service]\nType=oneshot\nExecStart=/usr/bin/backup %i\n",
    )
    .unwrap();
    assert_eq!(json["command"], "/usr/bin/backup all");
    assert!(matches!(
        timer_to_job("backup.service", "", ONESHOT),
        Err(UnitError::UnitName { .. })
    ));
    assert!(matches!(
        timer_to_job("backup@.timer", "[Timer]\nOnCalendar=daily\n", ONESHOT),
        Err(UnitError::UnitName { .. })
    ));
}

/// The examples of docs/units.md, with the JSON the page shows.
#[test]
fn docs_examples_translate_as_documented() {
    let fleet = "[Unit]\nDescription=Web front end %i\nAfter=network-online.target\n\n\
        [Service]\nUser=www\nEnvironment=\"PORT=8080\" MODE=production\n\
        ExecStart=/usr/bin/web --port ${PORT} --name %n\nRestart=always\nRestartSec=5s\n\
        MemoryMax=512M\nCPUQuota=150%\n\n[X-Fleet]\nMachineMetadata=region=eu rack=r1 rack=r2\n\
        Conflicts=web@*.service\n\n[Install]\nWantedBy=multi-user.target\n";
    let t = translate_service("web@blue.service", fleet, &ServiceOptions::default()).unwrap();
    assert_eq!(
        t.json,
        json!({
            "id": "/web-blue",
            "cmd": "/usr/bin/web --port \"${PORT}\" --name web@blue.service",
            "backoffSeconds": 5,
            "user": "www",
            "env": { "MODE": "production", "PORT": "8080" },
            "cpus": 1.5,
            "mem": 512.0,
            "instances": 1,
            "constraints": [["region", "LIKE", "eu"], ["rack", "LIKE", "r1|r2"], ["hostname", "UNIQUE"]]
        })
    );
    assert_eq!(t.ignored.len(), 4, "{:?}", t.ignored);
    assert_eq!(
        app(
            "redis.service",
            "[Service]\nExecStart=/usr/bin/redis-server --port 6379 --save \"\"\nRestart=always\n"
        ),
        json!({"id": "/redis", "args": ["/usr/bin/redis-server", "--port", "6379", "--save", ""], "instances": 1})
    );
    let timer = "[Unit]\nDescription=Nightly backup\n\n[Timer]\n\
        OnCalendar=Mon..Fri *-*-* 02:00 Europe/Berlin\nPersistent=true\nAccuracySec=5min\n\n\
        [Install]\nWantedBy=timers.target\n";
    let service = "[Service]\nType=oneshot\nUser=backup\nEnvironment=DEST=/mnt/backup\n\
        ExecStart=/usr/bin/backup --all --to ${DEST}\nExecStart=/usr/bin/prune --keep 7\n\
        MemoryMax=256M\nTimeoutStartSec=1h\n";
    assert_eq!(
        timer_to_job("backup.timer", timer, service).unwrap(),
        json!({
            "name": "backup",
            "command": "/usr/bin/backup --all --to \"${DEST}\" && /usr/bin/prune --keep 7",
            "shell": true,
            "calendar": "Mon..Fri *-*-* 02:00 Europe/Berlin",
            "catchUp": "once",
            "epsilon": "PT300S",
            "retries": 0,
            "maxCompletionTime": 3_600_000,
            "mem": 256.0,
            "runAsUser": "backup",
            "environmentVariables": [{ "name": "DEST", "value": "/mnt/backup" }],
            "description": "Nightly backup"
        })
    );
}

#[test]
fn a_service_description_shadowed_by_the_timers_is_listed_as_ignored() {
    let t = translate_timer(
        "backup.timer",
        "[Unit]\nDescription=Nightly backup\n[Timer]\nOnCalendar=daily\n",
        "[Unit]\nDescription=The backup service\n[Service]\nType=oneshot\nExecStart=/usr/bin/backup\n",
        &TimerOptions { now: None },
    )
    .unwrap();
    assert_eq!(t.json["description"], "Nightly backup");
    assert!(
        t.ignored.iter().any(|i| i.contains("Description")),
        "{:?}",
        t.ignored
    );
}
