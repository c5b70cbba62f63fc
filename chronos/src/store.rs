//! Durable state of the Chronos scheduler, behind a small trait with two implementations:
//! [`RedbStore`] (`<work-dir>/chronos/state.redb`, the real one) and [`MemoryStore`] (tests and
//! simulation; clones share one state, so a test can drop a scheduler and start another on the
//! "same disk").
//!
//! What is stored, and why each piece must survive a crash:
//! - **jobs**: the job definitions, with their counters and their current (rewritten) schedule
//!   string (`R4/<next start>/…`), so the remaining count survives;
//! - **job state** ([`JobState`]): the last scheduled instant per job (so no instant is created
//!   twice, and missed ones are known after an outage), the dependency edge counters of the job's
//!   parent edges, and the next history sequence number;
//! - **runs** ([`Run`]): every run that is pending, launched or running, with its attempt and
//!   task id. A run is written *before* its task is launched, so that after a crash the scheduler
//!   reconciles that exact task id instead of launching a new one;
//! - **history** ([`HistoryEntry`]): finished runs with exit status and duration, bounded per job
//!   ([`crate::limits::RUN_HISTORY_PER_JOB_MAX`]);
//! - **framework id**, to re-register as the same framework after a restart.
//!
//! Every change is a batch of [`Write`]s applied in one transaction ([`Store::commit`]): a crash
//! leaves either all of a batch or none of it. Values are JSON (jobs carry free-form JSON fields).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::job::Job;

/// Storage failures. The scheduler stops acting on its first one (see [`crate::scheduler`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("chronos state store {path}: {what}: {reason}")]
    Storage {
        /// The database file.
        path: String,
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// A stored value does not decode.
    #[error("chronos state store: cannot decode {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// The decoder's error.
        reason: String,
    },
    /// A test store refused the write (simulated crash, [`MemoryStore::fail_after`]).
    #[error("chronos state store: write refused (simulated failure)")]
    Refused,
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// A scheduled instant of the job's schedule.
    Schedule,
    /// Its parents succeeded.
    Dependency,
    /// `PUT /scheduler/job/{name}`.
    RunNow,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Intent recorded; waiting for an offer (or for its retry time, or for the previous run of
    /// a non-concurrent job).
    Pending,
    /// The task was handed to the master (recorded before the launch was sent).
    Launched,
    /// The task is running (or starting) on a slave.
    Running,
}

/// A run of a job that has not finished: one scheduled instant (or one dependency trigger, or
/// one run-now), through its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// `<job>@<instant in ms since the epoch>`: unique per job and instant.
    pub id: String,
    /// The job.
    pub job: String,
    /// The scheduled instant (for dependency and run-now triggers: when it was triggered).
    pub instant: DateTime<Utc>,
    /// Why the run exists.
    pub trigger: Trigger,
    /// The attempt, from 0; attempt `n` runs as task [`task_id`]`(job, instant, n)`.
    pub attempt: u32,
    /// Where the run is.
    pub state: RunState,
    /// The slave of the current attempt, once launched.
    pub slave_id: Option<String>,
    /// Do not launch before this (retry delay).
    pub not_before: Option<DateTime<Utc>>,
    /// When the current attempt was launched.
    pub launched_at: Option<DateTime<Utc>>,
    /// When the current attempt started running.
    pub started_at: Option<DateTime<Utc>>,
    /// Extra arguments of a run-now (appended to the command after a space).
    pub arguments: String,
}

impl Trigger {
    /// The tag that ends the run's task ids: empty for scheduled instants, so scheduled runs
    /// have Chronos' exact task ids; `now` and `dep` keep a run-now or a dependency run from
    /// ever sharing an id with a scheduled instant of the same millisecond.
    pub fn tag(self) -> &'static str {
        match self {
            Trigger::Schedule => "",
            Trigger::Dependency => "dep",
            Trigger::RunNow => "now",
        }
    }

    fn from_tag(tag: &str) -> Option<Trigger> {
        match tag {
            "" => Some(Trigger::Schedule),
            "dep" => Some(Trigger::Dependency),
            "now" => Some(Trigger::RunNow),
            _ => None,
        }
    }
}

impl Run {
    /// The run id of `job` at `instant` for `trigger`: `<job>@<ms since the epoch>`, with
    /// `:<tag>` for dependency and run-now runs.
    pub fn id_of(job: &str, instant: DateTime<Utc>, trigger: Trigger) -> String {
        run_id(job, instant.timestamp_millis(), trigger)
    }

