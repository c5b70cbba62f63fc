//! Replicated groups in the simulator: elections, failover, partitions, compaction,
//! membership changes, determinism — and the redb disk across a reopen.

use std::collections::BTreeMap;
use std::time::Duration;

use plateau_replica::storage::{DiskOp, LogDisk, MemoryDisk, RedbDisk};
use plateau_replica::{
    HostsReplica, ProposeError, Replica, ReplicaConfig, ReplicatedState, Role, Ticket,
};
use plateau_runtime::sim::{Sim, SimConfig};
use plateau_runtime::{Context, Handlers, Message, NodeAddr, Process, Upid};
use serde::{Deserialize, Serialize};

/// The replicated state of the tests: a log of the values applied, in order.
#[derive(Default, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    values: Vec<u64>,
}

impl ReplicatedState for Journal {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let v = u64::from_le_bytes(command.try_into().expect("8-byte commands"));
        self.values.push(v);
        (self.values.len() as u64).to_le_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        *self = postcard::from_bytes(s).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Ask a member to propose a value (sent by the test through the simulator).
#[derive(Serialize, Deserialize)]
struct Propose(u64);
impl Message for Propose {
    const NAME: &'static str = "test.Propose";
}

/// Ask a member (the leader) to replace the voters, adding one.
#[derive(Serialize, Deserialize)]
struct ChangeMembers {
    add: Option<Upid>,
    voters: Vec<Upid>,
}
impl Message for ChangeMembers {
    const NAME: &'static str = "test.ChangeMembers";
}

struct Member {
    replica: Replica<Journal>,
    bootstrap: Vec<Upid>,
    /// Outcomes of this member's proposals.
    outcomes: BTreeMap<Ticket, Result<u64, ProposeError>>,
    proposed: BTreeMap<Ticket, u64>,
}

impl Member {
    fn on_propose(&mut self, ctx: &mut Context<'_>, _: &Upid, m: Propose) {
        let ticket = self.replica.propose(ctx, m.0.to_le_bytes().to_vec());
        self.proposed.insert(ticket, m.0);
        self.replica_changed(ctx);
    }
    fn on_change(&mut self, ctx: &mut Context<'_>, _: &Upid, m: ChangeMembers) {
        let ticket = self.replica.change_membership(ctx, m.add, &m.voters);
        self.proposed.insert(ticket, u64::MAX);
        self.replica_changed(ctx);
    }
}

impl HostsReplica for Member {
    type State = Journal;
    fn replica(&mut self) -> Option<&mut Replica<Journal>> {
        Some(&mut self.replica)
    }
    fn replica_changed(&mut self, _ctx: &mut Context<'_>) {
        for (ticket, outcome) in self.replica.drain_completions() {
            self.outcomes.insert(ticket, outcome.map(|c| c.index));
        }
    }
}

impl Process for Member {
    fn install(h: &mut Handlers<Self>) {
        plateau_replica::install(h);
        h.on(Self::on_propose).on(Self::on_change);
    }
    fn initialize(&mut self, ctx: &mut Context<'_>) {
        if !self.bootstrap.is_empty() {
            self.replica.bootstrap(&self.bootstrap);
        }
        self.replica.start(ctx);
    }
}

struct Group {
    sim: Sim,
    nodes: Vec<NodeAddr>,
    upids: Vec<Upid>,
    disks: Vec<MemoryDisk>,
    config: fn(Upid) -> ReplicaConfig,
}

fn default_config(upid: Upid) -> ReplicaConfig {
    ReplicaConfig::new(upid)
}

impl Group {
    fn new(seed: u64, n: usize) -> Self {
        Self::with_config(seed, n, default_config)
    }

    fn with_config(seed: u64, n: usize, config: fn(Upid) -> ReplicaConfig) -> Self {
        let mut group = Group {
            sim: Sim::new(SimConfig::new(seed)),
            nodes: Vec::new(),
            upids: Vec::new(),
            disks: Vec::new(),
            config,
        };
        for i in 0..n {
            group.add_node(i);
        }
        let members = group.upids.clone();
        for i in 0..n {
            group.spawn(i, members.clone());
        }
        group
    }

    fn add_node(&mut self, i: usize) {
        let node = NodeAddr::new(format!("10.0.0.{}", i + 1), 5050);
        self.sim.add_node(node.clone());
        self.upids.push(Upid::new("master", &node));
        self.nodes.push(node);
        self.disks.push(MemoryDisk::new());
    }

