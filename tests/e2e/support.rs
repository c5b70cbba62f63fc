//! Shared helpers of the end-to-end tests: a set of `plateau` child processes with a work dir,
//! cleaned up (processes, task cgroups, files) even when a test fails; polling with deadlines.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::PLATEAU;

/// Child processes of one test. Dropping it kills and reaps the children, removes the cgroups of the slaves' tasks and the work dir,
/// even when the test fails.
pub struct Cluster {
    /// The work dir of the whole cluster.
    pub dir: PathBuf,
    /// Running children by name.
    pub children: BTreeMap<String, Child>,
    /// Slave work dirs whose task cgroups are removed at the end.
    pub slave_dirs: Vec<PathBuf>,
}

impl Cluster {
    /// Start (or restart) `plateau ARGS` as `name`, stderr to `<dir>/<name>.log`.
    pub fn spawn(&mut self, name: &str, args: &[&str]) {
        let mut command = Command::new(PLATEAU);
        command.args(args);
        self.start(name, command);
    }

    /// Start (or restart) `plateau ARGS` as `name` inside network namespace `netns`
    /// (`/var/run/netns/<netns>`, see `netns.rs`) with `nsenter --net`, which enters only the
    /// network namespace and execs the command: the child is the `plateau` process itself, and
    /// it sees the host's `/sys` (its cgroups) and files (`ip netns exec` would mount a fresh
    /// `/sys`, hiding the cgroup hierarchies from a slave).
    pub fn spawn_in_netns(&mut self, name: &str, netns: &str, args: &[&str]) {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg(PLATEAU)
            .args(args);
        self.start(name, command);
    }

