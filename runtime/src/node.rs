//! The real host: a node with an address, hosting named processes, each inside an actix actor
//! (its mailbox and scheduling), and sending to other nodes over [`QuicTransport`].
//!
//! A [`Node`] must be started inside a running actix `System`; all its processes run on that
//! system's thread. Other threads (actix-web workers, side-effect threads) reach processes
//! through [`ProcessRef`] or a [`crate::Mailbox`], both thread-safe.
//!
//! Mailboxes are bounded for what other nodes send. Each process has room for
//! [`NodeConfig::mailbox_remote_bytes_max`] bytes of messages from other nodes (default
//! [`MAILBOX_REMOTE_BYTES_MAX`], 8 MiB; a message counts its body and
//! [`MAILBOX_MESSAGE_OVERHEAD_BYTES`]) queued and not yet handled. A batch the process has no
//! room for makes the transport stop reading the stream it came on until the process has
//! handled enough: QUIC's flow control then holds the sender back, whose own queue fills and
//! drops ([`crate::limits::PEER_QUEUE_BYTES_MAX`]). The room is given back when a batch has
//! been handled, or dropped unhandled with a stopped process (whose waiting streams are then
//! released). Consequences:
//! - a peer that sends faster than a process handles costs this node at most the bound, plus
//!   what its connection's QUIC receive window holds, however much it sends;
//! - only the streams bringing messages to the full process wait: other peers keep reaching
//!   the other processes (and the full one as soon as it has room). A stream carries one
//!   peer's messages to every process of this node, in order, so that peer's messages to other
//!   processes wait behind (head-of-line blocking within one sender's stream, the price of
//!   keeping order);
//! - messages from this node's own processes, from [`ProcessRef::post`], [`ProcessRef::call`],
//!   a [`crate::Mailbox`] and timers are not counted and never wait. They come from this
//!   node's own code, not from a peer, and cannot wait: handlers are synchronous and share a
//!   thread with the process they send to, so a process sending to itself, or two processes
//!   sending to each other, would deadlock. What a peer can make them send is itself paced by
//!   the bound, since it takes handlers running to send anything;
//! - the simulated network is not bounded: its runs stay as they were, deterministic.
//!
//! ```no_run
//! # use plateau_runtime::{Node, NodeConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! actix_rt::System::new().block_on(async {
//!     let node = Node::start(NodeConfig::local("127.0.0.1", 5050, 1))?;
//!     // node.spawn("master", master_process)?;
//!     # Ok::<(), plateau_runtime::node::NodeError>(())
//! })?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use actix::{Actor, ActorContext, Addr, AsyncContext, Handler};
use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::clock::{Instant, RealClock};
use crate::identity::PeerIdentity;
use crate::limits::{
    FRAME_BYTES_MAX_DEFAULT, MAILBOX_MESSAGE_OVERHEAD_BYTES, MAILBOX_REMOTE_BYTES_MAX,
};
use crate::message::{AnyMessage, Header, Message, Payload};
use crate::process::{
    Context, Effect, ErasedProcess, Hosted, Mailbox, Process, ProcessState, TimeSource, TimerId,
};
use crate::simnet::{SimEndpoint, SimNetwork};
use crate::tls::NodeIdentity;
use crate::transport::{Backpressure, QuicTransport, TransportError, TransportSink};
use crate::upid::{is_valid_name, NodeAddr, Upid};

