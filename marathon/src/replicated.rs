//! Marathon's state in the masters' coordination store (leader + standbys): the key layout,
//! the translation of the scheduler's [`StoreOp`]s into state writes, and the load at election.
//!
//! Pure: no I/O, no clock. The scheduler hands the [`StateOp`]s to the SDK's driver
//! (`Driver::write`), which writes them as guarded transactions under the prefix of its
//! [`plateau_sdk::LeaderConfig`] (`/marathon/<framework name>/state/`, see [`leader_config`]);
//! a new leader reads them back with [`load`].
//!
//! # Key layout (relative to the prefix)
//!
//! One key per record, as Marathon kept one ZooKeeper node per record (a value is at most
//! `COORD_VALUE_BYTES_MAX`, 256 KiB):
//!
//! | key | value (JSON) |
//! |---|---|
//! | `apps/<app id without the leading slash>` | the app's current definition ([`AppDefinition`]) |
//! | `versions/<app id without the leading slash>/<version>` | the definition at that version (kept for rollback, at most `VERSIONS_PER_APP_MAX` per app) |
//! | `instances/<task id>` | an [`Instance`] |
//! | `deployments/<deployment id>` | a [`Deployment`] |
//! | `driver/framework-id` | the framework id (written by the SDK's driver, [`FRAMEWORK_ID_KEY`]) |
//!
//! A version never changes once written (a change makes a new version), so a changed app
//! writes its `apps/` key and only its new `versions/` key, and deletes the versions trimmed.
//! [`StateLayout`] remembers which versions were written (committed or not) to know that.
//!
//! # Writes and their size
//!
//! A transaction takes at most `COORD_TXN_OPS_MAX` changes and `COORD_TXN_BYTES_MAX` bytes;
//! [`StateLayout::translate`] cuts a long list of changes (a scale-down of thousands of
//! instances, a burst of status updates) into several writes, never cutting the changes of one
//! [`StoreOp`] apart. They commit in order, and the calls to the master made after them wait
//! for the last one, so a crash between two of them leaves a prefix of the changes, from which
//! a new leader converges like from any other state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use plateau_master::ids::{FrameworkId, TaskId};
use plateau_master::limits::{
    COORD_KEY_BYTES_MAX, COORD_TXN_BYTES_MAX, COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX,
};
use plateau_sdk::coord::{ReplicatedState, StateOp};
use plateau_sdk::{LeaderConfig, FRAMEWORK_ID_KEY};

use crate::app::AppDefinition;
use crate::state::{AppRecord, Deployment, Instance};
use crate::store::{StoreOp, StoredState};

/// Keys of app definitions.
pub const APPS_PREFIX: &str = "apps/";
/// Keys of app versions.
pub const VERSIONS_PREFIX: &str = "versions/";
/// Keys of instances.
pub const INSTANCES_PREFIX: &str = "instances/";
/// Keys of deployments.
pub const DEPLOYMENTS_PREFIX: &str = "deployments/";

/// The election key and state prefix of the Marathon named `framework_name`:
/// `/marathon/<name>/leader` and `/marathon/<name>/state/`, advertising `address` (its API's
/// `host:port`), with session ttl `session_ttl`.
///
/// ```
/// let config = plateau_marathon::replicated::leader_config(
///     "marathon",
///     "10.0.0.5:8080",
///     std::time::Duration::from_secs(3),
/// );
/// assert_eq!(config.election_key, "/marathon/marathon/leader");
/// assert_eq!(config.state_prefix, "/marathon/marathon/state/");
/// ```
pub fn leader_config(framework_name: &str, address: &str, session_ttl: Duration) -> LeaderConfig {
    LeaderConfig {
        election_key: format!("/marathon/{framework_name}/leader"),
        address: address.to_string(),
        state_prefix: format!("/marathon/{framework_name}/state/"),
        session_ttl,
    }
}

fn app_key(app_id: &str) -> String {
    format!("{APPS_PREFIX}{}", app_id.trim_start_matches('/'))
}

