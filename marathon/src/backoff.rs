//! Launch backoff: how long Marathon waits before launching a replacement for an app whose
//! tasks keep failing, and the `delay` object `GET /v2/queue` shows.
//!
//! After `n` consecutive failures the delay is
//! `min(backoffSeconds × backoffFactor^(n-1), maxLaunchDelaySeconds)` (zero when `n = 0`).
//! The delay grows on TASK_FAILED and TASK_FINISHED (and kills for failed health checks), not on
//! TASK_KILLED; it is reset by a new version, by `DELETE /v2/queue/{id}/delay`, or once
//! `current delay + maxLaunchDelaySeconds` has passed with no failure (Marathon's
//! `RateLimiter.cleanUpOverdueDelays`). Deciding which status counts as a failure is the caller's
//! job; this module only computes.
//!
//! Time is `now: Duration` since an arbitrary monotonic origin.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::AppDefinition;

/// The three backoff fields of an app definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffStrategy {
    /// First delay, in seconds (`backoffSeconds`, default 1).
    pub backoff_seconds: u32,
    /// Growth per further failure (`backoffFactor`, default 1.15, at least 1).
    pub backoff_factor: f64,
    /// Cap, in seconds (`maxLaunchDelaySeconds`, default 300).
    pub max_launch_delay_seconds: u32,
}

impl BackoffStrategy {
    /// The strategy of an app definition.
    pub fn of_app(app: &AppDefinition) -> Self {
        Self {
            backoff_seconds: app.backoff_seconds,
            backoff_factor: app.backoff_factor,
            max_launch_delay_seconds: app.max_launch_delay_seconds,
        }
    }

    /// The cap as a duration.
    pub fn max_launch_delay(&self) -> Duration {
        Duration::from_secs(u64::from(self.max_launch_delay_seconds))
    }
}

impl Default for BackoffStrategy {
    fn default() -> Self {
        Self {
            backoff_seconds: crate::app::DEFAULT_BACKOFF_SECONDS,
            backoff_factor: crate::app::DEFAULT_BACKOFF_FACTOR,
            max_launch_delay_seconds: crate::app::DEFAULT_MAX_LAUNCH_DELAY_SECONDS,
        }
    }
}

/// Delay before the next launch after `consecutive_failures` failures in a row:
/// `min(backoffSeconds × backoffFactor^(n-1), maxLaunchDelaySeconds)`, zero for `n = 0`.
///
/// ```
/// use std::time::Duration;
/// use plateau_marathon::backoff::{launch_delay, BackoffStrategy};
/// let s = BackoffStrategy { backoff_seconds: 1, backoff_factor: 2.0, max_launch_delay_seconds: 300 };
/// assert_eq!(launch_delay(&s, 0), Duration::ZERO);
/// assert_eq!(launch_delay(&s, 1), Duration::from_secs(1));
/// assert_eq!(launch_delay(&s, 4), Duration::from_secs(8));
/// assert_eq!(launch_delay(&s, 40), Duration::from_secs(300));
/// ```
pub fn launch_delay(strategy: &BackoffStrategy, consecutive_failures: u32) -> Duration {
    if consecutive_failures == 0 {
        return Duration::ZERO;
    }
    let cap = f64::from(strategy.max_launch_delay_seconds);
    // A factor below 1 is refused by validation; clamp so a stored bad value cannot shrink delays.
    let factor = if strategy.backoff_factor.is_finite() {
        strategy.backoff_factor.max(1.0)
    } else {
        1.0
    };
    let exponent = i32::try_from(consecutive_failures - 1).unwrap_or(i32::MAX);
    let seconds = f64::from(strategy.backoff_seconds) * factor.powi(exponent);
    // powi may overflow to infinity; min() then yields the cap.
    let capped = if seconds.is_nan() {
        cap
    } else {
        seconds.min(cap)
    };
    Duration::from_secs_f64(capped.max(0.0))
}

/// The `delay` object of a `GET /v2/queue` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDelay {
    /// Whole seconds until the app may launch again, rounded up so that a value above zero
    /// always means "backed off"; zero once the delay has passed.
    pub time_left_seconds: u64,
    /// True once the delay has passed: the app is waiting for offers, not for its backoff.
    pub overdue: bool,
}

/// The backoff of one app (one run spec version): how many failures in a row, and until when
/// launches wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaunchBackoff {
    /// Failures counted since the last reset.
    pub consecutive_failures: u32,
    /// Delay applied at the last failure.
    pub current_delay: Duration,
    /// Launches wait until this instant (same origin as `now`).
    pub delay_until: Duration,
}

