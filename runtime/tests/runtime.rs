//! Integration tests of the runtime: ordering, timers, links, mutual TLS, hostile frames, the
//! simulated network's faults and cross-process determinism. One test binary for the crate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use plateau_runtime::message::{encode_frame, encode_hello, Hello, PROTOCOL_VERSION};
use plateau_runtime::sim::{NetworkFaults, Sim, SimConfig};
use plateau_runtime::tls::{CertSpec, ClusterCa, NodeIdentity, CLUSTER_SERVER_NAME};
use plateau_runtime::transport::quinn_configs;
use plateau_runtime::{
    Context, Handlers, Message, Node, NodeAddr, NodeConfig, Process, ProcessRef, Role, TimerId,
    Upid,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Num(u64);
impl Message for Num {
    const NAME: &'static str = "test.Num";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SendMany {
    to: Upid,
    count: u64,
}
impl Message for SendMany {
    const NAME: &'static str = "test.SendMany";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Watch(Upid);
impl Message for Watch {
    const NAME: &'static str = "test.Watch";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick(u32);
impl Message for Tick {
    const NAME: &'static str = "test.Tick";
}

/// Records what it receives; sends on request; watches on request.
#[derive(Default)]
struct Recorder {
    nums: Vec<(Upid, u64)>,
    exited: Vec<Upid>,
    ticks: Vec<u32>,
    cancelled: Option<TimerId>,
}

impl Recorder {
    fn handle_num(&mut self, _ctx: &mut Context<'_>, from: &Upid, n: Num) {
        self.nums.push((from.clone(), n.0));
    }
    fn handle_send_many(&mut self, ctx: &mut Context<'_>, _from: &Upid, m: SendMany) {
        for i in 0..m.count {
            ctx.send(&m.to, Num(i));
        }
    }
    fn handle_watch(&mut self, ctx: &mut Context<'_>, _from: &Upid, w: Watch) {
        ctx.link(&w.0);
    }
    fn handle_tick(&mut self, _ctx: &mut Context<'_>, _from: &Upid, t: Tick) {
        self.ticks.push(t.0);
    }
}

impl Process for Recorder {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_num)
            .on(Self::handle_send_many)
            .on(Self::handle_watch)
            .on(Self::handle_tick);
    }
    fn exited(&mut self, _ctx: &mut Context<'_>, upid: &Upid) {
        self.exited.push(upid.clone());
    }
}

/// Poll `cond` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    actix_rt::System::new().block_on(f);
}

/// Identities bound to certificates, role policies and revocation over real QUIC.
#[path = "identity/mod.rs"]
mod identity;

fn quic_node(ca: &ClusterCa, seed: u64) -> Node {
    let identity = NodeIdentity::self_issuing(ca, "node", Role::Slave, None).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Node::start(NodeConfig::quic(bind, identity, seed)).unwrap()
}

async fn nums(r: &ProcessRef<Recorder>) -> Vec<(Upid, u64)> {
    r.call(|p: &mut Recorder, _| p.nums.clone()).await.unwrap()
}

async fn exited(r: &ProcessRef<Recorder>) -> Vec<Upid> {
    r.call(|p: &mut Recorder, _| p.exited.clone())
        .await
        .unwrap()
}

#[test]
fn local_messages_arrive_in_order_and_timers_fire_unless_cancelled() {
    run(async {
        let node = Node::start(NodeConfig::local("127.0.0.1", 5999, 1)).unwrap();
        let a = node.spawn("a", Recorder::default()).unwrap();
        let b = node.spawn("b", Recorder::default()).unwrap();
        assert!(
            node.spawn("b", Recorder::default()).is_err(),
            "names are unique"
        );
        a.post(
            a.upid(),
            SendMany {
                to: b.upid().clone(),
                count: 10_000,
            },
        );
        eventually(Duration::from_secs(20), "10k local messages", || async {
            nums(&b).await.len() == 10_000
        })
        .await;
        let got = nums(&b).await;
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (from, n))| *n == i as u64 && from == a.upid()));

        a.call(|p: &mut Recorder, ctx| {
            ctx.delay(Duration::from_millis(30), Tick(1));
            p.cancelled = Some(ctx.delay(Duration::from_millis(10), Tick(2)));
            ctx.cancel(p.cancelled.unwrap());
            ctx.delay(Duration::from_millis(60), Tick(3));
        })
        .await
        .unwrap();
        eventually(Duration::from_secs(10), "timers", || async {
            a.call(|p: &mut Recorder, _| p.ticks.len()).await.unwrap() == 2
        })
        .await;
        assert_eq!(
            a.call(|p: &mut Recorder, _| p.ticks.clone()).await.unwrap(),
            vec![1, 3]
        );
        node.shutdown();
    });
}

