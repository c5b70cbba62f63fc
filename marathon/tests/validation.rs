//! Parsing and validation of app bodies against Marathon's behaviour and documented examples.

use plateau_marathon::app::{AppDefinition, KillSelection, UnreachableStrategy};
use plateau_marathon::validation::{details_by_path, parse_app, parse_app_put, ApiError, AppPut};
use serde_json::{json, Value};

fn err(body: Value) -> ApiError {
    parse_app(body.to_string().as_bytes()).expect_err("body must be refused")
}

fn ok(body: Value) -> AppDefinition {
    match parse_app(body.to_string().as_bytes()) {
        Ok(app) => app,
        Err(e) => panic!("body refused: {}", e.body),
    }
}

/// Asserts a 422 with `message` and `error` among the errors under `path`.
fn assert_422(e: &ApiError, message: &str, path: &str, error: &str) {
    assert_eq!(e.status, 422, "{}", e.body);
    assert_eq!(e.body["message"], message, "{}", e.body);
    let details = details_by_path(e);
    let errors = details
        .get(path)
        .unwrap_or_else(|| panic!("no details for {path}: {}", e.body));
    assert!(
        errors.iter().any(|m| m == error),
        "{path}: {errors:?} lacks {error:?}"
    );
}

#[test]
fn malformed_json_is_400_with_string_details() {
    let e = parse_app(br#"{"id":"/test""#).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.body["message"], "Invalid JSON");
    assert!(e.body["details"].is_string());
    let e = parse_app(b"  ").unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.body["message"], "Please specify data in JSON format");
}

#[test]
fn wrong_types_are_422_invalid_json_naming_the_field() {
    let e = err(json!({"id": 123, "cmd": "x y"}));
    assert_eq!(
        e.body,
        json!({"message": "Invalid JSON", "details": [{"path": "/id", "errors": ["error.expected.jsstring"]}]})
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "cpus": "1"}));
    assert_422(&e, "Invalid JSON", "/cpus", "error.expected.jsnumber");
    let e = err(json!({"id": "/a", "cmd": "x y", "instances": 1.5}));
    assert_422(&e, "Invalid JSON", "/instances", "error.expected.int");
    let e = err(json!({"id": "/a", "cmd": "x y", "requirePorts": "yes"}));
    assert_422(
        &e,
        "Invalid JSON",
        "/requirePorts",
        "error.expected.jsboolean",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "labels": []}));
    assert_422(&e, "Invalid JSON", "/labels", "error.expected.jsobject");
    let e = err(json!({"id": "/a", "cmd": "x y", "constraints": [["hostname", 1]]}));
    assert_422(
        &e,
        "Invalid JSON",
        "/constraints(0)(1)",
        "error.expected.jsstring",
    );
    let e = err(json!([1, 2]));
    assert_eq!(e.status, 422);
}

#[test]
fn out_of_range_numbers_name_the_field() {
    let e = err(json!({"id": "/a", "cmd": "x y", "instances": -1}));
    assert_422(&e, "Invalid JSON", "/instances", "error.min");
    let e = err(json!({"id": "/a", "cmd": "x y", "cpus": 0}));
    assert_422(&e, "Invalid JSON", "/cpus", "error.min");
    let e = err(json!({"id": "/a", "cmd": "x y", "mem": -128}));
    assert_422(&e, "Invalid JSON", "/mem", "error.min");
    let e = err(json!({"id": "/a", "cmd": "x y", "backoffFactor": 0.5}));
    assert_422(&e, "Invalid JSON", "/backoffFactor", "error.min");
    // Several errors at once, one entry per path.
    let e = err(json!({"id": "/a", "cmd": "x y", "instances": -1, "disk": -1}));
    assert_eq!(details_by_path(&e).len(), 2);
    // Zero instances is fine.
    assert_eq!(
        ok(json!({"id": "/a", "cmd": "x y", "instances": 0})).instances,
        0
    );
}

