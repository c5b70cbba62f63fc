//! A simulated network for [`Node`]s hosted in actix on tokio's paused clock: the second
//! simulation host, next to the discrete-event [`crate::sim::Sim`].
//!
//! Run every node in one actix `System` on a current-thread tokio runtime built with
//! `start_paused(true)`; give each node a [`NodeConfig::simulated`] configuration sharing one
//! [`SimNetwork`]. Messages between nodes are encoded as on the wire and delivered after a
//! latency drawn from the network's seeded RNG, each by its own task (no central delay queue);
//! losses, partitions (symmetric and one-way), heals and crashes are decided by the network.
//! Per pair of nodes, messages arrive in the order they were sent.
//!
//! Components that spawn tokio tasks of their own (openraft, for one) run unchanged on this
//! host, which is why it exists beside the faster event loop.
//!
//! [`Node`]: crate::Node
//! [`NodeConfig::simulated`]: crate::NodeConfig::simulated

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::message::{AnyMessage, Header};
use crate::rng::{stable_hash, stable_hash_extend, Rng, STABLE_HASH_START};
use crate::sim::NetworkFaults;
use crate::upid::{NodeAddr, Upid};

/// Where the network delivers: implemented by the node.
pub(crate) trait SimEndpoint: Send + Sync {
    fn deliver(&self, header: &Header, body: Bytes);
    fn peer_lost(&self, node: &NodeAddr);
}

type Link = (NodeAddr, NodeAddr);

struct InFlight {
    at: tokio::time::Instant,
    header: Header,
    body: Bytes,
}

struct NetInner {
    rng: Rng,
    faults: NetworkFaults,
    link_timeout: Duration,
    origin: tokio::time::Instant,
    nodes: BTreeMap<NodeAddr, Weak<dyn SimEndpoint>>,
    blocked: BTreeSet<Link>,
    queues: HashMap<Link, VecDeque<InFlight>>,
    last_arrival: HashMap<Link, tokio::time::Instant>,
    /// Crashed node → nodes owed a `peer_lost` for it: delivered at the link timeout, or at once
    /// when the node comes back earlier, so news of its previous life's death comes first.
    pending_crash_breaks: BTreeMap<NodeAddr, BTreeSet<NodeAddr>>,
    trace: u64,
    delivered: u64,
    dropped: u64,
}

/// The shared simulated network. Cheap to clone.
#[derive(Clone)]
pub struct SimNetwork {
    inner: Arc<Mutex<NetInner>>,
}

