//! The QUIC transport: frames between nodes over quinn with mutual TLS.
//!
//! One long-lived connection per pair of nodes in the common case: a node dials a peer the
//! first time it sends to it, and a node that was dialled sends back on the connection it
//! accepted. Each node sends on one unidirectional stream per connection, so the messages from
//! one node to another arrive in order (two simultaneous dials make two connections, each used
//! in one direction, which keeps the order too). Frames are buffered per peer and written in
//! batches; the first frame of every stream is a [`Hello`] naming the sending node.
//!
//! Failures: a dial that fails is retried on the next send after a backoff (doubling from
//! [`RECONNECT_BACKOFF_MIN`] to [`RECONNECT_BACKOFF_MAX`]); messages queued for it are dropped
//! (delivery is at most once: reliability is built above). A connection that breaks or idles
//! past [`IDLE_TIMEOUT`] reports the peer lost, which fires `exited` on links. A frame that is
//! oversized, truncated or undecodable drops the connection it came on, with a logged reason.
//!
//! Identity: a peer's Hello names the node address it speaks as; it is accepted only if the
//! peer's certificate names that address ([`PeerIdentity::may_claim`]), and every frame's
//! sender must be a process of that node. A dialled peer's certificate must name the address
//! dialled. Refusals drop the connection, are logged with the reason and counted
//! ([`TransportStats::identity_refused`]). The verified identity travels with every delivery
//! ([`TransportSink::deliver`]). The revocation list (`crl.pem` in the node's TLS directory)
//! is polled every [`CRL_POLL_INTERVAL`]: a new one applies to new handshakes in both
//! directions and closes the open connections of the certificates it revokes.
//!
//! Backpressure: the stream's read loop hands each batch of frames to the [`TransportSink`];
//! when the receiving process has no room for it (the node bounds what waits for each
//! process: [`crate::limits::MAILBOX_REMOTE_BYTES_MAX`]), the loop awaits room before it reads
//! another byte of that stream. quinn then stops granting the sender flow-control credit, so a
//! peer that sends faster than a process handles is held back at its own end, where its queue
//! fills and then drops ([`PEER_QUEUE_BYTES_MAX`]), instead of growing the receiver's memory.
//! What one connection holds meanwhile is bounded by its QUIC receive window.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use tokio::sync::Notify;

use crate::identity::PeerIdentity;
use crate::limits::{
    CONNECT_TIMEOUT, CRL_POLL_INTERVAL, IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL, PEER_QUEUE_BYTES_MAX,
    PEER_STREAMS_MAX, READ_CHUNK_BYTES_MAX, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN,
};
use crate::message::{
    decode_envelope, decode_hello, encode_frame, encode_hello, AnyMessage, FrameDecoder,
    FrameError, Header, Hello, PROTOCOL_VERSION,
};
use crate::tls::{crl_serials, is_revoked, NodeIdentity, TlsError, CLUSTER_SERVER_NAME};
use crate::upid::{NodeAddr, Upid};

/// A batch the receiving process has no room for yet: the future hands it on once there is
/// room. Until it completes, the stream the batch came on is not read.
pub type Backpressure = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the transport hands what it receives.
pub trait TransportSink: Send + Sync + 'static {
    /// Messages arrived for a process of this node from the peer whose certificate proved
    /// `peer`: all with the same header (sender, receiver, message name), in order. `None`
    /// when they were handed on (or dropped); [`Backpressure`] when the receiving process is
    /// full: the stream they came on waits for it before it reads any further (see the module
    /// docs).
    fn deliver(
        &self,
        peer: &Arc<PeerIdentity>,
        header: &Header,
        bodies: Vec<Bytes>,
    ) -> Option<Backpressure>;
    /// The connection to `node` broke or could not be made.
    fn peer_lost(&self, node: &NodeAddr);
}

