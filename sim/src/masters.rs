//! A group of masters as the harness watches it: the checks of the replicated masters, made as
//! events happen.
//!
//! With `--masters N` (N > 1) the cluster runs the real [`MasterProcess::replicated`] members
//! of one replicated log. After every event a master handles (the simulator says which node
//! handled the last event, [`Sim::last_event_node`]) and after every fault the harness
//! injects, the [`GroupWatch`] reads that master — its replica's role and term, until when it
//! may act ([`MasterProcess::acts_until`]), the digests of the commands it applied — and
//! checks:
//!
//! - **at most one leader per term**: a map term → the master that acted in it (took office
//!   in it: the term it announces to slaves and frameworks, which follow leaders by term); a
//!   second master acting in a term is a violation. (Replicas in openraft's leader role are
//!   also watched, but two of them in one term are legal there: openraft's default leader id
//!   is (term, node), and a replica that stood in the same term may win after the first one,
//!   which then never commits in it. Counted in [`GroupStats::raft_terms_with_two_leaders`].)
//! - **at most one master acts at any instant**: what each master's last event left (a master
//!   may act until its lease ends, [`MasterProcess::acts_until`]; nothing but an event at that
//!   master changes it), so when a master acts, no other may act at the same instant;
//! - **the masters' copies never diverge, and nothing committed is lost**: each copy of the
//!   replicated state fingerprints what it applied ([`AppliedDigest`]: the last index and a
//!   hash chained over every command up to it). The watch keeps a bounded map index → digest
//!   of what it saw and checks that every copy that applied an index has the same digest
//!   there. A committed command lost by a later leader (which then commits another one at
//!   that index) shows as a different digest at that index, as does any divergence;
//! - **registrations acknowledged to slaves are never lost**: a slave that was told
//!   `SlaveRegistered` with id X wrote X down (the [`Ledger`] sees the write); X must be in the
//!   replicated registry of the master acting when the slave wrote it down, and of every master
//!   that takes office later (checked when it does, and at every periodic check);
//! - **no framework action is accepted under a stale epoch**: a master counts the fenced calls
//!   (registrations, launches, kills of a framework run as leader + standbys) it accepted
//!   while acting, with the last one's election key and epoch
//!   ([`MasterProcess::fenced_calls_accepted`]); the watch keeps, per watched election key,
//!   the newest epoch any copy of the coordination store has granted
//!   ([`MasterProcess::fencing_epoch`]), and a call accepted under an older one is a
//!   violation (a deposed framework leader that acted after its successor was elected).
//!
//! Cost: O(1) per event of a master (O(masters) when it acts), nothing for the events of
//! slaves and frameworks; O(slaves) when a master takes office. A single master (N = 1) has no
//! watch at all.
//!
//! [`MasterProcess::replicated`]: plateau_master::MasterProcess::replicated

use std::collections::BTreeMap;
use std::time::Duration;

use plateau_master::replicated::AppliedDigest;
use plateau_master::MasterProcess;
use plateau_replica::Role;
use plateau_runtime::sim::Sim;
use plateau_runtime::Upid;
use serde::Serialize;

use crate::cluster::MasterPathCounts;
use crate::limits::{GROUP_DIGESTS_KEPT_MAX, GROUP_TERMS_KEPT_MAX};
use crate::observe::Ledger;

/// Invariant: at most one leader per term (one master acts in a term).
pub const ONE_LEADER_PER_TERM: &str = "at most one master leads in a term";
/// Invariant: at most one master acts at any instant.
pub const ONE_ACTING_MASTER: &str = "at most one master acts at any instant";
/// Invariant: the copies of the replicated state never diverge.
pub const NO_DIVERGENCE: &str = "the masters' copies of the replicated log never diverge";
/// Invariant: registrations acknowledged to slaves are never lost.
pub const NO_LOST_REGISTRATION: &str = "registrations acknowledged to slaves are never lost";
/// Invariant: no framework call is accepted under a stale epoch.
pub const NO_STALE_EPOCH: &str = "no framework action is accepted under a stale epoch";

/// What the group checks saw over a run (in the report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// Masters in the group.
    pub masters: usize,
    /// Terms in which a master acted.
    pub leader_terms: u64,
    /// Terms in which two replicas were seen in the raft leader role (openraft identifies a
    /// leader by term and node: legal, and only one of them can commit in the term).
    pub raft_terms_with_two_leaders: u64,
    /// Times a master took office (started acting in a new term).
    pub offices_taken: u64,
    /// Applied digests compared with another copy's at the same index.
    pub digests_compared: u64,
    /// Highest log index applied by a copy.
    pub last_applied_index: u64,
    /// Acknowledged registrations checked against an acting master's registry.
    pub registrations_checked: u64,
    /// Fenced framework calls (registrations, launches, kills) an acting master accepted,
    /// each checked against the newest epoch seen granted for its election key.
    pub fenced_calls_checked: u64,
}

