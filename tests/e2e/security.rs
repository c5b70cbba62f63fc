//! The HTTP APIs' security, on the real binary: with `--credentials`, `--acls` and `--https`,
//! every API (master, slave, Marathon, Chronos, balancer admin) answers 401 without or with
//! wrong credentials, 403 to a principal its ACLs deny, 200 to the right one, over HTTPS with
//! the cluster CA; changes and refusals leave audit lines; an open API on a non-loopback
//! address refuses to start unless `--insecure-open-api`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::support::{await_some, free_port, Cluster};
use super::PLATEAU;

const SLOW: Duration = Duration::from_secs(60);

const CREDENTIALS: &str = r#"{"credentials": [
  {"principal": "ops", "secret": "ops-secret"},
  {"principal": "viewer", "secret": "viewer-secret"}
]}"#;

/// `ops` may do everything below (tear down only Chronos' framework); `viewer` nothing (not
/// permissive). Marathon and Chronos
/// (the principals their certificates name) may register with the master, and run tasks as
/// `nobody` only.
const ACLS: &str = r#"{
  "permissive": false,
  "register_frameworks": [{"principals": {"values": ["marathon", "chronos"]}, "roles": {"type": "ANY"}}],
  "run_tasks": [{"principals": {"values": ["marathon", "chronos"]}, "users": {"values": ["nobody"]}}],
  "get_endpoints": [{"principals": {"values": ["ops"]}, "paths": {"type": "ANY"}}],
  "view_apps": [{"principals": {"values": ["ops"]}, "apps": {"type": "ANY"}}],
  "update_apps": [{"principals": {"values": ["ops"]}, "apps": {"values": ["/dev"]}}],
  "view_jobs": [{"principals": {"values": ["ops"]}, "jobs": {"type": "ANY"}}],
  "teardown_frameworks": [{"principals": {"values": ["ops"]}, "framework_principals": {"values": ["chronos"]}}]
}"#;

/// An HTTPS client trusting only the cluster CA: the standby proxies' own
/// (`plateau_security::client`; reqwest here stays without TLS: its rustls feature would need
/// a process-wide crypto provider in every test).
#[derive(Clone)]
struct Https(Arc<rustls::ClientConfig>);

impl Https {
    fn new(tls_dir: &Path) -> Https {
        Https(Arc::new(
            plateau_security::tls::https_client_config(tls_dir).unwrap(),
        ))
    }

    /// The status and `WWW-Authenticate` of `method https://addr/path` sent with `auth`,
    /// `None` when the server cannot be reached or the TLS handshake fails.
    async fn send(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        auth: Option<(&str, &str)>,
    ) -> Option<(u16, Option<String>)> {
        let (status, challenge, _) = self.exchange(method, addr, path, auth).await?;
        Some((status, challenge))
    }

    /// The JSON body of `GET https://addr/path` as `auth`, if it answers 200.
    async fn get_json(
        &self,
        addr: &str,
        path: &str,
        auth: Option<(&str, &str)>,
    ) -> Option<serde_json::Value> {
        match self.exchange("GET", addr, path, auth).await? {
            (200, _, body) => serde_json::from_slice(&body).ok(),
            _ => None,
        }
    }

    /// Status, `WWW-Authenticate` and body.
    async fn exchange(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        auth: Option<(&str, &str)>,
    ) -> Option<(u16, Option<String>, Vec<u8>)> {
        use plateau_security::client::{send, Limits};
        let headers: Vec<(String, Vec<u8>)> = auth
            .map(|(principal, secret)| {
                let value = plateau_security::basic_header(principal, secret);
                ("authorization".to_string(), value.into_bytes())
            })
            .into_iter()
            .collect();
        let limits = Limits {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            body_bytes_max: 16 * 1024 * 1024,
        };
        let answer = send(
            self.0.clone(),
            addr,
            method,
            path,
            &headers,
            Default::default(),
            limits,
        )
        .await
        .ok()?;
        let challenge = answer
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, value)| String::from_utf8_lossy(value).trim().to_string());
        Some((answer.status, challenge, answer.body.to_vec()))
    }
}

