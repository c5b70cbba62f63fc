//! Identities bound to certificates, over real QUIC on loopback: a peer speaks only as the
//! node its certificate names, each process decides which roles may send it what, handlers
//! see the verified identity, and a revocation list closes a revoked peer out.

use std::sync::atomic::Ordering;

use plateau_runtime::tls::{serial_of_pem, CRL_FILE};
use plateau_runtime::transport::TransportStats;
use plateau_runtime::{PeerIdentity, RoleSet};

use super::*;

/// Records each `Num` with the identity its sender's certificate proved. From other nodes,
/// only a master may send it, and nothing else is accepted (`Tick` stays local).
#[derive(Default)]
struct Guarded {
    got: Vec<(u64, Option<PeerIdentity>)>,
}

impl Guarded {
    fn handle_num(&mut self, ctx: &mut Context<'_>, _from: &Upid, n: Num) {
        self.got.push((n.0, ctx.peer().cloned()));
    }
    fn handle_tick(&mut self, ctx: &mut Context<'_>, _from: &Upid, t: Tick) {
        self.got.push((u64::from(t.0) + 1000, ctx.peer().cloned()));
    }
}

impl Process for Guarded {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::handle_num).on(Self::handle_tick);
        h.allow_roles(RoleSet::of(&[Role::Master]), &[Num::NAME])
            .allow_others(RoleSet::NONE);
    }
}

async fn got(r: &ProcessRef<Guarded>) -> Vec<(u64, Option<PeerIdentity>)> {
    r.call(|p: &mut Guarded, _| p.got.clone()).await.unwrap()
}

fn issue(ca: &ClusterCa, spec: &CertSpec) -> (NodeIdentity, String) {
    let (cert, key) = ca.issue(spec).unwrap();
    (
        NodeIdentity::from_pem(ca.cert_pem(), &cert, &key).unwrap(),
        cert,
    )
}

fn client(identity: &NodeIdentity) -> quinn::ClientConfig {
    quinn_configs(identity).unwrap().1
}

/// A Hello as `node`, then `msg` from `sender@node` to `to`.
fn speak_as<M: Message>(node: &NodeAddr, to: &Upid, msg: &M) -> BytesMut {
    let mut out = hello(node, PROTOCOL_VERSION);
    encode_frame(&mut out, &Upid::new("sender", node), to, msg).unwrap();
    out
}

fn stat(stats: &TransportStats, f: fn(&TransportStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(stats).load(Ordering::Relaxed)
}

#[test]
fn a_slave_certificate_cannot_speak_as_the_master() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let node = quic_node(&ca, 1);
        let target = node.spawn("target", Guarded::default()).unwrap();
        let stats = node.transport().unwrap().stats();
        let master_addr = NodeAddr::new("127.0.0.1", 7000);
        let slave_addr = NodeAddr::new("127.0.0.1", 7001);
        let (slave_id, _) = issue(
            &ca,
            &CertSpec::new("slave-1", Role::Slave).addr(slave_addr.clone()),
        );
        let (master_id, _) = issue(
            &ca,
            &CertSpec::new("master-1", Role::Master).addr(master_addr.clone()),
        );

        // A slave certificate claiming the master's address: the connection is dropped and
        // counted, nothing is delivered.
        let forged = speak_as(&master_addr, target.upid(), &Num(1));
        assert!(
            send_raw(client(&slave_id), node.addr(), &forged, false).await,
            "the impostor's connection must be closed"
        );
        assert_eq!(stat(stats, |s| &s.identity_refused), 1);

        // The same certificate speaking as itself is accepted, but a slave may not send this
        // message: refused before the handler and counted; the connection stays up.
        let honest = speak_as(&slave_addr, target.upid(), &Num(2));
        let conn = raw_connect(client(&slave_id), node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&honest).await.unwrap();
        eventually(Duration::from_secs(10), "role refusal", || async {
            node.refused_by_role() == 1
        })
        .await;
        assert!(
            conn.close_reason().is_none(),
            "a role refusal keeps the connection"
        );

        // The master's own certificate: delivered, and the handler sees who sent it.
        let conn = raw_connect(client(&master_id), node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        let mut frames = speak_as(&master_addr, target.upid(), &Num(3));
        // A message no rule names is refused even from the master (timers stay local).
        encode_frame(
            &mut frames,
            &Upid::new("sender", &master_addr),
            target.upid(),
            &Tick(9),
        )
        .unwrap();
        s.write_all(&frames).await.unwrap();
        eventually(Duration::from_secs(10), "master's message", || async {
            !got(&target).await.is_empty() && node.refused_by_role() == 2
        })
        .await;
        let received = got(&target).await;
        assert_eq!(received.len(), 1, "{received:?}");
        let (n, peer) = &received[0];
        assert_eq!(*n, 3);
        let peer = peer.as_ref().expect("a remote message carries its peer");
        assert_eq!(peer.role, Role::Master);
        assert_eq!(peer.addr.as_ref(), Some(&master_addr));

        // Local deliveries carry no peer and are not subject to the role policy.
        target.post(target.upid(), Tick(1));
        eventually(Duration::from_secs(10), "local tick", || async {
            got(&target).await.len() == 2
        })
        .await;
        assert_eq!(got(&target).await[1], (1001, None));
        assert_eq!(stat(stats, |s| &s.identity_refused), 1);

        // An operator's certificate names no address: it may speak only as the address it
        // connects from, and its role may not send this message.
        let (operator_id, _) = issue(
            &ca,
            &CertSpec::new("cli", Role::Operator).principal("alice"),
        );
        let forged = speak_as(&master_addr, target.upid(), &Num(4));
        assert!(
            send_raw(client(&operator_id), node.addr(), &forged, false).await,
            "an operator claiming the master's address must be dropped"
        );
        assert_eq!(stat(stats, |s| &s.identity_refused), 2);
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(client(&operator_id));
        let own = NodeAddr::new("127.0.0.1", ep.local_addr().unwrap().port());
        let to: SocketAddr = format!("127.0.0.1:{}", node.addr().port).parse().unwrap();
        let conn = ep.connect(to, CLUSTER_SERVER_NAME).unwrap().await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&speak_as(&own, target.upid(), &Num(5)))
            .await
            .unwrap();
        eventually(
            Duration::from_secs(10),
            "operator's message refused",
            || async { node.refused_by_role() == 3 },
        )
        .await;
        assert_eq!(stat(stats, |s| &s.identity_refused), 2);
        assert_eq!(got(&target).await.len(), 2);
        node.shutdown();
    });
}

