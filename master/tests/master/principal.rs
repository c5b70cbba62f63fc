//! A framework's principal is fixed by its certificate: real master and framework nodes over
//! QUIC with mutual TLS on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use plateau_master::ids::FrameworkId;
use plateau_master::messages::{
    FrameworkErrorMessage, FrameworkInfo, FrameworkRegisteredMessage, FrameworkReregisteredMessage,
    RegisterFrameworkMessage, ReregisterFrameworkMessage,
};
use plateau_master::MasterConfig;
use plateau_runtime::tls::{ClusterCa, NodeIdentity};
use plateau_runtime::{
    Context, Handlers, Message, Node, NodeConfig, Process, ProcessRef, Role, Upid,
};

/// A temporary work dir, removed even when the test fails.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the master answered a scheduler.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Registered(FrameworkId),
    Error(String),
}

#[derive(Default)]
struct Scheduler {
    answers: Vec<Answer>,
}

impl Scheduler {
    fn registered(&mut self, _: &mut Context<'_>, _: &Upid, m: FrameworkRegisteredMessage) {
        self.answers.push(Answer::Registered(m.framework_id));
    }
    fn reregistered(&mut self, _: &mut Context<'_>, _: &Upid, m: FrameworkReregisteredMessage) {
        self.answers.push(Answer::Registered(m.framework_id));
    }
    fn error(&mut self, _: &mut Context<'_>, _: &Upid, m: FrameworkErrorMessage) {
        self.answers.push(Answer::Error(m.message));
    }
}

impl Process for Scheduler {
    fn install(h: &mut Handlers<Self>) {
        h.on(Self::registered)
            .on(Self::reregistered)
            .on(Self::error);
    }
}

fn framework_node(ca: &ClusterCa, principal: Option<&str>) -> Node {
    let identity = NodeIdentity::self_issuing(ca, "framework", Role::Framework, principal).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Node::start(NodeConfig::quic(bind, identity, 2)).unwrap()
}

/// Send `msg` from the scheduler and wait for its next answer.
async fn ask<M: Message + Clone>(
    node: &Node,
    scheduler: &ProcessRef<Scheduler>,
    master: &Upid,
    msg: M,
) -> Answer {
    let before = scheduler
        .call(|s: &mut Scheduler, _| s.answers.len())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Re-sent until answered: the first message may race the connection's set-up.
        node.send(scheduler.upid(), master, msg.clone());
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        let answers = scheduler
            .call(|s: &mut Scheduler, _| s.answers.clone())
            .await
            .unwrap();
        if answers.len() > before {
            return answers[before].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the master never answered"
        );
    }
}

fn info(name: &str, principal: Option<&str>) -> FrameworkInfo {
    let mut info = FrameworkInfo::new(name);
    info.principal = principal.map(str::to_string);
    info.failover_timeout_secs = 3600.0;
    info
}

#[test]
fn a_framework_cannot_register_or_act_under_another_principal() {
    let dir = WorkDir(
        std::env::temp_dir().join(format!("plateau-master-principal-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&dir.0);
    let work_dir = dir.0.clone();
    actix_rt::System::new().block_on(async move {
        let ca = ClusterCa::generate().unwrap();
        let master_identity =
            NodeIdentity::self_issuing(&ca, "master", Role::Master, None).unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let master_node = Node::start(NodeConfig::quic(bind, master_identity, 1)).unwrap();
        let master = plateau_master::start(&master_node, MasterConfig::default(), &work_dir)
            .await
            .unwrap();
        let master_upid = master.upid().clone();

        // Alice's framework, with a certificate naming principal alice.
        let alice_node = framework_node(&ca, Some("alice"));
        let alice = alice_node.spawn("scheduler", Scheduler::default()).unwrap();
        // Claiming another principal: refused, with the reason.
        let refused = ask(
            &alice_node,
            &alice,
            &master_upid,
            RegisterFrameworkMessage {
                framework: info("alice-fw", Some("bob")),
                fencing: None,
            },
        )
        .await;
        match &refused {
            Answer::Error(m) => assert!(m.contains("principal 'bob'"), "{m}"),
            other => panic!("registered under another principal: {other:?}"),
        }
        // No principal given: the certificate's is filled in.
        let Answer::Registered(id) = ask(
            &alice_node,
            &alice,
            &master_upid,
            RegisterFrameworkMessage {
                framework: info("alice-fw", None),
                fencing: None,
            },
        )
        .await
        else {
            panic!("alice's own registration refused");
        };
        let stored = master
            .call({
                let id = id.clone();
                move |m, _| {
                    m.try_core()
                        .and_then(|c| c.frameworks().get(&id))
                        .and_then(|f| f.info.principal.clone())
                }
            })
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some("alice"));

        // Mallory (another principal's certificate) cannot take alice's framework over.
        let mallory_node = framework_node(&ca, Some("mallory"));
        let mallory = mallory_node
            .spawn("scheduler", Scheduler::default())
            .unwrap();
        let mut takeover = info("alice-fw", None);
        takeover.id = Some(id.clone());
        let answer = ask(
            &mallory_node,
            &mallory,
            &master_upid,
            ReregisterFrameworkMessage {
                framework: takeover.clone(),
                failover: true,
                fencing: None,
            },
        )
        .await;
        match &answer {
            Answer::Error(m) => assert!(m.contains("registered under principal 'alice'"), "{m}"),
            other => panic!("another principal took the framework over: {other:?}"),
        }
        // Alice herself can fail over.
        let answer = ask(
            &alice_node,
            &alice,
            &master_upid,
            ReregisterFrameworkMessage {
                framework: takeover,
                failover: true,
                fencing: None,
            },
        )
        .await;
        assert_eq!(answer, Answer::Registered(id));
        for n in [&master_node, &alice_node, &mallory_node] {
            n.shutdown();
        }
    });
}
