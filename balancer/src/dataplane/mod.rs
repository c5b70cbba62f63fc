//! The data plane: the balancer's I/O, on threads of its own (so it neither slows nor is
//! slowed by the actors of its node).
//!
//! Threads: HTTP mode runs on [`DataPlaneConfig::worker_threads`] threads, each a
//! current-thread tokio runtime with its own listener on the HTTP address (`SO_REUSEPORT`:
//! the kernel spreads connections over them) and its own pool of idle backend connections,
//! so a client connection lives on one thread from accept to close — no work stealing, no
//! wake-ups across threads, no shared lock per request (HAProxy's `nbthread` model). TCP
//! mode, the admin listener and the listener reconciler share one multi-thread runtime.
//!
//! - **TCP**: one listener per service port on `listen_ip`, added and removed as service
//!   ports appear in and disappear from the table. Each accepted connection picks a backend
//!   (round robin, or least connections from live per-backend counters) and the bytes are
//!   spliced both ways. A backend that refuses the connection is replaced by another, at most
//!   [`TCP_CONNECT_ATTEMPTS_MAX`](crate::limits::TCP_CONNECT_ATTEMPTS_MAX) tries in all. When
//!   a connection's backend leaves the table or starts draining, the connection is left to
//!   finish for [`DataPlaneConfig::tcp_drain_timeout`] (default 30 s), then closed.
//! - **HTTP** ([`http`]): one listener routing by `Host` and path prefix, keep-alive to
//!   clients, a connection pool to backends, `X-Forwarded-*` headers, retries of idempotent
//!   requests whose connect failed, and clear 404/502/503/504 answers.
//! - **Admin** ([`admin`]): `/stats` (JSON) and `/metrics` (Prometheus text).
//!
//! A new [`Table`] arrives through [`DataPlane::publish`] and is swapped in atomically (an
//! `Arc` behind a lock taken only to clone it): a connection or request reads the table once,
//! when it starts, so an update never touches what is in flight, and nothing is reloaded.

pub mod admin;
pub mod http;
pub mod stats;
mod tcp;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};

use crate::error::BalancerError;
use crate::limits::{CONNECTIONS_MAX, HTTP_LISTEN_BACKLOG, RESPONSE_HEADER_TIMEOUT_DEFAULT};
use crate::table::{normalize_host, Balance, Endpoint, Table};
use stats::{ActiveGuard, AppStats, BackendStats, Stats, StatsCollector, StatsSnapshot};

/// How to run a data plane.
#[derive(Clone, Debug)]
pub struct DataPlaneConfig {
    /// Address the service-port (TCP) listeners bind (marathon-lb's `--bind-addr`).
    pub listen_ip: IpAddr,
    /// The HTTP (virtual host) listener; `None` for none. Port 0 picks a free port.
    pub http_addr: Option<SocketAddr>,
    /// The admin listener (`/stats`, `/metrics`); `None` for none.
    pub admin_addr: Option<SocketAddr>,
    /// The admin listener's credentials, ACLs and HTTPS (default: open, plain HTTP).
    pub admin_security: plateau_security::ServeOptions,
    /// An admin connection with no request for this long is closed. Default
    /// [`ADMIN_IDLE_TIMEOUT_DEFAULT`](crate::limits::ADMIN_IDLE_TIMEOUT_DEFAULT) (30 s).
    pub admin_idle_timeout: Duration,
    /// How long to wait for a backend's response headers before answering 504.
    pub response_header_timeout: Duration,
    /// How long connecting to a backend may take.
    pub connect_timeout: Duration,
    /// Threads of the data plane: this many HTTP threads (each with a current-thread
    /// runtime and an `SO_REUSEPORT` listener of its own), and this many workers of the
    /// runtime that serves TCP mode and the admin listener.
    pub worker_threads: usize,
    /// How long a TCP-mode connection may go on once its backend left the table or is
    /// draining; then it is closed. Default
    /// [`TCP_DRAIN_TIMEOUT_DEFAULT`](crate::limits::TCP_DRAIN_TIMEOUT_DEFAULT) (30 s).
    pub tcp_drain_timeout: Duration,
    /// How long a body being relayed (request or response) may go without progress, read or
    /// written, before the exchange is dropped: HAProxy's `timeout client`/`timeout server`
    /// while data flows. A backend that stops reading a request body gets the client a 504.
    /// Default [`BODY_IDLE_TIMEOUT`](crate::limits::BODY_IDLE_TIMEOUT) (60 s).
    pub body_idle_timeout: Duration,
}

