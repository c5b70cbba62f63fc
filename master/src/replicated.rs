//! The state a group of masters replicates: the registry (what a single master keeps in
//! [`crate::registry::RedbRegistry`]) and the frameworks' coordination store
//! ([`crate::coord`]), changed only by committed [`MasterCommand`]s.
//!
//! Every master of the group applies the same commands in the same order
//! ([`plateau_replica::ReplicatedState`]); only the leader decides them. A newly elected
//! leader first commits [`MasterCommand::Elected`]: once that is applied, its copy of the
//! state holds every change committed before its term, and it builds its
//! [`MasterCore`](crate::core::MasterCore) from it.
//!
//! Each copy also fingerprints what it applied ([`AppliedDigest`]): a hash chained over every
//! command applied, with the index of the last one, carried in snapshots. Two copies that
//! applied the same commands up to an index have the same digest there, so an observer (the
//! simulator) can tell that the copies never diverged by comparing digests index by index
//! ([`MasterState::recent_digests`] keeps the last few for it). The digest is not read by the
//! master itself.

use std::collections::VecDeque;

use plateau_replica::ReplicatedState;
use plateau_runtime::rng::{stable_hash_words, STABLE_HASH_START};
use plateau_runtime::Upid;
use serde::{Deserialize, Serialize};

use crate::coord::{CoordCommand, CoordStore};
use crate::limits::APPLIED_DIGESTS_KEPT_MAX;
use crate::registry::{RegistryOp, RegistryState};

/// A command in the masters' replicated log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MasterCommand {
    /// A newly elected leader's first command.
    Elected {
        /// The leader's process.
        leader: Upid,
        /// Its term.
        term: u64,
    },
    /// The registry changes of one decision of the leader, applied together.
    Registry(Vec<RegistryOp>),
    /// An operation on the coordination store; its answer is the postcard-encoded
    /// [`crate::coord::CoordResponse`].
    Coord(CoordCommand),
}

impl MasterCommand {
    /// The command as stored in the log.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("master commands encode")
    }
}

/// The fingerprint of what a copy of the state applied: the log index of the last command
/// applied and a hash chained over every command applied up to it (its index and its bytes,
/// in order). Equal at one index in two copies exactly when (up to hash collisions) they
/// applied the same commands up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDigest {
    /// Log index of the last command applied (0: none yet).
    pub index: u64,
    /// The chained hash.
    pub hash: u64,
}

impl Default for AppliedDigest {
    fn default() -> Self {
        AppliedDigest {
            index: 0,
            hash: STABLE_HASH_START,
        }
    }
}

impl AppliedDigest {
    /// The digest after also applying `command` at `index`.
    pub fn chain(self, index: u64, command: &[u8]) -> Self {
        let h = stable_hash_words(self.hash, &index.to_le_bytes());
        AppliedDigest {
            index,
            hash: stable_hash_words(h ^ command.len() as u64, command),
        }
    }
}

/// What every master of a group holds.
///
/// Equality compares the replicated state and the digest, not the observation aids
/// ([`MasterState::recent_digests`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MasterState {
    /// The registry.
    pub registry: RegistryState,
    /// The last leader that committed its election, and its term.
    pub elected: Option<(Upid, u64)>,
    /// Commands that did not decode (a newer master's log read by an older one); counted,
    /// never applied.
    pub undecodable: u64,
    /// The frameworks' coordination store.
    pub coord: CoordStore,
    /// The fingerprint of every command applied so far (carried in snapshots).
    pub digest: AppliedDigest,
    /// Not replicated: how many snapshots this copy installed (a host's watch history of the
    /// store is void after one).
    #[serde(skip)]
    pub restores: u64,
    /// Not replicated: the digests after each of the last commands applied (at most
    /// [`APPLIED_DIGESTS_KEPT_MAX`], oldest first; after a snapshot is installed, the
    /// snapshot's). Read by observers that compare copies; not part of the state's value.
    #[serde(skip)]
    pub recent_digests: VecDeque<AppliedDigest>,
}

impl PartialEq for MasterState {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.elected == other.elected
            && self.undecodable == other.undecodable
            && self.coord == other.coord
            && self.digest == other.digest
            && self.restores == other.restores
    }
}

