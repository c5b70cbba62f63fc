//! `plateau`: the command line of the Plateau cluster manager. Subcommands only parse flags and
//! call into the crates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "plateau",
    version,
    about = "Plateau: a cluster manager — resource offers, a distributed init, a distributed cron and a balancer, as actors over QUIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and issue the cluster's certificates (mutual TLS between nodes).
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Measure speed (benchmarks, not tests).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key.
    Init {
        /// Directory to create the CA in.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a node certificate signed by the CA in DIR: OUT/ca.pem, OUT/node.pem, OUT/node.key.
    Issue {
        /// Directory holding the CA (as `certs init` left it).
        #[arg(long)]
        dir: PathBuf,
        /// The node's name (put in the certificate).
        #[arg(long)]
        name: String,
        /// Directory to write the node's certificate and key to.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Message throughput: local, QUIC with mTLS, and bare quinn.
    Runtime {
        /// Print one JSON object on stdout.
        #[arg(long)]
        json: bool,
        /// Messages per measurement.
        #[arg(long, default_value_t = 2_000_000)]
        messages: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Certs { command } => match command {
            CertsCommand::Init { dir } => {
                let ca = plateau_runtime::tls::ClusterCa::generate()?;
                ca.save(&dir)
                    .with_context(|| format!("creating the cluster CA in {}", dir.display()))?;
                println!("cluster CA written to {}", dir.display());
            }
            CertsCommand::Issue { dir, name, out } => {
                let ca = plateau_runtime::tls::ClusterCa::load(&dir)
                    .with_context(|| format!("loading the cluster CA from {}", dir.display()))?;
                ca.issue_to_dir(&name, &out)
                    .with_context(|| format!("issuing a certificate for {name}"))?;
                println!("certificate for {name} written to {}", out.display());
            }
        },
        Command::Bench { command } => match command {
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
        },
    }
    Ok(())
}
