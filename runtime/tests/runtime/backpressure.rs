//! Bounded mailboxes with backpressure, over real QUIC on loopback.
//!
//! The flood test: a peer floods a slow process with 1 GiB of valid messages; the receiver's
//! memory stays bounded (its transport stops reading the sender's stream while the process is
//! behind) and every message the sender's transport accepted is delivered, in order, exactly
//! once. The receiver runs in a child process (this test binary re-executed), so that its peak
//! resident memory (`VmHWM` in `/proc/self/status`) measures the receiving node alone.
//!
//! The flood test's receiver runs its transport on worker threads ([`transport_on_workers`]),
//! so that a slow handler does not also slow the reading: the case where only the bound holds
//! memory back. Before the bound, its receiver peaked at 673 MiB. The other tests run on the
//! default single-thread host, with a small bound.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::Role;
use plateau_runtime::{
    Context, Handlers, Message, Node, NodeAddr, NodeConfig, Process, ProcessRef, Upid,
};
use serde::{Deserialize, Serialize};

/// 16,384 × 64 KiB = 1 GiB of bodies.
const MESSAGES: u64 = 16_384;
const BODY_BYTES: usize = 64 * 1024;
/// The first messages are handled slowly (the process falls behind), the rest at full speed.
const SLOW_MESSAGES: u64 = 1_024;
const SLOW_HANDLER: Duration = Duration::from_millis(3);
/// The stated bound on the receiver's peak resident memory.
const RECEIVER_RSS_KIB_MAX: u64 = 128 * 1024;
/// The sender waits while this much is queued for the receiver (its queue drops beyond
/// `PEER_QUEUE_BYTES_MAX`).
const SENDER_QUEUED_BYTES_PACE: usize = 16 * 1024 * 1024;
/// How long the whole transfer may take before the test gives up (a liveness limit, not a
/// timing assertion).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chunk {
    seq: u64,
    data: String,
}
impl Message for Chunk {
    const NAME: &'static str = "test.flood.Chunk";
}

/// Checks that chunks come in order, once each; slow for the first `SLOW_MESSAGES`.
struct SlowSink {
    delivered: Arc<AtomicU64>,
    broken: Arc<AtomicBool>,
}

impl SlowSink {
    fn handle_chunk(&mut self, _ctx: &mut Context<'_>, _from: &Upid, chunk: Chunk) {
        let expected = self.delivered.load(Ordering::SeqCst);
        if chunk.seq != expected || chunk.data.len() != BODY_BYTES {
            eprintln!(
                "flood receiver: got seq {} ({} bytes), expected seq {expected}",
                chunk.seq,
                chunk.data.len()
            );
            self.broken.store(true, Ordering::SeqCst);
        }
        if chunk.seq < SLOW_MESSAGES {
            std::thread::sleep(SLOW_HANDLER);
        }
        self.delivered.store(chunk.seq + 1, Ordering::SeqCst);
    }
}

impl Process for SlowSink {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_chunk);
    }
}

/// An actix system whose tokio tasks (the transport) run on two worker threads while the
/// processes run on the system's thread: a handler's time then does not also slow the reading,
/// which is when only the mailbox bound holds memory back. (On the default single-thread
/// host, a handler's time holds back every reader too, and a reader gets at most its QUIC
/// window ahead of the process between two of its turns.)
fn transport_on_workers() -> actix_rt::SystemRunner {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("multi-thread runtime")
    })
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child-process half of the flood test: the receiving node.
#[test]
fn flood_receiver_child() {
    let Ok(ca_dir) = std::env::var("PLATEAU_FLOOD_CA_DIR") else {
        return;
    };
    let ca = ClusterCa::load(std::path::Path::new(&ca_dir)).expect("the CA");
    // Self-issued once the port is known: a dialled peer's certificate must name its address.
    let identity =
        NodeIdentity::self_issuing(&ca, "receiver", Role::Slave, None).expect("identity");
    let delivered = Arc::new(AtomicU64::new(0));
    let broken = Arc::new(AtomicBool::new(false));

    // Sample the resident set throughout (the kernel's high-water mark is the authoritative
    // peak; the samples show it was not a single spike).
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut max = 0;
            while !done.load(Ordering::SeqCst) {
                max = max.max(status_kib("VmRSS"));
                std::thread::sleep(Duration::from_millis(10));
            }
            max
        })
    };

    let (d, b) = (delivered.clone(), broken.clone());
    let (frames_received, backpressured) = transport_on_workers().block_on(async move {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let node = Node::start(NodeConfig::quic(bind, identity, 1)).expect("receiver node");
        node.spawn(
            "sink",
            SlowSink {
                delivered: d.clone(),
                broken: b.clone(),
            },
        )
        .expect("spawn sink");
        println!("FLOOD_PORT={}", node.addr().port);
        let deadline = tokio::time::Instant::now() + TRANSFER_DEADLINE;
        while d.load(Ordering::SeqCst) < MESSAGES
            && !b.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = node.transport().expect("transport").stats();
        let counts = (
            stats.frames_received.load(Ordering::Relaxed),
            stats.backpressured.load(Ordering::Relaxed),
        );
        node.shutdown();
        counts
    });
    done.store(true, Ordering::SeqCst);
    let sampled = sampler.join().unwrap_or(0);
    println!(
        "FLOOD_RESULT delivered={} in_order={} frames_received={frames_received} \
         backpressured={backpressured} peak_rss_kib={} max_sampled_rss_kib={sampled}",
        delivered.load(Ordering::SeqCst),
        !broken.load(Ordering::SeqCst),
        status_kib("VmHWM"),
    );
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for a line of the child's output that holds `prefix`; what follows from it (the test
/// harness prints the test's name on the same line, before).
fn line_with(rx: &mpsc::Receiver<String>, prefix: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit; // determinism-ok: real-network test
    loop {
        let left = deadline.saturating_duration_since(Instant::now()); // determinism-ok: as above
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(prefix) => {
                return line[line.find(prefix).unwrap_or(0)..].to_string()
            }
            Ok(line) => eprintln!("flood receiver: {line}"),
            Err(e) => panic!("the flood receiver printed no {prefix} line: {e}"),
        }
    }
}

fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .to_string()
}

#[test]
fn a_flood_of_1_gib_to_a_slow_process_keeps_the_receiver_memory_bounded_and_loses_nothing() {
    let ca = ClusterCa::generate().unwrap();
    let ca_dir = std::env::temp_dir().join(format!("plateau-flood-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ca_dir);
    ca.save(&ca_dir).unwrap();
    let _cleanup = RemoveDirOnDrop(ca_dir.clone());
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtime::backpressure::flood_receiver_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PLATEAU_FLOOD_CA_DIR", &ca_dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let port: u16 = line_with(&rx, "FLOOD_PORT=", Duration::from_secs(120))
        .trim_start_matches("FLOOD_PORT=")
        .trim()
        .parse()
        .unwrap();

    let identity = NodeIdentity::self_issuing(&ca, "sender", Role::Slave, None).unwrap();
    let result = actix_rt::System::new().block_on(async move {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let node = Node::start(NodeConfig::quic(bind, identity, 2)).unwrap();
        let transport = node.transport().unwrap().clone();
        let receiver = NodeAddr::new("127.0.0.1", port);
        let to = Upid::new("sink", &receiver);
        let from = node.upid("flooder");
        let data = "x".repeat(BODY_BYTES);
        let deadline = tokio::time::Instant::now() + TRANSFER_DEADLINE;
        for seq in 0..MESSAGES {
            // Pace by the queue: a full queue drops, and this test wants every byte through.
            while transport.queued_bytes(&receiver) > SENDER_QUEUED_BYTES_PACE {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "sender stuck at message {seq}"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            node.send(
                &from,
                &to,
                Chunk {
                    seq,
                    data: data.clone(),
                },
            );
        }
        let stats = transport.stats();
        let accepted = stats.frames_sent.load(Ordering::Relaxed);
        let dropped = stats.dropped.load(Ordering::Relaxed);
        assert_eq!(dropped, 0, "the sender's own queue dropped messages");
        assert_eq!(accepted, MESSAGES, "every message was accepted for sending");
        // Keep the sender's transport running until the receiver reports.
        let mut line = None;
        while line.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver did not report in time"
            );
            match rx.try_recv() {
                Ok(l) if l.contains("FLOOD_RESULT") => line = Some(l),
                Ok(_) | Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(mpsc::TryRecvError::Disconnected) => panic!("the flood receiver exited"),
            }
        }
        node.shutdown();
        (accepted, line.unwrap())
    });
    let (accepted, line) = result;
    let _ = child.0.wait();
    eprintln!("flood: {line}");
    let delivered: u64 = field(&line, "delivered").parse().unwrap();
    let peak: u64 = field(&line, "peak_rss_kib").parse().unwrap();
    assert_eq!(field(&line, "in_order"), "true", "{line}");
    assert_eq!(
        delivered, accepted,
        "every accepted message delivered: {line}"
    );
    assert!(
        peak < RECEIVER_RSS_KIB_MAX,
        "receiver peak RSS {peak} KiB over the bound {RECEIVER_RSS_KIB_MAX} KiB: {line}"
    );
}

// ---- one full process among others, in one test process ------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ping(u64);
impl Message for Ping {
    const NAME: &'static str = "test.flood.Ping";
}

/// Counts chunks (checking their order) and pings; slow while its gate is closed.
#[derive(Default)]
struct Gated {
    gate: Arc<AtomicBool>,
    chunks: u64,
    out_of_order: u64,
    pings: u64,
}

impl Gated {
    fn handle_chunk(&mut self, _ctx: &mut Context<'_>, _from: &Upid, chunk: Chunk) {
        if chunk.seq != self.chunks {
            self.out_of_order += 1;
        }
        self.chunks += 1;
        if !self.gate.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn handle_ping(&mut self, _ctx: &mut Context<'_>, _from: &Upid, _ping: Ping) {
        self.pings += 1;
    }
}

impl Process for Gated {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_chunk).on(Self::handle_ping);
    }
}

async fn counts(p: &ProcessRef<Gated>) -> (u64, u64, u64) {
    p.call(|g: &mut Gated, _| (g.chunks, g.out_of_order, g.pings))
        .await
        .unwrap_or_default()
}

