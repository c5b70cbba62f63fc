//! Processes: plain structs with typed message handlers, hosted by a [`crate::Node`] (actix,
//! real network) or by the simulator ([`crate::sim::Sim`], virtual clock) without knowing which.
//!
//! A process reaches the world only through its [`Context`]: it sends to a [`Upid`], links to
//! other processes, sets timers (a timer is a message the process sends to itself later),
//! reads the clock and the seeded RNG. The context only *records* these effects; the host
//! carries them out after the handler returns. This is what lets the same code run on a real
//! network and on a simulated one.
//!
//! ```
//! use plateau_runtime::{Context, Handlers, Message, Process, Upid};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping(u64);
//! impl Message for Ping { const NAME: &'static str = "doc.Ping"; }
//! #[derive(Serialize, Deserialize)]
//! struct Pong(u64);
//! impl Message for Pong { const NAME: &'static str = "doc.Pong"; }
//!
//! /// Answers every Ping with a Pong.
//! struct Ponger;
//! impl Ponger {
//!     fn handle_ping(&mut self, ctx: &mut Context<'_>, from: &Upid, ping: Ping) {
//!         ctx.send(from, Pong(ping.0));
//!     }
//! }
//! impl Process for Ponger {
//!     fn install(handlers: &mut Handlers<Self>) {
//!         handlers.on(Self::handle_ping);
//!     }
//! }
//! ```

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::{Instant, RealClock};
use crate::identity::{PeerIdentity, Role, RoleSet};
use crate::message::{AnyMessage, Message, Payload};
use crate::rng::{LookupMap, Rng};
use crate::upid::Upid;

/// A component of Plateau: a struct with typed handlers.
pub trait Process: 'static {
    /// Register the handler of each message type this process accepts. Messages of other
    /// types are dropped with a log line, as libprocess does.
    fn install(handlers: &mut Handlers<Self>)
    where
        Self: Sized;

    /// Called once when the process starts, before any message.
    fn initialize(&mut self, _ctx: &mut Context<'_>) {}

    /// A process this one linked to may be gone: its node's connection broke, it terminated,
    /// or it never existed. A broken connection does not prove the peer is dead (a partition
    /// looks the same); the link is removed and must be made again to watch the peer anew.
    fn exited(&mut self, _ctx: &mut Context<'_>, _upid: &Upid) {}

    /// Called when the process terminates in an orderly way (not when its node crashes).
    fn finalize(&mut self) {}
}

/// Identifies a timer set with [`Context::delay`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// A thread-safe way to post a message to a process from outside its handlers: from a
/// side-effect implementation's thread or task (a process exited, a probe finished), or from
/// an HTTP handler. The message arrives as sent by the process to itself.
#[derive(Clone)]
pub struct Mailbox {
    upid: Upid,
    post: Arc<dyn Fn(Upid, Box<dyn AnyMessage>) + Send + Sync>,
}

impl Mailbox {
    /// A mailbox from the host's delivery function.
    pub fn new(upid: Upid, post: Arc<dyn Fn(Upid, Box<dyn AnyMessage>) + Send + Sync>) -> Self {
        Mailbox { upid, post }
    }

    /// The process this mailbox delivers to.
    pub fn upid(&self) -> &Upid {
        &self.upid
    }

    /// Deliver `msg` to the process (as from itself).
    pub fn post<M: Message>(&self, msg: M) {
        (self.post)(self.upid.clone(), Box::new(msg));
    }

    /// Deliver `msg` to the process as sent by `from`.
    pub fn post_from<M: Message>(&self, from: Upid, msg: M) {
        (self.post)(from, Box::new(msg));
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailbox({})", self.upid)
    }
}

/// What a handler asked the host to do.
pub enum Effect {
    /// Send a message.
    Send {
        /// Receiver.
        to: Upid,
        /// The message.
        msg: Box<dyn AnyMessage>,
    },
    /// Deliver `msg` to this process after `after`, unless cancelled.
    Delay {
        /// The timer.
        id: TimerId,
        /// Delay from now.
        after: Duration,
        /// The message delivered when it fires.
        msg: Box<dyn AnyMessage>,
    },
    /// Cancel a timer (no effect if it already fired).
    Cancel(TimerId),
    /// Watch a process: `exited` is called when it goes away.
    Link(Upid),
    /// Stop watching a process.
    Unlink(Upid),
    /// Start another process on the same node.
    Spawn {
        /// Its name.
        name: String,
        /// The process.
        process: Box<dyn ErasedProcess>,
    },
    /// Stop this process once the handler returns.
    Terminate,
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Send { to, msg } => write!(f, "Send({to}, {})", msg.name()),
            Effect::Delay { id, after, msg } => {
                write!(f, "Delay({id:?}, {after:?}, {})", msg.name())
            }
            Effect::Cancel(id) => write!(f, "Cancel({id:?})"),
            Effect::Link(u) => write!(f, "Link({u})"),
            Effect::Unlink(u) => write!(f, "Unlink({u})"),
            Effect::Spawn { name, .. } => write!(f, "Spawn({name})"),
            Effect::Terminate => write!(f, "Terminate"),
        }
    }
}

