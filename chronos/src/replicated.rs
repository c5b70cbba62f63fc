//! Chronos' state in the masters' coordination store, when several `plateau chronos` run as one
//! leader and standbys: the key layout, and the translation of the scheduler's [`Write`]s into
//! the SDK's [`StateOp`]s and of the loaded keys back into a [`Snapshot`]. Pure: no I/O, no
//! clock; [`crate::backend`] hands the ops to the driver.
//!
//! # Key layout
//!
//! The election key is `/chronos/<framework name>/leader` (its value: the leader's advertised
//! `host:port`, where standbys proxy the REST API to), and the state lives under
//! `/chronos/<framework name>/state/` ([`leader_config`]). Under that prefix, one key per
//! record, each value the record's JSON (as in the redb store), each at most 256 KiB:
//!
//! | key | value |
//! |---|---|
//! | `jobs/<name>` | the job definition, with its counters and current schedule ([`crate::job::Job`]) |
//! | `job-states/<name>` | last scheduled instant, parent edge counters, next history number ([`JobState`](crate::store::JobState)) |
//! | `runs/<job>@<instant ms>[:tag]` | a run not finished: its intent, attempt, launch ([`Run`](crate::store::Run)) |
//! | `history/<job>/<seq, 20 digits>` | a finished run, at most [`crate::limits::RUN_HISTORY_PER_JOB_MAX`] per job ([`HistoryEntry`](crate::store::HistoryEntry)) |
//! | `driver/framework-id` | the framework id, kept by the SDK's driver ([`FRAMEWORK_ID_KEY`]) |
//!
//! Job names match `[\w.-]+`, so a name never holds the `/` that ends it in a key.
//!
//! # Atomicity
//!
//! One batch of [`Write`]s becomes one guarded transaction when it fits the store's limits
//! (256 keys, 1 MiB), which every batch the scheduler makes does by construction except the
//! deletion of a job with many runs or much history. A larger batch is [`split`] into several
//! transactions, committed in order: a new leader may then find only a prefix of it, so the
//! scheduler orders such batches so that every prefix is a valid state (see
//! [`ChronosScheduler::delete_job`](crate::scheduler::ChronosScheduler::delete_job)), and an
//! elected leader deletes what a cut-short deletion left behind (runs, states and history of a
//! job that no longer exists).

use std::time::Duration;

use plateau_master::limits::{
    COORD_KEY_BYTES_MAX, COORD_TXN_BYTES_MAX, COORD_TXN_OPS_MAX, COORD_VALUE_BYTES_MAX,
};
use plateau_sdk::coord::StateOp;
use plateau_sdk::{LeaderConfig, FRAMEWORK_ID_KEY};

use crate::store::{decode, encode, HistoryEntry, Snapshot, Write};

/// Keys of job definitions: `jobs/<name>`.
pub const JOBS: &str = "jobs/";
/// Keys of jobs' scheduling states: `job-states/<name>`.
pub const JOB_STATES: &str = "job-states/";
/// Keys of unfinished runs: `runs/<run id>`.
pub const RUNS: &str = "runs/";
/// Keys of finished runs: `history/<job>/<seq>`.
pub const HISTORY: &str = "history/";

/// The election key and state prefix of the Chronos framework `framework_name`, advertising
/// `address` (the REST API's `host:port`), with session ttl `session_ttl` (how long a crashed
/// leader keeps the lease).
pub fn leader_config(framework_name: &str, address: &str, session_ttl: Duration) -> LeaderConfig {
    LeaderConfig::new(&format!("chronos/{framework_name}"), address).with_session_ttl(session_ttl)
}

/// The key of job `name`.
pub fn job_key(name: &str) -> String {
    format!("{JOBS}{name}")
}

/// The key of job `name`'s scheduling state.
pub fn job_state_key(name: &str) -> String {
    format!("{JOB_STATES}{name}")
}

/// The key of run `id`.
pub fn run_key(id: &str) -> String {
    format!("{RUNS}{id}")
}

/// The keys of job `job`'s history start with this.
pub fn history_prefix(job: &str) -> String {
    format!("{HISTORY}{job}/")
}