/// How a node reaches other nodes.
#[derive(Clone)]
pub enum TransportConfig {
    /// It does not: its processes talk among themselves only.
    None,
    /// QUIC with mutual TLS: the UDP address to bind and the node's identity.
    Quic(SocketAddr, NodeIdentity),
    /// A simulated network shared with other nodes of the same actix system.
    Sim(SimNetwork),
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportConfig::None => write!(f, "None"),
            TransportConfig::Quic(bind, _) => write!(f, "Quic({bind})"),
            TransportConfig::Sim(_) => write!(f, "Sim"),
        }
    }
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The host other nodes reach this one at (an IP address in tests and dev).
    pub host: String,
    /// The port; with a transport and port 0, the one the socket got.
    pub port: u16,
    /// How the node reaches other nodes.
    pub transport: TransportConfig,
    /// Calendar time at the node's start, for simulation (calendar time then advances with
    /// the monotonic clock); `None` reads the operating system's clock.
    pub wall_origin: Option<SystemTime>,
    /// Seed of the node's RNGs (each process gets one derived from it and its name).
    pub seed: u64,
    /// Largest frame accepted from peers.
    pub max_frame_bytes: usize,
    /// Bytes of messages from other nodes that may wait for one process before the stream
    /// bringing more is held back (default [`MAILBOX_REMOTE_BYTES_MAX`]; see the module docs).
    pub mailbox_remote_bytes_max: usize,
    /// Connections from other nodes the node keeps open at most; more are refused (default
    /// [`crate::limits::CONNECTIONS_MAX_DEFAULT`]; QUIC only).
    pub connections_max: usize,
    /// How long an accepted connection may stay without its first stream and Hello before it
    /// is closed (default [`crate::limits::HELLO_TIMEOUT_DEFAULT`]; QUIC only).
    pub hello_timeout: std::time::Duration,
}

impl NodeConfig {
    /// A node without network transport: its processes talk among themselves only.
    pub fn local(host: &str, port: u16, seed: u64) -> Self {
        NodeConfig {
            host: host.to_string(),
            port,
            transport: TransportConfig::None,
            wall_origin: None,
            seed,
            max_frame_bytes: FRAME_BYTES_MAX_DEFAULT,
            mailbox_remote_bytes_max: MAILBOX_REMOTE_BYTES_MAX,
            connections_max: crate::limits::CONNECTIONS_MAX_DEFAULT,
            hello_timeout: crate::limits::HELLO_TIMEOUT_DEFAULT,
        }
    }

    /// A node on a simulated network (actix on tokio's paused clock), with calendar time
    /// starting at `wall_origin`.
    pub fn simulated(
        addr: &NodeAddr,
        network: SimNetwork,
        seed: u64,
        wall_origin: SystemTime,
    ) -> Self {
        NodeConfig {
            host: addr.host.to_string(),
            port: addr.port,
            transport: TransportConfig::Sim(network),
            wall_origin: Some(wall_origin),
            seed,
            max_frame_bytes: FRAME_BYTES_MAX_DEFAULT,
            mailbox_remote_bytes_max: MAILBOX_REMOTE_BYTES_MAX,
            connections_max: crate::limits::CONNECTIONS_MAX_DEFAULT,
            hello_timeout: crate::limits::HELLO_TIMEOUT_DEFAULT,
        }
    }

    /// A node reachable over QUIC at `bind` with the given identity.
    pub fn quic(bind: SocketAddr, identity: NodeIdentity, seed: u64) -> Self {
        NodeConfig {
            host: bind.ip().to_string(),
            port: bind.port(),
            transport: TransportConfig::Quic(bind, identity),
            wall_origin: None,
            seed,
            max_frame_bytes: FRAME_BYTES_MAX_DEFAULT,
            mailbox_remote_bytes_max: MAILBOX_REMOTE_BYTES_MAX,
            connections_max: crate::limits::CONNECTIONS_MAX_DEFAULT,
            hello_timeout: crate::limits::HELLO_TIMEOUT_DEFAULT,
        }
    }
}

/// Node failures.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The transport could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A process name is taken or invalid.
    #[error("cannot spawn process '{0}': {1}")]
    Spawn(String, &'static str),
    /// The process is gone.
    #[error("process {0} is not running")]
    Gone(Upid),
}

struct Shared {
    addr: NodeAddr,
    seed: u64,
    /// Room for messages from other nodes per process (bytes, at least 1, fits a u32).
    mailbox_remote_bytes_max: usize,
    clock: RealClock,
    registry: RwLock<HashMap<String, Registered>>,
    /// Peer node → (watching local process name, watched remote process).
    remote_links: Mutex<BTreeMap<NodeAddr, BTreeSet<(String, Upid)>>>,
    /// Watched local process name → watching local process names.
    local_links: Mutex<HashMap<String, BTreeSet<String>>>,
    transport: Option<QuicTransport>,
    simnet: Option<(SimNetwork, Arc<Sink>)>,
    /// Remote messages refused because the sender's role may not send them.
    refused_by_role: std::sync::atomic::AtomicU64,
}