fn version_key(app_id: &str, version: &str) -> String {
    format!(
        "{VERSIONS_PREFIX}{}/{version}",
        app_id.trim_start_matches('/')
    )
}

fn instance_key(task_id: &TaskId) -> String {
    format!("{INSTANCES_PREFIX}{}", task_id.as_str())
}

fn deployment_key(id: &str) -> String {
    format!("{DEPLOYMENTS_PREFIX}{id}")
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records serialize")
}

/// Why a change cannot be written to the replicated state (it is refused before anything is
/// written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is too large, for an API answer.
    pub message: String,
}

/// What the leader wrote: the versions of each app, to write only new ones and delete the
/// trimmed ones. Built by [`load`], kept up to date by [`StateLayout::translate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateLayout {
    /// The prefix's length (counted in a transaction's bytes).
    prefix_bytes: usize,
    versions: BTreeMap<String, BTreeSet<String>>,
}

impl StateLayout {
    /// Nothing written yet, under a prefix of `prefix_bytes` bytes.
    pub fn new(prefix_bytes: usize) -> Self {
        StateLayout {
            prefix_bytes,
            versions: BTreeMap::new(),
        }
    }

    /// Whether `ops` can be written: every key and value within the store's limits. Nothing
    /// is remembered.
    pub fn check(&self, ops: &[StoreOp]) -> Result<(), Refusal> {
        self.clone().translate(ops).map(|_| ())
    }

    /// The writes for `ops`, in order: each within one transaction's limits, the changes of one
    /// op never cut apart. Remembers the versions written. `Err` (and nothing remembered) when
    /// a key or value is beyond the store's limits.
    pub fn translate(&mut self, ops: &[StoreOp]) -> Result<Vec<Vec<StateOp>>, Refusal> {
        let mut versions = self.versions.clone();
        let mut groups: Vec<Vec<StateOp>> = Vec::new();
        for op in ops {
            let mut group = Vec::new();
            match op {
                // The driver keeps the framework id (`driver/framework-id`).
                StoreOp::PutFrameworkId(_) => {}
                StoreOp::PutApp(record) => {
                    let id = &record.app.id;
                    group.push(StateOp::Put {
                        key: app_key(id),
                        value: encode(&record.app),
                    });
                    let written = versions.entry(id.clone()).or_default();
                    for (version, definition) in &record.versions {
                        if !written.contains(version) {
                            group.push(StateOp::Put {
                                key: version_key(id, version),
                                value: encode(definition),
                            });
                        }
                    }
                    for version in written.iter() {
                        if !record.versions.contains_key(version) {
                            group.push(StateOp::Delete {
                                key: version_key(id, version),
                            });
                        }
                    }
                    *written = record.versions.keys().cloned().collect();
                }
                StoreOp::DeleteApp(id) => {
                    group.push(StateOp::Delete { key: app_key(id) });
                    for version in versions.remove(id).unwrap_or_default() {
                        group.push(StateOp::Delete {
                            key: version_key(id, &version),
                        });
                    }
                }
                StoreOp::PutInstance(instance) => group.push(StateOp::Put {
                    key: instance_key(&instance.task_id),
                    value: encode(&**instance),
                }),
                StoreOp::DeleteInstance(id) => group.push(StateOp::Delete {
                    key: instance_key(id),
                }),
                StoreOp::PutDeployment(deployment) => group.push(StateOp::Put {
                    key: deployment_key(&deployment.id),
                    value: encode(&**deployment),
                }),
                StoreOp::DeleteDeployment(id) => group.push(StateOp::Delete {
                    key: deployment_key(id),
                }),
            }
            for change in &group {
                self.check_change(change)?;
            }
            if !group.is_empty() {
                groups.push(group);
            }
        }
        self.versions = versions;
        Ok(self.pack(groups))
    }

