//! Per-app and per-backend counters, kept in atomics on the hot path, read by `/stats` (JSON)
//! and `/metrics` (Prometheus text, through a [`prometheus_client`] collector).

use std::collections::BTreeMap;
use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use crate::table::Table;

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram in atomics: counts per bucket (the last one is +Inf) and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Count one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Cumulative `(upper bound, count)` pairs, +Inf last, as Prometheus wants them.
    fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            total += b.load(Relaxed);
            let bound = LATENCY_BUCKETS_SECONDS
                .get(i)
                .copied()
                .unwrap_or(f64::INFINITY);
            out.push((bound, total));
        }
        out
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), in milliseconds; `None`
    /// without observations or when it falls in the +Inf bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let c = self.cumulative();
        let total = c.last().map(|x| x.1)?;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        c.iter()
            .find(|(_, n)| *n >= rank)
            .map(|(b, _)| *b * 1000.0)
            .filter(|v| v.is_finite())
    }
}

/// Error classes counted per backend.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connecting failed (refused, unreachable).
    Connect,
    /// Connecting or waiting for the response headers took too long (HTTP 504).
    Timeout,
    /// The backend answered something that is not HTTP, or reset the connection (HTTP 502).
    BadResponse,
}

/// Counters of one backend (one task's host port), shared by every table version that has it.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Active TCP connections, or HTTP requests in flight (response body included).
    pub active: AtomicU64,
    /// TCP connections established.
    pub connections: AtomicU64,
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Connect errors.
    pub errors_connect: AtomicU64,
    /// Timeouts.
    pub errors_timeout: AtomicU64,
    /// Bad responses.
    pub errors_bad_response: AtomicU64,
    /// Responses by status class: 1xx..5xx at index 0..4.
    pub responses: [AtomicU64; 5],
    /// Time to connect (TCP) or to the response headers (HTTP).
    pub latency: Histogram,
    /// Not in the current table's routes (draining or removed): no new connection or request
    /// may go to it, even from a table read before it was retired. See
    /// [`BackendStats::begin_unless_retired`].
    pub(crate) retired: AtomicBool,
}

impl BackendStats {
    /// Count an error.
    pub fn error(&self, class: ErrorClass) {
        match class {
            ErrorClass::Connect => &self.errors_connect,
            ErrorClass::Timeout => &self.errors_timeout,
            ErrorClass::BadResponse => &self.errors_bad_response,
        }
        .fetch_add(1, Relaxed);
    }

    /// Count a response's status.
    pub fn response(&self, status: u16) {
        if (100..600).contains(&status) {
            self.responses[usize::from(status / 100 - 1)].fetch_add(1, Relaxed);
        }
    }

    /// Mark one connection or request active until the guard is dropped; `None` (and nothing
    /// counted) when the backend is retired.
    ///
    /// Why the order matters: whoever waits for a drained backend publishes the table that
    /// retires it, then waits for `active == 0`. Publishing stores `retired` (SeqCst) before
    /// reading `active` (SeqCst); here `active` is raised (SeqCst) before `retired` is read
    /// (SeqCst). In the single total order of those four operations either this read sees
    /// the backend retired (and the count is undone), or the waiter's read sees the count —
    /// so a request picked from a stale table can never slip past a drain.
    pub(crate) fn begin_unless_retired(self: &Arc<Self>) -> Option<ActiveGuard> {
        // Acquire: whoever then reads the table again sees the one that retired it.
        if self.retired.load(Acquire) {
            return None;
        }
        self.active.fetch_add(1, SeqCst);
        let guard = ActiveGuard(self.clone());
        if self.retired.load(SeqCst) {
            return None; // The guard's drop undoes the count.
        }
        Some(guard)
    }

    /// Whether a table published since retired this backend.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Acquire)
    }
}

/// Holds one unit of [`BackendStats::active`].
#[derive(Debug)]
pub struct ActiveGuard(Arc<BackendStats>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        // SeqCst (not Relaxed): whoever reads 0 must see the request's work done.
        self.0.active.fetch_sub(1, SeqCst);
    }
}

/// Counters of one app.
#[derive(Debug, Default)]
pub struct AppStats {
    /// Requests or connections that found no backend (HTTP 503, TCP close).
    pub no_backend: AtomicU64,
}

/// Identity of a backend in the stats: app, task and address.
pub type BackendKey = (String, String, String);

/// Every counter of a data plane.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP requests matching no route (404).
    pub no_route: AtomicU64,
    /// Tables published.
    pub table_updates: AtomicU64,
    pub(crate) registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) backends: BTreeMap<BackendKey, Arc<BackendStats>>,
    pub(crate) apps: BTreeMap<String, Arc<AppStats>>,
    pub(crate) table: Arc<Table>,
    pub(crate) listeners: BTreeMap<u16, String>,
    pub(crate) listener_errors: BTreeMap<u16, String>,
    pub(crate) http_listener: Option<String>,
}