#[test]
fn remote_messages_arrive_in_order_both_ways_over_one_connection() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let n1 = quic_node(&ca, 1);
        let n2 = quic_node(&ca, 2);
        let a = n1.spawn("a", Recorder::default()).unwrap();
        let b = n2.spawn("b", Recorder::default()).unwrap();
        a.post(
            a.upid(),
            SendMany {
                to: b.upid().clone(),
                count: 20_000,
            },
        );
        eventually(
            Duration::from_secs(30),
            "20k messages over QUIC",
            || async { nums(&b).await.len() == 20_000 },
        )
        .await;
        let got = nums(&b).await;
        for (i, (from, n)) in got.iter().enumerate() {
            assert_eq!(*n, i as u64, "message {i} out of order");
            assert_eq!(from, a.upid());
        }
        // The answer goes back on the connection node 1 dialled.
        b.post(
            b.upid(),
            SendMany {
                to: a.upid().clone(),
                count: 100,
            },
        );
        eventually(Duration::from_secs(10), "replies", || async {
            nums(&a).await.len() == 100
        })
        .await;
        assert!(n2.transport().unwrap().has_peer(n1.addr()));
        n1.shutdown();
        n2.shutdown();
    });
}

#[test]
fn links_fire_exited_when_a_process_or_its_node_goes_away() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let n1 = quic_node(&ca, 1);
        let n2 = quic_node(&ca, 2);
        let watcher = n1.spawn("watcher", Recorder::default()).unwrap();
        let local = n1.spawn("local", Recorder::default()).unwrap();
        let remote = n2.spawn("remote", Recorder::default()).unwrap();

        // Local: a process that terminates.
        watcher.post(watcher.upid(), Watch(local.upid().clone()));
        // Local: a process that never existed.
        let ghost = n1.upid("ghost");
        watcher.post(watcher.upid(), Watch(ghost.clone()));
        // Remote: a process whose node shuts down. Prove the connection works first.
        watcher.post(watcher.upid(), Watch(remote.upid().clone()));
        watcher.post(
            watcher.upid(),
            SendMany {
                to: remote.upid().clone(),
                count: 1,
            },
        );
        eventually(Duration::from_secs(10), "connection up", || async {
            nums(&remote).await.len() == 1
        })
        .await;
        eventually(Duration::from_secs(5), "ghost exited", || async {
            exited(&watcher).await.contains(&ghost)
        })
        .await;
        assert!(!exited(&watcher).await.contains(local.upid()));
        local.stop();
        eventually(Duration::from_secs(5), "local exited", || async {
            exited(&watcher).await.contains(local.upid())
        })
        .await;
        assert!(
            !exited(&watcher).await.contains(remote.upid()),
            "remote still up"
        );
        n2.shutdown();
        eventually(Duration::from_secs(15), "remote exited", || async {
            exited(&watcher).await.contains(remote.upid())
        })
        .await;
        n1.shutdown();
    });
}

#[test]
fn links_to_an_unreachable_node_fire_exited() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let n1 = quic_node(&ca, 1);
        let watcher = n1.spawn("watcher", Recorder::default()).unwrap();
        // Nothing listens on this port: the dial times out or is refused.
        let nobody: Upid = "x@127.0.0.1:9".parse().unwrap();
        watcher.post(watcher.upid(), Watch(nobody.clone()));
        eventually(Duration::from_secs(20), "unreachable exited", || async {
            exited(&watcher).await.contains(&nobody)
        })
        .await;
        n1.shutdown();
    });
}

/// A raw quinn client speaking to a node, with a chosen client TLS configuration.
async fn raw_connect(
    client: quinn::ClientConfig,
    to: &NodeAddr,
) -> Result<quinn::Connection, String> {
    let mut ep =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).map_err(|e| e.to_string())?;
    ep.set_default_client_config(client);
    let addr: SocketAddr = format!("{}:{}", to.host, to.port).parse().unwrap();
    ep.connect(addr, CLUSTER_SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())
}