/// Per-process state the host keeps for the context: RNG, timer counter, mailbox.
pub struct ProcessState {
    /// The process's address.
    pub upid: Upid,
    /// Its seeded RNG (derived from the node's seed and the process name).
    pub rng: Rng,
    /// Next timer id.
    pub next_timer: u64,
    /// How to post to it from outside.
    pub mailbox: Mailbox,
}

impl ProcessState {
    /// State for a process named `upid.name` on a node seeded with `node_seed`.
    pub fn new(upid: Upid, node_seed: u64, mailbox: Mailbox) -> Self {
        let rng = Rng::derive(node_seed, &upid.name);
        ProcessState {
            upid,
            rng,
            next_timer: 1,
            mailbox,
        }
    }
}

/// The world as a handler sees it. Effects are recorded and carried out by the host after the
/// handler returns, in the order they were recorded.
pub struct Context<'a> {
    state: &'a mut ProcessState,
    time: TimeSource<'a>,
    now_cache: std::cell::Cell<Option<Instant>>,
    effects: &'a mut Vec<Effect>,
    peer: Option<Arc<PeerIdentity>>,
}

/// Where a context reads the time: fixed by the simulator, or a real clock read at most once
/// per handler call (most handlers never ask, and a clock read is not free).
#[derive(Clone, Copy, Debug)]
pub enum TimeSource<'a> {
    /// Virtual time, fixed for the event.
    Fixed {
        /// Monotonic time.
        now: Instant,
        /// Calendar time.
        wall: SystemTime,
    },
    /// A node's clock.
    Clock(&'a RealClock),
}

impl<'a> Context<'a> {
    /// A context for one handler call (used by hosts).
    pub fn new(
        state: &'a mut ProcessState,
        time: TimeSource<'a>,
        effects: &'a mut Vec<Effect>,
    ) -> Self {
        Context {
            state,
            time,
            now_cache: std::cell::Cell::new(None),
            effects,
            peer: None,
        }
    }

    /// Set the verified identity of the peer the message being handled came from (hosts
    /// deliver remote messages with it; local and simulated deliveries have none).
    pub fn set_peer(&mut self, peer: Option<Arc<PeerIdentity>>) {
        self.peer = peer;
    }