impl Default for DataPlaneConfig {
    /// Production defaults: service ports on 0.0.0.0, HTTP on :80, admin on :9090.
    fn default() -> Self {
        DataPlaneConfig {
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            admin_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9090))),
            admin_security: Default::default(),
            admin_idle_timeout: crate::limits::ADMIN_IDLE_TIMEOUT_DEFAULT,
            response_header_timeout: RESPONSE_HEADER_TIMEOUT_DEFAULT,
            connect_timeout: crate::limits::BACKEND_CONNECT_TIMEOUT,
            worker_threads: 2,
            tcp_drain_timeout: crate::limits::TCP_DRAIN_TIMEOUT_DEFAULT,
            body_idle_timeout: crate::limits::BODY_IDLE_TIMEOUT,
        }
    }
}

impl DataPlaneConfig {
    /// Everything on 127.0.0.1 with free ports (HTTP and admin): for tests and `plateau dev`.
    pub fn loopback() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        DataPlaneConfig {
            listen_ip: lo,
            http_addr: Some(SocketAddr::new(lo, 0)),
            admin_addr: Some(SocketAddr::new(lo, 0)),
            ..Default::default()
        }
    }
}

/// One backend as the data plane uses it: its address and its live counters.
#[derive(Debug)]
pub(crate) struct LiveBackend {
    pub(crate) endpoint: Endpoint,
    /// `host:port`, as connected to and shown in stats.
    pub(crate) address: String,
    pub(crate) stats: Arc<BackendStats>,
}

/// A route with its live state: the round-robin cursor and counters survive table updates.
#[derive(Debug)]
pub(crate) struct LiveRoute {
    pub(crate) app_id: String,
    pub(crate) balance: Balance,
    pub(crate) backends: Vec<LiveBackend>,
    pub(crate) cursor: Arc<AtomicUsize>,
    pub(crate) app: Arc<AppStats>,
}

/// What [`LiveRoute::pick`] found.
#[derive(Debug)]
pub(crate) enum Pick {
    /// This backend (index into `backends`), its in-flight count already raised.
    Chosen(usize, ActiveGuard),
    /// Nothing left to try. `stale`: some backends were passed over because a newer table
    /// retired them, so the current table may route elsewhere.
    Nothing { stale: bool },
}

impl LiveRoute {
    /// Pick a backend not in `tried` (indices into `backends`) and not retired by a newer
    /// table; its active count is raised before returning, so concurrent least-connection
    /// picks spread out and a drain waiting for `active == 0` sees it (see
    /// [`BackendStats::begin_unless_retired`]).
    pub(crate) fn pick(&self, tried: &[usize]) -> Pick {
        let n = self.backends.len();
        if n == 0 {
            return Pick::Nothing { stale: false };
        }
        let start = self.cursor.fetch_add(1, Relaxed);
        let mut stale = false;
        let candidates = || {
            (0..n)
                .map(move |i| (start + i) % n)
                .filter(|i| !tried.contains(i))
        };
        match self.balance {
            Balance::RoundRobin => {
                for i in candidates() {
                    match self.backends[i].stats.begin_unless_retired() {
                        Some(guard) => return Pick::Chosen(i, guard),
                        None => stale = true,
                    }
                }
            }
            // min_by_key keeps the first of equals: ties go round robin from `start`. A
            // backend found retired is not a candidate on the next round (retired is only
            // cleared by a newer table routing it again), so at most n rounds.
            Balance::LeastConn => {
                for _ in 0..n {
                    let Some(i) = candidates()
                        .filter(|i| !self.backends[*i].stats.is_retired())
                        .min_by_key(|i| self.backends[*i].stats.active.load(Relaxed))
                    else {
                        break;
                    };
                    match self.backends[i].stats.begin_unless_retired() {
                        Some(guard) => return Pick::Chosen(i, guard),
                        None => stale = true,
                    }
                }
                stale |= candidates().any(|i| self.backends[i].stats.is_retired());
            }
        }
        Pick::Nothing { stale }
    }
}

/// The table as the data plane serves it.
#[derive(Debug, Default)]
pub(crate) struct LiveTable {
    pub(crate) tcp: HashMap<u16, Arc<LiveRoute>>,
    pub(crate) http: HashMap<String, Vec<(String, Arc<LiveRoute>)>>,
}

