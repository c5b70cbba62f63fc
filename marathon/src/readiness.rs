//! Readiness probes: the side effect behind an app's `readinessChecks` during deployments.
//!
//! As in Marathon, readiness checks are executed by Marathon itself (they only run while a
//! deployment waits for new tasks, so they do not need to scale with the cluster the way health
//! checks do, which the slaves execute). The scheduler decides *when* a task is probed; a
//! [`ReadinessProber`] carries one probe out and posts the [`ReadinessResult`] into the
//! scheduler's mailbox. Two implementations:
//! - [`HttpReadinessProber`]: HTTP GETs on a few worker threads, started on first use;
//! - [`ScriptedReadiness`]: answers at once from a shared script of status codes (tests,
//!   simulation: no threads, no sockets, deterministic).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plateau_master::ids::TaskId;
use plateau_runtime::{Mailbox, Message};
use serde::{Deserialize, Serialize};

use crate::limits;

/// One readiness probe to carry out: `GET http://host:port/path`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessRequest {
    /// The task.
    pub task_id: TaskId,
    /// The probe's id, echoed in the result (a late answer to an older probe is ignored).
    pub probe_id: u64,
    /// The slave's host name.
    pub host: String,
    /// The task's host port named by the check's `portName`.
    pub port: u16,
    /// Request path.
    pub path: String,
    /// How long the probe may take.
    pub timeout: Duration,
}

/// What the task answered (Marathon's `readinessCheckResults[].lastResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessResponse {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type` header (empty when absent).
    pub content_type: String,
    /// The body, at most [`limits::READINESS_BODY_BYTES_MAX`] bytes, lossily decoded as UTF-8.
    pub body: String,
}

/// The outcome of one probe, posted into the scheduler's mailbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadinessResult {
    /// The task.
    pub task_id: TaskId,
    /// The probe's id.
    pub probe_id: u64,
    /// The response, or why there was none (connection refused, timeout, garbage).
    pub outcome: Result<ReadinessResponse, String>,
}

impl Message for ReadinessResult {
    const NAME: &'static str = "plateau.marathon.ReadinessResult";
}

/// Carries out readiness probes; each result is posted to `reply`.
pub trait ReadinessProber: Send {
    /// Starts a probe. Returns at once.
    fn probe(&mut self, request: ReadinessRequest, reply: Mailbox);
}

// ---- the real prober ----------------------------------------------------------------------

type Job = (ReadinessRequest, Mailbox);

/// HTTP probes on [`limits::READINESS_PROBER_THREADS`] worker threads, started by the first
/// probe (a Marathon whose apps have no readiness checks starts none). A probe that cannot be
/// queued (more than [`limits::READINESS_PROBES_QUEUED_MAX`] waiting) fails at once.
#[derive(Default)]
pub struct HttpReadinessProber {
    queue: Option<SyncSender<Job>>,
}

impl HttpReadinessProber {
    /// A prober; its threads start with the first probe.
    pub fn new() -> Self {
        HttpReadinessProber::default()
    }

    fn queue(&mut self) -> Result<&SyncSender<Job>, String> {
        if self.queue.is_none() {
            let (queue, receiver) = mpsc::sync_channel::<Job>(limits::READINESS_PROBES_QUEUED_MAX);
            let receiver = Arc::new(Mutex::new(receiver));
            for i in 0..limits::READINESS_PROBER_THREADS {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("readiness-prober-{i}"))
                    .spawn(move || worker(&receiver))
                    .map_err(|e| format!("cannot start a readiness prober thread: {e}"))?;
            }
            self.queue = Some(queue);
        }
        Ok(self.queue.as_ref().expect("set above"))
    }
}

fn worker(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((request, reply)) = next else {
            return;
        };
        let outcome = http_get(&request);
        reply.post(ReadinessResult {
            task_id: request.task_id,
            probe_id: request.probe_id,
            outcome,
        });
    }
}

impl ReadinessProber for HttpReadinessProber {
    fn probe(&mut self, request: ReadinessRequest, reply: Mailbox) {
        let failed = |request: ReadinessRequest, reply: &Mailbox, why: String| {
            reply.post(ReadinessResult {
                task_id: request.task_id,
                probe_id: request.probe_id,
                outcome: Err(why),
            })
        };
        match self.queue() {
            Ok(queue) => {
                if let Err(e) = queue.try_send((request, reply)) {
                    let ((request, reply), why) = match e {
                        TrySendError::Full(job) => (job, "too many readiness probes queued"),
                        TrySendError::Disconnected(job) => (job, "the readiness prober stopped"),
                    };
                    failed(request, &reply, why.to_string());
                }
            }
            Err(why) => failed(request, &reply, why),
        }
    }
}

/// Real-only clock: probe deadlines on the prober's threads.
fn monotonic_now() -> Instant {
    Instant::now() // determinism-ok: real HTTP probes only, never in the simulator
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(monotonic_now());
    if left.is_zero() {
        Err("timed out".to_string())
    } else {
        Ok(left)
    }
}

