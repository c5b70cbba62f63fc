//! Linearizability checking of recorded histories, and the model of the coordination store.
//!
//! A history is linearizable when each operation can be given one instant between its
//! invocation and its response at which it took effect, such that the answers are those a
//! single copy of the store applying the operations one at a time in that order would give.
//! An operation whose response never came (a timeout, a crashed client) may have taken effect
//! at any instant after its invocation, or not at all.
//!
//! # The algorithm
//!
//! [`check_operations`] is the Wing & Gong search with Lowe's memoization (as in Porcupine
//! and Knossos' "wgl" checker): walk the history's invocation and response entries in time
//! order; at each invocation, try to linearize that operation now (the model must accept its
//! answer), and backtrack when a response is reached whose operation was not linearized yet.
//! A set of (operations linearized, model state) pairs already explored prunes the search. An
//! operation with an unknown response has its response at the end of time, so it can always
//! be placed last (where it changes nothing anyone saw).
//!
//! Equal timestamps count as concurrent: an operation that responds at `t` does not precede
//! one invoked at `t` (the simulator's clock gives many events one instant).
//!
//! The search is exponential in the number of concurrent operations in the worst case, so it
//! is bounded ([`LINEARIZABILITY_STEPS_MAX`], [`LINEARIZABILITY_CACHE_ENTRIES_MAX`]); beyond
//! them the answer is [`Outcome::Undecided`], never a false verdict.
//!
//! # The coordination store
//!
//! Linearizability is local (Herlihy & Wing): a history of operations on several objects is
//! linearizable if and only if each object's sub-history is. [`check_coord_history`] checks
//! each key of the store on its own, with [`KeyModel`]:
//! - put, delete and get name one key, and are checked exactly (values, compare-and-set
//!   answers, modification and creation revisions, the lease a key is on);
//! - a range read is checked as a read of each key it covers (present or absent);
//! - a lease revocation or expiry is checked on each key ever put on one of its leases (the
//!   key is deleted with the lease, and was not on a lease the answer says was not live);
//! - a transaction is checked on each key it writes (as an unconditional put or delete at its
//!   revision when it applied) and on its guard key (held at exactly the guard's epoch when it
//!   applied; not held at it, with the creation revision the refusal names, when refused);
//! - every operation's answer names the revision (log index) it was applied at; these are
//!   checked in order on each key, and across all keys against real time
//!   ([`check_revisions`]: an operation that responded before another was invoked has the
//!   lower revision).
//!
//! What this does **not** check (the restriction that per-key checking brings): that a range
//! read saw all its keys at one instant, and that a revocation or a transaction changed all its
//! keys at one instant (checked key by key only; the revisions they answer bound them); and the
//! lease objects themselves (that a put naming a lease not yet granted or already ended is
//! refused: a refused put is taken as "no effect", whatever the reason). Grants and client
//! registrations are only checked through their revisions.
//!
//! # Why not a crate
//!
//! Porcupine (Go) is the reference implementation. Of the Rust crates: stateright's
//! `LinearizabilityTester` comes with a whole model checker's dependencies and searches
//! without memoization; `todc-utils`' `WGLChecker` (two releases, 2023) has no operations
//! with unknown responses and no bound on its search; `lincheck` runs in-process data
//! structures under loom. None checks histories recorded from a simulated network with
//! timeouts, so the few hundred lines are here.
//!
//! ```
//! use plateau_master::coord::{CoordOp, CoordReply, Expect, KeyEntry};
//! use plateau_sim::linearizability::{check_coord_history, Operation, Returned, Verdict};
//!
//! let put = CoordOp::Put { key: "k".into(), value: b"1".to_vec(), expect: Expect::Any, lease: None };
//! let get = CoordOp::Get { key: "k".into() };
//! let entry = KeyEntry { value: b"1".to_vec(), mod_revision: 7, create_revision: 7, lease: None };
//! let history = vec![
//!     // The put and the read overlap; the read saw the put, at a later revision.
//!     Operation { client: 1, call: 0, input: put,
//!         result: Some(Returned { at: 10, output: Ok(CoordReply::Put { revision: 7, create_revision: 7 }) }) },
//!     Operation { client: 2, call: 5, input: get,
//!         result: Some(Returned { at: 8, output: Ok(CoordReply::Value { revision: 8, entry: Some(entry) }) }) },
//! ];
//! assert_eq!(check_coord_history(&Default::default(), &history)?, Verdict::Linearizable);
//! # Ok::<(), plateau_sim::error::SimError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use plateau_master::coord::{
    CoordError, CoordOp, CoordReply, CoordResponse, Expect, KeyEntry, LeaseId, TxnOp,
};
use plateau_runtime::rng::LookupSet;