impl LiveTable {
    pub(crate) fn http_route(&self, host: &str, path: &str) -> Option<&Arc<LiveRoute>> {
        let host = normalize_host(host)?;
        self.http
            .get(host.as_ref())?
            .iter()
            // An empty prefix (no path label) matches without a call to memcmp.
            .find(|(prefix, _)| prefix.is_empty() || path.starts_with(prefix.as_str()))
            .map(|(_, r)| r)
    }
}

pub(crate) struct Shared {
    pub(crate) config: DataPlaneConfig,
    pub(crate) live: RwLock<Arc<LiveTable>>,
    /// Bumped after each swap of `live`: connections keep their table and re-read it only
    /// when this changed (one relaxed load per request instead of a lock).
    pub(crate) version: AtomicU64,
    /// Round-robin cursors by (app, port index), kept across table versions.
    cursors: Mutex<BTreeMap<(String, usize), Arc<AtomicUsize>>>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) connections: Arc<Semaphore>,
    /// Bumped on each publish; wakes the listener reconciler and TCP connections.
    pub(crate) table_changed: watch::Sender<u64>,
}

impl Shared {
    /// An empty table, no counters yet.
    pub(crate) fn new(config: DataPlaneConfig) -> Shared {
        let (table_changed, _) = watch::channel(0);
        Shared {
            config,
            live: RwLock::new(Arc::new(LiveTable::default())),
            version: AtomicU64::new(0),
            cursors: Mutex::new(BTreeMap::new()),
            stats: Arc::new(Stats::default()),
            connections: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
            table_changed,
        }
    }

    /// The current table (one read-lock, one `Arc` clone).
    pub(crate) fn live(&self) -> Arc<LiveTable> {
        self.live.read().expect("table lock").clone()
    }