    /// The identity the sender's node certificate proved (role, address, principal), for a
    /// message that came over the network; `None` for local messages, timers, and in the
    /// simulator (which has no certificates).
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_deref()
    }

    /// This process's address.
    pub fn self_upid(&self) -> &Upid {
        &self.state.upid
    }

    /// Monotonic time (the same for the whole handler call).
    pub fn now(&self) -> Instant {
        match self.time {
            TimeSource::Fixed { now, .. } => now,
            TimeSource::Clock(clock) => match self.now_cache.get() {
                Some(now) => now,
                None => {
                    let now = clock.now();
                    self.now_cache.set(Some(now));
                    now
                }
            },
        }
    }

    /// Calendar time, for calendars (Chronos) and timestamps shown to users.
    pub fn wall_clock(&self) -> SystemTime {
        match self.time {
            TimeSource::Fixed { wall, .. } => wall,
            TimeSource::Clock(clock) => clock.wall(),
        }
    }

    /// The process's seeded RNG.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.state.rng
    }

    /// A handle to post messages to this process from outside a handler.
    pub fn mailbox(&self) -> Mailbox {
        self.state.mailbox.clone()
    }

    /// Send `msg` to `to`: a mailbox push if `to` is on this node, a network send otherwise.
    /// At most once, and in order per sender→receiver pair.
    pub fn send<M: Message>(&mut self, to: &Upid, msg: M) {
        self.effects.push(Effect::Send {
            to: to.clone(),
            msg: Box::new(msg),
        });
    }

    /// Send an already boxed message.
    pub fn send_boxed(&mut self, to: &Upid, msg: Box<dyn AnyMessage>) {
        self.effects.push(Effect::Send {
            to: to.clone(),
            msg,
        });
    }

    /// Deliver `msg` to this process after `after` (a timer).
    pub fn delay<M: Message>(&mut self, after: Duration, msg: M) -> TimerId {
        let id = TimerId(self.state.next_timer);
        self.state.next_timer += 1;
        self.effects.push(Effect::Delay {
            id,
            after,
            msg: Box::new(msg),
        });
        id
    }

    /// Cancel a timer; a timer that already fired is unaffected.
    pub fn cancel(&mut self, timer: TimerId) {
        self.effects.push(Effect::Cancel(timer));
    }

    /// Watch `upid`: [`Process::exited`] is called when it goes away or its node's connection
    /// breaks.
    pub fn link(&mut self, upid: &Upid) {
        self.effects.push(Effect::Link(upid.clone()));
    }

    /// Stop watching `upid`.
    pub fn unlink(&mut self, upid: &Upid) {
        self.effects.push(Effect::Unlink(upid.clone()));
    }

    /// Start `process` as `name` on this node; returns its address.
    pub fn spawn<P: Process>(&mut self, name: &str, process: P) -> Upid {
        let upid = Upid {
            name: name.into(),
            host: self.state.upid.host.clone(),
            port: self.state.upid.port,
        };
        self.effects.push(Effect::Spawn {
            name: name.to_string(),
            process: Box::new(Hosted::new(process)),
        });
        upid
    }

    /// Terminate this process after the handler returns.
    pub fn terminate(&mut self) {
        self.effects.push(Effect::Terminate);
    }
}

