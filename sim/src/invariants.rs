//! The invariants a run must keep, and their checks.
//!
//! Checked at once, inside the event that could break them (by the observation points of
//! [`crate::observe`], so after every event):
//! - **no slave is allocated more than its resources** — at each launch on a simulated
//!   machine, per kind (cpus, mem, disk) and with no port used twice;
//! - **a launch takes only what its slave's resources leave free** — at each launch, against
//!   what the slave advertises to the master: a slave restarted with less than its tasks use
//!   runs more than it advertises, but no launch may add to that;
//! - **no task id runs twice** — at each launch: not running on another machine, never ran
//!   before;
//! - **status updates reach frameworks in order** — a framework receives a slave's updates of
//!   a task in the order the slave created them, without gaps (duplicates allowed);
//! - **no status update is lost once acknowledged** — when the slave drops an update as
//!   acknowledged, its framework received it;
//! - **a task's status never goes from terminal back to live** as seen by its framework (a
//!   reconciliation answer, a snapshot that may overtake the ordered stream, ends nothing);
//! - **status update uuids are unique** per task.
//!
//! Checked every few simulated seconds ([`check_periodic`]) and at the end:
//! - the master's own books ([`MasterCore::check_invariants`](plateau_master::core::MasterCore::check_invariants)):
//!   cross-references; in the master's view no offer holds resources in use, and a slave's
//!   use goes beyond its total only through tasks the slave itself reported when it
//!   re-registered, never through a launch of the master; the allocator's invariants;
//! - every machine's books against its capacity, from scratch;
//! - with a group of masters, every registration acknowledged to a slave is in the acting
//!   master's registry (the group's other checks run at every event of a master:
//!   [`crate::masters`]).
//!
//! Checked after the final "heal, restart, converge" phase ([`check_converged`]), within a
//! bound: every Keeper app has its instance count running with its per-host constraint
//! holding, every acknowledged Marathon app its instance count with its constraint holding
//! ([`crate::marathon::check_converged`]), every instant of every Chronos job due before the
//! faults stopped ran ([`crate::chronos::ChronosWitness::check_converged`]), and what the
//! master reports running equals what the machines run, slave by slave.
//!
//! Chronos' exactly-once (never two runs of one scheduled instant) is checked at every launch
//! by [`crate::chronos::ChronosWitness`].

use std::collections::{BTreeMap, BTreeSet};

use plateau_master::core::SlaveStatus;

use crate::cluster::{Cluster, FrameworkKind};
use crate::observe::app_of;

/// A failed check: (invariant, detail).
pub type Failure = (String, String);

/// The checks that need a global view (cost O(tasks + slaves)).
pub fn check_periodic(cluster: &mut Cluster) -> Vec<Failure> {
    let mut failures = Vec::new();
    if let Some(Err(e)) = cluster.with_master(|core| core.check_invariants()) {
        failures.push(("the master's books are consistent".to_string(), e));
    }
    if let Some(watch) = &mut cluster.watch {
        failures.extend(watch.check_registrations(&mut cluster.sim));
    }
    if let Err(e) = cluster.ledger.check_machines() {
        failures.push((
            "no slave is allocated more than its resources".to_string(),
            e,
        ));
    }
    failures
}

/// An app as the convergence check sees it.
#[derive(Debug, Clone)]
struct AppGoal {
    instances: u32,
    max_per_host: u32,
    framework: usize,
    index: usize,
}