impl SimNetwork {
    /// A network whose decisions derive from `seed`. Create it inside the paused runtime.
    pub fn new(seed: u64, faults: NetworkFaults, link_timeout: Duration) -> Self {
        SimNetwork {
            inner: Arc::new(Mutex::new(NetInner {
                rng: Rng::derive(seed, "simnet"),
                faults,
                link_timeout,
                origin: tokio::time::Instant::now(), // determinism-ok: paused clock in simulation
                nodes: BTreeMap::new(),
                blocked: BTreeSet::new(),
                queues: HashMap::new(),
                last_arrival: HashMap::new(),
                pending_crash_breaks: BTreeMap::new(),
                trace: STABLE_HASH_START,
                delivered: 0,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetInner> {
        self.inner.lock().expect("simnet lock")
    }

    pub(crate) fn attach(&self, addr: &NodeAddr, endpoint: Weak<dyn SimEndpoint>) {
        let owed = {
            let mut n = self.lock();
            n.nodes.insert(addr.clone(), endpoint);
            let owed: Vec<Arc<dyn SimEndpoint>> = n
                .pending_crash_breaks
                .remove(addr)
                .unwrap_or_default()
                .iter()
                .filter_map(|at| n.nodes.get(at).and_then(Weak::upgrade))
                .collect();
            owed
        };
        for endpoint in owed {
            endpoint.peer_lost(addr);
        }
    }

    /// Fingerprint of every delivery so far.
    pub fn trace_hash(&self) -> u64 {
        self.lock().trace
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let n = self.lock();
        (n.delivered, n.dropped)
    }

    /// Change the network's behaviour from now on.
    pub fn set_faults(&self, faults: NetworkFaults) {
        self.lock().faults = faults;
    }

    fn is_up(n: &NetInner, addr: &NodeAddr) -> bool {
        n.nodes.get(addr).is_some_and(|w| w.strong_count() > 0)
    }

    pub(crate) fn send(&self, from: &Upid, to: &Upid, msg: &dyn AnyMessage) {
        let body = match msg.encode() {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(message = msg.name(), error = %e, "message does not encode; dropped");
                return;
            }
        };
        let (src, dst) = (from.node(), to.node());
        let mut n = self.lock();
        let loss = n.faults.loss;
        if n.blocked.contains(&(src.clone(), dst.clone())) || n.rng.chance(loss) {
            n.dropped += 1;
            return;
        }
        let span = n.faults.latency_max.saturating_sub(n.faults.latency_min);
        let latency =
            n.faults.latency_min + Duration::from_nanos(n.rng.between(0, span.as_nanos() as u64));
        let link = (src, dst);
        let earliest = tokio::time::Instant::now() + latency; // determinism-ok: paused clock
        let at = match n.last_arrival.get(&link) {
            Some(last) if *last > earliest => *last,
            _ => earliest,
        };
        n.last_arrival.insert(link.clone(), at);
        n.queues
            .entry(link.clone())
            .or_default()
            .push_back(InFlight {
                at,
                header: Header {
                    from: from.clone(),
                    to: to.clone(),
                    name: msg.name().to_string(),
                },
                body,
            });
        drop(n);
        // Each message has its own timer task; on waking, it delivers every message of its
        // link that is due, in order, so the link stays FIFO whatever order timers fire in.
        let net = self.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(at).await;
            net.deliver_due(&link);
        });
    }

    fn deliver_due(&self, link: &Link) {
        loop {
            let (endpoint, header, body) = {
                let mut n = self.lock();
                let now = tokio::time::Instant::now(); // determinism-ok: paused clock
                let Some(queue) = n.queues.get_mut(link) else {
                    return;
                };
                match queue.front() {
                    Some(f) if f.at <= now => {}
                    _ => return,
                }
                let f = queue.pop_front().expect("front exists");
                let blocked = n.blocked.contains(link);
                let endpoint = n.nodes.get(&link.1).and_then(Weak::upgrade);
                match endpoint {
                    Some(e) if !blocked => {
                        let t = (now - n.origin).as_nanos() as u64;
                        let mut h = n.trace;
                        for part in [
                            &t.to_le_bytes()[..],
                            f.header.from.to_string().as_bytes(),
                            f.header.to.to_string().as_bytes(),
                            f.header.name.as_bytes(),
                            &stable_hash(&f.body).to_le_bytes()[..],
                        ] {
                            h = stable_hash_extend(h, part);
                        }
                        n.trace = h;
                        n.delivered += 1;
                        (e, f.header, f.body)
                    }
                    _ => {
                        n.dropped += 1;
                        continue;
                    }
                }
            };
            endpoint.deliver(&header, body);
        }
    }

    /// A node linked to a process on `to`: if `to` cannot be reached, the link breaks after
    /// the link timeout.
    pub(crate) fn connect(&self, from: &NodeAddr, to: &NodeAddr) {
        let n = self.lock();
        let reachable = Self::is_up(&n, to)
            && !n.blocked.contains(&(from.clone(), to.clone()))
            && !n.blocked.contains(&(to.clone(), from.clone()));
        drop(n);
        if !reachable {
            self.break_link_later(from, to);
        }
    }

    fn break_link_later(&self, at_node: &NodeAddr, lost: &NodeAddr) {
        let timeout = self.lock().link_timeout;
        let net = self.clone();
        let (at_node, lost) = (at_node.clone(), lost.clone());
        tokio::task::spawn_local(async move {
            tokio::time::sleep(timeout).await;
            let endpoint = net.lock().nodes.get(&at_node).and_then(Weak::upgrade);
            if let Some(e) = endpoint {
                e.peer_lost(&lost);
            }
        });
    }

    /// Cut messages from `from` to `to`; links between them break both ways.
    pub fn cut_one_way(&self, from: &NodeAddr, to: &NodeAddr) {
        if self.lock().blocked.insert((from.clone(), to.clone())) {
            self.break_link_later(from, to);
            self.break_link_later(to, from);
        }
    }

    /// Cut both directions between `a` and `b`.
    pub fn partition(&self, a: &NodeAddr, b: &NodeAddr) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Remove every cut.
    pub fn heal(&self) {
        self.lock().blocked.clear();
    }

    /// A node is gone (crashed or shut down): every other node's links to it break after the
    /// link timeout, and messages in flight to it are dropped.
    pub fn crash(&self, addr: &NodeAddr) {
        let timeout = {
            let mut n = self.lock();
            n.nodes.remove(addr);
            let others: BTreeSet<NodeAddr> = n.nodes.keys().cloned().collect();
            n.pending_crash_breaks.insert(addr.clone(), others);
            n.link_timeout
        };
        let net = self.clone();
        let lost = addr.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(timeout).await;
            let owed: Vec<Arc<dyn SimEndpoint>> = {
                let mut n = net.lock();
                let at_nodes = n.pending_crash_breaks.remove(&lost).unwrap_or_default();
                at_nodes
                    .iter()
                    .filter_map(|at| n.nodes.get(at).and_then(Weak::upgrade))
                    .collect()
            };
            for endpoint in owed {
                endpoint.peer_lost(&lost);
            }
        });
    }
}