/// A client identity: a slave certificate naming `addr`.
fn member_identity(ca: &ClusterCa, addr: &NodeAddr) -> NodeIdentity {
    NodeIdentity::issue(ca, &CertSpec::new("client", Role::Slave).addr(addr.clone())).unwrap()
}

fn quinn_client(tls: rustls::ClientConfig) -> quinn::ClientConfig {
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

/// Connect, send `bytes` on a uni stream; returns whether the node closed the connection.
async fn send_raw(client: quinn::ClientConfig, to: &NodeAddr, bytes: &[u8], finish: bool) -> bool {
    let Ok(conn) = raw_connect(client, to).await else {
        return true;
    };
    if let Ok(mut s) = conn.open_uni().await {
        let _ = s.write_all(bytes).await;
        if finish {
            let _ = s.finish();
        }
    }
    tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .is_ok()
}

fn hello(from: &NodeAddr, version: u16) -> BytesMut {
    let mut out = BytesMut::new();
    encode_hello(
        &mut out,
        &Hello {
            version,
            node: from.clone(),
            incarnation: 1,
        },
    );
    out
}

#[test]
fn mutual_tls_accepts_cluster_members_and_refuses_others() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let node = quic_node(&ca, 1);
        let target = node.spawn("target", Recorder::default()).unwrap();
        let fake_from = NodeAddr::new("127.0.0.1", 7);
        let mut frame = hello(&fake_from, PROTOCOL_VERSION);
        encode_frame(
            &mut frame,
            &Upid::new("client", &fake_from),
            target.upid(),
            &Num(42),
        )
        .unwrap();

        // A valid cluster certificate: delivered.
        let member = member_identity(&ca, &NodeAddr::new("127.0.0.1", 7));
        let (_, client) = quinn_configs(&member).unwrap();
        let conn = raw_connect(client, node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&frame).await.unwrap();
        eventually(Duration::from_secs(10), "member's message", || async {
            nums(&target).await.len() == 1
        })
        .await;

        // No client certificate: refused.
        let no_cert = quinn_client(member.client_config_without_cert().unwrap());
        assert!(
            send_raw(no_cert, node.addr(), &frame, false).await,
            "no-cert client must be dropped"
        );

        // A certificate from another CA: refused.
        let other_ca = ClusterCa::generate().unwrap();
        let stranger = member_identity(&other_ca, &NodeAddr::new("127.0.0.1", 7));
        let (_, client) = quinn_configs(&stranger).unwrap();
        assert!(
            send_raw(client, node.addr(), &frame, false).await,
            "foreign client must be dropped"
        );

        // A node of another cluster cannot reach ours either (it refuses our certificate).
        let foreign = quic_node(&other_ca, 3);
        let spy = foreign.spawn("spy", Recorder::default()).unwrap();
        spy.post(spy.upid(), Watch(target.upid().clone()));
        spy.post(
            spy.upid(),
            SendMany {
                to: target.upid().clone(),
                count: 5,
            },
        );
        eventually(Duration::from_secs(20), "foreign link exited", || async {
            exited(&spy).await.contains(target.upid())
        })
        .await;
        assert_eq!(
            nums(&target).await.len(),
            1,
            "only the member's message arrived"
        );
        assert!(
            node.transport()
                .unwrap()
                .stats()
                .refused
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2
        );
        node.shutdown();
        foreign.shutdown();
    });
}

