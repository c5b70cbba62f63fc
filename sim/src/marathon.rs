//! The real Marathon in the simulated cluster: apps with drawn instance counts and placement
//! constraints, posted through Marathon's own API at the start of a run, and the check that
//! every acknowledged app converges after the faults stop.
//!
//! The scheduler is [`MarathonScheduler`] itself, on a [`MemoryStore`] held by the harness (the
//! node's disk: a crash of the Marathon node drops the process, a restart recovers the store).
//! Marathon's store commits every change durably before it returns (redb, one transaction per
//! change), so the simulated disk has no unsynced writes a crash could cut short: a crash loses
//! only what Marathon had not written yet. The scheduler is wrapped in [`Observed`] so that the
//! ledger sees every status it receives; [`SimScheduler`] installs Marathon's own messages
//! (timers, readiness) on the wrapped driver through the entry points Marathon exposes
//! for such hosts (`MarathonScheduler::on_*_message`).
//!
//! Apps (`/sim/app<k>`, tasks `sim_app<k>.<uuid>`) run until killed (`sim:exit=0`): Marathon's
//! launch backoff grows with every failure, so failing tasks would make the convergence bound
//! depend on the backoff rather than on the cluster; task failures are a Keeper and Chronos
//! workload. Constraints are drawn among
//!
//! | drawn | constraint | checked after convergence |
//! |---|---|---|
//! | none | — | the instance count |
//! | unique | `["hostname", "UNIQUE"]` | at most one instance per host |
//! | max per rack | `["rack", "MAX_PER", "k"]` | at most `k` instances per rack |
//! | max per host | `["hostname", "MAX_PER", "k"]` | at most `k` instances per host |
//! | group by rack | `["rack", "GROUP_BY"]` | the instance count only |
//!
//! GROUP_BY is a rule for *placing* an instance (Marathon does not move running instances to
//! rebalance after a partition or a crash moved some), so only the count is checked for it.
//! Instance counts are drawn so that every constraint can be met with every slave up.

use std::collections::BTreeMap;

use plateau_marathon::scheduler::{ApiAnswer, ApiCaller, MarathonConfig, MarathonScheduler};
use plateau_marathon::store::MemoryStore;
use plateau_runtime::{Handlers, Rng, Upid};
use plateau_sdk::{Masters, SchedulerDriver};
use serde_json::{json, Value};

use crate::invariants::Failure;

use crate::observe::{InjectedBug, Ledger, Observed, SimScheduler};

/// Process name of Marathon's scheduler.
pub const MARATHON_PROCESS_NAME: &str = "marathon";

/// The hosted process: Marathon's scheduler, observed, in the SDK's driver.
pub type MarathonProcess = SchedulerDriver<Observed<MarathonScheduler>>;

/// A placement constraint of a simulated app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimConstraint {
    /// No constraint.
    None,
    /// `["hostname", "UNIQUE"]`.
    UniqueHostname,
    /// `["rack", "MAX_PER", "k"]`.
    MaxPerRack(u32),
    /// `["hostname", "MAX_PER", "k"]`.
    MaxPerHost(u32),
    /// `["rack", "GROUP_BY"]`.
    GroupByRack,
}

impl SimConstraint {
    /// Marathon's JSON for it.
    pub fn json(self) -> Value {
        match self {
            SimConstraint::None => json!([]),
            SimConstraint::UniqueHostname => json!([["hostname", "UNIQUE"]]),
            SimConstraint::MaxPerRack(k) => json!([["rack", "MAX_PER", k.to_string()]]),
            SimConstraint::MaxPerHost(k) => json!([["hostname", "MAX_PER", k.to_string()]]),
            SimConstraint::GroupByRack => json!([["rack", "GROUP_BY"]]),
        }
    }
}

/// One app as the harness posts it and checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct MarathonAppSpec {
    /// App id (`/sim/app<k>`).
    pub id: String,
    /// Instances wanted.
    pub instances: u32,
    /// Its constraint (as checked; with [`InjectedBug::MarathonIgnoresConstraints`] it is not
    /// what Marathon was given).
    pub constraint: SimConstraint,
    /// Marathon answered the post with 201: the app must converge.
    pub acknowledged: bool,
}

impl MarathonAppSpec {
    /// What its task ids start with, before the last `.` (Marathon's `foo_bar.<uuid>`).
    pub fn task_prefix(&self) -> String {
        self.id.trim_start_matches('/').replace('/', "_")
    }

    /// The body of its `POST /v2/apps`.
    pub fn body(&self, bug: Option<InjectedBug>) -> Value {
        let constraints = if bug == Some(InjectedBug::MarathonIgnoresConstraints) {
            json!([])
        } else {
            self.constraint.json()
        };
        json!({
            "id": self.id,
            "cmd": "sim:exit=0",
            "cpus": 0.1,
            "mem": 32,
            "disk": 0,
            "instances": self.instances,
            "constraints": constraints,
            "backoffSeconds": 1,
            "maxLaunchDelaySeconds": 30
        })
    }
}

