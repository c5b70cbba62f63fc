//! The state a group of masters replicates: the registry (what a single master keeps in
//! [`crate::registry::RedbRegistry`]) and the frameworks' coordination store
//! ([`crate::coord`]), changed only by committed [`MasterCommand`]s.
//!
//! Every master of the group applies the same commands in the same order
//! ([`plateau_replica::ReplicatedState`]); only the leader decides them. A newly elected
//! leader first commits [`MasterCommand::Elected`]: once that is applied, its copy of the
//! state holds every change committed before its term, and it builds its
//! [`MasterCore`](crate::core::MasterCore) from it.

use plateau_replica::ReplicatedState;
use plateau_runtime::Upid;
use serde::{Deserialize, Serialize};

use crate::coord::{CoordCommand, CoordStore};
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

/// What every master of a group holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Not replicated: how many snapshots this copy installed (a host's watch history of the
    /// store is void after one).
    #[serde(skip)]
    pub restores: u64,
}

impl ReplicatedState for MasterState {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
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
        *self = restored;
        self.restores = restores;
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
        let mut copy = MasterState::default();
        copy.restore(&state.snapshot()).unwrap();
        assert_eq!(copy.restores, 1);
        copy.restores = 0;
        assert_eq!(copy, state);
    }
}