#[test]
fn hostile_frames_drop_their_connection_never_the_node() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let node = quic_node(&ca, 1);
        let target = node.spawn("target", Recorder::default()).unwrap();
        let member = member_identity(&ca, &NodeAddr::new("127.0.0.1", 7));
        let (_, client) = quinn_configs(&member).unwrap();
        let from = NodeAddr::new("127.0.0.1", 7);

        // 1. A length prefix claiming ~4 GiB.
        let mut oversized = hello(&from, PROTOCOL_VERSION);
        oversized.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(
            send_raw(client.clone(), node.addr(), &oversized, false).await,
            "oversized"
        );
        // 2. Garbage inside a well-sized frame.
        let mut garbage = hello(&from, PROTOCOL_VERSION);
        garbage.extend_from_slice(&[8, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff]);
        assert!(
            send_raw(client.clone(), node.addr(), &garbage, false).await,
            "garbage"
        );
        // 3. A stream that ends inside a frame.
        let mut truncated = hello(&from, PROTOCOL_VERSION);
        truncated.extend_from_slice(&[100, 0, 0, 0, 1, 2, 3]);
        assert!(
            send_raw(client.clone(), node.addr(), &truncated, true).await,
            "truncated"
        );
        // 4. A wrong protocol version.
        let bad_version = hello(&from, PROTOCOL_VERSION + 1);
        assert!(
            send_raw(client.clone(), node.addr(), &bad_version, false).await,
            "version"
        );
        // 5. A sender that is not on the node it claims to be.
        let mut spoofed = hello(&from, PROTOCOL_VERSION);
        let elsewhere = Upid::new("x", &NodeAddr::new("10.9.9.9", 1));
        encode_frame(&mut spoofed, &elsewhere, target.upid(), &Num(1)).unwrap();
        assert!(
            send_raw(client.clone(), node.addr(), &spoofed, false).await,
            "spoofed"
        );

        assert_eq!(
            node.transport()
                .unwrap()
                .stats()
                .malformed
                .load(std::sync::atomic::Ordering::Relaxed),
            5
        );
        // The node still serves well-behaved peers.
        let mut good = hello(&from, PROTOCOL_VERSION);
        encode_frame(
            &mut good,
            &Upid::new("client", &from),
            target.upid(),
            &Num(7),
        )
        .unwrap();
        let conn = raw_connect(client, node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&good).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "good message after hostile ones",
            || async { nums(&target).await == vec![(Upid::new("client", &from), 7)] },
        )
        .await;
        node.shutdown();
    });
}

// ---- simulator ----------------------------------------------------------------------------

/// Sends a numbered message to each peer every 10 ms; records what arrives.
struct Chatter {
    peers: Vec<Upid>,
    next: u64,
    seen: Vec<(Upid, u64)>,
    exited: Vec<Upid>,
}

impl Chatter {
    fn new(peers: Vec<Upid>, first: u64) -> Self {
        Chatter {
            peers,
            next: first,
            seen: Vec::new(),
            exited: Vec::new(),
        }
    }
    fn handle_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, _t: Tick) {
        for p in self.peers.clone() {
            ctx.send(&p, Num(self.next));
        }
        self.next += 1;
        let jitter = ctx.rng().between(0, 5);
        ctx.delay(Duration::from_millis(10 + jitter), Tick(0));
    }
    fn handle_num(&mut self, _ctx: &mut Context<'_>, from: &Upid, n: Num) {
        self.seen.push((from.clone(), n.0));
    }
}

impl Process for Chatter {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_tick).on(Self::handle_num);
    }
    fn initialize(&mut self, ctx: &mut Context<'_>) {
        for p in self.peers.clone() {
            ctx.link(&p);
        }
        ctx.delay(Duration::from_millis(1), Tick(0));
    }
    fn exited(&mut self, _ctx: &mut Context<'_>, upid: &Upid) {
        self.exited.push(upid.clone());
    }
}

fn sim_addr(i: usize) -> NodeAddr {
    NodeAddr::new(format!("10.0.0.{}", i + 1), 5050)
}

/// A five-node chatter with loss, latency, a partition, a crash and a heal. Returns the trace
/// hash and the sim for inspection.
fn chatter_scenario(seed: u64) -> (u64, Sim, Vec<Upid>) {
    let mut config = SimConfig::new(seed);
    config.faults = NetworkFaults {
        latency_min: Duration::from_micros(100),
        latency_max: Duration::from_millis(20),
        loss: 0.05,
        duplicate: 0.01,
    };
    let mut sim = Sim::new(config);
    let n = 5;
    let upids: Vec<Upid> = (0..n).map(|i| Upid::new("chatter", &sim_addr(i))).collect();
    for i in 0..n {
        sim.add_node(sim_addr(i));
    }
    for i in 0..n {
        let peers = upids.iter().filter(|u| **u != upids[i]).cloned().collect();
        sim.spawn(&sim_addr(i), "chatter", Chatter::new(peers, 0));
    }
    sim.run_for(Duration::from_secs(2));
    sim.partition(&sim_addr(0), &sim_addr(1));
    sim.run_for(Duration::from_secs(2));
    sim.crash(&sim_addr(2));
    sim.run_for(Duration::from_secs(2));
    sim.heal();
    sim.restart(&sim_addr(2));
    let peers = upids.iter().filter(|u| **u != upids[2]).cloned().collect();
    // The restarted process numbers from a million, to tell its messages from its first life's.
    sim.spawn(&sim_addr(2), "chatter", Chatter::new(peers, 1_000_000));
    sim.run_for(Duration::from_secs(2));
    (sim.trace_hash(), sim, upids)
}