use crate::error::SimError;
use crate::limits::{
    LINEARIZABILITY_CACHE_ENTRIES_MAX, LINEARIZABILITY_OPS_MAX, LINEARIZABILITY_PARTITION_OPS_MAX,
    LINEARIZABILITY_STEPS_MAX,
};

/// A sequential specification: what a single copy of the object answers.
pub trait Model {
    /// The object's state (hashed for memoization: keep it small).
    type State: Clone + Eq + Hash;
    /// An operation's input.
    type Input;
    /// An operation's answer.
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after applying `input` to `state`, if `output` is an answer the object can
    /// give there; `None` if it cannot. An `output` of `None` (the answer never came) must be
    /// accepted in every state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// A response and when it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returned<O> {
    /// When the response came (same clock and unit as [`Operation::call`]).
    pub at: u64,
    /// The answer.
    pub output: O,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who invoked it (reported, not interpreted).
    pub client: u64,
    /// When it was invoked (e.g. simulated nanoseconds).
    pub call: u64,
    /// What was asked.
    pub input: I,
    /// The response, or `None` if it never came (a timeout: it may or may not have applied).
    pub result: Option<Returned<O>>,
}

/// The verdict on one history or partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Some order of the operations explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable {
        /// The longest sequence of operations (indices) that could be linearized, for the
        /// report: the next operation after it is where the search got stuck.
        longest_prefix: Vec<usize>,
    },
    /// The search was stopped at a bound.
    Undecided {
        /// Which bound.
        reason: String,
    },
}

/// Checks a history against a model with the memoized Wing & Gong search. `Err` for a
/// malformed history (a response before its invocation) or one above
/// [`LINEARIZABILITY_PARTITION_OPS_MAX`] operations.
pub fn check_operations<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
) -> Result<Outcome, SimError> {
    if ops.len() > LINEARIZABILITY_PARTITION_OPS_MAX {
        return Err(SimError::History(format!(
            "{} operations in one partition (maximum {LINEARIZABILITY_PARTITION_OPS_MAX})",
            ops.len()
        )));
    }
    check_times(ops)?;
    let mut list = EntryList::new(ops);
    let mut state = model.init();
    let mut linearized = Bitset::new(ops.len());
    let mut cache: LookupSet<(Bitset, M::State)> = LookupSet::default();
    // (call entry, state before it) of each operation linearized, in order.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut entry = list.first();
    while !list.is_empty() {
        steps += 1;
        if steps > LINEARIZABILITY_STEPS_MAX {
            return Ok(Outcome::Undecided {
                reason: format!("more than {LINEARIZABILITY_STEPS_MAX} search steps"),
            });
        }
        let node = list.nodes[entry];
        if node.is_call {
            let op = &ops[node.op];
            let output = op.result.as_ref().map(|r| &r.output);
            if let Some(next) = model.step(&state, &op.input, output) {
                linearized.set(node.op);
                if cache.insert((linearized.clone(), next.clone())) {
                    if cache.len() > LINEARIZABILITY_CACHE_ENTRIES_MAX {
                        return Ok(Outcome::Undecided {
                            reason: format!(
                                "more than {LINEARIZABILITY_CACHE_ENTRIES_MAX} memoized states"
                            ),
                        });
                    }
                    stack.push((entry, std::mem::replace(&mut state, next)));
                    list.lift(entry);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(e, _)| list.nodes[*e].op).collect();
                    }
                    entry = list.first();
                    continue;
                }
                linearized.clear(node.op);
            }
            entry = node.next;
        } else {
            // The response of an operation not yet linearized: every choice made since its
            // invocation failed. Undo the last one and try the next candidate after it.
            let Some((call, before)) = stack.pop() else {
                return Ok(Outcome::NotLinearizable {
                    longest_prefix: longest,
                });
            };
            state = before;
            linearized.clear(list.nodes[call].op);
            list.unlift(call);
            entry = list.nodes[call].next;
        }
    }
    Ok(Outcome::Linearizable)
}

fn check_times<I, O>(ops: &[Operation<I, O>]) -> Result<(), SimError> {
    for (i, op) in ops.iter().enumerate() {
        if let Some(r) = &op.result {
            if r.at < op.call {
                return Err(SimError::History(format!(
                    "operation {i} responds at {} before its invocation at {}",
                    r.at, op.call
                )));
            }
        }
    }
    Ok(())
}