/// Counters of a transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Frames queued for sending.
    pub frames_sent: AtomicU64,
    /// Frames received and handed on.
    pub frames_received: AtomicU64,
    /// Messages dropped because a peer's queue was full or its dial failed.
    pub dropped: AtomicU64,
    /// Batches whose receiving process was full: the stream they came on waited before
    /// reading further.
    pub backpressured: AtomicU64,
    /// Connections dropped for a malformed frame.
    pub malformed: AtomicU64,
    /// Incoming connections refused during the handshake (no or bad certificate), or before
    /// it because the node keeps the most connections it may
    /// ([`crate::limits::CONNECTIONS_MAX_DEFAULT`]).
    pub refused: AtomicU64,
    /// Connections dropped because the peer's certificate does not name the node it claimed
    /// to be (or the one dialled), or names no identity at all.
    pub identity_refused: AtomicU64,
    /// Accepted connections closed because they opened no stream, or said no Hello on one,
    /// within the Hello timeout ([`crate::limits::HELLO_TIMEOUT_DEFAULT`]).
    pub hello_timeouts: AtomicU64,
    /// Open connections closed because a new revocation list revoked their certificate.
    pub revoked_closed: AtomicU64,
    /// Revocation lists loaded after the start.
    pub crl_reloads: AtomicU64,
}

/// Transport setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

struct Outbox {
    buf: BytesMut,
    closed: bool,
}

struct Peer {
    node: NodeAddr,
    generation: u64,
    out: Mutex<Outbox>,
    notify: Notify,
    /// The connection carrying this peer's traffic, once established.
    connection: Mutex<Option<Connection>>,
    /// The peer's incarnation, once it said hello on that connection (0: not yet known).
    incarnation: AtomicU64,
}

struct Backoff {
    until: tokio::time::Instant,
    delay: Duration,
}

struct Inner {
    local: NodeAddr,
    incarnation: u64,
    endpoint: Endpoint,
    /// This node's identity, with its certificate (resolved at start).
    identity: NodeIdentity,
    /// Replaced when the revocation list changes.
    client_config: Mutex<quinn::ClientConfig>,
    /// Open connections (by `stable_id`) and their peers' identities, for revocation.
    connections: Mutex<HashMap<usize, (Connection, Arc<PeerIdentity>)>>,
    max_frame_bytes: usize,
    /// Accepted connections at most: more incoming ones are refused.
    connections_max: usize,
    /// Accepted connections open now (or in their handshake).
    accepted: std::sync::atomic::AtomicUsize,
    /// How long an accepted connection may take to open a stream, and a stream to say Hello.
    hello_timeout: Duration,
    peers: Mutex<HashMap<NodeAddr, Arc<Peer>>>,
    backoff: Mutex<HashMap<NodeAddr, Backoff>>,
    next_generation: AtomicU64,
    sink: Arc<dyn TransportSink>,
    stats: TransportStats,
}

/// A node's QUIC endpoint: dials, accepts, frames.
#[derive(Clone)]
pub struct QuicTransport {
    inner: Arc<Inner>,
}

fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT.try_into().expect("idle timeout fits a VarInt"),
    ));
    t.stream_receive_window(VarInt::from_u32(8 * 1024 * 1024));
    t.receive_window(VarInt::from_u32(16 * 1024 * 1024));
    t.send_window(16 * 1024 * 1024);
    // What a peer can make this node buffer: one stream (see PEER_STREAMS_MAX), none
    // bidirectional (the transport uses none).
    t.max_concurrent_uni_streams(VarInt::from_u32(PEER_STREAMS_MAX));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t
}

/// quinn server and client configurations for a node identity (with its revocation list on
/// disk).
pub fn quinn_configs(
    identity: &NodeIdentity,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    quinn_configs_with(identity, identity.crls()?)
}