#[test]
fn sim_faults_partition_crash_heal_and_fifo() {
    let (_, mut sim, upids) = chatter_scenario(7);
    let stats = sim.stats().clone();
    assert!(stats.delivered > 1000, "{stats:?}");
    assert!(stats.dropped > 0 && stats.duplicated > 0, "{stats:?}");
    // Node 0 and 1 were partitioned: each saw the other's link break.
    let ex0 = sim
        .inspect(&upids[0], |c: &Chatter| c.exited.clone())
        .unwrap();
    assert!(ex0.contains(&upids[1]), "{ex0:?}");
    assert!(ex0.contains(&upids[2]), "crash of node 2 seen by node 0");
    // Per sender, sequence numbers arrive in increasing order (FIFO links; duplicates repeat
    // a number, losses skip some, nothing goes backwards).
    for u in &upids {
        let seen = sim.inspect(u, |c: &Chatter| c.seen.clone()).unwrap();
        for from in &upids {
            let seq: Vec<u64> = seen
                .iter()
                .filter(|(f, _)| f == from)
                .map(|(_, n)| *n)
                .collect();
            assert!(
                seq.windows(2).all(|w| w[0] <= w[1]),
                "reordered from {from} at {u}: {seq:?}"
            );
        }
    }
    // During the partition (t in [2s, 4s)) nothing crossed between 0 and 1: node 1's counter at
    // 2 s vs what node 0 received from it shows a gap of about 200 messages.
    let from1: Vec<u64> = sim
        .inspect(&upids[0], |c: &Chatter| {
            c.seen
                .iter()
                .filter(|(f, _)| *f == upids[1])
                .map(|(_, n)| *n)
                .collect()
        })
        .unwrap();
    let biggest_gap = from1.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(biggest_gap > 100, "partition left a gap, got {biggest_gap}");
    // The restarted node is live again and hears from everyone.
    let seen2 = sim.inspect(&upids[2], |c: &Chatter| c.seen.len()).unwrap();
    assert!(seen2 > 100, "{seen2}");
}

/// The real transport loses a message only with its connection: a message the simulated
/// network loses breaks the connection, both ends learn it at the link timeout, and a link made
/// in between, on the broken connection, learns it then too.
#[test]
fn sim_a_lost_message_breaks_its_connection_on_both_sides() {
    let mut sim = Sim::new(SimConfig::new(5));
    let (a, b) = (sim_addr(0), sim_addr(1));
    sim.add_node(a.clone());
    sim.add_node(b.clone());
    let (ua, ub) = (Upid::new("chatter", &a), Upid::new("chatter", &b));
    sim.spawn(&a, "chatter", Chatter::new(vec![ub.clone()], 0));
    sim.spawn(&b, "chatter", Chatter::new(vec![ua.clone()], 0));
    sim.run_for(Duration::from_millis(100));
    let exits = |sim: &mut Sim, u: &Upid| sim.inspect(u, |c: &Chatter| c.exited.len()).unwrap();
    let seen = |sim: &mut Sim, u: &Upid| sim.inspect(u, |c: &Chatter| c.seen.len()).unwrap();
    // Every message is lost for a moment (a tick or two of each side).
    let mut lossy = NetworkFaults::none();
    lossy.loss = 1.0;
    sim.set_faults(lossy);
    sim.run_for(Duration::from_millis(30));
    sim.set_faults(NetworkFaults::none());
    let seen_b = seen(&mut sim, &ub);
    // Not known yet; messages flow again meanwhile.
    sim.run_for(Duration::from_millis(500));
    assert_eq!((exits(&mut sim, &ua), exits(&mut sim, &ub)), (0, 0));
    assert!(seen(&mut sim, &ub) > seen_b);
    // A links again on the broken connection: told with the break.
    sim.call(&ua, |_: &mut Chatter, ctx| ctx.link(&ub));
    sim.run_for(Duration::from_secs(1));
    assert_eq!(exits(&mut sim, &ub), 1, "B learns the connection broke");
    assert_eq!(
        exits(&mut sim, &ua),
        2,
        "A's link and its link made since, once each"
    );
    // Links made after the break was learnt hold.
    sim.call(&ua, |_: &mut Chatter, ctx| ctx.link(&ub));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(exits(&mut sim, &ua), 2);
}