impl MasterState {
    fn record_digest(&mut self, digest: AppliedDigest) {
        self.digest = digest;
        if self.recent_digests.len() >= APPLIED_DIGESTS_KEPT_MAX {
            self.recent_digests.pop_front();
        }
        self.recent_digests.push_back(digest);
    }
}

impl ReplicatedState for MasterState {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.record_digest(self.digest.chain(index, command));
        match postcard::from_bytes::<MasterCommand>(command) {
            Ok(MasterCommand::Elected { leader, term }) => self.elected = Some((leader, term)),
            Ok(MasterCommand::Registry(ops)) => {
                for op in &ops {
                    self.registry.apply(op);
                }
            }
            Ok(MasterCommand::Coord(command)) => {
                let answer = self.coord.apply_command(index, &command);
                return postcard::to_allocvec(&answer).expect("coordination answers encode");
            }
            Err(e) => {
                // Every replica reads the same bytes the same way: they stay identical.
                tracing::error!(error = %e, "replicated master command does not decode; skipped");
                self.undecodable += 1;
            }
        }
        Vec::new()
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("master state encodes")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        let restored: MasterState = postcard::from_bytes(snapshot).map_err(|e| e.to_string())?;
        restored.coord.check_invariants()?;
        let restores = self.restores + 1;
        let mut recent = std::mem::take(&mut self.recent_digests);
        *self = restored;
        self.restores = restores;
        // What was applied before is void: the copy stands at the snapshot's digest now.
        recent.clear();
        self.recent_digests = recent;
        self.record_digest(self.digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_change_the_registry_and_snapshots_round_trip() {
        let mut state = MasterState::default();
        let leader: Upid = "master@10.0.0.1:5050".parse().unwrap();
        state.apply(
            1,
            &MasterCommand::Elected {
                leader: leader.clone(),
                term: 3,
            }
            .encode(),
        );
        state.apply(
            2,
            &MasterCommand::Registry(vec![
                RegistryOp::SetMasterRunId("run".into()),
                RegistryOp::SetNextSlaveNumber(4),
            ])
            .encode(),
        );
        state.apply(3, b"\xff\xff not a command");
        assert_eq!(state.elected, Some((leader, 3)));
        assert_eq!(state.registry.master_run_id.as_deref(), Some("run"));
        assert_eq!(state.registry.next_slave_number, 4);
        assert_eq!(state.undecodable, 1);
        assert_eq!(
            state.digest.index, 3,
            "every command is fingerprinted, even a bad one"
        );
        let mut copy = MasterState::default();
        copy.restore(&state.snapshot()).unwrap();
        assert_eq!(copy.restores, 1);
        copy.restores = 0;
        assert_eq!(copy, state);
        assert_eq!(copy.recent_digests, [state.digest]);
    }

    #[test]
    fn digests_agree_exactly_when_the_same_commands_were_applied() {
        let command = |n: u64| MasterCommand::Registry(vec![RegistryOp::SetNextSlaveNumber(n)]);
        let mut a = MasterState::default();
        let mut b = MasterState::default();
        for i in 1..=3 {
            a.apply(i, &command(i).encode());
            b.apply(i, &command(i).encode());
        }
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.recent_digests, b.recent_digests);
        assert_eq!(a.recent_digests.len(), 3);
        // One different command at index 4: different from then on.
        a.apply(4, &command(40).encode());
        b.apply(4, &command(41).encode());
        assert_eq!(a.digest.index, b.digest.index);
        assert_ne!(a.digest, b.digest);
        a.apply(5, &command(5).encode());
        b.apply(5, &command(5).encode());
        assert_ne!(a.digest, b.digest);
        // The same command at another index is another digest.
        let mut c = MasterState::default();
        c.apply(2, &command(1).encode());
        let mut d = MasterState::default();
        d.apply(1, &command(1).encode());
        assert_ne!(c.digest, d.digest);
        // Bounded.
        for i in 6..(6 + APPLIED_DIGESTS_KEPT_MAX as u64 * 2) {
            a.apply(i, &command(i).encode());
        }
        assert_eq!(a.recent_digests.len(), APPLIED_DIGESTS_KEPT_MAX);
        assert_eq!(a.recent_digests.back(), Some(&a.digest));
    }
}