/// A process in the registry.
struct Registered {
    addr: Addr<ProcessActor>,
    /// Room for messages from other nodes, in bytes (see [`MAILBOX_REMOTE_BYTES_MAX`]): a
    /// batch takes permits before it is queued and gives them back once handled. Closed when
    /// the process stops, which releases transports waiting for room.
    remote_room: Arc<Semaphore>,
}

/// A running node. Cheap to clone; thread-safe.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

struct Sink {
    shared: std::sync::Weak<Shared>,
}

impl SimEndpoint for Sink {
    fn deliver(&self, header: &Header, body: Bytes) {
        if let Some(shared) = self.shared.upgrade() {
            Node { shared }.deliver_remote(header, vec![body]);
        }
    }

    fn peer_lost(&self, node: &NodeAddr) {
        if let Some(shared) = self.shared.upgrade() {
            Node { shared }.peer_lost(node);
        }
    }
}

impl TransportSink for Sink {
    fn deliver(
        &self,
        peer: &Arc<PeerIdentity>,
        header: &Header,
        bodies: Vec<Bytes>,
    ) -> Option<Backpressure> {
        let shared = self.shared.upgrade()?;
        Node { shared }.deliver_remote_bounded(peer.clone(), header, bodies)
    }

    fn peer_lost(&self, node: &NodeAddr) {
        if let Some(shared) = self.shared.upgrade() {
            Node { shared }.peer_lost(node);
        }
    }
}