    /// The Mesos task id of the run's current attempt.
    pub fn task_id(&self) -> String {
        task_id(&self.job, self.instant, self.attempt, self.trigger)
    }
}

fn run_id(job: &str, millis: i64, trigger: Trigger) -> String {
    match trigger {
        Trigger::Schedule => format!("{job}@{millis}"),
        other => format!("{job}@{millis}:{}", other.tag()),
    }
}

/// The Mesos task id of attempt `attempt` of the run of `job` at `instant`, in Chronos' format
/// `ct:<dueMillis>:<attempt>:<jobName>:<tag>` (see [`Trigger::tag`]; Chronos put the run-now
/// arguments there, but the id must not depend on them).
pub fn task_id(job: &str, instant: DateTime<Utc>, attempt: u32, trigger: Trigger) -> String {
    format!(
        "ct:{}:{attempt}:{job}:{}",
        instant.timestamp_millis(),
        trigger.tag()
    )
}

/// What a task id made by [`task_id`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTaskId {
    /// The job.
    pub job: String,
    /// The run's instant, in ms since the epoch.
    pub millis: i64,
    /// The attempt.
    pub attempt: u32,
    /// Why the run exists.
    pub trigger: Trigger,
}

impl ParsedTaskId {
    /// The id of the run the task belongs to.
    pub fn run_id(&self) -> String {
        run_id(&self.job, self.millis, self.trigger)
    }
}

/// Parses a task id made by [`task_id`]; `None` for any other id.
pub fn parse_task_id(task_id: &str) -> Option<ParsedTaskId> {
    let mut parts = task_id.splitn(5, ':');
    if parts.next()? != "ct" {
        return None;
    }
    let millis = parts.next()?.parse().ok()?;
    let attempt = parts.next()?.parse().ok()?;
    let job = parts.next()?.to_string();
    let trigger = Trigger::from_tag(parts.next()?)?;
    Some(ParsedTaskId {
        job,
        millis,
        attempt,
        trigger,
    })
}

/// How a finished run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunOutcomeKind {
    /// The last attempt finished with exit status 0.
    Success,
    /// Every attempt failed.
    Failure,
    /// Killed on request (no retry, no counters).
    Killed,
}

/// A finished run, for `/job/stat/{name}` and tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The run id.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// The scheduled instant.
    pub instant: DateTime<Utc>,
    /// Why it ran.
    pub trigger: Trigger,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
    /// Task id of the last attempt.
    pub task_id: String,
    /// Slave of the last attempt.
    pub slave_id: String,
    /// When the last attempt started running, if it did.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run ended.
    pub finished_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: RunOutcomeKind,
    /// The final task state (`TASK_FINISHED`, `TASK_FAILED`, ...).
    pub task_state: String,
    /// The final status message (exit status), if any.
    pub message: Option<String>,
}

impl HistoryEntry {
    /// Run time of the last attempt, in milliseconds (0 if it never started).
    pub fn duration_ms(&self) -> u64 {
        self.started_at
            .map(|s| (self.finished_at - s).num_milliseconds().max(0) as u64)
            .unwrap_or(0)
    }
}

/// Scheduling state of one job, beside its definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The latest scheduled instant for which a run was created (or that was deliberately
    /// passed over). Instants at or before it are never created again.
    pub last_scheduled: Option<DateTime<Utc>>,
    /// Counters of this job's parent edges (parent → successes since this job last started).
    pub edge_counts: BTreeMap<String, u64>,
    /// Sequence number of the next history entry of this job.
    pub history_next: u64,
}

/// One change to the stored state.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create or replace a job definition (boxed: a job is large).
    Job(Box<Job>),
    /// Delete a job with its state and history.
    DeleteJob(String),
    /// Create or replace a job's scheduling state.
    JobState(String, JobState),
    /// Create or replace a run.
    Run(Run),
    /// Delete a run (it finished, or its job was deleted).
    DeleteRun(String),
    /// Add a history entry as number `seq` of its job.
    History(u64, HistoryEntry),
    /// Delete history entry `seq` of a job.
    DeleteHistory(String, u64),
    /// The framework id the master gave.
    FrameworkId(String),
}

/// Everything stored, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The framework id, once registered.
    pub framework_id: Option<String>,
    /// Job definitions by name.
    pub jobs: BTreeMap<String, Job>,
    /// Scheduling state by job name.
    pub job_states: BTreeMap<String, JobState>,
    /// Unfinished runs by run id.
    pub runs: BTreeMap<String, Run>,
    /// History by job name, then sequence number (oldest first).
    pub history: BTreeMap<String, BTreeMap<u64, HistoryEntry>>,
}

