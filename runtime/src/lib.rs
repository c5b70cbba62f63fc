//! Plateau's runtime: addressable actors (`name@host:port`) that talk through typed messages,
//! hosted on a real network (QUIC with mutual TLS) or inside a deterministic simulator.
//!
//! It is the libprocess of Plateau and knows nothing of clusters. Its parts:
//! - [`Upid`], [`NodeAddr`]: addresses.
//! - [`Message`]: a serde type with a stable wire name; frames and their bounded decoding in
//!   [`message`].
//! - [`Process`]: a component — a struct with typed handlers that reaches the world only
//!   through its [`Context`]. Pure of I/O; its effects are carried out by the host.
//! - [`Node`]: the real host. Each process lives in an actix actor; messages to other nodes go
//!   over [`transport`] (QUIC, mutual TLS with a cluster CA from [`tls`]).
//! - [`sim::Sim`]: the simulation host, a discrete-event loop on a virtual clock with a seeded,
//!   fault-injecting network.
//! - [`identity`]: who a peer is (the role, address and principal its certificate names)
//!   and which roles may send a process which messages.
//! - [`clock`] and [`Rng`]: time and randomness come only from the host.
//! - [`fuzzing`]: what the crates' fuzz suites share (cases per target, damaging bytes).
//!
//! ```
//! use plateau_runtime::sim::{Sim, SimConfig};
//! use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Ping(u32);
//! impl Message for Ping { const NAME: &'static str = "doc.Ping"; }
//!
//! #[derive(Default)]
//! struct Player { received: u32 }
//! impl Player {
//!     fn handle_ping(&mut self, ctx: &mut Context<'_>, from: &Upid, ping: Ping) {
//!         self.received += 1;
//!         if ping.0 > 0 { ctx.send(from, Ping(ping.0 - 1)); }
//!     }
//! }
//! impl Process for Player {
//!     fn install(h: &mut Handlers<Self>) { h.on(Self::handle_ping); }
//! }
//!
//! let mut sim = Sim::new(SimConfig::new(1));
//! let (a, b) = (NodeAddr::new("10.0.0.1", 5050), NodeAddr::new("10.0.0.2", 5051));
//! sim.add_node(a.clone());
//! sim.add_node(b.clone());
//! let alice = sim.spawn(&a, "alice", Player::default());
//! let bob = sim.spawn(&b, "bob", Player::default());
//! sim.post(&alice, &bob, Ping(9));
//! sim.run_for(std::time::Duration::from_secs(1));
//! assert_eq!(sim.inspect(&alice, |p: &Player| p.received), Some(5));
//! assert_eq!(sim.inspect(&bob, |p: &Player| p.received), Some(5));
//! ```
#![deny(missing_docs)]

pub mod bench;
pub mod clock;
pub mod fuzzing;
pub mod identity;
pub mod limits;
pub mod message;
pub mod node;
pub mod process;
pub mod rng;
pub mod sim;
mod sim_queue;
pub mod simnet;
pub mod tls;
pub mod transport;
pub mod upid;

pub use clock::Instant;
pub use identity::{PeerIdentity, Role, RoleSet};
pub use message::{Message, Payload};
pub use node::{Node, NodeConfig, ProcessRef, TransportConfig};
pub use process::{Context, Effect, ErasedProcess, Handlers, Hosted, Mailbox, Process, TimerId};
pub use rng::Rng;
pub use upid::{NodeAddr, Upid, UpidParseError};