impl Node {
    /// Start a node. Must be called inside a running actix system (and so a tokio runtime).
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let mut error = None;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let mut port = config.port;
            let mut simnet = None;
            let transport = match &config.transport {
                TransportConfig::None => None,
                TransportConfig::Sim(network) => {
                    simnet = Some((
                        network.clone(),
                        Arc::new(Sink {
                            shared: weak.clone(),
                        }),
                    ));
                    None
                }
                TransportConfig::Quic(bind, identity) => {
                    let sink = Arc::new(Sink {
                        shared: weak.clone(),
                    });
                    match QuicTransport::start(
                        *bind,
                        &config.host,
                        identity,
                        config.max_frame_bytes,
                        config.connections_max,
                        config.hello_timeout,
                        sink,
                    ) {
                        Ok(t) => {
                            port = t.local().port;
                            Some(t)
                        }
                        Err(e) => {
                            error = Some(e);
                            None
                        }
                    }
                }
            };
            Shared {
                addr: NodeAddr::new(config.host.clone(), port),
                seed: config.seed,
                mailbox_remote_bytes_max: config
                    .mailbox_remote_bytes_max
                    .clamp(1, u32::MAX as usize),
                clock: RealClock::with_wall_origin(config.wall_origin),
                registry: RwLock::new(HashMap::new()),
                remote_links: Mutex::new(BTreeMap::new()),
                local_links: Mutex::new(HashMap::new()),
                transport,
                simnet,
                refused_by_role: std::sync::atomic::AtomicU64::new(0),
            }
        });
        if let Some(e) = error {
            return Err(e.into());
        }
        if let Some((network, sink)) = &shared.simnet {
            let endpoint: std::sync::Weak<dyn SimEndpoint> = Arc::downgrade(sink) as _;
            network.attach(&shared.addr, endpoint);
        }
        Ok(Node { shared })
    }

    /// This node's address.
    pub fn addr(&self) -> &NodeAddr {
        &self.shared.addr
    }

    /// The address process `name` has (or would have) on this node.
    pub fn upid(&self, name: &str) -> Upid {
        Upid::new(name, &self.shared.addr)
    }

    /// The transport, if the node has one.
    pub fn transport(&self) -> Option<&QuicTransport> {
        self.shared.transport.as_ref()
    }

    /// Messages from other nodes refused because their sender's role may not send them to
    /// their receiver ([`crate::Handlers::allow_roles`]).
    pub fn refused_by_role(&self) -> u64 {
        self.shared
            .refused_by_role
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Monotonic time on this node's clock.
    pub fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Start `process` as `name`. Must be called on the node's actix system thread.
    pub fn spawn<P: Process>(&self, name: &str, process: P) -> Result<ProcessRef<P>, NodeError> {
        let addr = self.spawn_erased(name, Box::new(Hosted::new(process)))?;
        Ok(ProcessRef {
            upid: self.upid(name),
            addr,
            _process: PhantomData,
        })
    }

    fn spawn_erased(
        &self,
        name: &str,
        hosted: Box<dyn ErasedProcess>,
    ) -> Result<Addr<ProcessActor>, NodeError> {
        if !is_valid_name(name) {
            return Err(NodeError::Spawn(name.to_string(), "invalid name"));
        }
        let mut registry = self.shared.registry.write().expect("registry lock");
        if registry.contains_key(name) {
            return Err(NodeError::Spawn(name.to_string(), "name already taken"));
        }
        let upid = self.upid(name);
        let actor = ProcessActor::create(|ctx| {
            let addr = ctx.address();
            let mailbox = Mailbox::new(
                upid.clone(),
                Arc::new(move |from, msg| {
                    addr.do_send(Deliver {
                        from: Arc::new(from),
                        payload: Payload::Local(msg),
                    })
                }),
            );
            ProcessActor {
                hosted,
                shared_upid: Arc::new(upid.clone()),
                state: ProcessState::new(upid.clone(), self.shared.seed, mailbox),
                node: self.clone(),
                timers: HashMap::new(),
                effects: Vec::new(),
                sends: Vec::new(),
            }
        });
        registry.insert(
            name.to_string(),
            Registered {
                addr: actor.clone(),
                remote_room: Arc::new(Semaphore::new(self.shared.mailbox_remote_bytes_max)),
            },
        );
        Ok(actor)
    }

    /// Send `msg` to `to` as `from` (from outside any process, e.g. a test or CLI driver).
    pub fn send<M: Message>(&self, from: &Upid, to: &Upid, msg: M) {
        self.route(&Arc::new(from.clone()), to.clone(), Box::new(msg));
    }

    /// `from` is shared: local deliveries carry it without copying its strings.
    fn route(&self, from: &Arc<Upid>, to: Upid, msg: Box<dyn AnyMessage>) {
        if to.is_on(&self.shared.addr) {
            let target = self
                .shared
                .registry
                .read()
                .expect("registry lock")
                .get(&*to.name)
                .map(|r| r.addr.clone());
            match target {
                Some(addr) => addr.do_send(Deliver {
                    from: from.clone(),
                    payload: Payload::Local(msg),
                }),
                None => tracing::debug!(%to, message = msg.name(), "no such process; dropped"),
            }
        } else if let Some(t) = &self.shared.transport {
            t.send(from, &to, msg.as_ref());
        } else if let Some((network, _)) = &self.shared.simnet {
            network.send(from, &to, msg.as_ref());
        } else {
            tracing::warn!(%to, message = msg.name(), "remote process but this node has no transport; dropped");
        }
    }

    /// Messages from the simulated network: queued without a bound (the simulator models
    /// no flow control, and its runs stay deterministic).
    fn deliver_remote(&self, header: &Header, bodies: Vec<Bytes>) {
        if let Some((addr, _)) = self.remote_target(header) {
            addr.do_send(DeliverEncoded {
                from: header.from.clone(),
                name: header.name.clone(),
                bodies,
                peer: None,
                _room: None,
            });
        }
    }

    /// Messages from the QUIC transport: queued if the process has room for them, else
    /// handed back as a future that queues them once it has (see the module docs).
    /// `peer` is the identity the sender's certificate proved.
    fn deliver_remote_bounded(
        &self,
        peer: Arc<PeerIdentity>,
        header: &Header,
        bodies: Vec<Bytes>,
    ) -> Option<Backpressure> {
        let (addr, room) = self.remote_target(header)?;
        let cost = remote_cost(&bodies, self.shared.mailbox_remote_bytes_max);
        let from = header.from.clone();
        let name = header.name.clone();
        match room.clone().try_acquire_many_owned(cost) {
            Ok(permit) => {
                addr.do_send(DeliverEncoded {
                    from,
                    name,
                    bodies,
                    peer: Some(peer),
                    _room: Some(permit),
                });
                None
            }
            // The process stopped: as if it were gone.
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => Some(Box::pin(async move {
                if let Ok(permit) = room.acquire_many_owned(cost).await {
                    addr.do_send(DeliverEncoded {
                        from,
                        name,
                        bodies,
                        peer: Some(peer),
                        _room: Some(permit),
                    });
                }
            })),
        }
    }

    /// The process a remote batch is for, or `None` (logged) when it is not here.
    fn remote_target(&self, header: &Header) -> Option<(Addr<ProcessActor>, Arc<Semaphore>)> {
        if !header.to.is_on(&self.shared.addr) {
            tracing::debug!(to = %header.to, "message for another node; dropped");
            return None;
        }
        let target = self
            .shared
            .registry
            .read()
            .expect("registry lock")
            .get(&*header.to.name)
            .map(|r| (r.addr.clone(), r.remote_room.clone()));
        if target.is_none() {
            tracing::debug!(to = %header.to, "no such process; dropped");
        }
        target
    }

    /// Route the sends of one handler call: consecutive sends to one remote node are encoded
    /// under one lock of its queue.
    fn route_all(&self, from: &Arc<Upid>, sends: &mut Vec<(Upid, Box<dyn AnyMessage>)>) {
        let mut iter = sends.drain(..).peekable();
        let mut run: Vec<(Upid, Box<dyn AnyMessage>)> = Vec::new();
        while let Some((to, msg)) = iter.next() {
            match &self.shared.transport {
                Some(t) if !to.is_on(&self.shared.addr) => {
                    let node = to.node();
                    run.push((to, msg));
                    while let Some(next) = iter.next_if(|(next, _)| next.is_on(&node)) {
                        run.push(next);
                    }
                    t.send_many(from, &node, run.iter().map(|(to, m)| (to, m.as_ref())));
                    run.clear();
                }
                _ => self.route(from, to, msg),
            }
        }
    }

    fn link(&self, watcher: &Upid, watched: Upid) {
        if watched.is_on(&self.shared.addr) {
            let exists = self
                .shared
                .registry
                .read()
                .expect("registry lock")
                .contains_key(&*watched.name);
            if exists {
                self.shared
                    .local_links
                    .lock()
                    .expect("links lock")
                    .entry(watched.name.to_string())
                    .or_default()
                    .insert(watcher.name.to_string());
            } else {
                self.notify_exited(&watcher.name, watched);
            }
            return;
        }
        let node = watched.node();
        if self.shared.transport.is_none() && self.shared.simnet.is_none() {
            self.notify_exited(&watcher.name, watched);
            return;
        }
        self.shared
            .remote_links
            .lock()
            .expect("links lock")
            .entry(node.clone())
            .or_default()
            .insert((watcher.name.to_string(), watched));
        if let Some(t) = &self.shared.transport {
            t.connect(&node);
        } else if let Some((network, _)) = &self.shared.simnet {
            network.connect(&self.shared.addr, &node);
        }
    }

    fn unlink(&self, watcher: &Upid, watched: &Upid) {
        if watched.is_on(&self.shared.addr) {
            if let Some(w) = self
                .shared
                .local_links
                .lock()
                .expect("links lock")
                .get_mut(&*watched.name)
            {
                w.remove(&*watcher.name);
            }
        } else if let Some(set) = self
            .shared
            .remote_links
            .lock()
            .expect("links lock")
            .get_mut(&watched.node())
        {
            set.remove(&(watcher.name.to_string(), watched.clone()));
        }
    }

    fn notify_exited(&self, watcher: &str, who: Upid) {
        let target = self
            .shared
            .registry
            .read()
            .expect("registry lock")
            .get(watcher)
            .map(|r| r.addr.clone());
        if let Some(addr) = target {
            addr.do_send(Exited { who });
        }
    }

    fn peer_lost(&self, node: &NodeAddr) {
        let links = self
            .shared
            .remote_links
            .lock()
            .expect("links lock")
            .remove(node)
            .unwrap_or_default();
        for (watcher, watched) in links {
            self.notify_exited(&watcher, watched);
        }
    }

    fn process_stopped(&self, name: &str) {
        let removed = self
            .shared
            .registry
            .write()
            .expect("registry lock")
            .remove(name);
        if let Some(r) = removed {
            r.remote_room.close();
        }
        let watchers = self
            .shared
            .local_links
            .lock()
            .expect("links lock")
            .remove(name)
            .unwrap_or_default();
        for w in watchers {
            self.notify_exited(&w, self.upid(name));
        }
    }

    /// Stop every process and close the transport.
    pub fn shutdown(&self) {
        let actors: Vec<Addr<ProcessActor>> = self
            .shared
            .registry
            .read()
            .expect("registry lock")
            .values()
            .map(|r| r.addr.clone())
            .collect();
        for a in actors {
            a.do_send(Stop);
        }
        if let Some(t) = &self.shared.transport {
            t.close();
        }
        if let Some((network, _)) = &self.shared.simnet {
            network.crash(&self.shared.addr);
        }
    }
}