    fn check_change(&self, change: &StateOp) -> Result<(), Refusal> {
        let (key, value_bytes) = match change {
            StateOp::Put { key, value } => (key, value.len()),
            StateOp::Delete { key } => (key, 0),
        };
        if self.prefix_bytes + key.len() > COORD_KEY_BYTES_MAX {
            return Err(Refusal {
                message: format!(
                    "the key '{key}' is longer than the replicated state takes ({COORD_KEY_BYTES_MAX} bytes with its prefix)"
                ),
            });
        }
        if value_bytes > COORD_VALUE_BYTES_MAX {
            return Err(Refusal {
                message: format!(
                    "the record '{key}' is {value_bytes} bytes; the replicated state takes at most {COORD_VALUE_BYTES_MAX}"
                ),
            });
        }
        Ok(())
    }

    fn change_bytes(&self, change: &StateOp) -> usize {
        match change {
            StateOp::Put { key, value } => self.prefix_bytes + key.len() + value.len(),
            StateOp::Delete { key } => self.prefix_bytes + key.len(),
        }
    }

    /// Packs groups of changes into writes within a transaction's limits; a group larger than
    /// one transaction (an app deleted with many versions) is cut on its own.
    fn pack(&self, groups: Vec<Vec<StateOp>>) -> Vec<Vec<StateOp>> {
        let mut writes: Vec<Vec<StateOp>> = Vec::new();
        let mut current: Vec<StateOp> = Vec::new();
        let mut bytes = 0;
        for group in groups {
            let group_bytes: usize = group.iter().map(|c| self.change_bytes(c)).sum();
            let fits = current.len() + group.len() <= COORD_TXN_OPS_MAX
                && bytes + group_bytes <= COORD_TXN_BYTES_MAX;
            if !fits && !current.is_empty() {
                writes.push(std::mem::take(&mut current));
                bytes = 0;
            }
            for change in group {
                let size = self.change_bytes(&change);
                if !current.is_empty()
                    && (current.len() + 1 > COORD_TXN_OPS_MAX || bytes + size > COORD_TXN_BYTES_MAX)
                {
                    writes.push(std::mem::take(&mut current));
                    bytes = 0;
                }
                bytes += size;
                current.push(change);
            }
        }
        if !current.is_empty() {
            writes.push(current);
        }
        writes
    }
}

/// A record that did not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// Its key.
    pub key: String,
    /// Why.
    pub error: String,
}

