//! Hierarchical DRF allocator: decides which framework is offered which slave's resources.
//!
//! This is the pure core behind Mesos' `HierarchicalDRFAllocator`. The master feeds it what
//! happens (slaves and frameworks coming and going, resources coming back from declined offers
//! and finished tasks) and calls [`Allocator::allocate`] on its allocation timer; the returned
//! [`Allocation`]s become offers. No clock, no I/O, no global randomness: `now` is an argument
//! and the slave visiting order comes from a seed in [`AllocatorConfig`].
//!
//! # Fairness
//!
//! Dominant Resource Fairness (DRF), two levels deep as in Mesos:
//!
//! 1. every role has a *dominant share*: the largest fraction of the cluster's cpus, mem or
//!    disk allocated to its frameworks. Divided by the role's weight (default 1, see
//!    [`Allocator::set_role_weight`]), it orders roles;
//! 2. within a role, frameworks are ordered by their own dominant share.
//!
//! For each active slave with allocatable resources, all its available resources go to the
//! first framework in that order that is active, not suppressed and not filtered on that slave
//! (a refusal filter holds while the slave has no more available than was refused).
//! Allocated resources count toward the shares immediately, so the next slave goes to whoever
//! is now the poorest. Ties are broken by role name, then framework id. Shares are computed
//! against the total of all registered slaves.
//!
//! # Over-committed slaves
//!
//! A slave re-registering reports the tasks it runs, and they are accounted as used whatever
//! they sum to (as Mesos does): a slave restarted with less than its tasks use (an operator
//! shrank `--resources`) holds more than its total, tasks may hold ports outside it, and a
//! confused report may name one port for two tasks. Such a slave is *over-committed*: per
//! scalar, what is available is what its total leaves above what is held (nothing where it
//! holds more), and its available ports are those of its total that nobody holds. Resources
//! that come back while it is over-committed go to what is held beyond the total first, so
//! nothing in use is offered, and it is offered again as it is freed (see
//! [`Allocator::add_slave`]). Every other slave keeps the exact books
//! `available + Σ allocated = total`, and the allocation cycle is the same for both.
//!
//! # Cost
//!
//! Roles and frameworks sit in ordered sets keyed by `(share, id)` that are updated
//! incrementally (remove and re-insert the one key that changed), so one cycle is
//! O(visited slaves · log frameworks) when filters are rare, plus O(frameworks · log
//! frameworks) after the cluster total changed (every share changes then, and the sets are
//! rebuilt once). A cycle visits only the slaves where the outcome can differ from the last
//! one: those that got resources back or became active, those where a refusal filter expired
//! (an index of expiry times), and every slave when demand grew.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use plateau_master::allocator::{Allocator, AllocatorConfig};
//! use plateau_master::ids::{FrameworkId, SlaveId};
//! use plateau_master::resources::Resources;
//!
//! let mut allocator = Allocator::new(AllocatorConfig::default());
//! let slave_resources = Resources::parse("cpus:4;mem:4096;ports:[31000-32000]")?;
//! allocator.add_slave(SlaveId::new("S1"), slave_resources.clone(), vec![])?;
//! allocator.add_framework(FrameworkId::new("marathon"), "*")?;
//!
//! let now = Duration::from_secs(1);
//! let offers = allocator.allocate(now);
//! assert_eq!(offers.len(), 1);
//! assert_eq!(offers[0].resources, slave_resources);
//!
//! // Declined with refuse_seconds = 5: not offered to marathon again before 6 s.
//! let offer = &offers[0];
//! allocator.recover_resources(&offer.framework, &offer.slave, &offer.resources,
//!                             Some(Duration::from_secs(5)), now)?;
//! assert!(allocator.allocate(Duration::from_secs(2)).is_empty());
//! assert_eq!(allocator.allocate(Duration::from_secs(6)).len(), 1);
//! # Ok::<(), plateau_master::MasterError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plateau_runtime::rng::LookupMap;

use crate::error::MasterError;
use crate::ids::{FrameworkId, SlaveId};
use crate::limits::{
    FRAMEWORKS_MAX, REFUSE_DURATION_MAX, ROLES_MAX, ROLE_NAME_LEN_MAX, SLAVES_MAX,
    UNKNOWN_FRAMEWORKS_MAX,
};
use crate::resources::{dominant_share_milli, Ranges, Resources};

/// Settings of an [`Allocator`].
#[derive(Clone, Debug, PartialEq)]
pub struct AllocatorConfig {
    /// Seeds the order in which slaves are visited; each cycle shuffles them anew so the same
    /// frameworks do not always get the same slaves. Same seed and inputs, same allocations.
    pub seed: u64,
    /// A slave is offered only if it has at least this many cpus available, or at least
    /// [`min_allocatable_mem_mb`](Self::min_allocatable_mem_mb) (Mesos: 0.01 cpus / 32 MB).
    pub min_allocatable_cpus: f64,
    /// See [`min_allocatable_cpus`](Self::min_allocatable_cpus).
    pub min_allocatable_mem_mb: f64,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            min_allocatable_cpus: 0.01,
            min_allocatable_mem_mb: 32.0,
        }
    }
}

/// One decision of [`Allocator::allocate`]: offer `resources` of `slave` to `framework`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Who gets the offer.
    pub framework: FrameworkId,
    /// Whose resources they are.
    pub slave: SlaveId,
    /// Everything that was available on the slave.
    pub resources: Resources,
}

/// Scalar quantities in thousandths: what shares are computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Scalars([u64; 3]);

impl Scalars {
    fn of(resources: &Resources) -> Self {
        Self([
            resources.cpus_milli(),
            resources.mem_milli(),
            resources.disk_milli(),
        ])
    }

    fn add(&mut self, other: Scalars) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    fn sub(&mut self, other: Scalars) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a
                .checked_sub(b)
                .expect("allocator bookkeeping: subtracting more than was added");
        }
    }
}

/// A sort key: `share / weight` as the bits of a non-negative `f64`, whose integer order is
/// the numeric order.
type ShareKey = u64;

fn share_key(allocated: Scalars, total: Scalars, weight: f64) -> ShareKey {
    let share = dominant_share_milli(allocated.0, total.0) / weight;
    debug_assert!(share.is_finite() && share >= 0.0, "share {share}");
    share.to_bits()
}

#[derive(Debug)]
struct SlaveEntry {
    id: SlaveId,
    total: Resources,
    /// Not allocated to anyone. Invariant, unless over-committed: `available + Σ allocated ==
    /// total`, ports disjoint. Over-committed: per scalar `max(0, total - Σ allocated)`, and
    /// the ports of `total` that no framework holds.
    available: Resources,
    /// What each framework holds on this slave (offers outstanding plus running tasks),
    /// including frameworks not registered (yet), whose resources are held until recovered.
    allocated: BTreeMap<FrameworkId, Resources>,
    /// Set while the frameworks hold more than the total (see the [module docs](self)):
    /// boxed, as it is rare and the cycle walks the slaves.
    overcommit: Option<Box<Overcommit>>,
    active: bool,
    /// In `Allocator::changed`.
    changed: bool,
}

/// The books of an over-committed slave beyond `SlaveEntry::allocated`.
#[derive(Debug, Default)]
struct Overcommit {
    /// Ports a framework claims again while it already holds them (two of its tasks report one
    /// port): each entry is one more claim on each of its ports, and is released before the
    /// framework's holding, so a port stays held until its last claim goes. Invariant: each
    /// entry is non-empty and within its framework's holding on the slave.
    extra_claims: Vec<(FrameworkId, Ranges)>,
}

/// Per scalar `total - used` (zero where `used` is more), and the ports of `total` not in
/// `used`: what `used` leaves of `total`.
pub(crate) fn unused_part(total: &Resources, used: &Resources) -> Resources {
    Resources::from_milli(
        total.cpus_milli().saturating_sub(used.cpus_milli()),
        total.mem_milli().saturating_sub(used.mem_milli()),
        total.disk_milli().saturating_sub(used.disk_milli()),
    )
    .with_ports(total.ports().difference(used.ports()))
}

impl SlaveEntry {
    /// Sets `available` from the total and the holdings, and whether the slave is
    /// over-committed (with these extra claims). O(frameworks holding resources on it): run
    /// when a slave is added with holdings and at every release while it is over-committed.
    fn settle(&mut self, extra_claims: Vec<(FrameworkId, Ranges)>) {
        let held = Resources::sum(self.allocated.values());
        let ports_claimed: u32 = self.allocated.values().map(|r| r.ports().len()).sum();
        let fits = self.total.contains(&held) && ports_claimed == held.ports().len();
        self.available = unused_part(&self.total, &held);
        self.overcommit = if fits && extra_claims.is_empty() {
            None
        } else {
            Some(Box::new(Overcommit { extra_claims }))
        };
    }

    /// `framework` gives back `resources` it holds here: `Some(true)` when it holds nothing
    /// more here, `None` (and no change) when it does not hold them.
    fn release(&mut self, framework: &FrameworkId, resources: &Resources) -> Option<bool> {
        if self.overcommit.is_some() {
            return self.release_overcommitted(framework, resources);
        }
        let held = self.allocated.get_mut(framework)?;
        let rest = held.checked_sub(resources)?;
        let released_all = rest.is_empty();
        if released_all {
            self.allocated.remove(framework);
        } else {
            *held = rest;
        }
        debug_assert!(self.available.ports().is_disjoint(resources.ports()));
        self.available += resources;
        Some(released_all)
    }

    /// [`SlaveEntry::release`] on an over-committed slave: the framework's extra claims on
    /// these ports go first, then its holding; `available` is then recomputed, so a resource
    /// becomes available only once nobody holds it and the total covers it.
    fn release_overcommitted(
        &mut self,
        framework: &FrameworkId,
        resources: &Resources,
    ) -> Option<bool> {
        let over = self.overcommit.as_mut().expect("over-committed");
        let mut ports = resources.ports().clone();
        let mut from_extra: Vec<(usize, Ranges)> = Vec::new();
        for (i, (holder, claimed)) in over.extra_claims.iter().enumerate() {
            if holder == framework && !ports.is_empty() {
                let take = claimed.intersection(&ports);
                if !take.is_empty() {
                    ports = ports.difference(&take);
                    from_extra.push((i, take));
                }
            }
        }
        let held = self.allocated.get_mut(framework)?;
        let rest = held.checked_sub(&resources.clone().with_ports(ports))?;
        // Valid: carry it out.
        for (i, take) in from_extra.into_iter().rev() {
            let left = over.extra_claims[i].1.difference(&take);
            if left.is_empty() {
                over.extra_claims.remove(i);
            } else {
                over.extra_claims[i].1 = left;
            }
        }
        let released_all = rest.is_empty();
        if released_all {
            self.allocated.remove(framework);
        } else {
            *held = rest;
        }
        let extra_claims = std::mem::take(&mut over.extra_claims);
        self.settle(extra_claims);
        Some(released_all)
    }