/// `text` without terminal colour sequences (the logs are coloured).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The four answers every guarded endpoint must give.
async fn check_guarded(client: &Https, addr: &str, path: &str) {
    let what = format!("{addr}{path}");
    let (code, challenge) = await_some(SLOW, &format!("{what} answers"), || {
        client.send("GET", addr, path, None)
    })
    .await;
    assert_eq!(code, 401, "{what} without credentials");
    assert_eq!(
        challenge.as_deref(),
        Some("Basic realm=\"plateau\""),
        "{what}"
    );
    let wrong = client.send("GET", addr, path, Some(("ops", "wrong"))).await;
    assert_eq!(wrong.unwrap().0, 401, "{what} with a wrong secret");
    let viewer = Some(("viewer", "viewer-secret"));
    let denied = client.send("GET", addr, path, viewer).await;
    assert_eq!(
        denied.unwrap().0,
        403,
        "{what} for a principal the ACLs deny"
    );
    // The right principal: 200 once the component is ready to answer.
    await_some(SLOW, &format!("{what} answers 200 to ops"), || async {
        let ops = Some(("ops", "ops-secret"));
        let (code, _) = client.send("GET", addr, path, ops).await?;
        (code == 200).then_some(())
    })
    .await;
}

#[test]
fn every_api_answers_401_403_and_200_by_principal_over_https() {
    let mut cluster = Cluster::new("security");
    let dir = cluster.dir.clone();
    let tls = cluster.tls();
    let tls_s = tls.to_str().unwrap().to_string();
    std::fs::write(dir.join("credentials.json"), CREDENTIALS).unwrap();
    std::fs::write(dir.join("acls.json"), ACLS).unwrap();
    let creds = dir.join("credentials.json").to_str().unwrap().to_string();
    let acls = dir.join("acls.json").to_str().unwrap().to_string();
    let secure = ["--credentials", &creds, "--acls", &acls, "--https"];
    let at = |name: &str| {
        let port = free_port("127.0.0.1");
        (format!("127.0.0.1:{port}"), dir.join(name))
    };
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(secure.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let spawn = |cluster: &mut Cluster, name: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.spawn(name, &args);
    };

    let (master, master_work) = at("master");
    spawn(
        &mut cluster,
        "master",
        with(&[
            "master",
            "--listen",
            &master,
            "--work-dir",
            master_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
        ]),
    );
    let (slave, slave_work) = at("slave");
    cluster.slave_dirs.push(slave_work.clone());
    spawn(
        &mut cluster,
        "slave",
        with(&[
            "slave",
            "--master",
            &master,
            "--listen",
            &slave,
            "--work-dir",
            slave_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
            "--resources",
            "cpus:1;mem:256",
        ]),
    );
    let (marathon, marathon_work) = at("marathon");
    spawn(
        &mut cluster,
        "marathon",
        with(&[
            "marathon",
            "--master",
            &master,
            "--listen",
            &marathon,
            "--work-dir",
            marathon_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
        ]),
    );
    let (chronos, chronos_work) = at("chronos");
    spawn(
        &mut cluster,
        "chronos",
        with(&[
            "chronos",
            "--master",
            &master,
            "--listen",
            &chronos,
            "--work-dir",
            chronos_work.to_str().unwrap(),
            "--tls-dir",
            &tls_s,
        ]),
    );
    let (stats, _) = at("balancer");
    spawn(
        &mut cluster,
        "balancer",
        with(&[
            "balancer",
            "--marathon",
            &marathon,
            "--listen-ip",
            "127.0.0.1",
            "--stats",
            &stats,
            "--tls-dir",
            &tls_s,
        ]),
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let client = Https::new(&tls);
            check_guarded(&client, &master, "/master/state").await;
            check_guarded(&client, &master, "/metrics").await;
            check_guarded(&client, &slave, "/state").await;
            check_guarded(&client, &marathon, "/v2/apps").await;
            check_guarded(&client, &chronos, "/scheduler/jobs").await;
            check_guarded(&client, &stats, "/stats").await;

            // Health probes stay open.
            for (addr, path) in [
                (&master, "/health"),
                (&slave, "/health"),
                (&marathon, "/ping"),
                (&chronos, "/ping"),
                (&stats, "/_health"),
            ] {
                let (code, _) = client.send("GET", addr, path, None).await.unwrap();
                assert_eq!(code, 200, "{addr}{path} without credentials");
            }

            // A change outside what the ACLs give: 403, whether or not the app exists; one
            // inside: served (the app does not exist: 404).
            let ops = Some(("ops", "ops-secret"));
            let delete = |path, auth| client.send("DELETE", &marathon, path, auth);
            assert_eq!(delete("/v2/apps/prod/web", ops).await.unwrap().0, 403);
            assert_eq!(delete("/v2/apps/dev/web", ops).await.unwrap().0, 404);
            assert_eq!(delete("/v2/apps/dev/web", None).await.unwrap().0, 401);

            // Tearing a framework down: the ACLs decide on the framework's principal, and
            // an unknown id is refused like a framework the operator may not touch.
            let ids = await_some(SLOW, "Marathon and Chronos registered", || async {
                let state = client.get_json(&master, "/master/state", ops).await?;
                let id_of = |name: &str| {
                    state["frameworks"].as_array()?.iter().find_map(|f| {
                        (f["name"] == name).then(|| f["id"].as_str().map(str::to_string))?
                    })
                };
                Some((id_of("marathon")?, id_of("chronos")?))
            })
            .await;
            let (client_ref, master_ref) = (&client, master.as_str());
            let teardown = move |id: &str, auth| {
                let path = format!("/master/teardown?frameworkId={id}");
                async move {
                    client_ref
                        .send("POST", master_ref, &path, auth)
                        .await
                        .unwrap()
                        .0
                }
            };
            assert_eq!(teardown(&ids.1, None).await, 401);
            let viewer = Some(("viewer", "viewer-secret"));
            assert_eq!(teardown(&ids.1, viewer).await, 403);
            assert_eq!(
                teardown(&ids.0, ops).await,
                403,
                "ops may not touch marathon"
            );
            assert_eq!(
                teardown("no-such-id", ops).await,
                403,
                "unknown: refused alike"
            );
            assert_eq!(teardown(&ids.1, ops).await, 200);
            let state = client
                .get_json(&master, "/master/state", ops)
                .await
                .unwrap();
            let active: Vec<&str> = state["frameworks"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["id"].as_str())
                .collect();
            assert!(!active.contains(&ids.1.as_str()), "{active:?}");
            assert!(active.contains(&ids.0.as_str()), "{active:?}");

            // The operator's CLI over HTTPS with the cluster CA: the right principal is
            // served, a denied one gets exit code 4 and the reason.
            let config = dir.join("cli-config");
            let cli = |args: &[&str]| super::cli::cli(&config, args);
            let ca = tls.join("ca.pem");
            for (name, principal, secret) in [
                ("ops", "ops", "ops-secret"),
                ("viewer", "viewer", "viewer-secret"),
            ] {
                let added = cli(&[
                    "context",
                    "add",
                    name,
                    "--master",
                    &master,
                    "--marathon",
                    &marathon,
                    "--chronos",
                    &chronos,
                    "--ca",
                    ca.to_str().unwrap(),
                    "--principal",
                    principal,
                    "--secret",
                    secret,
                ]);
                added.ok();
            }
            let status = cli(&["cluster", "status", "--json", "--context", "ops"])
                .ok()
                .json();
            assert!(status.to_string().contains("marathon"), "{status}");
            let denied = cli(&["app", "list", "--context", "viewer"]);
            assert_eq!(denied.code, 4, "{}", denied.stderr);
            assert!(denied.stderr.contains("403"), "{}", denied.stderr);

            // Plain HTTP on an HTTPS port is not served.
            let plain = reqwest::get(format!("http://{master}/health")).await;
            assert!(!plain.is_ok_and(|r| r.status().is_success()));
        })
    }));
    if let Err(panic) = result {
        for name in ["master", "slave", "marathon", "chronos", "balancer"] {
            eprintln!("--- {name} ---\n{}", cluster.log(name));
        }
        std::panic::resume_unwind(panic);
    }

    // The audit log: the refused and the allowed change, and the unauthenticated one.
    let log = strip_ansi(&cluster.log("marathon"));
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" audit:") && l.contains("method=\"DELETE\""))
        .collect();
    let has = |principal: &str, path: &str, decision: &str, status: &str| {
        audit.iter().any(|l| {
            l.contains(&format!("principal=\"{principal}\""))
                && l.contains(&format!("path={path}"))
                && l.contains(&format!("decision=\"{decision}\""))
                && l.contains(&format!("status={status}"))
        })
    };
    assert!(
        has("ops", "/v2/apps/prod/web", "denied", "403"),
        "audit lines: {audit:#?}"
    );
    assert!(
        has("ops", "/v2/apps/dev/web", "allowed", "404"),
        "audit lines: {audit:#?}"
    );
    assert!(
        has("-", "/v2/apps/dev/web", "unauthenticated", "401"),
        "audit lines: {audit:#?}"
    );
}