/// A fixed-size set of operation indices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    op: usize,
    is_call: bool,
    /// The other entry of the same operation.
    matching: usize,
    prev: usize,
    next: usize,
}

/// The invocation and response entries in time order, as a doubly linked list from which an
/// operation's two entries are lifted when it is linearized and put back (in reverse order)
/// when the search backtracks.
struct EntryList {
    /// `nodes[0]` is the head sentinel, the last one the tail sentinel.
    nodes: Vec<Node>,
}

impl EntryList {
    const HEAD: usize = 0;

    fn new<I, O>(ops: &[Operation<I, O>]) -> Self {
        // (time, invocation before response at equal times, op): equal times are concurrent.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, false, i));
            let at = op.result.as_ref().map_or(u64::MAX, |r| r.at);
            events.push((at, true, i));
        }
        events.sort_unstable();
        let tail = events.len() + 1;
        let sentinel = Node {
            op: usize::MAX,
            is_call: false,
            matching: usize::MAX,
            prev: Self::HEAD,
            next: tail,
        };
        let mut nodes = vec![sentinel; events.len() + 2];
        let mut call_of = vec![usize::MAX; ops.len()];
        for (k, &(_, is_response, op)) in events.iter().enumerate() {
            let index = k + 1;
            nodes[index] = Node {
                op,
                is_call: !is_response,
                matching: usize::MAX,
                prev: index - 1,
                next: index + 1,
            };
            if is_response {
                let call = call_of[op];
                debug_assert_ne!(call, usize::MAX, "an invocation sorts before its response");
                nodes[index].matching = call;
                nodes[call].matching = index;
            } else {
                call_of[op] = index;
            }
        }
        nodes[Self::HEAD].next = if events.is_empty() { tail } else { 1 };
        nodes[tail].prev = events.len();
        EntryList { nodes }
    }

    fn first(&self) -> usize {
        self.nodes[Self::HEAD].next
    }

    fn is_empty(&self) -> bool {
        self.nodes[Self::HEAD].next == self.nodes.len() - 1
    }

    fn unlink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = next;
        self.nodes[next].prev = prev;
    }

    fn relink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = i;
        self.nodes[next].prev = i;
    }

    /// Removes an operation's invocation `call` and its response.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.nodes[call].matching);
    }

    /// Puts back what [`EntryList::lift`] removed (the last lifted first).
    fn unlift(&mut self, call: usize) {
        self.relink(self.nodes[call].matching);
        self.relink(call);
    }
}

// ---- the coordination store -------------------------------------------------------------------

/// An operation of the coordination store, as recorded by a client.
pub type CoordOperation = Operation<CoordOp, CoordResponse>;

/// The verdict on a coordination store history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable and revisions agree with real time.
    Linearizable,
    /// A violation.
    Violation {
        /// The key whose history is not linearizable, or `None` when the revisions
        /// contradict real time (or repeat).
        key: Option<String>,
        /// The operations involved (indices into the history): the key's whole history, or
        /// the two operations whose revisions contradict real time.
        ops: Vec<usize>,
        /// The longest prefix of the key's history that could be linearized (indices into the
        /// history).
        longest_prefix: Vec<usize>,
        /// What is wrong.
        detail: String,
    },
    /// A key's search hit a bound (no violation was found in the others).
    Undecided {
        /// The key.
        key: String,
        /// Which bound.
        reason: String,
    },
}

