//! A whole framework: runs N short tasks on whatever the master offers, then exits.
//! `cargo run --example run_tasks -- --master 127.0.0.1:5050 --tls-dir DIR --tasks 5`
//! (`--master` takes a group too, `HOST:PORT,HOST:PORT,HOST:PORT`: the leader is followed).
use std::collections::BTreeSet;

use clap::Parser;
use plateau_runtime::{tls::NodeIdentity, Node, NodeConfig};
use plateau_sdk::*;

#[derive(Parser)]
struct Args {
    /// The master, HOST:PORT, or the masters of a group, HOST:PORT,HOST:PORT,...
    #[arg(long)]
    master: String,
    #[arg(long)]
    tls_dir: std::path::PathBuf,
    #[arg(long, default_value_t = 5)]
    tasks: usize,
    #[arg(long, default_value = "echo hello from $MESOS_TASK_ID; sleep 1")]
    command: String,
    #[arg(long, default_value = "cpus:0.1;mem:32")]
    resources: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

struct RunTasks {
    command: CommandInfo,
    per_task: Resources,
    to_launch: usize,
    running: BTreeSet<TaskId>,
    failed: usize,
}

impl Scheduler for RunTasks {
    fn resource_offers(&mut self, driver: &mut Driver<'_, '_>, offers: Vec<Offer>) {
        for offer in offers {
            let (mut left, mut tasks) = (offer.resources.clone(), Vec::new());
            while self.to_launch > 0 && left.contains(&self.per_task) {
                left = left.checked_sub(&self.per_task).expect("contained");
                let id = TaskId::new(format!("task-{}", self.to_launch));
                self.to_launch -= 1;
                self.running.insert(id.clone());
                let (slave, resources) = (offer.slave_id.clone(), self.per_task.clone());
                tasks.push(TaskInfo::new(id, slave, resources, self.command.clone()));
            }
            driver.launch_on(&offer, tasks);
        }
    }

    fn status_update(&mut self, driver: &mut Driver<'_, '_>, status: &TaskStatus) {
        let detail = status.message.as_deref().unwrap_or("");
        println!("{} is {} {detail}", status.task_id, status.state.as_str());
        if status.state.is_terminal() && self.running.remove(&status.task_id) {
            self.failed += usize::from(status.state != TaskState::Finished);
        }
        if self.to_launch == 0 && self.running.is_empty() {
            println!("done: {} failed", self.failed);
            driver.stop(false);
            std::process::exit(i32::from(self.failed > 0));
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let identity = NodeIdentity::from_dir(
        &args.tls_dir,
        "run-tasks",
        plateau_runtime::Role::Framework,
        None,
    )?;
    let masters = Masters::parse(&args.master)?;
    let scheduler = RunTasks {
        command: CommandInfo::shell(&args.command),
        per_task: Resources::parse(&args.resources)?,
        to_launch: args.tasks,
        running: BTreeSet::new(),
        failed: 0,
    };
    let info = FrameworkInfo::new("run-tasks");
    actix_rt::System::new().block_on(async move {
        let node = Node::start(NodeConfig::quic(args.listen, identity, 1))?;
        node.spawn(
            "run-tasks",
            SchedulerDriver::with_masters(info, masters, scheduler),
        )?;
        std::future::pending::<anyhow::Result<()>>().await
    })
}