impl LaunchBackoff {
    /// A fresh backoff: no delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one more failure at `now` and pushes `delay_until` out accordingly.
    pub fn handle_failure(&mut self, now: Duration, strategy: &BackoffStrategy) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.current_delay = launch_delay(strategy, self.consecutive_failures);
        self.delay_until = now.saturating_add(self.current_delay);
    }

    /// Forgets all failures (new version deployed, or `DELETE /v2/queue/{id}/delay`).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// True when no failure came for `current delay + maxLaunchDelaySeconds` after the delay
    /// ended; Marathon then drops the delay, so the next failure starts from `backoffSeconds`.
    pub fn is_expired(&self, now: Duration, strategy: &BackoffStrategy) -> bool {
        self.consecutive_failures > 0
            && now
                >= self
                    .delay_until
                    .saturating_add(self.current_delay)
                    .saturating_add(strategy.max_launch_delay())
    }

    /// True while launches must wait.
    pub fn is_backed_off(&self, now: Duration) -> bool {
        now < self.delay_until
    }

    /// The `delay` object for `GET /v2/queue` at `now`.
    pub fn queue_delay(&self, now: Duration) -> QueueDelay {
        match self.delay_until.checked_sub(now) {
            Some(left) if !left.is_zero() => QueueDelay {
                time_left_seconds: left.as_millis().div_ceil(1000) as u64,
                overdue: false,
            },
            _ => QueueDelay {
                time_left_seconds: 0,
                overdue: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marathon_default() -> BackoffStrategy {
        BackoffStrategy::default()
    }

    #[test]
    fn defaults_match_marathon() {
        let s = marathon_default();
        assert_eq!(s.backoff_seconds, 1);
        assert_eq!(s.backoff_factor, 1.15);
        assert_eq!(s.max_launch_delay_seconds, 300);
    }

    #[test]
    fn delay_grows_geometrically_and_caps() {
        let s = marathon_default();
        assert_eq!(launch_delay(&s, 1), Duration::from_secs(1));
        let second = launch_delay(&s, 2).as_secs_f64();
        assert!((second - 1.15).abs() < 1e-9, "{second}");
        let tenth = launch_delay(&s, 10).as_secs_f64();
        assert!((tenth - 1.15f64.powi(9)).abs() < 1e-9, "{tenth}");
        assert_eq!(launch_delay(&s, 1000), Duration::from_secs(300));
        assert_eq!(launch_delay(&s, u32::MAX), Duration::from_secs(300));
        let zero = BackoffStrategy {
            backoff_seconds: 0,
            ..s
        };
        assert_eq!(launch_delay(&zero, 5), Duration::ZERO);
    }

    #[test]
    fn queue_delay_reports_time_left_then_overdue() {
        let s = BackoffStrategy {
            backoff_seconds: 10,
            backoff_factor: 2.0,
            max_launch_delay_seconds: 300,
        };
        let mut b = LaunchBackoff::new();
        let t0 = Duration::from_secs(100);
        assert!(b.queue_delay(t0).overdue);
        b.handle_failure(t0, &s);
        assert_eq!(
            b.queue_delay(t0),
            QueueDelay {
                time_left_seconds: 10,
                overdue: false
            }
        );
        assert_eq!(
            b.queue_delay(t0 + Duration::from_millis(9_500))
                .time_left_seconds,
            1
        );
        assert!(b.is_backed_off(t0 + Duration::from_millis(9_999)));
        assert!(b.queue_delay(t0 + Duration::from_secs(10)).overdue);
        b.handle_failure(t0 + Duration::from_secs(10), &s);
        assert_eq!(b.current_delay, Duration::from_secs(20));
        let json = serde_json::to_value(b.queue_delay(t0 + Duration::from_secs(10))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"timeLeftSeconds": 20, "overdue": false})
        );
    }

    #[test]
    fn expires_after_delay_plus_max_launch_delay() {
        let s = BackoffStrategy {
            backoff_seconds: 10,
            backoff_factor: 2.0,
            max_launch_delay_seconds: 60,
        };
        let mut b = LaunchBackoff::new();
        assert!(!b.is_expired(Duration::from_secs(1_000_000), &s));
        b.handle_failure(Duration::ZERO, &s);
        // delay_until = 10 s; expiry at 10 + 10 + 60.
        assert!(!b.is_expired(Duration::from_secs(79), &s));
        assert!(b.is_expired(Duration::from_secs(80), &s));
        b.reset();
        assert_eq!(b, LaunchBackoff::new());
    }

    proptest::proptest! {
        #[test]
        fn delay_is_monotonic_and_capped(
            backoff in 0u32..1000, factor in 1.0f64..10.0, cap in 0u32..100_000, n in 0u32..500
        ) {
            let s = BackoffStrategy { backoff_seconds: backoff, backoff_factor: factor, max_launch_delay_seconds: cap };
            let d = launch_delay(&s, n);
            let next = launch_delay(&s, n + 1);
            proptest::prop_assert!(d <= Duration::from_secs(u64::from(cap)));
            proptest::prop_assert!(d <= next);
        }
    }
}
