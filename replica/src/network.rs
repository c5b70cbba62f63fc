//! Raft's requests between replicas as runtime messages.
//!
//! A request to a peer is a [`ReplicaRequestMessage`] (an id, the kind, the postcard-encoded
//! openraft request) sent to the peer's process; the answer is a [`ReplicaResponseMessage`]
//! with the same id. The runtime delivers at most once, so a request whose answer does not
//! come within openraft's time-to-live fails as a network error and openraft retries at its
//! next heartbeat: there is no retry here, and a lost answer costs one heartbeat.
//!
//! The client half (openraft's [`RaftNetwork`]) only queues requests in an outbox shared with
//! the host; the host sends them through its context after each run of the executor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, AsyncRuntime, RaftNetwork, RaftNetworkFactory};
use plateau_runtime::{Message, Upid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::executor::PlateauRuntime;
use crate::limits::{PENDING_RPCS_MAX, RPC_BYTES_MAX};
use crate::{ReplicaNode, TypeConfig};

type NodeId = u64;

/// Which openraft request a [`ReplicaRequestMessage`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcKind {
    /// A vote request.
    Vote,
    /// An append-entries request (heartbeats too).
    Append,
    /// A chunk of a snapshot.
    Snapshot,
}

/// A raft request from one replica to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRequestMessage {
    /// Chosen by the sender; echoed in the answer.
    pub id: u64,
    /// What `body` is.
    pub kind: RpcKind,
    /// The postcard-encoded openraft request.
    pub body: Vec<u8>,
}

/// The answer to a [`ReplicaRequestMessage`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaResponseMessage {
    /// The request's id.
    pub id: u64,
    /// The postcard-encoded `Result` of the openraft call.
    pub body: Vec<u8>,
}

/// Timer: the executor has a sleeping task due (sent by a replica's host to itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaWakeTimer;

impl Message for ReplicaRequestMessage {
    const NAME: &'static str = "plateau.replica.RequestMessage";
}
impl Message for ReplicaResponseMessage {
    const NAME: &'static str = "plateau.replica.ResponseMessage";
}
impl Message for ReplicaWakeTimer {
    const NAME: &'static str = "plateau.replica.WakeTimer";
}

/// A message for the host to send.
#[derive(Debug)]
pub(crate) enum Outbound {
    Request(Upid, ReplicaRequestMessage),
    Response(Upid, ReplicaResponseMessage),
}

/// What the network shares with the host.
#[derive(Default)]
pub(crate) struct Wire {
    pub(crate) outbox: Vec<Outbound>,
    next_id: u64,
    /// Request id → (the peer asked, where its answer goes).
    pending: BTreeMap<u64, (Upid, tokio::sync::oneshot::Sender<Vec<u8>>)>,
}

pub(crate) type SharedWire = Arc<Mutex<Wire>>;

impl Wire {
    /// Hands an answer to the request that awaits it; false if none does (late, duplicate, or
    /// from another process than the one asked).
    pub(crate) fn answer(&mut self, from: &Upid, msg: ReplicaResponseMessage) -> bool {
        match self.pending.get(&msg.id) {
            Some((asked, _)) if asked == from => {
                let (_, tx) = self.pending.remove(&msg.id).expect("present");
                tx.send(msg.body).is_ok()
            }
            _ => false,
        }
    }
}

/// Removes a request from the pending table when its caller stops waiting (answered, timed
/// out, or dropped by openraft's own timeout).
struct PendingGuard {
    wire: SharedWire,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.wire
            .lock()
            .expect("wire lock")
            .pending
            .remove(&self.id);
    }
}

/// openraft's network factory: one [`PeerClient`] per peer.
#[derive(Clone)]
pub struct Network {
    pub(crate) wire: SharedWire,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ReplicaNode) -> PeerClient {
        PeerClient {
            target,
            upid: node.upid.parse().ok(),
            wire: self.wire.clone(),
        }
    }
}

/// Sends openraft's requests to one peer.
pub struct PeerClient {
    target: NodeId,
    /// None when the node's address does not parse (the requests then fail).
    upid: Option<Upid>,
    wire: SharedWire,
}

