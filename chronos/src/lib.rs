//! Plateau Chronos: the distributed cron, running jobs on ISO 8601 and cron schedules exactly
//! once per instant, compatible with Mesos Chronos' REST API.
//!
//! **Pure cores** (no I/O, no clock, no randomness; calendar time comes in as
//! `chrono::DateTime<Utc>` arguments and decisions come back as values):
//!
//! - [`schedule`]: parsing Chronos' `R[n]/<start>/<period>` schedules (with `scheduleTimeZone`)
//!   and five-field cron expressions; the next instant after a given one; the rewritten schedule
//!   string after a run (`R5/…` → `R4/<next start>/…`); daylight-saving rules; which instants are
//!   due after an outage ([`schedule::due_instants`], [`schedule::CatchUp`]).
//! - [`job`]: the JSON job object with Chronos' field names and defaults, its validation (errors
//!   name the field), and [`job::JobGraph`]: jobs by name with dependency edges, cycle checks,
//!   dependent-job triggering and `/graph/csv`.
//! - [`stats`]: `/job/stat/{name}` and `/stats/{percentile}` bodies from run history.
//! - [`constraints`]: Chronos' EQUALS/LIKE/UNLIKE placement constraints against an offer.
//! - [`limits`]: the named maximum of everything that grows from outside input.
//!
//! [`bench`] runs many jobs on an in-process cluster and measures lateness and exactly-once.
//!
//! **The scheduler and its edges**:
//!
//! - [`scheduler`]: [`scheduler::ChronosScheduler`], a `plateau_sdk::Scheduler` hosted by the
//!   SDK's driver process: it reads calendar time from the runtime's wall clock only, records
//!   every run's intent before launching it, reconciles launched task ids after a restart, and so
//!   runs exactly one successful task per scheduled instant across crashes (see its module docs
//!   for the write order and the `catchUp` policies).
//! - [`store`]: the durable state behind a small trait: [`store::RedbStore`]
//!   (`<work-dir>/chronos/state.redb`) and [`store::MemoryStore`] for tests and simulation.
//! - [`http`]: Chronos' REST API (actix-web) under `/v1/scheduler` and `/scheduler`, and
//!   [`http::start`] to run the whole thing on a node.
//!
//! # Example
//!
//! Create a daily job in New York and a dependent one, then step through the first runs the way
//! the Chronos process does.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use plateau_chronos::job::{Job, JobGraph, RunOutcome};
//! use plateau_chronos::schedule::{due_instants, CatchUp, DEFAULT_EPSILON};
//!
//! let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
//! let now = at("2024-03-09T07:30:20Z");
//!
//! let mut graph = JobGraph::new();
//! let mut backup = Job::new("backup", "tar czf /tmp/b.tgz /srv");
//! backup.schedule = Some("R3/2024-03-09T02:30:00-05:00/P1D".into());
//! backup.schedule_time_zone = Some("America/New_York".into());
//! graph.upsert(backup, now).unwrap();
//! let mut upload = Job::new("upload", "upload /tmp/b.tgz");
//! upload.parents = Some(vec!["backup".into()]);
//! graph.upsert(upload, now).unwrap();
//!
//! // 02:30 EST on 2024-03-09 (07:30Z) is due now.
//! let schedule = graph.schedule("backup").unwrap().clone();
//! let due = due_instants(&schedule, None, now, DEFAULT_EPSILON, CatchUp::Once, 10);
//! assert_eq!(due, [at("2024-03-09T07:30:00Z")]);
//!
//! // After the run, Chronos shows the rewritten schedule. 02:30 does not exist on 03-10 (spring
//! // forward): it is kept as written, with the pre-gap offset, and runs at 03:30 EDT.
//! graph.set_schedule("backup", schedule.after_run(due[0])).unwrap();
//! assert_eq!(
//!     graph.get("backup").unwrap().schedule.as_deref(),
//!     Some("R2/2024-03-10T02:30:00.000-05:00/P1D")
//! );
//! let next = graph.schedule("backup").unwrap().next_after(now).unwrap();
//! assert_eq!(next, at("2024-03-10T07:30:00Z"));
//!
//! // When the backup succeeds, its dependent job is due.
//! let children = graph.handle_run_finished("backup", RunOutcome::Success).unwrap();
//! assert_eq!(children, ["upload"]);
//! assert_eq!(graph.graph_csv(|_| Default::default()), "node,backup,fresh,idle\nnode,upload,fresh,idle\nlink,backup,upload\n");
//! ```
#![deny(missing_docs)]

pub mod backend;
pub mod bench;
pub mod constraints;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod job;
pub mod limits;
pub mod proxy;
pub mod replicated;
pub mod schedule;
pub mod scheduler;
pub mod stats;
pub mod store;
