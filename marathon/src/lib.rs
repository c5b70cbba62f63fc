//! Plateau Marathon: the distributed init, keeping long-running apps alive behind a REST v2
//! compatible API.
//!
//! Existing Marathon clients deserialize strictly, so the JSON here follows Marathon 1.10 as
//! described in `shared/reference/marathon-api.md`.
//!
//! The pure cores (`app`, `validation`, `constraints`, `backoff`, `time`, `state`) do no I/O and
//! read no clock: time comes in as an argument (`now: Duration` since an arbitrary monotonic
//! origin for backoff; unix milliseconds for calendar timestamps). The scheduler is a
//! [`plateau_sdk::Scheduler`] hosted by a `SchedulerDriver` process (real node or simulator);
//! its state goes through the [`store::Store`] trait (redb or memory); [`http`] serves the API.
//!
//! | module | what |
//! |---|---|
//! | [`app`] | the app definition as Marathon's JSON, defaults, ID normalization, partial-update merge |
//! | [`validation`] | parsing app bodies into definitions, or into Marathon's 400/422 error bodies |
//! | [`constraints`] | placement constraints (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS) and scale-down selection |
//! | [`backoff`] | launch delay after failures and the `GET /v2/queue` `delay` object |
//! | [`time`] | Marathon timestamps (`2015-09-25T15:13:48.343Z`) |
//! | [`state`] | instances, app records, deployments and their API JSON |
//! | [`scheduler`] | the Marathon scheduler: offers, launch queue, replacement, deployments, reconciliation, API operations |
//! | [`store`] | durable state of a single Marathon: [`RedbStore`] (`<work-dir>/marathon/state.redb`) and [`MemoryStore`] |
//! | [`replicated`] | the state of leader + standbys in the masters' coordination store: key layout, writes, load |
//! | [`events`] | the `/v2/events` bus: bounded per-subscriber queues, slow subscribers dropped |
//! | [`http`] | the REST API v2 (actix-web): `configure`, `serve`, `start` |
//! | [`proxy`] | leader + standbys: a standby forwards the API to the leader (`X-Marathon-Via`), `/v2/events` redirected |
//! | [`readiness`] | readiness probes during deployments: HTTP on worker threads, or scripted |
//! | [`routes`] | the routes change feed for balancers (snapshot, then versioned deltas) |
//! | [`bench`] | `plateau bench launch`: launch latency through the REST API |
//! | [`limits`] | named maximums for everything sized by outside input |
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use plateau_marathon::constraints::{offer_matches, Placement};
//! use plateau_marathon::validation::parse_app;
//!
//! // POST /v2/apps
//! let app = parse_app(br#"{
//!     "id": "sleep-unique",
//!     "cmd": "sleep 60",
//!     "instances": 3,
//!     "constraints": [["hostname", "UNIQUE"]]
//! }"#).unwrap();
//! assert_eq!(app.id, "/sleep-unique");
//! assert_eq!(app.mem, 128.0);
//!
//! // One instance already runs on host a: an offer from a is declined, one from b accepted.
//! let placed = [Placement::on_host("a")];
//! assert!(!offer_matches(&app.constraints, "a", &BTreeMap::new(), &placed));
//! assert!(offer_matches(&app.constraints, "b", &BTreeMap::new(), &placed));
//!
//! // A bad body is answered the way Marathon answers it.
//! let err = parse_app(br#"{"id": "x", "cmd": "sleep 60", "instances": -1}"#).unwrap_err();
//! assert_eq!(err.status, 422);
//! assert_eq!(
//!     err.body,
//!     serde_json::json!({
//!         "message": "Invalid JSON",
//!         "details": [{"path": "/instances", "errors": ["error.min"]}]
//!     })
//! );
//! ```
#![deny(missing_docs)]

pub mod app;
pub mod backoff;
pub mod bench;
pub mod constraints;
pub mod error;
pub mod events;
pub mod http;
pub mod limits;
pub mod proxy;
pub mod readiness;
pub mod replicated;
pub mod routes;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod time;
pub mod validation;

pub use app::{AppDefinition, AppUpdate};
pub use constraints::{offer_matches, AttrValue, Constraint, Placement};
pub use error::Error;
pub use scheduler::{MarathonConfig, MarathonScheduler};
pub use store::{MemoryStore, RedbStore, Store};
pub use validation::{parse_app, ApiError};