#[test]
fn a_node_refuses_to_start_with_a_certificate_for_another_address_and_diallers_check_it() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        // A node given a slave certificate for 127.0.0.1:7001 cannot start as anything else.
        let (slave_id, _) = issue(
            &ca,
            &CertSpec::new("slave-1", Role::Slave).addr(NodeAddr::new("127.0.0.1", 7001)),
        );
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let err = match Node::start(NodeConfig::quic(bind, slave_id.clone(), 1)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a node must not start with another address's certificate"),
        };
        assert!(err.contains("does not fit its address"), "{err}");

        // A server at some address presenting a certificate for another: the dialling node
        // drops the connection and counts it.
        let (server_config, _) = quinn_configs(&slave_id).unwrap();
        let server = quinn::Endpoint::server(server_config, bind).unwrap();
        let server_port = server.local_addr().unwrap().port();
        let accept = {
            let server = server.clone();
            tokio::spawn(async move {
                while let Some(incoming) = server.accept().await {
                    let _ = incoming.await;
                }
            })
        };
        let node = quic_node(&ca, 2);
        let sender = node.spawn("sender", Recorder::default()).unwrap();
        let impostor = Upid::new("slave", &NodeAddr::new("127.0.0.1", server_port));
        sender.post(sender.upid(), Watch(impostor.clone()));
        let stats = node.transport().unwrap().stats();
        eventually(Duration::from_secs(20), "dial refused", || async {
            stat(stats, |s| &s.identity_refused) >= 1
        })
        .await;
        eventually(Duration::from_secs(20), "link exited", || async {
            exited(&sender).await.contains(&impostor)
        })
        .await;
        accept.abort();
        server.close(0u32.into(), b"done");
        node.shutdown();
    });
}

