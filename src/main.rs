//! `plateau`: the command line of the Plateau cluster manager. Subcommands only parse flags and
//! call into the crates.

mod bench_failover;
mod bench_launch;
mod bench_ui;
mod config;
mod dev;
mod logging;
mod serve;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use plateau_master::detector::Masters;
use plateau_runtime::{NodeAddr, Role};

#[derive(Parser)]
#[command(
    name = "plateau",
    version,
    about = "Plateau: a cluster manager — resource offers, a distributed init, a distributed cron and a balancer, as actors over QUIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text`, or `json` (one object a line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text, env = "PLATEAU_LOG_FORMAT")]
    log_format: logging::LogFormat,
    /// A TOML file of flags of master, slave, marathon, chronos or balancer (keys are the flag
    /// names: `work-dir = "/var/lib/plateau"`); flags and `PLATEAU_<FLAG>` variables win over it.
    #[arg(long, global = true, value_name = "FILE", env = config::CONFIG_ENV)]
    config: Option<PathBuf>,
}

/// The command line, with the flags of `--config FILE` and of the environment (`env` looks a
/// variable up; see [`config`]).
fn parse_cli(
    argv: Vec<std::ffi::OsString>,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut command = config::command(Cli::command());
    let argv = config::expand(&command, argv, env)
        .map_err(|e| command.error(clap::error::ErrorKind::InvalidValue, e))?;
    let matches = command.try_get_matches_from_mut(argv)?;
    Cli::from_arg_matches(&matches)
}