/// What one look at a master found.
struct Look {
    /// Fenced calls accepted so far, and the last one's key and epoch.
    fenced: (u64, Option<(String, u64)>),
    /// The epochs the watched election keys are held at in this copy.
    epochs: Vec<Option<u64>>,
    role: Role,
    term: u64,
    acts_until: Option<Duration>,
    acting_term: Option<u64>,
    counts: Option<MasterPathCounts>,
    problems: Vec<(&'static str, String)>,
}

/// The per-event checks of a group of masters (see the [module docs](self)).
#[derive(Debug)]
pub struct GroupWatch {
    upids: Vec<Upid>,
    ledger: Ledger,
    /// Per master: until when it may act, as its last event left it (None: it does not).
    acts_until: Vec<Option<Duration>>,
    /// Per master: the term it acts in, as its last event left it.
    acting_term: Vec<Option<u64>>,
    /// Per master: the highest applied index already compared (reset when it restarts).
    compared_upto: Vec<u64>,
    /// Term → the master that acted in it (the last [`GROUP_TERMS_KEPT_MAX`] terms).
    leaders: BTreeMap<u64, usize>,
    /// Term → the last replica seen in the raft leader role in it.
    raft_leaders: BTreeMap<u64, usize>,
    /// Index → (hash, the master that applied it first) (the last [`GROUP_DIGESTS_KEPT_MAX`]).
    digests: BTreeMap<u64, (u64, usize)>,
    /// Per master: what its running core counted, as last seen.
    core_counts: Vec<Option<MasterPathCounts>>,
    /// What cores that stopped (stepped down, crashed) counted.
    retired: MasterPathCounts,
    /// Per master: fenced calls accepted, as last seen (reset when it restarts).
    fenced_seen: Vec<u64>,
    /// Election key → the newest epoch seen granted for it in any copy.
    epochs: BTreeMap<String, u64>,
    stats: GroupStats,
}

impl GroupWatch {
    /// A watch of the masters `upids` (master `k` on the simulator's node `k`), reporting to
    /// `ledger`.
    pub fn new(upids: Vec<Upid>, ledger: Ledger) -> Self {
        let n = upids.len();
        GroupWatch {
            upids,
            ledger,
            acts_until: vec![None; n],
            acting_term: vec![None; n],
            compared_upto: vec![0; n],
            leaders: BTreeMap::new(),
            raft_leaders: BTreeMap::new(),
            digests: BTreeMap::new(),
            core_counts: vec![None; n],
            retired: MasterPathCounts::default(),
            fenced_seen: vec![0; n],
            epochs: BTreeMap::new(),
            stats: GroupStats {
                masters: n,
                ..GroupStats::default()
            },
        }
    }

    /// Watches the grants of election key `key` (a framework run as leader + standbys):
    /// every fenced call an acting master accepts for it must carry the newest epoch granted.
    pub fn watch_election_key(&mut self, key: &str) {
        self.epochs.entry(key.to_string()).or_insert(0);
    }

    /// What the checks saw so far.
    pub fn stats(&self) -> GroupStats {
        self.stats
    }

    /// Rare master paths counted by every core seen so far.
    pub fn path_counts(&self) -> MasterPathCounts {
        let mut counts = self.retired;
        for c in self.core_counts.iter().flatten() {
            counts.add(*c);
        }
        counts
    }

    /// The master that may act at `now`, as the last events left them.
    pub fn acting_at(&self, now: Duration) -> Option<usize> {
        (0..self.upids.len()).find(|&k| self.acts_until[k].is_some_and(|u| now < u))
    }

    /// After each event of the simulator: looks at the master that handled it, if a master
    /// did, and at the registrations slaves wrote down.
    pub fn after_event(&mut self, sim: &mut Sim) {
        if let Some(k) = sim.last_event_node().filter(|&n| n < self.upids.len()) {
            self.observe(sim, k);
        }
        if self.ledger.new_ack_count() > 0 {
            self.check_new_registrations(sim);
        }
    }

    /// Looks at every master (after a change made from outside the event loop).
    pub fn observe_all(&mut self, sim: &mut Sim) {
        for k in 0..self.upids.len() {
            self.observe(sim, k);
        }
    }

