//! `plateau dev`: a whole cluster in one process — a master, N slaves, Marathon and Chronos,
//! each its own node; the slaves on their own loopback addresses (so constraints on host names
//! mean something); real task processes
//! under real cgroups, a throw-away cluster CA in the work directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use plateau_master::resources::{Ranges, Resources};
use plateau_runtime::Role;

use crate::serve;

/// Master port, as Mesos.
const MASTER_PORT: u16 = 5050;
/// Slave port, as Mesos.
const SLAVE_PORT: u16 = 5051;
/// Marathon port, as Marathon.
const MARATHON_PORT: u16 = 8080;
/// Chronos port, as Chronos.
const CHRONOS_PORT: u16 = 4400;
/// Task host ports shared among the slaves.
const TASK_PORTS: (u16, u16) = (31000, 32000);

/// Runs `start` on a thread of its own (an actix arbiter): each node of the cluster gets its
/// own thread, as separate processes would, so that an fsync or a busy handler of one node
/// does not hold up the others.
async fn on_own_thread<T, F, Fut>(
    arbiters: &mut Vec<actix_rt::Arbiter>,
    start: F,
) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    let arbiter = actix_rt::Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            let _ = tx.send(start().await);
        });
    });
    arbiters.push(arbiter);
    anyhow::ensure!(spawned, "a node's thread did not start");
    rx.await.context("a node's thread ended while starting")?
}

/// The share of the host's resources given to slave `index` of `count`.
fn slave_share(total: &Resources, index: usize, count: usize) -> anyhow::Result<Resources> {
    let n = count as f64;
    let span = u32::from(TASK_PORTS.1 - TASK_PORTS.0 + 1) / count as u32;
    let first = TASK_PORTS.0 + (span * index as u32) as u16;
    let last = first + span as u16 - 1;
    Ok(
        Resources::new(total.cpus() / n, total.mem_mb() / n, total.disk_mb() / n)?
            .with_ports(Ranges::single(first, last)),
    )
}