#[derive(Subcommand)]
enum Command {
    /// Run a master: registries, the DRF allocator, resource offers (HTTP and QUIC on one port
    /// number).
    Master(MasterArgs),
    /// Run a slave: runs tasks as real processes under cgroups for the master.
    Slave(SlaveArgs),
    /// Run Marathon: keeps long-running apps alive behind Marathon's REST API v2. With
    /// several masters, run any number of them: one leads, the others stand by.
    Marathon(MarathonArgs),
    /// Run Chronos: runs jobs on schedules behind Chronos' REST API.
    Chronos(ChronosArgs),
    /// Run a balancer: TCP service ports and HTTP virtual hosts in front of Marathon's apps,
    /// updated live from Marathon's routes feed.
    Balancer(BalancerArgs),
    /// A whole cluster in one process: a master and N slaves (real tasks, real cgroups), until
    /// Ctrl-C.
    Dev(DevArgs),
    /// Create and issue the cluster's certificates (mutual TLS between nodes).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The whole cluster's real code in one thread on a virtual clock, with seeded faults and
    /// invariants (`plateau sim --help-sim` lists the flags: --seed, --slaves, --frameworks,
    /// --apps, --duration, --faults none|default|heavy, --json, --check-determinism).
    Sim {
        /// Flags of the simulator.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure speed (benchmarks, not tests).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// The operator commands: context, cluster, agent, app, deployment, task, job, top,
    /// completions (docs/cli.md).
    #[command(flatten)]
    Operator(plateau_cli::Command),
}

#[derive(clap::Args)]
struct MasterArgs {
    /// Address to listen on (TCP for HTTP, UDP for QUIC, same port).
    #[arg(long, default_value = "127.0.0.1:5050")]
    listen: SocketAddr,
    /// Name or address other nodes reach this master at (default: the listen IP).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory for the master's registry.
    #[arg(long)]
    work_dir: PathBuf,
    /// TLS directory: a CA (`certs init`) or a node certificate (`certs issue`).
    #[arg(long)]
    tls_dir: PathBuf,
    /// A slave silent this long is marked unreachable.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    agent_timeout: Duration,
    /// Role weights, e.g. `apps=2,jobs=1`.
    #[arg(long, value_parser = parse_weights)]
    weights: Option<BTreeMap<String, f64>>,
    /// Offers not answered within this long are rescinded (Mesos' `--offer_timeout`; default:
    /// never).
    #[arg(long, alias = "offer_timeout", value_parser = parse_duration)]
    offer_timeout: Option<Duration>,
    /// After a master restart, a slave from the registry that has not re-registered within
    /// this long is marked unreachable (Mesos' `--agent_reregister_timeout`).
    #[arg(long, alias = "agent_reregister_timeout", default_value = "10m", value_parser = parse_duration)]
    agent_reregister_timeout: Duration,
    /// The masters of a group (3 or 5), HOST:PORT,... this one included: the registry is a
    /// replicated log and one master leads. Without it the master runs alone.
    #[arg(long, value_parser = parse_masters)]
    peers: Option<Masters>,
    /// Join the running group of `--peers` (a new or replacement master) instead of forming one.
    #[arg(long, requires = "peers")]
    join: bool,
    #[command(flatten)]
    security: ApiSecurityArgs,
}

/// The security flags every HTTP API takes (see docs/security-api.md).
#[derive(clap::Args, Clone, Debug)]
struct ApiSecurityArgs {
    /// Require HTTP authentication: a JSON file of principals and secrets, Mesos' format
    /// `{"credentials":[{"principal":"p","secret":"s"}]}`; callers send HTTP Basic
    /// (`principal:secret`) or `Authorization: Bearer <secret>`.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Authorize requests with an ACL file (Mesos-style rules per action: get_endpoints,
    /// update_apps, view_jobs, ...; the first matching rule decides, else `permissive`).
    #[arg(long)]
    acls: Option<PathBuf>,
    /// Serve the HTTP API over HTTPS, with a certificate from `--tls-dir` (its `node.pem`, or
    /// one issued now by its CA key, naming this node, 127.0.0.1 and localhost).
    #[arg(long)]
    https: bool,
    /// Serve the API without authentication on a non-loopback address (refused otherwise).
    #[arg(long)]
    insecure_open_api: bool,
}

impl ApiSecurityArgs {
    fn flags(&self) -> serve::ApiSecurityFlags {
        serve::ApiSecurityFlags {
            credentials: self.credentials.clone(),
            acls: self.acls.clone(),
            https: self.https,
            insecure_open_api: self.insecure_open_api,
        }
    }
}

#[derive(clap::Args)]
struct SlaveArgs {
    /// The master, HOST:PORT, or the masters of a group, HOST:PORT,HOST:PORT,... (the slave
    /// follows the one that leads).
    #[arg(long, value_parser = parse_masters)]
    master: Masters,
    /// Address to listen on (TCP for HTTP, UDP for QUIC, same port).
    #[arg(long, default_value = "127.0.0.1:5051")]
    listen: SocketAddr,
    /// Host name given to the master and tasks (default: the listen IP).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory for the checkpoint, task sandboxes and supervisor state.
    #[arg(long)]
    work_dir: PathBuf,
    /// TLS directory: a CA (`certs init`) or a node certificate (`certs issue`).
    #[arg(long)]
    tls_dir: PathBuf,
    /// Resources offered, e.g. `cpus:4;mem:8192;disk:20000;ports:[31000-32000]` (default:
    /// discovered from the host, minus a reserve).
    #[arg(long, value_parser = parse_resources)]
    resources: Option<String>,
    /// Attributes, e.g. `rack:r1;zone:a`.
    #[arg(long, value_parser = parse_attributes)]
    attributes: Option<String>,
    /// The user of tasks that name none (neither their command, e.g. a Marathon app's `user`,
    /// nor their framework): never root unless asked for.
    #[arg(long, default_value = plateau_slave::user::DEFAULT_TASK_USER)]
    default_task_user: String,
    #[command(flatten)]
    security: ApiSecurityArgs,
}

#[derive(clap::Args)]
struct FrameworkArgs {
    /// The master, HOST:PORT, or the masters of a group, HOST:PORT,HOST:PORT,... (the
    /// framework follows the one that leads).
    #[arg(long, value_parser = parse_masters)]
    master: Masters,
    /// Address to listen on (TCP for HTTP, UDP for QUIC, same port); Marathon's default port
    /// is 8080, Chronos' 4400.
    #[arg(long)]
    listen: SocketAddr,
    /// Name or address other nodes reach this one at (default: the listen IP).
    #[arg(long)]
    hostname: Option<String>,
    /// Directory for the framework's state.
    #[arg(long)]
    work_dir: PathBuf,
    /// TLS directory: a CA (`certs init`) or a node certificate (`certs issue`).
    #[arg(long)]
    tls_dir: PathBuf,
    #[command(flatten)]
    security: ApiSecurityArgs,
}

#[derive(clap::Args)]
struct MarathonArgs {
    #[command(flatten)]
    framework: FrameworkArgs,
    /// Run as one of several Marathons: the leader is elected among them through the
    /// masters, which keep the state (the masters must run as a group, `--peers`); standbys
    /// proxy the API to the leader. Default: true when `--master` names several masters,
    /// false for one (then the state is a local file in `--work-dir`).
    #[arg(long)]
    ha: Option<bool>,
    /// With HA: how long a crashed leader keeps the leadership before a standby takes over:
    /// a duration (`3s`) or milliseconds (`3000`, as Marathon's `--zk_session_timeout`); at
    /// least 1 s.
    #[arg(long, alias = "zk_session_timeout", default_value = "3s", value_parser = parse_session_ttl)]
    session_ttl: Duration,
    /// Ignore maintenance: place instances on draining agents too and leave instances where
    /// they are (Marathon's `--disable_maintenance_mode`; see docs/maintenance.md).
    #[arg(long, alias = "disable_maintenance_mode")]
    disable_maintenance_mode: bool,
}

#[derive(clap::Args)]
struct ChronosArgs {
    #[command(flatten)]
    framework: FrameworkArgs,
    /// Milliseconds before a failed run is retried (Chronos' `--failure_retry`).
    #[arg(long, alias = "failure_retry", default_value_t = 60_000)]
    failure_retry: u64,
    /// Where the state lives: `local`, a redb file in the work dir (one Chronos), or
    /// `replicated`, the masters' coordination store (the masters run as a group): run any
    /// number of `plateau chronos` with the same `--master` list; one leads, the others stand
    /// by and proxy their REST API to it. Default: `replicated` when `--master` names more than
    /// one master, else `local`.
    #[arg(long, value_enum)]
    state: Option<ChronosState>,
    /// With the replicated state: how long a crashed leader keeps the leadership before a
    /// standby takes over: a duration (`3s`) or milliseconds (`3000`, as Chronos'
    /// `--zk_timeout`); at least 1 s.
    #[arg(long, alias = "zk_timeout", default_value = "3s", value_parser = parse_session_ttl)]
    session_ttl: Duration,
}

/// `plateau chronos --state`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ChronosState {
    /// A redb file in the work dir.
    Local,
    /// The masters' coordination store.
    Replicated,
}

