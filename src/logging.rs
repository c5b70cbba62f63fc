//! The log of the `plateau` commands: on stderr, as text for people or as JSON (one object a
//! line) for log shippers (`--log-format json`); `RUST_LOG` overrides the default levels.

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event: time, level, target, message, fields.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level (`framework_id`, `slave_id`, `task_id`, ...).
    Json,
}

/// The default levels of a daemon (master, slave, Marathon, Chronos, balancer, `plateau dev`):
/// what an operator needs from Plateau's own crates (targets `plateau*`) at INFO — a
/// registration, an agent lost, a failover, a task that failed — and the HTTP APIs' audit log;
/// dependencies at WARN. openraft logs ordinary events (a vote that lost, a peer down) as
/// warnings and errors, several a second while a master is down; the replica and the master
/// log what an operator needs, so it is off (`RUST_LOG=info,openraft=info` shows it all).
pub const DAEMON_FILTER: &str = "warn,plateau=info,audit=info,openraft=off";

/// The default levels of the other commands (`sim`, `bench`, `certs`): warnings, and the
/// audit log. A simulation of thousands of nodes would otherwise print every registration.
pub const QUIET_FILTER: &str = "warn,openraft=off,audit=info";

/// Install the global subscriber: stderr, in `format`, with `RUST_LOG` if set, else
/// `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(LogTime);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Log stamps: the simulated time inside `plateau sim` (so that a trace reads in the
/// simulation's time), the wall clock everywhere else.
struct LogTime;

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        match plateau_runtime::sim::thread_sim_time() {
            Some(t) => write!(w, "sim+{:.6}s", t.as_nanos() as f64 / 1e9),
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}
