//! The REST API on a real actix-web server (127.0.0.1, a free port) against a Marathon hosted
//! on a real node without transport: no master, so deployments never finish, which is what the
//! 409 checks need. And a standby of leader + standbys forwarding the API to a leader.

use std::time::{Duration, Instant};

use plateau_marathon::http::{start, MarathonServer, StartConfig};
use plateau_marathon::scheduler::MarathonConfig;
use plateau_runtime::{Node, NodeConfig};
use serde_json::{json, Value};

fn config(work_dir: Option<std::path::PathBuf>) -> StartConfig {
    StartConfig {
        marathon: MarathonConfig::default(),
        masters: plateau_sdk::Masters::parse("127.0.0.1:5050").unwrap(),
        work_dir,
        http_listen: "127.0.0.1:0".parse().unwrap(),
        http_workers: 1,
        process_name: "marathon".into(),
        security: Default::default(),
    }
}

/// Reads the SSE body until a frame of `event_type` arrives; returns its data JSON.
async fn next_event(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    event_type: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let marker = format!("event: {event_type}\r\ndata: ");
        if let Some(start) = buffer.find(&marker) {
            let rest = &buffer[start + marker.len()..];
            if let Some(end) = rest.find("\r\n\r\n") {
                let data: Value = serde_json::from_str(&rest[..end]).unwrap();
                let consumed = start + marker.len() + end + 4;
                buffer.drain(..consumed);
                return data;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {event_type} event; got {buffer:?}");
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("event stream ended; got {buffer:?}"),
            Ok(Err(e)) => panic!("event stream failed: {e}"),
            Err(_) => panic!("no {event_type} event within 20 s; got {buffer:?}"),
        }
    }
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(server: &MarathonServer) -> Self {
        Api {
            base: format!("http://{}", server.addr),
            client: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, _, v) = self.send(reqwest::Method::GET, path, None).await;
        (s, v)
    }
}