/// A typed, thread-safe handle on a process of this node.
pub struct ProcessRef<P> {
    upid: Upid,
    addr: Addr<ProcessActor>,
    _process: PhantomData<fn() -> P>,
}

impl<P> Clone for ProcessRef<P> {
    fn clone(&self) -> Self {
        ProcessRef {
            upid: self.upid.clone(),
            addr: self.addr.clone(),
            _process: PhantomData,
        }
    }
}

impl<P: Process> ProcessRef<P> {
    /// The process's address.
    pub fn upid(&self) -> &Upid {
        &self.upid
    }

    /// Run `f` inside the process (between two of its messages) and return its result; its
    /// context's effects are carried out as a handler's. How HTTP handlers read and change
    /// a process's state.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut P, &mut Context<'_>) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (tx, rx) = oneshot::channel();
        let call: CallFn = Box::new(move |hosted, ctx| {
            let p = hosted
                .as_any_mut()
                .downcast_mut::<P>()
                .expect("ProcessRef type matches its process");
            let _ = tx.send(f(p, ctx));
        });
        self.addr.do_send(Call(call));
        rx.await.map_err(|_| NodeError::Gone(self.upid.clone()))
    }

    /// Deliver `msg` to the process as sent by `from`.
    pub fn post<M: Message>(&self, from: &Upid, msg: M) {
        self.addr.do_send(Deliver {
            from: Arc::new(from.clone()),
            payload: Payload::Local(Box::new(msg)),
        });
    }

    /// Stop the process (its `finalize` runs).
    pub fn stop(&self) {
        self.addr.do_send(Stop);
    }
}