    fn publish(&self, table: Arc<Table>) {
        let mut reg = self.stats.registry.lock().expect("stats lock");
        let mut cursors = self.cursors.lock().expect("cursor lock");
        let mut routes: BTreeMap<(String, usize), Arc<LiveRoute>> = BTreeMap::new();
        let mut used_backends = std::collections::BTreeSet::new();
        let mut live_route = |route: &crate::table::Route| -> Arc<LiveRoute> {
            let key = (route.app_id.clone(), route.port_index);
            routes
                .entry(key.clone())
                .or_insert_with(|| {
                    let cursor = cursors.entry(key).or_default().clone();
                    let app = reg.apps.entry(route.app_id.clone()).or_default().clone();
                    let backends = route
                        .backends
                        .iter()
                        .map(|e| {
                            let address = format!("{}:{}", e.host, e.port);
                            let bkey = (route.app_id.clone(), e.task_id.clone(), address.clone());
                            used_backends.insert(bkey.clone());
                            let stats = reg.backends.entry(bkey).or_default().clone();
                            LiveBackend {
                                endpoint: e.clone(),
                                address,
                                stats,
                            }
                        })
                        .collect();
                    Arc::new(LiveRoute {
                        app_id: route.app_id.clone(),
                        balance: route.balance,
                        backends,
                        cursor,
                        app,
                    })
                })
                .clone()
        };
        let mut live = LiveTable::default();
        for (port, route) in &table.tcp {
            live.tcp.insert(*port, live_route(route));
        }
        for (host, hroutes) in &table.http {
            live.http.insert(
                host.clone(),
                hroutes
                    .iter()
                    .map(|r| (r.path_prefix.clone(), live_route(&r.route)))
                    .collect(),
            );
        }
        // Retire what the new table no longer routes (draining or removed), un-retire what
        // it routes again, then forget what it no longer has except backends still finishing
        // connections, so memory follows the cluster's size, not the number of updates.
        //
        // The live table's write lock is held from the first retirement to the swap: a picker
        // that finds a backend retired and reads the table again gets the new one, not the
        // old one a second time. Retiring (SeqCst) before reading `active` (SeqCst) is what
        // lets a drain trust `active == 0` (see `BackendStats::begin_unless_retired`).
        let mut live_slot = self.live.write().expect("table lock");
        for (key, b) in &reg.backends {
            b.retired.store(!used_backends.contains(key), SeqCst);
        }
        let route_keys: std::collections::BTreeSet<(String, usize)> =
            routes.keys().cloned().collect();
        cursors.retain(|k, _| route_keys.contains(k));
        reg.backends
            .retain(|k, b| used_backends.contains(k) || b.active.load(SeqCst) > 0);
        let apps_in_use: std::collections::BTreeSet<String> = route_keys
            .iter()
            .map(|(a, _)| a.clone())
            .chain(reg.backends.keys().map(|k| k.0.clone()))
            .collect();
        reg.apps.retain(|a, _| apps_in_use.contains(a));
        reg.table = table;
        drop(cursors);
        *live_slot = Arc::new(live);
        self.version.fetch_add(1, SeqCst);
        drop(live_slot);
        drop(reg);
        self.stats.table_updates.fetch_add(1, Relaxed);
        self.table_changed.send_modify(|v| *v += 1);
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// The runtime of TCP mode, the admin listener and the listener reconciler.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Set to stop the HTTP threads; each drops its runtime, and so its connections.
    http_stop: watch::Sender<bool>,
    http_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
}

impl Inner {
    /// Never blocks (the threads are told, not joined), so stopping a data plane inside
    /// another runtime is fine.
    fn shutdown(&self) {
        self.http_stop.send_replace(true);
        if let Some(rt) = self.runtime.lock().expect("runtime lock").take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A running data plane. Cheap to clone; stops when the last clone is dropped or on
/// [`DataPlane::shutdown`].
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("http_addr", &self.inner.http_addr)
            .field("admin_addr", &self.inner.admin_addr)
            .finish()
    }
}

/// `n` sockets bound to `addr` with `SO_REUSEPORT`, one per HTTP thread: the kernel spreads
/// incoming connections over them, so no two threads share an accept queue. Port 0 picks
/// the port for the first; the others join it.
fn bind_reuseport(addr: SocketAddr, n: usize) -> Result<Vec<TcpSocket>, BalancerError> {
    let mut at = addr;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let err = |source| BalancerError::Bind { addr, source };
        let socket = if at.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(true).map_err(err)?;
        socket.set_nodelay(true).map_err(err)?;
        socket.bind(at).map_err(err)?;
        at = socket.local_addr().map_err(err)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Start one HTTP thread: a current-thread runtime of its own serving `socket` (listening
/// from now on), with its own backend connection pool. Everything a client connection does
/// stays on this thread: no work stealing, no wake-ups across threads, no shared pool lock.
fn spawn_http_thread(
    index: usize,
    socket: TcpSocket,
    shared: &Arc<Shared>,
    threads: Arc<http::HttpThreads>,
    handed: tokio::sync::mpsc::UnboundedReceiver<http::HandedOff>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BalancerError> {
    let addr = socket.local_addr().map_err(BalancerError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BalancerError::Runtime)?;
    // Registered with this thread's runtime (entering it is allowed inside another one).
    let listener = {
        let _entered = runtime.enter();
        socket
            .listen(HTTP_LISTEN_BACKLOG)
            .map_err(|source| BalancerError::Bind { addr, source })?
    };
    let proxy = http::Proxy::new(shared.clone());
    std::thread::Builder::new()
        .name(format!("plateau-http-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    biased;
                    // Told to stop, or the data plane is gone.
                    _ = stop.wait_for(|stop| *stop) => {}
                    () = proxy.serve(listener, threads, index, handed) => {}
                }
            });
            // Dropping the runtime here drops every connection of this thread.
        })
        .map_err(BalancerError::Runtime)?;
    Ok(())
}

fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, BalancerError> {
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| BalancerError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| BalancerError::Bind { addr, source })?;
    Ok(l)
}