/// Checks a history of the coordination store, starting from the keys of `initial` (empty
/// for a new store): revisions against real time, then each key on its own. See the module
/// docs for what is and is not checked.
pub fn check_coord_history(
    initial: &BTreeMap<String, KeyEntry>,
    ops: &[CoordOperation],
) -> Result<Verdict, SimError> {
    if ops.len() > LINEARIZABILITY_OPS_MAX {
        return Err(SimError::History(format!(
            "{} operations (maximum {LINEARIZABILITY_OPS_MAX})",
            ops.len()
        )));
    }
    check_times(ops)?;
    if let Err((a, b, detail)) = check_revisions(ops) {
        return Ok(Verdict::Violation {
            key: None,
            ops: vec![a, b],
            longest_prefix: Vec::new(),
            detail,
        });
    }
    let mut undecided = None;
    for (key, partition) in partitions(initial, ops) {
        // Values are interned per key so that model states are small and cheap to hash.
        let mut values = Values::default();
        let model = KeyModel {
            initial: initial
                .get(&key)
                .map(|e| KeyState::from_entry(&mut values, e)),
        };
        let projected: Vec<Operation<KeyInput, KeyOutput>> = partition
            .iter()
            .map(|&i| project(&key, &ops[i], &mut values))
            .collect();
        match check_operations(&model, &projected)? {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable { longest_prefix } => {
                return Ok(Verdict::Violation {
                    detail: format!(
                        "the {} operations on key '{key}' have no linearization",
                        partition.len()
                    ),
                    longest_prefix: longest_prefix.iter().map(|&i| partition[i]).collect(),
                    key: Some(key),
                    ops: partition,
                });
            }
            Outcome::Undecided { reason } => {
                undecided.get_or_insert(Verdict::Undecided { key, reason });
            }
        }
    }
    Ok(undecided.unwrap_or(Verdict::Linearizable))
}

/// The revision an answered operation was applied at.
fn revision_of(op: &CoordOperation) -> Option<u64> {
    match &op.result {
        Some(Returned {
            output: Ok(reply), ..
        }) => Some(reply.revision()),
        _ => None,
    }
}

/// Checks that revisions are unique and agree with real time: if `a` responded before `b`
/// was invoked, `a`'s revision is below `b`'s. `Err` names the two operations.
pub fn check_revisions(ops: &[CoordOperation]) -> Result<(), (usize, usize, String)> {
    let mut by_revision: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| revision_of(op).map(|r| (r, i)))
        .collect();
    by_revision.sort_unstable();
    for pair in by_revision.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err((
                pair[0].1,
                pair[1].1,
                format!(
                    "operations {} and {} both answer revision {}",
                    pair[0].1, pair[1].1, pair[0].0
                ),
            ));
        }
    }
    // From the highest revision down, the earliest response among higher revisions.
    let mut earliest: Option<(u64, usize)> = None;
    for &(revision, i) in by_revision.iter().rev() {
        if let Some((at, j)) = earliest {
            if at < ops[i].call {
                return Err((
                    j,
                    i,
                    format!(
                        "operation {j} (revision {}) responded at {at}, before operation {i} \
                         (revision {revision}) was invoked at {}",
                        revision_of(&ops[j]).unwrap_or_default(),
                        ops[i].call
                    ),
                ));
            }
        }
        let at = ops[i].result.as_ref().map_or(u64::MAX, |r| r.at);
        if earliest.is_none_or(|(e, _)| at < e) {
            earliest = Some((at, i));
        }
    }
    Ok(())
}

/// The indices of the operations relevant to each key, in history order.
fn partitions(
    initial: &BTreeMap<String, KeyEntry>,
    ops: &[CoordOperation],
) -> BTreeMap<String, Vec<usize>> {
    let mut keys: BTreeSet<&str> = initial.keys().map(String::as_str).collect();
    // The leases each key was ever put on (a lease's end concerns only those keys).
    let mut leases_of: BTreeMap<&str, BTreeSet<LeaseId>> = BTreeMap::new();
    for (key, entry) in initial {
        if let Some(lease) = entry.lease {
            leases_of.entry(key).or_default().insert(lease);
        }
    }
    for op in ops {
        keys.extend(op.input.keys());
        if let CoordOp::Put {
            key,
            lease: Some(lease),
            ..
        } = &op.input
        {
            leases_of.entry(key).or_default().insert(*lease);
        }
        if let Some(Returned {
            output: Ok(CoordReply::Range { entries, .. }),
            ..
        }) = &op.result
        {
            keys.extend(entries.iter().map(|(k, _)| k.as_str()));
        }
    }
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for key in keys {
        let no_leases = BTreeSet::new();
        let leases = leases_of.get(key).unwrap_or(&no_leases);
        let relevant: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| is_relevant(key, leases, op))
            .map(|(i, _)| i)
            .collect();
        out.insert(key.to_string(), relevant);
    }
    out
}