/// `/stats` as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    /// The table's version (`None` before the first snapshot from Marathon).
    pub table_version: Option<u64>,
    /// Tables published so far.
    pub table_updates: u64,
    /// Problems in the current table (bad labels, conflicts).
    pub problems: Vec<crate::table::Problem>,
    /// Listening service ports → bound address.
    pub tcp_listeners: BTreeMap<u16, String>,
    /// Service ports that could not be bound → why (retried).
    pub tcp_listener_errors: BTreeMap<u16, String>,
    /// The HTTP listener's address.
    pub http_listener: Option<String>,
    /// HTTP requests matching no route.
    pub no_route: u64,
    /// Per app.
    pub apps: Vec<AppSnapshot>,
}

/// One app in [`StatsSnapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct AppSnapshot {
    /// App id.
    pub app_id: String,
    /// Requests or connections with no backend to go to.
    pub no_backend: u64,
    /// Its backends, including removed ones that still have active connections.
    pub backends: Vec<BackendSnapshot>,
}

/// One backend in [`AppSnapshot`].
#[derive(Clone, Debug, Serialize)]
pub struct BackendSnapshot {
    /// Task id.
    pub task_id: String,
    /// `host:port`.
    pub address: String,
    /// In the current table (false: removed or draining, finishing its connections).
    pub in_table: bool,
    /// Active connections or requests in flight.
    pub active: u64,
    /// TCP connections established.
    pub connections: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Connect errors.
    pub errors_connect: u64,
    /// Timeouts.
    pub errors_timeout: u64,
    /// Bad responses.
    pub errors_bad_response: u64,
    /// Responses by class `1xx`..`5xx`.
    pub responses: BTreeMap<String, u64>,
    /// Median latency (bucket bound), milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency (bucket bound), milliseconds.
    pub latency_p99_ms: Option<f64>,
}

impl Stats {
    /// A consistent-enough copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let reg = self.registry.lock().expect("stats lock");
        let in_table = |app: &str, task: &str, addr: &str| {
            reg.table
                .tcp
                .values()
                .chain(reg.table.http.values().flatten().map(|r| &r.route))
                .any(|r| {
                    r.app_id == app
                        && r.backends
                            .iter()
                            .any(|e| e.task_id == task && format!("{}:{}", e.host, e.port) == addr)
                })
        };
        let mut apps: BTreeMap<String, AppSnapshot> = reg
            .apps
            .iter()
            .map(|(id, a)| {
                (
                    id.clone(),
                    AppSnapshot {
                        app_id: id.clone(),
                        no_backend: a.no_backend.load(Relaxed),
                        backends: Vec::new(),
                    },
                )
            })
            .collect();
        for ((app, task, addr), b) in &reg.backends {
            let entry = apps.entry(app.clone()).or_insert_with(|| AppSnapshot {
                app_id: app.clone(),
                no_backend: 0,
                backends: Vec::new(),
            });
            entry.backends.push(BackendSnapshot {
                task_id: task.clone(),
                address: addr.clone(),
                in_table: in_table(app, task, addr),
                active: b.active.load(SeqCst),
                connections: b.connections.load(Relaxed),
                requests: b.requests.load(Relaxed),
                errors_connect: b.errors_connect.load(Relaxed),
                errors_timeout: b.errors_timeout.load(Relaxed),
                errors_bad_response: b.errors_bad_response.load(Relaxed),
                responses: b
                    .responses
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (format!("{}xx", i + 1), n.load(Relaxed)))
                    .collect(),
                latency_p50_ms: b.latency.quantile_ms(0.5),
                latency_p99_ms: b.latency.quantile_ms(0.99),
            });
        }
        StatsSnapshot {
            table_version: reg.table.version,
            table_updates: self.table_updates.load(Relaxed),
            problems: reg.table.problems.clone(),
            tcp_listeners: reg.listeners.clone(),
            tcp_listener_errors: reg.listener_errors.clone(),
            http_listener: reg.http_listener.clone(),
            no_route: self.no_route.load(Relaxed),
            apps: apps.into_values().collect(),
        }
    }
}

/// Exposes a data plane's [`Stats`] to a `prometheus_client` registry.
#[derive(Debug, Clone)]
pub struct StatsCollector(pub Arc<Stats>);

type Labels<'a> = [(&'static str, &'a str); 3];

/// Reads one counter of a backend.
type CounterOf = fn(&BackendStats) -> u64;