    /// Start `command` as `name`, stderr to `<dir>/<name>.log`, with `RUST_LOG=info` unless the
    /// command sets or removes `RUST_LOG` itself.
    pub fn start(&mut self, name: &str, mut command: Command) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        if let Some(mut old) = self.children.insert(name.to_string(), child) {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    /// Send `signal` to child `name`.
    pub fn signal(&self, name: &str, signal: i32) {
        let pid = self.children[name].id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, signal) };
    }

    /// What child `name` logged.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            // SAFETY: signals to our own children.
            unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
            let _ = child.kill();
            let _ = child.wait();
        }
        for work in &self.slave_dirs {
            plateau_slave::destroy_leftover_tasks(work);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `plateau dev` run as a child. Dropping it stops it with SIGINT (as Ctrl-C: it kills its tasks
/// and removes their cgroups), and kills it if it has not stopped within 10 s.
pub struct Dev(pub Child);

impl Dev {
    /// Start `plateau dev ARGS`, its stderr to `log`.
    pub fn start(args: &[&std::ffi::OsStr], log: std::fs::File) -> Dev {
        Dev(Command::new(PLATEAU)
            .arg("dev")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pids in a task's cgroup (its supervised command first).
pub fn task_pids(slave_work: &Path, task: &str) -> Vec<i32> {
    let name = plateau_slave::cgroup_slave_name(slave_work);
    let dir = Path::new("/sys/fs/cgroup/pids/plateau")
        .join(name)
        .join(plateau_slave::containerizer::task_dir_name(task));
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The task cgroups of the slave of `slave_work` (folder names: a Marathon task id as it is)
/// with the pids in each; cgroups left without a process are skipped.
pub fn task_cgroups(slave_work: &Path) -> BTreeMap<String, Vec<i32>> {
    let dir =
        Path::new("/sys/fs/cgroup/pids/plateau").join(plateau_slave::cgroup_slave_name(slave_work));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let pids: Vec<i32> = std::fs::read_to_string(e.path().join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect();
            let name = e.file_name().to_str()?.to_string();
            (!pids.is_empty()).then_some((name, pids))
        })
        .collect()
}

/// A port free on `ip` now.
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// A cluster rooted at a fresh temporary directory named after `test`, with a cluster CA in
    /// `<dir>/tls`.
    pub fn new(test: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("plateau-e2e-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new(PLATEAU)
            .args(["certs", "init", "--dir"])
            .arg(dir.join("tls"))
            .status()
            .unwrap();
        assert!(ok.success());
        Cluster {
            dir,
            children: BTreeMap::new(),
            slave_dirs: Vec::new(),
        }
    }

    /// The cluster CA directory.
    pub fn tls(&self) -> PathBuf {
        self.dir.join("tls")
    }

    /// Start `plateau master` as child `master` on a free 127.0.0.1 port, work dir
    /// `<dir>/master`; returns its HOST:PORT.
    pub fn start_master(&mut self) -> String {
        self.start_master_with(&[])
    }

    /// [`Cluster::start_master`] with more flags (`--credentials FILE`, ...).
    pub fn start_master_with(&mut self, flags: &[&str]) -> String {
        let master = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let work = self.dir.join("master");
        let tls = self.tls();
        let mut args = vec![
            "master",
            "--listen",
            &master,
            "--work-dir",
            work.to_str().unwrap(),
            "--tls-dir",
            tls.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        self.spawn("master", &args);
        master
    }

    /// Start (or restart) master `i` of the group `masters` (HOST:PORT each) as child
    /// `master-<i>`: `--listen masters[i] --peers <all>`, work dir `<dir>/master-<i>`.
    pub fn spawn_master(&mut self, i: usize, masters: &[String]) {
        let work = self.dir.join(format!("master-{i}"));
        let tls = self.tls();
        self.spawn(
            &format!("master-{i}"),
            &[
                "master",
                "--listen",
                &masters[i],
                "--peers",
                &masters.join(","),
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                tls.to_str().unwrap(),
            ],
        );
    }

    /// Start `plateau slave` as child `name` on a free port of `ip`, registered with `master`,
    /// offering `resources`, work dir `<dir>/<name>` (its task cgroups are removed at the end);
    /// returns its HOST:PORT and work dir.
    pub fn start_slave(
        &mut self,
        name: &str,
        ip: &str,
        master: &str,
        resources: &str,
    ) -> (String, PathBuf) {
        let listen = format!("{ip}:{}", free_port(ip));
        let work = self.dir.join(name);
        self.slave_dirs.push(work.clone());
        let tls = self.tls();
        self.spawn(
            name,
            &[
                "slave",
                "--master",
                master,
                "--listen",
                &listen,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                tls.to_str().unwrap(),
                "--resources",
                resources,
            ],
        );
        (listen, work)
    }

    /// Start `plateau marathon` as child `marathon` on a free 127.0.0.1 port, following
    /// `master`, work dir `<dir>/marathon`; returns its HOST:PORT.
    pub fn start_marathon(&mut self, master: &str) -> String {
        let marathon = format!("127.0.0.1:{}", free_port("127.0.0.1"));
        let work = self.dir.join("marathon");
        let tls = self.tls();
        self.spawn(
            "marathon",
            &[
                "marathon",
                "--master",
                master,
                "--listen",
                &marathon,
                "--work-dir",
                work.to_str().unwrap(),
                "--tls-dir",
                tls.to_str().unwrap(),
            ],
        );
        marathon
    }
}

/// Run a future, catching its panic, so that a test can print its cluster's logs before the
/// cluster is dropped.
pub async fn catch_panic<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> std::thread::Result<()> {
    let mut f = Box::pin(f.0);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(())) => std::task::Poll::Ready(Ok(())),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    })
    .await
}

/// The last `n` lines of `text`, for a failure message.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Poll `cond` every 100 ms until it holds; panic naming `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `url` as JSON; None on any error.
pub async fn get_json(url: &str) -> Option<serde_json::Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

/// Poll `f` every 100 ms until it gives a value; panic naming `what` after `limit`.
pub async fn await_some<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Which of `masters` (HOST:PORT) leads, as every one of them says (all must answer).
pub async fn agreed_master(masters: &[String]) -> Option<String> {
    let mut seen = None;
    for m in masters {
        let members = get_json(&format!("http://{m}/master/members")).await?;
        let leader = members["leader"].as_str()?.to_string();
        if seen.get_or_insert_with(|| leader.clone()) != &leader {
            return None;
        }
    }
    seen
}
