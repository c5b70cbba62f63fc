//! `plateau bench ui`: the web console against a simulated cluster of N agents and M tasks.
//!
//! A real master (its node on QUIC, its HTTP server, a registry on disk) hosts a synthetic
//! core (`plateau_master::bench::synthetic_cluster`: agents and tasks registered through the
//! core's own handlers, at made-up addresses that are never contacted) and an hour of
//! history; while it runs, 100 tasks change health every second (their status updates go
//! through the core, so the console's event stream has something to send). Then headless
//! Chromium opens the console's pages and the benchmark reports, per
//! page, the time to interactive (navigation start to the page's `data-loaded="true"`) and the
//! tab's memory (the renderer processes' resident memory, and the JavaScript heap) after the
//! load and again after the page stayed open with its live updates running. `--serve` only
//! serves the cluster, for a person with a browser.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use plateau_runtime::Role;

use crate::serve;

/// How often, and how many tasks change health while the pages are open.
const CHURN_INTERVAL: Duration = Duration::from_secs(1);
const CHURN_TASKS: usize = 100;

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
    // Live updates while the pages stay open: 100 tasks change health every second.
    let churned = master.clone();
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(CHURN_INTERVAL).await;
            if churned
                .call(|p, ctx| p.churn_synthetic_cluster(ctx, CHURN_TASKS))
                .await
                .is_err()
            {
                return;
            }
        }
    });
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

/// The pages measured: (name, route).
const PAGES: &[(&str, &str)] = &[
    ("cluster", "#/"),
    ("agents", "#/agents"),
    ("frameworks", "#/frameworks"),
];

async fn measure(base: &str, options: &Options, json: bool) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    for (page, route) in PAGES {
        let url = format!("{base}/{route}");
        let f = plateau_webui::bench::measure_page_for(&url, page, options.open_for)
            .await
            .with_context(|| format!("measuring page {page} ({url})"))?;
        if !json {
            let mb = |bytes: u64| bytes as f64 / (1 << 20) as f64;
            println!(
                "{page:<11} interactive {:.0} ms (wall {:.0} ms); tab: renderer RSS {:.0} MB (PSS {:.0} MB), JS heap {:.1} MB; after {:.0} s open: RSS {:.0} MB (max {:.0} MB), PSS {:.0} MB, JS heap {:.1} MB",
                f.interactive_ms,
                f.wall_ms,
                mb(f.loaded.renderer_rss_bytes),
                mb(f.loaded.renderer_pss_bytes),
                mb(f.loaded.js_heap_bytes),
                f.open_secs,
                mb(f.after.renderer_rss_bytes),
                mb(f.renderer_rss_bytes_max),
                mb(f.after.renderer_pss_bytes),
                mb(f.after.js_heap_bytes),
            );
        }
        figures.push(f);
    }
    if json {
        let report = serde_json::json!({
            "agents": options.agents,
            "tasks": options.tasks,
            "pages": figures,
        });
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
