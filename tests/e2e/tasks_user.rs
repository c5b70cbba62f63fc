//! Who tasks run as, end to end: `plateau master`, one `plateau slave` (default task user
//! `nobody`), `plateau marathon` and `plateau chronos` as separate processes.
//!
//! - A Marathon app without `user` runs as nobody; an app with `"user": "daemon"` runs as
//!   daemon; both echo their `user` field as given. An app naming a user the slave does not
//!   know has its task fail with a message naming the user (`lastTaskFailure`).
//! - A Chronos job with `"runAsUser": "daemon"` runs as daemon and echoes the field.
//! - The task's `stdout` is read through the slave's `/files/read`, as a user would.
//!
//! Switching users needs root (as CI runs); the test says so and passes trivially otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::support::{await_some, eventually, free_port, get_json, Cluster};

/// Deadline for anything that involves launching processes on a slow, shared machine.
const SLOW: Duration = Duration::from_secs(90);

/// The uid of `user` on this machine.
fn uid_of(user: &str) -> u32 {
    plateau_slave::user::TaskUser::lookup(user).unwrap().uid
}

/// The `stdout` of the running task of `app_id` (`/a/b`), read through the slave's
/// `/files/read`; None until it is there and not empty.
async fn app_stdout(slave: &str, app_id: &str) -> Option<String> {
    let prefix = format!("{}.", app_id.trim_start_matches('/').replace('/', "_"));
    let state = get_json(&format!("http://{slave}/state")).await?;
    let directory = state["frameworks"]
        .as_array()?
        .iter()
        .flat_map(|f| f["executors"].as_array().cloned().unwrap_or_default())
        .find(|e| e["id"].as_str().is_some_and(|id| id.starts_with(&prefix)))?["directory"]
        .as_str()?
        .to_string();
    let read = get_json(&format!(
        "http://{slave}/files/read?path={directory}/stdout&offset=0"
    ))
    .await?;
    let data = read["data"].as_str()?.to_string();
    (!data.is_empty()).then_some(data)
}

/// The `stdout` files of the sandboxes under `slave_work` whose task id contains `part`.
fn sandbox_stdouts(slave_work: &Path, part: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let read = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    for slave in read(&slave_work.join("slaves")) {
        for framework in read(&slave.join("frameworks")) {
            for executor in read(&framework.join("executors")) {
                let name = executor.file_name().unwrap().to_string_lossy().into_owned();
                if name.contains(part) {
                    found.push(executor.join("runs/latest/stdout"));
                }
            }
        }
    }
    found
}

#[test]
fn tasks_run_as_their_app_or_job_user_else_as_nobody() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let mut cluster = Cluster::new("tasks-user");
    let dir = cluster.dir.clone();
    let tls = cluster.tls().to_str().unwrap().to_string();
    let master = cluster.start_master();
    let (slave, slave_work) = cluster.start_slave(
        "slave",
        "127.0.0.2",
        &master,
        "cpus:2;mem:1024;disk:1000;ports:[32500-32599]",
    );
    let marathon = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let chronos = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    for (name, listen) in [("marathon", &marathon), ("chronos", &chronos)] {
        let work = dir.join(name);
        cluster.spawn(
            name,
            &[
                name,
                "--master",
                &master,
                "--listen",
                listen,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                &tls,
            ],
        );
    }
    actix_rt::System::new().block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        eventually(SLOW, "the slave registered", || async {
            get_json(&format!("http://{master}/master/state"))
                .await
                .is_some_and(|s| s["activated_slaves"].as_f64() == Some(1.0))
        })
        .await;
        for api in [
            format!("http://{marathon}/v2/info"),
            format!("http://{chronos}/scheduler/jobs"),
        ] {
            eventually(SLOW, "the framework answers", || async {
                get_json(&api).await.is_some()
            })
            .await;
        }

        let command = "id -u; exec sleep 1000";
        let apps = [
            json!({"id": "/users/default", "cmd": command, "cpus": 0.1, "mem": 32, "instances": 1}),
            json!({"id": "/users/daemon", "cmd": command, "cpus": 0.1, "mem": 32, "instances": 1,
                   "user": "daemon"}),
            json!({"id": "/users/ghost", "cmd": command, "cpus": 0.1, "mem": 32, "instances": 1,
                   "user": "plateau-no-such-user"}),
        ];
        for app in &apps {
            let response = client
                .post(format!("http://{marathon}/v2/apps"))
                .json(app)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 201, "{app}");
        }

        // Nobody by default, the app's user when it names one.
        let default = await_some(SLOW, "the default app's output", || {
            app_stdout(&slave, "/users/default")
        })
        .await;
        assert_eq!(default.trim(), uid_of("nobody").to_string());
        let daemon = await_some(SLOW, "the daemon app's output", || {
            app_stdout(&slave, "/users/daemon")
        })
        .await;
        assert_eq!(daemon.trim(), uid_of("daemon").to_string());

        // The API echoes `user` as given.
        let app = |id: &'static str| {
            let url = format!("http://{marathon}/v2/apps{id}?embed=apps.lastTaskFailure");
            async move { get_json(&url).await.map(|v| v["app"].clone()) }
        };
        let shown = app("/users/daemon").await.unwrap();
        assert_eq!(shown["user"], json!("daemon"), "{shown}");
        let shown = app("/users/default").await.unwrap();
        assert!(shown["user"].is_null(), "{shown}");

        // A user the slave does not know: the task fails, saying so.
        let failure: Value = await_some(SLOW, "the ghost app's task failure", || async {
            let failure = app("/users/ghost").await?["lastTaskFailure"].clone();
            (!failure.is_null()).then_some(failure)
        })
        .await;
        assert_eq!(failure["state"], json!("TASK_FAILED"), "{failure}");
        let message = failure["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("user 'plateau-no-such-user' does not exist on this slave"),
            "{failure}"
        );

        // Chronos: the job's runAsUser.
        let job = json!({
            "name": "as-daemon",
            "command": "id -u",
            "schedule": "R1/2099-01-01T00:00:00Z/PT1H",
            "cpus": 0.1, "mem": 32, "disk": 0,
            "runAsUser": "daemon",
        });
        let response = client
            .post(format!("http://{chronos}/scheduler/iso8601"))
            .json(&job)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let response = client
            .put(format!("http://{chronos}/scheduler/job/as-daemon"))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "run now: {}",
            response.status()
        );
        let output = await_some(SLOW, "the Chronos job's output", || async {
            let files = sandbox_stdouts(&slave_work, "as-daemon");
            let text = std::fs::read_to_string(files.first()?).ok()?;
            (!text.is_empty()).then_some(text)
        })
        .await;
        assert_eq!(output.trim(), uid_of("daemon").to_string());
        let jobs = get_json(&format!("http://{chronos}/scheduler/jobs"))
            .await
            .unwrap();
        let shown = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "as-daemon")
            .cloned()
            .unwrap();
        assert_eq!(shown["runAsUser"], json!("daemon"), "{shown}");
    });
    drop(cluster);
}
