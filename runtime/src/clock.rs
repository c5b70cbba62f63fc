//! Time as processes see it: a monotonic [`Instant`] and the calendar time, both given by the
//! host (real clocks in deployments, a virtual clock in the simulator).

use std::ops::{Add, Sub};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A point on the runtime's monotonic clock: time since the clock's origin (the node's start,
/// or the start of a simulation). Pure cores take it as `since_origin()`.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Instant(Duration);

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `d` after the origin.
    pub const fn from_duration(d: Duration) -> Self {
        Instant(d)
    }

    /// Time since the origin.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// Nanoseconds since the origin.
    pub fn as_nanos(self) -> u64 {
        self.0.as_nanos() as u64
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_duration_since(other)
    }
}

/// The clock of a real node: monotonic time from tokio (so a paused tokio clock works too)
/// and calendar time from the operating system.
#[derive(Clone, Copy, Debug)]
pub struct RealClock {
    origin: tokio::time::Instant,
    wall_origin: Option<SystemTime>,
}

impl RealClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self::with_wall_origin(None)
    }

    /// A clock whose calendar time is `wall_origin` at its origin and advances with the
    /// monotonic clock (for simulation on tokio's paused clock); `None` reads the system's.
    pub fn with_wall_origin(wall_origin: Option<SystemTime>) -> Self {
        RealClock {
            origin: tokio::time::Instant::now(), // determinism-ok: the real host's clock
            wall_origin,
        }
    }

    /// Monotonic time since this clock's origin.
    pub fn now(&self) -> Instant {
        Instant(tokio::time::Instant::now().duration_since(self.origin)) // determinism-ok: real clock
    }

    /// Calendar time.
    pub fn wall(&self) -> SystemTime {
        match self.wall_origin {
            Some(origin) => origin + self.now().since_origin(),
            None => SystemTime::now(), // determinism-ok: the real host's calendar clock
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}