/// Whether `op` can change `key` or says something about it.
fn is_relevant(key: &str, leases: &BTreeSet<LeaseId>, op: &CoordOperation) -> bool {
    let output = op.result.as_ref().map(|r| &r.output);
    // An answer that says the operation was not applied, for a reason that says nothing of
    // the key: no effect, no information. (A stale guard speaks of the guard's key only.)
    if let Some(Err(e)) = output {
        let informative = match e {
            CoordError::ExpectationFailed { .. } | CoordError::UnknownLease { .. } => true,
            CoordError::StaleGuard { key: guarded, .. } => guarded == key,
            _ => false,
        };
        if !informative {
            return false;
        }
    }
    match &op.input {
        CoordOp::Put {
            key: k,
            lease: put_lease,
            ..
        } => {
            k == key
                // A refused put on a lease says nothing about the key.
                && !matches!(output, Some(Err(CoordError::UnknownLease { .. })) if put_lease.is_some())
        }
        CoordOp::Delete { key: k, .. } => k == key,
        CoordOp::Get { key: k } => k == key && output.is_some(),
        CoordOp::Range { .. } => range_covers(key, op).is_some(),
        CoordOp::RevokeLease { lease } => leases.contains(lease),
        CoordOp::ExpireLeases { leases: ended } => ended.iter().any(|l| leases.contains(l)),
        CoordOp::Txn { guard, ops } => {
            guard.as_ref().is_some_and(|g| g.key == key) || ops.iter().any(|o| o.key() == key)
        }
        CoordOp::GrantLease { .. } | CoordOp::RegisterClient { .. } => false,
    }
}

/// What an answered range read says about `key`: `Some(Some(entry))` present,
/// `Some(None)` absent, `None` nothing (not covered, or not answered).
fn range_covers<'a>(key: &str, op: &'a CoordOperation) -> Option<Option<&'a KeyEntry>> {
    let CoordOp::Range { prefix, after, .. } = &op.input else {
        return None;
    };
    let Some(Returned {
        output: Ok(CoordReply::Range { entries, more, .. }),
        ..
    }) = &op.result
    else {
        return None;
    };
    if !key.starts_with(prefix.as_str()) || after.as_deref().is_some_and(|a| key <= a) {
        return None;
    }
    if let Some((_, entry)) = entries.iter().find(|(k, _)| k == key) {
        return Some(Some(entry));
    }
    // Absent from the page: absent, unless the page stopped before the key.
    let beyond_page = *more && entries.last().is_none_or(|(last, _)| key > last.as_str());
    if beyond_page {
        None
    } else {
        Some(None)
    }
}

/// Values interned per key: the model's states hold small numbers.
#[derive(Default)]
struct Values(BTreeMap<Vec<u8>, u32>);

impl Values {
    fn id(&mut self, value: &[u8]) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(value.to_vec()).or_insert(next)
    }
}

/// A key's state in [`KeyModel`]. Revisions are `None` when set by an operation whose answer
/// never came (then the first answer that shows them fixes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyState {
    value: u32,
    mod_revision: Option<u64>,
    create_revision: Option<u64>,
    lease: Option<LeaseId>,
}

impl KeyState {
    fn from_entry(values: &mut Values, entry: &KeyEntry) -> Self {
        KeyState {
            value: values.id(&entry.value),
            mod_revision: Some(entry.mod_revision),
            create_revision: Some(entry.create_revision),
            lease: entry.lease,
        }
    }
}

/// An operation on one key, projected from a store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyInput {
    /// A put.
    Put {
        /// Interned value.
        value: u32,
        /// Its condition.
        expect: Expect,
        /// Its lease.
        lease: Option<LeaseId>,
    },
    /// A delete.
    Delete {
        /// Its condition.
        expect: Expect,
    },
    /// A get, or a range read covering the key.
    Read,
    /// A lease revocation or expiry.
    EndLeases {
        /// The leases named.
        leases: Vec<LeaseId>,
    },
    /// A transaction naming the key.
    Txn {
        /// The epoch the key must be held at, when it is the transaction's guard.
        guard_epoch: Option<u64>,
        /// What the transaction writes at the key: `Some(Some(value))` a put (interned value),
        /// `Some(None)` a delete, `None` nothing (the key is only the guard).
        write: Option<Option<u32>>,
    },
}

/// An answer, projected on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutput {
    /// The put was applied.
    Put {
        /// At this revision.
        revision: u64,
        /// The key's creation revision.
        create_revision: u64,
    },
    /// The delete was applied.
    Deleted {
        /// At this revision.
        revision: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// A put or delete whose expectation failed, seeing this modification revision.
    ExpectationFailed {
        /// The key's modification revision (`None`: absent).
        current: Option<u64>,
    },
    /// A read.
    Read {
        /// At this revision.
        revision: u64,
        /// What it saw (value interned).
        entry: Option<KeyState>,
    },
    /// Leases ended.
    LeasesEnded {
        /// At this revision (`None` for a refused revocation).
        revision: Option<u64>,
        /// The leases that were live and ended (none for a revocation refused as unknown).
        ended: Vec<LeaseId>,
    },
    /// A transaction was applied.
    Txn {
        /// At this revision.
        revision: u64,
    },
    /// A transaction was refused: its guard (this key) was not held at its epoch.
    StaleGuard {
        /// The key's creation revision then (`None`: absent).
        current: Option<u64>,
    },
    /// The answer says nothing about the key (a put refused for its lease).
    NoEffect,
}