#[test]
fn sim_one_way_cut_blocks_one_direction_only() {
    let mut sim = Sim::new(SimConfig::new(3));
    let (a, b) = (sim_addr(0), sim_addr(1));
    sim.add_node(a.clone());
    sim.add_node(b.clone());
    let ua = sim.spawn(&a, "r", Recorder::default());
    let ub = sim.spawn(&b, "r", Recorder::default());
    sim.cut_one_way(&a, &b);
    sim.post(
        &ua,
        &ua,
        SendMany {
            to: ub.clone(),
            count: 10,
        },
    );
    sim.post(
        &ub,
        &ub,
        SendMany {
            to: ua.clone(),
            count: 10,
        },
    );
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.inspect(&ub, |r: &Recorder| r.nums.len()), Some(0));
    assert_eq!(sim.inspect(&ua, |r: &Recorder| r.nums.len()), Some(10));
    sim.heal();
    sim.post(
        &ua,
        &ua,
        SendMany {
            to: ub.clone(),
            count: 10,
        },
    );
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.inspect(&ub, |r: &Recorder| r.nums.len()), Some(10));
}

#[test]
fn sim_finds_each_of_many_nodes_by_address_and_drops_for_unknown_ones() {
    let mut sim = Sim::new(SimConfig::new(5));
    // Hosts that share a port, ports that share a host, a host name and an IPv6 host: every
    // address must reach its own node and no other.
    let mut addrs: Vec<NodeAddr> = (0..600)
        .map(|i| NodeAddr::new(format!("10.0.{}.{}", i / 250, i % 250), 5051))
        .collect();
    addrs.extend((0..300).map(|i| NodeAddr::new("10.9.9.9", 6000 + i)));
    addrs.push(NodeAddr::new("node-a.example", 5051));
    addrs.push(NodeAddr::new("fd00::1", 5051));
    for a in &addrs {
        sim.add_node(a.clone());
    }
    let upids: Vec<Upid> = addrs
        .iter()
        .map(|a| sim.spawn(a, "r", Recorder::default()))
        .collect();
    let unknown = [
        Upid::new("r", &NodeAddr::new("10.0.0.0", 5052)),
        Upid::new("r", &NodeAddr::new("10.9.9.9", 5051)),
        Upid::new("r", &NodeAddr::new("10.0.3.0", 5051)),
    ];
    for (i, u) in upids.iter().enumerate() {
        // Each node sends its index to the next node, and to an address no node has.
        let next = &upids[(i + 1) % upids.len()];
        sim.post(
            u,
            u,
            SendMany {
                to: next.clone(),
                count: 1,
            },
        );
        sim.post(
            u,
            u,
            SendMany {
                to: unknown[i % unknown.len()].clone(),
                count: 1,
            },
        );
    }
    let dropped_before = sim.stats().dropped;
    sim.run_for(Duration::from_secs(1));
    for (i, u) in upids.iter().enumerate() {
        let prev = &upids[(i + upids.len() - 1) % upids.len()];
        let nums = sim.inspect(u, |r: &Recorder| r.nums.clone()).unwrap();
        assert_eq!(nums, vec![(prev.clone(), 0)], "at {u}");
    }
    assert_eq!(sim.stats().dropped - dropped_before, upids.len() as u64);
    assert!(
        sim.nodes()
            .cloned()
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0] < w[1]),
        "nodes in address order"
    );
    assert!(!sim.is_up(&unknown[1].node()) && sim.is_up(&addrs[700]));
}

#[test]
fn sim_same_seed_same_trace_in_process() {
    let (h1, ..) = chatter_scenario(11);
    let (h2, ..) = chatter_scenario(11);
    let (h3, ..) = chatter_scenario(12);
    assert_eq!(h1, h2);
    assert_ne!(h1, h3);
}