/// The key of history entry `seq` of `job`: fixed width, so that a job's entries are in order.
pub fn history_key(job: &str, seq: u64) -> String {
    format!("{HISTORY}{job}/{seq:020}")
}

/// A key whose value did not decode: skipped at load, and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The key (under the state's prefix).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// The stored state from the loaded keys (relative to the state's prefix), and the keys that
/// did not decode (a leader skips them rather than refuse to lead: every leader would refuse).
pub fn snapshot_of<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> (Snapshot, Vec<Undecodable>) {
    let mut snapshot = Snapshot::default();
    let mut bad = Vec::new();
    for (key, value) in entries {
        let result: Result<(), String> = if key == FRAMEWORK_ID_KEY {
            std::str::from_utf8(value)
                .map(|id| snapshot.framework_id = Some(id.to_string()))
                .map_err(|e| e.to_string())
        } else if let Some(name) = key.strip_prefix(JOBS) {
            decode(key, value)
                .map(|job| {
                    snapshot.jobs.insert(name.to_string(), job);
                })
                .map_err(|e| e.to_string())
        } else if let Some(name) = key.strip_prefix(JOB_STATES) {
            decode(key, value)
                .map(|state| {
                    snapshot.job_states.insert(name.to_string(), state);
                })
                .map_err(|e| e.to_string())
        } else if let Some(id) = key.strip_prefix(RUNS) {
            decode(key, value)
                .map(|run| {
                    snapshot.runs.insert(id.to_string(), run);
                })
                .map_err(|e| e.to_string())
        } else if let Some(rest) = key.strip_prefix(HISTORY) {
            match rest
                .rsplit_once('/')
                .map(|(job, seq)| (job, seq.parse::<u64>()))
            {
                Some((job, Ok(seq))) => decode::<HistoryEntry>(key, value)
                    .map(|entry| {
                        snapshot
                            .history
                            .entry(job.to_string())
                            .or_default()
                            .insert(seq, entry);
                    })
                    .map_err(|e| e.to_string()),
                _ => Err("expected history/<job>/<seq>".to_string()),
            }
        } else {
            // Another writer's key (the driver's own, a later version's): not Chronos' business.
            Ok(())
        };
        if let Err(reason) = result {
            bad.push(Undecodable {
                key: key.to_string(),
                reason,
            });
        }
    }
    (snapshot, bad)
}

/// The state ops of `writes`, in order. `history_keys(job)` lists the stored history keys of a
/// job (a [`Write::DeleteJob`] deletes them, then the job's state, then the job last, so that
/// a split deletion leaves the job in place until its last part). A [`Write::FrameworkId`] is
/// the driver's business with the replicated state: no op.
pub fn ops_of(writes: &[Write], history_keys: impl Fn(&str) -> Vec<String>) -> Vec<StateOp> {
    let put = |key: String, value: Vec<u8>| StateOp::Put { key, value };
    let delete = |key: String| StateOp::Delete { key };
    let mut ops = Vec::with_capacity(writes.len());
    for write in writes {
        match write {
            Write::Job(job) => ops.push(put(job_key(&job.name), encode(&**job))),
            Write::DeleteJob(name) => {
                ops.extend(history_keys(name).into_iter().map(delete));
                ops.push(delete(job_state_key(name)));
                ops.push(delete(job_key(name)));
            }
            Write::JobState(name, state) => ops.push(put(job_state_key(name), encode(state))),
            Write::Run(run) => ops.push(put(run_key(&run.id), encode(run))),
            Write::DeleteRun(id) => ops.push(delete(run_key(id))),
            Write::History(seq, entry) => {
                ops.push(put(history_key(&entry.job, *seq), encode(entry)))
            }
            Write::DeleteHistory(job, seq) => ops.push(delete(history_key(job, *seq))),
            Write::FrameworkId(_) => {}
        }
    }
    ops
}

/// Why ops cannot be written at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpsError {
    /// A value is larger than one key may hold.
    #[error("the value of {key} is {bytes} bytes (the coordination store keeps at most {max})")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Its value's size.
        bytes: usize,
        /// The most accepted.
        max: usize,
    },
    /// A key with the prefix is too long.
    #[error("the key {key} is {bytes} bytes with its prefix (at most {max})")]
    KeyTooLong {
        /// The key.
        key: String,
        /// Its size with the prefix.
        bytes: usize,
        /// The most accepted.
        max: usize,
    },
}