#[test]
fn command_rules() {
    let missing = err(json!({"id": "/a"}));
    assert_eq!(
        missing.body,
        json!({"message": "Object is not valid", "details": [{"path": "/", "errors": [
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
        ]}]})
    );
    let both = err(json!({"id": "/a", "cmd": "sleep 1", "args": ["sleep", "1"]}));
    assert_422(
        &both,
        "Object is not valid",
        "/",
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
    );
    let empty = err(json!({"id": "/a", "cmd": ""}));
    assert_422(&empty, "Invalid JSON", "/cmd", "error.minLength");
    assert!(ok(json!({"id": "/a", "args": ["sleep", "1"]}))
        .cmd
        .is_none());
    let image_only = ok(json!({"id": "/a", "container": {"docker": {"image": "nginx"}}}));
    assert!(image_only.cmd.is_none());
}

#[test]
fn ids_are_normalized_and_validated() {
    assert_eq!(ok(json!({"id": "web", "cmd": "x y"})).id, "/web");
    assert_eq!(ok(json!({"id": "/prod/../web", "cmd": "x y"})).id, "/web");
    let e = err(json!({"cmd": "x y"}));
    assert_422(&e, "Invalid JSON", "/id", "error.path.missing");
    let e = err(json!({"id": "My App", "cmd": "x y"}));
    assert_422(&e, "Invalid JSON", "/id", "error.pattern");
    let e = err(json!({"id": "/a..b", "cmd": "x y"}));
    assert_eq!(e.body["message"], "Object is not valid");
    assert!(details_by_path(&e)["/id"][0].starts_with("must fully match regular expression"));
    let e = err(json!({"id": "/grp/versions", "cmd": "x y"}));
    assert_eq!(e.body["message"], "Object is not valid");
    let e = err(json!({"id": "/", "cmd": "x y"}));
    assert_422(&e, "Object is not valid", "/", "must not be root");
}

#[test]
fn constraint_errors_name_the_constraint() {
    let e = err(
        json!({"id": "/a", "cmd": "x y", "constraints": [["hostname", "UNIQUE"], ["rack", "NEAR", "x"]]}),
    );
    assert_422(
        &e,
        "Object is not valid",
        "/constraints(1)",
        "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "constraints": [["hostname"]]}));
    assert_422(
        &e,
        "Object is not valid",
        "/constraints(0)",
        "Each constraint must have either 2 or 3 fields",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "constraints": [["rack", "LIKE", "(["]]}));
    assert_422(
        &e,
        "Object is not valid",
        "/constraints(0)",
        "is not a valid regular expression",
    );
    let app = ok(
        json!({"id": "/a", "cmd": "x y", "constraints": [["hostname", "unique"], ["rack", "group_by", "3"]]}),
    );
    assert_eq!(
        serde_json::to_value(&app.constraints).unwrap(),
        json!([["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]])
    );
}

#[test]
fn port_errors() {
    let e = err(json!({"id": "/a", "cmd": "x y", "portDefinitions": [{"port": 70000}]}));
    assert_422(&e, "Invalid JSON", "/portDefinitions(0)/port", "error.max");
    let e = err(json!({"id": "/a", "cmd": "x y", "ports": [-1]}));
    assert_422(&e, "Invalid JSON", "/ports(0)", "error.min");
    let e =
        err(json!({"id": "/a", "cmd": "x y", "portDefinitions": [{"port": 0, "name": "Http"}]}));
    assert_422(
        &e,
        "Invalid JSON",
        "/portDefinitions(0)/name",
        "error.pattern",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "portDefinitions": [
        {"port": 0, "name": "http"}, {"port": 0, "name": "http"}
    ]}));
    assert_422(
        &e,
        "Object is not valid",
        "/portDefinitions",
        "Port names must be unique.",
    );
    let e =
        err(json!({"id": "/a", "cmd": "x y", "portDefinitions": [{"port": 8080}, {"port": 8080}]}));
    assert_422(
        &e,
        "Object is not valid",
        "/portDefinitions",
        "Ports must be unique.",
    );
    let e =
        err(json!({"id": "/a", "cmd": "x y", "ports": [80], "portDefinitions": [{"port": 81}]}));
    assert_422(
        &e,
        "Object is not valid",
        "/",
        "cannot specify both ports and port definitions",
    );
    let app = ok(json!({"id": "/a", "cmd": "x y", "ports": [0, 0]}));
    assert_eq!(app.port_definitions.len(), 2);
}

