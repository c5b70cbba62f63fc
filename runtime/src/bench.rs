//! `plateau bench runtime`: message throughput of the runtime, measured (not a test).
//!
//! - `local_msgs_per_s`: typed sends between two processes of one node (actix mailboxes);
//! - `quic_msgs_per_s`: 64-byte messages between two nodes over loopback QUIC with mutual TLS,
//!   each node on its own thread;
//! - `raw_quinn_msgs_per_s`: the same frames pushed through one bare quinn stream (the ceiling);
//! - `quic_vs_raw`: their ratio.
//!
//! The sender keeps a bounded window of messages in flight (the receiver acknowledges every
//! [`ACK_EVERY`] messages), so the figures are sustained rates, not queue-filling bursts.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::identity::Role;
use crate::message::{encode_frame, FrameDecoder, Message};
use crate::process::{Context, Handlers, Process};
use crate::tls::{CertSpec, ClusterCa, NodeIdentity, CLUSTER_SERVER_NAME};
use crate::transport::quinn_configs;
use crate::upid::Upid;
use crate::{Node, NodeConfig};

/// The receiver acknowledges every this many messages.
pub const ACK_EVERY: u64 = 1024;
/// Messages the sender keeps unacknowledged at most.
pub const WINDOW: u64 = 64 * 1024;

/// The figures of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeBenchReport {
    /// Messages between two processes of one node per second.
    pub local_msgs_per_s: f64,
    /// 64-byte messages between two nodes over QUIC + mTLS per second.
    pub quic_msgs_per_s: f64,
    /// The same frames through a bare quinn stream per second.
    pub raw_quinn_msgs_per_s: f64,
    /// `quic_msgs_per_s / raw_quinn_msgs_per_s`.
    pub quic_vs_raw: f64,
    /// Messages per measurement.
    pub messages: u64,
    /// Bytes of one frame on the wire in the QUIC measurements.
    pub frame_bytes: usize,
}

#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes_compat")] Vec<u8>);
impl Message for Blob {
    const NAME: &'static str = "bench.Blob";
}

mod serde_bytes_compat {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let b: &[u8] = <&[u8]>::deserialize(d)?;
        Ok(b.to_vec())
    }
}

#[derive(Serialize, Deserialize)]
struct Ack(u64);
impl Message for Ack {
    const NAME: &'static str = "bench.Ack";
}

#[derive(Serialize, Deserialize)]
struct Go(Upid);
impl Message for Go {
    const NAME: &'static str = "bench.Go";
}

struct Sender {
    total: u64,
    sent: u64,
    acked: u64,
    to: Option<Upid>,
    payload_bytes: usize,
}

impl Sender {
    fn pump(&mut self, ctx: &mut Context<'_>) {
        let Some(to) = self.to.clone() else { return };
        while self.sent < self.total && self.sent - self.acked < WINDOW {
            ctx.send(&to, Blob(vec![0x5a; self.payload_bytes]));
            self.sent += 1;
        }
    }
    fn handle_go(&mut self, ctx: &mut Context<'_>, _from: &Upid, go: Go) {
        self.to = Some(go.0);
        self.pump(ctx);
    }
    fn handle_ack(&mut self, ctx: &mut Context<'_>, _from: &Upid, ack: Ack) {
        self.acked = self.acked.max(ack.0);
        self.pump(ctx);
    }
}

impl Process for Sender {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_go).on(Self::handle_ack);
    }
}

struct Receiver {
    total: u64,
    received: u64,
    started: Option<std::time::Instant>,
    done: mpsc::Sender<Duration>,
}

impl Receiver {
    fn handle_blob(&mut self, ctx: &mut Context<'_>, from: &Upid, _b: Blob) {
        if self.started.is_none() {
            self.started = Some(std::time::Instant::now()); // determinism-ok: benchmark timing
        }
        self.received += 1;
        if self.received.is_multiple_of(ACK_EVERY) {
            ctx.send(from, Ack(self.received));
        }
        if self.received == self.total {
            let elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
            let _ = self.done.send(elapsed);
        }
    }
}

impl Process for Receiver {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_blob);
    }
}

fn rate(messages: u64, d: Duration) -> f64 {
    messages as f64 / d.as_secs_f64().max(1e-9)
}