impl DataPlane {
    /// Start the data plane with an empty table: binds the HTTP and admin listeners now (so
    /// their errors are returned), service ports as tables arrive. May be called from inside
    /// another tokio runtime or actix system.
    pub fn start(config: DataPlaneConfig) -> Result<DataPlane, BalancerError> {
        if config.worker_threads == 0 {
            return Err(BalancerError::Config(
                "worker_threads must be at least 1".into(),
            ));
        }
        let http = config
            .http_addr
            .map(|a| bind_reuseport(a, config.worker_threads))
            .transpose()?;
        let admin = config.admin_addr.map(bind_std).transpose()?;
        let http_addr = match http.as_ref().and_then(|s| s.first()) {
            Some(s) => Some(s.local_addr().map_err(BalancerError::Runtime)?),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(l.local_addr().map_err(BalancerError::Runtime)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("plateau-balancer")
            .enable_all()
            .build()
            .map_err(BalancerError::Runtime)?;
        let shared = Arc::new(Shared::new(config));
        let table_rx = shared.table_changed.subscribe();
        shared
            .stats
            .registry
            .lock()
            .expect("stats lock")
            .http_listener = http_addr.map(|a| a.to_string());
        runtime.spawn(tcp::reconcile_listeners(shared.clone(), table_rx));
        let (http_stop, http_stop_rx) = watch::channel(false);
        let sockets = http.unwrap_or_default();
        let (threads, handed) = http::HttpThreads::new(sockets.len());
        for (index, (socket, handed)) in sockets.into_iter().zip(handed).enumerate() {
            let stop = http_stop_rx.clone();
            if let Err(e) = spawn_http_thread(index, socket, &shared, threads.clone(), handed, stop)
            {
                // The threads already started stop with the sender.
                runtime.shutdown_background();
                return Err(e);
            }
        }
        if let Some(l) = admin {
            let stats = shared.stats.clone();
            let security = shared.config.admin_security.clone();
            let idle_timeout = shared.config.admin_idle_timeout;
            runtime.spawn(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => admin::serve(l, stats, security, idle_timeout).await,
                    Err(e) => tracing::error!(error = %e, "admin listener unusable"),
                }
            });
        }
        Ok(DataPlane {
            inner: Arc::new(Inner {
                shared,
                runtime: Mutex::new(Some(runtime)),
                http_stop,
                http_addr,
                admin_addr,
            }),
        })
    }

    /// Serve `table` from now on. Connections and requests in flight keep the backend they
    /// have; new ones use the new table. Service-port listeners follow shortly after.
    pub fn publish(&self, table: Arc<Table>) {
        self.inner.shared.publish(table);
    }

    /// The table being served.
    pub fn table(&self) -> Arc<Table> {
        self.inner
            .shared
            .stats
            .registry
            .lock()
            .expect("stats lock")
            .table
            .clone()
    }

    /// Where the HTTP listener is bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr
    }

    /// Where the admin listener is bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.inner.admin_addr
    }

    /// Service ports being listened on → their bound address.
    pub fn tcp_listeners(&self) -> BTreeMap<u16, SocketAddr> {
        let reg = self.inner.shared.stats.registry.lock().expect("stats lock");
        reg.listeners
            .iter()
            .filter_map(|(p, a)| Some((*p, a.parse().ok()?)))
            .collect()
    }

    /// Every counter, as `/stats` shows it.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.shared.stats.snapshot()
    }

    /// A collector to register this data plane's metrics in a node-wide registry.
    pub fn metrics_collector(&self) -> StatsCollector {
        StatsCollector(self.inner.shared.stats.clone())
    }

    /// Stop listening and drop every connection now.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

