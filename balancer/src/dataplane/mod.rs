//! The data plane: the balancer's I/O, on a tokio runtime with threads of its own (so it
//! neither slows nor is slowed by the actors of its node).
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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::error::BalancerError;
use crate::limits::{CONNECTIONS_MAX, RESPONSE_HEADER_TIMEOUT_DEFAULT};
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
    /// How long to wait for a backend's response headers before answering 504.
    pub response_header_timeout: Duration,
    /// How long connecting to a backend may take.
    pub connect_timeout: Duration,
    /// Threads of the data plane's runtime.
    pub worker_threads: usize,
    /// How long a TCP-mode connection may go on once its backend left the table or is
    /// draining; then it is closed. Default
    /// [`TCP_DRAIN_TIMEOUT_DEFAULT`](crate::limits::TCP_DRAIN_TIMEOUT_DEFAULT) (30 s).
    pub tcp_drain_timeout: Duration,
}

impl Default for DataPlaneConfig {
    /// Production defaults: service ports on 0.0.0.0, HTTP on :80, admin on :9090.
    fn default() -> Self {
        DataPlaneConfig {
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_addr: Some(SocketAddr::from(([0, 0, 0, 0], 80))),
            admin_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9090))),
            response_header_timeout: RESPONSE_HEADER_TIMEOUT_DEFAULT,
            connect_timeout: crate::limits::BACKEND_CONNECT_TIMEOUT,
            worker_threads: 2,
            tcp_drain_timeout: crate::limits::TCP_DRAIN_TIMEOUT_DEFAULT,
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

impl LiveRoute {
    /// Pick a backend not in `tried` (indices into `backends`); its active count is raised
    /// before returning, so concurrent least-connection picks spread out.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<(usize, ActiveGuard)> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Relaxed);
        let candidates = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !tried.contains(i));
        let chosen = match self.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            // min_by_key keeps the first of equals: ties go round robin from `start`.
            Balance::LeastConn => {
                candidates.min_by_key(|i| self.backends[*i].stats.active.load(Relaxed))
            }
        }?;
        Some((chosen, self.backends[chosen].stats.begin()))
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
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
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
        // Forget what the table no longer has, except backends still finishing connections;
        // so memory follows the cluster's size, not the number of updates.
        let route_keys: std::collections::BTreeSet<(String, usize)> =
            routes.keys().cloned().collect();
        cursors.retain(|k, _| route_keys.contains(k));
        reg.backends
            .retain(|k, b| used_backends.contains(k) || b.active.load(Relaxed) > 0);
        let apps_in_use: std::collections::BTreeSet<String> = route_keys
            .iter()
            .map(|(a, _)| a.clone())
            .chain(reg.backends.keys().map(|k| k.0.clone()))
            .collect();
        reg.apps.retain(|a, _| apps_in_use.contains(a));
        reg.table = table;
        drop(cursors);
        drop(reg);
        *self.live.write().expect("table lock") = Arc::new(live);
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.stats.table_updates.fetch_add(1, Relaxed);
        self.table_changed.send_modify(|v| *v += 1);
    }
}

struct Inner {
    shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    http_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.lock().expect("runtime lock").take() {
            // Never blocks, so dropping a data plane inside another runtime is fine.
            rt.shutdown_background();
        }
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
        let http = config.http_addr.map(bind_std).transpose()?;
        let admin = config.admin_addr.map(bind_std).transpose()?;
        let local =
            |l: &Option<std::net::TcpListener>| -> Result<Option<SocketAddr>, BalancerError> {
                l.as_ref()
                    .map(|l| l.local_addr().map_err(BalancerError::Runtime))
                    .transpose()
            };
        let (http_addr, admin_addr) = (local(&http)?, local(&admin)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("plateau-balancer")
            .enable_all()
            .build()
            .map_err(BalancerError::Runtime)?;
        let (table_changed, table_rx) = watch::channel(0);
        let stats = Arc::new(Stats::default());
        stats.registry.lock().expect("stats lock").http_listener = http_addr.map(|a| a.to_string());
        let shared = Arc::new(Shared {
            config,
            live: RwLock::new(Arc::new(LiveTable::default())),
            version: AtomicU64::new(0),
            cursors: Mutex::new(BTreeMap::new()),
            stats,
            connections: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
            table_changed,
        });
        runtime.spawn(tcp::reconcile_listeners(shared.clone(), table_rx));
        if let Some(l) = http {
            let proxy = http::Proxy::new(shared.clone());
            runtime.spawn(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => proxy.serve(l).await,
                    Err(e) => tracing::error!(error = %e, "HTTP listener unusable"),
                }
            });
        }
        if let Some(l) = admin {
            let stats = shared.stats.clone();
            runtime.spawn(async move {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => admin::serve(l, stats).await,
                    Err(e) => tracing::error!(error = %e, "admin listener unusable"),
                }
            });
        }
        Ok(DataPlane {
            inner: Arc::new(Inner {
                shared,
                runtime: Mutex::new(Some(runtime)),
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
        if let Some(rt) = self.inner.runtime.lock().expect("runtime lock").take() {
            rt.shutdown_background();
        }
    }
}

impl crate::process::TablePublisher for DataPlane {
    fn publish(&self, table: Arc<Table>) {
        DataPlane::publish(self, table);
    }
}
