//! TCP mode: one listener per service port, bytes spliced to a backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::stats::ErrorClass;
use super::{Pick, Shared};
use crate::limits::{LISTENER_REBIND_INTERVAL, PICK_TABLE_REREADS_MAX, TCP_CONNECT_ATTEMPTS_MAX};

/// Keep one listener per service port of the current table: bind the new ones, close the
/// removed ones (their established connections are separate tasks and stay open), retry
/// ports that could not be bound.
pub(crate) async fn reconcile_listeners(shared: Arc<Shared>, mut changed: watch::Receiver<u64>) {
    let mut listeners: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
    loop {
        let wanted: Vec<u16> = {
            let live = shared.live();
            let mut ports: Vec<u16> = live.tcp.keys().copied().collect();
            ports.sort_unstable();
            ports
        };
        let removed: Vec<u16> = listeners
            .keys()
            .filter(|p| wanted.binary_search(p).is_err())
            .copied()
            .collect();
        for port in removed {
            if let Some(task) = listeners.remove(&port) {
                task.abort();
            }
            shared
                .stats
                .registry
                .lock()
                .expect("stats lock")
                .listeners
                .remove(&port);
            tracing::info!(port, "service port closed");
        }
        let mut failed = false;
        for &port in &wanted {
            if listeners.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(shared.config.listen_ip, port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let bound = listener.local_addr().map_or(addr, |a| a);
                    {
                        let mut reg = shared.stats.registry.lock().expect("stats lock");
                        reg.listeners.insert(port, bound.to_string());
                        reg.listener_errors.remove(&port);
                    }
                    tracing::info!(port, %bound, "service port listening");
                    listeners.insert(
                        port,
                        tokio::spawn(accept_loop(shared.clone(), port, listener)),
                    );
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(port, error = %e, "cannot bind service port; will retry");
                    shared
                        .stats
                        .registry
                        .lock()
                        .expect("stats lock")
                        .listener_errors
                        .insert(port, format!("cannot listen on {addr}: {e}"));
                }
            }
        }
        {
            let mut reg = shared.stats.registry.lock().expect("stats lock");
            reg.listener_errors
                .retain(|p, _| wanted.binary_search(p).is_ok());
        }
        if failed {
            tokio::select! {
                biased;
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(LISTENER_REBIND_INTERVAL) => {}
            }
        } else if changed.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, port: u16, listener: TcpListener) {
    loop {
        let Ok(permit) = shared.connections.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((client, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    forward(&shared, port, client).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connect `client` to a backend of the port's route and splice until either side closes.
async fn forward(shared: &Shared, port: u16, mut client: TcpStream) {
    let Some(mut route) = shared.live().tcp.get(&port).cloned() else {
        return; // The port was just removed: close.
    };
    let _ = client.set_nodelay(true);
    let mut tried = Vec::with_capacity(TCP_CONNECT_ATTEMPTS_MAX);
    let mut rereads = 0;
    while tried.len() < TCP_CONNECT_ATTEMPTS_MAX {
        let (i, active) = match route.pick(&tried) {
            Pick::Chosen(i, active) => (i, active),
            // Every backend of the table read was retired since: read it again, once the
            // table that retired them is in place (a fresh start, nothing was tried there).
            Pick::Nothing { stale: true }
                if tried.is_empty() && rereads < PICK_TABLE_REREADS_MAX =>
            {
                rereads += 1;
                let Some(r) = shared.live().tcp.get(&port).cloned() else {
                    return;
                };
                route = r;
                continue;
            }
            Pick::Nothing { .. } => break,
        };
        tried.push(i);
        let backend = &route.backends[i];
        let started = tokio::time::Instant::now(); // determinism-ok: I/O shell, latency metric
        let connect = TcpStream::connect((backend.endpoint.host.as_str(), backend.endpoint.port));
        match tokio::time::timeout(shared.config.connect_timeout, connect).await {
            Ok(Ok(mut server)) => {
                backend.stats.latency.observe(started.elapsed());
                backend.stats.connections.fetch_add(1, Relaxed);
                let _ = server.set_nodelay(true);
                let splice = tokio::io::copy_bidirectional(&mut client, &mut server);
                tokio::select! {
                    r = splice => if let Err(e) = r {
                        tracing::debug!(port, backend = %backend.address, error = %e, "TCP connection ended with an error");
                    },
                    () = drained(shared, port, &backend.endpoint.task_id, &backend.address) => {
                        tracing::info!(port, backend = %backend.address, deadline = ?shared.config.tcp_drain_timeout, "backend left the table; connection closed at its drain deadline");
                    }
                }
                drop(active);
                return;
            }
            Ok(Err(e)) => {
                backend.stats.error(ErrorClass::Connect);
                tracing::debug!(port, backend = %backend.address, error = %e, "backend refused; trying another");
            }
            Err(_) => {
                backend.stats.error(ErrorClass::Timeout);
                tracing::debug!(port, backend = %backend.address, "backend connect timed out; trying another");
            }
        }
    }
    route.app.no_backend.fetch_add(1, Relaxed);
    tracing::debug!(port, app = %route.app_id, "no backend took the connection; closing it");
}

/// True while the current table still routes `port` to this backend (same task, same
/// address). A draining backend is not in the table's routes.
fn is_routed(shared: &Shared, port: u16, task_id: &str, address: &str) -> bool {
    shared.live().tcp.get(&port).is_some_and(|route| {
        route
            .backends
            .iter()
            .any(|b| b.endpoint.task_id == task_id && b.address == address)
    })
}

/// Completes [`DataPlaneConfig::tcp_drain_timeout`](super::DataPlaneConfig::tcp_drain_timeout)
/// after the backend stopped being routed; never while it is routed. Woken only by table
/// updates, so an established connection costs nothing in between.
async fn drained(shared: &Shared, port: u16, task_id: &str, address: &str) {
    let mut changed = shared.table_changed.subscribe();
    while is_routed(shared, port, task_id, address) {
        if changed.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::time::sleep(shared.config.tcp_drain_timeout).await;
}
