//! The simulator's host: many nodes in one thread, on a virtual clock, over a seeded network
//! that loses, duplicates and delays messages, partitions and heals, and crashes nodes.
//!
//! It is a plain discrete-event loop — a binary heap of `(time, sequence, event)` — which the
//! measurements in `ARCHITECTURE.md` found the fastest host for simulation. It hosts the very
//! same [`Process`] code as the actix [`crate::Node`]; a process cannot tell them apart.
//! Everything it decides (latencies, losses, duplicates) is drawn from the run's seed, so the
//! same seed replays the same run bit for bit; [`Sim::trace_hash`] fingerprints it.
//!
//! Semantics, the same as the real transport:
//! - messages between two nodes arrive in the order they were sent, at most once (unless the
//!   duplication fault is on, which models a misbehaving network for stress tests);
//! - a message is lost (the loss fault) only with its connection, as with the real transport,
//!   which retransmits on a live connection and loses data only when the connection breaks;
//! - messages within a node are delivered at the current instant, in order;
//! - a process linked to another is told `exited` when the other terminates (same node) or when
//!   the connection to the other's node breaks: its node crashed, a partition cut it, it was
//!   paused, or a message on it was lost, after [`SimConfig::link_timeout`] (the real
//!   transport's idle timeout). Both ends learn it at the same instant; a link made to that
//!   node in between is made on the broken connection, and learns it then too.
//!
//! ```
//! use plateau_runtime::sim::{Sim, SimConfig};
//! use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
//! use serde::{Deserialize, Serialize};
//! use std::time::Duration;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Tick(u32);
//! impl Message for Tick { const NAME: &'static str = "doc.Tick"; }
//!
//! #[derive(Default)]
//! struct Counter { ticks: u32 }
//! impl Counter {
//!     fn handle_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, t: Tick) {
//!         self.ticks += 1;
//!         if t.0 > 0 { ctx.delay(Duration::from_secs(1), Tick(t.0 - 1)); }
//!     }
//! }
//! impl Process for Counter {
//!     fn install(h: &mut Handlers<Self>) { h.on(Self::handle_tick); }
//!     fn initialize(&mut self, ctx: &mut Context<'_>) { ctx.delay(Duration::from_secs(1), Tick(4)); }
//! }
//!
//! let mut sim = Sim::new(SimConfig::new(42));
//! let node = NodeAddr::new("10.0.0.1", 5050);
//! sim.add_node(node.clone());
//! let upid = sim.spawn(&node, "counter", Counter::default());
//! sim.run_for(Duration::from_secs(60));
//! assert_eq!(sim.inspect(&upid, |c: &Counter| c.ticks), Some(5));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hashbrown::HashTable;
use rand_core::RngCore;

use crate::clock::Instant;
use crate::limits::SIM_EVENTS_PENDING_MAX;
use crate::message::{AnyMessage, Message, Payload};
use crate::process::{
    Context, Effect, ErasedProcess, Hosted, Mailbox, Process, ProcessState, TimeSource, TimerId,
};
use crate::rng::{stable_hash_words, LookupHasher, LookupMap, LookupSet, Rng, STABLE_HASH_START};
use crate::sim_queue::RadixQueue;
use crate::upid::{NodeAddr, Upid};
use std::borrow::Cow;

/// The network's behaviour; may be changed during a run ([`Sim::set_faults`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Shortest one-way latency between two nodes.
    pub latency_min: Duration,
    /// Longest one-way latency between two nodes.
    pub latency_max: Duration,
    /// Probability that a message between nodes is lost, and its connection with it (linked
    /// processes on both sides are told `exited` after the link timeout).
    pub loss: f64,
    /// Probability that a message between nodes is delivered twice.
    pub duplicate: f64,
}

impl NetworkFaults {
    /// A reliable network with 0.1-2 ms latency.
    pub fn none() -> Self {
        NetworkFaults {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(2),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// Configuration of a simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The run's seed: everything random derives from it.
    pub seed: u64,
    /// Network behaviour at start.
    pub faults: NetworkFaults,
    /// How long after a connection breaks (crash, partition) linked processes learn of it.
    pub link_timeout: Duration,
    /// Calendar time at the start of the run.
    pub start_wall: SystemTime,
}

impl SimConfig {
    /// A reliable network, 1 s link timeout, calendar starting 2026-01-01T00:00:00Z.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            faults: NetworkFaults::none(),
            link_timeout: Duration::from_secs(1),
            start_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        }
    }
}

/// Counters of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events handled.
    pub events: u64,
    /// Messages handed to processes.
    pub delivered: u64,
    /// Messages dropped: lost, partitioned, to a crashed node or unknown process.
    pub dropped: u64,
    /// Messages the network duplicated.
    pub duplicated: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// `exited` notifications delivered.
    pub exits: u64,
    /// Messages a process had no handler for or could not decode.
    pub undeliverable: u64,
}

/// A node's index in `Sim::nodes`: nodes are never removed, so it stays valid for the run.
type NodeIx = u32;