/// Typed sends between two processes of one node.
pub fn local_msgs_per_s(messages: u64) -> f64 {
    let (tx, rx) = mpsc::channel();
    actix_rt::System::new().block_on(async move {
        let node = Node::start(NodeConfig::local("127.0.0.1", 1, 1)).expect("local node");
        let r = node
            .spawn(
                "receiver",
                Receiver {
                    total: messages,
                    received: 0,
                    started: None,
                    done: tx,
                },
            )
            .expect("spawn");
        let s = node
            .spawn(
                "sender",
                Sender {
                    total: messages,
                    sent: 0,
                    acked: 0,
                    to: None,
                    payload_bytes: 64,
                },
            )
            .expect("spawn");
        s.post(s.upid(), Go(r.upid().clone()));
        // Wait without blocking the system thread.
        loop {
            if let Ok(d) = rx.try_recv() {
                node.shutdown();
                return rate(messages, d);
            }
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// 64-byte messages between two nodes (two threads) over QUIC with mutual TLS.
pub fn quic_msgs_per_s(messages: u64) -> f64 {
    let ca = ClusterCa::generate().expect("CA");
    let id_r = NodeIdentity::self_issuing(&ca, "receiver", Role::Master, None).expect("cert");
    let id_s = NodeIdentity::self_issuing(&ca, "sender", Role::Master, None).expect("cert");
    let (done_tx, done_rx) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel::<Upid>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let receiver = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            let node = Node::start(NodeConfig::quic(bind, id_r, 1)).expect("receiver node");
            let r = node
                .spawn(
                    "receiver",
                    Receiver {
                        total: messages,
                        received: 0,
                        started: None,
                        done: done_tx,
                    },
                )
                .expect("spawn");
            addr_tx.send(r.upid().clone()).expect("main waits");
            while stop_rx.try_recv().is_err() {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            node.shutdown();
        })
    });
    let target = addr_rx.recv().expect("receiver address");
    let (sdone_tx, sdone_rx) = mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            let node = Node::start(NodeConfig::quic(bind, id_s, 2)).expect("sender node");
            let s = node
                .spawn(
                    "sender",
                    Sender {
                        total: messages,
                        sent: 0,
                        acked: 0,
                        to: None,
                        payload_bytes: 64,
                    },
                )
                .expect("spawn");
            s.post(s.upid(), Go(target));
            while sdone_rx.try_recv().is_err() {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            node.shutdown();
        })
    });
    let elapsed = done_rx.recv().expect("receiver finishes");
    let _ = stop_tx.send(());
    let _ = sdone_tx.send(());
    let _ = receiver.join();
    let _ = sender.join();
    rate(messages, elapsed)
}

/// Size of one benchmark frame on the wire (length prefix included).
pub fn frame_bytes() -> usize {
    let from: Upid = "sender@127.0.0.1:40000".parse().expect("upid");
    let to: Upid = "receiver@127.0.0.1:40001".parse().expect("upid");
    let mut out = BytesMut::new();
    encode_frame(&mut out, &from, &to, &Blob(vec![0x5a; 64])).expect("encodes");
    out.len()
}

/// The same frames through one bare quinn stream between two threads.
pub fn raw_quinn_msgs_per_s(messages: u64) -> f64 {
    let ca = ClusterCa::generate().expect("CA");
    let (server_cfg, _) = quinn_configs(
        &NodeIdentity::issue(&ca, &CertSpec::new("r", Role::Operator)).expect("cert"),
    )
    .expect("tls");
    let (_, client_cfg) = quinn_configs(
        &NodeIdentity::issue(&ca, &CertSpec::new("s", Role::Operator)).expect("cert"),
    )
    .expect("tls");
    let from: Upid = "sender@127.0.0.1:40000".parse().expect("upid");
    let to: Upid = "receiver@127.0.0.1:40001".parse().expect("upid");
    let mut frame = BytesMut::new();
    encode_frame(&mut frame, &from, &to, &Blob(vec![0x5a; 64])).expect("encodes");
    let frame = frame.freeze();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let ep = quinn::Endpoint::server(server_cfg, "127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            addr_tx
                .send(ep.local_addr().expect("addr"))
                .expect("main waits");
            let conn = ep
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("handshake");
            let mut stream = conn.accept_uni().await.expect("stream");
            let mut decoder = FrameDecoder::new(1 << 20);
            let mut count = 0u64;
            let mut started = None;
            while count < messages {
                let Ok(Some(chunk)) = stream.read_chunk(256 * 1024, true).await else {
                    break;
                };
                started.get_or_insert_with(std::time::Instant::now); // determinism-ok: benchmark timing
                decoder.push(&chunk.bytes);
                while let Ok(Some(_)) = decoder.next_frame() {
                    count += 1;
                }
            }
            let _ = done_tx.send(started.map(|s| s.elapsed()).unwrap_or_default());
            conn.close(0u32.into(), b"done");
            ep.wait_idle().await;
        })
    });
    let server_addr = addr_rx.recv().expect("server address");
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let mut ep =
                quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("bind");
            ep.set_default_client_config(client_cfg);
            let conn = ep
                .connect(server_addr, CLUSTER_SERVER_NAME)
                .expect("dial")
                .await
                .expect("handshake");
            let mut stream = conn.open_uni().await.expect("stream");
            // Write in batches as the transport does.
            let per_batch = (256 * 1024 / frame.len()).max(1) as u64;
            let mut batch = BytesMut::with_capacity(per_batch as usize * frame.len());
            let mut sent = 0u64;
            while sent < messages {
                let n = per_batch.min(messages - sent);
                for _ in 0..n {
                    batch.extend_from_slice(&frame);
                }
                sent += n;
                if stream.write_chunk(batch.split().freeze()).await.is_err() {
                    break;
                }
            }
            let _ = stream.finish();
            let _ = conn.closed().await;
        })
    });
    let elapsed = done_rx.recv().expect("server finishes");
    let _ = server.join();
    let _ = client.join();
    rate(messages, elapsed)
}

/// Run all measurements with `messages` messages each.
pub fn run(messages: u64) -> RuntimeBenchReport {
    let local = local_msgs_per_s(messages);
    let quic = quic_msgs_per_s(messages);
    let raw = raw_quinn_msgs_per_s(messages);
    RuntimeBenchReport {
        local_msgs_per_s: local.round(),
        quic_msgs_per_s: quic.round(),
        raw_quinn_msgs_per_s: raw.round(),
        quic_vs_raw: (quic / raw * 1000.0).round() / 1000.0,
        messages,
        frame_bytes: frame_bytes(),
    }
}