#[test]
fn health_check_errors_and_defaults() {
    let e = err(json!({"id": "/a", "cmd": "x y", "healthChecks": [{"protocol": "FOO"}]}));
    assert_422(
        &e,
        "Invalid JSON",
        "/healthChecks(0)/protocol",
        "error.unknown.enum.literal",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "healthChecks": [{"portIndex": 2}]}));
    assert_422(
        &e,
        "Object is not valid",
        "/healthChecks(0)",
        "Health check port indices must address an element of the ports array or container port mappings.",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "healthChecks": [{"intervalSeconds": -5}]}));
    assert_422(
        &e,
        "Invalid JSON",
        "/healthChecks(0)/intervalSeconds",
        "error.min",
    );
    let e = err(json!({"id": "/a", "cmd": "x y", "healthChecks": [
        {"protocol": "MESOS_HTTP"}, {"protocol": "MESOS_TCP"}
    ]}));
    assert_422(
        &e,
        "Object is not valid",
        "/",
        "AppDefinition can contain at most one Mesos health check",
    );
    let app = ok(json!({"id": "/a", "cmd": "x y", "healthChecks": [{"protocol": "http"}]}));
    assert_eq!(
        serde_json::to_value(&app.health_checks[0]).unwrap(),
        json!({
            "protocol": "HTTP", "gracePeriodSeconds": 300, "intervalSeconds": 60,
            "timeoutSeconds": 20, "maxConsecutiveFailures": 3, "delaySeconds": 15,
            "path": "/", "portIndex": 0, "ignoreHttp1xx": false, "ipProtocol": "IPv4"
        })
    );
}

#[test]
fn upgrade_strategy_bounds_use_the_reference_messages() {
    let e =
        err(json!({"id": "/a", "cmd": "x y", "upgradeStrategy": {"minimumHealthCapacity": 1.5}}));
    assert_eq!(
        e.body,
        json!({"message": "Object is not valid", "details": [
            {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]}
        ]})
    );
}

#[test]
fn unknown_fields_are_ignored_and_never_echoed() {
    let app = ok(json!({
        "id": "/a", "cmd": "x y", "frobnicate": true, "tty": true, "check": {"http": {}},
        "resourceLimits": {"cpus": "unlimited"}, "tasksRunning": 3, "version": "2015-09-25T15:13:48.343Z"
    }));
    let out = serde_json::to_value(&app).unwrap();
    for key in [
        "frobnicate",
        "tty",
        "check",
        "resourceLimits",
        "tasksRunning",
        "version",
        "ports",
        "uris",
        "ipAddress",
    ] {
        assert!(out.get(key).is_none(), "{key} echoed");
    }
}

