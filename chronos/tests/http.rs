//! Chronos' REST API on a real actix-web server (127.0.0.1, a free port), against a scheduler on
//! a node without network transport (no master: nothing runs, everything is stored), with the
//! redb store in a temporary work dir.
use std::time::Duration;

use plateau_chronos::http::{start, StartConfig, Started};
use plateau_runtime::{Handlers, Node, NodeConfig, Process};
use serde_json::{json, Value};

/// A master that never answers, on the scheduler's node. (A master on another node is not
/// reachable without a transport, and the SDK driver then re-registers in a tight loop.)
struct SilentMaster;
impl Process for SilentMaster {
    fn install(_handlers: &mut Handlers<Self>) {}
}

struct Api {
    base: String,
    client: reqwest::Client,
    started: Started,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(NodeConfig::local("127.0.0.1", 0, 7)).unwrap();
        node.spawn("master", SilentMaster).unwrap();
        let mut config = StartConfig::new(dir.path().to_path_buf(), node.upid("master"));
        config.http_listen = "127.0.0.1:0".parse().unwrap();
        let started = start(&node, config).unwrap();
        assert!(dir.path().join("chronos/state.redb").exists());
        let api = Api {
            base: format!("http://{}", started.http_addr),
            client: reqwest::Client::new(),
            started,
            _dir: dir,
        };
        // The server starts asynchronously: poll with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match api.client.get(format!("{}/ping", api.base)).send().await {
                Ok(r) if r.status() == 200 => break,
                _ if std::time::Instant::now() < deadline => {
                    actix_rt::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!("server never answered: {other:?}"),
            }
        }
        api
    }

    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn send(&self, method: reqwest::Method, path: &str) -> (u16, String) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn names(&self, path: &str) -> Vec<String> {
        self.get_json(path)
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    }
}

fn assert_bad_request(answer: (u16, String), field: &str) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "Bad Request");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(field) || body["field"] == field,
        "message does not name {field}: {body}"
    );
    assert_eq!(body["field"], field, "{body}");
}

#[actix_rt::test]
async fn create_list_search_run_and_delete_jobs() {
    let api = Api::start().await;
    for prefix in ["/v1/scheduler", "/scheduler"] {
        assert_eq!(
            api.names(&format!("{prefix}/jobs")).await,
            Vec::<String>::new()
        );
    }
    let backup = json!({
        "name": "backup",
        "command": "tar czf /tmp/b.tgz /srv",
        "schedule": "R/2030-01-01T02:00:00Z/P1D",
        "owner": "ops@example.com",
    });
    assert_eq!(
        api.post("/v1/scheduler/iso8601", backup).await,
        (204, String::new())
    );
    let upload = json!({"name": "upload", "command": "upload /tmp/b.tgz", "parents": ["backup"]});
    assert_eq!(
        api.post("/scheduler/dependency", upload).await,
        (204, String::new())
    );

    let jobs = api.get_json("/v1/scheduler/jobs").await;
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(jobs[0]["name"], "backup");
    assert_eq!(jobs[0]["schedule"], "R/2030-01-01T02:00:00Z/P1D");
    assert_eq!(jobs[0]["retries"], 2);
    assert_eq!(jobs[0]["shell"], true);
    assert_eq!(jobs[1]["parents"], json!(["backup"]));
    assert!(jobs[1].get("schedule").is_none());
    let job = api.get_json("/scheduler/job/upload").await;
    assert_eq!(job["command"], "upload /tmp/b.tgz");

    // Search: substrings, lower-cased; all terms must match; limit and offset.
    assert_eq!(
        api.names("/v1/scheduler/jobs/search?name=BACK").await,
        ["backup"]
    );
    assert_eq!(
        api.names("/v1/scheduler/jobs/search?command=tgz").await,
        ["backup", "upload"]
    );
    assert_eq!(
        api.names("/v1/scheduler/jobs/search?name=load&command=tar")
            .await,
        Vec::<String>::new()
    );
    assert_eq!(
        api.names("/v1/scheduler/jobs/search?name=zzz&any=load")
            .await,
        ["upload"]
    );
    assert_eq!(
        api.names("/v1/scheduler/jobs/search?limit=1&offset=1")
            .await,
        ["upload"]
    );

    // Replace: same name, new command.
    let replaced = json!({"name": "upload", "command": "rsync", "parents": ["backup"]});
    assert_eq!(api.post("/v1/scheduler/dependency", replaced).await.0, 204);
    assert_eq!(
        api.get_json("/v1/scheduler/job/upload").await["command"],
        "rsync"
    );

    // Stats of fresh jobs, graph.
    let stat = api.get_json("/v1/scheduler/job/stat/backup").await;
    assert_eq!(stat["histogram"]["count"], 0);
    assert_eq!(stat["histogram"]["median"], 0.0);
    assert_eq!(stat["taskStatHistory"], json!([]));
    let stats = api.get_json("/v1/scheduler/stats/99thPercentile").await;
    assert_eq!(stats.as_array().unwrap().len(), 2);
    assert_eq!(stats[0]["time"], 0.0);
    let (status, csv) = api
        .send(reqwest::Method::GET, "/v1/scheduler/graph/csv")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        csv,
        "node,backup,fresh,idle\nnode,upload,fresh,idle\nlink,backup,upload\n"
    );

    // Run now: stored and queued (no master here, so it stays queued).
    assert_eq!(
        api.send(
            reqwest::Method::PUT,
            "/v1/scheduler/job/backup?arguments=-v"
        )
        .await,
        (204, String::new())
    );
    let (_, csv) = api.send(reqwest::Method::GET, "/scheduler/graph/csv").await;
    assert!(csv.starts_with("node,backup,fresh,queued\n"), "{csv}");
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/v1/scheduler/task/kill/backup")
            .await,
        (204, String::new())
    );

    // Metrics.
    let (status, metrics) = api.send(reqwest::Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("chronos_jobs 2"), "{metrics}");
    assert!(metrics.contains("chronos_runs_pending 1"), "{metrics}");

    // Delete the parent: the child takes over its schedule.
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/v1/scheduler/job/backup")
            .await,
        (204, String::new())
    );
    let jobs = api.get_json("/v1/scheduler/jobs").await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["name"], "upload");
    assert_eq!(jobs[0]["schedule"], "R/2030-01-01T02:00:00Z/P1D");
    assert_eq!(
        api.send(reqwest::Method::DELETE, "/scheduler/job/upload")
            .await
            .0,
        204
    );
    assert_eq!(api.names("/v1/scheduler/jobs").await, Vec::<String>::new());
    api.started.server.stop(true).await;
}

