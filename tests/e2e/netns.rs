//! Multi-host harness: every node of a test in its own Linux network namespace with its own
//! address, all joined to one bridge, hosts grouped in racks; links cut and restored at will.
//!
//! ```text
//!                 hub namespace `plateau-<tag>-<pid>-hub`
//!           bridge br0 10.<subnet>.0.254/24 (the test's own requests start here)
//!            │v1           │v2           │v3          ...   (hub ends of the veths)
//!        eth0 10.<s>.0.1  eth0 10.<s>.0.2  eth0 10.<s>.0.3
//!        host `ctl`       host `s1`        host `s2`          (one namespace each)
//!                          rack r1          rack r1
//! ```
//!
//! - A host is a namespace `plateau-<tag>-<pid>-<host>` with loopback up and `eth0` on the
//!   bridge. Hosts are numbered in the order given, from `.1`.
//! - [`Hosts::cut`] sets the hub end of a host's veth down: the host can reach nothing and
//!   nothing reaches it (its processes keep running, as on a machine whose cable was pulled).
//!   [`Hosts::restore`] sets it up again. [`Hosts::cut_rack`] / [`Hosts::restore_rack`] do the
//!   same for every host of a rack.
//! - Processes are started in a host with `nsenter --net=/var/run/netns/NAME plateau ...`
//!   ([`super::support::Cluster::spawn_in_netns`]). Only the network namespace changes:
//!   `ip netns exec` would also mount a fresh `/sys`, which hides the cgroup hierarchies from
//!   a slave.
//! - The test's own HTTP requests run in the hub ([`Hosts::block_on`]: a thread that enters the
//!   hub namespace and runs a current-thread tokio runtime), so they reach every host over the
//!   bridge, and no longer reach a cut one. [`get_json_in`] asks from inside one namespace (a
//!   cut host can still be asked from inside itself).
//! - Names are unique per test run: `<tag>` per test, `<pid>` per test process; `subnet` (the
//!   second octet) is unique per test as well, so a `tcpdump` or a log line says which test it
//!   came from. Namespaces isolate the tests from each other and from the machine: nothing is
//!   added to the root namespace.
//! - Cleanup: dropping [`Hosts`] kills whatever still runs in its namespaces and deletes them
//!   (the veths go with them). Keep the [`super::support::Cluster`] dropped *before* the
//!   `Hosts` (declare it after, or put both in a struct with the cluster first) so its own
//!   cleanup (children, then the task cgroups of its slaves) runs first. At start, namespaces
//!   and work dirs left by an earlier run of the same tag whose process is gone (a crash, a
//!   kill -9 of the test binary) are removed the same way.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One host: a network namespace with an address on the bridge, in a rack or not.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's name in the test (`ctl`, `s1`...).
    pub name: String,
    /// Its network namespace (`/var/run/netns/<netns>`).
    pub netns: String,
    /// Its address on the bridge.
    pub ip: String,
    /// Its rack, if any (`--attributes rack:<rack>`).
    pub rack: Option<String>,
    /// The hub end of its veth (what [`Hosts::cut`] sets down).
    veth: String,
}

impl Host {
    /// `--attributes` for a slave on this host: `rack:<rack>`, or None.
    pub fn attributes(&self) -> Option<String> {
        self.rack.as_ref().map(|r| format!("rack:{r}"))
    }
}

/// The namespaces of one test: a hub with a bridge and the hosts. Dropping it kills what runs
/// in them and deletes them, even when the test panicked.
pub struct Hosts {
    hub: String,
    hosts: Vec<Host>,
}

/// Run `ip ARGS`; panics (naming the command and its stderr) when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The pids of the processes in network namespace `ns` (`ip netns pids`).
fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kill -9 everything left in `ns` (never this test process), then delete the namespace.
fn remove_netns(ns: &str) {
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let pids: Vec<i32> = pids_in(ns).into_iter().filter(|p| *p != me).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) of a process inside a namespace this test (or a dead run of it)
            // created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// The namespaces whose name starts with `prefix`.
fn netns_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|entries| {
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(prefix))
                .collect();
            names.sort();
            names
        })
        .unwrap_or_default()
}