/// The Marathon node: its apps and its disk.
#[derive(Debug, Clone)]
pub struct MarathonNodeConfig {
    /// Framework name.
    pub name: String,
    /// Its apps.
    pub apps: Vec<MarathonAppSpec>,
    /// Its disk (shared with every incarnation of the node).
    pub store: MemoryStore,
    /// One of several instances (leader + standbys, [`crate::standbys`]): the state in the
    /// masters' coordination store instead of `store`.
    pub ha: bool,
}

/// Draws `count` apps for a cluster of `slaves` slaves over `racks` racks (slave `i` is on
/// rack `i mod racks`). With [`InjectedBug::MarathonIgnoresConstraints`], app 0 is made UNIQUE
/// hostname with as many instances as fit (at least 2), so that ignoring it shows.
pub fn draw_apps(
    seed: u64,
    count: usize,
    slaves: usize,
    racks: usize,
    bug: Option<InjectedBug>,
) -> Vec<MarathonAppSpec> {
    let mut rng = Rng::derive(seed, "sim.marathon-apps");
    let slaves = slaves.max(1) as u64;
    let used_racks = (racks as u64).min(slaves).max(1);
    (0..count)
        .map(|k| {
            let (constraint, most) = match rng.between(0, 9) {
                0..=2 => (SimConstraint::None, 6),
                3..=4 => (SimConstraint::UniqueHostname, slaves),
                5..=6 => {
                    let m = rng.between(1, 3) as u32;
                    (SimConstraint::MaxPerRack(m), u64::from(m) * used_racks)
                }
                7..=8 => {
                    let m = rng.between(1, 2) as u32;
                    (SimConstraint::MaxPerHost(m), u64::from(m) * slaves)
                }
                _ => (SimConstraint::GroupByRack, 6),
            };
            let mut instances = rng.between(1, most.clamp(1, 6)) as u32;
            let mut constraint = constraint;
            if k == 0 && bug == Some(InjectedBug::MarathonIgnoresConstraints) {
                constraint = SimConstraint::UniqueHostname;
                instances = slaves.clamp(2, 6) as u32;
            }
            MarathonAppSpec {
                id: format!("/sim/app{k}"),
                instances,
                constraint,
                acknowledged: false,
            }
        })
        .collect()
}

/// The Marathon driver process on `store`, registering with whichever of `masters` leads.
pub fn process(
    config: &MarathonNodeConfig,
    hostname: &str,
    masters: &Masters,
    ledger: &Ledger,
    bug: Option<InjectedBug>,
) -> MarathonProcess {
    let marathon_config = MarathonConfig {
        framework_name: config.name.clone(),
        hostname: hostname.to_string(),
        master: masters
            .as_slice()
            .iter()
            .map(|m| format!("{}:{}", m.host, m.port))
            .collect::<Vec<_>>()
            .join(","),
        ..MarathonConfig::default()
    };
    if config.ha && bug != Some(InjectedBug::MarathonWithoutElection) {
        let scheduler = MarathonScheduler::standby(marathon_config);
        let leader = plateau_marathon::replicated::leader_config(
            &config.name,
            &scheduler.advertised_address(),
            plateau_marathon::limits::LEADER_SESSION_TTL_DEFAULT,
        );
        let info = scheduler.framework_info();
        return SchedulerDriver::with_masters(
            info,
            masters.clone(),
            Observed::new(scheduler, ledger.clone(), bug),
        )
        .with_leader_election(leader);
    }
    let scheduler = MarathonScheduler::new(marathon_config, Box::new(config.store.clone()))
        .expect("an in-memory Marathon store always loads");
    let info = scheduler.framework_info();
    SchedulerDriver::with_masters(
        info,
        masters.clone(),
        Observed::new(scheduler, ledger.clone(), bug),
    )
}

/// Posts `app` to the leading Marathon `upid` (leader + standbys): its answer, which waits
/// for the app's writes to commit; None when the instance does not serve the API.
pub fn post_app_to_leader(
    sim: &mut plateau_runtime::sim::Sim,
    upid: &Upid,
    app: &MarathonAppSpec,
    bug: Option<InjectedBug>,
) -> Option<ApiAnswer> {
    let body = app.body(bug).to_string().into_bytes();
    sim.call(upid, move |p: &mut MarathonProcess, ctx| {
        let (s, mut d) = p.scheduler_and_driver(ctx);
        let m = s.inner_mut();
        if !m.serves_api() {
            return None;
        }
        let response = m.create_app(&mut d, &ApiCaller::default(), &body, false);
        let answer = m.answer(&mut d, response);
        m.flush_routes(&mut d);
        Some(answer)
    })
    .flatten()
}