impl Snapshot {
    /// Applies one write, as a store does.
    pub(crate) fn apply(&mut self, write: &Write) {
        match write {
            Write::Job(job) => {
                self.jobs.insert(job.name.clone(), (**job).clone());
            }
            Write::DeleteJob(name) => {
                self.jobs.remove(name);
                self.job_states.remove(name);
                self.history.remove(name);
            }
            Write::JobState(name, state) => {
                self.job_states.insert(name.clone(), state.clone());
            }
            Write::Run(run) => {
                self.runs.insert(run.id.clone(), run.clone());
            }
            Write::DeleteRun(id) => {
                self.runs.remove(id);
            }
            Write::History(seq, entry) => {
                self.history
                    .entry(entry.job.clone())
                    .or_default()
                    .insert(*seq, entry.clone());
            }
            Write::DeleteHistory(job, seq) => {
                if let Some(h) = self.history.get_mut(job) {
                    h.remove(seq);
                    if h.is_empty() {
                        self.history.remove(job);
                    }
                }
            }
            Write::FrameworkId(id) => self.framework_id = Some(id.clone()),
        }
    }
}

/// The scheduler's durable state.
pub trait Store: Send + 'static {
    /// Everything stored.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Apply `writes` atomically and durably: when this returns `Ok`, all of them survive a
    /// crash; when it fails, none of them were applied.
    fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError>;
}

#[derive(Debug, Default)]
struct MemoryInner {
    snapshot: Snapshot,
    commits: u64,
    fail_after: Option<u64>,
    /// When tripping, apply the refused commit first (a crash right after a durable write).
    apply_when_tripping: bool,
    tripped: bool,
}

/// An in-memory store for tests and simulation. Clones share the same state (the "disk").
///
/// [`MemoryStore::fail_after`] makes it refuse every write after a number of successful
/// commits, which stops the scheduler exactly as a crash at that point would.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panicking test thread must not hide the state from the rest of the test.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored state now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// Successful commits so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// Refuse every commit once `n` more have succeeded (`None`: never refuse). Clears the
    /// tripped flag. Models a crash just before a write.
    pub fn fail_after(&self, n: Option<u64>) {
        let mut inner = self.lock();
        inner.fail_after = n.map(|n| inner.commits + n);
        inner.apply_when_tripping = false;
        inner.tripped = false;
    }

    /// Like [`MemoryStore::fail_after`], but the first refused commit is applied (durable) and
    /// still reported as failed: models a crash just after a write, before anything that
    /// followed it (a launch, an acknowledgement) happened.
    pub fn crash_after_commit(&self, n: u64) {
        let mut inner = self.lock();
        inner.fail_after = Some(inner.commits + n);
        inner.apply_when_tripping = true;
        inner.tripped = false;
    }

    /// True once a commit was refused.
    pub fn is_tripped(&self) -> bool {
        self.lock().tripped
    }
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.snapshot())
    }

    fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.fail_after.is_some_and(|n| inner.commits >= n) {
            if inner.apply_when_tripping && !inner.tripped {
                for w in writes {
                    inner.snapshot.apply(w);
                }
            }
            inner.tripped = true;
            return Err(StoreError::Refused);
        }
        for w in writes {
            inner.snapshot.apply(w);
        }
        inner.commits += 1;
        Ok(())
    }
}

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const JOB_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("job_states");
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs");
/// Key `<job>/<seq, 20 digits>`: `/` never occurs in a job name, and the fixed width keeps a
/// job's entries in sequence order.
const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_FRAMEWORK_ID: &str = "framework_id";

fn history_key(job: &str, seq: u64) -> String {
    format!("{job}/{seq:020}")
}

/// The real store: one redb database file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbStore({})", self.path.display())
    }
}

impl RedbStore {
    /// Opens (or creates) `<work_dir>/chronos/state.redb`.
    pub fn open_in(work_dir: &Path) -> Result<RedbStore, StoreError> {
        let dir = work_dir.join("chronos");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Storage {
            path: dir.display().to_string(),
            what: "cannot create the directory",
            reason: e.to_string(),
        })?;
        RedbStore::open(&dir.join("state.redb"))
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Storage {
            path: path.display().to_string(),
            what: "cannot open",
            reason: e.to_string(),
        })?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    fn err(&self, what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError + '_ {
        move |e| StoreError::Storage {
            path: self.path.display().to_string(),
            what,
            reason: e.to_string(),
        }
    }

    fn init(&self) -> Result<(), StoreError> {
        let err = self.err("cannot create tables");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        for table in [JOBS, JOB_STATES, RUNS, HISTORY, META] {
            txn.open_table(table).map_err(|e| err(&e))?;
        }
        txn.commit().map_err(|e| err(&e))
    }
}