/// No node: the sender of a message posted by a driver from outside any node, or the receiver
/// of one posted to an address no node has.
const NO_NODE: NodeIx = NodeIx::MAX;

enum Event {
    Deliver {
        from: Upid,
        to: Upid,
        /// The nodes of `from` and `to` ([`NO_NODE`] when none), found when the message was
        /// sent.
        from_node: NodeIx,
        to_node: NodeIx,
        payload: Payload,
        /// Incarnation of the receiving node when sent: a restarted node does not get messages
        /// sent to its previous life.
        to_incarnation: u64,
        remote: bool,
    },
    Timer {
        to: Upid,
        node: NodeIx,
        instance: u64,
        id: TimerId,
        msg: Box<dyn AnyMessage>,
    },
    Exited {
        to: Upid,
        instance: u64,
        who: Upid,
    },
    /// The link timeout after a crash elapsed: deliver the crash's pending `exited`s.
    LinkBreak {
        lost: NodeIx,
        incarnation: u64,
    },
}

thread_local! {
    /// The simulated time of the event being handled on this thread, for log stamps.
    static THREAD_SIM_TIME: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// The simulated time of the simulation stepping on this thread, if one is: a log formatter
/// stamps simulator logs with it instead of the wall clock.
pub fn thread_sim_time() -> Option<Instant> {
    THREAD_SIM_TIME.with(std::cell::Cell::get)
}

/// The queue key: time, then scheduling order (FIFO among events at the same time).
fn queue_key(at: Instant, seq: u64) -> u128 {
    (u128::from(at.as_nanos()) << 64) | u128::from(seq)
}

/// The time of a queue key.
fn key_time(key: u128) -> Instant {
    Instant::ZERO + Duration::from_nanos((key >> 64) as u64)
}

struct SimProcess {
    hosted: Box<dyn ErasedProcess>,
    state: ProcessState,
    instance: u64,
    timers: LookupSet<TimerId>,
    links: BTreeSet<Upid>,
}

struct SimNode {
    addr: NodeAddr,
    up: bool,
    incarnation: u64,
    seed: u64,
    processes: BTreeMap<String, SimProcess>,
    /// Stopped (as by SIGSTOP): its events wait in `held` until it resumes.
    paused: bool,
    held: Vec<Event>,
}

/// An `exited` owed to a process: (watcher, its instance, the process gone).
type OwedExit = (Upid, u64, Upid);

/// A message posted from outside a handler: (from, to, message).
type PostedMessage = (Upid, Upid, Box<dyn AnyMessage>);

/// Messages posted to processes from outside their handlers (a side effect's callback), with
/// a count of them that the engine reads without taking the lock at every event.
#[derive(Default)]
struct PostedQueue {
    messages: Mutex<Vec<PostedMessage>>,
    count: AtomicUsize,
}

type Posted = Arc<PostedQueue>;

/// A simulated cluster: nodes, their processes, the network and the virtual clock.
pub struct Sim {
    config: SimConfig,
    faults: NetworkFaults,
    now: Instant,
    seq: u64,
    /// Events by [`queue_key`], as their slots in `events`: entries move between the
    /// queue's buckets, and an event is large.
    queue: RadixQueue<u32>,
    /// The pending events; a slot is reused once its event is taken (no allocation per
    /// event, and the slot reused is the one last freed, still in cache).
    events: Vec<Option<Event>>,
    /// Slots of `events` free for reuse.
    free_slots: Vec<u32>,
    /// The nodes, in the order they were added.
    nodes: Vec<SimNode>,
    /// `nodes` by address, hashed with [`node_hash`]: the engine finds a message's nodes from
    /// its `Upid`s without building a key. (A B-tree keyed by address cost a walk over the
    /// host names for each of the four or five lookups a message made.)
    node_index: HashTable<NodeIx>,
    /// `nodes` in address order, for everything that walks them: a walk's order is part of
    /// the trace.
    node_order: BTreeMap<NodeAddr, NodeIx>,
    net_rng: Rng,
    /// One-way cuts: messages from the first node to the second are dropped.
    blocked: BTreeSet<(NodeIx, NodeIx)>,
    /// Last scheduled arrival per directed link, to keep per-link FIFO order. Only looked
    /// up, never walked, so its order cannot leak into the run.
    last_arrival: LookupMap<(NodeIx, NodeIx), Instant>,
    /// Connections that broke and whose break is not detected yet: (lower node, higher node)
    /// -> when linked processes learn it. Only looked up, never walked.
    broken_until: LookupMap<(NodeIx, NodeIx), Instant>,
    next_instance: u64,
    /// `exited`s owed because a node crashed, delivered at the link timeout — or at once when
    /// the node restarts earlier, so that the news of its previous life's death always arrives
    /// before anything from its new life. Keyed by the crashed node: (its incarnation, owed).
    pending_breaks: BTreeMap<NodeIx, (u64, Vec<OwedExit>)>,
    trace: u64,
    stats: SimStats,
    effects: Vec<Effect>,
    /// The buffer messages between nodes are encoded into.
    encoded: Vec<u8>,
    posted: Posted,
    /// Nodes paused now (events are checked against pauses only while there is one).
    paused_nodes: usize,
    /// The node whose process handled the last event ([`NO_NODE`]: none yet, or the last
    /// event was handled by no process).
    last_node: NodeIx,
}

impl Sim {
    /// An empty simulation.
    pub fn new(config: SimConfig) -> Self {
        let net_rng = Rng::derive(config.seed, "sim.network");
        THREAD_SIM_TIME.with(|t| t.set(Some(Instant::ZERO)));
        Sim {
            faults: config.faults.clone(),
            config,
            now: Instant::ZERO,
            seq: 0,
            queue: RadixQueue::new(),
            events: Vec::new(),
            free_slots: Vec::new(),
            nodes: Vec::new(),
            node_index: HashTable::new(),
            node_order: BTreeMap::new(),
            net_rng,
            blocked: BTreeSet::new(),
            last_arrival: LookupMap::default(),
            broken_until: LookupMap::default(),
            next_instance: 1,
            pending_breaks: BTreeMap::new(),
            trace: STABLE_HASH_START,
            stats: SimStats::default(),
            effects: Vec::new(),
            encoded: Vec::new(),
            posted: Arc::default(),
            paused_nodes: 0,
            last_node: NO_NODE,
        }
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Calendar time now.
    pub fn wall_clock(&self) -> SystemTime {
        self.config.start_wall + self.now.since_origin()
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Fingerprint of everything delivered so far (time, sender, receiver, message, body).
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// The network's current behaviour.
    pub fn faults(&self) -> &NetworkFaults {
        &self.faults
    }

    /// Change the network's behaviour from now on.
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        assert!(faults.latency_min <= faults.latency_max);
        self.faults = faults;
    }

    /// The simulator's own RNG (for drawing faults), derived from the seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.net_rng
    }

    /// Add a node (up, without processes). Its per-node seed derives from the run's seed and
    /// its address.
    pub fn add_node(&mut self, addr: NodeAddr) {
        assert!(self.node_at(&addr).is_none(), "node added twice");
        let seed = Rng::derive(self.config.seed, &addr.to_string()).next_u64();
        let ix = NodeIx::try_from(self.nodes.len())
            .ok()
            .filter(|ix| *ix != NO_NODE)
            .expect("fewer than 2^32 - 1 nodes");
        let hash = node_hash(&addr.host, addr.port);
        self.node_order.insert(addr.clone(), ix);
        self.nodes.push(SimNode {
            addr,
            up: true,
            incarnation: 1,
            seed,
            processes: BTreeMap::new(),
            paused: false,
            held: Vec::new(),
        });
        let nodes = &self.nodes;
        self.node_index.insert_unique(hash, ix, |&i| {
            let a = &nodes[i as usize].addr;
            node_hash(&a.host, a.port)
        });
    }

    /// The index of the node at `host:port`, if there is one.
    fn node_ix(&self, host: &str, port: u16) -> Option<NodeIx> {
        let nodes = &self.nodes;
        self.node_index
            .find(node_hash(host, port), |&i| {
                let a = &nodes[i as usize].addr;
                a.port == port && *a.host == *host
            })
            .copied()
    }

    /// The index of the node at `addr`, if there is one.
    fn node_at(&self, addr: &NodeAddr) -> Option<NodeIx> {
        self.node_ix(&addr.host, addr.port)
    }

    /// The index of the node `upid` lives on, if there is one.
    fn node_of(&self, upid: &Upid) -> Option<NodeIx> {
        self.node_ix(&upid.host, upid.port)
    }

    /// The index of the node at `addr`: nodes are numbered from 0 in the order they were
    /// added, and keep their number for the run.
    pub fn node_index(&self, addr: &NodeAddr) -> Option<usize> {
        self.node_at(addr).map(|ix| ix as usize)
    }

    /// The index ([`Sim::node_index`]) of the node one of whose processes handled the last
    /// event [`Sim::step`] handled, if a process handled it (a message, a timer or an
    /// `exited`; not a message dropped or held for a paused node). An observer that only
    /// cares about some nodes can skip the events of the others.
    pub fn last_event_node(&self) -> Option<usize> {
        (self.last_node != NO_NODE).then_some(self.last_node as usize)
    }

    /// Addresses of all nodes, in order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeAddr> {
        self.node_order.keys()
    }

    /// True when the node exists and is up.
    pub fn is_up(&self, addr: &NodeAddr) -> bool {
        self.node_at(addr)
            .is_some_and(|ix| self.nodes[ix as usize].up)
    }

    /// True when the process exists (its node up).
    pub fn is_running(&self, upid: &Upid) -> bool {
        self.node_of(upid).is_some_and(|ix| {
            let n = &self.nodes[ix as usize];
            n.up && n.processes.contains_key(&*upid.name)
        })
    }

    /// Start `process` as `name` on `node`; its `initialize` runs now.
    pub fn spawn<P: Process>(&mut self, node: &NodeAddr, name: &str, process: P) -> Upid {
        self.spawn_erased(node, name, Box::new(Hosted::new(process)))
    }

    fn spawn_erased(
        &mut self,
        node: &NodeAddr,
        name: &str,
        hosted: Box<dyn ErasedProcess>,
    ) -> Upid {
        let upid = Upid::new(name, node);
        let instance = self.next_instance;
        self.next_instance += 1;
        let posted = self.posted.clone();
        let target = upid.clone();
        let mailbox = Mailbox::new(
            upid.clone(),
            Arc::new(move |from, msg| {
                let mut messages = posted.messages.lock().expect("sim mailbox lock");
                messages.push((from, target.clone(), msg));
                posted.count.store(messages.len(), Ordering::Relaxed);
            }),
        );
        let ix = self.node_at(node).expect("spawn on an unknown node");
        let n = &mut self.nodes[ix as usize];
        assert!(n.up, "spawn on a crashed node {node}");
        assert!(
            !n.processes.contains_key(name),
            "process {name} already exists on {node}"
        );
        // Each life of a node draws new random numbers (as a real restart would): ids drawn
        // from the RNG, such as status update uuids, never repeat across a crash.
        let seed = n.seed ^ n.incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let state = ProcessState::new(upid.clone(), seed, mailbox);
        n.processes.insert(
            name.to_string(),
            SimProcess {
                hosted,
                state,
                instance,
                timers: LookupSet::default(),
                links: BTreeSet::new(),
            },
        );
        self.with_process_at(ix, &upid, |hosted, ctx| hosted.initialize(ctx));
        upid
    }

    fn process_mut(&mut self, upid: &Upid) -> Option<&mut SimProcess> {
        let ix = self.node_of(upid)?;
        self.process_at(ix, &upid.name)
    }

    /// The process `name` of node `ix`, if that node is up and runs it.
    fn process_at(&mut self, ix: NodeIx, name: &str) -> Option<&mut SimProcess> {
        let n = self.nodes.get_mut(ix as usize)?;
        if !n.up {
            return None;
        }
        n.processes.get_mut(name)
    }

    /// Read a process's state (for tests and invariant checks).
    pub fn inspect<P: Process, R>(&mut self, upid: &Upid, f: impl FnOnce(&P) -> R) -> Option<R> {
        let p = self.process_mut(upid)?;
        let any = p.hosted.as_any_mut();
        any.downcast_mut::<P>().map(|p| f(p))
    }

    /// Run `f` inside a process, with a context; its effects are carried out as a handler's.
    pub fn call<P: Process, R>(
        &mut self,
        upid: &Upid,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R,
    ) -> Option<R> {
        let mut f = Some(f);
        let mut out = None;
        self.with_process(upid, |hosted, ctx| {
            if let Some(p) = hosted.as_any_mut().downcast_mut::<P>() {
                out = Some((f.take().expect("called once"))(p, ctx));
            }
        });
        out
    }

    /// Deliver `msg` to `to` as if sent by `from`, now (a driver injecting input).
    pub fn post<M: Message>(&mut self, from: &Upid, to: &Upid, msg: M) {
        self.route(from.clone(), to.clone(), Box::new(msg));
    }

    /// Run one process callback with a context, then carry out its effects.
    fn with_process(
        &mut self,
        upid: &Upid,
        f: impl FnOnce(&mut dyn ErasedProcess, &mut Context<'_>),
    ) -> bool {
        match self.node_of(upid) {
            Some(ix) => self.with_process_at(ix, upid, f),
            None => false,
        }
    }

    /// [`Sim::with_process`] for a process of node `ix`.
    fn with_process_at(
        &mut self,
        ix: NodeIx,
        upid: &Upid,
        f: impl FnOnce(&mut dyn ErasedProcess, &mut Context<'_>),
    ) -> bool {
        let now = self.now;
        let wall = self.wall_clock();
        let mut effects = std::mem::take(&mut self.effects);
        let Some(p) = self.process_at(ix, &upid.name) else {
            self.effects = effects;
            return false;
        };
        let instance = p.instance;
        {
            let time = TimeSource::Fixed { now, wall };
            let mut ctx = Context::new(&mut p.state, time, &mut effects);
            f(p.hosted.as_mut(), &mut ctx);
        }
        self.apply(ix, upid, instance, &mut effects);
        effects.clear();
        self.effects = effects;
        true
    }

    fn apply(&mut self, ix: NodeIx, upid: &Upid, instance: u64, effects: &mut Vec<Effect>) {
        let mut terminate = false;
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg } => self.route_from(Some(ix), upid.clone(), to, msg),
                Effect::Delay { id, after, msg } => {
                    if let Some(p) = self.process_at(ix, &upid.name) {
                        p.timers.insert(id);
                    }
                    let at = self.now + after;
                    self.schedule(
                        at,
                        Event::Timer {
                            to: upid.clone(),
                            node: ix,
                            instance,
                            id,
                            msg,
                        },
                    );
                }
                Effect::Cancel(id) => {
                    if let Some(p) = self.process_at(ix, &upid.name) {
                        p.timers.remove(&id);
                    }
                }
                Effect::Link(other) => self.link(ix, upid, instance, other),
                Effect::Unlink(other) => {
                    if let Some(p) = self.process_at(ix, &upid.name) {
                        p.links.remove(&other);
                    }
                }
                Effect::Spawn { name, process } => {
                    if self.nodes[ix as usize].up {
                        let node = self.nodes[ix as usize].addr.clone();
                        self.spawn_erased(&node, &name, process);
                    }
                }
                Effect::Terminate => terminate = true,
            }
        }
        if terminate {
            self.terminate(upid);
        }
    }

    fn link(&mut self, here: NodeIx, upid: &Upid, instance: u64, other: Upid) {
        let there = self.node_of(&other);
        let exited_at = match there {
            Some(there) if there == here => (!self.is_running(&other)).then_some(self.now),
            Some(there) => {
                if self.nodes[there as usize].up
                    && !self.blocked.contains(&(here, there))
                    && !self.blocked.contains(&(there, here))
                {
                    // A link made on a connection that broke is told when the break is.
                    self.broken_until(here, there)
                } else {
                    Some(self.now + self.config.link_timeout)
                }
            }
            None => Some(self.now + self.config.link_timeout),
        };
        if let Some(at) = exited_at {
            self.schedule(
                at,
                Event::Exited {
                    to: upid.clone(),
                    instance,
                    who: other,
                },
            );
        } else if let Some(p) = self.process_mut(upid) {
            p.links.insert(other);
        }
    }

    /// When the break of the connection between nodes `a` and `b` is detected, if it broke
    /// and that is still to come.
    fn broken_until(&self, a: NodeIx, b: NodeIx) -> Option<Instant> {
        if self.broken_until.is_empty() {
            return None;
        }
        self.broken_until
            .get(&(a.min(b), a.max(b)))
            .copied()
            .filter(|at| *at > self.now)
    }

    /// Terminate a process in an orderly way: `finalize` runs, local linkers are told.
    pub fn terminate(&mut self, upid: &Upid) {
        let Some(ix) = self.node_of(upid) else {
            return;
        };
        let n = &mut self.nodes[ix as usize];
        let Some(mut p) = n.processes.remove(&*upid.name) else {
            return;
        };
        p.hosted.finalize();
        let now = self.now;
        let watchers: Vec<(Upid, u64)> = n
            .processes
            .iter_mut()
            .filter_map(|(_, q)| {
                q.links
                    .remove(upid)
                    .then(|| (q.state.upid.clone(), q.instance))
            })
            .collect();
        for (to, instance) in watchers {
            self.schedule(
                now,
                Event::Exited {
                    to,
                    instance,
                    who: upid.clone(),
                },
            );
        }
    }

    fn route(&mut self, from: Upid, to: Upid, msg: Box<dyn AnyMessage>) {
        let src = self.node_of(&from);
        self.route_from(src, from, to, msg);
    }

    /// Send `msg` from `from`, a process of node `src` (`None`: of no node).
    fn route_from(&mut self, src: Option<NodeIx>, from: Upid, to: Upid, msg: Box<dyn AnyMessage>) {
        let Some(dst) = self.node_of(&to) else {
            self.stats.dropped += 1;
            return;
        };
        let to_incarnation = self.nodes[dst as usize].incarnation;
        if src == Some(dst) {
            let now = self.now;
            self.schedule(
                now,
                Event::Deliver {
                    from,
                    to,
                    from_node: dst,
                    to_node: dst,
                    payload: Payload::Local(msg),
                    to_incarnation,
                    remote: false,
                },
            );
            return;
        }
        let Some(src) = src.filter(|s| self.nodes[*s as usize].up) else {
            self.stats.dropped += 1;
            return;
        };
        if !self.blocked.is_empty() && self.blocked.contains(&(src, dst)) {
            self.stats.dropped += 1;
            return;
        }
        if self.net_rng.chance(self.faults.loss) {
            // The real transport loses a message only with its connection: the connection
            // breaks, and linked processes on both sides learn it after the link timeout.
            self.stats.dropped += 1;
            self.break_links(src, dst);
            return;
        }
        // Encoded into a buffer kept between messages, then copied out at its exact size: a
        // body encoded into a fresh vector keeps the vector's spare capacity for as long as
        // the message is in flight (450 bytes per task at the peak of a million-task fill).
        self.encoded.clear();
        let body = match msg.encode_append(&mut self.encoded) {
            Ok(()) => Bytes::copy_from_slice(&self.encoded),
            Err(e) => {
                tracing::warn!(message = msg.name(), error = %e, "message does not encode; dropped");
                self.stats.dropped += 1;
                return;
            }
        };
        let copies = if self.net_rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let name = msg.name();
        // The last copy takes the ids and the body; a duplicate before it clones them.
        let mut ends = Some((from, to, body));
        for copy in 0..copies {
            let span = self.faults.latency_max - self.faults.latency_min;
            let latency = self.faults.latency_min
                + Duration::from_nanos(self.net_rng.between(0, span.as_nanos() as u64));
            let earliest = self.now + latency;
            let last = self.last_arrival.entry((src, dst)).or_insert(earliest);
            if *last < earliest {
                *last = earliest;
            }
            let at = *last;
            let (from, to, body) = if copy + 1 == copies {
                ends.take().expect("taken by the last copy only")
            } else {
                ends.clone().expect("kept until the last copy")
            };
            self.schedule(
                at,
                Event::Deliver {
                    from,
                    to,
                    from_node: src,
                    to_node: dst,
                    payload: Payload::Encoded {
                        name: Cow::Borrowed(name),
                        body,
                    },
                    to_incarnation,
                    remote: true,
                },
            );
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        assert!(
            self.queue.len() < SIM_EVENTS_PENDING_MAX,
            "simulation has {} pending events: runaway message loop (seed {})",
            self.queue.len(),
            self.config.seed
        );
        let seq = self.seq;
        self.seq += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.events[slot as usize] = Some(event);
                slot
            }
            None => {
                self.events.push(Some(event));
                u32::try_from(self.events.len() - 1).expect("pending events are bounded")
            }
        };
        self.queue.push(queue_key(at, seq), slot);
    }

    fn set_now(&mut self, now: Instant) {
        self.now = now;
        THREAD_SIM_TIME.with(|t| t.set(Some(now)));
    }

    fn mix(&mut self, bytes: &[u8]) {
        self.trace = trace_extend(self.trace, bytes);
    }

    fn record(&mut self, kind: u8, from: &Upid, to: &Upid, name: &str, body: Option<&[u8]>) {
        let t = self.now.as_nanos().to_le_bytes();
        self.mix(&t);
        self.mix(&[kind]);
        self.mix(from.name.as_bytes());
        self.mix(from.host.as_bytes());
        self.mix(&from.port.to_le_bytes());
        self.mix(to.name.as_bytes());
        self.mix(to.host.as_bytes());
        self.mix(&to.port.to_le_bytes());
        self.mix(name.as_bytes());
        if let Some(b) = body {
            let h = body_hash(b).to_le_bytes();
            self.mix(&h);
        }
    }

    fn drain_posted(&mut self) {
        // The simulation runs on one thread: the count is exact when it is read.
        if self.posted.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let posted: Vec<_> = {
            let mut messages = self.posted.messages.lock().expect("sim mailbox lock");
            self.posted.count.store(0, Ordering::Relaxed);
            std::mem::take(&mut *messages)
        };
        for (from, to, msg) in posted {
            let now = self.now;
            let to_node = self.node_of(&to).unwrap_or(NO_NODE);
            let from_node = self.node_of(&from).unwrap_or(NO_NODE);
            let to_incarnation = self
                .nodes
                .get(to_node as usize)
                .map_or(0, |n| n.incarnation);
            self.schedule(
                now,
                Event::Deliver {
                    from,
                    to,
                    from_node,
                    to_node,
                    payload: Payload::Local(msg),
                    to_incarnation,
                    remote: false,
                },
            );
        }
    }

    /// Time of the next event, if any.
    pub fn next_event_at(&mut self) -> Option<Instant> {
        self.queue.peek_key().map(key_time)
    }

    /// Handle the next event. False when none is left.
    pub fn step(&mut self) -> bool {
        self.drain_posted();
        let Some((key, slot)) = self.queue.pop() else {
            return false;
        };
        let event = self.events[slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free_slots.push(slot);
        let at = key_time(key);
        debug_assert!(at >= self.now, "time never goes back");
        self.set_now(at);
        self.last_node = NO_NODE;
        if let Some(node) = self.paused_target(&event) {
            // A stopped process handles nothing: its events wait for it to resume.
            self.nodes[node as usize].held.push(event);
            return true;
        }
        self.stats.events += 1;
        match event {
            Event::Deliver {
                from,
                to,
                from_node,
                to_node,
                payload,
                to_incarnation,
                remote,
            } => {
                let alive = self.nodes.get(to_node as usize).is_some_and(|n| {
                    n.up && n.incarnation == to_incarnation && n.processes.contains_key(&*to.name)
                });
                let cut = remote
                    && !self.blocked.is_empty()
                    && self.blocked.contains(&(from_node, to_node));
                if !alive || cut {
                    self.stats.dropped += 1;
                    return true;
                }
                let body = match &payload {
                    Payload::Encoded { body, .. } => Some(body.clone()),
                    Payload::Local(_) => None,
                };
                self.record(0, &from, &to, payload.name(), body.as_deref());
                self.stats.delivered += 1;
                self.last_node = to_node;
                let mut result = Ok(());
                self.with_process_at(to_node, &to, |hosted, ctx| {
                    result = hosted.deliver(ctx, &from, payload);
                });
                if let Err(e) = result {
                    self.stats.undeliverable += 1;
                    tracing::debug!(%from, %to, error = %e, "message not delivered");
                }
            }
            Event::Timer {
                to,
                node,
                instance,
                id,
                msg,
            } => {
                let live = self
                    .process_at(node, &to.name)
                    .is_some_and(|p| p.instance == instance && p.timers.remove(&id));
                if !live {
                    return true;
                }
                self.record(1, &to, &to, msg.name(), None);
                self.stats.timers_fired += 1;
                self.last_node = node;
                let from = to.clone();
                self.with_process_at(node, &to, |hosted, ctx| {
                    if let Err(e) = hosted.deliver(ctx, &from, Payload::Local(msg)) {
                        tracing::debug!(error = %e, "timer message not delivered");
                    }
                });
            }
            Event::LinkBreak { lost, incarnation } => {
                if self
                    .pending_breaks
                    .get(&lost)
                    .is_some_and(|(i, _)| *i == incarnation)
                {
                    self.deliver_pending_breaks(lost);
                }
            }
            Event::Exited { to, instance, who } => {
                let live = self
                    .process_mut(&to)
                    .is_some_and(|p| p.instance == instance);
                if !live {
                    return true;
                }
                self.record(2, &who, &to, "exited", None);
                self.stats.exits += 1;
                self.last_node = self.node_of(&to).unwrap_or(NO_NODE);
                self.with_process(&to, |hosted, ctx| hosted.exited(ctx, &who));
            }
        }
        true
    }

    /// The paused node an event is for, if it is for one.
    fn paused_target(&self, event: &Event) -> Option<NodeIx> {
        if self.paused_nodes == 0 {
            return None;
        }
        let node = match event {
            Event::Deliver { to_node, .. } => *to_node,
            Event::Timer { node, .. } => *node,
            Event::Exited { to, .. } => self.node_at(&to.node())?,
            Event::LinkBreak { .. } => return None,
        };
        self.nodes
            .get(node as usize)
            .is_some_and(|n| n.paused)
            .then_some(node)
    }

    /// Stop a node as SIGSTOP would: its processes keep their state but handle nothing — no
    /// message, no timer — until [`Sim::resume`]; what arrives meanwhile waits (as in a socket
    /// buffer), and after the link timeout processes elsewhere linked to it learn that its
    /// connections broke.
    pub fn pause(&mut self, addr: &NodeAddr) {
        let ix = self.known(addr);
        let n = &mut self.nodes[ix as usize];
        if !n.up || n.paused {
            return;
        }
        n.paused = true;
        self.paused_nodes += 1;
        for other in self.other_nodes(ix) {
            self.break_links(ix, other);
        }
    }

    /// Every node but `ix`, in address order.
    fn other_nodes(&self, ix: NodeIx) -> Vec<NodeIx> {
        self.node_order
            .values()
            .copied()
            .filter(|o| *o != ix)
            .collect()
    }

    /// Let a paused node run again: what waited for it is handled now, in the order it came,
    /// timers that came due first among them.
    pub fn resume(&mut self, addr: &NodeAddr) {
        let ix = self.known(addr);
        let n = &mut self.nodes[ix as usize];
        if !n.paused {
            return;
        }
        n.paused = false;
        self.paused_nodes -= 1;
        let held = std::mem::take(&mut n.held);
        let now = self.now;
        for event in held {
            self.schedule(now, event);
        }
    }

    /// True while `addr` is paused.
    pub fn is_paused(&self, addr: &NodeAddr) -> bool {
        self.node_at(addr)
            .is_some_and(|ix| self.nodes[ix as usize].paused)
    }

    /// Run events up to and including time `until`, then set the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.drain_posted();
            match self.next_event_at() {
                Some(at) if at <= until => {
                    self.step();
                }
                _ => break,
            }
        }
        if until > self.now {
            self.set_now(until);
        }
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Run until `done` holds (checked after each event) or `limit` of virtual time passes.
    /// True when `done` held.
    pub fn run_until_condition(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> bool {
        let until = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            self.drain_posted();
            match self.next_event_at() {
                Some(at) if at <= until => {
                    self.step();
                }
                _ => {
                    self.set_now(self.now.max(until));
                    return done(self);
                }
            }
        }
    }

    /// Schedule `exited` for every process linked across the (now broken) connection between
    /// nodes `a` and `b`, after the link timeout (or when an earlier break of it is detected:
    /// it is the same broken connection).
    fn break_links(&mut self, a: NodeIx, b: NodeIx) {
        let at = match self.broken_until(a, b) {
            Some(at) => at,
            None => {
                let at = self.now + self.config.link_timeout;
                self.broken_until.insert((a.min(b), a.max(b)), at);
                at
            }
        };
        let mut exits = Vec::new();
        for (here, far) in [(a, b), (b, a)] {
            let far = self.nodes[far as usize].addr.clone();
            for p in self.nodes[here as usize].processes.values_mut() {
                let gone: Vec<Upid> = p.links.iter().filter(|u| u.is_on(&far)).cloned().collect();
                for who in gone {
                    p.links.remove(&who);
                    exits.push((p.state.upid.clone(), p.instance, who));
                }
            }
        }
        for (to, instance, who) in exits {
            self.schedule(at, Event::Exited { to, instance, who });
        }
    }

    /// The index of the node at `addr`, which must exist.
    fn known(&self, addr: &NodeAddr) -> NodeIx {
        self.node_at(addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this simulation"))
    }

    /// Crash a node: its processes vanish without `finalize`, its timers die, messages in
    /// flight to it are lost, and processes elsewhere linked to it learn after the link
    /// timeout. What it keeps on disk is the caller's business.
    pub fn crash(&mut self, addr: &NodeAddr) {
        let Some(ix) = self.node_at(addr) else {
            return;
        };
        let n = &mut self.nodes[ix as usize];
        if !n.up {
            return;
        }
        n.up = false;
        if n.paused {
            n.paused = false;
            self.paused_nodes -= 1;
        }
        n.held.clear();
        n.incarnation += 1;
        let incarnation = n.incarnation;
        n.processes.clear();
        let mut owed = Vec::new();
        for &other in self.node_order.values() {
            if other == ix {
                continue;
            }
            for p in self.nodes[other as usize].processes.values_mut() {
                let gone: Vec<Upid> = p.links.iter().filter(|u| u.is_on(addr)).cloned().collect();
                for who in gone {
                    p.links.remove(&who);
                    owed.push((p.state.upid.clone(), p.instance, who));
                }
            }
        }
        self.pending_breaks.insert(ix, (incarnation, owed));
        let at = self.now + self.config.link_timeout;
        self.schedule(
            at,
            Event::LinkBreak {
                lost: ix,
                incarnation,
            },
        );
    }

    fn deliver_pending_breaks(&mut self, lost: NodeIx) {
        if let Some((_, owed)) = self.pending_breaks.remove(&lost) {
            let now = self.now;
            for (to, instance, who) in owed {
                self.schedule(now, Event::Exited { to, instance, who });
            }
        }
    }

    /// Bring a crashed node back, empty: spawn its processes again with [`Sim::spawn`].
    pub fn restart(&mut self, addr: &NodeAddr) {
        let ix = self.node_at(addr).expect("restart of an unknown node");
        let n = &mut self.nodes[ix as usize];
        if !n.up {
            n.up = true;
            n.incarnation += 1;
        }
        self.deliver_pending_breaks(ix);
    }

    /// Cut messages from `from` to `to` (one way). Links between them break either way, as a
    /// real connection cannot survive losing one direction. Both must be nodes of the
    /// simulation.
    pub fn cut_one_way(&mut self, from: &NodeAddr, to: &NodeAddr) {
        let (from, to) = (self.known(from), self.known(to));
        self.cut_between(from, to);
    }

    fn cut_between(&mut self, from: NodeIx, to: NodeIx) {
        if self.blocked.insert((from, to)) {
            self.break_links(from, to);
        }
    }

    /// Cut both directions between `a` and `b`.
    pub fn partition(&mut self, a: &NodeAddr, b: &NodeAddr) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Cut `node` off from every other node.
    pub fn isolate(&mut self, node: &NodeAddr) {
        let ix = self.known(node);
        for other in self.other_nodes(ix) {
            self.cut_between(ix, other);
            self.cut_between(other, ix);
        }
    }

    /// Remove every cut.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Remove the cut of messages from `from` to `to`, if there is one (other cuts stay).
    pub fn heal_one_way(&mut self, from: &NodeAddr, to: &NodeAddr) {
        if let (Some(from), Some(to)) = (self.node_at(from), self.node_at(to)) {
            self.blocked.remove(&(from, to));
        }
    }

    /// True when messages from `from` to `to` are currently cut.
    pub fn is_cut(&self, from: &NodeAddr, to: &NodeAddr) -> bool {
        match (self.node_at(from), self.node_at(to)) {
            (Some(from), Some(to)) => self.blocked.contains(&(from, to)),
            _ => false,
        }
    }
}

/// The hash of a node's address in the node index.
fn node_hash(host: &str, port: u16) -> u64 {
    let mut h = LookupHasher::default();
    h.write(host.as_bytes());
    h.write_u16(port);
    h.finish()
}

/// The trace's fingerprint of a message body (see [`trace_extend`]).
fn body_hash(bytes: &[u8]) -> u64 {
    trace_extend(STABLE_HASH_START, bytes)
}

/// Continues the trace hash `h` over `bytes`: FNV-1a's multiply over eight bytes at a time (a
/// byte at a time was 4 % of a 1,000-slave run). Stable: little-endian words, the length
/// mixed in, no platform or release dependence.
fn trace_extend(h: u64, bytes: &[u8]) -> u64 {
    stable_hash_words(h ^ (bytes.len() as u64), bytes)
}