fn project(key: &str, op: &CoordOperation, values: &mut Values) -> Operation<KeyInput, KeyOutput> {
    let input = match &op.input {
        CoordOp::Put {
            value,
            expect,
            lease,
            ..
        } => KeyInput::Put {
            value: values.id(value),
            expect: *expect,
            lease: *lease,
        },
        CoordOp::Delete { expect, .. } => KeyInput::Delete { expect: *expect },
        CoordOp::Get { .. } | CoordOp::Range { .. } => KeyInput::Read,
        CoordOp::RevokeLease { lease } => KeyInput::EndLeases {
            leases: vec![*lease],
        },
        CoordOp::ExpireLeases { leases } => KeyInput::EndLeases {
            leases: leases.clone(),
        },
        CoordOp::Txn { guard, ops } => KeyInput::Txn {
            guard_epoch: guard.as_ref().filter(|g| g.key == key).map(|g| g.epoch),
            write: ops.iter().find(|o| o.key() == key).map(|o| match o {
                TxnOp::Put { value, .. } => Some(values.id(value)),
                TxnOp::Delete { .. } => None,
            }),
        },
        CoordOp::GrantLease { .. } | CoordOp::RegisterClient { .. } => {
            unreachable!("not in any key's partition")
        }
    };
    let output = op.result.as_ref().map(|r| {
        let output = match &r.output {
            Ok(CoordReply::Put {
                revision,
                create_revision,
            }) => KeyOutput::Put {
                revision: *revision,
                create_revision: *create_revision,
            },
            Ok(CoordReply::Deleted { revision, existed }) => KeyOutput::Deleted {
                revision: *revision,
                existed: *existed,
            },
            Ok(CoordReply::Value { revision, entry }) => KeyOutput::Read {
                revision: *revision,
                entry: entry.as_ref().map(|e| KeyState::from_entry(values, e)),
            },
            Ok(CoordReply::Range { revision, .. }) => KeyOutput::Read {
                revision: *revision,
                entry: range_covers(key, op)
                    .flatten()
                    .map(|e| KeyState::from_entry(values, e)),
            },
            Ok(CoordReply::LeaseRevoked { revision, .. }) => KeyOutput::LeasesEnded {
                revision: Some(*revision),
                ended: match &op.input {
                    CoordOp::RevokeLease { lease } => vec![*lease],
                    _ => Vec::new(),
                },
            },
            Ok(CoordReply::LeasesExpired { revision, leases }) => KeyOutput::LeasesEnded {
                revision: Some(*revision),
                ended: leases.clone(),
            },
            Ok(CoordReply::Txn { revision }) => KeyOutput::Txn {
                revision: *revision,
            },
            Err(CoordError::StaleGuard {
                key: guarded,
                current,
                ..
            }) if guarded == key => KeyOutput::StaleGuard { current: *current },
            Err(CoordError::ExpectationFailed { current }) => {
                KeyOutput::ExpectationFailed { current: *current }
            }
            Err(CoordError::UnknownLease { .. })
                if matches!(op.input, CoordOp::RevokeLease { .. }) =>
            {
                KeyOutput::LeasesEnded {
                    revision: None,
                    ended: Vec::new(),
                }
            }
            _ => KeyOutput::NoEffect,
        };
        Returned { at: r.at, output }
    });
    Operation {
        client: op.client,
        call: op.call,
        input,
        result: output,
    }
}

/// The state of one key in the search: its entry, and the highest revision of an operation
/// on it linearized so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyModelState {
    entry: Option<KeyState>,
    floor: u64,
}

/// The sequential specification of one key of the coordination store.
pub struct KeyModel {
    initial: Option<KeyState>,
}

/// An answered operation was applied after every one linearized before it on this key:
/// its revision must be above the floor, and becomes it.
fn advance(next: &mut KeyModelState, revision: u64) -> bool {
    if revision <= next.floor {
        return false;
    }
    next.floor = revision;
    true
}