    /// Master `k`'s node crashed: it acts no more, its core's counts are kept.
    pub fn crashed(&mut self, k: usize) {
        self.acts_until[k] = None;
        self.acting_term[k] = None;
        if let Some(c) = self.core_counts[k].take() {
            self.retired.add(c);
        }
    }

    /// Master `k` starts again (from its disk): it applies its log again from its snapshot.
    pub fn restarted(&mut self, k: usize) {
        self.crashed(k);
        self.compared_upto[k] = 0;
        self.fenced_seen[k] = 0;
    }

    /// Looks at master `k` and checks what changed.
    pub fn observe(&mut self, sim: &mut Sim, k: usize) {
        let now = sim.now().since_origin();
        let was_acting_term = self.acting_term[k];
        let ledger = &self.ledger;
        let digests = &mut self.digests;
        let compared_upto = &mut self.compared_upto[k];
        let stats = &mut self.stats;
        let keys: Vec<&String> = self.epochs.keys().collect();
        let look = sim.inspect(&self.upids[k], |m: &MasterProcess| {
            let replica = m.replica()?;
            let status = replica.status();
            let acting_term = m.acting_term();
            let mut problems = Vec::new();
            let took_office = acting_term.is_some() && acting_term != was_acting_term;
            replica.with_state(|s| {
                // Compare every digest applied since the last look (the newest are kept).
                let fresh = s
                    .recent_digests
                    .iter()
                    .rev()
                    .take_while(|d| d.index > *compared_upto);
                for d in fresh {
                    if let Some(p) = compare_digest(digests, stats, k, d) {
                        problems.push(p);
                        break;
                    }
                }
                *compared_upto = (*compared_upto).max(s.digest.index);
                stats.last_applied_index = stats.last_applied_index.max(s.digest.index);
                if took_office {
                    stats.offices_taken += 1;
                    let acked = ledger.acked_slaves();
                    stats.registrations_checked += acked.len() as u64;
                    if let Some((machine, id)) = acked
                        .iter()
                        .find(|(_, id)| !s.registry.slaves.contains_key(id))
                    {
                        problems.push((
                            NO_LOST_REGISTRATION,
                            format!(
                                "the master taking office in term {} has no slave {id} in its \
                                 registry ({} slaves), though machine {machine}'s slave was \
                                 told it registered as {id}",
                                acting_term.unwrap_or_default(),
                                s.registry.slaves.len()
                            ),
                        ));
                    }
                }
            });
            let (count, last) = m.fenced_calls_accepted();
            Some(Look {
                fenced: (count, last.map(|(key, e)| (key.to_string(), e))),
                epochs: keys.iter().map(|key| m.fencing_epoch(key)).collect(),
                role: status.role,
                term: status.term,
                acts_until: m.acts_until(),
                acting_term,
                counts: m.try_core().map(MasterPathCounts::of),
                problems,
            })
        });
        let Some(look) = look.flatten() else {
            // Not running (its node is down).
            self.crashed(k);
            return;
        };
        let host = |k: usize| self.upids[k].host.to_string();
        let mut problems = look.problems;
        // A fenced call accepted in this event (one event handles one message) must carry
        // the newest epoch granted before it, in any copy.
        let (count, last) = look.fenced;
        if count > self.fenced_seen[k] {
            self.stats.fenced_calls_checked += 1;
            if let Some((key, epoch)) = last {
                if let Some(newest) = newer_epoch(&self.epochs, &key, epoch) {
                    problems.push((
                        NO_STALE_EPOCH,
                        format!(
                            "master {} accepted a call under {key} at epoch {epoch}, though \
                             epoch {newest} was granted since",
                            host(k)
                        ),
                    ));
                }
            }
        }
        self.fenced_seen[k] = count;
        for (newest, seen) in self.epochs.values_mut().zip(&look.epochs) {
            *newest = (*newest).max(seen.unwrap_or(0));
        }
        if look.role == Role::Leader {
            // openraft identifies a leader by (term, node): two replicas may lead in one term
            // one after the other (the second standing in the same term before it heard of
            // the first). Counted, not a violation: only one of them can commit in the term.
            match self.raft_leaders.get(&look.term) {
                Some(&other) if other != k => {
                    self.raft_leaders.insert(look.term, k);
                    self.stats.raft_terms_with_two_leaders += 1;
                }
                Some(_) => {}
                None => {
                    self.raft_leaders.insert(look.term, k);
                    while self.raft_leaders.len() > GROUP_TERMS_KEPT_MAX {
                        self.raft_leaders.pop_first();
                    }
                }
            }
        }
        if let Some(term) = look.acting_term {
            // The term a master acts in is what it announces to slaves and frameworks
            // (`NewMasterDetectedMessage`), which they follow by term: one master per term.
            match record_office(&mut self.leaders, term, k) {
                Office::Other(other) => problems.push((
                    ONE_LEADER_PER_TERM,
                    format!(
                        "masters {} and {} both acted in term {term}",
                        host(other),
                        host(k),
                    ),
                )),
                Office::New => self.stats.leader_terms += 1,
                Office::Same => {}
            }
        }
        // Path counts: a core that stopped (or was replaced) retires its counts.
        let replaced = match (&self.core_counts[k], &look.counts) {
            (Some(old), Some(new)) => {
                look.acting_term != was_acting_term
                    || new.overcommitted_reregistrations < old.overcommitted_reregistrations
                    || new.staging_tasks_dropped < old.staging_tasks_dropped
            }
            (Some(_), None) => true,
            _ => false,
        };
        if replaced {
            if let Some(c) = self.core_counts[k].take() {
                self.retired.add(c);
            }
        }
        self.core_counts[k] = look.counts;
        self.acting_term[k] = look.acting_term;
        self.acts_until[k] = look.acts_until;
        if look.acts_until.is_some_and(|u| now < u) {
            let others = also_acting(&self.acts_until, k, now);
            if !others.is_empty() {
                let others: Vec<String> = others
                    .iter()
                    .map(|&j| {
                        format!(
                            "{} (term {:?}, lease until {:?})",
                            host(j),
                            self.acting_term[j],
                            self.acts_until[j]
                        )
                    })
                    .collect();
                problems.push((
                    ONE_ACTING_MASTER,
                    format!(
                        "master {} acts (term {:?}, lease until {:?}) at {now:?} while {} \
                         also may",
                        host(k),
                        look.acting_term,
                        look.acts_until,
                        others.join(", ")
                    ),
                ));
            }
        }
        for (invariant, detail) in problems {
            self.ledger.report(invariant, detail);
        }
    }