    /// Everything `framework` holds here goes back (it was removed).
    fn release_all(&mut self, framework: &FrameworkId) {
        let held = self
            .allocated
            .remove(framework)
            .expect("framework's slaves hold its resources");
        match self.overcommit.as_mut() {
            None => {
                debug_assert!(self.available.ports().is_disjoint(held.ports()));
                self.available += held;
            }
            Some(over) => {
                let mut extra_claims = std::mem::take(&mut over.extra_claims);
                extra_claims.retain(|(holder, _)| holder != framework);
                self.settle(extra_claims);
            }
        }
    }
}

#[derive(Debug)]
struct FrameworkEntry {
    role: String,
    active: bool,
    suppressed: bool,
    /// Sum of the scalars it holds across slaves.
    allocated: Scalars,
    /// Slaves where it holds something (keys of `SlaveEntry::allocated`).
    slaves: BTreeSet<SlaveId>,
    /// Refusal filters by slave (its slot in `Allocator::slaves`). Keyed by slot, not id: a
    /// cycle looks filters up for every slave and framework, and slave ids share a long
    /// prefix (the master's run id), so comparing them dominated the cycle.
    filters: BTreeMap<u32, RefusalFilter>,
    /// Its key in its role's sorter while it is eligible (active and not suppressed).
    key: Option<ShareKey>,
}

impl FrameworkEntry {
    fn is_eligible(&self) -> bool {
        self.active && !self.suppressed
    }

    /// True if a filter refuses `available` of slave `slot` at `now`.
    fn refuses(&self, slot: u32, available: &Resources, now: Duration) -> bool {
        self.filters
            .get(&slot)
            .is_some_and(|filter| filter.refuses(available, now))
    }
}

/// A framework declined `refused` of a slave (Mesos' `RefusedOfferFilter`): until `until`,
/// it is not offered that slave while what the slave has available is within `refused`.
/// Once more comes back (a task ended, resources were freed), the slave is offered again
/// before the filter expires: that is how a framework hears of freed resources without
/// reviving.
#[derive(Debug)]
struct RefusalFilter {
    until: Duration,
    refused: Resources,
}

impl RefusalFilter {
    fn refuses(&self, available: &Resources, now: Duration) -> bool {
        self.until > now && self.refused.contains(available)
    }
}

#[derive(Debug, Default)]
struct RoleEntry {
    /// Sum of the scalars its frameworks hold.
    allocated: Scalars,
    /// Registered frameworks in the role (eligible or not).
    frameworks_len: usize,
    /// Eligible frameworks by (dominant share, id).
    sorter: BTreeSet<(ShareKey, FrameworkId)>,
    /// Its key in the role sorter while it has an eligible framework.
    key: Option<ShareKey>,
}

/// The hierarchical DRF allocator. See the [module docs](self).
#[derive(Debug)]
pub struct Allocator {
    min_cpus_milli: u64,
    min_mem_milli: u64,
    /// Dense so a cycle can visit them in a shuffled order; `slave_index` maps ids to slots.
    slaves: Vec<SlaveEntry>,
    /// Only looked up, never walked, so hashed (fixed hasher).
    slave_index: LookupMap<SlaveId, usize>,
    frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    /// Roles with at least one registered framework.
    roles: BTreeMap<String, RoleEntry>,
    /// Roles with an eligible framework, by (weighted dominant share, name).
    role_sorter: BTreeSet<(ShareKey, String)>,
    /// Weights set explicitly; other roles weigh 1.
    weights: BTreeMap<String, f64>,
    /// Slaves holding resources of frameworks that are not registered, by framework.
    unknown: BTreeMap<FrameworkId, BTreeSet<SlaveId>>,
    /// Scalars of all registered slaves (active or not).
    total: Scalars,
    /// The total changed since the sorters were keyed: every key is stale.
    shares_stale: bool,
    rng_state: u64,
    /// Reused buffer of the visiting order.
    order: Vec<u32>,
    /// Slots of slaves that got resources back or became active since the last cycle: all
    /// that a cycle of changes ([`Allocator::allocate_changed`]) visits.
    changed: Vec<u32>,
    /// Every slave must be visited at the next cycle: demand grew (a framework added,
    /// activated or revived, a weight changed) or slots moved (a slave removed).
    all_changed: bool,
    /// When refusal filters expire: (until, slot) → how many frameworks' filters, for the
    /// filters not expired at `expired_up_to`. A slave nobody took is visited again when a
    /// filter on it expires, not at every cycle.
    expiries: BTreeMap<(Duration, u32), u32>,
    /// The `now` of the last [`Allocator::allocate`]: filters until then are out of
    /// `expiries`.
    expired_up_to: Duration,
}

/// Counts a filter until `until` on `slot` in `expiries` (if not expired at `expired_up_to`).
fn index_expiry(
    expiries: &mut BTreeMap<(Duration, u32), u32>,
    expired_up_to: Duration,
    until: Duration,
    slot: u32,
) {
    if until > expired_up_to {
        *expiries.entry((until, slot)).or_insert(0) += 1;
    }
}

/// Uncounts a filter counted by [`index_expiry`].
fn unindex_expiry(
    expiries: &mut BTreeMap<(Duration, u32), u32>,
    expired_up_to: Duration,
    until: Duration,
    slot: u32,
) {
    if until <= expired_up_to {
        return;
    }
    let count = expiries
        .get_mut(&(until, slot))
        .expect("every filter not expired is indexed");
    *count -= 1;
    if *count == 0 {
        expiries.remove(&(until, slot));
    }
}

/// SplitMix64: tiny, and stable forever (unlike `rand`'s `SmallRng`), so a seed replays the
/// same visiting order on every platform and version.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn validate_role(role: &str) -> Result<(), MasterError> {
    let bad = |reason| {
        Err(MasterError::InvalidRole {
            role: role.to_owned(),
            reason,
        })
    };
    if role.is_empty() {
        return bad("empty");
    }
    if role.len() > ROLE_NAME_LEN_MAX {
        return bad("longer than 255 bytes");
    }
    if role == "." || role == ".." {
        return bad("'.' and '..' are reserved");
    }
    if role.starts_with('-') {
        return bad("starts with '-'");
    }
    if role.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    Ok(())
}

impl Allocator {
    /// An allocator with no slaves and no frameworks.
    pub fn new(config: AllocatorConfig) -> Self {
        let to_milli = |value: f64| {
            assert!(
                value.is_finite() && value >= 0.0,
                "minimum allocatable must be finite and non-negative"
            );
            (value * 1000.0).round() as u64
        };
        Self {
            min_cpus_milli: to_milli(config.min_allocatable_cpus),
            min_mem_milli: to_milli(config.min_allocatable_mem_mb),
            slaves: Vec::new(),
            slave_index: LookupMap::default(),
            frameworks: BTreeMap::new(),
            roles: BTreeMap::new(),
            role_sorter: BTreeSet::new(),
            weights: BTreeMap::new(),
            unknown: BTreeMap::new(),
            total: Scalars::default(),
            shares_stale: false,
            rng_state: config.seed,
            order: Vec::new(),
            changed: Vec::new(),
            all_changed: false,
            expiries: BTreeMap::new(),
            expired_up_to: Duration::ZERO,
        }
    }

    // ----- slaves -------------------------------------------------------------------------

    /// Registers a slave with its `total` resources and what its tasks already use (a slave
    /// re-registering), one entry per task or per framework. Used resources count toward their
    /// framework's share; those of frameworks not registered yet are held until the framework
    /// registers or they are recovered. The slave starts active.
    ///
    /// What is used is held whatever it sums to: beyond the total in any scalar, on ports
    /// outside it, or on one port claimed by several entries. The slave is then
    /// over-committed (see the [module docs](self) and [`Allocator::is_overcommitted`]): only
    /// what its total leaves above the use is available, and what comes back is available
    /// only once the use is within the total.
    pub fn add_slave(
        &mut self,
        slave: SlaveId,
        total: Resources,
        used: Vec<(FrameworkId, Resources)>,
    ) -> Result<(), MasterError> {
        if self.slave_index.contains_key(&slave) {
            return Err(MasterError::DuplicateSlave { slave });
        }
        self.check_room_for_slave(&slave, used.iter().map(|(f, _)| f))?;
        let mut entry = SlaveEntry {
            id: slave,
            available: total.clone(),
            total,
            allocated: BTreeMap::new(),
            overcommit: None,
            active: true,
            changed: false,
        };
        if !used.is_empty() {
            let mut extra_claims: Vec<(FrameworkId, Ranges)> = Vec::new();
            for (framework, resources) in used {
                if resources.is_empty() {
                    continue;
                }
                match entry.allocated.get_mut(&framework) {
                    Some(held) => {
                        let again = held.ports().intersection(resources.ports());
                        *held += &resources;
                        if !again.is_empty() {
                            extra_claims.push((framework, again));
                        }
                    }
                    None => {
                        entry.allocated.insert(framework, resources);
                    }
                }
            }
            entry.settle(extra_claims);
        }
        for (framework, resources) in &entry.allocated {
            match self.frameworks.get_mut(framework) {
                Some(fw) => {
                    fw.slaves.insert(entry.id.clone());
                    let scalars = Scalars::of(resources);
                    fw.allocated.add(scalars);
                    self.roles
                        .get_mut(&fw.role)
                        .expect("a framework's role is registered")
                        .allocated
                        .add(scalars);
                }
                None => {
                    self.unknown
                        .entry(framework.clone())
                        .or_default()
                        .insert(entry.id.clone());
                }
            }
        }
        self.total.add(Scalars::of(&entry.total));
        self.shares_stale = true;
        self.slave_index.insert(entry.id.clone(), self.slaves.len());
        self.slaves.push(entry);
        self.mark_changed(self.slaves.len() - 1);
        Ok(())
    }