pub fn run(slaves: usize, work_dir: Option<PathBuf>, ip: Ipv4Addr) -> anyhow::Result<()> {
    anyhow::ensure!(
        ip.is_loopback(),
        "--ip must be a loopback address (127.x.y.z): plateau dev's APIs are open"
    );
    anyhow::ensure!(
        u32::from(ip)
            .checked_add(slaves as u32)
            .is_some_and(|last| Ipv4Addr::from(last).is_loopback()),
        "--ip {ip}: the slaves' addresses (the next {slaves}) leave the loopback range"
    );
    anyhow::ensure!(
        (1..=50).contains(&slaves),
        "--slaves must be between 1 and 50"
    );
    let work_dir = work_dir.unwrap_or_else(|| std::env::temp_dir().join("plateau-dev"));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;
    let work_dir = std::fs::canonicalize(&work_dir)?;
    let tls_dir = serve::dev_ca(&work_dir.join("tls"))?;
    let total = plateau_slave::host::discover(&work_dir, Default::default())?;
    let (supervisor, supervisor_args) = serve::supervisor()?;

    // Every API of `plateau dev` listens on loopback and is open (no credentials): said once.
    tracing::warn!(
        target: "audit",
        "plateau dev: the HTTP APIs (master, slaves, Marathon, Chronos, balancer) are open, on loopback only; a real cluster takes --credentials and --acls"
    );
    actix_rt::System::new().block_on(async move {
        // Caught from here on: a signal during the start stops the cluster once it is up.
        let stop = serve::StopSignals::install();
        let mut handles = Vec::new();
        let mut nodes = Vec::new();
        let mut arbiters = Vec::new();

        let master_listen = SocketAddr::new(IpAddr::V4(ip), MASTER_PORT);
        let master_host = master_listen.ip().to_string();
        let (tls, work, host) = (tls_dir.clone(), work_dir.clone(), master_host.clone());
        let (node, http) = on_own_thread(&mut arbiters, move || async move {
            let node = serve::start_node(master_listen, &host, &tls, "master", Role::Master)?;
            let config = plateau_master::MasterConfig {
                seed: serve::real_seed(),
                hostname: host.clone(),
                ..Default::default()
            };
            let master = plateau_master::start(&node, config, &work).await?;
            let http = serve::http_server(
                master_listen,
                move |c| plateau_master::http::configure(c, master.clone()),
                "master",
                plateau_master::http::classify,
                &Default::default(),
            )?;
            Ok((node, http))
        })
        .await?;
        handles.push(http);
        nodes.push(node);
        println!("console   http://{master_listen}/");
        println!("master    http://{master_listen}/master/state");

        let master_upid: plateau_runtime::Upid = format!("master@{master_listen}").parse()?;
        let mut slave_refs = Vec::new();
        for i in 0..slaves {
            let ip = Ipv4Addr::from(u32::from(ip) + 1 + i as u32);
            let listen = SocketAddr::new(IpAddr::V4(ip), SLAVE_PORT);
            let host = ip.to_string();
            let mut config = plateau_slave::SlaveConfig::new(
                master_upid.clone(),
                work_dir.join(format!("slave-{}", i + 1)),
                &supervisor,
            );
            config.supervisor_args = supervisor_args.clone();
            config.resources = Some(slave_share(&total, i, slaves)?.to_string());
            config.attributes = Some(format!("rack:r{}", i % 2 + 1));
            let tls = tls_dir.clone();
            let (node, slave, http) = on_own_thread(&mut arbiters, move || async move {
                let node = serve::start_node(listen, &host, &tls, "slave", Role::Slave)?;
                let slave = plateau_slave::start(&node, config)?;
                let served = slave.clone();
                let http = serve::http_server(
                    listen,
                    move |c| plateau_slave::http::configure(c, served.clone()),
                    "slave",
                    plateau_slave::http::classify,
                    &Default::default(),
                )?;
                Ok((node, slave, http))
            })
            .await?;
            slave_refs.push(slave);
            handles.push(http);
            nodes.push(node);
            println!("slave {}   http://{listen}/state", i + 1);
        }
        let marathon_listen = SocketAddr::new(IpAddr::V4(ip), MARATHON_PORT);
        let (tls, work, host, master) = (
            tls_dir.clone(),
            work_dir.join("marathon"),
            master_host.clone(),
            master_upid.clone(),
        );
        let (node, http) = on_own_thread(&mut arbiters, move || async move {
            let node = serve::start_node(marathon_listen, &host, &tls, "marathon", Role::Framework)?;
            let marathon = serve::start_marathon(&node, master, &work, marathon_listen)?;
            Ok((node, marathon.http))
        })
        .await?;
        handles.push(http);
        nodes.push(node);
        println!("marathon  http://{marathon_listen}/v2/apps");

        let chronos_listen = SocketAddr::new(IpAddr::V4(ip), CHRONOS_PORT);
        let (tls, work, host, master) = (
            tls_dir.clone(),
            work_dir.join("chronos"),
            master_host.clone(),
            master_upid.clone(),
        );
        let (node, http) = on_own_thread(&mut arbiters, move || async move {
            let node = serve::start_node(chronos_listen, &host, &tls, "chronos", Role::Framework)?;
            let chronos =
                serve::start_chronos(&node, master, &work, chronos_listen, Default::default())?;
            Ok((node, chronos.server))
        })
        .await?;
        handles.push(http);
        nodes.push(node);
        println!("chronos   http://{chronos_listen}/scheduler/jobs");

        // The balancer: service ports and HTTP virtual hosts (port 8000) on the cluster's
        // address (127.0.0.1 by default), stats on 9090 (its node on UDP 9090).
        let lo = IpAddr::V4(ip);
        let stats = SocketAddr::new(lo, 9090);
        let node = serve::start_node(stats, &master_host, &tls_dir, "balancer", Role::Balancer)?;
        let balancer = serve::start_balancer(
            &node,
            &marathon_listen.to_string(),
            lo,
            Some(SocketAddr::new(lo, 8000)),
            stats,
            |c| c.masters = vec![master_upid.clone()],
        )?;
        nodes.push(node);
        println!("balancer  http://{stats}/stats  (HTTP virtual hosts on {ip}:8000, service ports on {ip})");

        println!(
            "work dir  {}  (TLS CA in {})",
            work_dir.display(),
            tls_dir.display()
        );
        println!("Ctrl-C (or SIGTERM) stops the cluster and its tasks.");

        stop.wait().await;
        println!("stopping: killing tasks and removing their cgroups");
        for slave in &slave_refs {
            let _ = slave.call(|s, _| s.destroy_all_tasks()).await;
        }
        // The slaves' own (now empty) cgroup folders go too: nothing of the cluster is left.
        for i in 0..slaves {
            plateau_slave::remove_slave_cgroups(&work_dir.join(format!("slave-{}", i + 1)));
        }
        for h in handles {
            h.stop(true).await;
        }
        balancer.data_plane.shutdown();
        for node in nodes {
            node.shutdown();
        }
        for arbiter in arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
        Ok(())
    })
}