/// Posts `app` to the Marathon process `upid`; true when Marathon acknowledged it (201).
pub fn post_app(
    sim: &mut plateau_runtime::sim::Sim,
    upid: &Upid,
    app: &MarathonAppSpec,
    bug: Option<InjectedBug>,
) -> bool {
    let body = app.body(bug).to_string().into_bytes();
    sim.call(upid, move |p: &mut MarathonProcess, ctx| {
        let (s, mut d) = p.scheduler_and_driver(ctx);
        let m = s.inner_mut();
        let response = m.create_app(&mut d, &ApiCaller::default(), &body, false);
        m.flush_routes(&mut d);
        response.status
    }) == Some(201)
}

impl plateau_marathon::scheduler::AsMarathon for Observed<MarathonScheduler> {
    fn marathon(&mut self) -> &mut MarathonScheduler {
        self.inner_mut()
    }
}

impl SimScheduler for MarathonScheduler {
    fn install_observed(h: &mut Handlers<MarathonProcess>) {
        plateau_marathon::scheduler::install_handlers(h);
        // Marathon's `SubscribeRoutes` (a balancer asking for the routes feed) is not
        // installed: no balancer runs in the simulated cluster.
    }
}

/// Checks that every acknowledged app runs exactly its instances, its constraint holding, on
/// the machines (`running`: task id → machine; `host_of`/`rack_of` by machine).
pub fn check_converged(
    apps: &[MarathonAppSpec],
    running: &BTreeMap<String, usize>,
    host_of: impl Fn(usize) -> String,
    rack_of: impl Fn(usize) -> usize,
) -> Result<(), Failure> {
    let mut by_prefix: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (task, machine) in running {
        if let Some((prefix, _)) = task.rsplit_once('.') {
            by_prefix.entry(prefix).or_default().push(*machine);
        }
    }
    for app in apps.iter().filter(|a| a.acknowledged) {
        let prefix = app.task_prefix();
        let machines = by_prefix.get(prefix.as_str()).cloned().unwrap_or_default();
        let n = machines.len() as u32;
        if n != app.instances {
            return Err((
                "every Marathon app runs its instances after the faults stop".into(),
                format!(
                    "Marathon app {} runs {n} instances of {}",
                    app.id, app.instances
                ),
            ));
        }
        let (limit, by_rack) = match app.constraint {
            SimConstraint::UniqueHostname => (1, false),
            SimConstraint::MaxPerHost(k) => (k, false),
            SimConstraint::MaxPerRack(k) => (k, true),
            SimConstraint::None | SimConstraint::GroupByRack => continue,
        };
        let mut per: BTreeMap<String, u32> = BTreeMap::new();
        for m in &machines {
            let key = if by_rack {
                format!("rack r{}", rack_of(*m))
            } else {
                format!("host {}", host_of(*m))
            };
            *per.entry(key).or_default() += 1;
        }
        if let Some((key, count)) = per.iter().find(|(_, c)| **c > limit) {
            return Err((
                "every Marathon app's constraints hold after the faults stop".into(),
                format!(
                    "Marathon app {} ({:?}) runs {count} instances on {key}",
                    app.id, app.constraint
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_apps_can_meet_their_constraints() {
        for seed in 0..50 {
            for (slaves, racks) in [(1, 2), (4, 2), (20, 2), (60, 3)] {
                let apps = draw_apps(seed, 10, slaves, racks, None);
                assert_eq!(apps, draw_apps(seed, 10, slaves, racks, None));
                for app in &apps {
                    let capacity = match app.constraint {
                        SimConstraint::UniqueHostname => slaves as u32,
                        SimConstraint::MaxPerHost(k) => k * slaves as u32,
                        SimConstraint::MaxPerRack(k) => k * racks.min(slaves) as u32,
                        _ => u32::MAX,
                    };
                    assert!(app.instances >= 1 && app.instances <= capacity, "{app:?}");
                }
            }
        }
    }

    #[test]
    fn the_check_counts_instances_and_constraints() {
        let app = MarathonAppSpec {
            id: "/sim/app0".into(),
            instances: 2,
            constraint: SimConstraint::UniqueHostname,
            acknowledged: true,
        };
        let host = |m: usize| format!("h{m}");
        let rack = |m: usize| m % 2;
        let mut running = BTreeMap::from([("sim_app0.a".to_string(), 0)]);
        assert!(check_converged(std::slice::from_ref(&app), &running, host, rack).is_err());
        running.insert("sim_app0.b".into(), 1);
        assert_eq!(
            check_converged(std::slice::from_ref(&app), &running, host, rack),
            Ok(())
        );
        running.insert("sim_app0.b".into(), 0);
        let err = check_converged(std::slice::from_ref(&app), &running, host, rack).unwrap_err();
        assert!(err.1.contains("on host h0"), "{err:?}");
        let mut rack_app = app.clone();
        rack_app.constraint = SimConstraint::MaxPerRack(1);
        running.insert("sim_app0.b".into(), 2);
        let err = check_converged(&[rack_app], &running, host, rack).unwrap_err();
        assert!(err.1.contains("rack r0"), "{err:?}");
    }
}