/// What a batch from another node counts for in its process's bound: its bodies and a fixed
/// overhead per message, at most the whole bound `max` (a larger batch waits for an empty
/// queue).
fn remote_cost(bodies: &[Bytes], max: usize) -> u32 {
    let bytes = bodies
        .iter()
        .map(|b| b.len() + MAILBOX_MESSAGE_OVERHEAD_BYTES)
        .sum::<usize>()
        .min(max);
    u32::try_from(bytes).expect("the mailbox bound is clamped to a u32")
}

type CallFn = Box<dyn FnOnce(&mut dyn ErasedProcess, &mut Context<'_>) + Send>;

struct ProcessActor {
    hosted: Box<dyn ErasedProcess>,
    shared_upid: Arc<Upid>,
    state: ProcessState,
    node: Node,
    timers: HashMap<TimerId, actix_rt::task::JoinHandle<()>>,
    effects: Vec<Effect>,
    sends: Vec<(Upid, Box<dyn AnyMessage>)>,
}

impl ProcessActor {
    fn run(
        &mut self,
        ctx: &mut actix::Context<Self>,
        f: impl FnOnce(&mut dyn ErasedProcess, &mut Context<'_>),
    ) {
        let mut effects = std::mem::take(&mut self.effects);
        {
            let time = TimeSource::Clock(&self.node.shared.clock);
            let mut pctx = Context::new(&mut self.state, time, &mut effects);
            f(self.hosted.as_mut(), &mut pctx);
        }
        let mut sends = std::mem::take(&mut self.sends);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg } => sends.push((to, msg)),
                other => {
                    // Keep the order of sends relative to other effects.
                    if !sends.is_empty() {
                        self.node.route_all(&self.shared_upid, &mut sends);
                    }
                    self.apply(ctx, other);
                }
            }
        }
        if !sends.is_empty() {
            self.node.route_all(&self.shared_upid, &mut sends);
        }
        self.sends = sends;
        self.effects = effects;
    }

    fn apply(&mut self, ctx: &mut actix::Context<Self>, effect: Effect) {
        match effect {
            Effect::Send { to, msg } => self.node.route(&self.shared_upid, to, msg),
            Effect::Delay { id, after, msg } => {
                // Each timer is its own task: futures spawned into an actor's context (and
                // run_later items) are all re-checked on each of its wake-ups, which costs
                // more the more timers it has.
                let addr = ctx.address();
                let handle = actix_rt::spawn(async move {
                    actix_rt::time::sleep(after).await;
                    addr.do_send(Fire { id, msg });
                });
                self.timers.insert(id, handle);
            }
            Effect::Cancel(id) => {
                if let Some(h) = self.timers.remove(&id) {
                    h.abort();
                }
            }
            Effect::Link(u) => self.node.link(&self.state.upid, u),
            Effect::Unlink(u) => self.node.unlink(&self.state.upid, &u),
            Effect::Spawn { name, process } => {
                if let Err(e) = self.node.spawn_erased(&name, process) {
                    tracing::warn!(error = %e, "spawn requested by a process failed");
                }
            }
            Effect::Terminate => ctx.stop(),
        }
    }
}