/// quinn server and client configurations for a node identity and revocation lists.
pub fn quinn_configs_with(
    identity: &NodeIdentity,
    crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let server_crypto = QuicServerConfig::try_from(identity.server_config_with(crls.clone())?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(Arc::new(transport_config()));
    let client_crypto = QuicClientConfig::try_from(identity.client_config_with(crls)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(Arc::new(transport_config()));
    Ok((server, client))
}

impl QuicTransport {
    /// Bind `bind` and start accepting. Must run inside a tokio runtime. `local_host` is the
    /// host other nodes know this node by (the port is taken from the socket when `bind`'s is
    /// 0). A self-issuing identity issues its certificate for that address here; a fixed one
    /// must name it.
    pub fn start(
        bind: SocketAddr,
        local_host: &str,
        identity: &NodeIdentity,
        max_frame_bytes: usize,
        connections_max: usize,
        hello_timeout: Duration,
        sink: Arc<dyn TransportSink>,
    ) -> Result<Self, TransportError> {
        let bind_err = |source| TransportError::Bind { addr: bind, source };
        let socket = std::net::UdpSocket::bind(bind).map_err(bind_err)?;
        let port = socket.local_addr().map_err(bind_err)?.port();
        let local = NodeAddr::new(local_host, port);
        let identity = identity.resolve(&local)?;
        let (server, client) = quinn_configs(&identity)?;
        let endpoint = Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_err)?;
        let crl_path = identity.crl_path().map(|p| p.to_path_buf());
        let inner = Arc::new(Inner {
            local,
            incarnation: new_incarnation(),
            endpoint,
            identity,
            client_config: Mutex::new(client),
            connections: Mutex::new(HashMap::new()),
            max_frame_bytes,
            connections_max,
            accepted: std::sync::atomic::AtomicUsize::new(0),
            hello_timeout,
            peers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            sink,
            stats: TransportStats::default(),
        });
        tokio::spawn(accept_loop(inner.clone()));
        if let Some(path) = crl_path {
            tokio::spawn(watch_crl(Arc::downgrade(&inner), path));
        }
        Ok(QuicTransport { inner })
    }

    /// The address this node is known by.
    pub fn local(&self) -> &NodeAddr {
        &self.inner.local
    }

    /// This node's identity with its certificate (a self-issuing one, issued at start): what
    /// an HTTPS server of the node can serve ([`NodeIdentity::chain_and_key`]).
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// Counters.
    pub fn stats(&self) -> &TransportStats {
        &self.inner.stats
    }

    /// Queue a message for a process of another node. Never blocks; drops (and counts) the
    /// message when the peer's queue is full.
    pub fn send(&self, from: &Upid, to: &Upid, msg: &dyn AnyMessage) {
        self.send_many(from, &to.node(), std::iter::once((to, msg)));
    }

    /// Queue messages for processes of one other node, in order, under one lock.
    pub fn send_many<'a>(
        &self,
        from: &Upid,
        node: &NodeAddr,
        msgs: impl Iterator<Item = (&'a Upid, &'a dyn AnyMessage)>,
    ) {
        let peer = self.inner.peer_for(node);
        let mut out = peer.out.lock().expect("outbox lock");
        let was_empty = out.buf.is_empty();
        let mut sent = 0u64;
        let mut dropped = 0u64;
        for (to, msg) in msgs {
            debug_assert!(to.is_on(node));
            if out.closed || out.buf.len() >= PEER_QUEUE_BYTES_MAX {
                dropped += 1;
                continue;
            }
            let start = out.buf.len();
            match encode_frame(&mut out.buf, from, to, msg) {
                Ok(()) if out.buf.len() - start - 4 <= self.inner.max_frame_bytes => sent += 1,
                Ok(()) => {
                    let len = out.buf.len() - start;
                    out.buf.truncate(start);
                    dropped += 1;
                    tracing::warn!(%to, message = msg.name(), len, "message larger than the frame limit; dropped");
                }
                Err(e) => {
                    out.buf.truncate(start);
                    dropped += 1;
                    tracing::warn!(%to, message = msg.name(), error = %e, "message does not encode; dropped");
                }
            }
        }
        let notify = was_empty && !out.buf.is_empty();
        drop(out);
        if dropped > 0 {
            self.inner
                .stats
                .dropped
                .fetch_add(dropped, Ordering::Relaxed);
            tracing::debug!(peer = %node, dropped, "peer queue full or closed; messages dropped");
        }
        self.inner
            .stats
            .frames_sent
            .fetch_add(sent, Ordering::Relaxed);
        if notify {
            peer.notify.notify_one();
        }
    }

    /// Make sure a connection to `node` exists or is being made (for links).
    pub fn connect(&self, node: &NodeAddr) {
        self.inner.peer_for(node);
    }

    /// True when a connection to `node` exists or is being made.
    pub fn has_peer(&self, node: &NodeAddr) -> bool {
        self.inner
            .peers
            .lock()
            .expect("peers lock")
            .contains_key(node)
    }

    /// Bytes queued for `node` and not yet handed to its connection (0 when there is no
    /// peer). Beyond [`PEER_QUEUE_BYTES_MAX`] further messages are dropped: a sender that must
    /// not lose any (a bulk transfer) waits while this is high. A receiver that falls behind
    /// stops reading, so this stays high until it catches up.
    pub fn queued_bytes(&self, node: &NodeAddr) -> usize {
        let peer = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .get(node)
            .cloned();
        peer.map_or(0, |p| p.out.lock().expect("outbox lock").buf.len())
    }

    /// Close every connection and the endpoint.
    pub fn close(&self) {
        self.inner
            .endpoint
            .close(VarInt::from_u32(0), b"node shutting down");
        let peers: Vec<Arc<Peer>> = self
            .inner
            .peers
            .lock()
            .expect("peers lock")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in peers {
            p.out.lock().expect("outbox lock").closed = true;
            p.notify.notify_one();
        }
    }
}

