//! `plateau bench ui`: the web console against a simulated cluster of N agents and M tasks.
//!
//! A real master (its node on QUIC, its HTTP server, a registry on disk) hosts a synthetic
//! core (`plateau_master::bench::synthetic_cluster`: agents and tasks registered through the
//! core's own handlers, at made-up addresses that are never contacted) and an hour of
//! history. Then headless Chromium opens the console's pages and the benchmark reports, per
//! page, the time to interactive (navigation start to the page's `data-loaded="true"`) and the
//! tab's memory (the renderer processes' resident memory, and the JavaScript heap) after the
//! load and again after the page stayed open with its live updates running. `--serve` only
//! serves the cluster, for a person with a browser.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use plateau_runtime::Role;

use crate::serve;

/// What to run.
pub struct Options {
    /// Agents of the simulated cluster.
    pub agents: usize,
    /// Tasks of the simulated cluster.
    pub tasks: usize,
    /// The master's address (HTTP on TCP, its node on UDP).
    pub listen: SocketAddr,
    /// Only serve the cluster until Ctrl-C.
    pub serve_only: bool,
    /// How long each page stays open before its memory is read again.
    pub open_for: Duration,
}

/// A master hosting a synthetic cluster, served over HTTP; stopped on drop of the system.
struct Served {
    node: plateau_runtime::Node,
    http: actix_web::dev::ServerHandle,
    work: std::path::PathBuf,
}

async fn serve_cluster(options: &Options) -> anyhow::Result<Served> {
    let work = std::env::temp_dir().join(format!("plateau-bench-ui-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let tls = serve::dev_ca(&work.join("tls"))?;
    let host = options.listen.ip().to_string();
    let node = serve::start_node(options.listen, &host, &tls, "master", Role::Master)?;
    let config = plateau_master::MasterConfig {
        seed: serve::real_seed(),
        hostname: host.clone(),
        // The agents are made up: none may be found silent during the run.
        agent_timeout: Duration::from_secs(7 * 86_400),
        ..Default::default()
    };
    let master = plateau_master::start(&node, config, &work).await?;
    let spec = plateau_master::bench::SyntheticCluster {
        agents: options.agents,
        tasks: options.tasks,
        frameworks: 3,
    };
    let started = std::time::Instant::now(); // determinism-ok: a benchmark measures wall time
    master
        .call(move |p, ctx| p.install_synthetic_cluster(ctx, &spec))
        .await
        .context("building the synthetic cluster")?;
    eprintln!(
        "built {} agents and {} tasks in {:.1} s",
        options.agents,
        options.tasks,
        started.elapsed().as_secs_f64()
    );
    let listen = options.listen;
    let http = serve::http_server(
        listen,
        move |c| plateau_master::http::configure(c, master.clone()),
        "master",
        plateau_master::http::classify,
        &Default::default(),
    )?;
    Ok(Served { node, http, work })
}

/// Runs the benchmark (or serves, with `serve_only`); prints its figures.
pub fn run(options: Options, json: bool) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let served = serve_cluster(&options).await?;
        let base = format!("http://{}", options.listen);
        let result = if options.serve_only {
            println!(
                "console   {base}/  ({} agents, {} tasks; Ctrl-C stops)",
                options.agents, options.tasks
            );
            serve::shutdown_signal().await;
            Ok(())
        } else {
            measure(&base, &options, json).await
        };
        served.http.stop(true).await;
        served.node.shutdown();
        let _ = std::fs::remove_dir_all(&served.work);
        result
    })
}

async fn measure(base: &str, options: &Options, json: bool) -> anyhow::Result<()> {
    let _ = (base, options, json);
    anyhow::bail!("measuring needs the browser driver")
}