/// Fixes an unknown revision to `seen`, or checks a known one equals it.
fn pin(slot: &mut Option<u64>, seen: u64) -> bool {
    match *slot {
        Some(known) => known == seen,
        None => {
            *slot = Some(seen);
            true
        }
    }
}

/// Whether `expect` holds for `entry`; an unknown modification revision is fixed to the one
/// expected (the put that wrote it may have got exactly that revision; the other case, the
/// expectation failing, is the same as the operation taking effect last).
fn expect_holds(entry: &mut Option<KeyState>, expect: Expect) -> bool {
    match (expect, entry.as_mut()) {
        (Expect::Any, _) => true,
        (Expect::Absent, e) => e.is_none(),
        (Expect::Version(_), None) => false,
        (Expect::Version(v), Some(e)) => match e.mod_revision {
            Some(m) => m == v,
            // Unknown: the put that wrote it may have got exactly this revision.
            None => {
                e.mod_revision = Some(v);
                true
            }
        },
    }
}

/// Whether a transaction's guard on this key (`Some(epoch)`) holds: the key exists, created at
/// exactly `epoch` (an unknown creation revision is fixed to it). No guard here: true.
fn guard_holds(entry: &mut Option<KeyState>, guard_epoch: Option<u64>) -> bool {
    match (guard_epoch, entry.as_mut()) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(epoch), Some(e)) => pin(&mut e.create_revision, epoch),
    }
}

/// A transaction's write of this key at `revision` (`None`: unknown): a put keeps the
/// creation revision of a key that exists and detaches it from its lease.
fn txn_write(entry: &mut Option<KeyState>, write: Option<Option<u32>>, revision: Option<u64>) {
    match write {
        None => {}
        Some(None) => *entry = None,
        Some(Some(value)) => {
            let create_revision = match entry {
                Some(e) => e.create_revision,
                None => revision,
            };
            *entry = Some(KeyState {
                value,
                mod_revision: revision,
                create_revision,
                lease: None,
            });
        }
    }
}

/// Checks a failed expectation against the answer's `current`, fixing unknown revisions.
fn expect_failed(entry: &mut Option<KeyState>, expect: Expect, current: Option<u64>) -> bool {
    match (entry.as_mut(), current) {
        (None, None) => !expect.holds(None),
        (Some(e), Some(m)) => pin(&mut e.mod_revision, m) && !expect.holds(Some(m)),
        _ => false,
    }
}

impl Model for KeyModel {
    type State = KeyModelState;
    type Input = KeyInput;
    type Output = KeyOutput;

    fn init(&self) -> KeyModelState {
        KeyModelState {
            entry: self.initial,
            floor: self.initial.and_then(|e| e.mod_revision).unwrap_or(0),
        }
    }

