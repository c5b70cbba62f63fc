//! `plateau bench launch`: a `plateau dev` cluster (2 slaves) as a child process, Marathon's
//! launch latency measured through its REST API (`plateau_marathon::bench`), then SIGTERM (the
//! cluster kills its tasks and removes their cgroups).

use std::time::Duration;

use anyhow::Context as _;

/// Run the benchmark with `instances` tasks.
pub fn run(instances: u32) -> anyhow::Result<plateau_marathon::bench::LaunchReport> {
    let work = std::env::temp_dir().join(format!("plateau-bench-launch-{}", std::process::id()));
    let mut dev = std::process::Command::new(std::env::current_exe()?)
        .args(["dev", "--slaves", "2", "--work-dir"])
        .arg(&work)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting plateau dev")?;
    let base = "http://127.0.0.1:8080";
    let result = actix_rt::System::new().block_on(async {
        plateau_marathon::bench::wait_ready(
            base,
            "http://127.0.0.1:5050",
            2,
            Duration::from_secs(60),
        )
        .await?;
        plateau_marathon::bench::launch(base, instances, Duration::from_secs(300)).await
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &dev.id().to_string()])
        .status();
    let _ = dev.wait();
    let _ = std::fs::remove_dir_all(&work);
    Ok(result?)
}
