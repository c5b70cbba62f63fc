//! Health probes: the side effect behind a task's health check (HTTP, TCP or COMMAND, from
//! `TaskInfo.health_check`), executed by the slave next to the task.
//!
//! The slave's core decides *when* to probe ([`crate::core::HealthState`]); a [`HealthProber`]
//! carries a probe out and reports the [`ProbeResult`] through the callback it was built with
//! (the slave posts it into its own mailbox). Two implementations:
//! - [`ThreadProber`]: real probes on a small pool of worker threads;
//! - [`ScriptedProber`]: answers at once from a shared script of verdicts (tests, simulation).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plateau_master::messages::{CommandInfo, HealthCheckKind};

use crate::limits;

/// One probe to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRequest {
    /// The task.
    pub task_id: String,
    /// The probe's id, echoed in the result.
    pub probe_id: u64,
    /// What to probe.
    pub kind: HealthCheckKind,
    /// The host the task listens on (the slave's hostname).
    pub host: String,
    /// How long the probe may take; past it, it failed.
    pub timeout: Duration,
    /// The task's sandbox (working directory of COMMAND probes).
    pub sandbox: Arc<Path>,
    /// The task's environment (for COMMAND probes).
    pub env: BTreeMap<String, String>,
    /// The task's user: COMMAND probes run as it, as the task does.
    pub user: String,
}

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeResult {
    /// The task.
    pub task_id: String,
    /// The probe's id.
    pub probe_id: u64,
    /// True when the task answered as healthy.
    pub healthy: bool,
    /// What was seen (status code, error).
    pub message: String,
}

/// Called with each probe's result (from a worker thread, or from inside `probe`).
pub type ProbeCallback = Arc<dyn Fn(ProbeResult) + Send + Sync>;

/// Carries out health probes; results arrive through the callback given at construction.
pub trait HealthProber: Send {
    /// Starts a probe. Returns at once.
    fn probe(&mut self, request: ProbeRequest);
}

// ---- the real prober ----------------------------------------------------------------------

/// Real probes on [`limits::HEALTH_PROBER_THREADS`] worker threads. A probe that cannot be
/// queued (more than [`limits::HEALTH_PROBES_QUEUED_MAX`] waiting) fails at once. Dropping the
/// prober lets its workers finish the queued probes and exit.
pub struct ThreadProber {
    queue: SyncSender<ProbeRequest>,
    callback: ProbeCallback,
}

impl ThreadProber {
    /// Starts the worker threads.
    pub fn new(callback: ProbeCallback) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::sync_channel(limits::HEALTH_PROBES_QUEUED_MAX);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..limits::HEALTH_PROBER_THREADS {
            let receiver = Arc::clone(&receiver);
            let callback = Arc::clone(&callback);
            std::thread::Builder::new()
                .name(format!("health-prober-{i}"))
                .spawn(move || worker(&receiver, &callback))?;
        }
        Ok(ThreadProber { queue, callback })
    }
}

fn worker(receiver: &Mutex<Receiver<ProbeRequest>>, callback: &ProbeCallback) {
    loop {
        let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(request) = next else {
            return;
        };
        let (healthy, message) = match run_probe(&request) {
            Ok(message) => (true, message),
            Err(message) => (false, message),
        };
        callback(ProbeResult {
            task_id: request.task_id,
            probe_id: request.probe_id,
            healthy,
            message,
        });
    }
}

impl HealthProber for ThreadProber {
    fn probe(&mut self, request: ProbeRequest) {
        if let Err(e) = self.queue.try_send(request) {
            let (request, why) = match e {
                TrySendError::Full(r) => (r, "too many probes queued"),
                TrySendError::Disconnected(r) => (r, "the prober stopped"),
            };
            (self.callback)(ProbeResult {
                task_id: request.task_id,
                probe_id: request.probe_id,
                healthy: false,
                message: why.to_string(),
            });
        }
    }
}

/// Runs one probe on this thread: Ok(what was seen) when healthy.
pub fn run_probe(request: &ProbeRequest) -> Result<String, String> {
    let deadline =
        crate::containerizer::monotonic_now() + request.timeout.max(Duration::from_millis(1));
    match &request.kind {
        HealthCheckKind::Tcp { port } => {
            connect(&request.host, *port, deadline)?;
            Ok(format!("connected to port {port}"))
        }
        HealthCheckKind::Http { port, path } => http_probe(&request.host, *port, path, deadline),
        HealthCheckKind::Command { command } => command_probe(request, command, deadline),
    }
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(crate::containerizer::monotonic_now());
    if left.is_zero() {
        Err("timed out".to_string())
    } else {
        Ok(left)
    }
}

fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("no address for {host}");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn http_probe(host: &str, port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    let mut stream = connect(host, port, deadline)?;
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if path.contains(['\r', '\n', ' ']) {
        return Err(format!("invalid path {path:?}"));
    }
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nUser-Agent: plateau-health-check\r\n\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send request: {e}"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
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
        head.extend_from_slice(&buffer[..n]);
        if head.windows(2).any(|w| w == b"\r\n")
            || head.len() >= limits::HEALTH_HTTP_RESPONSE_BYTES_MAX
        {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "no HTTP status line in the response".to_string())?;
    if (200..400).contains(&status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(format!("HTTP {status}"))
    }
}

fn command_probe(
    request: &ProbeRequest,
    command: &CommandInfo,
    deadline: Instant,
) -> Result<String, String> {
    let user = crate::user::TaskUser::lookup(&request.user).map_err(|e| e.to_string())?;
    let slave_uid = crate::user::current_uid();
    if slave_uid != 0 && user.uid != slave_uid {
        return Err(format!(
            "the slave runs as uid {slave_uid}, not root: it cannot probe as user '{}'",
            user.name
        ));
    }
    let mut cmd = if command.shell {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(&command.value);
        c
    } else {
        let mut c = Command::new(&command.value);
        c.args(&command.arguments);
        c
    };
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .envs(&request.env)
        .envs(&command.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if request.sandbox.is_dir() {
        cmd.current_dir(&request.sandbox);
    }
    if slave_uid == 0 {
        let groups = user.groups.clone();
        let (uid, gid) = (user.uid, user.gid);
        // SAFETY: the closure only makes async-signal-safe system calls on data prepared
        // before the fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || crate::user::TaskUser::switch_in_child(uid, gid, &groups));
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("start command: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok("command exited 0".into()),
            Ok(Some(status)) => return Err(format!("command {status}")),
            Ok(None) if crate::containerizer::monotonic_now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("command timed out".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("wait for command: {e}")),
        }
    }
}

// ---- the scripted prober ------------------------------------------------------------------

/// The verdicts a [`ScriptedProber`] gives, shared between clones (a test changes them while
/// the slave runs; a restarted simulated slave keeps them).
#[derive(Debug, Clone)]
pub struct ProbeScript {
    inner: Arc<Mutex<ScriptState>>,
}

#[derive(Debug)]
struct ScriptState {
    verdicts: BTreeMap<String, bool>,
    default: bool,
    probes: u64,
}

impl ProbeScript {
    /// Every task is `default` (healthy or not) until [`ProbeScript::set`] says otherwise.
    pub fn new(default: bool) -> Self {
        ProbeScript {
            inner: Arc::new(Mutex::new(ScriptState {
                verdicts: BTreeMap::new(),
                default,
                probes: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScriptState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, probes of `task_id` answer `healthy`.
    pub fn set(&self, task_id: &str, healthy: bool) {
        self.lock().verdicts.insert(task_id.to_string(), healthy);
    }

    /// Probes answered so far.
    pub fn probes(&self) -> u64 {
        self.lock().probes
    }

    fn verdict(&self, task_id: &str) -> bool {
        let mut state = self.lock();
        state.probes += 1;
        state
            .verdicts
            .get(task_id)
            .copied()
            .unwrap_or(state.default)
    }
}

/// A prober that answers every probe at once (from inside [`HealthProber::probe`]) with the
/// verdict of its [`ProbeScript`]. Deterministic.
pub struct ScriptedProber {
    script: ProbeScript,
    callback: ProbeCallback,
}

impl ScriptedProber {
    /// A prober following `script`.
    pub fn new(script: ProbeScript, callback: ProbeCallback) -> Self {
        ScriptedProber { script, callback }
    }
}

impl HealthProber for ScriptedProber {
    fn probe(&mut self, request: ProbeRequest) {
        let healthy = self.script.verdict(&request.task_id);
        (self.callback)(ProbeResult {
            task_id: request.task_id,
            probe_id: request.probe_id,
            healthy,
            message: format!(
                "scripted: {}",
                if healthy { "healthy" } else { "unhealthy" }
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn request(kind: HealthCheckKind) -> ProbeRequest {
        ProbeRequest {
            task_id: "t".into(),
            probe_id: 1,
            kind,
            host: "127.0.0.1".into(),
            timeout: Duration::from_secs(10),
            sandbox: std::env::temp_dir().into(),
            env: BTreeMap::from([("MARKER".to_string(), "yes".to_string())]),
            user: probe_user(),
        }
    }

    /// Probes run as nobody when the tests run as root, else as the user running them.
    fn probe_user() -> String {
        if crate::user::current_uid() == 0 {
            crate::user::DEFAULT_TASK_USER.to_string()
        } else {
            std::env::var("USER").unwrap_or_default()
        }
    }

    /// A one-shot HTTP server answering `status`.
    fn serve_once(status: u16) -> (u16, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        });
        (port, handle)
    }

    #[test]
    fn http_probes_read_the_status() {
        let (port, server) = serve_once(204);
        let ok = run_probe(&request(HealthCheckKind::Http {
            port,
            path: "/health".into(),
        }));
        server.join().unwrap();
        assert_eq!(ok, Ok("HTTP 204".into()));
        let (port, server) = serve_once(503);
        let bad = run_probe(&request(HealthCheckKind::Http {
            port,
            path: "health".into(),
        }));
        server.join().unwrap();
        assert_eq!(bad, Err("HTTP 503".into()));
    }

    /// A TCP port bound on 127.0.0.1 but not listening, held until the socket is dropped: a
    /// connection to it is refused, and no other test can take the port meanwhile (a port
    /// freed by closing a listener could be taken by a test running alongside).
    struct ClosedPort(std::os::fd::OwnedFd, u16);

    fn closed_port() -> ClosedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a socket this function owns; the address structures
        // are fully initialized and their sizes passed.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, std::ptr::addr_of!(addr).cast(), len);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut bound_len = len;
            let rc = libc::getsockname(fd, std::ptr::addr_of_mut!(bound).cast(), &mut bound_len);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            ClosedPort(owned, u16::from_be(bound.sin_port))
        }
    }

    #[test]
    fn tcp_probes_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(run_probe(&request(HealthCheckKind::Tcp { port })).is_ok());
        drop(listener);
        let closed = closed_port();
        assert!(run_probe(&request(HealthCheckKind::Tcp { port: closed.1 })).is_err());
        drop(closed.0);
    }

    #[test]
    fn command_probes_use_the_environment_and_time_out() {
        let ok = CommandInfo::shell("test \"$MARKER\" = yes");
        assert!(run_probe(&request(HealthCheckKind::Command { command: ok })).is_ok());
        // As the task's user, with its identity in the environment.
        let user = crate::user::TaskUser::lookup(&probe_user()).unwrap();
        let as_user = CommandInfo::shell(&format!(
            "test \"$(id -u)\" = {} && test \"$(id -g)\" = {} && test \"$USER\" = {}",
            user.uid, user.gid, user.name
        ));
        let result = run_probe(&request(HealthCheckKind::Command { command: as_user }));
        assert!(result.is_ok(), "{result:?}");
        let mut unknown = request(HealthCheckKind::Command {
            command: CommandInfo::shell("true"),
        });
        unknown.user = "plateau-no-such-user".into();
        assert_eq!(
            run_probe(&unknown),
            Err("user 'plateau-no-such-user' does not exist on this slave".into())
        );
        let fail = CommandInfo::shell("exit 1");
        assert!(run_probe(&request(HealthCheckKind::Command { command: fail })).is_err());
        let mut slow = request(HealthCheckKind::Command {
            command: CommandInfo::shell("sleep 30"),
        });
        slow.timeout = Duration::from_millis(100);
        assert_eq!(run_probe(&slow), Err("command timed out".into()));
    }

    #[test]
    fn thread_prober_reports_through_the_callback() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let mut prober = ThreadProber::new(Arc::new(move |r| {
            let _ = tx.lock().unwrap().send(r);
        }))
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut r = request(HealthCheckKind::Tcp { port });
        r.probe_id = 42;
        prober.probe(r);
        let result = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!((result.probe_id, result.healthy), (42, true));
    }

    #[test]
    fn scripted_prober_follows_its_script() {
        let script = ProbeScript::new(true);
        let results = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&results);
        let mut prober = ScriptedProber::new(
            script.clone(),
            Arc::new(move |r| sink.lock().unwrap().push(r.healthy)),
        );
        prober.probe(request(HealthCheckKind::Tcp { port: 1 }));
        script.set("t", false);
        prober.probe(request(HealthCheckKind::Tcp { port: 1 }));
        assert_eq!(*results.lock().unwrap(), vec![true, false]);
        assert_eq!(script.probes(), 2);
    }
}