    /// Registrations written down since the last look must be in the acting master's
    /// registry (none acting: the next one to take office is checked for all of them).
    fn check_new_registrations(&mut self, sim: &mut Sim) {
        let acks = self.ledger.take_new_acks();
        let now = sim.now().since_origin();
        let Some(k) = self.acting_at(now) else {
            return;
        };
        self.stats.registrations_checked += acks.len() as u64;
        let missing = sim
            .inspect(&self.upids[k], |m: &MasterProcess| {
                let replica = m.replica()?;
                replica.with_state(|s| {
                    acks.iter()
                        .find(|(_, id)| !s.registry.slaves.contains_key(id))
                        .cloned()
                })
            })
            .flatten();
        if let Some((machine, id)) = missing {
            self.ledger.report(
                NO_LOST_REGISTRATION,
                format!(
                    "machine {machine}'s slave was told it registered as {id}, but the acting \
                     master {} has no such slave in its registry",
                    self.upids[k].host
                ),
            );
        }
    }

    /// Every acknowledged registration is in the acting master's registry (the periodic
    /// check); the failure, if any.
    pub fn check_registrations(&mut self, sim: &mut Sim) -> Option<(String, String)> {
        let now = sim.now().since_origin();
        let k = self.acting_at(now)?;
        let acked = self.ledger.acked_slaves();
        self.stats.registrations_checked += acked.len() as u64;
        let missing = sim
            .inspect(&self.upids[k], |m: &MasterProcess| {
                let replica = m.replica()?;
                replica.with_state(|s| {
                    acked
                        .iter()
                        .find(|(_, id)| !s.registry.slaves.contains_key(id))
                        .cloned()
                })
            })
            .flatten()?;
        let (machine, id) = missing;
        Some((
            NO_LOST_REGISTRATION.to_string(),
            format!(
                "machine {machine}'s slave was told it registered as {id}, but the acting master \
                 {} has no such slave in its registry",
                self.upids[k].host
            ),
        ))
    }
}

/// The newest epoch granted for `key` (as seen so far), when it is newer than `epoch`: a
/// call stamped `epoch` is then stale.
fn newer_epoch(epochs: &BTreeMap<String, u64>, key: &str, epoch: u64) -> Option<u64> {
    epochs.get(key).copied().filter(|&newest| epoch < newest)
}

/// What [`record_office`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Office {
    /// The first master seen acting in the term.
    New,
    /// The master already seen acting in the term.
    Same,
    /// Another master acted in the term before.
    Other(usize),
}