impl Inner {
    fn new_peer(&self, node: &NodeAddr) -> Arc<Peer> {
        Arc::new(Peer {
            node: node.clone(),
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            out: Mutex::new(Outbox {
                buf: BytesMut::new(),
                closed: false,
            }),
            notify: Notify::new(),
            connection: Mutex::new(None),
            incarnation: AtomicU64::new(0),
        })
    }

    fn peer_for(self: &Arc<Self>, node: &NodeAddr) -> Arc<Peer> {
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(p) = peers.get(node) {
            return p.clone();
        }
        let peer = self.new_peer(node);
        peers.insert(node.clone(), peer.clone());
        drop(peers);
        tokio::spawn(run_outbound(self.clone(), peer.clone()));
        peer
    }

    /// Forget a peer (if it is still this generation) and report it lost.
    fn fail_peer(&self, peer: &Peer, dial_failed: bool) {
        let removed = {
            let mut peers = self.peers.lock().expect("peers lock");
            match peers.get(&peer.node) {
                Some(p) if p.generation == peer.generation => peers.remove(&peer.node).is_some(),
                _ => false,
            }
        };
        let mut out = peer.out.lock().expect("outbox lock");
        out.closed = true;
        out.buf = BytesMut::new();
        drop(out);
        if dial_failed {
            let mut backoff = self.backoff.lock().expect("backoff lock");
            let delay = backoff.get(&peer.node).map_or(RECONNECT_BACKOFF_MIN, |b| {
                (b.delay * 2).min(RECONNECT_BACKOFF_MAX)
            });
            backoff.insert(
                peer.node.clone(),
                Backoff {
                    until: tokio::time::Instant::now() + delay, // determinism-ok: real transport
                    delay,
                },
            );
        }
        if removed {
            self.sink.peer_lost(&peer.node);
        }
    }
}

/// A number that differs between two starts of a node (real transport only; the simulators
/// model restarts themselves).
fn new_incarnation() -> u64 {
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now() // determinism-ok: real transport identity
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = STARTS.fetch_add(1, Ordering::Relaxed);
    (nanos ^ (u64::from(std::process::id()) << 40) ^ start.rotate_left(20)) | 1
}

async fn resolve(node: &NodeAddr) -> Option<SocketAddr> {
    if let Ok(ip) = node.host.parse::<std::net::IpAddr>() {
        return Some(SocketAddr::new(ip, node.port));
    }
    tokio::net::lookup_host((&*node.host, node.port))
        .await
        .ok()?
        .next()
}