#[test]
fn an_open_api_on_a_network_address_refuses_to_start_unless_asked() {
    let mut cluster = Cluster::new("security-open");
    let dir = cluster.dir.clone();
    let tls = cluster.tls();
    let tls_s = tls.to_str().unwrap();
    let port = free_port("127.0.0.1");
    let wildcard = format!("0.0.0.0:{port}");
    let work = dir.join("work");
    let work_s = work.to_str().unwrap();
    let master = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    // Each component, on a wildcard address without credentials: refused before it binds.
    let refused: [(&str, Vec<&str>); 5] = [
        (
            "master",
            vec![
                "master",
                "--listen",
                &wildcard,
                "--hostname",
                "127.0.0.1",
                "--work-dir",
                work_s,
                "--tls-dir",
                tls_s,
            ],
        ),
        (
            "slave",
            vec![
                "slave",
                "--master",
                &master,
                "--listen",
                &wildcard,
                "--hostname",
                "127.0.0.1",
                "--work-dir",
                work_s,
                "--tls-dir",
                tls_s,
                "--resources",
                "cpus:1;mem:64",
            ],
        ),
        (
            "marathon",
            vec![
                "marathon",
                "--master",
                &master,
                "--listen",
                &wildcard,
                "--hostname",
                "127.0.0.1",
                "--work-dir",
                work_s,
                "--tls-dir",
                tls_s,
            ],
        ),
        (
            "chronos",
            vec![
                "chronos",
                "--master",
                &master,
                "--listen",
                &wildcard,
                "--hostname",
                "127.0.0.1",
                "--work-dir",
                work_s,
                "--tls-dir",
                tls_s,
            ],
        ),
        (
            "balancer",
            vec![
                "balancer",
                "--marathon",
                &master,
                "--stats",
                &wildcard,
                "--hostname",
                "127.0.0.1",
                "--tls-dir",
                tls_s,
            ],
        ),
    ];
    for (component, args) in &refused {
        let out = Command::new(PLATEAU).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{component} started open on {wildcard}: {stderr}"
        );
        assert!(
            stderr.contains("non-loopback")
                && stderr.contains("--credentials")
                && stderr.contains("--insecure-open-api"),
            "{component}: {stderr}"
        );
    }
    // With --insecure-open-api it starts, open.
    cluster.spawn(
        "master",
        &[
            "master",
            "--listen",
            &wildcard,
            "--hostname",
            "127.0.0.1",
            "--work-dir",
            work_s,
            "--tls-dir",
            tls_s,
            "--insecure-open-api",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        await_some(SLOW, "the open master answers /master/state", || async {
            let r = reqwest::get(format!("http://127.0.0.1:{port}/master/state"))
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    });
}

/// Two Marathons and two Chronos over HTTPS, with credentials, on three masters: whichever
/// instance is asked answers, the standby by proxying to its leader over HTTPS (with the
/// caller's credentials, which the leader checks again).
#[test]
fn standbys_proxy_to_an_https_leader() {
    let mut cluster = Cluster::new("security-ha");
    let dir = cluster.dir.clone();
    let tls = cluster.tls();
    let tls_s = tls.to_str().unwrap().to_string();
    std::fs::write(dir.join("credentials.json"), CREDENTIALS).unwrap();
    let creds = dir.join("credentials.json").to_str().unwrap().to_string();
    let masters: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port("127.0.0.1")))
        .collect();
    for i in 0..masters.len() {
        cluster.spawn_master(i, &masters);
    }
    let group = masters.join(",");
    let mut instances: Vec<(String, &str)> = Vec::new();
    for (kind, path) in [("marathon", "/v2/apps"), ("chronos", "/scheduler/jobs")] {
        for i in 0..2 {
            let addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
            let name = format!("{kind}-{i}");
            let work = dir.join(&name);
            // On a group of masters Marathon runs as leader + standbys, Chronos with
            // replicated state.
            let args = [
                kind,
                "--master",
                &group,
                "--listen",
                &addr,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                &tls_s,
                "--credentials",
                &creds,
                "--https",
            ];
            cluster.spawn(&name, &args);
            instances.push((addr, path));
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let client = Https::new(&tls);
            let ops = Some(("ops", "ops-secret"));
            for (addr, path) in &instances {
                // Only the leader serves: a standby answers only by proxying over HTTPS.
                await_some(
                    SLOW,
                    &format!("{addr}{path} answers 200 to ops"),
                    || async {
                        let (code, _) = client.send("GET", addr, path, ops).await?;
                        (code == 200).then_some(())
                    },
                )
                .await;
                let (code, challenge) = client.send("GET", addr, path, None).await.unwrap();
                assert_eq!(code, 401, "{addr}{path} without credentials");
                assert!(challenge.is_some());
            }
        })
    }));
    if let Err(panic) = result {
        for name in ["marathon-0", "marathon-1", "chronos-0", "chronos-1"] {
            eprintln!("--- {name} ---\n{}", cluster.log(name));
        }
        std::panic::resume_unwind(panic);
    }
}