type HandlerFn<P> = Box<dyn Fn(&mut P, &mut Context<'_>, &Upid, Box<dyn Any + Send>)>;
type EncodedHandlerFn<P> =
    Box<dyn Fn(&mut P, &mut Context<'_>, &Upid, &[u8]) -> Result<(), postcard::Error>>;

struct Entry<P> {
    type_id: TypeId,
    handle: HandlerFn<P>,
    /// Decodes straight into the handler's type (no intermediate box).
    handle_encoded: EncodedHandlerFn<P>,
}

/// The typed handlers of a process, keyed by message name, and which roles may send each
/// message over the network.
pub struct Handlers<P> {
    /// Keyed by name, looked up at each delivery, never walked.
    entries: LookupMap<&'static str, Entry<P>>,
    /// Roles allowed to send a message from another node, by message name.
    senders: LookupMap<&'static str, RoleSet>,
    /// Roles allowed to send a message that `senders` does not name.
    other_senders: RoleSet,
}

impl<P: 'static> Handlers<P> {
    fn new() -> Self {
        Handlers {
            entries: LookupMap::default(),
            senders: LookupMap::default(),
            other_senders: RoleSet::ANY,
        }
    }

    /// Only peers whose certificate names one of `roles` may send the messages `names` from
    /// another node (local and simulated deliveries are not checked). A process that calls
    /// this should also call [`Handlers::allow_others`].
    pub fn allow_roles(&mut self, roles: RoleSet, names: &[&'static str]) -> &mut Self {
        for name in names {
            let previous = self.senders.insert(name, roles);
            assert!(previous.is_none(), "two sender rules for message {name}");
        }
        self
    }

    /// Roles that may send, from another node, the messages no [`Handlers::allow_roles`]
    /// names (default: every role). [`RoleSet::NONE`] keeps timers and other internal
    /// messages local.
    pub fn allow_others(&mut self, roles: RoleSet) -> &mut Self {
        self.other_senders = roles;
        self
    }

    /// May a peer in `role` send message `name` from another node?
    pub fn admits(&self, name: &str, role: Role) -> bool {
        self.senders
            .get(name)
            .copied()
            .unwrap_or(self.other_senders)
            .contains(role)
    }

    /// Handle messages of type `M` with `handler` (libprocess' `install<M>`).
    pub fn on<M: Message>(&mut self, handler: fn(&mut P, &mut Context<'_>, &Upid, M)) -> &mut Self {
        let previous = self.entries.insert(
            M::NAME,
            Entry {
                type_id: TypeId::of::<M>(),
                handle: Box::new(move |p, ctx, from, any| {
                    let msg = *any
                        .downcast::<M>()
                        .expect("handler entry type matches its message name");
                    handler(p, ctx, from, msg)
                }),
                handle_encoded: Box::new(move |p, ctx, from, body| {
                    let msg = postcard::from_bytes::<M>(body)?;
                    handler(p, ctx, from, msg);
                    Ok(())
                }),
            },
        );
        assert!(previous.is_none(), "two handlers for message {}", M::NAME);
        self
    }

    /// True when a handler for `name` is installed.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
}

/// Why a message could not be handed to a process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// The process has no handler for this message name.
    #[error("no handler for message '{0}'")]
    UnknownMessage(String),
    /// The body did not decode as the handler's type.
    #[error("message '{name}' does not decode: {reason}")]
    Undecodable {
        /// Message name.
        name: String,
        /// Decoder's reason.
        reason: String,
    },
    /// A local message's type is not the one registered under its name (two types share a
    /// wire name).
    #[error("message '{0}' has a different type than its handler expects")]
    TypeMismatch(String),
}

/// A process with its handlers, with the type erased: what hosts store.
pub trait ErasedProcess {
    /// Call [`Process::initialize`].
    fn initialize(&mut self, ctx: &mut Context<'_>);
    /// Hand a message to its handler.
    fn deliver(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        payload: Payload,
    ) -> Result<(), DeliverError>;
    /// Hand an encoded message to its handler.
    fn deliver_encoded(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        name: &str,
        body: &[u8],
    ) -> Result<(), DeliverError>;
    /// Call [`Process::exited`].
    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid);
    /// May a peer in `role` send message `name` from another node ([`Handlers::admits`])?
    fn admits(&self, _name: &str, _role: Role) -> bool {
        true
    }
    /// Call [`Process::finalize`].
    fn finalize(&mut self);
    /// The process itself, for typed access ([`Hosted::process_mut`]).
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A process and its handler table.
pub struct Hosted<P: Process> {
    process: P,
    handlers: Handlers<P>,
}

impl<P: Process> Hosted<P> {
    /// Install `process`'s handlers.
    pub fn new(process: P) -> Self {
        let mut handlers = Handlers::new();
        P::install(&mut handlers);
        Hosted { process, handlers }
    }

    /// The process.
    pub fn process_mut(&mut self) -> &mut P {
        &mut self.process
    }
}

impl<P: Process> ErasedProcess for Hosted<P> {
    fn initialize(&mut self, ctx: &mut Context<'_>) {
        self.process.initialize(ctx)
    }

    fn deliver(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        payload: Payload,
    ) -> Result<(), DeliverError> {
        let msg = match payload {
            Payload::Local(msg) => msg,
            Payload::Encoded { name, body } => {
                return self.deliver_encoded(ctx, from, &name, &body);
            }
        };
        let name = msg.name();
        let entry = self
            .handlers
            .entries
            .get(name)
            .ok_or_else(|| DeliverError::UnknownMessage(name.to_string()))?;
        let any = msg.into_any();
        // Two types sharing one wire name would make the handler's downcast fail.
        if (*any).type_id() != entry.type_id {
            return Err(DeliverError::TypeMismatch(name.to_string()));
        }
        (entry.handle)(&mut self.process, ctx, from, any);
        Ok(())
    }

    fn deliver_encoded(
        &mut self,
        ctx: &mut Context<'_>,
        from: &Upid,
        name: &str,
        body: &[u8],
    ) -> Result<(), DeliverError> {
        let entry = self
            .handlers
            .entries
            .get(name)
            .ok_or_else(|| DeliverError::UnknownMessage(name.to_string()))?;
        (entry.handle_encoded)(&mut self.process, ctx, from, body).map_err(|e| {
            DeliverError::Undecodable {
                name: name.to_string(),
                reason: e.to_string(),
            }
        })
    }

    fn exited(&mut self, ctx: &mut Context<'_>, upid: &Upid) {
        self.process.exited(ctx, upid)
    }

    fn admits(&self, name: &str, role: Role) -> bool {
        self.handlers.admits(name, role)
    }

    fn finalize(&mut self) {
        self.process.finalize()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        &mut self.process
    }
}