async fn run_outbound(inner: Arc<Inner>, peer: Arc<Peer>) {
    let wait = inner
        .backoff
        .lock()
        .expect("backoff lock")
        .get(&peer.node)
        .map(|b| b.until);
    if let Some(until) = wait {
        tokio::time::sleep_until(until).await;
    }
    let Some(addr) = resolve(&peer.node).await else {
        tracing::warn!(peer = %peer.node, "cannot resolve peer address");
        inner.fail_peer(&peer, true);
        return;
    };
    let client_config = inner
        .client_config
        .lock()
        .expect("client config lock")
        .clone();
    let connecting = match inner
        .endpoint
        .connect_with(client_config, addr, CLUSTER_SERVER_NAME)
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(peer = %peer.node, error = %e, "cannot dial peer");
            inner.fail_peer(&peer, true);
            return;
        }
    };
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::info!(peer = %peer.node, error = %e, "dial failed");
            inner.fail_peer(&peer, true);
            return;
        }
        Err(_) => {
            tracing::info!(peer = %peer.node, "dial timed out");
            inner.fail_peer(&peer, true);
            return;
        }
    };
    // The node dialled must be the one its certificate names (an operator's certificate,
    // naming no address, is a client's and never a server's).
    let identity = match peer_identity(&connection).and_then(|id| match &id.addr {
        Some(a) if *a == peer.node => Ok(id),
        _ => Err(format!(
            "dialled {} but its certificate is for {id}",
            peer.node
        )),
    }) {
        Ok(id) => Arc::new(id),
        Err(reason) => {
            inner.stats.identity_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %peer.node, %reason, "refusing peer: certificate does not name it");
            connection.close(VarInt::from_u32(4), reason.as_bytes());
            inner.fail_peer(&peer, true);
            return;
        }
    };
    inner
        .backoff
        .lock()
        .expect("backoff lock")
        .remove(&peer.node);
    tokio::spawn(read_connection(
        inner.clone(),
        connection.clone(),
        false,
        Some(identity),
    ));
    run_writer(&inner, &peer, connection).await;
}

/// Write the peer's queued frames to one unidirectional stream until the connection breaks.
async fn run_writer(inner: &Arc<Inner>, peer: &Arc<Peer>, connection: Connection) {
    *peer.connection.lock().expect("peer connection lock") = Some(connection.clone());
    let result: Result<(), String> = async {
        let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
        let mut hello = BytesMut::new();
        encode_hello(
            &mut hello,
            &Hello {
                version: PROTOCOL_VERSION,
                node: inner.local.clone(),
                incarnation: inner.incarnation,
            },
        );
        stream
            .write_chunk(hello.freeze())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let chunk = {
                let mut out = peer.out.lock().expect("outbox lock");
                if out.closed {
                    return Err("transport closed".to_string());
                }
                if out.buf.is_empty() {
                    None
                } else {
                    Some(out.buf.split().freeze())
                }
            };
            match chunk {
                Some(bytes) => stream.write_chunk(bytes).await.map_err(|e| e.to_string())?,
                None => {
                    tokio::select! {
                        biased;
                        reason = connection.closed() => return Err(reason.to_string()),
                        _ = peer.notify.notified() => {}
                    }
                }
            }
        }
    }
    .await;
    if let Err(reason) = result {
        tracing::info!(peer = %peer.node, %reason, "connection to peer ended");
    }
    inner.fail_peer(peer, false);
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        // A slot is taken before the handshake and given back when the connection ends, so
        // that simultaneous dials cannot all slip under the limit.
        let open = inner.accepted.fetch_add(1, Ordering::SeqCst);
        if open >= inner.connections_max {
            inner.accepted.fetch_sub(1, Ordering::SeqCst);
            inner.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                remote = %incoming.remote_address(),
                open,
                "refused connection: the node has the most connections it keeps open"
            );
            incoming.refuse();
            continue;
        }
        let inner = inner.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let _slot = AcceptedSlot(inner.clone());
            match incoming.await {
                Ok(connection) => read_connection(inner.clone(), connection, true, None).await,
                Err(e) => {
                    inner.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%remote, error = %e, "refused connection");
                }
            }
        });
    }
}

/// An accepted connection's place under [`Inner::connections_max`], given back when dropped.
struct AcceptedSlot(Arc<Inner>);

