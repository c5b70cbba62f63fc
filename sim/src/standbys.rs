//! Marathon and Chronos as leader + standbys in the simulated cluster (`--marathons N`,
//! `--chronoses N`, with a group of masters), and the check that at most one of each acts.
//!
//! With N > 1 instances of a framework, each runs on its own node as the real scheduler with
//! leader election ([`SchedulerDriver::with_leader_election`](plateau_sdk::SchedulerDriver)):
//! its state in the masters' coordination store, the session ttl of production
//! (`LEADER_SESSION_TTL_DEFAULT`), fenced calls. The harness posts the apps and jobs to the
//! leader once one acts, and counts as acknowledged what it answered after the writes
//! committed.
//!
//! Checked after every event an instance handles ([`StandbyWatch::after_event`]): **at most
//! one instance of each framework acts** — an instance acts while its driver leads
//! ([`DriverState::is_leading`](plateau_sdk::DriverState::is_leading): elected, sure of its
//! lease, state loaded), which depends on the time: every instance of the framework is asked
//! at the event's instant, a paused one included (what it would believe if it woke now).
//! Cost: O(instances) per event of an instance; nothing for other events.
//!
//! The Chronos exactly-once witness ([`crate::chronos::ChronosWitness`]) watches the machines,
//! so it holds across Chronos leaders as it does across restarts; fenced calls are checked by
//! the masters' watch ([`crate::masters::NO_STALE_EPOCH`]).

use std::time::Duration;

use plateau_runtime::sim::Sim;
use plateau_runtime::Upid;
use serde::Serialize;

use crate::chronos::ChronosSimProcess;
use crate::marathon::MarathonProcess;
use crate::observe::Ledger;

/// Invariant: at most one Marathon acts at any instant.
pub const ONE_ACTING_MARATHON: &str = "at most one Marathon acts at any instant";
/// Invariant: at most one Chronos acts at any instant.
pub const ONE_ACTING_CHRONOS: &str = "at most one Chronos acts at any instant";

/// The election key of a framework named `name` (the SDK's `/{name}/leader`).
pub fn election_key(name: &str) -> String {
    format!("/{name}/leader")
}

/// Which framework a group of instances runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyKind {
    /// The real Marathon.
    Marathon,
    /// The real Chronos.
    Chronos,
}

/// What the checks of leader + standbys saw over a run (in the report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StandbyStats {
    /// Marathon instances.
    pub marathons: usize,
    /// Chronos instances.
    pub chronoses: usize,
    /// Times an instance of Marathon started acting (the first election included).
    pub marathon_leaders: u64,
    /// Times an instance of Chronos started acting.
    pub chronos_leaders: u64,
    /// Checks made (after events of instances).
    pub checks: u64,
}

#[derive(Debug)]
struct Group {
    kind: StandbyKind,
    /// (simulator node index, scheduler process) of each instance.
    instances: Vec<(usize, Upid)>,
    /// The instance that acted at the last check.
    acting: Option<usize>,
}

/// The per-event checks of leader + standbys (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct StandbyWatch {
    groups: Vec<Group>,
    stats: StandbyStats,
}

impl StandbyWatch {
    /// Watches the instances `instances` ((node index, upid)) of a framework of `kind`.
    pub fn add(&mut self, kind: StandbyKind, instances: Vec<(usize, Upid)>) {
        match kind {
            StandbyKind::Marathon => self.stats.marathons = instances.len(),
            StandbyKind::Chronos => self.stats.chronoses = instances.len(),
        }
        self.groups.push(Group {
            kind,
            instances,
            acting: None,
        });
    }

    /// What the checks saw so far.
    pub fn stats(&self) -> StandbyStats {
        self.stats
    }

    /// After each event of the simulator: checks the framework whose instance handled it.
    pub fn after_event(&mut self, sim: &mut Sim, ledger: &Ledger) {
        let Some(node) = sim.last_event_node() else {
            return;
        };
        for g in 0..self.groups.len() {
            if self.groups[g].instances.iter().any(|(n, _)| *n == node) {
                self.check(sim, ledger, g);
            }
        }
    }

    /// The instances of `kind` acting now.
    pub fn acting(&self, sim: &mut Sim, kind: StandbyKind) -> Vec<usize> {
        self.groups
            .iter()
            .filter(|g| g.kind == kind)
            .flat_map(|g| acting_instances(sim, g))
            .collect()
    }

    fn check(&mut self, sim: &mut Sim, ledger: &Ledger, g: usize) {
        self.stats.checks += 1;
        let group = &mut self.groups[g];
        let acting = acting_instances(sim, group);
        if acting.len() > 1 {
            let (invariant, name) = match group.kind {
                StandbyKind::Marathon => (ONE_ACTING_MARATHON, "Marathons"),
                StandbyKind::Chronos => (ONE_ACTING_CHRONOS, "Chronoses"),
            };
            let hosts: Vec<String> = acting
                .iter()
                .map(|&i| group.instances[i].1.host.to_string())
                .collect();
            ledger.report(
                invariant,
                format!("{name} {} act at once", hosts.join(" and ")),
            );
        }
        let now = acting.first().copied();
        if now.is_some() && now != group.acting {
            match group.kind {
                StandbyKind::Marathon => self.stats.marathon_leaders += 1,
                StandbyKind::Chronos => self.stats.chronos_leaders += 1,
            }
        }
        if now.is_some() {
            group.acting = now;
        }
    }
}

/// The instances of `group` whose driver leads at the simulator's now (a crashed one does
/// not; a paused one as it would believe if it woke now).
fn acting_instances(sim: &mut Sim, group: &Group) -> Vec<usize> {
    let now: Duration = sim.now().since_origin();
    (0..group.instances.len())
        .filter(|&i| {
            let upid = &group.instances[i].1;
            match group.kind {
                StandbyKind::Marathon => sim
                    .inspect(upid, |p: &MarathonProcess| p.state().is_leading(now))
                    .unwrap_or(false),
                StandbyKind::Chronos => sim
                    .inspect(upid, |p: &ChronosSimProcess| p.state().is_leading(now))
                    .unwrap_or(false),
            }
        })
        .collect()
}