/// Records that master `k` acts in `term` (the last [`GROUP_TERMS_KEPT_MAX`] terms kept).
fn record_office(offices: &mut BTreeMap<u64, usize>, term: u64, k: usize) -> Office {
    match offices.get(&term) {
        Some(&other) if other != k => Office::Other(other),
        Some(_) => Office::Same,
        None => {
            offices.insert(term, k);
            while offices.len() > GROUP_TERMS_KEPT_MAX {
                offices.pop_first();
            }
            Office::New
        }
    }
}

/// The masters other than `k` that may act at `now`, as their last events left them.
fn also_acting(acts_until: &[Option<Duration>], k: usize, now: Duration) -> Vec<usize> {
    (0..acts_until.len())
        .filter(|&j| j != k && acts_until[j].is_some_and(|u| now < u))
        .collect()
}

/// Compares master `k`'s digest `d` with what another copy applied at the same index, or
/// records it.
fn compare_digest(
    digests: &mut BTreeMap<u64, (u64, usize)>,
    stats: &mut GroupStats,
    k: usize,
    d: &AppliedDigest,
) -> Option<(&'static str, String)> {
    match digests.get(&d.index) {
        Some(&(hash, first)) => {
            if first != k {
                stats.digests_compared += 1;
            }
            (hash != d.hash).then(|| {
                (
                    NO_DIVERGENCE,
                    format!(
                        "at log index {}, master #{k} applied digest {:016x} but master #{first} \
                         applied {hash:016x}: they applied different commands",
                        d.index, d.hash
                    ),
                )
            })
        }
        None => {
            digests.insert(d.index, (d.hash, k));
            while digests.len() > GROUP_DIGESTS_KEPT_MAX {
                digests.pop_first();
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(index: u64, hash: u64) -> AppliedDigest {
        AppliedDigest { index, hash }
    }

    #[test]
    fn a_second_master_acting_in_a_term_is_found() {
        let mut offices = BTreeMap::new();
        assert_eq!(record_office(&mut offices, 1, 0), Office::New);
        assert_eq!(record_office(&mut offices, 1, 0), Office::Same);
        assert_eq!(record_office(&mut offices, 2, 1), Office::New);
        assert_eq!(record_office(&mut offices, 1, 2), Office::Other(0));
        for term in 3..(3 + GROUP_TERMS_KEPT_MAX as u64) {
            record_office(&mut offices, term, 0);
        }
        assert_eq!(offices.len(), GROUP_TERMS_KEPT_MAX);
    }

    #[test]
    fn a_call_under_an_epoch_older_than_one_granted_is_stale() {
        let epochs = BTreeMap::from([("/marathon/leader".to_string(), 20)]);
        assert_eq!(newer_epoch(&epochs, "/marathon/leader", 10), Some(20));
        assert_eq!(newer_epoch(&epochs, "/marathon/leader", 20), None);
        // A grant the watch has not seen yet (the call's epoch is the newest).
        assert_eq!(newer_epoch(&epochs, "/marathon/leader", 21), None);
        assert_eq!(newer_epoch(&epochs, "/chronos/leader", 1), None);
    }

    #[test]
    fn masters_whose_leases_overlap_now_are_found() {
        let s = Duration::from_secs;
        // Master 0 acts until 10 s, master 1 until 12 s, master 2 not at all.
        let acts = [Some(s(10)), Some(s(12)), None];
        assert_eq!(also_acting(&acts, 1, s(9)), vec![0]);
        // The lease of 0 ended: 1 alone.
        assert!(also_acting(&acts, 1, s(10)).is_empty());
        assert_eq!(also_acting(&acts, 0, s(5)), vec![1]);
        assert!(also_acting(&[None, Some(s(1))], 1, s(0)).is_empty());
    }

    #[test]
    fn digests_of_two_copies_are_compared_index_by_index() {
        let mut map = BTreeMap::new();
        let mut stats = GroupStats::default();
        assert!(compare_digest(&mut map, &mut stats, 0, &digest(1, 11)).is_none());
        assert!(compare_digest(&mut map, &mut stats, 0, &digest(2, 12)).is_none());
        // The same copy again (it restarted and applied its log again): not a comparison.
        assert!(compare_digest(&mut map, &mut stats, 0, &digest(1, 11)).is_none());
        assert_eq!(stats.digests_compared, 0);
        assert!(compare_digest(&mut map, &mut stats, 1, &digest(1, 11)).is_none());
        assert_eq!(stats.digests_compared, 1);
        let (invariant, detail) =
            compare_digest(&mut map, &mut stats, 2, &digest(2, 99)).expect("diverged");
        assert_eq!(invariant, NO_DIVERGENCE);
        assert!(detail.contains("index 2"), "{detail}");
    }
}