impl Drop for AcceptedSlot {
    fn drop(&mut self) {
        self.0.accepted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the verified certificate of a connection's peer names.
fn peer_identity(connection: &Connection) -> Result<PeerIdentity, String> {
    // A handshake accepted by quinn has a verified certificate (rustls checked it chains to
    // the cluster CA and is not revoked); without one the handshake fails before this point.
    let certs = connection
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| "the peer presented no certificate".to_string())?;
    let first = certs
        .first()
        .ok_or_else(|| "the peer presented no certificate".to_string())?;
    PeerIdentity::from_der(first).map_err(|e| e.to_string())
}

/// Accept the peer's unidirectional streams on a connection and read frames from them.
/// `identity`: the peer's, when already read (dialled connections).
async fn read_connection(
    inner: Arc<Inner>,
    connection: Connection,
    accepted: bool,
    identity: Option<Arc<PeerIdentity>>,
) {
    let identity = match identity.map_or_else(|| peer_identity(&connection).map(Arc::new), Ok) {
        Ok(id) => id,
        Err(reason) => {
            inner.stats.identity_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(remote = %connection.remote_address(), %reason, "refusing peer: its certificate names no identity");
            connection.close(VarInt::from_u32(4), reason.as_bytes());
            return;
        }
    };
    let id = connection.stable_id();
    inner
        .connections
        .lock()
        .expect("connections lock")
        .insert(id, (connection.clone(), identity.clone()));
    // An accepted connection must open its first stream within the Hello timeout (the
    // Hello itself is timed in `read_stream`); a silent one would hold a connection slot.
    let mut first = accepted;
    loop {
        let next = if first {
            first = false;
            match tokio::time::timeout(inner.hello_timeout, connection.accept_uni()).await {
                Ok(next) => next,
                Err(_) => {
                    close_without_hello(&inner, &connection, "no stream opened");
                    break;
                }
            }
        } else {
            connection.accept_uni().await
        };
        let Ok(stream) = next else {
            break;
        };
        tokio::spawn(read_stream(
            inner.clone(),
            connection.clone(),
            stream,
            accepted,
            identity.clone(),
        ));
    }
    inner
        .connections
        .lock()
        .expect("connections lock")
        .remove(&id);
}

/// Is `claimed` the address a connection comes from?
fn check_source(claimed: &NodeAddr, remote: SocketAddr) -> Result<(), String> {
    let same = claimed.port == remote.port()
        && claimed
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == remote.ip().to_canonical());
    if same {
        Ok(())
    } else {
        Err(format!(
            "a certificate without address claims {claimed} but connects from {remote}"
        ))
    }
}

/// Why a stream's reading ended early.
enum StreamError {
    Frame(FrameError),
    /// The Hello claims a node the certificate does not name.
    Identity(String),
    /// No Hello within the Hello timeout.
    HelloTimeout,
}

impl From<FrameError> for StreamError {
    fn from(e: FrameError) -> Self {
        StreamError::Frame(e)
    }
}