#[test]
fn defaults_of_a_minimal_app() {
    let app = ok(json!({"id": "/a", "cmd": "x y"}));
    assert_eq!(app.instances, 1);
    assert_eq!(app.cpus, 1.0);
    assert_eq!(app.mem, 128.0);
    assert_eq!(app.disk, 0.0);
    assert_eq!(app.gpus, 0);
    assert_eq!(app.backoff_seconds, 1);
    assert_eq!(app.backoff_factor, 1.15);
    assert_eq!(app.max_launch_delay_seconds, 300);
    assert_eq!(app.kill_selection, KillSelection::YoungestFirst);
    assert_eq!(
        app.unreachable_strategy,
        UnreachableStrategy::Enabled {
            inactive_after_seconds: 0,
            expunge_after_seconds: 0
        }
    );
    let out = serde_json::to_value(&app).unwrap();
    assert_eq!(
        out["portDefinitions"],
        json!([{"port": 0, "protocol": "tcp", "name": "default"}])
    );
    assert_eq!(
        out["upgradeStrategy"],
        json!({"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0})
    );
    assert!(out.get("container").is_none());
}

/// `docs/docs/rest-api/public/api/v2/examples/app.json`, without the fields that make the
/// published example invalid under 1.10's own rules (`args` beside `cmd`, `ipAddress` and
/// `portDefinitions`/`ports` beside Docker bridge networking).
#[test]
fn upstream_app_example_round_trips() {
    let example = json!({
      "id": "/foo", "instances": 2, "cmd": "sleep 1000", "cpus": 0.1, "disk": 0, "mem": 16,
      "acceptedResourceRoles": ["mesos_role"],
      "backoffFactor": 1.15, "backoffSeconds": 1,
      "constraints": [["hostname", "LIKE", "srv2.*"]],
      "container": {
        "docker": {
          "forcePullImage": false, "image": "mesosphere:marathon/latest", "network": "BRIDGE",
          "parameters": [{"key": "name", "value": "kdc"}],
          "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "servicePort": 10019,
                            "name": "http", "labels": {"vip": "192.168.0.1:80"}}],
          "privileged": false
        },
        "type": "DOCKER",
        "volumes": [{"containerPath": "/docker_storage", "hostPath": "/hdd/tools/docker/registry", "mode": "RW"}]
      },
      "dependencies": ["/prod/group"],
      "env": {"XPS1": "Test", "XPS2": "Rest"},
      "executor": "",
      "healthChecks": [{"gracePeriodSeconds": 300, "ignoreHttp1xx": false, "intervalSeconds": 20,
                        "maxConsecutiveFailures": 3, "path": "/", "portIndex": 0, "protocol": "HTTP",
                        "timeoutSeconds": 20}],
      "readinessChecks": [{"name": "myReadyCheck", "protocol": "HTTP", "path": "/v1/plan", "portName": "http",
                           "interval": 10000, "timeout": 10000, "httpStatusCodesForReady": [200],
                           "preserveLastResponse": false}],
      "labels": {"owner": "zeus", "note": "Away from olympus"},
      "maxLaunchDelaySeconds": 3600,
      "requirePorts": false,
      "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
      "fetch": [{"uri": "https://foo.com/setup.py"},
                {"uri": "https://foo.com/archive.zip", "executable": false, "extract": true, "cache": true}],
      "user": "root"
    });
    let app = ok(example.clone());
    assert_eq!(app.max_launch_delay_seconds, 3600);
    assert!(app.port_definitions.is_empty());
    let out = serde_json::to_value(&app).unwrap();
    assert_eq!(out["networks"], json!([{"mode": "container/bridge"}]));
    assert_eq!(out["container"]["portMappings"][0]["servicePort"], 10019);
    assert_eq!(
        out["container"]["docker"]["image"],
        "mesosphere:marathon/latest"
    );
    assert_eq!(
        out["fetch"][0],
        json!({"uri": "https://foo.com/setup.py", "extract": true, "executable": false, "cache": false})
    );
    assert_eq!(out["constraints"], example["constraints"]);
    assert_eq!(out["labels"], example["labels"]);
    // Our own output parses back to the same definition.
    let again = ok(out.clone());
    assert_eq!(again, app);
    // And deserializes directly, as stored state would.
    let stored: AppDefinition = serde_json::from_value(out).unwrap();
    assert_eq!(stored, app);

    // The published example as is: Marathon 1.10 refuses cmd beside args.
    let mut with_args = example;
    with_args["args"] = json!(["sleep", "100"]);
    let e = err(with_args);
    assert_422(
        &e,
        "Object is not valid",
        "/",
        "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
    );
}

/// An app of `examples/app_list.json` (a Marathon 0.x/1.x response), sent back as input.
#[test]
fn upstream_app_list_entry_is_accepted_as_input() {
    let app = ok(json!({
      "id": "/myapp", "cmd": "env && sleep 60", "args": null, "user": null,
      "env": {"LD_LIBRARY_PATH": "/usr/local/lib/myLib"},
      "instances": 3, "cpus": 0.1, "mem": 5, "disk": 0, "executor": "",
      "constraints": [["hostname", "UNIQUE", ""]],
      "uris": ["https://raw.github.com/mesosphere/marathon/master/README.md"],
      "ports": [10013, 10015], "requirePorts": false,
      "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 3600,
      "container": null, "healthChecks": [], "dependencies": [],
      "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1},
      "labels": {}, "acceptedResourceRoles": null,
      "version": "2015-09-25T15:13:48.343Z",
      "versionInfo": {"lastScalingAt": "2015-09-25T15:13:48.343Z", "lastConfigChangeAt": "2015-09-25T15:13:48.343Z"},
      "tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0, "tasksUnhealthy": 0,
      "deployments": [{"id": "9538079c-3898-4e32-aa31-799bf9097f74"}]
    }));
    assert_eq!(app.constraints[0].to_parts(), vec!["hostname", "UNIQUE"]);
    assert_eq!(
        app.port_definitions
            .iter()
            .map(|p| p.port)
            .collect::<Vec<_>>(),
        vec![10013, 10015]
    );
    assert_eq!(app.fetch.len(), 1);
    assert_eq!(app.user, None);
    assert_eq!(app.version, None);
}