impl crate::process::TablePublisher for DataPlane {
    fn publish(&self, table: Arc<Table>) {
        DataPlane::publish(self, table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AppRoutes, Backend, BackendState, RoutesSnapshot};
    use crate::table::RoutingState;

    /// App `/web` on vhost `web` and service port 10000, one backend per `(task, state)`.
    fn table(version: u64, balance: &str, tasks: &[(&str, BackendState)]) -> Arc<Table> {
        let backends = tasks
            .iter()
            .enumerate()
            .map(|(i, (task, state))| Backend {
                task_id: (*task).into(),
                host: "127.0.0.1".into(),
                ports: vec![31000 + i as u16],
                state: *state,
                healthy: None,
            })
            .collect();
        let labels = [("HAPROXY_0_VHOST", "web"), ("HAPROXY_0_BALANCE", balance)];
        let mut state = RoutingState::new(None);
        state.handle_snapshot(RoutesSnapshot {
            leader_epoch: 0,
            version,
            apps: vec![AppRoutes {
                app_id: "/web".into(),
                service_ports: vec![10000],
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                has_health_checks: false,
                backends,
            }],
        });
        Arc::new(state.table())
    }

    /// What a drain waits for: the task's requests in flight, as `/stats` shows them.
    fn active_of(shared: &Shared, task: &str) -> u64 {
        shared
            .stats
            .snapshot()
            .apps
            .iter()
            .flat_map(|a| &a.backends)
            .filter(|b| b.task_id == task)
            .map(|b| b.active)
            .sum()
    }

    fn picked_task(route: &LiveRoute, pick: Pick) -> Option<(String, ActiveGuard)> {
        match pick {
            Pick::Chosen(i, guard) => Some((route.backends[i].endpoint.task_id.clone(), guard)),
            Pick::Nothing { .. } => None,
        }
    }

    use BackendState::{Draining, Running};

    /// The race behind a lost request in a rolling restart: a request reads the table, the
    /// backend is drained, the drain sees nothing in flight and the task is stopped, then the
    /// request picks that backend from the table it read. A pick from a stale table must
    /// skip a backend retired since.
    #[test]
    fn a_table_read_before_a_drain_never_picks_the_drained_backend() {
        for balance in ["roundrobin", "leastconn"] {
            let shared = Shared::new(DataPlaneConfig::loopback());
            shared.publish(table(1, balance, &[("a", Running), ("b", Running)]));
            let stale = shared.live();
            shared.publish(table(2, balance, &[("a", Running), ("b", Draining)]));
            assert_eq!(active_of(&shared, "b"), 0, "the drain finds b idle");
            for route in [stale.http_route("web", "/").unwrap(), &stale.tcp[&10000]] {
                for _ in 0..6 {
                    let (task, _guard) = picked_task(route, route.pick(&[])).expect("a is there");
                    assert_eq!(task, "a", "{balance}: a drained backend was picked");
                    assert_eq!(active_of(&shared, "b"), 0);
                }
            }
        }
    }

    #[test]
    fn a_stale_route_whose_backends_all_left_says_so() {
        let shared = Shared::new(DataPlaneConfig::loopback());
        shared.publish(table(1, "roundrobin", &[("old", Running)]));
        let stale = shared.live();
        shared.publish(table(2, "roundrobin", &[("new", Running)]));
        let route = stale.http_route("web", "/").unwrap();
        assert!(matches!(route.pick(&[]), Pick::Nothing { stale: true }));
        let current = shared.live();
        let route = current.http_route("web", "/").unwrap();
        assert_eq!(picked_task(route, route.pick(&[])).unwrap().0, "new");
        // An empty route is not stale: there is nothing newer to look for.
        shared.publish(table(3, "roundrobin", &[]));
        let empty = shared.live();
        let route = empty.http_route("web", "/").unwrap();
        assert!(matches!(route.pick(&[]), Pick::Nothing { stale: false }));
    }

    #[test]
    fn a_request_in_flight_at_the_drain_is_seen_until_it_ends() {
        let shared = Shared::new(DataPlaneConfig::loopback());
        shared.publish(table(1, "roundrobin", &[("b", Running)]));
        let live = shared.live();
        let route = live.http_route("web", "/").unwrap();
        let (task, guard) = picked_task(route, route.pick(&[])).unwrap();
        assert_eq!(task, "b");
        shared.publish(table(2, "roundrobin", &[("b", Draining)]));
        assert_eq!(
            active_of(&shared, "b"),
            1,
            "kept in the stats while in flight"
        );
        drop(guard);
        assert_eq!(active_of(&shared, "b"), 0);
        // Removed for good once idle at a publish.
        shared.publish(table(3, "roundrobin", &[]));
        assert!(shared
            .stats
            .snapshot()
            .apps
            .iter()
            .all(|a| a.backends.is_empty()));
    }

    #[test]
    fn a_backend_routed_again_after_a_drain_is_picked_again() {
        let shared = Shared::new(DataPlaneConfig::loopback());
        shared.publish(table(1, "roundrobin", &[("b", Running)]));
        let first = shared.live();
        shared.publish(table(2, "roundrobin", &[("b", Draining)]));
        shared.publish(table(3, "roundrobin", &[("b", Running)]));
        // b was in flight never, so its counters were forgotten at 2 and start again at 3;
        // the current table routes to it.
        let current = shared.live();
        let route = current.http_route("web", "/").unwrap();
        assert_eq!(picked_task(route, route.pick(&[])).unwrap().0, "b");
        // The first table's entry belongs to a backend retired once: it stays retired.
        let old = first.http_route("web", "/").unwrap();
        assert!(matches!(old.pick(&[]), Pick::Nothing { stale: true }));
    }
}