async fn read_stream(
    inner: Arc<Inner>,
    connection: Connection,
    mut stream: quinn::RecvStream,
    accepted: bool,
    identity: Arc<PeerIdentity>,
) {
    let mut decoder = FrameDecoder::new(inner.max_frame_bytes);
    let mut hello: Option<Hello> = None;
    // The last header seen and its encoded bytes: consecutive frames between the same two
    // processes with the same message name share it, and skip decoding it again.
    let mut cached: Option<(Bytes, Header)> = None;
    let mut bodies: Vec<Bytes> = Vec::new();
    let outcome: Result<(), StreamError> = async {
        // A stream must say Hello within the Hello timeout of its opening.
        let hello_deadline = tokio::time::Instant::now() + inner.hello_timeout; // determinism-ok: real transport only
        loop {
            let read = stream.read_chunk(READ_CHUNK_BYTES_MAX, true);
            let read = if hello.is_none() {
                match tokio::time::timeout_at(hello_deadline, read).await {
                    Ok(read) => read,
                    Err(_) => return Err(StreamError::HelloTimeout),
                }
            } else {
                read.await
            };
            match read {
                Ok(Some(chunk)) => decoder.push(&chunk.bytes),
                Ok(None) => return Ok(decoder.finish()?),
                Err(_) => return Ok(()), // connection broke: reported by the writer side
            }
            while let Some(frame) = decoder.next_frame()? {
                let Some(h) = &hello else {
                    let h = decode_hello(&frame)?;
                    if let Err(e) = identity.may_claim(&h.node) {
                        return Err(StreamError::Identity(e.to_string()));
                    }
                    if identity.addr.is_none() {
                        // An address-less (operator) certificate speaks only as the address
                        // it connects from: its endpoint dials and listens on one socket.
                        check_source(&h.node, connection.remote_address())
                            .map_err(StreamError::Identity)?;
                    }
                    if accepted {
                        adopt(&inner, &h, &connection);
                    } else {
                        learn_incarnation(&inner, &h, &connection);
                    }
                    hello = Some(h);
                    continue;
                };
                if let Some((header_bytes, _)) = &cached {
                    if frame.len() >= header_bytes.len()
                        && frame[..header_bytes.len()] == header_bytes[..]
                    {
                        bodies.push(frame.slice(header_bytes.len()..));
                        continue;
                    }
                }
                let envelope = decode_envelope(frame.clone())?;
                if !envelope.header.from.is_on(&h.node) {
                    return Err(FrameError::Malformed(format!(
                        "sender {} is not on peer node {}",
                        envelope.header.from, h.node
                    ))
                    .into());
                }
                if let Some((_, header)) = cached.take() {
                    flush(&inner, &identity, &header, &mut bodies).await;
                }
                let header_len = frame.len() - envelope.body.len();
                cached = Some((frame.slice(..header_len), envelope.header));
                bodies.push(envelope.body);
            }
            if let Some((_, header)) = &cached {
                flush(&inner, &identity, header, &mut bodies).await;
            }
        }
    }
    .await;
    if let Err(StreamError::Identity(reason)) = &outcome {
        inner.stats.identity_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(remote = %connection.remote_address(), %reason, "dropping connection: the peer claims an identity its certificate does not name");
        connection.close(VarInt::from_u32(4), reason.as_bytes());
    }
    if let Err(StreamError::HelloTimeout) = &outcome {
        close_without_hello(&inner, &connection, "no Hello on its stream");
    }
    if let Err(StreamError::Frame(e)) = outcome {
        inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
        let peer = hello.map_or_else(
            || connection.remote_address().to_string(),
            |h| h.node.to_string(),
        );
        tracing::warn!(%peer, reason = %e, "dropping connection: bad frame");
        connection.close(VarInt::from_u32(2), e.to_string().as_bytes());
    }
}

/// Close a connection that said no Hello within the Hello timeout (`what` it failed to do).
fn close_without_hello(inner: &Inner, connection: &Connection, what: &str) {
    inner.stats.hello_timeouts.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(remote = %connection.remote_address(), what, "dropping connection: no Hello within the Hello timeout");
    connection.close(VarInt::from_u32(5), b"no hello");
}

/// Hand a batch to the sink; when the receiving process is full, wait for it, and so read
/// nothing more from this stream meanwhile.
async fn flush(inner: &Inner, peer: &Arc<PeerIdentity>, header: &Header, bodies: &mut Vec<Bytes>) {
    if bodies.is_empty() {
        return;
    }
    inner
        .stats
        .frames_received
        .fetch_add(bodies.len() as u64, Ordering::Relaxed);
    let batch = compact(std::mem::take(bodies));
    if let Some(room) = inner.sink.deliver(peer, header, batch) {
        inner.stats.backpressured.fetch_add(1, Ordering::Relaxed);
        room.await;
    }
}

/// Copy a batch's bodies into one buffer of their own. A body sliced from the read buffer
/// keeps that whole buffer alive while it waits in a mailbox: a few small queued messages
/// could then hold many times the bytes they are counted for.
fn compact(bodies: Vec<Bytes>) -> Vec<Bytes> {
    let len = bodies.iter().map(Bytes::len).sum();
    let mut buf = BytesMut::with_capacity(len);
    for body in &bodies {
        buf.extend_from_slice(body);
    }
    let mut buf = buf.freeze();
    bodies.iter().map(|body| buf.split_to(body.len())).collect()
}