/// The first app of `examples/queue.json`: a Docker host-networked app with no command.
#[test]
fn upstream_queue_app_is_accepted() {
    let app = ok(json!({
      "id": "/tools/datadog-agent", "instances": 5, "cpus": 1.0, "mem": 512.0, "disk": 0.0,
      "constraints": [["hostname", "UNIQUE"]], "ports": [10018], "requirePorts": false,
      "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 3600,
      "container": {"type": "DOCKER", "docker": {"image": "datadog/docker-dd-agent:latest",
                    "network": "HOST", "privileged": true, "forcePullImage": false}},
      "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0},
      "version": "2015-08-26T22:33:24.225Z"
    }));
    let out = serde_json::to_value(&app).unwrap();
    assert_eq!(
        out["portDefinitions"],
        json!([{"port": 10018, "protocol": "tcp"}])
    );
    assert_eq!(out["networks"], json!([{"mode": "host"}]));
    assert_eq!(out["container"]["docker"]["privileged"], true);
}

#[test]
fn put_merges_partially_and_recognizes_rollbacks() {
    let existing = ok(json!({"id": "/web", "cmd": "serve", "instances": 2, "labels": {"a": "b"}}));
    let AppPut::App(scaled) =
        parse_app_put(br#"{"instances": 7}"#, "web", Some(&existing), true).unwrap()
    else {
        panic!("not an app")
    };
    assert_eq!(scaled.instances, 7);
    assert_eq!(scaled.labels, existing.labels);
    assert_eq!(scaled.cmd, existing.cmd);

    // partialUpdate=false: absent fields take their defaults.
    let AppPut::App(replaced) =
        parse_app_put(br#"{"cmd": "other"}"#, "/web", Some(&existing), false).unwrap()
    else {
        panic!("not an app")
    };
    assert_eq!(replaced.instances, 1);
    assert!(replaced.labels.is_empty());

    // The URL's ID wins over the body's.
    let AppPut::App(created) =
        parse_app_put(br#"{"id": "/other", "cmd": "x y"}"#, "/new", None, true).unwrap()
    else {
        panic!("not an app")
    };
    assert_eq!(created.id, "/new");

    assert_eq!(
        parse_app_put(
            br#"{"version": "2015-09-25T17:13:48.343+02:00"}"#,
            "/web",
            Some(&existing),
            true
        )
        .unwrap(),
        AppPut::Rollback {
            version: "2015-09-25T15:13:48.343Z".into()
        }
    );
    let e = parse_app_put(
        br#"{"version": "2015-09-25T15:13:48.343Z", "instances": 3}"#,
        "/web",
        Some(&existing),
        true,
    )
    .unwrap_err();
    assert_422(
        &e,
        "Object is not valid",
        "/",
        "The 'version' field may only be combined with the 'id' field.",
    );

    // A partial update is validated as a whole.
    let e = parse_app_put(
        br#"{"args": ["a"], "cmd": "b c"}"#,
        "/web",
        Some(&existing),
        true,
    )
    .unwrap_err();
    assert_eq!(e.status, 422);
}

#[test]
fn readiness_checks_name_their_port_and_speak_http() {
    let base =
        json!({"id": "/ready", "cmd": "serve", "portDefinitions": [{"port": 0, "name": "http"}]});
    let mut https = base.clone();
    https["readinessChecks"] = json!([{"portName": "http", "protocol": "HTTPS"}]);
    assert_422(
        &err(https),
        "Object is not valid",
        "/readinessChecks(0)/protocol",
        "readiness checks over HTTPS are not supported: use HTTP",
    );
    let mut unknown_port = base.clone();
    unknown_port["readinessChecks"] = json!([{"portName": "admin"}]);
    assert_422(
        &err(unknown_port),
        "Object is not valid",
        "/readinessChecks(0)/portName",
        "No port definition reference for portName admin",
    );
    let mut good = base;
    good["readinessChecks"] = json!([{"portName": "http", "path": "/ready"}]);
    let app = ok(good);
    assert_eq!(app.readiness_checks[0].interval_seconds, 30);
    assert_eq!(
        app.readiness_checks[0].http_status_codes_for_ready,
        vec![200]
    );
}