    fn spawn(&mut self, i: usize, bootstrap: Vec<Upid>) {
        let replica = Replica::open(
            (self.config)(self.upids[i].clone()),
            Box::new(self.disks[i].clone()),
            Journal::default(),
            0,
        )
        .unwrap();
        self.sim.spawn(
            &self.nodes[i],
            "master",
            Member {
                replica,
                bootstrap,
                outcomes: BTreeMap::new(),
                proposed: BTreeMap::new(),
            },
        );
    }

    fn look<R>(&mut self, i: usize, f: impl FnOnce(&Member) -> R) -> Option<R> {
        let upid = self.upids[i].clone();
        self.sim.inspect(&upid, f)
    }

    /// Members leading with a lease now.
    fn acting(&mut self) -> Vec<usize> {
        let now = self.sim.now().since_origin();
        (0..self.nodes.len())
            .filter(|&i| {
                self.look(i, |m| m.replica.is_leader_with_lease(now))
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Runs for `d`, checking after every event that at most one member acts as leader.
    fn run_checked(&mut self, d: Duration) {
        let until = self.sim.now() + d;
        while self.sim.next_event_at().is_some_and(|t| t <= until) {
            self.sim.step();
            let acting = self.acting();
            assert!(
                acting.len() <= 1,
                "two leaders act at once: {acting:?} at {:?}",
                self.sim.now()
            );
        }
        self.sim.run_until(until);
    }

    /// Runs until one member acts as leader; returns it.
    fn await_leader(&mut self, within: Duration) -> usize {
        self.await_leader_other_than(usize::MAX, within)
    }

    /// Runs until a member other than `not` acts as leader; returns it.
    fn await_leader_other_than(&mut self, not: usize, within: Duration) -> usize {
        let deadline = self.sim.now() + within;
        loop {
            if let Some(&i) = self.acting().iter().find(|&&i| i != not) {
                return i;
            }
            assert!(self.sim.now() < deadline, "no leader within {within:?}");
            self.run_checked(Duration::from_millis(10));
        }
    }

    fn values(&mut self, i: usize) -> Option<Vec<u64>> {
        self.look(i, |m| m.replica.with_state(|j| j.values.clone()))
    }

    fn propose(&mut self, i: usize, v: u64) {
        let to = self.upids[i].clone();
        self.sim.post(&to, &to, Propose(v));
    }

    fn crash(&mut self, i: usize) {
        let node = self.nodes[i].clone();
        self.sim.crash(&node);
    }

    fn restart(&mut self, i: usize) {
        let node = self.nodes[i].clone();
        self.sim.restart(&node);
        self.spawn(i, Vec::new());
    }
}

#[test]
fn three_members_elect_one_leader_and_replicate_in_order() {
    let mut g = Group::new(1, 3);
    let leader = g.await_leader(Duration::from_secs(10));
    for v in 1..=20 {
        g.propose(leader, v);
    }
    g.run_checked(Duration::from_secs(2));
    let expected: Vec<u64> = (1..=20).collect();
    for i in 0..3 {
        assert_eq!(g.values(i).unwrap(), expected, "member {i}");
    }
    let outcomes = g.look(leader, |m| m.outcomes.clone()).unwrap();
    assert_eq!(outcomes.len(), 20);
    assert!(outcomes.values().all(|o| o.is_ok()));
    // A follower refuses proposals and names the leader.
    let follower = (leader + 1) % 3;
    g.propose(follower, 99);
    g.run_checked(Duration::from_millis(100));
    let outcomes = g.look(follower, |m| m.outcomes.clone()).unwrap();
    let leader_upid = g.upids[leader].clone();
    assert_eq!(
        outcomes.values().next(),
        Some(&Err(ProposeError::NotLeader {
            leader: Some(leader_upid)
        }))
    );
}

#[test]
fn a_crashed_leader_is_replaced_and_nothing_committed_is_lost() {
    let mut g = Group::new(2, 3);
    let first = g.await_leader(Duration::from_secs(10));
    for v in 1..=10 {
        g.propose(first, v);
    }
    g.run_checked(Duration::from_secs(1));
    let term = g.look(first, |m| m.replica.status().term).unwrap();
    g.crash(first);
    let crashed_at = g.sim.now();
    let second = g.await_leader(Duration::from_secs(10));
    assert_ne!(second, first);
    let took = g.sim.now() - crashed_at;
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    assert!(g.look(second, |m| m.replica.status().term).unwrap() > term);
    for v in 11..=15 {
        g.propose(second, v);
    }
    g.run_checked(Duration::from_secs(1));
    // The old leader comes back from its disk and catches up.
    g.restart(first);
    g.run_checked(Duration::from_secs(3));
    let expected: Vec<u64> = (1..=15).collect();
    for i in 0..3 {
        assert_eq!(g.values(i).unwrap(), expected, "member {i}");
    }
    assert_eq!(
        g.look(first, |m| m.replica.status().role).unwrap(),
        Role::Follower
    );
}

#[test]
fn an_isolated_leader_stops_acting_before_another_is_elected() {
    let mut g = Group::new(3, 3);
    let first = g.await_leader(Duration::from_secs(10));
    g.propose(first, 1);
    g.run_checked(Duration::from_secs(1));
    let node = g.nodes[first].clone();
    g.sim.isolate(&node);
    let cut_at = g.sim.now();
    // A proposal to the isolated leader cannot commit.
    g.propose(first, 2);
    // `run_checked` asserts that the old leader's lease ends before the new one acts.
    let second = g.await_leader_other_than(first, Duration::from_secs(10));
    assert_ne!(second, first);
    let old_lease = g.look(first, |m| m.replica.lease_until()).unwrap();
    assert!(old_lease.is_none_or(|until| until <= g.sim.now().since_origin()));
    assert!(g.sim.now() - cut_at < Duration::from_secs(5));
    g.propose(second, 3);
    g.run_checked(Duration::from_secs(1));
    g.sim.heal();
    g.run_checked(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(g.values(i).unwrap(), vec![1, 3], "member {i}");
    }
    let (proposed, outcomes) = g
        .look(first, |m| (m.proposed.clone(), m.outcomes.clone()))
        .unwrap();
    let cut_off = proposed.iter().find(|(_, v)| **v == 2).unwrap().0;
    assert!(
        matches!(
            outcomes.get(cut_off),
            Some(Err(ProposeError::NotLeader { .. }))
        ),
        "the isolated leader's proposal must be refused, not committed: {outcomes:?}"
    );
}

fn small_snapshots(upid: Upid) -> ReplicaConfig {
    ReplicaConfig {
        snapshot_after_entries: 50,
        log_entries_kept: 10,
        ..ReplicaConfig::new(upid)
    }
}

#[test]
fn the_log_is_compacted_and_a_lagging_member_catches_up_from_a_snapshot() {
    let mut g = Group::with_config(4, 3, small_snapshots);
    let leader = g.await_leader(Duration::from_secs(10));
    let lagging = (leader + 1) % 3;
    g.crash(lagging);
    for v in 0..400 {
        g.propose(leader, v);
    }
    g.run_checked(Duration::from_secs(5));
    let log_len = g.look(leader, |m| m.replica.log_len()).unwrap();
    assert!(log_len < 120, "log not compacted: {log_len} entries");
    assert!(g.disks[leader].entry_count() < 120);
    // Its disk wiped, as if replaced: it must get the state from a snapshot.
    g.disks[lagging] = MemoryDisk::new();
    let node = g.nodes[lagging].clone();
    g.sim.restart(&node);
    g.spawn(lagging, Vec::new());
    g.run_checked(Duration::from_secs(5));
    let expected: Vec<u64> = (0..400).collect();
    assert_eq!(g.values(lagging).unwrap(), expected);
    assert!(g
        .look(lagging, |m| m.replica.status().snapshot_index)
        .unwrap()
        .is_some());
}

#[test]
fn a_member_is_added_and_another_removed_without_stopping() {
    let mut g = Group::new(5, 3);
    let leader = g.await_leader(Duration::from_secs(10));
    g.propose(leader, 1);
    g.run_checked(Duration::from_secs(1));
    // A fourth node joins (no bootstrap: it waits to be added), replacing a follower.
    g.add_node(3);
    g.spawn(3, Vec::new());
    let removed = (leader + 1) % 3;
    let voters: Vec<Upid> = (0..4)
        .filter(|&i| i != removed)
        .map(|i| g.upids[i].clone())
        .collect();
    let to = g.upids[leader].clone();
    g.sim.post(
        &to,
        &to,
        ChangeMembers {
            add: Some(g.upids[3].clone()),
            voters: voters.clone(),
        },
    );
    g.run_checked(Duration::from_secs(3));
    let outcomes = g.look(leader, |m| m.outcomes.clone()).unwrap();
    assert!(outcomes.values().all(|o| o.is_ok()), "{outcomes:?}");
    let status = g.look(leader, |m| m.replica.status().clone()).unwrap();
    let mut got = status.voters.clone();
    got.sort();
    let mut want = voters.clone();
    want.sort();
    assert_eq!(got, want);
    g.propose(leader, 2);
    g.run_checked(Duration::from_secs(1));
    assert_eq!(g.values(3).unwrap(), vec![1, 2]);
    // The group of the new three survives losing the old leader.
    g.crash(removed);
    g.crash(leader);
    let next = g.await_leader(Duration::from_secs(10));
    assert!(next != leader && next != removed);
}

/// Elect, replicate, lose the leader, elect again: (first leader, second, when, trace hash).
fn failover_run(seed: u64) -> (usize, usize, Duration, u64) {
    let mut g = Group::new(seed, 3);
    let leader = g.await_leader(Duration::from_secs(10));
    for v in 0..5 {
        g.propose(leader, v);
    }
    g.run_checked(Duration::from_secs(1));
    g.crash(leader);
    let next = g.await_leader(Duration::from_secs(10));
    (leader, next, g.sim.now().since_origin(), g.sim.trace_hash())
}

#[test]
fn the_same_seed_gives_the_same_run() {
    assert_eq!(failover_run(11), failover_run(11));
    // Different seeds draw different election timeouts.
    assert_ne!(failover_run(11).3, failover_run(12).3);
}

/// Child-process half of the cross-process determinism test.
#[test]
fn trace_child() {
    if let Ok(seed) = std::env::var("PLATEAU_REPLICA_TRACE_SEED") {
        let (_, _, _, hash) = failover_run(seed.parse().unwrap());
        println!("TRACE_HASH={hash:016x}");
    }
}

fn trace_in_child(seed: u64) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trace_child", "--nocapture", "--test-threads=1"])
        .env("PLATEAU_REPLICA_TRACE_SEED", seed.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| {
            l.split_once("TRACE_HASH=")
                .map(|(_, h)| h.trim().to_string())
        })
        .unwrap_or_else(|| panic!("child printed no hash: {stdout}"))
}

/// openraft's tasks, timers and random draws replay bit for bit in another process (no
/// hidden OS randomness or time).
#[test]
fn the_same_seed_gives_the_same_run_across_processes() {
    let a = trace_in_child(21);
    let b = trace_in_child(21);
    assert_eq!(a, b);
    assert_eq!(a, format!("{:016x}", failover_run(21).3));
}

#[test]
fn the_redb_disk_keeps_what_it_was_given_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    {
        let mut disk = RedbDisk::open(&path).unwrap();
        let ops: Vec<DiskOp> = (1..=10u64)
            .map(|i| DiskOp::PutEntry(i, vec![i as u8]))
            .chain([DiskOp::PutMeta("vote", vec![7])])
            .collect();
        disk.write(&ops, true).unwrap();
        disk.write(&[DiskOp::RemoveFrom(9), DiskOp::RemoveUpTo(2)], true)
            .unwrap();
    }
    let mut disk = RedbDisk::open(&path).unwrap();
    let image = disk.load().unwrap();
    assert_eq!(
        image.entries.keys().copied().collect::<Vec<_>>(),
        (3..=8).collect::<Vec<_>>()
    );
    assert_eq!(image.meta.get("vote"), Some(&vec![7]));
    let mut memory = MemoryDisk::new();
    memory
        .write(
            &(1..=10u64)
                .map(|i| DiskOp::PutEntry(i, vec![i as u8]))
                .chain([DiskOp::PutMeta("vote", vec![7])])
                .collect::<Vec<_>>(),
            true,
        )
        .unwrap();
    memory
        .write(&[DiskOp::RemoveFrom(9), DiskOp::RemoveUpTo(2)], true)
        .unwrap();
    assert_eq!(memory.load().unwrap(), image, "both disks mean the same");
}