#[actix_rt::test]
async fn rest_api_with_marathon_status_codes_and_event_stream() {
    let node = Node::start(NodeConfig::local("127.0.0.1", 18080, 1)).unwrap();
    let server = start(&node, config(None)).unwrap();
    let api = Api::new(&server);

    let (status, body) = api.get("/ping").await;
    assert_eq!((status, body), (200, json!("pong")));

    // Subscribe first: only api_post_event (and the attach notice).
    let mut events = api
        .client
        .get(format!(
            "{}/v2/events?event_type=api_post_event&event_type=event_stream_attached",
            api.base
        ))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut buffer = String::new();
    let attached = next_event(&mut events, &mut buffer, "event_stream_attached").await;
    assert_eq!(attached["eventType"], "event_stream_attached");
    // Without the Accept header: 405.
    let (status, _) = api.get("/v2/events").await;
    assert_eq!(status, 405);

    // Create.
    let app = json!({"id": "/grp/web", "cmd": "python3 -m http.server $PORT0", "instances": 2, "mem": 64});
    let (status, headers, body) = api
        .send(reqwest::Method::POST, "/v2/apps", Some(app.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["location"], "/v2/apps/grp/web");
    let deployment = headers["marathon-deployment-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(body["id"], "/grp/web");
    assert_eq!(body["tasksRunning"], 0);
    assert_eq!(body["deployments"][0]["id"], deployment.as_str());
    assert!(body["version"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["portDefinitions"][0]["port"], 10000);

    let posted = next_event(&mut events, &mut buffer, "api_post_event").await;
    assert_eq!(posted["eventType"], "api_post_event");
    assert_eq!(posted["appDefinition"]["id"], "/grp/web");
    assert_eq!(posted["uri"], "/v2/apps");

    // Errors, Marathon's way.
    let (status, _, body) = api
        .send(reqwest::Method::POST, "/v2/apps", Some(app.clone()))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["message"], "An app with id [/grp/web] already exists.");
    let (status, _, body) = api
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(json!({"id": "bad", "cmd": "x y", "cpus": "lots"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["path"], "/cpus");
    let (status, _, body) = api
        .send(
            reqwest::Method::POST,
            "/v2/apps",
            Some(json!({"id": "neg", "cmd": "x y", "instances": -1})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["details"][0]["path"], "/instances");
    let resp = api
        .client
        .post(format!("{}/v2/apps", api.base))
        .header("content-type", "application/json")
        .body("{\"id\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    // The create deployment cannot finish without a master: a change is locked.
    let (status, _, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/grp/web",
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["deployments"][0]["id"], deployment.as_str());
    let (status, headers, body) = api
        .send(
            reqwest::Method::PUT,
            "/v2/apps/grp/web?force=TRUE",
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let scale = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(headers["marathon-deployment-id"], scale.as_str());
    assert!(body["version"].as_str().unwrap().ends_with('Z'));

    // Reads.
    let (status, body) = api.get("/v2/apps/grp/web").await;
    assert_eq!(status, 200);
    assert_eq!(body["app"]["instances"], 3);
    assert_eq!(body["app"]["tasks"], json!([]));
    assert_eq!(body["app"]["deployments"], json!([{"id": scale}]));
    let (_, body) = api.get("/v2/apps?embed=apps.tasks&id=WEB").await;
    assert_eq!(body["apps"].as_array().unwrap().len(), 1);
    assert!(body["apps"][0]["tasks"].is_array());
    let (_, body) = api.get("/v2/apps/grp/*").await;
    assert_eq!(body["*"][0]["id"], "/grp/web");
    let (status, body) = api.get("/v2/apps/grp/web/versions").await;
    assert_eq!(status, 200);
    let versions = body["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    let (status, body) = api
        .get(&format!(
            "/v2/apps/grp/web/versions/{}",
            versions[1].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["instances"], 2);
    let (status, body) = api.get("/v2/apps/grp/web/tasks").await;
    assert_eq!((status, body), (200, json!({"tasks": []})));
    let (status, body) = api.get("/v2/apps/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "App '/nope' does not exist");
    let (status, body) = api.get("/v2/deployments").await;
    assert_eq!(status, 200);
    assert_eq!(body[0]["id"], scale.as_str());
    assert_eq!(
        body[0]["steps"][0]["actions"][0]["action"],
        "ScaleApplication"
    );
    assert_eq!(body[0]["currentStep"], 1);
    let (_, body) = api.get("/v2/queue").await;
    assert_eq!(body["queue"][0]["count"], 3);
    assert_eq!(body["queue"][0]["delay"]["overdue"], true);
    assert!(body["queue"][0].get("role").is_none());
    let (_, body) = api.get("/v2/tasks?status=running").await;
    assert_eq!(body, json!({"tasks": []}));
    let (_, body) = api.get("/v2/info").await;
    assert_eq!(body["name"], "marathon");
    assert!(body["marathon_config"].is_object());
    assert_eq!(body["marathon_config"]["decline_offer_duration"], 120000);
    assert!(body["zookeeper_config"].is_object());
    assert_eq!(body["http_config"]["http_port"], 8080);
    let (status, body) = api.get("/v2/leader").await;
    assert_eq!((status, body), (200, json!({"leader": "localhost:8080"})));
    let (_, body) = api.get("/metrics").await;
    assert_eq!(body["gauges"]["marathon.apps.active.gauge"]["value"], 1.0);
    let (status, body) = api.get("/v2/nothing-here").await;
    assert_eq!((status, body), (500, json!({"message": "URI not found"})));

    // Scale and wipe together: 400. Unknown task: 404.
    let (status, _, body) = api
        .send(
            reqwest::Method::DELETE,
            "/v2/apps/grp/web/tasks?scale=true&wipe=true",
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "You cannot use scale and wipe at the same time."
    );
    let (status, _, _) = api
        .send(
            reqwest::Method::DELETE,
            "/v2/apps/grp/web/tasks/grp_web.nope",
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Cancel the deployment without rollback: 202, empty body.
    let (status, _, body) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v2/deployments/{scale}?force=true"),
            None,
        )
        .await;
    assert_eq!((status, body), (202, Value::Null));
    let (status, _, _) = api
        .send(
            reqwest::Method::DELETE,
            &format!("/v2/deployments/{scale}"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Restart, then delete (force defaults to true for DELETE).
    let (status, _, body) = api
        .send(reqwest::Method::POST, "/v2/apps/grp/web/restart", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = api
        .send(reqwest::Method::DELETE, "/v2/apps/grp/web", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api.get("/v2/apps/grp/web").await;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .send(reqwest::Method::DELETE, "/v2/queue/grp/web/delay", None)
        .await;
    assert_eq!(status, 404);

    // The event stream holds a connection open: close it so that the graceful stop is quick.
    drop(events);
    server.http.stop(true).await;
    node.shutdown();
}

#[actix_rt::test]
async fn state_survives_a_restart_in_redb() {
    let dir = std::env::temp_dir().join(format!("plateau-marathon-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let version = {
        let node = Node::start(NodeConfig::local("127.0.0.1", 18081, 1)).unwrap();
        let server = start(&node, config(Some(dir.clone()))).unwrap();
        let api = Api::new(&server);
        let (status, _, body) = api
            .send(
                reqwest::Method::POST,
                "/v2/apps",
                Some(json!({"id": "kept", "cmd": "sleep 100"})),
            )
            .await;
        assert_eq!(status, 201);
        server.http.stop(true).await;
        node.shutdown();
        body["version"].clone()
    };
    // Give the first node's process time to finish and release the database file.
    let deadline = Instant::now() + Duration::from_secs(20);
    let server = loop {
        let node = Node::start(NodeConfig::local("127.0.0.1", 18082, 1)).unwrap();
        match start(&node, config(Some(dir.clone()))) {
            Ok(server) => break server,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot reopen the store: {e}");
                node.shutdown();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let api = Api::new(&server);
    let (status, body) = api.get("/v2/apps/kept").await;
    assert_eq!(status, 200);
    assert_eq!(body["app"]["version"], version);
    assert_eq!(body["app"]["deployments"].as_array().unwrap().len(), 1);
    server.http.stop(true).await;
}

/// Leader + standbys, the HTTP side: a standby answers `/ping`, `/v2/leader` and `/v2/info`
/// itself and forwards the rest to the leader (status, headers and body come back), redirects
/// `/v2/events` there, and refuses a request that already went through it. The "leader" here
/// is a Marathon alone on its node; the standby runs with leader election against a master
/// that never answers, and is told where the leader is as its driver would tell it.
#[actix_rt::test]
async fn a_standby_forwards_the_api_to_the_leader() {
    use plateau_marathon::scheduler::with_marathon;

    let node_a = Node::start(NodeConfig::local("127.0.0.1", 18083, 1)).unwrap();
    let leader = start(&node_a, config(None)).unwrap();
    let leader_address = leader.addr.to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node_b = Node::start(NodeConfig::local("127.0.0.1", 18084, 2)).unwrap();
    let mut standby_config = config(None);
    standby_config.marathon.ha = true;
    standby_config.marathon.hostname = "127.0.0.1".into();
    standby_config.marathon.http_port = port;
    standby_config.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    let standby = start(&node_b, standby_config).unwrap();
    let api = Api::new(&standby);
    let leader_api = Api::new(&leader);

    // Nobody leads yet.
    let (status, body) = api.get("/v2/leader").await;
    assert_eq!(
        (status, body),
        (404, json!({"message": "There is no leader"}))
    );
    let told = leader_address.clone();
    standby
        .process
        .call(move |p, ctx| with_marathon(p, ctx, |s, d| s.handle_leader_changed(d, Some(&told))))
        .await
        .unwrap();

    // Answered by the standby itself.
    let (status, body) = api.get("/ping").await;
    assert_eq!((status, body), (200, json!("pong")));
    let (status, body) = api.get("/v2/leader").await;
    assert_eq!((status, body), (200, json!({"leader": leader_address})));
    let (status, info) = api.get("/v2/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["elected"], false);
    assert_eq!(info["leader"], leader_address.as_str());
    assert_eq!(info["marathon_config"]["ha"], true);

    // Forwarded: a create, its headers, an error, a read.
    let app = json!({"id": "/fwd", "cmd": "sleep 100", "instances": 1, "mem": 32});
    let (status, headers, body) = api
        .send(reqwest::Method::POST, "/v2/apps", Some(app.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["location"], "/v2/apps/fwd");
    assert!(headers.contains_key("marathon-deployment-id"));
    assert_eq!(body["id"], "/fwd");
    let (status, body) = leader_api.get("/v2/apps/fwd").await;
    assert_eq!(status, 200, "the leader has it: {body}");
    let (status, _, body) = api
        .send(reqwest::Method::POST, "/v2/apps", Some(app.clone()))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["message"], "An app with id [/fwd] already exists.");
    let (status, body) = api.get("/v2/apps?id=fwd").await;
    assert_eq!(status, 200);
    assert_eq!(body["apps"][0]["id"], "/fwd");
    let (status, body) = api.get("/v2/nothing-here").await;
    assert_eq!((status, body), (500, json!({"message": "URI not found"})));

    // The event stream: a redirect to the leader's.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(format!("{}/v2/events?event_type=api_post_event", api.base))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(
        response.headers()["location"],
        format!("http://{leader_address}/v2/events?event_type=api_post_event").as_str()
    );

    // A request that already went through this standby is a loop.
    let response = api
        .client
        .get(format!("{}/v2/apps", api.base))
        .header("X-Marathon-Via", format!("1.1 127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Detected proxying loop.");

    standby.http.stop(true).await;
    leader.http.stop(true).await;
    node_a.shutdown();
    node_b.shutdown();
}

/// Reads one HTTP request head (no body) from `stream`; false at EOF or on an error.
fn read_request_head(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

fn answer_json(stream: &mut std::net::TcpStream, body: &Value) {
    use std::io::Write;
    let body = body.to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
}

/// A leader killed right after it answered leaves the standby a connection that may not look
/// closed yet. The standby must not send the next request on it (it would be lost, and could
/// not be retried: a 502 in the middle of a failover): each forwarded request opens its own
/// connection, reaching whoever listens at the leader's address now.
///
/// The "leader" is a plain TCP server: it answers the first request and keeps that
/// connection open, dropping it, unanswered, at the first byte sent on it (a dead process);
/// then a new listener at the same address answers every request (the leader restarted).
#[actix_rt::test]
async fn a_standby_never_forwards_on_a_connection_of_an_earlier_leader() {
    use plateau_marathon::scheduler::with_marathon;

    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let leader_address = first.local_addr().unwrap().to_string();
    let (restarted_tx, restarted_rx) = std::sync::mpsc::channel();
    let address = leader_address.clone();
    std::thread::spawn(move || {
        let (mut stale, _) = first.accept().unwrap();
        assert!(read_request_head(&mut stale));
        answer_json(&mut stale, &json!({"apps": [{"id": "/first"}]}));
        drop(first);
        // std sets SO_REUSEADDR: the address can be bound again while `stale` is open.
        let second = std::net::TcpListener::bind(&address).unwrap();
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let _ = std::io::Read::read(&mut stale, &mut byte);
            drop(stale);
        });
        restarted_tx.send(()).unwrap();
        for stream in second.incoming() {
            let Ok(mut stream) = stream else { return };
            while read_request_head(&mut stream) {
                answer_json(&mut stream, &json!({"apps": [{"id": "/second"}]}));
            }
        }
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = Node::start(NodeConfig::local("127.0.0.1", 18085, 2)).unwrap();
    let mut standby_config = config(None);
    standby_config.marathon.ha = true;
    standby_config.marathon.hostname = "127.0.0.1".into();
    standby_config.marathon.http_port = port;
    standby_config.http_listen = format!("127.0.0.1:{port}").parse().unwrap();
    let standby = start(&node, standby_config).unwrap();
    let api = Api::new(&standby);
    let told = leader_address.clone();
    standby
        .process
        .call(move |p, ctx| with_marathon(p, ctx, |s, d| s.handle_leader_changed(d, Some(&told))))
        .await
        .unwrap();

    let (status, body) = api.get("/v2/apps").await;
    assert_eq!(
        (status, &body["apps"][0]["id"]),
        (200, &json!("/first")),
        "{body}"
    );
    restarted_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the fake leader restarted");
    let (status, body) = api.get("/v2/apps").await;
    assert_eq!(
        (status, &body["apps"][0]["id"]),
        (200, &json!("/second")),
        "{body}"
    );

    standby.http.stop(true).await;
    node.shutdown();
}