    /// Errors if [`Allocator::add_slave`] of `slave` with resources used by `frameworks`
    /// would go beyond a limit (slaves, unregistered frameworks holding resources), counting
    /// `slave` as removed first if it is registered (as a re-registration does). Changes
    /// nothing: the master checks before it takes a re-registering slave out.
    pub fn check_room_for_slave<'a>(
        &self,
        slave: &SlaveId,
        frameworks: impl IntoIterator<Item = &'a FrameworkId>,
    ) -> Result<(), MasterError> {
        let others = self.slaves.len() - usize::from(self.slave_index.contains_key(slave));
        if others >= SLAVES_MAX {
            return Err(MasterError::TooMany {
                what: "slaves",
                len: others + 1,
                max: SLAVES_MAX,
            });
        }
        // Frameworks it would add to the unregistered ones holding resources. Those only this
        // slave holds now are counted as staying: at most one too many.
        let mut new_unknown: BTreeSet<&FrameworkId> = BTreeSet::new();
        for framework in frameworks {
            if !self.frameworks.contains_key(framework) && !self.unknown.contains_key(framework) {
                new_unknown.insert(framework);
            }
        }
        let len = self.unknown.len() + new_unknown.len();
        if len > UNKNOWN_FRAMEWORKS_MAX {
            return Err(MasterError::TooMany {
                what: "unregistered frameworks holding resources",
                len,
                max: UNKNOWN_FRAMEWORKS_MAX,
            });
        }
        Ok(())
    }

    /// Forgets a slave: its resources leave the cluster total and its allocations stop
    /// counting toward shares. Filters on it are dropped.
    pub fn remove_slave(&mut self, slave: &SlaveId) -> Result<(), MasterError> {
        let index = self
            .slave_index
            .remove(slave)
            .ok_or_else(|| MasterError::UnknownSlave {
                slave: slave.clone(),
            })?;
        let entry = self.slaves.swap_remove(index);
        if let Some(moved) = self.slaves.get(index) {
            *self
                .slave_index
                .get_mut(&moved.id)
                .expect("every slave is indexed") = index;
        }
        for (framework, resources) in &entry.allocated {
            match self.frameworks.get_mut(framework) {
                Some(fw) => {
                    fw.slaves.remove(slave);
                    let scalars = Scalars::of(resources);
                    fw.allocated.sub(scalars);
                    self.roles
                        .get_mut(&fw.role)
                        .expect("a framework's role is registered")
                        .allocated
                        .sub(scalars);
                }
                None => {
                    let slaves = self
                        .unknown
                        .get_mut(framework)
                        .expect("resources of unregistered frameworks are indexed");
                    slaves.remove(slave);
                    if slaves.is_empty() {
                        self.unknown.remove(framework);
                    }
                }
            }
        }
        // The last slot moved into `index`: its filters move with it.
        let moved_from = self.slaves.len() as u32;
        let (expiries, up_to) = (&mut self.expiries, self.expired_up_to);
        for fw in self.frameworks.values_mut() {
            if let Some(filter) = fw.filters.remove(&(index as u32)) {
                unindex_expiry(expiries, up_to, filter.until, index as u32);
            }
            if let Some(filter) = fw.filters.remove(&moved_from) {
                unindex_expiry(expiries, up_to, filter.until, moved_from);
                index_expiry(expiries, up_to, filter.until, index as u32);
                fw.filters.insert(index as u32, filter);
            }
        }
        self.total.sub(Scalars::of(&entry.total));
        self.shares_stale = true;
        // A slot moved: the list of changed slots is stale.
        self.all_changed = true;
        Ok(())
    }

    /// Offers resources of this slave again (after [`Allocator::deactivate_slave`]).
    pub fn activate_slave(&mut self, slave: &SlaveId) -> Result<(), MasterError> {
        self.slave_mut(slave)?.active = true;
        let index = self.slave_index[slave];
        self.mark_changed(index);
        Ok(())
    }

    /// Stops offering this slave's resources (slave disconnected or in maintenance). Its
    /// resources still count in the cluster total and its allocations in the shares.
    pub fn deactivate_slave(&mut self, slave: &SlaveId) -> Result<(), MasterError> {
        self.slave_mut(slave)?.active = false;
        Ok(())
    }

    /// Changes a slave's total (e.g. re-registered with different resources). The new total
    /// must contain what is allocated on the slave.
    pub fn update_slave_total(
        &mut self,
        slave: &SlaveId,
        total: Resources,
    ) -> Result<(), MasterError> {
        let entry = self.slave_mut(slave)?;
        let allocated = match entry.overcommit {
            None => entry
                .total
                .checked_sub(&entry.available)
                .expect("invariant: available is part of total"),
            Some(_) => Resources::sum(entry.allocated.values()),
        };
        let Some(available) = total.checked_sub(&allocated) else {
            return Err(MasterError::TotalBelowAllocated {
                slave: slave.clone(),
                total: total.to_string(),
                allocated: allocated.to_string(),
            });
        };
        let old_total = std::mem::replace(&mut entry.total, total);
        entry.available = available;
        if let Some(over) = entry.overcommit.as_mut() {
            // The total now covers what is held; ports claimed twice may remain.
            let extra_claims = std::mem::take(&mut over.extra_claims);
            entry.settle(extra_claims);
        }
        let new_total = Scalars::of(&entry.total);
        self.total.sub(Scalars::of(&old_total));
        self.total.add(new_total);
        self.shares_stale = true;
        let index = self.slave_index[slave];
        self.mark_changed(index);
        Ok(())
    }

    // ----- frameworks ---------------------------------------------------------------------

    /// Registers an active framework in `role` (Mesos' default role is `*`). Resources that
    /// slaves reported in use by it before it registered now count toward its share.
    pub fn add_framework(&mut self, framework: FrameworkId, role: &str) -> Result<(), MasterError> {
        if self.frameworks.contains_key(&framework) {
            return Err(MasterError::DuplicateFramework { framework });
        }
        validate_role(role)?;
        if self.frameworks.len() >= FRAMEWORKS_MAX {
            return Err(MasterError::TooMany {
                what: "frameworks",
                len: self.frameworks.len() + 1,
                max: FRAMEWORKS_MAX,
            });
        }
        self.check_role_room(role)?;
        let mut entry = FrameworkEntry {
            role: role.to_owned(),
            active: true,
            suppressed: false,
            allocated: Scalars::default(),
            slaves: BTreeSet::new(),
            filters: BTreeMap::new(),
            key: None,
        };
        if let Some(slaves) = self.unknown.remove(&framework) {
            for slave in slaves {
                let index = self.slave_index[&slave];
                let held = &self.slaves[index].allocated[&framework];
                entry.allocated.add(Scalars::of(held));
                entry.slaves.insert(slave);
            }
        }
        let role_entry = self.roles.entry(role.to_owned()).or_default();
        role_entry.frameworks_len += 1;
        role_entry.allocated.add(entry.allocated);
        self.frameworks.insert(framework.clone(), entry);
        self.refresh_framework(&framework);
        self.all_changed = true;
        Ok(())
    }

    /// Forgets a framework. Whatever it still holds goes back to the slaves' available
    /// resources (its tasks are being killed and its offers rescinded): the master must not
    /// recover those resources again; recovering for an unknown framework is an error value.
    pub fn remove_framework(&mut self, framework: &FrameworkId) {
        let Some(entry) = self.frameworks.remove(framework) else {
            return;
        };
        for (&slot, filter) in &entry.filters {
            unindex_expiry(&mut self.expiries, self.expired_up_to, filter.until, slot);
        }
        if let Some(key) = entry.key {
            let role = self.roles.get_mut(&entry.role).expect("role registered");
            let removed = role.sorter.remove(&(key, framework.clone()));
            debug_assert!(removed, "an eligible framework is in its role's sorter");
        }
        for slave in &entry.slaves {
            let index = self.slave_index[slave];
            self.slaves[index].release_all(framework);
            self.mark_changed(index);
        }
        let role = self.roles.get_mut(&entry.role).expect("role registered");
        role.allocated.sub(entry.allocated);
        role.frameworks_len -= 1;
        if role.frameworks_len == 0 {
            debug_assert!(role.sorter.is_empty() && role.allocated == Scalars::default());
            if let Some(key) = role.key {
                self.role_sorter.remove(&(key, entry.role.clone()));
            }
            self.roles.remove(&entry.role);
        } else {
            self.refresh_role(&entry.role);
        }
    }

    /// Offers resources to this framework again (scheduler reconnected).
    pub fn activate_framework(&mut self, framework: &FrameworkId) -> Result<(), MasterError> {
        self.framework_mut(framework)?.active = true;
        self.refresh_framework(framework);
        self.all_changed = true;
        Ok(())
    }

    /// Stops offering resources to this framework (scheduler disconnected); what it holds
    /// still counts toward its share, and its filters stay.
    pub fn deactivate_framework(&mut self, framework: &FrameworkId) -> Result<(), MasterError> {
        self.framework_mut(framework)?.active = false;
        self.refresh_framework(framework);
        Ok(())
    }

    /// The framework wants no offers until [`Allocator::revive`] (Mesos' `SUPPRESS`).
    pub fn suppress(&mut self, framework: &FrameworkId) -> Result<(), MasterError> {
        self.framework_mut(framework)?.suppressed = true;
        self.refresh_framework(framework);
        Ok(())
    }

    /// The framework wants offers again; its refusal filters are cleared (Mesos' `REVIVE`).
    pub fn revive(&mut self, framework: &FrameworkId) -> Result<(), MasterError> {
        let entry =
            self.frameworks
                .get_mut(framework)
                .ok_or_else(|| MasterError::UnknownFramework {
                    framework: framework.clone(),
                })?;
        entry.suppressed = false;
        for (slot, filter) in std::mem::take(&mut entry.filters) {
            unindex_expiry(&mut self.expiries, self.expired_up_to, filter.until, slot);
        }
        self.refresh_framework(framework);
        self.all_changed = true;
        Ok(())
    }

    /// Sets the weight of `role` (default 1): a role with weight 2 is entitled to twice the
    /// dominant share of a role with weight 1.
    pub fn set_role_weight(&mut self, role: &str, weight: f64) -> Result<(), MasterError> {
        validate_role(role)?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(MasterError::InvalidWeight {
                role: role.to_owned(),
                weight,
            });
        }
        if !self.weights.contains_key(role) {
            self.check_role_room(role)?;
        }
        self.weights.insert(role.to_owned(), weight);
        if self.roles.contains_key(role) {
            self.refresh_role(role);
        }
        self.all_changed = true;
        Ok(())
    }

    // ----- resources ----------------------------------------------------------------------

    /// Resources held by `framework` on `slave` come back: an offer declined or rescinded, a
    /// task finished. With `refuse` (Mesos' `refuse_seconds`, at most
    /// [`REFUSE_DURATION_MAX`]), the framework is not offered this slave again before
    /// `now + refuse` unless the slave then has more available than `resources` (Mesos'
    /// refusal filters: a filter refuses only what was refused). A new filter on the same
    /// slave replaces the framework's previous one. The master applies the 5 s default, not
    /// this core.
    pub fn recover_resources(
        &mut self,
        framework: &FrameworkId,
        slave: &SlaveId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Duration,
    ) -> Result<(), MasterError> {
        let not_allocated = || MasterError::NotAllocated {
            framework: framework.clone(),
            slave: slave.clone(),
            resources: resources.to_string(),
        };
        let index = *self
            .slave_index
            .get(slave)
            .ok_or_else(|| MasterError::UnknownSlave {
                slave: slave.clone(),
            })?;
        let released_all = self.slaves[index]
            .release(framework, resources)
            .ok_or_else(not_allocated)?;
        self.mark_changed(index);

        match self.frameworks.get_mut(framework) {
            Some(entry) => {
                if released_all {
                    entry.slaves.remove(slave);
                }
                let scalars = Scalars::of(resources);
                entry.allocated.sub(scalars);
                self.roles
                    .get_mut(&entry.role)
                    .expect("role registered")
                    .allocated
                    .sub(scalars);
                if let Some(refuse) = refuse.filter(|d| !d.is_zero()) {
                    let until = now + refuse.min(REFUSE_DURATION_MAX);
                    let refused = resources.clone();
                    let slot = index as u32;
                    let (expiries, up_to) = (&mut self.expiries, self.expired_up_to);
                    index_expiry(expiries, up_to, until, slot);
                    if let Some(old) = entry.filters.insert(slot, RefusalFilter { until, refused })
                    {
                        unindex_expiry(expiries, up_to, old.until, slot);
                    }
                }
                self.refresh_framework(framework);
            }
            None if released_all => {
                let slaves = self
                    .unknown
                    .get_mut(framework)
                    .expect("resources of unregistered frameworks are indexed");
                slaves.remove(slave);
                if slaves.is_empty() {
                    self.unknown.remove(framework);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Runs one allocation cycle at `now`: every active slave with allocatable resources
    /// (at least the configured minimum cpus or mem) is offered, whole, to the framework
    /// chosen by hierarchical DRF among the active, unsuppressed frameworks not filtered on it.
    /// Slaves are visited in an order shuffled anew each cycle from the configured seed.
    ///
    /// Only slaves where that can have changed are visited: those that got resources back
    /// or became active, those where a filter expired, and all of them when demand grew. A
    /// slave left untaken by the last cycle stays untaken until one of these happens, so a
    /// cycle costs O(changes), not O(slaves · frameworks). An expired filter is dropped when
    /// its framework declines that slave again, revives, or leaves.
    pub fn allocate(&mut self, now: Duration) -> Vec<Allocation> {
        while let Some(entry) = self.expiries.first_entry() {
            let (until, slot) = *entry.key();
            if until > now {
                break;
            }
            entry.remove();
            if (slot as usize) < self.slaves.len() {
                self.mark_changed(slot as usize);
            }
        }
        self.expired_up_to = self.expired_up_to.max(now);
        let full = self.all_changed;
        self.cycle(now, full)
    }

    /// Runs an allocation cycle over what changed since the last cycle (as Mesos' batched
    /// event-triggered allocations do): only slaves that got resources back or became active
    /// are visited — every slave when demand grew (a framework added, activated or revived, a
    /// weight changed). Unlike [`Allocator::allocate`], which the master runs on its
    /// allocation interval, it does not look for expired filters. O(changes).
    pub fn allocate_changed(&mut self, now: Duration) -> Vec<Allocation> {
        let full = self.all_changed;
        self.cycle(now, full)
    }

    fn mark_changed(&mut self, index: usize) {
        let slave = &mut self.slaves[index];
        if !slave.changed {
            slave.changed = true;
            self.changed.push(index as u32);
        }
    }

    fn cycle(&mut self, now: Duration, full: bool) -> Vec<Allocation> {
        if self.shares_stale {
            self.rebuild_sorters();
        }
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        if full {
            order.extend(0..self.slaves.len() as u32);
        } else {
            order.extend(
                self.changed
                    .iter()
                    .copied()
                    .filter(|&i| (i as usize) < self.slaves.len()),
            );
        }
        for index in self.changed.drain(..) {
            if let Some(slave) = self.slaves.get_mut(index as usize) {
                slave.changed = false;
            }
        }
        self.all_changed = false;
        // Shuffle even when nothing is eligible, so the sequence of orders depends only on
        // the cycles run, not on what happened in them.
        for i in (1..order.len()).rev() {
            let j =
                ((u128::from(splitmix64(&mut self.rng_state)) * (i as u128 + 1)) >> 64) as usize;
            order.swap(i, j);
        }
        let mut out = Vec::new();
        if !self.role_sorter.is_empty() {
            for &index in &order {
                let slave = &self.slaves[index as usize];
                if !slave.active || !self.is_allocatable(&slave.available) {
                    continue;
                }
                let Some(framework) = self.pick_framework(index, now) else {
                    continue;
                };
                out.push(self.allocate_slave(index as usize, framework));
            }
        }
        self.order = order;
        #[cfg(debug_assertions)]
        if let Err(message) = self.check_invariants() {
            panic!("allocator invariant broken after allocate: {message}");
        }
        out
    }

    // ----- queries ------------------------------------------------------------------------

    /// Number of registered slaves.
    pub fn slaves_len(&self) -> usize {
        self.slaves.len()
    }

    /// Number of registered frameworks.
    pub fn frameworks_len(&self) -> usize {
        self.frameworks.len()
    }

    /// Scalars of all registered slaves (no ports): what shares are computed against.
    pub fn total(&self) -> Resources {
        let [cpus, mem, disk] = self.total.0;
        Resources::from_milli(cpus, mem, disk)
    }

    /// What is available (unallocated) on `slave`.
    pub fn slave_available(&self, slave: &SlaveId) -> Option<&Resources> {
        self.slave_index
            .get(slave)
            .map(|&index| &self.slaves[index].available)
    }

    /// True when `slave` is over-committed: its frameworks hold more than its total (in a
    /// scalar, on ports outside it, or on one port twice), as reported when it was added.
    pub fn is_overcommitted(&self, slave: &SlaveId) -> bool {
        self.slave_index
            .get(slave)
            .is_some_and(|&index| self.slaves[index].overcommit.is_some())
    }

    /// The total of `slave`.
    pub fn slave_total(&self, slave: &SlaveId) -> Option<&Resources> {
        self.slave_index
            .get(slave)
            .map(|&index| &self.slaves[index].total)
    }

    /// What `framework` holds on `slave` (offers plus tasks), if anything.
    pub fn allocation(&self, framework: &FrameworkId, slave: &SlaveId) -> Option<&Resources> {
        let &index = self.slave_index.get(slave)?;
        self.slaves[index].allocated.get(framework)
    }

    /// Dominant share of `framework` against the cluster total.
    pub fn framework_share(&self, framework: &FrameworkId) -> Option<f64> {
        self.frameworks
            .get(framework)
            .map(|entry| dominant_share_milli(entry.allocated.0, self.total.0))
    }

    /// Dominant share of `role` (unweighted) against the cluster total, if it has frameworks.
    pub fn role_share(&self, role: &str) -> Option<f64> {
        self.roles
            .get(role)
            .map(|entry| dominant_share_milli(entry.allocated.0, self.total.0))
    }

    /// Weight of `role` (1 unless set).
    pub fn role_weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }

    /// True if a filter of `framework` refuses what `slave` has available at `now`.
    pub fn is_filtered(&self, framework: &FrameworkId, slave: &SlaveId, now: Duration) -> bool {
        let Some(&index) = self.slave_index.get(slave) else {
            return false;
        };
        self.frameworks
            .get(framework)
            .is_some_and(|entry| entry.refuses(index as u32, &self.slaves[index].available, now))
    }

    /// Checks every bookkeeping invariant, in O(everything); for tests and debug builds
    /// (`allocate` runs it after each cycle when debug assertions are on). Returns what is
    /// broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut total = Scalars::default();
        let mut by_framework: BTreeMap<&FrameworkId, Scalars> = BTreeMap::new();
        for (index, slave) in self.slaves.iter().enumerate() {
            if self.slave_index.get(&slave.id) != Some(&index) {
                return Err(format!("slave {} is not indexed at {index}", slave.id));
            }
            total.add(Scalars::of(&slave.total));
            let mut sum = slave.available.clone();
            let mut port_count = slave.available.ports().len();
            for (framework, held) in &slave.allocated {
                if held.is_empty() {
                    return Err(format!("empty allocation of {framework} on {}", slave.id));
                }
                port_count += held.ports().len();
                sum += held;
                by_framework
                    .entry(framework)
                    .or_default()
                    .add(Scalars::of(held));
                let tracked = match self.frameworks.get(framework) {
                    Some(entry) => entry.slaves.contains(&slave.id),
                    None => self
                        .unknown
                        .get(framework)
                        .is_some_and(|slaves| slaves.contains(&slave.id)),
                };
                if !tracked {
                    return Err(format!("{framework} on {} is not indexed", slave.id));
                }
            }
            match &slave.overcommit {
                None => {
                    if sum != slave.total {
                        return Err(format!(
                            "slave {}: available + allocated = {sum}, total = {}",
                            slave.id, slave.total
                        ));
                    }
                    if port_count != slave.total.ports().len() {
                        return Err(format!("slave {}: a port is allocated twice", slave.id));
                    }
                }
                Some(over) => {
                    let held_sum = Resources::sum(slave.allocated.values());
                    let held_ports = port_count - slave.available.ports().len();
                    let fits =
                        slave.total.contains(&held_sum) && held_ports == held_sum.ports().len();
                    let free = unused_part(&slave.total, &held_sum);
                    if slave.available != free {
                        return Err(format!(
                            "over-committed slave {}: available {} but {free} is free of {} \
                             with {held_sum} held",
                            slave.id, slave.available, slave.total
                        ));
                    }
                    for (framework, ports) in &over.extra_claims {
                        let holds = slave
                            .allocated
                            .get(framework)
                            .is_some_and(|held| held.ports().contains(ports));
                        if ports.is_empty() || !holds {
                            return Err(format!(
                                "over-committed slave {}: extra claim of {framework} on \
                                 {ports} it does not hold",
                                slave.id
                            ));
                        }
                    }
                    if fits && over.extra_claims.is_empty() {
                        return Err(format!(
                            "slave {} is marked over-committed but its holdings fit",
                            slave.id
                        ));
                    }
                }
            }
        }
        if total != self.total {
            return Err("cluster total does not match the slaves".into());
        }
        let mut by_role: BTreeMap<&str, (Scalars, usize)> = BTreeMap::new();
        let mut eligible = 0;
        let mut expiries: BTreeMap<(Duration, u32), u32> = BTreeMap::new();
        for (id, entry) in &self.frameworks {
            for (&slot, filter) in &entry.filters {
                if slot as usize >= self.slaves.len() {
                    return Err(format!("framework {id} has a filter on slot {slot}"));
                }
                index_expiry(&mut expiries, self.expired_up_to, filter.until, slot);
            }
            let held = by_framework.get(id).copied().unwrap_or_default();
            if held != entry.allocated {
                return Err(format!("framework {id}: allocated sum is off"));
            }
            for slave in &entry.slaves {
                let Some(&index) = self.slave_index.get(slave) else {
                    return Err(format!("framework {id} indexes unknown slave {slave}"));
                };
                if !self.slaves[index].allocated.contains_key(id) {
                    return Err(format!(
                        "framework {id} indexes {slave} where it holds nothing"
                    ));
                }
            }
            let role = by_role.entry(&entry.role).or_default();
            role.0.add(entry.allocated);
            role.1 += 1;
            let sorter = &self.roles[&entry.role].sorter;
            let in_sorter = entry
                .key
                .is_some_and(|key| sorter.contains(&(key, id.clone())));
            if in_sorter != entry.is_eligible() {
                return Err(format!("framework {id}: sorter membership is off"));
            }
            eligible += usize::from(entry.is_eligible());
            let fresh = share_key(entry.allocated, self.total, 1.0);
            if !self.shares_stale && entry.key.is_some_and(|key| key != fresh) {
                return Err(format!("framework {id}: sort key is stale"));
            }
        }
        if expiries != self.expiries {
            return Err("the filter expiry index does not match the filters".into());
        }
        let sorted: usize = self.roles.values().map(|role| role.sorter.len()).sum();
        if sorted != eligible {
            return Err("a role sorter holds a framework it should not".into());
        }
        for (name, role) in &self.roles {
            let (allocated, frameworks_len) =
                by_role.get(name.as_str()).copied().unwrap_or_default();
            if allocated != role.allocated || frameworks_len != role.frameworks_len {
                return Err(format!("role {name}: sums are off"));
            }
            let in_sorter = role
                .key
                .is_some_and(|key| self.role_sorter.contains(&(key, name.clone())));
            let fresh = share_key(role.allocated, self.total, self.role_weight(name));
            if !self.shares_stale && role.key.is_some_and(|key| key != fresh) {
                return Err(format!("role {name}: sort key is stale"));
            }
            if in_sorter == role.sorter.is_empty() {
                return Err(format!("role {name}: sorter membership is off"));
            }
        }
        let roles_eligible = self
            .roles
            .values()
            .filter(|role| !role.sorter.is_empty())
            .count();
        if roles_eligible != self.role_sorter.len() {
            return Err("the role sorter holds a role it should not".into());
        }
        for (framework, slaves) in &self.unknown {
            if self.frameworks.contains_key(framework) {
                return Err(format!(
                    "registered framework {framework} listed as unknown"
                ));
            }
            for slave in slaves {
                let held = self
                    .slave_index
                    .get(slave)
                    .is_some_and(|&index| self.slaves[index].allocated.contains_key(framework));
                if !held {
                    return Err(format!(
                        "unknown framework {framework} holds nothing on {slave}"
                    ));
                }
            }
        }
        Ok(())
    }

    // ----- internals ----------------------------------------------------------------------

    fn slave_mut(&mut self, slave: &SlaveId) -> Result<&mut SlaveEntry, MasterError> {
        match self.slave_index.get(slave) {
            Some(&index) => Ok(&mut self.slaves[index]),
            None => Err(MasterError::UnknownSlave {
                slave: slave.clone(),
            }),
        }
    }

    fn framework_mut(
        &mut self,
        framework: &FrameworkId,
    ) -> Result<&mut FrameworkEntry, MasterError> {
        self.frameworks
            .get_mut(framework)
            .ok_or_else(|| MasterError::UnknownFramework {
                framework: framework.clone(),
            })
    }

    /// Errors if tracking `role` would exceed [`ROLES_MAX`].
    fn check_role_room(&self, role: &str) -> Result<(), MasterError> {
        if self.roles.contains_key(role) || self.weights.contains_key(role) {
            return Ok(());
        }
        let known = self.weights.len()
            + self
                .roles
                .keys()
                .filter(|r| !self.weights.contains_key(*r))
                .count();
        if known >= ROLES_MAX {
            return Err(MasterError::TooMany {
                what: "roles",
                len: known + 1,
                max: ROLES_MAX,
            });
        }
        Ok(())
    }

    fn is_allocatable(&self, available: &Resources) -> bool {
        available.cpus_milli() >= self.min_cpus_milli.max(1)
            || available.mem_milli() >= self.min_mem_milli.max(1)
    }

    /// The poorest eligible framework of the poorest role that is not filtered on `slave`.
    fn pick_framework(&self, slave: u32, now: Duration) -> Option<FrameworkId> {
        let available = &self.slaves[slave as usize].available;
        for (_, role) in &self.role_sorter {
            for (_, framework) in &self.roles[role].sorter {
                if !self.frameworks[framework].refuses(slave, available, now) {
                    return Some(framework.clone());
                }
            }
        }
        None
    }

    /// Gives everything available on slave `index` to `framework` and re-keys its sorters.
    fn allocate_slave(&mut self, index: usize, framework: FrameworkId) -> Allocation {
        let slave = &mut self.slaves[index];
        let resources = std::mem::take(&mut slave.available);
        debug_assert!(slave.total.contains(&resources));
        match slave.allocated.get_mut(&framework) {
            Some(held) => {
                debug_assert!(held.ports().is_disjoint(resources.ports()));
                *held += &resources;
            }
            None => {
                slave.allocated.insert(framework.clone(), resources.clone());
            }
        }
        let entry = self
            .frameworks
            .get_mut(&framework)
            .expect("picked frameworks are registered");
        if !entry.slaves.contains(&slave.id) {
            entry.slaves.insert(slave.id.clone());
        }
        let scalars = Scalars::of(&resources);
        entry.allocated.add(scalars);
        self.roles
            .get_mut(&entry.role)
            .expect("role registered")
            .allocated
            .add(scalars);
        let slave_id = slave.id.clone();
        self.refresh_framework(&framework);
        Allocation {
            framework,
            slave: slave_id,
            resources,
        }
    }

    /// Re-keys `framework` in its role's sorter (in or out by eligibility), then its role.
    fn refresh_framework(&mut self, framework: &FrameworkId) {
        let entry = self
            .frameworks
            .get_mut(framework)
            .expect("refreshing a registered framework");
        let role = self.roles.get_mut(&entry.role).expect("role registered");
        let new_key = entry
            .is_eligible()
            .then(|| share_key(entry.allocated, self.total, 1.0));
        if new_key != entry.key {
            if let Some(old) = entry.key {
                let removed = role.sorter.remove(&(old, framework.clone()));
                debug_assert!(removed, "framework key out of sync");
            }
            if let Some(new) = new_key {
                role.sorter.insert((new, framework.clone()));
            }
            entry.key = new_key;
        }
        let role_name = entry.role.clone();
        self.refresh_role(&role_name);
    }

    /// Re-keys `role` in the role sorter: present iff it has an eligible framework.
    fn refresh_role(&mut self, role_name: &str) {
        let weight = self.role_weight(role_name);
        let role = self.roles.get_mut(role_name).expect("role registered");
        let new_key =
            (!role.sorter.is_empty()).then(|| share_key(role.allocated, self.total, weight));
        if new_key != role.key {
            if let Some(old) = role.key {
                let removed = self.role_sorter.remove(&(old, role_name.to_owned()));
                debug_assert!(removed, "role key out of sync");
            }
            if let Some(new) = new_key {
                self.role_sorter.insert((new, role_name.to_owned()));
            }
            role.key = new_key;
        }
    }

    /// Re-keys everything against the current total.
    fn rebuild_sorters(&mut self) {
        self.role_sorter.clear();
        for role in self.roles.values_mut() {
            role.sorter.clear();
            role.key = None;
        }
        for (id, entry) in &mut self.frameworks {
            entry.key = entry
                .is_eligible()
                .then(|| share_key(entry.allocated, self.total, 1.0));
            if let Some(key) = entry.key {
                self.roles
                    .get_mut(&entry.role)
                    .expect("role registered")
                    .sorter
                    .insert((key, id.clone()));
            }
        }
        for (name, role) in &mut self.roles {
            if !role.sorter.is_empty() {
                let weight = self.weights.get(name).copied().unwrap_or(1.0);
                let key = share_key(role.allocated, self.total, weight);
                role.key = Some(key);
                self.role_sorter.insert((key, name.clone()));
            }
        }
        self.shares_stale = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(text: &str) -> Resources {
        Resources::parse(text).unwrap()
    }

    fn s(id: &str) -> SlaveId {
        SlaveId::new(id)
    }

    fn f(id: &str) -> FrameworkId {
        FrameworkId::new(id)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const SLAVE: &str = "cpus:4;mem:1024;disk:100;ports:[31000-31009]";

    fn cluster(slaves: usize, frameworks: &[(&str, &str)]) -> Allocator {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        for i in 0..slaves {
            allocator
                .add_slave(s(&format!("S{i}")), r(SLAVE), vec![])
                .unwrap();
        }
        for (framework, role) in frameworks {
            allocator.add_framework(f(framework), role).unwrap();
        }
        allocator
    }

    fn count_by_framework(allocations: &[Allocation]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in allocations {
            *counts.entry(a.framework.to_string()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn offers_whole_slaves_fairly_within_a_role() {
        let mut allocator = cluster(6, &[("A", "*"), ("B", "*"), ("C", "*")]);
        let offers = allocator.allocate(secs(0));
        assert_eq!(offers.len(), 6);
        for offer in &offers {
            assert_eq!(offer.resources, r(SLAVE));
        }
        let slaves: BTreeSet<_> = offers.iter().map(|o| o.slave.clone()).collect();
        assert_eq!(slaves.len(), 6, "each slave offered once");
        assert_eq!(
            count_by_framework(&offers),
            BTreeMap::from([("A".into(), 2), ("B".into(), 2), ("C".into(), 2)])
        );
        assert!((allocator.framework_share(&f("A")).unwrap() - 2.0 / 6.0).abs() < 1e-12);
        // Nothing left: the next cycle offers nothing.
        assert!(allocator.allocate(secs(1)).is_empty());
    }

    #[test]
    fn roles_first_then_frameworks() {
        // Role "big" has 3 frameworks, role "small" 1: roles split the cluster evenly, so the
        // lone framework of "small" gets as much as the three of "big" together.
        let mut allocator = cluster(
            6,
            &[("B1", "big"), ("B2", "big"), ("B3", "big"), ("S1", "small")],
        );
        let counts = count_by_framework(&allocator.allocate(secs(0)));
        assert_eq!(counts["S1"], 3);
        assert_eq!(counts["B1"] + counts["B2"] + counts["B3"], 3);
    }

    #[test]
    fn role_weights_scale_entitlement() {
        let mut allocator = cluster(6, &[("A", "a"), ("B", "b")]);
        allocator.set_role_weight("a", 2.0).unwrap();
        let counts = count_by_framework(&allocator.allocate(secs(0)));
        assert_eq!(counts, BTreeMap::from([("A".into(), 4), ("B".into(), 2)]));
        assert_eq!(allocator.role_weight("a"), 2.0);
        assert!(matches!(
            allocator.set_role_weight("a", 0.0),
            Err(MasterError::InvalidWeight { .. })
        ));
        assert!(matches!(
            allocator.set_role_weight("a", f64::NAN),
            Err(MasterError::InvalidWeight { .. })
        ));
    }

    #[test]
    fn dominant_share_uses_the_scarcest_resource() {
        // A already holds all memory-heavy resources on S0 (dominant: mem), B nothing.
        let mut allocator = Allocator::new(AllocatorConfig::default());
        allocator
            .add_slave(
                s("S0"),
                r("cpus:10;mem:1000"),
                vec![(f("A"), r("cpus:1;mem:900"))],
            )
            .unwrap();
        allocator
            .add_slave(s("S1"), r("cpus:10;mem:1000"), vec![])
            .unwrap();
        allocator.add_framework(f("A"), "*").unwrap();
        allocator.add_framework(f("B"), "*").unwrap();
        assert!((allocator.framework_share(&f("A")).unwrap() - 0.45).abs() < 1e-12);
        let offers = allocator.allocate(secs(0));
        // If S0's leftover (9 cpus, 100 MB) is visited first it goes to B (0 < 0.45), whose
        // share becomes 9/20 = 0.45, tying with A; "A" < "B" wins S1. If S1 is visited first,
        // B gets it (share 0.5) and A (0.45) gets S0's leftover. Either way: one each.
        assert_eq!(
            count_by_framework(&offers),
            BTreeMap::from([("A".into(), 1), ("B".into(), 1)])
        );
    }

    #[test]
    fn a_cycle_of_changes_visits_only_slaves_that_got_resources_back() {
        let mut allocator = cluster(4, &[("A", "*")]);
        // Demand grew (a framework was added): the first cycle of changes is a full one.
        let offers = allocator.allocate_changed(secs(0));
        assert_eq!(offers.len(), 4);
        assert!(allocator.allocate_changed(secs(0)).is_empty());
        // Resources of S2 come back unfiltered: only S2 is offered.
        let s2 = offers.iter().find(|o| o.slave == s("S2")).unwrap();
        allocator
            .recover_resources(&f("A"), &s("S2"), &s2.resources, None, secs(1))
            .unwrap();
        let again = allocator.allocate_changed(secs(1));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].slave, s("S2"));
        // Declined with a filter: the cycle of changes finds no taker, and the slave waits
        // for the full cycle after the filter expires.
        allocator
            .recover_resources(&f("A"), &s("S2"), &s2.resources, Some(secs(5)), secs(1))
            .unwrap();
        assert!(allocator.allocate_changed(secs(2)).is_empty());
        assert!(
            allocator.allocate_changed(secs(7)).is_empty(),
            "not changed"
        );
        let full = allocator.allocate(secs(7));
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].slave, s("S2"));
        // A revive makes the next cycle of changes a full one.
        allocator
            .recover_resources(&f("A"), &s("S1"), &r(SLAVE), Some(secs(100)), secs(8))
            .unwrap();
        assert!(allocator.allocate_changed(secs(9)).is_empty());
        allocator.revive(&f("A")).unwrap();
        let revived = allocator.allocate_changed(secs(9));
        assert_eq!(revived.len(), 1);
        assert_eq!(revived[0].slave, s("S1"));
    }

    #[test]
    fn filters_follow_their_slave_when_slots_move() {
        let mut allocator = cluster(3, &[("A", "*")]);
        let offers = allocator.allocate(secs(0));
        for offer in &offers {
            allocator
                .recover_resources(
                    &f("A"),
                    &offer.slave,
                    &offer.resources,
                    Some(secs(10)),
                    secs(0),
                )
                .unwrap();
        }
        // S0 leaves: the last slot (S2) moves into its place, with its filter.
        allocator.remove_slave(&s("S0")).unwrap();
        assert!(allocator.is_filtered(&f("A"), &s("S2"), secs(5)));
        assert!(allocator.is_filtered(&f("A"), &s("S1"), secs(5)));
        assert!(allocator.allocate(secs(5)).is_empty());
        // A new slave in the freed slot is not filtered.
        allocator.add_slave(s("S3"), r(SLAVE), vec![]).unwrap();
        assert!(!allocator.is_filtered(&f("A"), &s("S3"), secs(5)));
        let offers = allocator.allocate(secs(5));
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].slave, s("S3"));
        assert_eq!(allocator.allocate(secs(11)).len(), 2, "filters expired");
        allocator.check_invariants().unwrap();
    }

    #[test]
    fn refusal_filters_expire_and_revive_clears_them() {
        let mut allocator = cluster(1, &[("A", "*"), ("B", "*")]);
        let offer = allocator.allocate(secs(0)).pop().unwrap();
        assert_eq!(offer.framework, f("A"), "tie broken by id");
        allocator
            .recover_resources(&f("A"), &s("S0"), &offer.resources, Some(secs(5)), secs(0))
            .unwrap();
        assert!(allocator.is_filtered(&f("A"), &s("S0"), secs(4)));
        // B gets it while A is filtered, then declines without a filter.
        let offer = allocator.allocate(secs(1)).pop().unwrap();
        assert_eq!(offer.framework, f("B"));
        allocator
            .recover_resources(&f("B"), &s("S0"), &offer.resources, None, secs(1))
            .unwrap();
        allocator.suppress(&f("B")).unwrap();
        assert!(
            allocator.allocate(secs(2)).is_empty(),
            "A filtered, B suppressed"
        );
        let offer = allocator.allocate(secs(5)).pop().unwrap();
        assert_eq!(offer.framework, f("A"), "filter expired at 0 + 5 s");
        allocator
            .recover_resources(
                &f("A"),
                &s("S0"),
                &offer.resources,
                Some(secs(100)),
                secs(5),
            )
            .unwrap();
        assert!(allocator.allocate(secs(6)).is_empty());
        allocator.revive(&f("A")).unwrap();
        assert!(!allocator.is_filtered(&f("A"), &s("S0"), secs(6)));
        assert_eq!(allocator.allocate(secs(6)).pop().unwrap().framework, f("A"));
    }

    /// Framework A, offered slave S0 at 0 s, keeps a task's share of it (returned first) and
    /// gives back the rest (returned second), refusing it for `refuse`.
    fn keep_a_task_return_the_rest(
        allocator: &mut Allocator,
        refuse: Option<Duration>,
    ) -> (Resources, Resources) {
        let offer = allocator.allocate(secs(0)).pop().unwrap();
        let task = r("cpus:1;mem:256;ports:[31000-31000]");
        let rest = offer.resources.checked_sub(&task).unwrap();
        allocator
            .recover_resources(&f("A"), &s("S0"), &rest, refuse, secs(0))
            .unwrap();
        (task, rest)
    }

    #[test]
    fn a_filter_refuses_only_what_was_refused() {
        let mut allocator = cluster(1, &[("A", "*")]);
        // A keeps part of the slave (a task) and declines the rest for 60 s.
        let (task, _) = keep_a_task_return_the_rest(&mut allocator, Some(secs(60)));
        assert!(allocator.is_filtered(&f("A"), &s("S0"), secs(1)));
        assert!(
            allocator.allocate(secs(1)).is_empty(),
            "only the refused is left"
        );
        // The task ends: the slave has more than A refused, so A is offered it again,
        // filter or not, in the next cycle of changes.
        allocator
            .recover_resources(&f("A"), &s("S0"), &task, None, secs(2))
            .unwrap();
        assert!(!allocator.is_filtered(&f("A"), &s("S0"), secs(2)));
        let again = allocator.allocate_changed(secs(2));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].resources, r(SLAVE));
        // Declining the whole slave replaces the filter: now everything is refused.
        allocator
            .recover_resources(&f("A"), &s("S0"), &r(SLAVE), Some(secs(60)), secs(2))
            .unwrap();
        assert!(allocator.allocate(secs(3)).is_empty());
        assert_eq!(allocator.allocate(secs(62)).len(), 1, "expired at 2 + 60 s");
        allocator.check_invariants().unwrap();
    }

    #[test]
    fn refusal_is_clamped_to_a_year() {
        let mut allocator = cluster(1, &[("A", "*")]);
        let offer = allocator.allocate(secs(0)).pop().unwrap();
        allocator
            .recover_resources(
                &f("A"),
                &s("S0"),
                &offer.resources,
                Some(Duration::MAX),
                secs(0),
            )
            .unwrap();
        assert!(allocator.is_filtered(&f("A"), &s("S0"), REFUSE_DURATION_MAX - secs(1)));
        assert!(!allocator.is_filtered(&f("A"), &s("S0"), REFUSE_DURATION_MAX));
    }

    #[test]
    fn inactive_frameworks_and_slaves_get_and_give_nothing() {
        let mut allocator = cluster(2, &[("A", "*")]);
        allocator.deactivate_framework(&f("A")).unwrap();
        allocator.deactivate_slave(&s("S0")).unwrap();
        assert!(allocator.allocate(secs(0)).is_empty());
        allocator.activate_framework(&f("A")).unwrap();
        let offers = allocator.allocate(secs(1));
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].slave, s("S1"));
        allocator.activate_slave(&s("S0")).unwrap();
        assert_eq!(allocator.allocate(secs(2))[0].slave, s("S0"));
    }

    #[test]
    fn partial_recovery_and_minimum_allocatable() {
        let mut allocator = cluster(1, &[("A", "*")]);
        // The framework launches a task on part of it and declines the rest.
        let (task, rest) = keep_a_task_return_the_rest(&mut allocator, None);
        assert_eq!(allocator.allocation(&f("A"), &s("S0")), Some(&task));
        assert_eq!(allocator.slave_available(&s("S0")), Some(&rest));
        // Recovering more than it holds is an error and changes nothing.
        let err = allocator
            .recover_resources(&f("A"), &s("S0"), &r("cpus:2"), None, secs(0))
            .unwrap_err();
        assert!(matches!(err, MasterError::NotAllocated { .. }), "{err}");
        assert_eq!(allocator.allocation(&f("A"), &s("S0")), Some(&task));
        allocator.check_invariants().unwrap();

        // Below 0.01 cpus and 32 MB nothing is offered.
        let mut small = Allocator::new(AllocatorConfig::default());
        small
            .add_slave(s("S0"), r("cpus:0.005;mem:16;disk:1000"), vec![])
            .unwrap();
        small.add_framework(f("A"), "*").unwrap();
        assert!(small.allocate(secs(0)).is_empty());
    }

    #[test]
    fn used_resources_of_unknown_frameworks_are_held_then_adopted() {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        let used = r("cpus:1;mem:100;ports:[31000-31004]");
        allocator
            .add_slave(s("S0"), r(SLAVE), vec![(f("late"), used.clone())])
            .unwrap();
        allocator.check_invariants().unwrap();
        assert_eq!(
            allocator.slave_available(&s("S0")),
            Some(&r(SLAVE).checked_sub(&used).unwrap())
        );
        allocator.add_framework(f("late"), "*").unwrap();
        assert!(allocator.framework_share(&f("late")).unwrap() > 0.0);
        allocator.check_invariants().unwrap();
        allocator
            .recover_resources(&f("late"), &s("S0"), &used, None, secs(0))
            .unwrap();
        assert_eq!(allocator.framework_share(&f("late")), Some(0.0));
        assert_eq!(allocator.slave_available(&s("S0")), Some(&r(SLAVE)));
    }

    /// A slave whose reported tasks use more than its total (restarted with less): all of it
    /// is held, only what the total leaves above it is offered, and what comes back is
    /// offered only once nobody uses it and the total covers it.
    #[test]
    fn a_slave_reported_beyond_its_total_offers_only_what_is_free() {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        // A: 2.5 cpus in two tasks, both on port 31000; B: 1 cpu, also on 31000, and on 31010
        // outside the slave's ports. 3.5 cpus on 2.
        allocator
            .add_slave(
                s("S0"),
                r("cpus:2;mem:1000;ports:[31000-31003]"),
                vec![
                    (f("A"), r("cpus:2;mem:200;ports:[31000-31000]")),
                    (f("B"), r("cpus:1;mem:100;ports:[31000-31000,31010-31010]")),
                    (f("A"), r("cpus:0.5;ports:[31000-31000]")),
                ],
            )
            .unwrap();
        allocator.check_invariants().unwrap();
        assert!(allocator.is_overcommitted(&s("S0")));
        assert_eq!(
            allocator.slave_available(&s("S0")),
            Some(&r("mem:700;ports:[31001-31003]"))
        );
        allocator.add_framework(f("C"), "*").unwrap();
        let offers = allocator.allocate(secs(0));
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].resources, r("mem:700;ports:[31001-31003]"));
        let available = |allocator: &Allocator| allocator.slave_available(&s("S0")).cloned();
        let recover = |allocator: &mut Allocator, framework: &str, what: &str| {
            allocator
                .recover_resources(&f(framework), &s("S0"), &r(what), None, secs(1))
                .unwrap();
            allocator.check_invariants().unwrap();
        };
        // A's second task ends: 3 cpus on 2, and port 31000 is still A's and B's.
        recover(&mut allocator, "A", "cpus:0.5;ports:[31000-31000]");
        assert_eq!(available(&allocator), Some(Resources::empty()));
        assert!(allocator.is_overcommitted(&s("S0")));
        // B's ends: 2 cpus on 2; 31000 is still A's; 31010 is not the slave's. Everything
        // held fits again.
        recover(
            &mut allocator,
            "B",
            "cpus:1;mem:100;ports:[31000-31000,31010-31010]",
        );
        assert_eq!(available(&allocator), Some(r("mem:100")));
        assert!(!allocator.is_overcommitted(&s("S0")));
        // What B no longer holds cannot come back twice; nothing changes.
        assert!(matches!(
            allocator.recover_resources(&f("B"), &s("S0"), &r("cpus:1"), None, secs(1)),
            Err(MasterError::NotAllocated { .. })
        ));
        allocator.check_invariants().unwrap();
        // Part of A's task comes back: 1 cpu is free now.
        recover(&mut allocator, "A", "cpus:1;mem:100");
        assert_eq!(available(&allocator), Some(r("cpus:1;mem:200")));
        recover(&mut allocator, "A", "cpus:1;mem:100;ports:[31000-31000]");
        assert_eq!(
            available(&allocator),
            Some(r("cpus:2;mem:300;ports:[31000-31000]"))
        );
        // The slave's books are exact again: the offer to C was all the rest.
        recover(&mut allocator, "C", "mem:700;ports:[31001-31003]");
        assert_eq!(
            available(&allocator),
            Some(r("cpus:2;mem:1000;ports:[31000-31003]"))
        );
    }

    #[test]
    fn removing_a_framework_from_an_overcommitted_slave_frees_only_what_nobody_uses() {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        allocator.add_framework(f("A"), "*").unwrap();
        allocator.add_framework(f("B"), "*").unwrap();
        allocator
            .add_slave(
                s("S0"),
                r("cpus:1;mem:100;ports:[31000-31001]"),
                vec![
                    (f("A"), r("cpus:1;mem:50;ports:[31000-31000]")),
                    (f("A"), r("cpus:1;ports:[31000-31000]")),
                    (f("B"), r("cpus:0.5;mem:25;ports:[31000-31001]")),
                ],
            )
            .unwrap();
        assert_eq!(allocator.slave_available(&s("S0")), Some(&r("mem:25")));
        assert!((allocator.framework_share(&f("A")).unwrap() - 2.0).abs() < 1e-12);
        allocator.remove_framework(&f("A"));
        allocator.check_invariants().unwrap();
        // B's 0.5 cpu and both ports stay held; the slave is exact again.
        assert!(!allocator.is_overcommitted(&s("S0")));
        assert_eq!(
            allocator.slave_available(&s("S0")),
            Some(&r("cpus:0.5;mem:75"))
        );
        allocator.remove_framework(&f("B"));
        allocator.check_invariants().unwrap();
        assert_eq!(
            allocator.slave_available(&s("S0")),
            Some(&r("cpus:1;mem:100;ports:[31000-31001]"))
        );
    }

    #[test]
    fn bad_slave_reports_are_rejected() {
        let mut allocator = Allocator::new(AllocatorConfig::default());
        allocator.add_slave(s("S0"), r(SLAVE), vec![]).unwrap();
        assert!(matches!(
            allocator.add_slave(s("S0"), r(SLAVE), vec![]),
            Err(MasterError::DuplicateSlave { .. })
        ));
        assert!(matches!(
            allocator.remove_slave(&s("nope")),
            Err(MasterError::UnknownSlave { .. })
        ));
        assert!(matches!(
            allocator.suppress(&f("nope")),
            Err(MasterError::UnknownFramework { .. })
        ));
        assert!(matches!(
            allocator.add_framework(f("A"), "has space"),
            Err(MasterError::InvalidRole { .. })
        ));
        assert!(matches!(
            allocator.add_framework(f("A"), ""),
            Err(MasterError::InvalidRole { .. })
        ));
        allocator.add_framework(f("A"), "*").unwrap();
        assert!(matches!(
            allocator.add_framework(f("A"), "*"),
            Err(MasterError::DuplicateFramework { .. })
        ));
        assert!(matches!(
            allocator.recover_resources(&f("A"), &s("S0"), &r("cpus:1"), None, secs(0)),
            Err(MasterError::NotAllocated { .. })
        ));
    }

    #[test]
    fn update_slave_total_keeps_allocations() {
        let mut allocator = cluster(1, &[("A", "*")]);
        let offer = allocator.allocate(secs(0)).pop().unwrap();
        let task = r("cpus:1;mem:100");
        allocator
            .recover_resources(
                &f("A"),
                &s("S0"),
                &offer.resources.checked_sub(&task).unwrap(),
                None,
                secs(0),
            )
            .unwrap();
        let err = allocator
            .update_slave_total(&s("S0"), r("cpus:0.5;mem:100"))
            .unwrap_err();
        assert!(
            matches!(err, MasterError::TotalBelowAllocated { .. }),
            "{err}"
        );
        allocator
            .update_slave_total(&s("S0"), r("cpus:8;mem:100"))
            .unwrap();
        assert_eq!(allocator.slave_available(&s("S0")), Some(&r("cpus:7")));
        assert_eq!(allocator.total(), r("cpus:8;mem:100"));
        allocator.check_invariants().unwrap();
        // Share is now against the new total: mem 100/100.
        assert_eq!(allocator.framework_share(&f("A")), Some(1.0));
    }

    #[test]
    fn removing_frameworks_and_slaves_releases_everything() {
        let mut allocator = cluster(4, &[("A", "x"), ("B", "y")]);
        allocator.allocate(secs(0));
        allocator.remove_framework(&f("A"));
        allocator.remove_framework(&f("A")); // twice is harmless
        allocator.check_invariants().unwrap();
        assert_eq!(
            allocator.role_share("x"),
            None,
            "role without frameworks is forgotten"
        );
        let offers = allocator.allocate(secs(1));
        assert_eq!(offers.len(), 2, "A's two slaves go to B");
        assert!(offers.iter().all(|o| o.framework == f("B")));
        assert_eq!(allocator.framework_share(&f("B")), Some(1.0));
        allocator.remove_slave(&s("S0")).unwrap();
        allocator.remove_slave(&s("S3")).unwrap();
        allocator.check_invariants().unwrap();
        assert_eq!(allocator.framework_share(&f("B")), Some(1.0));
        assert_eq!(allocator.slaves_len(), 2);
        assert!(matches!(
            allocator.recover_resources(&f("B"), &s("S0"), &r(SLAVE), None, secs(1)),
            Err(MasterError::UnknownSlave { .. })
        ));
    }

    fn run_cycles(seed: u64, cycles: u64) -> Vec<Vec<Allocation>> {
        let mut allocator = Allocator::new(AllocatorConfig {
            seed,
            ..AllocatorConfig::default()
        });
        for i in 0..20 {
            allocator
                .add_slave(s(&format!("S{i}")), r(SLAVE), vec![])
                .unwrap();
        }
        for i in 0..4 {
            allocator.add_framework(f(&format!("F{i}")), "*").unwrap();
        }
        let mut out = Vec::new();
        for cycle in 0..cycles {
            let offers = allocator.allocate(secs(cycle));
            for o in &offers {
                allocator
                    .recover_resources(&o.framework, &o.slave, &o.resources, None, secs(cycle))
                    .unwrap();
            }
            out.push(offers);
        }
        out
    }

    #[test]
    fn deterministic_but_varied_slave_order() {
        let a = run_cycles(7, 5);
        assert_eq!(a, run_cycles(7, 5), "same seed, same allocations");
        assert_ne!(a, run_cycles(8, 5), "another seed, another order");
        // The same framework does not get the same slaves every cycle.
        let pairs = |offers: &Vec<Allocation>| -> BTreeSet<(FrameworkId, SlaveId)> {
            offers
                .iter()
                .map(|o| (o.framework.clone(), o.slave.clone()))
                .collect()
        };
        assert!(a.windows(2).any(|w| pairs(&w[0]) != pairs(&w[1])));
        for offers in &a {
            assert_eq!(offers.len(), 20);
            assert!(count_by_framework(offers).values().all(|&n| n == 5));
        }
    }

    /// One step of a random scenario.
    #[derive(Clone, Debug)]
    enum Op {
        AddSlave(u8, u32),
        /// A slave re-registering with tasks (framework, size, port offset): they may sum to
        /// more than its total, use ports outside it, or claim one port twice.
        AddSlaveWithTasks(u8, u32, Vec<(u8, u8, u8)>),
        RemoveSlave(u8),
        ToggleSlave(u8),
        UpdateSlave(u8, u32),
        AddFramework(u8, u8),
        RemoveFramework(u8),
        ToggleFramework(u8),
        Suppress(u8),
        Revive(u8),
        Weight(u8, u8),
        Allocate,
        /// Recover the `n`-th held allocation (wrapping), split in half or whole.
        Recover(u16, bool, Option<u8>),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 1u32..8).prop_map(|(i, size)| Op::AddSlave(i, size)),
            (
                0u8..8,
                1u32..8,
                proptest::collection::vec((0u8..3, 0u8..8, 0u8..16), 1..8)
            )
                .prop_map(|(i, size, tasks)| Op::AddSlaveWithTasks(i, size, tasks)),
            (0u8..8).prop_map(Op::RemoveSlave),
            (0u8..8).prop_map(Op::ToggleSlave),
            (0u8..8, 1u32..8).prop_map(|(i, size)| Op::UpdateSlave(i, size)),
            (0u8..6, 0u8..3).prop_map(|(i, role)| Op::AddFramework(i, role)),
            (0u8..6).prop_map(Op::RemoveFramework),
            (0u8..6).prop_map(Op::ToggleFramework),
            (0u8..6).prop_map(Op::Suppress),
            (0u8..6).prop_map(Op::Revive),
            (0u8..3, 1u8..4).prop_map(|(role, w)| Op::Weight(role, w)),
            Just(Op::Allocate),
            Just(Op::Allocate),
            Just(Op::Allocate),
            (any::<u16>(), any::<bool>(), proptest::option::of(0u8..4))
                .prop_map(|(n, half, refuse)| Op::Recover(n, half, refuse)),
            (any::<u16>(), any::<bool>(), proptest::option::of(0u8..4))
                .prop_map(|(n, half, refuse)| Op::Recover(n, half, refuse)),
        ]
    }

    /// A task of `size` halves of a cpu (and 16 MB each) on port `31000 + port`.
    fn task_size(size: u8, port: u8) -> Resources {
        Resources::from_milli(u64::from(size) * 500, u64::from(size) * 16_000, 0).with_ports(
            Ranges::single(31000 + u16::from(port), 31000 + u16::from(port)),
        )
    }

    fn slave_size(size: u32) -> Resources {
        Resources::from_milli(u64::from(size) * 1000, u64::from(size) * 64_000, 10_000)
            .with_ports(Ranges::single(31000, 31000 + size as u16 * 2))
    }

    use crate::resources::Ranges;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(arb_op(), 1..60)) {
            let mut allocator = Allocator::new(AllocatorConfig::default());
            // What we believe each framework holds per slave, from the outputs alone.
            let mut held: Vec<(FrameworkId, SlaveId, Resources)> = Vec::new();
            let mut active_fw: BTreeMap<FrameworkId, bool> = BTreeMap::new();
            let mut active_slave: BTreeMap<SlaveId, bool> = BTreeMap::new();
            let mut suppressed: BTreeSet<FrameworkId> = BTreeSet::new();
            let mut totals: BTreeMap<SlaveId, Resources> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                let now = secs(step as u64);
                match op {
                    Op::AddSlave(i, size) => {
                        let id = s(&format!("S{i}"));
                        if allocator.add_slave(id.clone(), slave_size(size), vec![]).is_ok() {
                            active_slave.insert(id.clone(), true);
                            totals.insert(id, slave_size(size));
                        }
                    }
                    Op::AddSlaveWithTasks(i, size, tasks) => {
                        let id = s(&format!("S{i}"));
                        let used: Vec<(FrameworkId, Resources)> = tasks
                            .iter()
                            .map(|&(fw, size, port)| (f(&format!("F{fw}")), task_size(size, port)))
                            .filter(|(_, r)| !r.is_empty())
                            .collect();
                        if allocator.add_slave(id.clone(), slave_size(size), used.clone()).is_ok() {
                            active_slave.insert(id.clone(), true);
                            totals.insert(id.clone(), slave_size(size));
                            held.extend(used.into_iter().map(|(fw, r)| (fw, id.clone(), r)));
                        }
                    }
                    Op::RemoveSlave(i) => {
                        let id = s(&format!("S{i}"));
                        if allocator.remove_slave(&id).is_ok() {
                            held.retain(|(_, slave, _)| *slave != id);
                            active_slave.remove(&id);
                            totals.remove(&id);
                        }
                    }
                    Op::ToggleSlave(i) => {
                        let id = s(&format!("S{i}"));
                        if let Some(active) = active_slave.get_mut(&id) {
                            *active = !*active;
                            if *active { allocator.activate_slave(&id).unwrap() } else { allocator.deactivate_slave(&id).unwrap() }
                        }
                    }
                    Op::UpdateSlave(i, size) => {
                        let id = s(&format!("S{i}"));
                        if allocator.update_slave_total(&id, slave_size(size)).is_ok() {
                            totals.insert(id, slave_size(size));
                        }
                    }
                    Op::AddFramework(i, role) => {
                        let id = f(&format!("F{i}"));
                        if allocator.add_framework(id.clone(), &format!("r{role}")).is_ok() {
                            active_fw.insert(id, true);
                        }
                    }
                    Op::RemoveFramework(i) => {
                        let id = f(&format!("F{i}"));
                        allocator.remove_framework(&id);
                        // What a framework not registered holds stays held until it registers.
                        if active_fw.remove(&id).is_some() {
                            held.retain(|(framework, _, _)| *framework != id);
                        }
                        suppressed.remove(&id);
                    }
                    Op::ToggleFramework(i) => {
                        let id = f(&format!("F{i}"));
                        if let Some(active) = active_fw.get_mut(&id) {
                            *active = !*active;
                            if *active { allocator.activate_framework(&id).unwrap() } else { allocator.deactivate_framework(&id).unwrap() }
                        }
                    }
                    Op::Suppress(i) => {
                        let id = f(&format!("F{i}"));
                        if allocator.suppress(&id).is_ok() { suppressed.insert(id); }
                    }
                    Op::Revive(i) => {
                        let id = f(&format!("F{i}"));
                        if allocator.revive(&id).is_ok() { suppressed.remove(&id); }
                    }
                    Op::Weight(role, w) => {
                        allocator.set_role_weight(&format!("r{role}"), f64::from(w)).unwrap();
                    }
                    Op::Allocate => {
                        let offers = allocator.allocate(now);
                        let mut slaves_seen = BTreeSet::new();
                        for offer in offers {
                            prop_assert!(slaves_seen.insert(offer.slave.clone()), "slave offered twice in a cycle");
                            prop_assert!(active_fw[&offer.framework], "offer to inactive framework");
                            prop_assert!(!suppressed.contains(&offer.framework), "offer to suppressed framework");
                            prop_assert!(active_slave[&offer.slave], "offer of inactive slave");
                            // No filter of its framework refused what it was offered.
                            let slot = allocator.slave_index[&offer.slave] as u32;
                            prop_assert!(!allocator.frameworks[&offer.framework].refuses(slot, &offer.resources, now));
                            // Nothing allocated twice: the offer is disjoint from all held ports.
                            for (_, slave, resources) in &held {
                                if *slave == offer.slave {
                                    prop_assert!(resources.ports().is_disjoint(offer.resources.ports()));
                                }
                            }
                            prop_assert_eq!(allocator.slave_available(&offer.slave).unwrap(), &Resources::empty());
                            held.push((offer.framework, offer.slave, offer.resources));
                        }
                    }
                    Op::Recover(n, half, refuse) => {
                        if !held.is_empty() {
                            let index = n as usize % held.len();
                            let (framework, slave, resources) = held[index].clone();
                            let part = if half {
                                let mut part = Resources::from_milli(resources.cpus_milli() / 2, resources.mem_milli() / 2, 0);
                                let mut ports = resources.ports().clone();
                                part = part.with_ports(ports.take_lowest(ports.len() / 2).unwrap());
                                part
                            } else {
                                resources.clone()
                            };
                            let refuse = refuse.map(|r| secs(u64::from(r)));
                            allocator.recover_resources(&framework, &slave, &part, refuse, now).unwrap();
                            let rest = resources.checked_sub(&part).unwrap();
                            if rest.is_empty() { held.remove(index); } else { held[index].2 = rest; }
                        }
                    }
                }
                if let Err(message) = allocator.check_invariants() {
                    prop_assert!(false, "after step {step}: {message}");
                }
                // Our view of holdings matches the allocator's.
                for (framework, slave, _) in &held {
                    prop_assert!(allocator.allocation(framework, slave).is_some());
                }
                // Against a simple reference: what is available on each slave is what its
                // total leaves above everything held there (offers and tasks), whatever the
                // tasks sum to; nothing anyone holds is available.
                for (slave, total) in &totals {
                    let claims = held.iter().filter(|(_, s, _)| s == slave).map(|(_, _, r)| r);
                    let expected = unused_part(total, &Resources::sum(claims));
                    prop_assert_eq!(allocator.slave_available(slave), Some(&expected), "after step {}", step);
                }
            }
        }
    }
}
