//! The HTTP endpoints against a real node and a real `HttpServer` on 127.0.0.1, with the redb
//! registry in a temporary work dir.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::{App, HttpServer};
use plateau_master::messages::{RegisterSlaveMessage, SlaveInfo};
use plateau_master::resources::{Attributes, Resources};
use plateau_master::MasterConfig;
use plateau_runtime::{Node, NodeConfig, Upid};

/// A temporary work dir, removed even when the test fails.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn endpoints_answer_with_mesos_shapes() {
    let dir =
        WorkDir(std::env::temp_dir().join(format!("plateau-master-http-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let work_dir = dir.0.clone();

    actix_rt::System::new().block_on(async move {
        let node = Node::start(NodeConfig::local("127.0.0.1", port, 1)).unwrap();
        let master = plateau_master::start(&node, MasterConfig::default(), &work_dir)
            .await
            .unwrap();
        assert!(work_dir.join("master/registry.redb").exists());
        let slave: Upid = "slave(1)@127.0.0.1:5051".parse().unwrap();
        master.post(
            &slave,
            RegisterSlaveMessage {
                slave: SlaveInfo {
                    hostname: "127.0.0.1".into(),
                    port: 5051,
                    resources: Resources::parse("cpus:2;mem:1024;ports:[31000-31010]").unwrap(),
                    attributes: Attributes::parse("rack:r1").unwrap(),
                },
            },
        );
        let for_server = master.clone();
        let server = HttpServer::new(move || {
            let master = for_server.clone();
            App::new().configure(move |cfg| plateau_master::http::configure(cfg, master))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);

        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        // Poll until the server answers (it starts asynchronously), with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match client.get(format!("{base}/health")).send().await {
                Ok(r) => {
                    assert_eq!(r.status(), 200);
                    assert!(r.text().await.unwrap().is_empty());
                    break;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("server never answered: {e}"),
            }
        }

        let version: serde_json::Value = client
            .get(format!("{base}/version"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(version["version"], "1.11.0");
        assert!(version.get("build_date").is_some());

        for path in ["/master/state", "/state"] {
            let state: serde_json::Value = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(state["version"], "1.11.0");
            assert_eq!(state["pid"], format!("master@127.0.0.1:{port}"));
            assert_eq!(state["hostname"], "127.0.0.1");
            assert!(state["id"].as_str().is_some_and(|id| id.len() == 36));
            let slaves = state["slaves"].as_array().unwrap();
            assert_eq!(slaves.len(), 1, "{state}");
            let s = &slaves[0];
            assert_eq!(s["hostname"], "127.0.0.1");
            assert_eq!(s["resources"]["cpus"], 2.0);
            assert_eq!(s["resources"]["ports"], "[31000-31010]");
            assert_eq!(s["attributes"]["rack"], "r1");
            for field in [
                "id",
                "pid",
                "used_resources",
                "offered_resources",
                "active",
                "registered_time",
            ] {
                assert!(s.get(field).is_some(), "slave field {field}");
            }
            assert!(state["frameworks"].as_array().unwrap().is_empty());
            assert!(state["completed_frameworks"].as_array().is_some());
            assert_eq!(state["unreachable_slaves"], 0);
        }

        let snapshot: serde_json::Value = client
            .get(format!("{base}/metrics/snapshot"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(snapshot["master/slaves_unreachable"], 0.0);
        assert_eq!(snapshot["master/frameworks_active"], 0.0);
        assert_eq!(snapshot["master/tasks_running"], 0.0);
        assert_eq!(snapshot["master/elected"], 1.0);
        for name in [
            "master/slaves_active",
            "master/slaves_connected",
            "master/cpus_total",
            "master/cpus_used",
            "master/mem_total",
            "master/mem_used",
            "master/uptime_secs",
            "master/tasks_staging",
            "master/tasks_finished",
            "master/tasks_failed",
            "master/tasks_killed",
            "master/tasks_lost",
            "master/tasks_unreachable",
            "master/tasks_error",
            "master/frameworks_connected",
        ] {
            assert!(snapshot[name].is_number(), "{name} missing");
        }

        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("master_slaves_active"), "{text}");
        assert!(text.contains("master_cpus_total"), "{text}");

        handle.stop(true).await;
        node.shutdown();
    });
}