/// Decodes a stored JSON value (`what` names it in the error).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// Encodes a record as stored (JSON).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stored records always serialize")
}

impl Store for RedbStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let err = self.err("cannot read");
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let mut snapshot = Snapshot::default();
        let jobs = txn.open_table(JOBS).map_err(|e| err(&e))?;
        for row in jobs.iter().map_err(|e| err(&e))? {
            let (k, v) = row.map_err(|e| err(&e))?;
            let job: Job = decode(&format!("job {}", k.value()), v.value())?;
            snapshot.jobs.insert(k.value().to_string(), job);
        }
        let states = txn.open_table(JOB_STATES).map_err(|e| err(&e))?;
        for row in states.iter().map_err(|e| err(&e))? {
            let (k, v) = row.map_err(|e| err(&e))?;
            let state: JobState = decode(&format!("job state {}", k.value()), v.value())?;
            snapshot.job_states.insert(k.value().to_string(), state);
        }
        let runs = txn.open_table(RUNS).map_err(|e| err(&e))?;
        for row in runs.iter().map_err(|e| err(&e))? {
            let (k, v) = row.map_err(|e| err(&e))?;
            let run: Run = decode(&format!("run {}", k.value()), v.value())?;
            snapshot.runs.insert(k.value().to_string(), run);
        }
        let history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
        for row in history.iter().map_err(|e| err(&e))? {
            let (k, v) = row.map_err(|e| err(&e))?;
            let key = k.value();
            let seq = key
                .rsplit_once('/')
                .and_then(|(_, s)| s.parse::<u64>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("history key {key}"),
                    reason: "expected <job>/<seq>".to_string(),
                })?;
            let entry: HistoryEntry = decode(&format!("history {key}"), v.value())?;
            snapshot
                .history
                .entry(entry.job.clone())
                .or_default()
                .insert(seq, entry);
        }
        let meta = txn.open_table(META).map_err(|e| err(&e))?;
        if let Some(v) = meta.get(META_FRAMEWORK_ID).map_err(|e| err(&e))? {
            snapshot.framework_id = Some(String::from_utf8_lossy(v.value()).into_owned());
        }
        Ok(snapshot)
    }

    fn commit(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let err = self.err("cannot write");
        let txn = self.db.begin_write().map_err(|e| err(&e))?;
        {
            let mut jobs = txn.open_table(JOBS).map_err(|e| err(&e))?;
            let mut states = txn.open_table(JOB_STATES).map_err(|e| err(&e))?;
            let mut runs = txn.open_table(RUNS).map_err(|e| err(&e))?;
            let mut history = txn.open_table(HISTORY).map_err(|e| err(&e))?;
            let mut meta = txn.open_table(META).map_err(|e| err(&e))?;
            for w in writes {
                match w {
                    Write::Job(job) => {
                        jobs.insert(job.name.as_str(), encode(job).as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    Write::DeleteJob(name) => {
                        jobs.remove(name.as_str()).map_err(|e| err(&e))?;
                        states.remove(name.as_str()).map_err(|e| err(&e))?;
                        // '0' follows '/' in ASCII: the range is exactly this job's entries.
                        let (from, to) = (format!("{name}/"), format!("{name}0"));
                        history
                            .retain_in(from.as_str()..to.as_str(), |_, _| false)
                            .map_err(|e| err(&e))?;
                    }
                    Write::JobState(name, state) => {
                        states
                            .insert(name.as_str(), encode(state).as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    Write::Run(run) => {
                        runs.insert(run.id.as_str(), encode(run).as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    Write::DeleteRun(id) => {
                        runs.remove(id.as_str()).map_err(|e| err(&e))?;
                    }
                    Write::History(seq, entry) => {
                        let key = history_key(&entry.job, *seq);
                        history
                            .insert(key.as_str(), encode(entry).as_slice())
                            .map_err(|e| err(&e))?;
                    }
                    Write::DeleteHistory(job, seq) => {
                        let key = history_key(job, *seq);
                        history.remove(key.as_str()).map_err(|e| err(&e))?;
                    }
                    Write::FrameworkId(id) => {
                        meta.insert(META_FRAMEWORK_ID, id.as_bytes())
                            .map_err(|e| err(&e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| err(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sample_writes() -> Vec<Write> {
        let mut job = Job::new("backup", "true");
        job.schedule = Some("R/2026-01-01T00:00:00.000Z/PT10S".into());
        let instant = at("2026-01-01T00:00:10Z");
        let run = Run {
            id: Run::id_of("backup", instant, Trigger::Schedule),
            job: "backup".into(),
            instant,
            trigger: Trigger::Schedule,
            attempt: 1,
            state: RunState::Launched,
            slave_id: Some("S1".into()),
            not_before: None,
            launched_at: Some(instant),
            started_at: None,
            arguments: String::new(),
        };
        let entry = HistoryEntry {
            run_id: "backup@0".into(),
            job: "backup".into(),
            instant,
            trigger: Trigger::Schedule,
            attempts: 1,
            task_id: task_id("backup", instant, 0, Trigger::Schedule),
            slave_id: "S1".into(),
            started_at: Some(instant),
            finished_at: instant + chrono::TimeDelta::seconds(3),
            outcome: RunOutcomeKind::Success,
            task_state: "TASK_FINISHED".into(),
            message: None,
        };
        let state = JobState {
            last_scheduled: Some(instant),
            edge_counts: BTreeMap::from([("a".to_string(), 2)]),
            history_next: 2,
        };
        vec![
            Write::Job(Box::new(job)),
            Write::JobState("backup".into(), state),
            Write::Run(run),
            Write::History(0, entry.clone()),
            Write::History(1, entry),
            Write::DeleteHistory("backup".into(), 0),
            Write::FrameworkId("F-0001".into()),
        ]
    }

    #[test]
    fn task_ids_round_trip() {
        let instant = at("2026-01-01T00:00:10.250Z");
        let id = task_id("a.b-c_d", instant, 3, Trigger::Schedule);
        assert_eq!(id, "ct:1767225610250:3:a.b-c_d:");
        let parsed = parse_task_id(&id).unwrap();
        assert_eq!(
            (parsed.job.as_str(), parsed.millis, parsed.attempt),
            ("a.b-c_d", 1767225610250, 3)
        );
        assert_eq!(parsed.run_id(), "a.b-c_d@1767225610250");
        let now = parse_task_id(&task_id("j", instant, 0, Trigger::RunNow)).unwrap();
        assert_eq!(now.run_id(), Run::id_of("j", instant, Trigger::RunNow));
        assert_ne!(now.run_id(), parsed.run_id());
        assert_eq!(parse_task_id("ct:x:0:a:"), None);
        assert_eq!(parse_task_id("ct:1:0:a:bogus"), None);
        assert_eq!(parse_task_id("marathon.task"), None);
    }

    #[test]
    fn redb_and_memory_stores_agree_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let writes = sample_writes();
        let mut memory = MemoryStore::new();
        memory.commit(&writes).unwrap();
        {
            let mut redb = RedbStore::open_in(dir.path()).unwrap();
            redb.commit(&writes).unwrap();
            assert_eq!(redb.load().unwrap(), memory.load().unwrap());
        }
        let mut redb = RedbStore::open_in(dir.path()).unwrap();
        let loaded = redb.load().unwrap();
        assert_eq!(loaded, memory.load().unwrap());
        assert_eq!(loaded.framework_id.as_deref(), Some("F-0001"));
        assert_eq!(
            loaded.history["backup"].keys().copied().collect::<Vec<_>>(),
            [1]
        );

        let delete = [
            Write::DeleteJob("backup".into()),
            Write::DeleteRun(Run::id_of(
                "backup",
                at("2026-01-01T00:00:10Z"),
                Trigger::Schedule,
            )),
        ];
        redb.commit(&delete).unwrap();
        memory.commit(&delete).unwrap();
        let loaded = redb.load().unwrap();
        assert!(loaded.jobs.is_empty() && loaded.runs.is_empty() && loaded.history.is_empty());
        assert_eq!(loaded, memory.load().unwrap());
    }

    #[test]
    fn memory_store_refuses_after_the_armed_count() {
        let mut store = MemoryStore::new();
        store.fail_after(Some(1));
        store.commit(&[Write::FrameworkId("a".into())]).unwrap();
        assert!(matches!(
            store.commit(&[Write::FrameworkId("b".into())]),
            Err(StoreError::Refused)
        ));
        assert!(store.is_tripped());
        assert_eq!(store.snapshot().framework_id.as_deref(), Some("a"));
        store.fail_after(None);
        store.commit(&[Write::FrameworkId("c".into())]).unwrap();
        assert_eq!(store.snapshot().framework_id.as_deref(), Some("c"));
    }
}