/// `ops` in consecutive groups that each fit one transaction of the coordination store (at most
/// `COORD_TXN_OPS_MAX` keys and `COORD_TXN_BYTES_MAX` key and value bytes, keys counted with
/// the `prefix_len` bytes of the state's prefix), in order. Checks every op first: nothing is
/// to be written when one cannot be.
pub fn split(prefix_len: usize, ops: Vec<StateOp>) -> Result<Vec<Vec<StateOp>>, OpsError> {
    let size = |op: &StateOp| -> (usize, usize) {
        match op {
            StateOp::Put { key, value } => (prefix_len + key.len(), value.len()),
            StateOp::Delete { key } => (prefix_len + key.len(), 0),
        }
    };
    for op in &ops {
        let (key_bytes, value_bytes) = size(op);
        let key = match op {
            StateOp::Put { key, .. } | StateOp::Delete { key } => key,
        };
        if key_bytes > COORD_KEY_BYTES_MAX {
            return Err(OpsError::KeyTooLong {
                key: key.clone(),
                bytes: key_bytes,
                max: COORD_KEY_BYTES_MAX,
            });
        }
        if value_bytes > COORD_VALUE_BYTES_MAX {
            return Err(OpsError::ValueTooLarge {
                key: key.clone(),
                bytes: value_bytes,
                max: COORD_VALUE_BYTES_MAX,
            });
        }
    }
    let mut groups: Vec<Vec<StateOp>> = Vec::new();
    let mut current: Vec<StateOp> = Vec::new();
    let mut bytes = 0usize;
    for op in ops {
        let (key_bytes, value_bytes) = size(&op);
        let op_bytes = key_bytes + value_bytes;
        if !current.is_empty()
            && (current.len() + 1 > COORD_TXN_OPS_MAX || bytes + op_bytes > COORD_TXN_BYTES_MAX)
        {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += op_bytes;
        current.push(op);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    debug_assert!(groups
        .iter()
        .all(|g| !g.is_empty() && g.len() <= COORD_TXN_OPS_MAX));
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;
    use crate::store::{JobState, Run, RunOutcomeKind, RunState, Trigger};
    use chrono::{DateTime, Utc};
    use std::collections::BTreeMap;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn run(job: &str, instant: DateTime<Utc>) -> Run {
        Run {
            id: Run::id_of(job, instant, Trigger::Schedule),
            job: job.into(),
            instant,
            trigger: Trigger::Schedule,
            attempt: 0,
            state: RunState::Launched,
            slave_id: Some("S1".into()),
            not_before: None,
            launched_at: Some(instant),
            started_at: None,
            arguments: String::new(),
        }
    }

    fn entry(job: &str, instant: DateTime<Utc>) -> HistoryEntry {
        HistoryEntry {
            run_id: Run::id_of(job, instant, Trigger::Schedule),
            job: job.into(),
            instant,
            trigger: Trigger::Schedule,
            attempts: 1,
            task_id: crate::store::task_id(job, instant, 0, Trigger::Schedule),
            slave_id: "S1".into(),
            started_at: Some(instant),
            finished_at: instant,
            outcome: RunOutcomeKind::Success,
            task_state: "TASK_FINISHED".into(),
            message: None,
        }
    }

    /// Applies ops to a key-value map, as the coordination store does.
    fn apply(kv: &mut BTreeMap<String, Vec<u8>>, ops: &[StateOp]) {
        for op in ops {
            match op {
                StateOp::Put { key, value } => {
                    kv.insert(key.clone(), value.clone());
                }
                StateOp::Delete { key } => {
                    kv.remove(key);
                }
            }
        }
    }

    fn history_keys_in(kv: &BTreeMap<String, Vec<u8>>) -> impl Fn(&str) -> Vec<String> + '_ {
        move |job| {
            let prefix = history_prefix(job);
            kv.keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect()
        }
    }

    #[test]
    fn writes_round_trip_through_keys_as_through_the_local_store() {
        let t = at("2026-01-01T00:00:10Z");
        let mut job = Job::new("backup", "true");
        job.schedule = Some("R/2026-01-01T00:00:00.000Z/PT10S".into());
        let state = JobState {
            last_scheduled: Some(t),
            edge_counts: BTreeMap::from([("a".to_string(), 2)]),
            history_next: 2,
        };
        let writes = vec![
            Write::Job(Box::new(job.clone())),
            Write::JobState("backup".into(), state.clone()),
            Write::Run(run("backup", t)),
            Write::History(0, entry("backup", t)),
            Write::History(1, entry("backup", t)),
            Write::DeleteHistory("backup".into(), 0),
            Write::FrameworkId("ignored: the driver keeps it".into()),
        ];
        let mut kv = BTreeMap::new();
        let ops = ops_of(&writes, history_keys_in(&kv));
        apply(&mut kv, &ops);
        kv.insert(FRAMEWORK_ID_KEY.to_string(), b"F-1".to_vec());
        let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "driver/framework-id",
                "history/backup/00000000000000000001",
                "job-states/backup",
                "jobs/backup",
                "runs/backup@1767225610000",
            ]
        );
        let (snapshot, bad) = snapshot_of(kv.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        assert!(bad.is_empty(), "{bad:?}");
        let mut local = Snapshot::default();
        for w in &writes[..6] {
            local.apply(w);
        }
        local.framework_id = Some("F-1".into());
        assert_eq!(snapshot, local);

        // Deleting the job deletes its history and state, and the job itself last.
        let ops = ops_of(&[Write::DeleteJob("backup".into())], history_keys_in(&kv));
        assert_eq!(
            ops.last(),
            Some(&StateOp::Delete {
                key: "jobs/backup".into()
            })
        );
        apply(&mut kv, &ops);
        let keys: Vec<&str> = kv.keys().map(String::as_str).collect();
        assert_eq!(keys, ["driver/framework-id", "runs/backup@1767225610000"]);
    }

    #[test]
    fn undecodable_values_are_reported_and_skipped() {
        let entries = [
            ("jobs/a", b"{not json".as_slice()),
            ("history/a/x", b"{}".as_slice()),
            ("something/else", b"whatever".as_slice()),
        ];
        let (snapshot, bad) = snapshot_of(entries);
        assert_eq!(snapshot, Snapshot::default());
        let keys: Vec<&str> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["jobs/a", "history/a/x"]);
    }

    #[test]
    fn large_batches_split_in_order_into_transactions_that_fit() {
        let prefix = "/chronos/chronos/state/".len();
        let ops: Vec<StateOp> = (0..600)
            .map(|i| StateOp::Delete {
                key: format!("runs/j@{i}"),
            })
            .collect();
        let groups = split(prefix, ops.clone()).unwrap();
        assert_eq!(
            groups.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 88]
        );
        assert_eq!(groups.concat(), ops);
        // By bytes: five values of 250 KiB make two transactions of at most 1 MiB.
        let big: Vec<StateOp> = (0..5)
            .map(|i| StateOp::Put {
                key: format!("jobs/j{i}"),
                value: vec![b'x'; 250 * 1024],
            })
            .collect();
        let groups = split(prefix, big).unwrap();
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [4, 1]);
        // A value over the store's limit: nothing is to be written.
        let too_big = vec![
            StateOp::Delete {
                key: "runs/a".into(),
            },
            StateOp::Put {
                key: "jobs/huge".into(),
                value: vec![0; COORD_VALUE_BYTES_MAX + 1],
            },
        ];
        assert!(matches!(
            split(prefix, too_big),
            Err(OpsError::ValueTooLarge { .. })
        ));
        assert_eq!(
            split(prefix, Vec::new()).unwrap(),
            Vec::<Vec<StateOp>>::new()
        );
    }

    #[test]
    fn the_leader_config_names_the_framework() {
        let config = leader_config("chronos", "10.0.0.5:4400", Duration::from_secs(3));
        assert_eq!(config.election_key, "/chronos/chronos/leader");
        assert_eq!(config.state_prefix, "/chronos/chronos/state/");
        assert_eq!(config.address, "10.0.0.5:4400");
        assert_eq!(config.session_ttl, Duration::from_secs(3));
    }
}
