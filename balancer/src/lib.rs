//! Plateau balancer: HAProxy-style TCP and HTTP load balancing in front of Marathon apps,
//! updated live — no reloads, no dropped connections.
//!
//! What is pure and what does I/O:
//! - [`messages`]: the typed change feed from Marathon (snapshot, then versioned deltas).
//! - [`table`]: the routing table, a pure core: Marathon's routes in, an immutable
//!   [`table::Table`] out (TCP route per service port, HTTP routes per virtual host and
//!   path prefix, balance algorithm per route).
//! - [`dataplane`]: the I/O, on tokio threads of its own: one TCP listener per service port,
//!   one HTTP listener routing by `Host` and path (a hand-written HTTP/1.1 proxy path), an
//!   admin server (hyper) with `/stats` and `/metrics`. A new table is swapped in
//!   atomically: connections in flight are never touched.
//! - [`process`]: [`process::BalancerProcess`], the actor that subscribes to Marathon, feeds
//!   the core and publishes each new table to the data plane through
//!   [`process::TablePublisher`]; [`process::start`] hosts both on a node.
//!
//! ```no_run
//! use plateau_balancer::dataplane::{DataPlane, DataPlaneConfig};
//! use plateau_balancer::messages::{AppRoutes, Backend, BackendState, RoutesSnapshot};
//! use plateau_balancer::table::RoutingState;
//!
//! let data_plane = DataPlane::start(DataPlaneConfig::default()).unwrap();
//! let mut state = RoutingState::new(None);
//! state.handle_snapshot(RoutesSnapshot {
//!     leader_epoch: 0,
//!     version: 1,
//!     apps: vec![AppRoutes {
//!         app_id: "/db".into(),
//!         service_ports: vec![10000],
//!         backends: vec![Backend {
//!             task_id: "db.1".into(),
//!             host: "127.0.0.1".into(),
//!             ports: vec![31000],
//!             state: BackendState::Running,
//!             healthy: None,
//!         }],
//!         ..Default::default()
//!     }],
//! });
//! // From now on 0.0.0.0:10000 forwards to 127.0.0.1:31000.
//! data_plane.publish(std::sync::Arc::new(state.table()));
//! ```
#![deny(missing_docs)]

pub mod dataplane;
pub mod error;
pub mod limits;
pub mod messages;
pub mod process;
pub mod table;

pub use error::BalancerError;
pub use process::{start, Balancer, BalancerConfig, BalancerProcess, TablePublisher};
