//! Named maxima of the runtime: every queue, frame and retry has one.

use std::time::Duration;

/// Longest process name accepted in a `Upid`.
pub const UPID_NAME_LEN_MAX: usize = 128;

/// Default maximum size of one frame on the wire (header + body). Larger frames drop the
/// connection they arrived on.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// Maximum size of a frame's header (sender, receiver, message name).
pub const FRAME_HEADER_BYTES_MAX: usize = 1024;

/// Longest message name on the wire.
pub const MESSAGE_NAME_LEN_MAX: usize = 256;

/// Bytes buffered for one peer while its connection is being established or is slow; beyond
/// this, further messages to the peer are dropped (at-most-once delivery) and counted.
pub const PEER_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of messages from other nodes that may wait for one process, queued and not yet
/// handled (each message counts its body and [`MAILBOX_MESSAGE_OVERHEAD_BYTES`]). When a
/// process is this far behind, the QUIC stream that brings it more is not read until it
/// catches up, so QUIC's flow control holds the sender back. A batch larger than this waits
/// for the queue to be empty and then goes alone. Messages from the node's own processes are
/// not counted (see the `node` module docs).
pub const MAILBOX_REMOTE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What a queued message from another node counts for beyond its body: its share of the
/// batch, sender and name it is queued with. It makes the byte bound a bound on the number of
/// messages too (at most 131,072 empty messages per process).
pub const MAILBOX_MESSAGE_OVERHEAD_BYTES: usize = 64;

/// Unidirectional streams a peer may have open at once on one connection. The transport sends
/// on one; each stream read costs a frame decoder (up to a frame and a read chunk) and may
/// hold a batch waiting for room, so a peer may not open more.
pub const PEER_STREAMS_MAX: u32 = 1;

/// Largest write handed to a QUIC stream at once.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Largest chunk read from a QUIC stream at once.
pub const READ_CHUNK_BYTES_MAX: usize = 256 * 1024;

/// First delay before redialling a peer whose dial failed.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest delay between redials of an unreachable peer.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a dial may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// QUIC keep-alive interval: keeps idle connections open and detects dead peers.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// QUIC idle timeout: a connection with no traffic (keep-alives included) for this long is
/// considered broken and its links fire `exited`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most events the simulator keeps pending at once; beyond it the run is aborted as broken.
pub const SIM_EVENTS_PENDING_MAX: usize = 64 * 1024 * 1024;

/// Largest peer certificate (DER) whose names are read.
pub const CERT_DER_BYTES_MAX: usize = 16 * 1024;

/// Most subject alternative names read from one certificate.
pub const CERT_SAN_COUNT_MAX: usize = 64;

/// Longest principal named in a certificate.
pub const PRINCIPAL_LEN_MAX: usize = 128;

/// Default lifetime of a node certificate, in days.
pub const NODE_CERT_DAYS_DEFAULT: u32 = 365;

/// Longest lifetime `plateau certs issue --days` accepts for a node certificate.
pub const NODE_CERT_DAYS_MAX: u32 = 3650;

/// Lifetime of a cluster CA, in days (longer than any node certificate it issues).
pub const CA_CERT_DAYS: u32 = 3650 * 2;

/// How often a node looks for a new revocation list (`crl.pem` in its TLS directory).
pub const CRL_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Largest revocation list a node loads.
pub const CRL_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Connections from other nodes a node keeps open at most (counted from their handshake); an
/// incoming connection beyond it is refused before its handshake. Room for a master of thousands of nodes, while a flood
/// of connections cannot exhaust the process (each holds at most one stream and a bounded
/// receive window).
pub const CONNECTIONS_MAX_DEFAULT: usize = 16_384;

/// How long an accepted connection has to open its stream and say who it is (its Hello):
/// one that stays silent longer is closed, so that idle handshakes cannot hold the
/// [`CONNECTIONS_MAX_DEFAULT`] slots. Every stream's Hello must arrive within it too.
pub const HELLO_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