fn network_error(why: &str) -> NetworkError {
    NetworkError::new(&AnyError::error(why))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("raft messages encode")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > RPC_BYTES_MAX {
        return Err(format!("{} bytes, more than {RPC_BYTES_MAX}", bytes.len()));
    }
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

impl PeerClient {
    /// Queues a request and awaits its answer's bytes until `option`'s deadline.
    async fn call(
        &self,
        kind: RpcKind,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Vec<u8>, NetworkError> {
        let Some(upid) = self.upid.clone() else {
            return Err(network_error("the peer's address does not parse"));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let guard = {
            let mut wire = self.wire.lock().expect("wire lock");
            if wire.pending.len() >= PENDING_RPCS_MAX {
                return Err(network_error("too many requests awaiting answers"));
            }
            let id = wire.next_id;
            wire.next_id += 1;
            wire.pending.insert(id, (upid.clone(), tx));
            wire.outbox.push(Outbound::Request(
                upid,
                ReplicaRequestMessage { id, kind, body },
            ));
            PendingGuard {
                wire: self.wire.clone(),
                id,
            }
        };
        let answer = PlateauRuntime::timeout(option.hard_ttl(), rx).await;
        drop(guard);
        match answer {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(network_error("the request was dropped")),
            Err(_) => Err(network_error("no answer in time")),
        }
    }

    // openraft's error type is what it is; it is returned straight to openraft.
    #[allow(clippy::result_large_err)]
    fn answer<R: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<R, RPCError<NodeId, ReplicaNode, RaftError<NodeId, E>>> {
        let decoded: Result<R, RaftError<NodeId, E>> = decode(bytes)
            .map_err(|e| RPCError::Network(network_error(&format!("bad answer: {e}"))))?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ReplicaNode, RaftError<NodeId>>>
    {
        let bytes = self
            .call(RpcKind::Append, encode(&rpc), &option)
            .await
            .map_err(RPCError::Network)?;
        self.answer(&bytes)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ReplicaNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let bytes = self
            .call(RpcKind::Snapshot, encode(&rpc), &option)
            .await
            .map_err(RPCError::Network)?;
        self.answer(&bytes)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ReplicaNode, RaftError<NodeId>>> {
        let bytes = self
            .call(RpcKind::Vote, encode(&rpc), &option)
            .await
            .map_err(RPCError::Network)?;
        self.answer(&bytes)
    }
}

/// Fuzz targets of the raft traffic between masters: the runtime messages and the openraft
/// requests and answers inside them, decoded (as [`decode`] does) from arbitrary bytes and from
/// damaged valid encodings. Never a panic; what decodes encodes back stably.
#[cfg(test)]
mod fuzz {
    use super::*;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use plateau_runtime::fuzzing::{check_message_decoding, fuzz_cases, mutate};
    use proptest::prelude::*;

    fn stable<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<(), String> {
        let Ok(value) = decode::<T>(bytes) else {
            return Ok(());
        };
        let encoded = encode(&value);
        let again: T = decode(&encoded).map_err(|e| format!("own encoding refused: {e}"))?;
        if encode(&again) != encoded {
            return Err(format!(
                "{}: encoding not stable",
                std::any::type_name::<T>()
            ));
        }
        Ok(())
    }

    fn check_all(bytes: &[u8]) -> Vec<String> {
        type Answer<T, E = openraft::error::Infallible> = Result<T, RaftError<NodeId, E>>;
        [
            check_message_decoding::<ReplicaRequestMessage>(bytes),
            check_message_decoding::<ReplicaResponseMessage>(bytes),
            check_message_decoding::<ReplicaWakeTimer>(bytes),
            stable::<VoteRequest<NodeId>>(bytes),
            stable::<AppendEntriesRequest<TypeConfig>>(bytes),
            stable::<InstallSnapshotRequest<TypeConfig>>(bytes),
            stable::<Answer<VoteResponse<NodeId>>>(bytes),
            stable::<Answer<AppendEntriesResponse<NodeId>>>(bytes),
            stable::<Answer<InstallSnapshotResponse<NodeId>, InstallSnapshotError>>(bytes),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn samples() -> Vec<Vec<u8>> {
        let vote = Vote::new_committed(3, 1);
        let entries = vec![
            Entry::<TypeConfig> {
                log_id: log_id(3, 7),
                payload: EntryPayload::Normal(vec![1, 2, 3]),
            },
            Entry::<TypeConfig> {
                log_id: log_id(3, 8),
                payload: EntryPayload::Blank,
            },
        ];
        let append = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(3, 6)),
            entries,
            leader_commit: Some(log_id(3, 6)),
        };
        let vote_request = VoteRequest::new(vote, Some(log_id(2, 5)));
        let vote_answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = Ok(VoteResponse {
            vote,
            vote_granted: true,
            last_log_id: Some(log_id(2, 5)),
        });
        vec![
            encode(&append),
            encode(&vote_request),
            encode(&vote_answer),
            encode(&ReplicaRequestMessage {
                id: 9,
                kind: RpcKind::Append,
                body: encode(&append),
            }),
            encode(&ReplicaResponseMessage {
                id: 9,
                body: encode(&vote_answer),
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn fuzz_replica_messages_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            let failures = check_all(&bytes);
            prop_assert!(failures.is_empty(), "{:?}", failures);
        }

        #[test]
        fn fuzz_replica_messages_mutated(which in any::<prop::sample::Index>(), edits in plateau_runtime::fuzzing::edits(1..6)) {
            let samples = samples();
            let damaged = mutate(&samples[which.index(samples.len())], &edits);
            let failures = check_all(&damaged);
            prop_assert!(failures.is_empty(), "{:?}", failures);
        }
    }

    #[test]
    fn fuzz_samples_decode() {
        for bytes in samples() {
            assert!(check_all(&bytes).is_empty());
        }
        assert!(decode::<AppendEntriesRequest<TypeConfig>>(&samples()[0]).is_ok());
    }
}