#[actix_rt::test]
async fn invalid_jobs_are_refused_naming_the_field_and_nothing_is_stored() {
    let api = Api::start().await;
    let ok = json!({"name": "a", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
    assert_eq!(api.post("/v1/scheduler/iso8601", ok).await.0, 204);
    let b = json!({"name": "b", "command": "true", "parents": ["a"]});
    assert_eq!(api.post("/v1/scheduler/dependency", b).await.0, 204);

    let bad_name =
        json!({"name": "my job", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H"});
    assert_bad_request(api.post("/v1/scheduler/iso8601", bad_name).await, "name");
    let bad_schedule = json!({"name": "c", "command": "true", "schedule": "R/yesterday/PT1H"});
    assert_bad_request(
        api.post("/v1/scheduler/iso8601", bad_schedule).await,
        "schedule",
    );
    let bad_zone = json!({"name": "c", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "scheduleTimeZone": "Mars/Olympus"});
    assert_bad_request(
        api.post("/v1/scheduler/iso8601", bad_zone).await,
        "scheduleTimeZone",
    );
    let both = json!({"name": "c", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "parents": ["a"]});
    assert_bad_request(api.post("/v1/scheduler/iso8601", both).await, "parents");
    let unknown_parent = json!({"name": "c", "command": "true", "parents": ["nope"]});
    assert_bad_request(
        api.post("/v1/scheduler/dependency", unknown_parent).await,
        "parents",
    );
    let no_parents = json!({"name": "c", "command": "true"});
    assert_bad_request(
        api.post("/v1/scheduler/dependency", no_parents).await,
        "parents",
    );
    // a → b exists; making a depend on b closes a cycle.
    let cycle = json!({"name": "a", "command": "true", "parents": ["b"]});
    assert_bad_request(api.post("/v1/scheduler/dependency", cycle).await, "parents");
    let bad_catch_up = json!({"name": "c", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "catchUp": "sometimes"});
    assert_bad_request(
        api.post("/v1/scheduler/iso8601", bad_catch_up).await,
        "catchUp",
    );
    let bad_regex = json!({"name": "c", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT1H", "constraints": [["rack", "LIKE", "(?=x)"]]});
    assert_bad_request(
        api.post("/v1/scheduler/iso8601", bad_regex).await,
        "constraints",
    );
    let missing_name = json!({"command": "true"});
    assert_bad_request(
        api.post("/v1/scheduler/iso8601", missing_name).await,
        "name",
    );

    // Unknown jobs: 400 as in Chronos (see the http module docs).
    for (method, path) in [
        (reqwest::Method::DELETE, "/v1/scheduler/job/nope"),
        (reqwest::Method::PUT, "/v1/scheduler/job/nope"),
        (reqwest::Method::GET, "/v1/scheduler/job/nope"),
        (reqwest::Method::GET, "/v1/scheduler/job/stat/nope"),
        (reqwest::Method::DELETE, "/v1/scheduler/task/kill/nope"),
    ] {
        let (status, body) = api.send(method, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("Job 'nope' not found"), "{body}");
    }
    let (status, _) = api
        .send(reqwest::Method::GET, "/v1/scheduler/stats/p42")
        .await;
    assert_eq!(status, 400);

    // Nothing was stored by the refused calls.
    assert_eq!(api.names("/v1/scheduler/jobs").await, ["a", "b"]);
    let a = api.get_json("/v1/scheduler/job/a").await;
    assert!(a.get("parents").is_none());
    api.started.server.stop(true).await;
}

#[actix_rt::test]
async fn calendar_jobs_from_systemd_timers_read_back_unchanged() {
    let api = Api::start().await;
    let job = plateau_units::timer_to_job(
        "backup.timer",
        "[Unit]\nDescription=Nightly backup\n[Timer]\nOnCalendar=Mon..Fri *-*-* 02:00 Europe/Berlin\nPersistent=true\nAccuracySec=5min\n",
        "[Service]\nType=oneshot\nUser=backup\nEnvironment=DEST=/mnt\nExecStart=/usr/bin/backup --to ${DEST}\nMemoryMax=256M\nTimeoutStartSec=1h\n",
    )
    .unwrap();
    assert_eq!(
        api.post("/v1/scheduler/iso8601", job.clone()).await,
        (204, String::new())
    );
    let stored = api.get_json("/v1/scheduler/job/backup").await;
    for field in [
        "name",
        "command",
        "calendar",
        "catchUp",
        "epsilon",
        "retries",
        "maxCompletionTime",
        "mem",
        "runAsUser",
        "environmentVariables",
        "description",
    ] {
        assert_eq!(stored[field], job[field], "{field}: {stored}");
    }
    assert_eq!(stored["calendar"], "Mon..Fri *-*-* 02:00 Europe/Berlin");
    assert!(stored.get("schedule").is_none(), "{stored}");
    assert!(stored.get("cron").is_none(), "{stored}");
    let summary = api.get_json("/v1/scheduler/jobs/summary").await;
    assert_eq!(
        summary["jobs"][0]["schedule"],
        "Mon..Fri *-*-* 02:00 Europe/Berlin"
    );

    // Posted again unchanged (what GET shows), it is accepted and still the same.
    assert_eq!(
        api.post("/v1/scheduler/iso8601", stored.clone()).await.0,
        204
    );
    assert_eq!(api.get_json("/v1/scheduler/job/backup").await, stored);

    // A calendar with the job's own zone, and bad calendars naming the field.
    let daily = json!({"name": "daily", "command": "true", "calendar": "daily", "scheduleTimeZone": "America/New_York"});
    assert_eq!(api.post("/v1/scheduler/iso8601", daily).await.0, 204);
    let daily = api.get_json("/v1/scheduler/job/daily").await;
    assert_eq!(
        (&daily["calendar"], &daily["scheduleTimeZone"]),
        (&json!("daily"), &json!("America/New_York"))
    );
    for calendar in ["Funday 02:00", "*-02-30", "25:00"] {
        let bad = json!({"name": "c", "command": "true", "calendar": calendar});
        assert_bad_request(api.post("/v1/scheduler/iso8601", bad).await, "calendar");
    }
    let both = json!({"name": "c", "command": "true", "calendar": "daily", "cron": "0 3 * * *"});
    assert_bad_request(api.post("/v1/scheduler/iso8601", both).await, "calendar");
    assert_eq!(api.names("/v1/scheduler/jobs").await, ["backup", "daily"]);
    api.started.server.stop(true).await;
}