/// Whether the cluster has converged: `Ok` when every app runs its instances within its
/// constraint and the master's view equals the machines'. Otherwise the first difference.
pub fn check_converged(cluster: &mut Cluster) -> Result<(), Failure> {
    let mut goals: BTreeMap<String, AppGoal> = BTreeMap::new();
    for (j, f) in cluster.frameworks.iter().enumerate() {
        match &f.kind {
            FrameworkKind::Keeper(config) => {
                for (a, app) in config.apps.iter().enumerate() {
                    goals.insert(
                        app.id.clone(),
                        AppGoal {
                            instances: app.instances,
                            max_per_host: app.max_per_host,
                            framework: j,
                            index: a,
                        },
                    );
                }
            }
            // Checked below, with their own rules.
            FrameworkKind::Marathon(_) | FrameworkKind::Chronos(_) => {}
        }
    }
    // Counts first: checked every simulated second while converging, and cheap.
    let count = cluster.ledger.running_per_app();
    for (app, goal) in &goals {
        let n = count.get(app.as_str()).copied().unwrap_or(0);
        if n != goal.instances {
            let belief = cluster
                .with_keeper(goal.framework, |k| {
                    format!(
                        "its framework counts {} live, {} running",
                        k.live_instances(goal.index),
                        k.running_instances(goal.index)
                    )
                })
                .unwrap_or_else(|| "its framework is down".into());
            return Err((
                "every app runs its instances after the faults stop".into(),
                format!(
                    "app {app} runs {n} instances of {} ({belief})",
                    goal.instances
                ),
            ));
        }
    }
    let running = cluster.ledger.running();
    let mut per_host: BTreeMap<(&str, usize), u32> = BTreeMap::new();
    for (task, machine) in &running {
        *per_host.entry((app_of(task), *machine)).or_default() += 1;
    }
    for ((app, machine), n) in &per_host {
        if let Some(goal) = goals.get(*app) {
            if *n > goal.max_per_host {
                return Err((
                    "every app's constraint holds after the faults stop".into(),
                    format!(
                        "app {app} runs {n} instances on {} (limit {})",
                        cluster.slaves[*machine].addr.host, goal.max_per_host
                    ),
                ));
            }
        }
    }
    for f in &cluster.frameworks {
        if let FrameworkKind::Marathon(config) = &f.kind {
            crate::marathon::check_converged(
                &config.apps,
                &running,
                |m| cluster.slaves[m].addr.host.to_string(),
                |m| cluster.slaves[m].rack,
            )?;
        }
    }
    if let Some(witness) = &cluster.chronos_witness {
        witness.check_converged()?;
    }
    let host_index: BTreeMap<std::sync::Arc<str>, usize> = cluster
        .slaves
        .iter()
        .enumerate()
        .map(|(i, s)| (s.addr.host.clone(), i))
        .collect();
    let master_view = cluster.with_master(|core| {
        let mut tasks: BTreeMap<String, (Option<usize>, &'static str)> = BTreeMap::new();
        for task in core.tasks().values() {
            if task.state.is_terminal() {
                continue;
            }
            let machine = core
                .slaves()
                .get(&task.slave_id)
                .and_then(|s| host_index.get(s.info.hostname.as_str()).copied());
            tasks.insert(
                task.info.task_id.as_str().to_string(),
                (machine, task.state.as_str()),
            );
        }
        let connected = core
            .slaves()
            .values()
            .filter(|s| s.status == SlaveStatus::Connected)
            .count();
        (tasks, connected)
    });
    let Some((master_tasks, connected)) = master_view else {
        return Err((
            "a master acts after the faults stop".into(),
            "no master acts".into(),
        ));
    };
    if connected != cluster.slaves.len() {
        return Err((
            "every slave is registered after the faults stop".into(),
            format!("{connected} of {} slaves connected", cluster.slaves.len()),
        ));
    }
    let machine_ids: BTreeSet<&String> = running.keys().collect();
    let master_ids: BTreeSet<&String> = master_tasks.keys().collect();
    if let Some(extra) = master_ids.difference(&machine_ids).next() {
        return Err((
            "what the master reports equals what the slaves run".into(),
            format!(
                "the master reports task {extra} ({}) that no slave runs",
                master_tasks[*extra].1
            ),
        ));
    }
    if let Some(missing) = machine_ids.difference(&master_ids).next() {
        return Err((
            "what the master reports equals what the slaves run".into(),
            format!(
                "slave {} runs task {missing} the master does not report",
                cluster.slaves[running[*missing]].addr.host
            ),
        ));
    }
    for (task, machine) in &running {
        if master_tasks.get(task).and_then(|t| t.0) != Some(*machine) {
            return Err((
                "what the master reports equals what the slaves run".into(),
                format!(
                    "task {task} runs on {} but the master places it elsewhere",
                    cluster.slaves[*machine].addr.host
                ),
            ));
        }
    }
    Ok(())
}