/// Removes what an earlier run of `tag` left whose process is gone: processes and task cgroups
/// of its cluster dir (`<tmp>/plateau-e2e-<tag>-<pid>`), the dir, its namespaces.
fn sweep_leftovers(tag: &str) {
    let prefix = format!("plateau-{tag}-");
    let mut dead: Vec<u32> = netns_named(&prefix)
        .iter()
        .filter_map(|n| n[prefix.len()..].split('-').next()?.parse().ok())
        .filter(|pid| *pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    dead.dedup();
    for pid in dead {
        let run = format!("{prefix}{pid}-");
        for ns in netns_named(&run) {
            remove_netns(&ns);
        }
        let dir = std::env::temp_dir().join(format!("plateau-e2e-{tag}-{pid}"));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.filter_map(Result::ok) {
                plateau_slave::destroy_leftover_tasks(&entry.path());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

impl Hosts {
    /// Create the hub (bridge `10.<subnet>.0.254/24`) and one namespace per `(name, rack)` of
    /// `layout`, numbered from `10.<subnet>.0.1`. `tag` names the test (use the same as its
    /// `Cluster`); `subnet` must differ between tests.
    pub fn new(tag: &str, subnet: u8, layout: &[(&str, Option<&str>)]) -> Hosts {
        assert!(layout.len() < 250, "at most 249 hosts on one bridge");
        sweep_leftovers(tag);
        let base = format!("plateau-{tag}-{}", std::process::id());
        let hub = format!("{base}-hub");
        // A namespace of ours from an earlier Hosts of this process (pid reuse): start afresh.
        for ns in netns_named(&format!("{base}-")) {
            remove_netns(&ns);
        }
        let mut hosts = Hosts {
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "set", "lo", "up"]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("10.{subnet}.0.254/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, (name, rack)) in layout.iter().enumerate() {
            let host = Host {
                name: name.to_string(),
                netns: format!("{base}-{name}"),
                ip: format!("10.{subnet}.0.{}", i + 1),
                rack: rack.map(str::to_string),
                veth: format!("v{}", i + 1),
            };
            // Registered before it exists: a failure half-way still removes it.
            hosts.hosts.push(host.clone());
            ip(&["netns", "add", &host.netns]);
            ip(&["-n", &host.netns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &hub,
                "link",
                "add",
                &host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &host.netns,
            ]);
            ip(&["-n", &hub, "link", "set", &host.veth, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &host.veth, "up"]);
            ip(&[
                "-n",
                &host.netns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &host.netns, "link", "set", "eth0", "up"]);
        }
        hosts
    }

    /// All hosts, in the order given.
    pub fn all(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// The host with address `ip`, if any.
    pub fn by_ip(&self, ip: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.ip == ip)
    }

    /// The hosts of rack `rack`.
    pub fn rack(&self, rack: &str) -> Vec<&Host> {
        self.hosts
            .iter()
            .filter(|h| h.rack.as_deref() == Some(rack))
            .collect()
    }

    fn set_link(&self, name: &str, up: bool) {
        let veth = &self.host(name).veth;
        ip(&[
            "-n",
            &self.hub,
            "link",
            "set",
            veth,
            if up { "up" } else { "down" },
        ]);
    }

    /// The hub namespace's name (its sockets reach every host over the bridge).
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// Cut host `name` off: the hub end of its veth goes down.
    pub fn cut(&self, name: &str) {
        self.set_link(name, false);
    }

    /// Reconnect host `name`.
    pub fn restore(&self, name: &str) {
        self.set_link(name, true);
    }

    /// Cut every host of rack `rack` off.
    pub fn cut_rack(&self, rack: &str) {
        let hosts = self.rack(rack);
        assert!(!hosts.is_empty(), "no host in rack {rack}");
        for h in hosts {
            self.cut(&h.name);
        }
    }

    /// Reconnect every host of rack `rack`.
    pub fn restore_rack(&self, rack: &str) {
        for h in self.rack(rack) {
            self.restore(&h.name);
        }
    }

    /// Run `f`'s future to completion on a current-thread tokio runtime in a thread inside the
    /// hub namespace (its sockets reach every host over the bridge); a panic in it is passed
    /// on to the caller.
    pub fn block_on<F, Fut>(&self, f: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future,
        Fut::Output: Send,
    {
        in_netns(&self.hub, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(f())
        })
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            remove_netns(&host.netns);
        }
        remove_netns(&self.hub);
    }
}

/// Run `f` in a new thread that has entered network namespace `ns` (sockets it opens, and
/// threads and processes it starts, live there); a panic in `f` is passed on.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(format!("/var/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("open netns {ns}: {e}"));
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            // SAFETY: setns(2) moves only this thread, which the scope ends with `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        });
        match thread.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `GET url` as JSON from inside network namespace `ns` (a thread of its own, so the caller's
/// runtime stays where it is); None on any error or after 5 s.
pub async fn get_json_in(ns: &str, url: &str) -> Option<serde_json::Value> {
    let (ns, url) = (ns.to_string(), url.to_string());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/var/run/netns/{ns}")).ok();
        // SAFETY: setns(2) moves only this short-lived thread.
        let entered =
            file.is_some_and(|f| unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0);
        let value = entered
            .then(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .ok()?;
                    client.get(&url).send().await.ok()?.json().await.ok()
                })
            })
            .flatten();
        let _ = tx.send(value);
    });
    rx.await.ok().flatten()
}