/// The peer of a connection this node dialled said hello: remember its incarnation.
fn learn_incarnation(inner: &Inner, hello: &Hello, connection: &Connection) {
    let peers = inner.peers.lock().expect("peers lock");
    if let Some(peer) = peers.get(&hello.node) {
        let same = peer
            .connection
            .lock()
            .expect("peer connection lock")
            .as_ref()
            .is_some_and(|c| c.stable_id() == connection.stable_id());
        if same {
            peer.incarnation.store(hello.incarnation, Ordering::Relaxed);
        }
    }
}

/// Use a connection a peer dialled for sending back to it, unless one exists already. A known
/// peer saying hello with a new incarnation restarted: its old connection is dead, so it is
/// failed now (links fire `exited` before any message of the new incarnation is delivered) and
/// the new connection takes its place.
fn adopt(inner: &Arc<Inner>, hello: &Hello, connection: &Connection) {
    let node = &hello.node;
    let stale = {
        let peers = inner.peers.lock().expect("peers lock");
        match peers.get(node) {
            None => None,
            Some(p) => {
                let known = p.incarnation.load(Ordering::Relaxed);
                if known != 0 && known != hello.incarnation {
                    Some(p.clone())
                } else {
                    return;
                }
            }
        }
    };
    if let Some(old) = stale {
        tracing::info!(peer = %node, "peer restarted; dropping its previous connection");
        if let Some(c) = old.connection.lock().expect("peer connection lock").take() {
            c.close(VarInt::from_u32(3), b"peer restarted");
        }
        inner.fail_peer(&old, false);
    }
    let peer = {
        let mut peers = inner.peers.lock().expect("peers lock");
        if peers.contains_key(node) {
            return;
        }
        let peer = inner.new_peer(node);
        peer.incarnation.store(hello.incarnation, Ordering::Relaxed);
        peers.insert(node.clone(), peer.clone());
        peer
    };
    let inner = inner.clone();
    let connection = connection.clone();
    tokio::spawn(async move { run_writer(&inner, &peer, connection).await });
}

/// A file's change marker: modification time and length.
fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Poll the revocation list every [`CRL_POLL_INTERVAL`] (real transport only) and apply a
/// changed one: new handshakes in both directions check it, and open connections whose
/// certificate it revokes are closed. Stops with the transport.
async fn watch_crl(inner: std::sync::Weak<Inner>, path: std::path::PathBuf) {
    let mut stamp = file_stamp(&path);
    loop {
        tokio::time::sleep(CRL_POLL_INTERVAL).await; // determinism-ok: real transport
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let now = file_stamp(&path);
        if now == stamp || now.is_none() {
            continue;
        }
        stamp = now;
        if let Err(e) = inner.apply_crl(&path) {
            tracing::warn!(path = %path.display(), error = %e, "revocation list not applied; keeping the previous one");
        }
    }
}

impl Inner {
    /// Load the revocation list at `path` and apply it.
    fn apply_crl(&self, path: &std::path::Path) -> Result<(), TlsError> {
        let Some(crl) = crate::tls::load_crl(path)? else {
            return Ok(());
        };
        let revoked = crl_serials(&crl)?;
        let (server, client) = quinn_configs_with(&self.identity, vec![crl])?;
        self.endpoint.set_server_config(Some(server));
        *self.client_config.lock().expect("client config lock") = client;
        self.stats.crl_reloads.fetch_add(1, Ordering::Relaxed);
        let doomed: Vec<(Connection, Arc<PeerIdentity>)> = self
            .connections
            .lock()
            .expect("connections lock")
            .values()
            .filter(|(_, id)| is_revoked(&id.serial, &revoked))
            .cloned()
            .collect();
        tracing::info!(path = %path.display(), revoked = revoked.len(), closing = doomed.len(), "revocation list loaded");
        for (connection, id) in doomed {
            tracing::warn!(peer = %id, remote = %connection.remote_address(), "closing the connection of a revoked certificate");
            self.stats.revoked_closed.fetch_add(1, Ordering::Relaxed);
            connection.close(VarInt::from_u32(5), b"certificate revoked");
        }
        Ok(())
    }
}