fn labels(k: &BackendKey) -> Labels<'_> {
    [
        ("app", k.0.as_str()),
        ("task", k.1.as_str()),
        ("backend", k.2.as_str()),
    ]
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let reg = self.0.registry.lock().expect("stats lock");
        let counters: [(&str, &str, CounterOf); 2] = [
            (
                "plateau_balancer_backend_connections",
                "TCP connections established to the backend",
                |b| b.connections.load(Relaxed),
            ),
            (
                "plateau_balancer_backend_requests",
                "HTTP requests sent to the backend",
                |b| b.requests.load(Relaxed),
            ),
        ];
        for (name, help, get) in counters {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (k, b) in &reg.backends {
                m.encode_family(&labels(k))?
                    .encode_counter::<NoLabelSet, _, u64>(&get(b), None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "plateau_balancer_backend_errors",
                "Backend errors by class: connect, timeout, bad_response",
                None,
                MetricType::Counter,
            )?;
            for (k, b) in &reg.backends {
                for (class, v) in [
                    ("connect", &b.errors_connect),
                    ("timeout", &b.errors_timeout),
                    ("bad_response", &b.errors_bad_response),
                ] {
                    let l = [labels(k).as_slice(), &[("class", class)]].concat();
                    m.encode_family(&l)?
                        .encode_counter::<NoLabelSet, _, u64>(&v.load(Relaxed), None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "plateau_balancer_backend_responses",
                "HTTP responses from the backend by status class",
                None,
                MetricType::Counter,
            )?;
            for (k, b) in &reg.backends {
                for (i, v) in b.responses.iter().enumerate() {
                    let code = format!("{}xx", i + 1);
                    let l = [labels(k).as_slice(), &[("code", code.as_str())]].concat();
                    m.encode_family(&l)?
                        .encode_counter::<NoLabelSet, _, u64>(&v.load(Relaxed), None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "plateau_balancer_backend_active",
                "Active TCP connections or HTTP requests in flight",
                None,
                MetricType::Gauge,
            )?;
            for (k, b) in &reg.backends {
                m.encode_family(&labels(k))?
                    .encode_gauge(&b.active.load(Relaxed))?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "plateau_balancer_backend_latency_seconds",
                "Time to connect (TCP) or to the response headers (HTTP)",
                None,
                MetricType::Histogram,
            )?;
            for (k, b) in &reg.backends {
                let h = &b.latency;
                m.encode_family(&labels(k))?
                    .encode_histogram::<NoLabelSet>(
                        h.sum_micros.load(Relaxed) as f64 / 1e6,
                        h.count(),
                        &h.cumulative(),
                        None,
                    )?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "plateau_balancer_app_no_backend",
                "Requests or connections that found no backend (HTTP 503)",
                None,
                MetricType::Counter,
            )?;
            for (app, a) in &reg.apps {
                m.encode_family(&[("app", app.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&a.no_backend.load(Relaxed), None)?;
            }
        }
        let no_route =
            prometheus_client::metrics::counter::ConstCounter::new(stats.no_route.load(Relaxed));
        no_route.encode(encoder.encode_descriptor(
            "plateau_balancer_no_route",
            "HTTP requests matching no route (404)",
            None,
            no_route.metric_type(),
        )?)?;
        let updates = prometheus_client::metrics::counter::ConstCounter::new(
            stats.table_updates.load(Relaxed),
        );
        updates.encode(encoder.encode_descriptor(
            "plateau_balancer_table_updates",
            "Routing tables published",
            None,
            updates.metric_type(),
        )?)?;
        let gauges: [(&str, &str, i64); 3] = [
            (
                "plateau_balancer_table_version",
                "Version of the change feed the table reflects (-1: none yet)",
                reg.table.version.map_or(-1, |v| v as i64),
            ),
            (
                "plateau_balancer_table_problems",
                "Ignored labels and conflicts in the current table",
                (reg.table.problems.len() as u64 + reg.table.problems_dropped) as i64,
            ),
            (
                "plateau_balancer_tcp_listener_errors",
                "Service ports that could not be bound",
                reg.listener_errors.len() as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let g = prometheus_client::metrics::gauge::ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_use_bucket_bounds() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for _ in 0..99 {
            h.observe(Duration::from_micros(800));
        }
        h.observe(Duration::from_millis(40));
        assert_eq!(h.quantile_ms(0.5), Some(1.0));
        assert_eq!(h.quantile_ms(0.99), Some(1.0));
        assert_eq!(h.quantile_ms(1.0), Some(50.0));
        assert_eq!(h.cumulative().last().unwrap().1, 100);
    }

    #[test]
    fn metrics_encode_as_prometheus_text() {
        let stats = Arc::new(Stats::default());
        let b = Arc::new(BackendStats::default());
        b.requests.fetch_add(3, Relaxed);
        b.response(200);
        b.error(ErrorClass::Timeout);
        b.latency.observe(Duration::from_millis(3));
        stats
            .registry
            .lock()
            .unwrap()
            .backends
            .insert(("/a".into(), "t1".into(), "127.0.0.1:1".into()), b);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(StatsCollector(stats)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            "plateau_balancer_backend_requests_total{app=\"/a\",task=\"t1\",backend=\"127.0.0.1:1\"} 3"
        ), "{out}");
        assert!(out.contains("class=\"timeout\"} 1"), "{out}");
        assert!(
            out.contains("plateau_balancer_backend_latency_seconds_bucket"),
            "{out}"
        );
        assert!(out.contains("plateau_balancer_table_version -1"), "{out}");
    }
}