/// One `GET` with `Connection: close`: the status, `Content-Type` and (bounded) body.
pub fn http_get(request: &ReadinessRequest) -> Result<ReadinessResponse, String> {
    let deadline = monotonic_now() + request.timeout.max(Duration::from_millis(1));
    let (host, port) = (request.host.as_str(), request.port);
    let path = if request.path.starts_with('/') {
        request.path.clone()
    } else {
        format!("/{}", request.path)
    };
    if path.contains(['\r', '\n', ' ']) {
        return Err(format!("invalid path {path:?}"));
    }
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut stream = None;
    let mut last = format!("no address for {host}");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: plateau-readiness-check\r\n\r\n"
    );
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let limit = limits::READINESS_HEAD_BYTES_MAX + limits::READINESS_BODY_BYTES_MAX;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| e.to_string())?;
        let n = stream
            .read(&mut buffer)
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..n]);
        if response.len() >= limit || complete(&response) {
            break;
        }
    }
    parse_response(&response)
}

/// True once the head is in and a `Content-Length` body is complete (otherwise the server
/// closing the connection ends the response).
fn complete(response: &[u8]) -> bool {
    let Some(end) = find_head_end(response) else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]);
    header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| response.len() - end >= len)
}

fn find_head_end(response: &[u8]) -> Option<usize> {
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Parses an HTTP/1.x response: status line, `Content-Type`, body (cut to the limit).
pub fn parse_response(response: &[u8]) -> Result<ReadinessResponse, String> {
    let end = find_head_end(response)
        .filter(|end| *end <= limits::READINESS_HEAD_BYTES_MAX)
        .ok_or_else(|| "no complete HTTP response head".to_string())?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s));
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(format!("not an HTTP response: {status_line:?}"));
    };
    let mut body = &response[end..];
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = &body[..len.min(body.len())];
    }
    body = &body[..body.len().min(limits::READINESS_BODY_BYTES_MAX)];
    Ok(ReadinessResponse {
        status,
        content_type: header(&head, "content-type")
            .unwrap_or_default()
            .to_string(),
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

// ---- the scripted prober ------------------------------------------------------------------

/// Status codes a [`ScriptedReadiness`] answers with, by task id; tasks not in the script
/// answer [`ScriptedReadiness::new`]'s default. Shared between clones: a test changes them
/// while Marathon runs.
#[derive(Debug, Clone)]
pub struct ScriptedReadiness {
    default: u16,
    script: Arc<Mutex<BTreeMap<String, u16>>>,
    probes: Arc<Mutex<u64>>,
}

impl ScriptedReadiness {
    /// Every task answers `default` unless scripted otherwise.
    pub fn new(default: u16) -> Self {
        ScriptedReadiness {
            default,
            script: Arc::default(),
            probes: Arc::default(),
        }
    }

    /// From now on, tasks whose id starts with `task_prefix` answer `status`.
    pub fn set(&self, task_prefix: &str, status: u16) {
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_prefix.to_string(), status);
    }

    /// Probes carried out so far.
    pub fn probes(&self) -> u64 {
        *self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status_of(&self, task_id: &str) -> u16 {
        let script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        // The longest matching prefix wins.
        script
            .iter()
            .filter(|(prefix, _)| task_id.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(self.default, |(_, status)| *status)
    }
}

impl ReadinessProber for ScriptedReadiness {
    fn probe(&mut self, request: ReadinessRequest, reply: Mailbox) {
        *self.probes.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let status = self.status_of(request.task_id.as_str());
        reply.post(ReadinessResult {
            task_id: request.task_id,
            probe_id: request.probe_id,
            outcome: Ok(ReadinessResponse {
                status,
                content_type: "text/plain".to_string(),
                body: format!("scripted {status}"),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_content_type_and_body() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}trailing",
        )
        .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.content_type, "application/json");
        assert_eq!(r.body, "{\"a\":1}");
    }

    #[test]
    fn refuses_garbage_and_truncated_heads() {
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: x").is_err());
        assert!(parse_response(b"HTTP/1.1 999 Nope\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0 200\r\n\r\n").is_err());
    }

    #[test]
    fn body_is_bounded() {
        let mut raw = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(
            b'x',
            limits::READINESS_BODY_BYTES_MAX + 10,
        ));
        let r = parse_response(&raw).unwrap();
        assert_eq!(r.body.len(), limits::READINESS_BODY_BYTES_MAX);
    }

    #[test]
    fn real_get_against_a_local_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            conn.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nwarm!")
                .unwrap();
            request
        });
        let r = http_get(&ReadinessRequest {
            task_id: TaskId::new("t"),
            probe_id: 1,
            host: "127.0.0.1".into(),
            port,
            path: "ready".into(),
            timeout: Duration::from_secs(10),
        })
        .unwrap();
        assert_eq!((r.status, r.body.as_str()), (202, "warm!"));
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /ready HTTP/1.1\r\n"));
    }

    #[test]
    fn refused_connection_is_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = http_get(&ReadinessRequest {
            task_id: TaskId::new("t"),
            probe_id: 1,
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
            timeout: Duration::from_secs(5),
        })
        .unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }

    #[test]
    fn scripted_longest_prefix_wins() {
        let s = ScriptedReadiness::new(200);
        s.set("app_a.", 503);
        s.set("app_a.x", 204);
        assert_eq!(s.status_of("app_b.1"), 200);
        assert_eq!(s.status_of("app_a.1"), 503);
        assert_eq!(s.status_of("app_a.x1"), 204);
    }
}