impl Actor for ProcessActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.run(ctx, |p, c| p.initialize(c));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        for (_, timer) in self.timers.drain() {
            timer.abort();
        }
        self.hosted.finalize();
        self.node.process_stopped(&self.state.upid.name);
    }
}

struct Deliver {
    from: Arc<Upid>,
    payload: Payload,
}
impl actix::Message for Deliver {
    type Result = ();
}
impl Handler<Deliver> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let Deliver { from, payload } = msg;
        self.run(ctx, |p, c| {
            if let Err(e) = p.deliver(c, &from, payload) {
                tracing::warn!(%from, to = %c.self_upid(), error = %e, "message dropped");
            }
        });
    }
}

struct DeliverEncoded {
    from: Upid,
    name: String,
    bodies: Vec<Bytes>,
    peer: Option<Arc<PeerIdentity>>,
    /// The room this batch takes in its process's bound, given back when it is dropped:
    /// after the handler ran, or unhandled with the mailbox of a stopped process.
    _room: Option<OwnedSemaphorePermit>,
}
impl actix::Message for DeliverEncoded {
    type Result = ();
}
impl Handler<DeliverEncoded> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: DeliverEncoded, ctx: &mut Self::Context) {
        // `_room` lives to the end of this function: the room is given back once handled.
        let DeliverEncoded {
            from,
            name,
            bodies,
            peer,
            _room,
        } = msg;
        // The receiver's role policy, before any handler: a role that may not send this
        // message has it refused, logged and counted.
        if let Some(peer) = &peer {
            if !self.hosted.admits(&name, peer.role) {
                self.node
                    .shared
                    .refused_by_role
                    .fetch_add(bodies.len() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%from, to = %self.state.upid, message = %name, %peer, count = bodies.len(), "message refused: the sender's role may not send it");
                return;
            }
        }
        // One context for the whole batch: effects are carried out after the last message,
        // in order.
        self.run(ctx, |p, c| {
            c.set_peer(peer);
            for body in &bodies {
                if let Err(e) = p.deliver_encoded(c, &from, &name, body) {
                    tracing::warn!(%from, to = %c.self_upid(), error = %e, "message dropped");
                }
            }
        });
    }
}

struct Fire {
    id: TimerId,
    msg: Box<dyn AnyMessage>,
}
impl actix::Message for Fire {
    type Result = ();
}
impl Handler<Fire> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Fire, ctx: &mut Self::Context) {
        if self.timers.remove(&msg.id).is_none() {
            return; // cancelled
        }
        let from = self.state.upid.clone();
        self.run(ctx, |p, c| {
            if let Err(e) = p.deliver(c, &from, Payload::Local(msg.msg)) {
                tracing::warn!(error = %e, "timer message dropped");
            }
        });
    }
}

struct Exited {
    who: Upid,
}
impl actix::Message for Exited {
    type Result = ();
}
impl Handler<Exited> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Exited, ctx: &mut Self::Context) {
        self.run(ctx, |p, c| p.exited(c, &msg.who));
    }
}

struct Call(CallFn);
impl actix::Message for Call {
    type Result = ();
}
impl Handler<Call> for ProcessActor {
    type Result = ();
    fn handle(&mut self, msg: Call, ctx: &mut Self::Context) {
        self.run(ctx, msg.0);
    }
}

struct Stop;
impl actix::Message for Stop {
    type Result = ();
}
impl Handler<Stop> for ProcessActor {
    type Result = ();
    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
