//! A peer floods a slow process with 1 GiB of valid messages over real QUIC on loopback: the
//! receiver's memory stays bounded (its transport stops reading the sender's stream while the
//! process is behind) and every message the sender's transport accepted is delivered, in
//! order, exactly once.
//!
//! The receiver runs in a child process (this test binary re-executed), so that its peak
//! resident memory (`VmHWM` in `/proc/self/status`) measures the receiving node alone. Its
//! actix system runs on a multi-thread tokio runtime: the transport then reads on worker
//! threads while the slow handler holds the actor thread, the case where reading is not
//! throttled by the handler sharing its thread, and so the one where only the mailbox bound
//! holds memory back.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::{Context, Handlers, Message, Node, NodeAddr, NodeConfig, Process, Upid};
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
    let Ok(ca_pem) = std::env::var("PLATEAU_FLOOD_CA") else {
        return;
    };
    let cert = std::env::var("PLATEAU_FLOOD_CERT").expect("certificate");
    let key = std::env::var("PLATEAU_FLOOD_KEY").expect("key");
    let identity = NodeIdentity::from_pem(&ca_pem, &cert, &key).expect("identity");
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

    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("multi-thread runtime")
    };
    let (d, b) = (delivered.clone(), broken.clone());
    let (frames_received, backpressured) =
        actix_rt::System::with_tokio_rt(rt).block_on(async move {
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
    let (cert, key) = ca.issue("receiver").unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "runtime::flood::flood_receiver_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PLATEAU_FLOOD_CA", ca.cert_pem())
        .env("PLATEAU_FLOOD_CERT", cert)
        .env("PLATEAU_FLOOD_KEY", key)
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

    let identity = NodeIdentity::issue(&ca, "sender").unwrap();
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
