//! The edge of the binary: start a node, its component process and its HTTP server, and run
//! until Ctrl-C. Everything here is wiring; the components live in their crates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use plateau_master::detector::Masters;
use plateau_runtime::tls::{ClusterCa, NodeIdentity, CA_CERT_FILE};
use plateau_runtime::{Node, NodeConfig, Role};

/// A seed for a real (non-simulated) node: real deployments need no replay, only distinct
/// ids across restarts.
pub fn real_seed() -> u64 {
    let nanos = std::time::SystemTime::now() // determinism-ok: real deployment, not simulation
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// The host other nodes reach this one at: `--hostname` if given, else the listen IP (which
/// must then be a specific address).
pub fn advertised_host(listen: SocketAddr, hostname: Option<&str>) -> anyhow::Result<String> {
    match hostname {
        Some(h) => Ok(h.to_string()),
        None if listen.ip().is_unspecified() => anyhow::bail!(
            "--listen {listen} is a wildcard address: give --hostname, the name or address other nodes reach this one at"
        ),
        None => Ok(listen.ip().to_string()),
    }
}

/// The per-task supervisor a slave starts: `plateau-supervise` next to this executable when it
/// is there (it starts faster), else this executable's hidden `supervise` subcommand.
pub fn supervisor() -> anyhow::Result<(PathBuf, Vec<std::ffi::OsString>)> {
    let exe = std::env::current_exe().context("locating the plateau executable")?;
    let small = exe.with_file_name("plateau-supervise");
    Ok(if small.is_file() {
        (small, Vec::new())
    } else {
        (exe, vec!["supervise".into()])
    })
}

/// Start a node with QUIC on `listen` (UDP), identity from `tls_dir`: its `node.pem`, which
/// must name `host` and the port; or, for dev and tests, a certificate self-issued from the
/// CA key there, naming `role`, the address, and (for a framework) the principal `name`.
pub fn start_node(
    listen: SocketAddr,
    host: &str,
    tls_dir: &Path,
    name: &str,
    role: Role,
) -> anyhow::Result<Node> {
    let principal = (role == Role::Framework).then_some(name);
    let identity = NodeIdentity::from_dir(tls_dir, name, role, principal)
        .with_context(|| format!("loading the TLS identity from {}", tls_dir.display()))?;
    let mut config = NodeConfig::quic(listen, identity, real_seed());
    config.host = host.to_string();
    Node::start(config).with_context(|| format!("starting the node on udp {listen}"))
}

/// A throw-away cluster CA in `dir` (created unless it exists).
pub fn dev_ca(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.join(CA_CERT_FILE).exists() {
        ClusterCa::generate()?.save(dir)?;
    }
    Ok(dir.to_path_buf())
}

/// Wait for SIGINT (Ctrl-C) or SIGTERM (what systemd, container runtimes and CI send): every
/// long-running command stops the same way on either. See [`StopSignals`].
pub async fn shutdown_signal() {
    StopSignals::install().wait().await;
}

/// The listeners of SIGINT and SIGTERM. From [`StopSignals::install`] on, either signal is
/// caught (not fatal) and waits for [`StopSignals::wait`], so a command that installs them
/// before a long start-up (`plateau dev`) still stops cleanly on a signal sent meanwhile. A
/// second signal while the command is stopping ends the process at once (exit code 128 + the
/// signal), for an operator who will not wait.
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Catch SIGINT and SIGTERM from now on. Must be called inside a tokio runtime with
    /// signals enabled (the actix system).
    pub fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }

    /// Wait for the first stop signal; a second one exits the process.
    pub async fn wait(self) {
        let StopSignals {
            mut interrupt,
            mut terminate,
        } = self;
        let name = tokio::select! {
            biased;
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(signal = name, "stopping");
        actix_rt::spawn(async move {
            let code = tokio::select! {
                biased;
                _ = interrupt.recv() => 128 + libc_signal::SIGINT,
                _ = terminate.recv() => 128 + libc_signal::SIGTERM,
            };
            tracing::warn!(code, "a second signal while stopping: exiting now");
            std::process::exit(code);
        });
    }
}

