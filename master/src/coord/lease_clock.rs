//! [`LeaseClock`]: when each live lease runs out, on the leader's monotonic clock.
//!
//! Keep-alives are not replicated (they would put one log entry per session per second in
//! the log): only the leader knows the deadlines, and it decides expiry by proposing
//! [`CoordOp::ExpireLeases`](super::CoordOp::ExpireLeases). A new leader knows no deadline,
//! so it gives every live lease a full time to live plus a grace period (etcd's rule): the
//! holders have time to find the new leader before anything expires, and a master failover
//! does not depose a healthy framework.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::ops::{CoordError, LeaseChange, LeaseId};
use super::store::LeaseChanges;
use crate::limits::{COORD_EXPIRE_LEASES_PER_OP_MAX, COORD_EXPIRE_RETRY_INTERVAL};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClockLease {
    ttl: Duration,
    /// When the lease expires, or (expiring) when its expiry is proposed again.
    deadline: Duration,
    /// Whether its expiry has been returned by [`LeaseClock::due`] (it is no longer kept
    /// alive, whatever happens to the proposal).
    expiring: bool,
}

/// Deadlines of the live leases on the leader. Pure: time comes in as `now`, the monotonic
/// time of the leader's runtime clock.
///
/// ```
/// use std::time::Duration;
/// use plateau_master::coord::{LeaseClock, LeaseId};
///
/// let s = Duration::from_secs;
/// let mut clock = LeaseClock::new();
/// // Becoming leader at t=100 with one live lease of ttl 10 s, grace 5 s.
/// clock.on_become_leader(s(100), s(5), [(LeaseId(7), s(10))]);
/// assert_eq!(clock.poll_timeout(), Some(s(115)));
/// clock.handle_keep_alive(s(112), LeaseId(7)).unwrap();
/// assert!(clock.due(s(121)).is_empty());
/// assert_eq!(clock.due(s(122)), vec![LeaseId(7)]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct LeaseClock {
    leases: BTreeMap<LeaseId, ClockLease>,
    /// `(deadline, lease)` of every entry of `leases`.
    deadlines: BTreeSet<(Duration, LeaseId)>,
}

impl LeaseClock {
    /// A clock with no lease (a follower's).
    pub fn new() -> Self {
        Self::default()
    }

    /// This master became leader at `now`: every live lease (from
    /// [`super::CoordStore::lease_ttls`]) runs until `now + ttl + grace`. Choose `grace` at
    /// least the election timeout plus a keep-alive interval.
    pub fn on_become_leader(
        &mut self,
        now: Duration,
        grace: Duration,
        leases: impl IntoIterator<Item = (LeaseId, Duration)>,
    ) {
        self.clear();
        for (lease, ttl) in leases {
            self.insert(lease, ttl, now + ttl + grace, false);
        }
    }

    /// This master no longer leads: it forgets every deadline.
    pub fn clear(&mut self) {
        self.leases.clear();
        self.deadlines.clear();
    }

    /// Feeds the lease changes the store applied (drained with
    /// [`super::CoordStore::drain_lease_changes`]) at `now`. If some were lost, pass the
    /// store's leases to resynchronize.
    pub fn handle_changes(
        &mut self,
        now: Duration,
        changes: &LeaseChanges,
        store_leases: impl IntoIterator<Item = (LeaseId, Duration)>,
    ) {
        if changes.lost {
            self.resync(now, store_leases);
            return;
        }
        for change in &changes.changes {
            match *change {
                LeaseChange::Granted { lease, ttl_ms } => {
                    let ttl = Duration::from_millis(ttl_ms);
                    self.remove(lease);
                    self.insert(lease, ttl, now + ttl, false);
                }
                LeaseChange::Ended { lease } => self.remove(lease),
            }
        }
    }

    /// Makes the clock's leases the store's: keeps the deadlines of leases it knows, gives
    /// new ones `now + ttl`, forgets the others.
    pub fn resync(&mut self, now: Duration, leases: impl IntoIterator<Item = (LeaseId, Duration)>) {
        let mut old = std::mem::take(&mut self.leases);
        self.deadlines.clear();
        for (lease, ttl) in leases {
            match old.remove(&lease) {
                Some(known) => self.insert(lease, known.ttl, known.deadline, known.expiring),
                None => self.insert(lease, ttl, now + ttl, false),
            }
        }
    }

    /// A keep-alive of `lease` at `now`: it now runs until `now + ttl`. Answers its ttl, or
    /// why it cannot be kept alive.
    pub fn handle_keep_alive(
        &mut self,
        now: Duration,
        lease: LeaseId,
    ) -> Result<Duration, CoordError> {
        let Some(entry) = self.leases.get(&lease).copied() else {
            return Err(CoordError::UnknownLease { lease });
        };
        if entry.expiring {
            return Err(CoordError::LeaseExpiring { lease });
        }
        let deadline = (now + entry.ttl).max(entry.deadline);
        self.remove(lease);
        self.insert(lease, entry.ttl, deadline, false);
        Ok(entry.ttl)
    }

    /// The leases whose time ran out at `now` (at most
    /// [`COORD_EXPIRE_LEASES_PER_OP_MAX`]), for the leader to propose
    /// [`super::CoordOp::ExpireLeases`]. They are no longer kept alive; if their expiry is not
    /// applied within [`COORD_EXPIRE_RETRY_INTERVAL`], they are returned again.
    pub fn due(&mut self, now: Duration) -> Vec<LeaseId> {
        let mut due = Vec::new();
        while due.len() < COORD_EXPIRE_LEASES_PER_OP_MAX {
            let Some(&(deadline, lease)) = self.deadlines.first() else {
                break;
            };
            if deadline > now {
                break;
            }
            let entry = self.leases[&lease];
            self.remove(lease);
            self.insert(lease, entry.ttl, now + COORD_EXPIRE_RETRY_INTERVAL, true);
            due.push(lease);
        }
        due
    }

    /// When [`LeaseClock::due`] next has something to return.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// When `lease` expires (or, expiring, when its expiry is proposed again).
    pub fn deadline(&self, lease: LeaseId) -> Option<Duration> {
        self.leases.get(&lease).map(|e| e.deadline)
    }

    /// Whether `lease` is known and not expiring.
    pub fn is_live(&self, lease: LeaseId) -> bool {
        self.leases.get(&lease).is_some_and(|e| !e.expiring)
    }

    /// Number of leases tracked.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is tracked.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn insert(&mut self, lease: LeaseId, ttl: Duration, deadline: Duration, expiring: bool) {
        let fresh = self.leases.insert(
            lease,
            ClockLease {
                ttl,
                deadline,
                expiring,
            },
        );
        debug_assert!(fresh.is_none(), "{lease} inserted twice");
        self.deadlines.insert((deadline, lease));
    }

    fn remove(&mut self, lease: LeaseId) {
        if let Some(entry) = self.leases.remove(&lease) {
            self.deadlines.remove(&(entry.deadline, lease));
        }
    }
}