#[test]
fn a_revoked_certificate_is_closed_out_and_refused() {
    run(async {
        let dir = std::env::temp_dir().join(format!("plateau-revoke-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (ca_dir, node_dir) = (dir.join("ca"), dir.join("node"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let ca = ClusterCa::generate().unwrap();
        ca.save(&ca_dir).unwrap();
        let identity = NodeIdentity::self_issuing(&ca, "node", Role::Master, None)
            .unwrap()
            .with_crl_path(node_dir.join(CRL_FILE));
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let node = Node::start(NodeConfig::quic(bind, identity, 1)).unwrap();
        let target = node.spawn("target", Recorder::default()).unwrap();
        let stats = node.transport().unwrap().stats();

        let (bad_addr, good_addr) = (NodeAddr::new("127.0.0.1", 7), NodeAddr::new("127.0.0.1", 8));
        let (bad, bad_pem) = issue(
            &ca,
            &CertSpec::new("bad", Role::Slave).addr(bad_addr.clone()),
        );
        let (good, _) = issue(
            &ca,
            &CertSpec::new("good", Role::Slave).addr(good_addr.clone()),
        );
        let conn = raw_connect(client(&bad), node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&speak_as(&bad_addr, target.upid(), &Num(1)))
            .await
            .unwrap();
        eventually(
            Duration::from_secs(10),
            "delivered before revocation",
            || async { nums(&target).await.len() == 1 },
        )
        .await;

        // Revoke it and hand the node the new list: its open connection is closed...
        assert_eq!(
            ca.revoke(&ca_dir, &serial_of_pem(&bad_pem).unwrap())
                .unwrap(),
            1
        );
        std::fs::copy(ca_dir.join(CRL_FILE), node_dir.join(CRL_FILE)).unwrap();
        eventually(
            Duration::from_secs(20),
            "revoked connection closed",
            || async { conn.close_reason().is_some() },
        )
        .await;
        assert_eq!(stat(stats, |s| &s.revoked_closed), 1);
        assert_eq!(stat(stats, |s| &s.crl_reloads), 1);
        // ...and a new handshake with it fails, while other certificates still work.
        assert!(
            send_raw(
                client(&bad),
                node.addr(),
                &speak_as(&bad_addr, target.upid(), &Num(2)),
                false
            )
            .await,
            "a revoked certificate must be refused"
        );
        let conn = raw_connect(client(&good), node.addr()).await.unwrap();
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&speak_as(&good_addr, target.upid(), &Num(3)))
            .await
            .unwrap();
        eventually(
            Duration::from_secs(10),
            "other certificates still work",
            || async { nums(&target).await.len() == 2 },
        )
        .await;
        assert_eq!(nums(&target).await[1].1, 3);
        node.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn a_node_refuses_connections_beyond_its_limit() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = NodeConfig::quic(
            bind,
            NodeIdentity::self_issuing(&ca, "receiver", Role::Slave, None).unwrap(),
            1,
        );
        config.connections_max = 1;
        let receiver = Node::start(config).unwrap();
        let target = receiver.spawn("target", Guarded::default()).unwrap();
        let to = target.upid().clone();
        let senders: Vec<Node> = (0..2u64)
            .map(|i| {
                let identity =
                    NodeIdentity::self_issuing(&ca, "sender", Role::Master, None).unwrap();
                Node::start(NodeConfig::quic(bind, identity, 10 + i)).unwrap()
            })
            .collect();
        let stats = receiver.transport().unwrap().stats();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            for (i, sender) in senders.iter().enumerate() {
                sender.send(&sender.upid("sender"), &to, Num(i as u64));
            }
            let delivered = got(&target).await;
            if !delivered.is_empty() && stat(stats, |s| &s.refused) >= 1 {
                // The one connection it keeps carries one sender's messages only.
                let first = delivered[0].0;
                assert!(delivered.iter().all(|(n, _)| *n == first), "{delivered:?}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a delivery and a refused connection: {} delivered, {} refused",
                delivered.len(),
                stat(stats, |s| &s.refused)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for node in senders.iter().chain([&receiver]) {
            node.shutdown();
        }
    });
}

#[test]
fn a_connection_that_says_no_hello_is_closed_and_frees_its_slot() {
    run(async {
        let ca = ClusterCa::generate().unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = NodeConfig::quic(
            bind,
            NodeIdentity::self_issuing(&ca, "receiver", Role::Slave, None).unwrap(),
            1,
        );
        config.connections_max = 1;
        config.hello_timeout = Duration::from_millis(500);
        let receiver = Node::start(config).unwrap();
        let target = receiver.spawn("target", Guarded::default()).unwrap();
        let stats = receiver.transport().unwrap().stats();
        let to: SocketAddr = format!("127.0.0.1:{}", receiver.addr().port)
            .parse()
            .unwrap();
        let (silent_id, _) = issue(
            &ca,
            &CertSpec::new("silent", Role::Master).addr(NodeAddr::new("127.0.0.1", 1)),
        );
        // A peer with a good certificate that opens no stream, then one that opens a stream
        // and starts a frame it never finishes: each is closed by the receiver, which would otherwise keep
        // both in its only connection slot for as long as they send keep-alives.
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(client(&silent_id));
        let silent = ep.connect(to, CLUSTER_SERVER_NAME).unwrap().await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(30), silent.closed())
            .await
            .expect("a connection without a stream is closed");
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(5)),
            "{closed:?}"
        );
        let mute = ep.connect(to, CLUSTER_SERVER_NAME).unwrap().await.unwrap();
        let mut stream = mute.open_uni().await.unwrap();
        // One byte of a frame: the stream is open, its Hello never completes.
        stream.write_all(&[0]).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(30), mute.closed())
            .await
            .expect("a stream without a Hello is closed");
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(5)),
            "{closed:?}"
        );
        assert_eq!(stat(stats, |s| &s.hello_timeouts), 2);
        // The slot is free again: a real node gets its message through.
        let sender = Node::start(NodeConfig::quic(
            bind,
            NodeIdentity::self_issuing(&ca, "sender", Role::Master, None).unwrap(),
            2,
        ))
        .unwrap();
        let upid = target.upid().clone();
        eventually(
            Duration::from_secs(30),
            "delivered after the silent peers",
            || {
                sender.send(&sender.upid("sender"), &upid, Num(7));
                let target = target.clone();
                async move { !got(&target).await.is_empty() }
            },
        )
        .await;
        sender.shutdown();
        receiver.shutdown();
    });
}