#[derive(clap::Args)]
struct BalancerArgs {
    /// Marathon's node, HOST:PORT (its `--listen`), or the nodes of several Marathons,
    /// HOST:PORT,HOST:PORT,... (the balancer follows whichever leads).
    #[arg(long)]
    marathon: String,
    /// The masters, HOST:PORT or HOST:PORT,HOST:PORT,...: the balancer announces its admin
    /// API to them, and the web console shows its routes and backends.
    #[arg(long)]
    master: Option<String>,
    /// Address the service-port listeners bind.
    #[arg(long, default_value = "0.0.0.0")]
    listen_ip: std::net::IpAddr,
    /// Stats and admin (`/stats`, `/metrics`) on TCP, and the balancer's node on UDP (QUIC).
    #[arg(long, default_value = "127.0.0.1:9090")]
    stats: SocketAddr,
    /// Port of the HTTP virtual-host listener (on `--listen-ip`); none without it.
    #[arg(long)]
    http_port: Option<u16>,
    /// Only apps of this `HAPROXY_GROUP`.
    #[arg(long)]
    group: Option<String>,
    /// Seconds a TCP connection to a backend that left (or is draining) may go on before it is
    /// closed.
    #[arg(long, default_value_t = 30)]
    tcp_drain_timeout: u64,
    /// Name or address other nodes reach this one at (default: the stats IP).
    #[arg(long)]
    hostname: Option<String>,
    /// TLS directory: a CA (`certs init`) or a node certificate (`certs issue`).
    #[arg(long)]
    tls_dir: PathBuf,
    /// An admin (`--stats`) connection with no request for this long is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    admin_idle_timeout: Duration,
    #[command(flatten)]
    security: ApiSecurityArgs,
}

#[derive(clap::Args)]
struct DevArgs {
    /// Number of slaves (each on its own loopback address 127.0.0.2, 127.0.0.3, ...).
    #[arg(long, default_value_t = 3)]
    slaves: usize,
    /// Work directory (default: a `plateau-dev` folder in the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Loopback address of the master, Marathon, Chronos and the balancer (default ports);
    /// the slaves take the next addresses. Another address runs a second cluster beside the
    /// first (`--ip 127.0.1.1`: slaves on 127.0.1.2, 127.0.1.3, ...).
    #[arg(long, default_value = "127.0.0.1")]
    ip: std::net::Ipv4Addr,
}

/// `--master`: one HOST:PORT, or a comma-separated group of them.
fn parse_masters(text: &str) -> Result<Masters, String> {
    Masters::parse(text).map_err(|e| e.to_string())
}