/// A node whose processes each take at most `mailbox_remote_bytes_max` from other nodes.
fn quic_node(ca: &ClusterCa, name: &str, seed: u64, mailbox_remote_bytes_max: usize) -> Node {
    let identity = NodeIdentity::self_issuing(ca, name, Role::Slave, None).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = NodeConfig::quic(bind, identity, seed);
    config.mailbox_remote_bytes_max = mailbox_remote_bytes_max;
    Node::start(config).unwrap()
}

/// A small bound, so that it is reached on the default single-thread host too, where a slow
/// handler also holds back every reader and so lets less arrive between two of its turns.
const SMALL_BOUND: usize = 256 * 1024;

/// Send 64 KiB chunks from `node` to `to` until `stop` is set, pacing by the queue so that
/// none is dropped; returns how many the transport accepted.
fn flood(node: Node, to: Upid, stop: Arc<AtomicBool>) -> actix_rt::task::JoinHandle<u64> {
    actix_rt::spawn(async move {
        let transport = node.transport().unwrap().clone();
        let from = node.upid("flooder");
        let data = "x".repeat(BODY_BYTES);
        let mut seq = 0;
        while !stop.load(Ordering::SeqCst) {
            if transport.queued_bytes(&to.node()) > SENDER_QUEUED_BYTES_PACE {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            node.send(
                &from,
                &to,
                Chunk {
                    seq,
                    data: data.clone(),
                },
            );
            seq += 1;
        }
        assert_eq!(transport.stats().dropped.load(Ordering::Relaxed), 0);
        transport.stats().frames_sent.load(Ordering::Relaxed)
    })
}

/// Poll `cond` until it holds, or fail after `limit`.
async fn eventually<Fut: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> Fut,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn backpressured(node: &Node) -> u64 {
    node.transport()
        .unwrap()
        .stats()
        .backpressured
        .load(Ordering::Relaxed)
}

#[test]
fn a_full_process_holds_back_its_senders_stream_but_not_other_peers() {
    actix_rt::System::new().block_on(async {
        let ca = ClusterCa::generate().unwrap();
        let receiver = quic_node(&ca, "receiver", 1, SMALL_BOUND);
        let flooder = quic_node(&ca, "flooder", 2, SMALL_BOUND);
        let other = quic_node(&ca, "other", 3, SMALL_BOUND);
        let gate = Arc::new(AtomicBool::new(false));
        let slow = receiver
            .spawn(
                "slow",
                Gated {
                    gate: gate.clone(),
                    ..Gated::default()
                },
            )
            .unwrap();
        let quick = receiver.spawn("quick", Gated::default()).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let flooding = flood(flooder.clone(), slow.upid().clone(), stop.clone());
        eventually(
            Duration::from_secs(60),
            "the flooder's stream held back",
            || std::future::ready(backpressured(&receiver) > 0),
        )
        .await;

        // Another peer reaches another process of the node while the slow one is full.
        for i in 0..100 {
            other.send(&other.upid("client"), quick.upid(), Ping(i));
        }
        eventually(
            Duration::from_secs(60),
            "the other peer's pings delivered",
            || async { counts(&quick).await.2 == 100 },
        )
        .await;
        assert!(!gate.load(Ordering::SeqCst));

        // Open the gate: everything the flooder's transport accepted arrives, in order.
        gate.store(true, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
        let accepted = flooding.await.unwrap();
        eventually(
            Duration::from_secs(120),
            "every accepted chunk delivered",
            || async { counts(&slow).await.0 >= accepted },
        )
        .await;
        let (chunks, out_of_order, _) = counts(&slow).await;
        assert_eq!((chunks, out_of_order), (accepted, 0));
        for n in [receiver, flooder, other] {
            n.shutdown();
        }
    });
}

#[test]
fn a_process_that_stops_releases_the_stream_waiting_for_it() {
    actix_rt::System::new().block_on(async {
        let ca = ClusterCa::generate().unwrap();
        let receiver = quic_node(&ca, "receiver", 1, SMALL_BOUND);
        let flooder = quic_node(&ca, "flooder", 2, SMALL_BOUND);
        // Its gate stays closed: it never catches up by itself.
        let slow = receiver.spawn("slow", Gated::default()).unwrap();
        let quick = receiver.spawn("quick", Gated::default()).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let flooding = flood(flooder.clone(), slow.upid().clone(), stop.clone());
        eventually(
            Duration::from_secs(60),
            "the flooder's stream held back",
            || std::future::ready(backpressured(&receiver) > 0),
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        flooding.await.unwrap();
        // Behind the chunks on the same stream.
        flooder.send(&flooder.upid("flooder"), quick.upid(), Ping(0));
        slow.stop();
        eventually(
            Duration::from_secs(120),
            "the ping behind the stopped process's chunks delivered",
            || async { counts(&quick).await.2 == 1 },
        )
        .await;
        receiver.shutdown();
        flooder.shutdown();
    });
}

/// Removes the test's CA directory however the test ends.
struct RemoveDirOnDrop(std::path::PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