/// Child-process half of the cross-process determinism test.
#[test]
fn sim_trace_child() {
    if let Ok(seed) = std::env::var("PLATEAU_TRACE_CHILD_SEED") {
        let (hash, ..) = chatter_scenario(seed.parse().unwrap());
        println!("TRACE_HASH={hash:016x}");
    }
}

fn trace_in_child(seed: u64) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sim_trace_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PLATEAU_TRACE_CHILD_SEED", seed.to_string())
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

#[test]
fn sim_same_seed_same_trace_across_processes() {
    let a = trace_in_child(99);
    let b = trace_in_child(99);
    let c = trace_in_child(100);
    assert_eq!(a, b, "same seed, separate processes");
    assert_ne!(a, c, "different seed");
    let (here, ..) = chatter_scenario(99);
    assert_eq!(a, format!("{here:016x}"));
}

// ---- actix on tokio's paused clock, over the simulated network ----------------------------

/// The chatter scenario hosted in actix on a paused clock: returns the network's trace hash
/// and the messages node 0 saw.
fn actix_chatter(seed: u64) -> (u64, usize, usize) {
    use plateau_runtime::simnet::SimNetwork;
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("paused runtime")
    };
    actix_rt::System::with_tokio_rt(rt).block_on(async move {
        let faults = NetworkFaults {
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_millis(20),
            loss: 0.05,
            duplicate: 0.0,
        };
        let network = SimNetwork::new(seed, faults, Duration::from_secs(1));
        let wall = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let n = 4;
        let upids: Vec<Upid> = (0..n).map(|i| Upid::new("chatter", &sim_addr(i))).collect();
        let mut nodes = Vec::new();
        let mut refs = Vec::new();
        for i in 0..n {
            let config =
                NodeConfig::simulated(&sim_addr(i), network.clone(), seed + i as u64, wall);
            let node = Node::start(config).unwrap();
            let peers = upids.iter().filter(|u| **u != upids[i]).cloned().collect();
            refs.push(node.spawn("chatter", Chatter::new(peers, 0)).unwrap());
            nodes.push(node);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        network.partition(&sim_addr(0), &sim_addr(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        nodes[2].shutdown();
        tokio::time::sleep(Duration::from_secs(2)).await;
        network.heal();
        let seen = refs[0]
            .call(|c: &mut Chatter, _| c.seen.len())
            .await
            .unwrap();
        let exited = refs[0]
            .call(|c: &mut Chatter, _| c.exited.clone())
            .await
            .unwrap();
        assert!(
            exited.contains(&upids[1]),
            "partition broke the link: {exited:?}"
        );
        assert!(
            exited.contains(&upids[2]),
            "crash broke the link: {exited:?}"
        );
        for r in &refs {
            let seen = r.call(|c: &mut Chatter, _| c.seen.clone()).await;
            let Ok(seen) = seen else { continue };
            for from in &upids {
                let seq: Vec<u64> = seen
                    .iter()
                    .filter(|(f, _)| f == from)
                    .map(|(_, n)| *n)
                    .collect();
                assert!(seq.windows(2).all(|w| w[0] < w[1]), "reordered from {from}");
            }
        }
        for node in &nodes {
            node.shutdown();
        }
        (network.trace_hash(), seen, exited.len())
    })
}

#[test]
fn actix_paused_clock_host_replays_the_same_trace() {
    let a = actix_chatter(5);
    let b = actix_chatter(5);
    let c = actix_chatter(6);
    assert!(a.1 > 500, "node 0 heard {} messages", a.1);
    assert_eq!(a, b, "same seed, same run");
    assert_ne!(a.0, c.0, "different seed, different run");
}

/// Child-process half of the cross-process check for the actix host.
#[test]
fn actix_trace_child() {
    if let Ok(seed) = std::env::var("PLATEAU_ACTIX_TRACE_CHILD_SEED") {
        let (hash, ..) = actix_chatter(seed.parse().unwrap());
        println!("TRACE_HASH={hash:016x}");
    }
}

#[test]
fn actix_paused_clock_host_same_trace_across_processes() {
    let run = |seed: u64| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "actix_trace_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PLATEAU_ACTIX_TRACE_CHILD_SEED", seed.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        stdout
            .lines()
            .find_map(|l| {
                l.split_once("TRACE_HASH=")
                    .map(|(_, h)| h.trim().to_string())
            })
            .unwrap_or_else(|| panic!("child printed no hash: {stdout}"))
    };
    assert_eq!(run(21), run(21));
}

/// Records messages and exits in one log, to check their order.
#[derive(Default)]
struct OrderLog {
    log: Vec<String>,
}

impl OrderLog {
    fn handle_num(&mut self, _ctx: &mut Context<'_>, from: &Upid, n: Num) {
        self.log.push(format!("num {} from {from}", n.0));
    }
    fn handle_watch(&mut self, ctx: &mut Context<'_>, _from: &Upid, w: Watch) {
        ctx.link(&w.0);
    }
}

impl Process for OrderLog {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_num).on(Self::handle_watch);
    }
    fn exited(&mut self, _ctx: &mut Context<'_>, upid: &Upid) {
        self.log.push(format!("exited {upid}"));
    }
}