/// A Mesos resource string, checked (a bad one is a usage error: exit code 2).
fn parse_resources(text: &str) -> Result<String, String> {
    plateau_master::resources::Resources::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// A Mesos attribute string, checked.
fn parse_attributes(text: &str) -> Result<String, String> {
    plateau_master::resources::Attributes::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// Longest duration a flag takes: ten years. Beyond it a timeout is a typo, and one near
/// `Duration::MAX` would overflow the first time it is added to a clock reading.
const DURATION_FLAG_MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// `500ms`, `5s`, `2m`, `1h`, `2d`; at most [`DURATION_FLAG_MAX`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = plateau_cli::parse_duration_with_unit(text)?;
    if duration > DURATION_FLAG_MAX {
        return Err(format!(
            "'{text}' is longer than the longest duration a flag takes, {} days",
            DURATION_FLAG_MAX.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

/// A session ttl: a duration with its unit, or a bare number of milliseconds (what the
/// originals' ZooKeeper timeout flags take); at least 1 s, and at most the longest lease the
/// masters grant (a longer one would be refused by every master at the first election).
fn parse_session_ttl(text: &str) -> Result<Duration, String> {
    let ttl = match text.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => parse_duration(text)?,
    };
    if ttl < Duration::from_secs(1) {
        return Err(format!("'{text}' is under the least session ttl, 1s"));
    }
    let max = plateau_master::limits::COORD_LEASE_TTL_MAX;
    if ttl > max {
        return Err(format!(
            "'{text}' is over the longest session ttl, {}s",
            max.as_secs()
        ));
    }
    Ok(ttl)
}

/// `role=weight,role=weight`.
fn parse_weights(text: &str) -> Result<BTreeMap<String, f64>, String> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (role, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not role=weight"))?;
            let weight: f64 = weight
                .parse()
                .map_err(|_| format!("'{weight}' is not a number"))?;
            if !(weight > 0.0 && weight.is_finite()) {
                return Err(format!("weight of '{role}' must be positive"));
            }
            Ok((role.to_string(), weight))
        })
        .collect()
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key.
    Init {
        /// Directory to create the CA in.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a node certificate signed by the CA in DIR: OUT/ca.pem, OUT/node.pem, OUT/node.key
    /// (and OUT/crl.pem when the CA has revoked certificates). The certificate names the
    /// node's role, its address and its principal; peers accept nothing else from it.
    Issue {
        /// Directory holding the CA (as `certs init` left it).
        #[arg(long)]
        dir: PathBuf,
        /// The node's name (put in the certificate).
        #[arg(long)]
        name: String,
        /// master, slave, framework (Marathon, Chronos), balancer or operator.
        #[arg(long)]
        role: Role,
        /// The address other nodes know this one by (its `--hostname` or listen IP, and its
        /// port); required for every role but operator.
        #[arg(long)]
        addr: Option<NodeAddr>,
        /// The principal (a framework's, fixed for its registrations; an operator's).
        #[arg(long)]
        principal: Option<String>,
        /// Lifetime in days.
        #[arg(long, default_value_t = plateau_runtime::limits::NODE_CERT_DAYS_DEFAULT)]
        days: u32,
        /// Directory to write the node's certificate and key to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a node certificate: DIR/crl.pem is rewritten to list it (with every earlier
    /// revocation). Copy it into each node's TLS directory; nodes reload it within seconds,
    /// close the revoked node's connections and refuse its handshakes.
    Revoke {
        /// Directory holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate to revoke (its node.pem).
        #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
        cert: Option<PathBuf>,
        /// Or its serial number, in hex.
        #[arg(long)]
        serial: Option<String>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The web console against a simulated cluster: time to interactive and the browser tab's
    /// memory per page, in headless Chromium (Debian's `chromium` and `chromium-driver`).
    Ui {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Agents of the simulated cluster.
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Tasks of the simulated cluster.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// The master's address (HTTP on TCP, its node on UDP).
        #[arg(long, default_value = "127.0.0.1:5070")]
        listen: SocketAddr,
        /// Only serve the simulated cluster (open the printed URL yourself) until Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// How long each page stays open (its live updates running) before its memory is
        /// read again.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        open_for: Duration,
    },
    /// Launch latency: `POST /v2/apps` of N `sleep 600` tasks to each RUNNING, p50 and p99, on
    /// a local `plateau dev` cluster (2 slaves; ports 5050, 8080, 4400, 8000, 9090 free).
    Launch {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Tasks to launch.
        #[arg(long, default_value_t = 100)]
        instances: u32,
    },
    /// Message throughput: local, QUIC with mTLS, and bare quinn.
    Runtime {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Messages per measurement.
        #[arg(long, default_value_t = 2_000_000)]
        messages: u64,
    },
    /// One full allocation cycle of the DRF allocator (pure core), median and p99.
    Allocator {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Slaves.
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Frameworks.
        #[arg(long, default_value_t = 1_000)]
        frameworks: usize,
        /// Timed cycles.
        #[arg(long, default_value_t = 20)]
        cycles: usize,
    },
    /// Failover of the control plane: 3 masters, 3 slaves, 2 Marathons, 2 Chronos as separate
    /// processes on loopback; the leading master, Marathon and Chronos killed (SIGKILL) in
    /// turn; replacement times, lost writes, duplicate tasks, missed and duplicated runs.
    Failover {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Chronos: jobs due every minute on an in-process cluster (real tasks); lag and
    /// exactly-once.
    Chronos {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Jobs, each due once a minute.
        #[arg(long, default_value_t = 1_000)]
        jobs: usize,
        /// Minutes of schedule.
        #[arg(long, default_value_t = 2)]
        minutes: u32,
    },
}

fn main() -> ExitCode {
    // `plateau supervise DIR`: the per-task supervisor the slave starts. It must run before
    // anything else starts a thread (it forks and sets signal masks).
    let mut argv = std::env::args_os();
    if argv.nth(1).is_some_and(|a| a == "supervise") {
        plateau_slave::containerizer::supervisor_main(argv.collect());
    }
    let cli = parse_cli(std::env::args_os().collect(), &|name| {
        std::env::var_os(name)
    })
    .unwrap_or_else(|e| e.exit());
    // The operator's commands (docs/cli.md) print their own output, with no log set-up.
    let cli = match cli.command {
        Command::Operator(command) => {
            use clap::CommandFactory as _;
            return plateau_cli::run(command, Cli::command());
        }
        command => Cli { command, ..cli },
    };
    // The daemons log what an operator needs at INFO; a simulation or a benchmark only warnings.
    let daemon = matches!(
        cli.command,
        Command::Master(_)
            | Command::Slave(_)
            | Command::Marathon(_)
            | Command::Chronos(_)
            | Command::Balancer(_)
            | Command::Dev(_)
    );
    let filter = if daemon {
        logging::DAEMON_FILTER
    } else {
        logging::QUIET_FILTER
    };
    logging::init(cli.log_format, filter);
    if let Some(path) = &cli.config {
        tracing::info!(config = %path.display(), "flags from a config file (the environment and the command line win over it)");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc rather than glibc malloc: the simulator (`plateau sim`) allocates a lot and spends
/// 40 % less CPU with it (see the #4 notes); the long-running nodes gain a steadier heap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run_master(args: MasterArgs) -> anyhow::Result<()> {
    let host = serve::advertised_host(args.listen, args.hostname.as_deref())?;
    let security = serve::api_security(
        "master",
        args.listen,
        "--listen",
        std::slice::from_ref(&host),
        &args.tls_dir,
        &args.security.flags(),
    )?;
    let config = plateau_master::MasterConfig {
        agent_timeout: args.agent_timeout,
        offer_timeout: args.offer_timeout,
        agent_reregister_timeout: args.agent_reregister_timeout,
        role_weights: args.weights.unwrap_or_default(),
        seed: serve::real_seed(),
        hostname: host.clone(),
        // The ACLs that guard the HTTP API also decide framework registrations and the users
        // tasks run as (read once, with the credentials).
        acls: std::sync::Arc::new(security.policy.acls.clone()),
        ..Default::default()
    };
    actix_rt::System::new().block_on(async move {
        let node = serve::start_node(args.listen, &host, &args.tls_dir, "master", Role::Master)?;
        let master = match args.peers {
            None => plateau_master::start(&node, config, &args.work_dir).await?,
            Some(peers) => {
                let group = plateau_master::GroupMembership {
                    peers: peers.as_slice().to_vec(),
                    join: args.join,
                };
                plateau_master::start_group(&node, config, &args.work_dir, group).await?
            }
        };
        let handle = serve::http_server(
            args.listen,
            move |c| plateau_master::http::configure(c, master.clone()),
            "master",
            plateau_master::http::classify,
            &security,
        )?;
        println!(
            "master@{host}:{port} running: {scheme}://{host}:{port}/master/state",
            port = node.addr().port,
            scheme = security.scheme(),
        );
        serve::shutdown_signal().await;
        handle.stop(true).await;
        node.shutdown();
        Ok(())
    })
}

fn run_slave(args: SlaveArgs) -> anyhow::Result<()> {
    let host = serve::advertised_host(args.listen, args.hostname.as_deref())?;
    let (supervisor, supervisor_args) = serve::supervisor()?;
    let mut config = plateau_slave::SlaveConfig::new(args.master, &args.work_dir, supervisor);
    config.supervisor_args = supervisor_args;
    config.resources = args.resources;
    config.attributes = args.attributes;
    config.hostname = Some(host.clone());
    config.default_task_user = args.default_task_user;
    // Check flags before starting anything: a bad resource string exits with a clear message.
    plateau_slave::resolve_resources(&config)?;
    let security = serve::api_security(
        "slave",
        args.listen,
        "--listen",
        std::slice::from_ref(&host),
        &args.tls_dir,
        &args.security.flags(),
    )?;
    actix_rt::System::new().block_on(async move {
        let node = serve::start_node(args.listen, &host, &args.tls_dir, "slave", Role::Slave)?;
        let slave = plateau_slave::start(&node, config)?;
        let handle = serve::http_server(
            args.listen,
            move |c| plateau_slave::http::configure(c, slave.clone()),
            "slave",
            plateau_slave::http::classify,
            &security,
        )?;
        println!(
            "slave(1)@{host}:{port} running: {scheme}://{host}:{port}/state",
            port = node.addr().port,
            scheme = security.scheme(),
        );
        serve::shutdown_signal().await;
        handle.stop(true).await;
        node.shutdown();
        Ok(())
    })
}

/// Run a framework on its own node: HTTP and QUIC on `--listen`, until Ctrl-C. `start`
/// spawns it and returns its HTTP server and address.
fn run_framework(
    args: FrameworkArgs,
    name: &'static str,
    api_path: &'static str,
    start: impl FnOnce(
            &plateau_runtime::Node,
            Masters,
            &std::path::Path,
            SocketAddr,
            plateau_security::ServeOptions,
        ) -> anyhow::Result<(actix_web::dev::ServerHandle, SocketAddr)>
        + 'static,
) -> anyhow::Result<()> {
    let host = serve::advertised_host(args.listen, args.hostname.as_deref())?;
    let security = serve::api_security(
        name,
        args.listen,
        "--listen",
        std::slice::from_ref(&host),
        &args.tls_dir,
        &args.security.flags(),
    )?;
    let scheme = security.scheme();
    actix_rt::System::new().block_on(async move {
        let node = serve::start_node(args.listen, &host, &args.tls_dir, name, Role::Framework)?;
        let (http, addr) = start(&node, args.master, &args.work_dir, args.listen, security)?;
        println!(
            "{name}@{host}:{} running: {scheme}://{addr}{api_path}",
            node.addr().port
        );
        serve::shutdown_signal().await;
        http.stop(true).await;
        node.shutdown();
        Ok(())
    })
}

fn run_marathon(args: MarathonArgs) -> anyhow::Result<()> {
    let options = serve::MarathonOptions {
        ha: args.ha,
        session_ttl: args.session_ttl,
        disable_maintenance_mode: args.disable_maintenance_mode,
    };
    run_framework(
        args.framework,
        "marathon",
        "/v2/apps",
        move |node, master, work, listen, security| {
            serve::start_marathon_with(node, master, work, listen, options, security)
                .map(|m| (m.http, m.addr))
        },
    )
}

fn run_chronos(args: ChronosArgs) -> anyhow::Result<()> {
    use plateau_chronos::http::StateMode;
    let config = plateau_chronos::scheduler::ChronosConfig {
        failure_retry: std::time::Duration::from_millis(args.failure_retry),
        ..Default::default()
    };
    let replicated = StateMode::Replicated {
        session_ttl: args.session_ttl,
    };
    let state = match args.state {
        Some(ChronosState::Local) => StateMode::Local,
        Some(ChronosState::Replicated) => replicated,
        None => match StateMode::for_masters(&args.framework.master) {
            StateMode::Local => StateMode::Local,
            StateMode::Replicated { .. } => replicated,
        },
    };
    run_framework(
        args.framework,
        "chronos",
        "/scheduler/jobs",
        move |node, master, work, listen, security| {
            let chronos =
                serve::start_chronos_with(node, master, work, listen, config, state, security)?;
            if let StateMode::Replicated { .. } = state {
                println!(
                    "chronos: state in the masters' coordination store; one instance leads, the others stand by (GET http://{}/scheduler/leader)",
                    chronos.advertised
                );
            }
            Ok((chronos.server, chronos.http_addr))
        },
    )
}

fn run_balancer(args: BalancerArgs) -> anyhow::Result<()> {
    let host = serve::advertised_host(args.stats, args.hostname.as_deref())?;
    let security = serve::api_security(
        "balancer",
        args.stats,
        "--stats",
        std::slice::from_ref(&host),
        &args.tls_dir,
        &args.security.flags(),
    )?;
    let scheme = security.scheme();
    let masters = args
        .master
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            format!("master@{m}")
                .parse::<plateau_runtime::Upid>()
                .with_context(|| format!("--master {m}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    actix_rt::System::new().block_on(async move {
        let node = serve::start_node(args.stats, &host, &args.tls_dir, "balancer", Role::Balancer)?;
        let http = args
            .http_port
            .map(|port| SocketAddr::new(args.listen_ip, port));
        let balancer = serve::start_balancer(
            &node,
            &args.marathon,
            args.listen_ip,
            http,
            args.stats,
            |config| {
                config.masters = masters;
                config.group = args.group;
                config.data_plane.tcp_drain_timeout =
                    std::time::Duration::from_secs(args.tcp_drain_timeout);
                config.data_plane.admin_security = security;
                config.data_plane.admin_idle_timeout = args.admin_idle_timeout;
            },
        )?;
        println!(
            "balancer@{host}:{} running: {scheme}://{}/stats",
            node.addr().port,
            args.stats
        );
        serve::shutdown_signal().await;
        balancer.data_plane.shutdown();
        node.shutdown();
        Ok(())
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sim { args } => std::process::exit(plateau_sim::cli_main(&args)),
        Command::Marathon(args) => run_marathon(args)?,
        Command::Chronos(args) => run_chronos(args)?,
        Command::Balancer(args) => run_balancer(args)?,
        Command::Master(args) => run_master(args)?,
        Command::Slave(args) => run_slave(args)?,
        Command::Dev(args) => dev::run(args.slaves, args.work_dir, args.ip)?,
        Command::Operator(_) => unreachable!("main runs the operator commands"),
        Command::Certs { command } => match command {
            CertsCommand::Init { dir } => {
                let ca = plateau_runtime::tls::ClusterCa::generate()?;
                ca.save(&dir)
                    .with_context(|| format!("creating the cluster CA in {}", dir.display()))?;
                println!("cluster CA written to {}", dir.display());
            }
            CertsCommand::Issue {
                dir,
                name,
                role,
                addr,
                principal,
                days,
                out,
            } => {
                let ca = plateau_runtime::tls::ClusterCa::load(&dir)
                    .with_context(|| format!("loading the cluster CA from {}", dir.display()))?;
                let spec = plateau_runtime::tls::CertSpec {
                    name: name.clone(),
                    role,
                    addr,
                    principal,
                    days,
                };
                ca.issue_to_dir(&spec, &out)
                    .with_context(|| format!("issuing a certificate for {name}"))?;
                let crl = dir.join(plateau_runtime::tls::CRL_FILE);
                if crl.exists() {
                    std::fs::copy(&crl, out.join(plateau_runtime::tls::CRL_FILE))
                        .with_context(|| format!("copying {}", crl.display()))?;
                }
                println!(
                    "certificate for {name} ({role}, {days} days) written to {}",
                    out.display()
                );
            }
            CertsCommand::Revoke { dir, cert, serial } => {
                let ca = plateau_runtime::tls::ClusterCa::load(&dir)
                    .with_context(|| format!("loading the cluster CA from {}", dir.display()))?;
                let serial = match (cert, serial) {
                    (Some(path), _) => {
                        let pem = std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        plateau_runtime::tls::serial_of_pem(&pem)
                            .with_context(|| format!("reading the serial of {}", path.display()))?
                    }
                    (None, Some(hex)) => plateau_runtime::tls::parse_serial_hex(&hex)?,
                    (None, None) => anyhow::bail!("give --cert FILE or --serial HEX"),
                };
                let listed = ca.revoke(&dir, &serial)?;
                println!(
                    "revoked {}; {} lists {listed} certificate(s): copy it into each node's TLS directory",
                    plateau_runtime::tls::hex(&serial),
                    dir.join(plateau_runtime::tls::CRL_FILE).display()
                );
            }
        },
        Command::Bench { command } => match command {
            BenchCommand::Ui {
                json,
                agents,
                tasks,
                listen,
                serve,
                open_for,
            } => bench_ui::run(
                bench_ui::Options {
                    agents,
                    tasks,
                    listen,
                    serve_only: serve,
                    open_for,
                },
                json,
            )?,
            BenchCommand::Launch { json, instances } => {
                let report = bench_launch::run(instances)?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "{} tasks: POST /v2/apps to RUNNING p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                        report.instances, report.p50_ms, report.p99_ms, report.max_ms
                    );
                }
            }
            BenchCommand::Failover { json } => {
                let report = bench_failover::run()?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{report}");
                }
            }
            BenchCommand::Runtime { json, messages } => {
                let report = plateau_runtime::bench::run(messages);
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("local_msgs_per_s      {:>12.0}", report.local_msgs_per_s);
                    println!("quic_msgs_per_s       {:>12.0}", report.quic_msgs_per_s);
                    println!(
                        "raw_quinn_msgs_per_s  {:>12.0}",
                        report.raw_quinn_msgs_per_s
                    );
                    println!("quic_vs_raw           {:>12.3}", report.quic_vs_raw);
                    println!(
                        "({} messages each, {}-byte frames)",
                        report.messages, report.frame_bytes
                    );
                }
            }
            BenchCommand::Allocator {
                json,
                agents,
                frameworks,
                cycles,
            } => {
                let report = plateau_master::bench::bench_allocator(agents, frameworks, cycles);
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "{} agents x {} frameworks: {} offers per cycle, median {:.1} ms, p99 {:.1} ms",
                        report.agents, report.frameworks, report.offers, report.cycle_ms_median, report.cycle_ms_p99
                    );
                }
            }
            BenchCommand::Chronos {
                json,
                jobs,
                minutes,
            } => {
                let (supervisor, supervisor_args) = serve::supervisor()?;
                let config = plateau_chronos::bench::BenchConfig {
                    jobs,
                    minutes,
                    work_dir: std::env::temp_dir()
                        .join(format!("plateau-bench-chronos-{}", std::process::id())),
                    supervisor,
                    supervisor_args,
                };
                let report =
                    actix_rt::System::new().block_on(plateau_chronos::bench::run(config))?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!("{report:#?}");
                }
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ttl_is_a_duration_or_milliseconds_and_at_least_a_second() {
        assert_eq!(parse_session_ttl("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_session_ttl("10000"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_session_ttl("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_session_ttl("999").unwrap_err().contains("least"));
        assert!(parse_session_ttl("0.5s").is_err());
        assert!(parse_session_ttl("soon").is_err());
        assert!(parse_session_ttl("2h").unwrap_err().contains("longest"));
        assert!(parse_session_ttl("3600001")
            .unwrap_err()
            .contains("longest"));
        assert_eq!(parse_session_ttl("1h"), Ok(Duration::from_secs(3600)));
    }
}

/// Fuzz targets of the flag value parsers: any text is a value or a usage error, never a
/// panic, and what a parser accepts is in range.
#[cfg(test)]
mod fuzz {
    use super::*;
    use plateau_runtime::fuzzing::fuzz_cases;
    use proptest::prelude::*;

    fn duration_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{0,25}(\\.[0-9]{0,10})?(ms|s|m|h|d|)",
            "[0-9.e+-]{0,12}(ms|s|m|h)",
            Just("18446744073709551616s".to_string()),
            Just("NaNs".to_string()),
            Just("infh".to_string()),
            Just(".s".to_string()),
            "\\PC{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn fuzz_flag_durations(text in duration_like()) {
            if let Ok(d) = parse_duration(&text) {
                prop_assert!(d <= DURATION_FLAG_MAX, "{:?} for {:?}", d, text);
            }
            if let Ok(ttl) = parse_session_ttl(&text) {
                prop_assert!(ttl >= Duration::from_secs(1));
                prop_assert!(ttl <= plateau_master::limits::COORD_LEASE_TTL_MAX);
            }
        }

        #[test]
        fn fuzz_flag_weights(text in prop_oneof!["([a-z*]{0,5}=[-0-9.eNaInf]{0,8},?){0,4}", "\\PC{0,24}"]) {
            if let Ok(weights) = parse_weights(&text) {
                for weight in weights.values() {
                    prop_assert!(weight.is_finite() && *weight > 0.0);
                }
            }
        }

        #[test]
        fn fuzz_flag_masters(text in prop_oneof!["(([a-z]{0,4}@)?[a-z0-9.\\[\\]:]{0,12}:[0-9]{0,6},?){0,4}", "\\PC{0,24}"]) {
            if let Ok(masters) = parse_masters(&text) {
                let printed = masters.to_string();
                let back = parse_masters(&printed);
                prop_assert!(back.is_ok(), "{:?} printed as {:?}", text, printed);
                prop_assert_eq!(back.unwrap().to_string(), printed);
            }
        }

        #[test]
        fn fuzz_flag_resources_and_attributes(text in "\\PC{0,48}") {
            let _ = parse_resources(&text);
            let _ = parse_attributes(&text);
        }
    }

    #[test]
    fn fuzz_regression_huge_durations_are_usage_errors() {
        assert!(parse_duration("100000000000h")
            .unwrap_err()
            .contains("longest"));
        assert!(parse_duration("18446744073709551616s").is_err());
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
    }
}