/// The numbers of the two stop signals (the same on every Linux architecture).
mod libc_signal {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// The security of one HTTP API, from its flags: credentials and ACLs loaded, the refusal to
/// serve an open API on a network address ([`plateau_security::check_exposure`]), and with
/// `--https` the TLS configurations (the listener's certificate from `tls_dir`, naming `hosts`).
pub fn api_security(
    component: &str,
    listen: SocketAddr,
    flag_listen: &str,
    hosts: &[String],
    tls_dir: &Path,
    flags: &ApiSecurityFlags,
) -> anyhow::Result<plateau_security::ServeOptions> {
    let policy =
        plateau_security::Policy::load(flags.credentials.as_deref(), flags.acls.as_deref())?;
    plateau_security::check_exposure(
        component,
        listen,
        flag_listen,
        &policy,
        flags.insecure_open_api,
    )?;
    if !policy.requires_credentials() {
        tracing::warn!(
            target: "audit",
            component,
            %listen,
            "the {component} HTTP API is open: no credentials are required (--credentials FILE requires them)"
        );
    }
    let (tls, client_tls) = if flags.https {
        let server = plateau_security::tls::https_server_config(tls_dir, hosts)?;
        let client = plateau_security::tls::https_client_config(tls_dir)?;
        (Some(Arc::new(server)), Some(Arc::new(client)))
    } else {
        (None, None)
    };
    Ok(plateau_security::ServeOptions {
        policy: Arc::new(policy),
        tls,
        client_tls,
    })
}

/// The flags of an HTTP API's security (see `ApiSecurityArgs` in `main.rs`).
#[derive(Debug, Clone, Default)]
pub struct ApiSecurityFlags {
    /// `--credentials FILE`.
    pub credentials: Option<PathBuf>,
    /// `--acls FILE`.
    pub acls: Option<PathBuf>,
    /// `--https`.
    pub https: bool,
    /// `--insecure-open-api`.
    pub insecure_open_api: bool,
}

/// Serve HTTP on `listen` (TCP) with routes from `configure`, on two worker threads, behind
/// the guard of `security` (`component`'s requests classified by `classify`), with the server
/// limits every API has; returns the handle that stops it. Must be called inside the actix
/// system.
pub fn http_server<F>(
    listen: SocketAddr,
    configure: F,
    component: &'static str,
    classify: plateau_security::Classifier,
    security: &plateau_security::ServeOptions,
) -> anyhow::Result<actix_web::dev::ServerHandle>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let guard = security.guard(component, classify);
    // The web console's proxy (the master's): HTTPS targets trust the cluster CA.
    let proxy = plateau_webui::proxy::Client::new(security.client_tls.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(plateau_security::RequireAuth::new(guard.clone()))
            .app_data(proxy.clone())
            .app_data(actix_web::web::PayloadConfig::new(
                plateau_security::limits::HTTP_BODY_BYTES_MAX,
            ))
            .app_data(
                actix_web::web::JsonConfig::default()
                    .limit(plateau_security::limits::HTTP_BODY_BYTES_MAX),
            )
            .configure(configure.clone())
    })
    .workers(2)
    .disable_signals();
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("listening for HTTP on tcp {listen}"))?;
    let server = plateau_security::server::listen(server, listener, security)
        .with_context(|| format!("serving HTTP on tcp {listen}"))?
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

/// How Marathon keeps its state (`plateau marathon --ha`, `--session-ttl`).
#[derive(Debug, Clone, Copy)]
pub struct MarathonOptions {
    /// One of several Marathons (leader + standbys, the state in the masters' coordination
    /// store): `None` decides by the masters given (a group: yes; one master: no).
    pub ha: Option<bool>,
    /// With HA: how long a crashed leader keeps the leadership.
    pub session_ttl: std::time::Duration,
    /// Place instances on agents in maintenance too, and decline inverse offers (Marathon's
    /// `--disable_maintenance_mode`; default false: instances move off draining agents).
    pub disable_maintenance_mode: bool,
}

impl Default for MarathonOptions {
    fn default() -> Self {
        MarathonOptions {
            ha: None,
            session_ttl: plateau_marathon::limits::LEADER_SESSION_TTL_DEFAULT,
            disable_maintenance_mode: false,
        }
    }
}