    fn step(
        &self,
        state: &KeyModelState,
        input: &KeyInput,
        output: Option<&KeyOutput>,
    ) -> Option<KeyModelState> {
        let mut next = *state;
        let ok = match (input, output) {
            (_, Some(KeyOutput::NoEffect)) => true,
            (
                KeyInput::Put {
                    value,
                    expect,
                    lease,
                },
                None,
            ) => {
                if expect_holds(&mut next.entry, *expect) {
                    next.entry = Some(KeyState {
                        value: *value,
                        mod_revision: None,
                        create_revision: match next.entry {
                            Some(e) => e.create_revision,
                            None => None,
                        },
                        lease: *lease,
                    });
                }
                true
            }
            (
                KeyInput::Put {
                    value,
                    expect,
                    lease,
                },
                Some(KeyOutput::Put {
                    revision,
                    create_revision,
                }),
            ) => {
                let created = match next.entry.as_mut() {
                    Some(e) => pin(&mut e.create_revision, *create_revision),
                    None => create_revision == revision,
                };
                let holds = expect_holds(&mut next.entry, *expect);
                next.entry = Some(KeyState {
                    value: *value,
                    mod_revision: Some(*revision),
                    create_revision: Some(*create_revision),
                    lease: *lease,
                });
                created && holds && advance(&mut next, *revision)
            }
            (
                KeyInput::Put { expect, .. } | KeyInput::Delete { expect },
                Some(KeyOutput::ExpectationFailed { current }),
            ) => expect_failed(&mut next.entry, *expect, *current),
            (KeyInput::Delete { expect }, None) => {
                if expect_holds(&mut next.entry, *expect) {
                    next.entry = None;
                }
                true
            }
            (KeyInput::Delete { expect }, Some(KeyOutput::Deleted { revision, existed })) => {
                let holds = expect_holds(&mut next.entry, *expect);
                let matches = next.entry.is_some() == *existed;
                next.entry = None;
                holds && matches && advance(&mut next, *revision)
            }
            (KeyInput::Read, None) => true,
            (KeyInput::Read, Some(KeyOutput::Read { revision, entry })) => {
                let same = match (next.entry.as_mut(), entry) {
                    (None, None) => true,
                    (Some(e), Some(seen)) => {
                        e.value == seen.value
                            && e.lease == seen.lease
                            && pin(&mut e.mod_revision, seen.mod_revision.unwrap_or_default())
                            && pin(
                                &mut e.create_revision,
                                seen.create_revision.unwrap_or_default(),
                            )
                    }
                    _ => false,
                };
                same && advance(&mut next, *revision)
            }
            (KeyInput::EndLeases { leases }, None) => {
                if next
                    .entry
                    .is_some_and(|e| e.lease.is_some_and(|l| leases.contains(&l)))
                {
                    next.entry = None;
                }
                true
            }
            (KeyInput::EndLeases { leases }, Some(KeyOutput::LeasesEnded { revision, ended })) => {
                let on = next
                    .entry
                    .and_then(|e| e.lease)
                    .filter(|l| leases.contains(l));
                // A key on a named lease means the lease was live: it must have ended.
                let consistent = on.is_none_or(|l| ended.contains(&l));
                if on.is_some() {
                    next.entry = None;
                }
                consistent && revision.is_none_or(|r| advance(&mut next, r))
            }
            (KeyInput::Txn { guard_epoch, write }, None) => {
                // Unknown: it may have applied now if its guard may hold (placing it last
                // covers "never applied").
                if guard_holds(&mut next.entry, *guard_epoch) {
                    txn_write(&mut next.entry, *write, None);
                }
                true
            }
            (KeyInput::Txn { guard_epoch, write }, Some(KeyOutput::Txn { revision })) => {
                guard_holds(&mut next.entry, *guard_epoch) && {
                    txn_write(&mut next.entry, *write, Some(*revision));
                    advance(&mut next, *revision)
                }
            }
            (
                KeyInput::Txn {
                    guard_epoch: Some(epoch),
                    ..
                },
                Some(KeyOutput::StaleGuard { current }),
            ) => match (next.entry.as_mut(), current) {
                (None, None) => true,
                (Some(e), Some(c)) => c != epoch && pin(&mut e.create_revision, *c),
                _ => false,
            },
            // An answer of another kind than the operation's.
            _ => false,
        };
        ok.then_some(next)
    }
}

/// Records a history as a simulation runs: invocations, then responses as they come; the
/// operations never answered stay unknown.
#[derive(Debug, Default)]
pub struct HistoryRecorder {
    ops: Vec<CoordOperation>,
    overflowed: bool,
}

impl HistoryRecorder {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// `client` invoked `op` at `now`; the operation's index in the history, or `None` when
    /// the history is full ([`LINEARIZABILITY_OPS_MAX`]; it can then no longer be checked).
    pub fn invoke(&mut self, client: u64, now: u64, op: CoordOp) -> Option<usize> {
        if self.ops.len() >= LINEARIZABILITY_OPS_MAX {
            self.overflowed = true;
            return None;
        }
        self.ops.push(Operation {
            client,
            call: now,
            input: op,
            result: None,
        });
        Some(self.ops.len() - 1)
    }

    /// Operation `index` was answered at `now` (a later answer to the same operation, e.g. a
    /// duplicate, is ignored).
    pub fn respond(&mut self, index: usize, now: u64, response: CoordResponse) {
        if let Some(op) = self.ops.get_mut(index) {
            if op.result.is_none() {
                op.result = Some(Returned {
                    at: now,
                    output: response,
                });
            }
        }
    }

    /// The history so far.
    pub fn operations(&self) -> &[CoordOperation] {
        &self.ops
    }

    /// Checks the history (from an empty store). `Err` if it overflowed.
    pub fn check(&self) -> Result<Verdict, SimError> {
        if self.overflowed {
            return Err(SimError::History(format!(
                "more than {LINEARIZABILITY_OPS_MAX} operations were recorded"
            )));
        }
        check_coord_history(&BTreeMap::new(), &self.ops)
    }
}

#[cfg(test)]
mod tests;