/// Everything the state holds, as the scheduler keeps it, and the layout to write on; plus the
/// records that could not be read (left in place, never overwritten by the load).
pub fn load(state: &ReplicatedState) -> (StoredState, StateLayout, Vec<Unreadable>) {
    let mut stored = StoredState {
        framework_id: state
            .get(FRAMEWORK_ID_KEY)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(FrameworkId::new),
        ..StoredState::default()
    };
    let mut layout = StateLayout::new(state.prefix().len());
    let mut unreadable = Vec::new();
    let mut bad = |key: &str, error: String| {
        unreadable.push(Unreadable {
            key: key.to_string(),
            error,
        })
    };
    let mut versions: BTreeMap<String, BTreeMap<String, AppDefinition>> = BTreeMap::new();
    for (key, value) in state.range(VERSIONS_PREFIX) {
        let Some((id, version)) = key[VERSIONS_PREFIX.len()..].rsplit_once('/') else {
            bad(key, "not versions/<app>/<version>".into());
            continue;
        };
        match serde_json::from_slice::<AppDefinition>(value) {
            Ok(definition) => {
                versions
                    .entry(format!("/{id}"))
                    .or_default()
                    .insert(version.to_string(), definition);
            }
            Err(e) => bad(key, e.to_string()),
        }
    }
    for (key, value) in state.range(APPS_PREFIX) {
        match serde_json::from_slice::<AppDefinition>(value) {
            Ok(app) => {
                let mut record = AppRecord {
                    versions: versions.remove(&app.id).unwrap_or_default(),
                    app,
                };
                layout.versions.insert(
                    record.app.id.clone(),
                    record.versions.keys().cloned().collect(),
                );
                if let Some(version) = &record.app.version {
                    record
                        .versions
                        .entry(version.clone())
                        .or_insert_with(|| record.app.clone());
                }
                stored.apps.insert(record.app.id.clone(), record);
            }
            Err(e) => bad(key, e.to_string()),
        }
    }
    for (id, orphans) in versions {
        // Versions of an app that is gone (its deletion was cut short): remembered so that
        // the next write of that app id deletes them.
        layout
            .versions
            .insert(id, orphans.into_keys().collect::<BTreeSet<_>>());
    }
    for (key, value) in state.range(INSTANCES_PREFIX) {
        match serde_json::from_slice::<Instance>(value) {
            Ok(instance) => {
                stored.instances.insert(instance.task_id.clone(), instance);
            }
            Err(e) => bad(key, e.to_string()),
        }
    }
    for (key, value) in state.range(DEPLOYMENTS_PREFIX) {
        match serde_json::from_slice::<Deployment>(value) {
            Ok(deployment) => {
                stored.deployments.insert(deployment.id.clone(), deployment);
            }
            Err(e) => bad(key, e.to_string()),
        }
    }
    (stored, layout, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, version: &str, cmd: &str) -> AppDefinition {
        AppDefinition {
            id: id.into(),
            cmd: Some(cmd.into()),
            version: Some(version.into()),
            ..AppDefinition::default()
        }
    }

    fn record(versions: &[(&str, &str)]) -> AppRecord {
        let defs: BTreeMap<String, AppDefinition> = versions
            .iter()
            .map(|(v, cmd)| (v.to_string(), app("/grp/web", v, cmd)))
            .collect();
        AppRecord {
            app: defs.values().last().unwrap().clone(),
            versions: defs,
        }
    }

    fn keys(writes: &[Vec<StateOp>]) -> Vec<String> {
        writes
            .iter()
            .flatten()
            .map(|op| match op {
                StateOp::Put { key, .. } => format!("put {key}"),
                StateOp::Delete { key } => format!("delete {key}"),
            })
            .collect()
    }

    #[test]
    fn an_app_writes_its_new_versions_only_and_deletes_trimmed_ones() {
        let mut layout = StateLayout::new(20);
        let first = layout
            .translate(&[StoreOp::PutApp(Box::new(record(&[("v1", "a")])))])
            .unwrap();
        assert_eq!(
            keys(&first),
            ["put apps/grp/web", "put versions/grp/web/v1"]
        );
        let second = layout
            .translate(&[StoreOp::PutApp(Box::new(record(&[
                ("v2", "b"),
                ("v3", "c"),
            ])))])
            .unwrap();
        assert_eq!(
            keys(&second),
            [
                "put apps/grp/web",
                "put versions/grp/web/v2",
                "put versions/grp/web/v3",
                "delete versions/grp/web/v1"
            ]
        );
        let gone = layout
            .translate(&[StoreOp::DeleteApp("/grp/web".into())])
            .unwrap();
        assert_eq!(
            keys(&gone),
            [
                "delete apps/grp/web",
                "delete versions/grp/web/v2",
                "delete versions/grp/web/v3"
            ]
        );
        assert_eq!(
            layout
                .translate(&[StoreOp::PutFrameworkId(FrameworkId::new("f"))])
                .unwrap(),
            Vec::<Vec<StateOp>>::new(),
            "the driver keeps the framework id"
        );
    }

    #[test]
    fn long_lists_are_cut_into_transactions_and_large_records_refused() {
        let mut layout = StateLayout::new(30);
        let ops: Vec<StoreOp> = (0..600)
            .map(|n| StoreOp::DeleteInstance(TaskId::new(format!("web.{n}"))))
            .collect();
        let writes = layout.translate(&ops).unwrap();
        assert_eq!(
            writes.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 88]
        );
        let mut huge = app("/big", "v1", "x");
        huge.cmd = Some("x".repeat(COORD_VALUE_BYTES_MAX));
        let record = AppRecord {
            versions: BTreeMap::from([("v1".to_string(), huge.clone())]),
            app: huge,
        };
        let refused = layout.translate(&[StoreOp::PutApp(Box::new(record))]);
        assert!(refused.unwrap_err().message.contains("apps/big"));
        assert!(!layout.versions.contains_key("/big"), "nothing remembered");
    }
}
