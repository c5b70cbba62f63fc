//! systemd and Fleet units for Plateau: a service unit becomes a Marathon app, a timer with its
//! service becomes a Chronos job.
//!
//! Everything here is pure: the caller reads the unit files and passes their text (and, where
//! a translation needs it, the number of agents or the time of deployment); nothing reads a
//! clock, a file or the network.
//!
//! - [`service_to_app`] / [`translate_service`]: a `.service` unit, with Fleet's `[X-Fleet]`
//!   section, as the JSON body of Marathon's `POST /v2/apps`.
//! - [`timer_to_job`] / [`translate_timer`]: a `.timer` unit and the `.service` it starts as
//!   the JSON body of Chronos' `POST /scheduler/iso8601`, with `OnCalendar=` carried in the
//!   job's `calendar` field (Chronos' third kind of schedule).
//! - [`UnitFile`]: the unit-file syntax (sections, continuations, comments, repeated keys).
//!
//! A directive is translated, or accepted and listed in [`Translation::ignored`] (it has no
//! meaning in a cluster, e.g. `After=`), or refused with a [`UnitError`] that names its
//! section, key and line. Nothing is dropped silently. `docs/units.md` lists every directive.
//!
//! ```
//! let app = plateau_units::service_to_app(
//!     "web@blue.service",
//!     "[Service]\nExecStart=/usr/bin/web --color %i\nMemoryMax=512M\nCPUQuota=150%\n",
//! )
//! .unwrap();
//! assert_eq!(app["id"], "/web-blue");
//! assert_eq!(app["args"], serde_json::json!(["/usr/bin/web", "--color", "blue"]));
//! assert_eq!(app["mem"], 512.0);
//! assert_eq!(app["cpus"], 1.5);
//!
//! let job = plateau_units::timer_to_job(
//!     "backup.timer",
//!     "[Timer]\nOnCalendar=Mon..Fri *-*-* 02:00 Europe/Berlin\nPersistent=true\n",
//!     "[Service]\nType=oneshot\nExecStart=/usr/bin/backup --all\n",
//! )
//! .unwrap();
//! assert_eq!(job["name"], "backup");
//! assert_eq!(job["calendar"], "Mon..Fri *-*-* 02:00 Europe/Berlin");
//! assert_eq!(job["command"], "/usr/bin/backup --all");
//! ```
#![deny(missing_docs)]

pub mod exec;
pub mod limits;
pub mod parse;
mod service;
mod timer;
pub mod values;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use parse::{Entry, UnitFile, UnitName};
pub use service::{service_to_app, translate_service, ServiceOptions, ONE_PER_AGENT_LABEL};
pub use timer::{timer_to_job, translate_timer, TimerOptions};

/// Why a unit cannot be translated. Every variant names what is wrong; those about a directive
/// name its section, key and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The text is not unit-file syntax.
    #[error("line {line}: {message}")]
    Syntax {
        /// Line number (from 1; 0 for the whole file).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The unit name is not usable.
    #[error("unit name '{name}': {reason}")]
    UnitName {
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A directive has no equivalent in Marathon or Chronos.
    #[error("[{section}] {key}= (line {line}) cannot be translated: {reason}")]
    Untranslatable {
        /// Section, without brackets.
        section: String,
        /// Key.
        key: String,
        /// Line number.
        line: usize,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A directive's value is bad.
    #[error("[{section}] {key}= (line {line}): {message}")]
    Invalid {
        /// Section, without brackets.
        section: String,
        /// Key.
        key: String,
        /// Line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A specifier (`%H`, `%u`, ...) cannot be expanded away from the machine.
    #[error(
        "[{section}] {key}= (line {line}): specifier %{specifier} cannot be expanded: {reason}"
    )]
    Specifier {
        /// Section, without brackets.
        section: String,
        /// Key.
        key: String,
        /// Line number.
        line: usize,
        /// The letter after `%`.
        specifier: char,
        /// Why.
        reason: String,
    },
    /// A directive the translation needs is absent.
    #[error("[{section}] {key}= is required: {reason}")]
    Missing {
        /// Section, without brackets.
        section: String,
        /// Key.
        key: String,
        /// Why it is needed.
        reason: String,
    },
}

/// A translation: the JSON body to post, and the directives accepted without effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// Marathon app or Chronos job JSON.
    pub json: serde_json::Value,
    /// One line per directive accepted but not translated (`[Unit] After= (line 3): ...`), in
    /// file order, for the caller to show.
    pub ignored: Vec<String>,
}