#[test]
fn sim_a_quickly_restarted_node_is_seen_dead_before_its_new_life_speaks() {
    let mut sim = Sim::new(SimConfig::new(4));
    let (a, b) = (sim_addr(0), sim_addr(1));
    sim.add_node(a.clone());
    sim.add_node(b.clone());
    let watcher = sim.spawn(&a, "watcher", OrderLog::default());
    let peer = sim.spawn(&b, "chatter", Chatter::new(vec![watcher.clone()], 0));
    sim.post(&watcher, &watcher, Watch(peer.clone()));
    sim.run_for(Duration::from_millis(200));
    sim.crash(&b);
    sim.run_for(Duration::from_millis(100)); // well within the 1 s link timeout
    sim.restart(&b);
    sim.spawn(
        &b,
        "chatter",
        Chatter::new(vec![watcher.clone()], 1_000_000),
    );
    sim.run_for(Duration::from_secs(3));
    let log = sim.inspect(&watcher, |o: &OrderLog| o.log.clone()).unwrap();
    let exited = log
        .iter()
        .position(|l| l.starts_with("exited"))
        .expect("exited delivered");
    let first_new = log
        .iter()
        .position(|l| l.starts_with("num 1000000"))
        .expect("new life heard");
    assert!(
        exited < first_new,
        "exited at {exited}, new life at {first_new}: {log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| l.starts_with("exited")).count(),
        1,
        "exactly once"
    );
}

#[test]
fn log_stamps_follow_the_simulated_clock_of_the_thread() {
    let (_, mut sim, _) = chatter_scenario(3);
    assert_eq!(plateau_runtime::sim::thread_sim_time(), Some(sim.now()));
    sim.run_for(Duration::from_millis(1500));
    let now = sim.now();
    assert!(now.as_nanos() >= 9_500_000_000, "{now:?}");
    assert_eq!(plateau_runtime::sim::thread_sim_time(), Some(now));
    // Another thread runs no simulation: it has no simulated time.
    let other = std::thread::spawn(plateau_runtime::sim::thread_sim_time)
        .join()
        .unwrap();
    assert_eq!(other, None);
}

#[test]
fn sim_a_paused_node_handles_nothing_until_resumed_and_its_links_break() {
    let mut sim = Sim::new(SimConfig::new(3));
    let (a, b) = (sim_addr(0), sim_addr(1));
    sim.add_node(a.clone());
    sim.add_node(b.clone());
    let ra = sim.spawn(&a, "rec", Recorder::default());
    let rb = sim.spawn(&b, "rec", Recorder::default());
    sim.post(&ra, &ra, Watch(rb.clone()));
    sim.run_for(Duration::from_millis(100));
    sim.pause(&b);
    assert!(sim.is_paused(&b));
    sim.post(
        &ra,
        &ra,
        SendMany {
            to: rb.clone(),
            count: 3,
        },
    );
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.inspect(&rb, |r: &Recorder| r.nums.len()), Some(0));
    // Its peers saw its connection break after the link timeout.
    assert_eq!(
        sim.inspect(&ra, |r: &Recorder| r.exited.clone()),
        Some(vec![rb.clone()])
    );
    sim.resume(&b);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(
        sim.inspect(&rb, |r: &Recorder| r
            .nums
            .iter()
            .map(|n| n.1)
            .collect::<Vec<_>>()),
        Some(vec![0, 1, 2]),
        "what waited is handled in order on resume"
    );
}

mod runtime {
    mod backpressure;
}