/// Start Marathon on `node` with its HTTP API on `listen`, following the leader of `masters`.
pub fn start_marathon(
    node: &Node,
    masters: impl Into<Masters>,
    work_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<plateau_marathon::http::MarathonServer> {
    start_marathon_with(
        node,
        masters,
        work_dir,
        listen,
        MarathonOptions::default(),
        Default::default(),
    )
}

/// [`start_marathon`] with `options`: with several masters (or `ha`), Marathon is one of
/// several instances — its state in the masters' coordination store, a leader elected there,
/// its API proxied to the leader while it stands by.
pub fn start_marathon_with(
    node: &Node,
    masters: impl Into<Masters>,
    work_dir: &Path,
    listen: SocketAddr,
    options: MarathonOptions,
    security: plateau_security::ServeOptions,
) -> anyhow::Result<plateau_marathon::http::MarathonServer> {
    let masters = masters.into();
    let as_given: Vec<String> = masters
        .as_slice()
        .iter()
        .map(|m| m.node().to_string())
        .collect();
    let ha = options.ha.unwrap_or(as_given.len() > 1);
    let config = plateau_marathon::http::StartConfig {
        marathon: plateau_marathon::scheduler::MarathonConfig {
            master: as_given.join(","),
            // What `/v2/leader` shows and standbys proxy to: this node's address.
            hostname: node.addr().host.to_string(),
            http_port: listen.port(),
            https: security.tls.is_some(),
            ha,
            session_ttl: options.session_ttl,
            disable_maintenance_mode: options.disable_maintenance_mode,
            ..Default::default()
        },
        masters,
        work_dir: Some(work_dir.to_path_buf()),
        http_listen: listen,
        http_workers: 2,
        process_name: "marathon".to_string(),
        security,
    };
    plateau_marathon::http::start(node, config).context("starting Marathon")
}

/// Start the balancer on `node`, following the Marathon at `marathon` (its node's HOST:PORT),
/// or whichever of several leads (`HOST:PORT,HOST:PORT,...`):
/// service ports on `listen_ip`, HTTP virtual hosts on `http` (if any), stats on `stats`;
/// `configure` sets the rest (group, timeouts).
pub fn start_balancer(
    node: &Node,
    marathon: &str,
    listen_ip: std::net::IpAddr,
    http: Option<SocketAddr>,
    stats: SocketAddr,
    configure: impl FnOnce(&mut plateau_balancer::BalancerConfig),
) -> anyhow::Result<plateau_balancer::Balancer> {
    let marathons = marathon
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            format!("marathon@{m}")
                .parse()
                .with_context(|| format!("--marathon {m}"))
        })
        .collect::<anyhow::Result<Vec<plateau_runtime::Upid>>>()?;
    anyhow::ensure!(!marathons.is_empty(), "--marathon: no Marathon given");
    let mut config = plateau_balancer::BalancerConfig::following(marathons);
    config.data_plane.listen_ip = listen_ip;
    config.data_plane.http_addr = http;
    config.data_plane.admin_addr = Some(stats);
    configure(&mut config);
    plateau_balancer::start(node, config).context("starting the balancer")
}

/// Start Chronos on `node` with its HTTP API on `listen`, following the leader of `masters`
/// (its state where [`plateau_chronos::http::StateMode::for_masters`] puts it).
pub fn start_chronos(
    node: &Node,
    masters: impl Into<Masters>,
    work_dir: &Path,
    listen: SocketAddr,
    scheduler: plateau_chronos::scheduler::ChronosConfig,
) -> anyhow::Result<plateau_chronos::http::Started> {
    let masters = masters.into();
    let state = plateau_chronos::http::StateMode::for_masters(&masters);
    start_chronos_with(
        node,
        masters,
        work_dir,
        listen,
        scheduler,
        state,
        Default::default(),
    )
}

/// [`start_chronos`] with the state in `state`: a redb file under `work_dir`, or the masters'
/// coordination store (leader + standbys).
pub fn start_chronos_with(
    node: &Node,
    masters: impl Into<Masters>,
    work_dir: &Path,
    listen: SocketAddr,
    scheduler: plateau_chronos::scheduler::ChronosConfig,
    state: plateau_chronos::http::StateMode,
    security: plateau_security::ServeOptions,
) -> anyhow::Result<plateau_chronos::http::Started> {
    let mut config = plateau_chronos::http::StartConfig::new(work_dir.to_path_buf(), masters);
    config.security = security;
    config.http_listen = listen;
    config.scheduler = scheduler;
    config.state = state;
    plateau_chronos::http::start(node, config).context("starting Chronos")
}
